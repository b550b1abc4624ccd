"""The Python client: `qforge.Client()` on the store mounted here, or
`qforge.Client(server=..., token=...)` through a server — the same service layer either way.

    import qforge
    client = qforge.Client(server="https://qforge.example.org", token="qf_...")
    jobs = client.submit(["CCO", "c1ccccc1"], group="test", task="opt")
    client.wait(group="test", timeout=600)
    table = client.results(group="test")        # a pandas DataFrame, or rows
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from qforge.inputs import BadRecord, Limits, ReadMolecule, Where, expand_sources, read_sources
from qforge.inputs.chem import Ensemble
from qforge.inputs.conformers import DEFAULT_RMSD, ConformerOptions, conformer_name
from qforge.inputs.names import sanitize_name
from qforge.record import Status
from qforge.service.door import Manager
from qforge.service.models import JobView, Overview, Progress, SubmitOptions, SubmitResult
from qforge.settings import Settings
from qforge_runner.errors import InputError
from qforge_runner.molecule import parse_qcschema_molecule, qcschema_charge_uhf

Molecules = str | Path | Mapping[str, Any] | Any  # a path, a SMILES, a QCSchema dict, an RDKit Mol


class Client:
    def __init__(self, server: str | None = None, token: str | None = None, *,
                 jobs_dir: str | Path | None = None) -> None:
        if server is not None:
            if not token:
                raise InputError("a server needs a token: Client(server=..., token=...)")
            from qforge.client.remote import RemoteManager

            self.manager: Manager = RemoteManager(server, token)
            self.settings = Settings.from_env(None)
        else:
            from qforge.service.local import local_manager

            self.settings = Settings.from_env(None, jobs_dir=jobs_dir)
            self.manager = local_manager(self.settings)

    # ------------------------------------------------------------ submit
    def submit(self, molecules: Molecules | Iterable[Molecules], *, group: str | None = None,
               name: str | None = None, charge: int | None = None, uhf: int | None = None,
               force: bool = False, skip_invalid: bool = False,
               conformers: int | None = None, conformer_rmsd: float = DEFAULT_RMSD,
               **spec: Any) -> SubmitResult:
        """Submits molecules: paths of files or folders (any format `qforge submit`
        reads), SMILES strings, QCSchema molecule dicts, RDKit molecules (3D conformers
        kept, otherwise embedded). `spec`: method, task, opt_level, solvent, timeout, cpu,
        memory, priority, labels. All are validated before any is written.
        `conformers`: up to that many conformers of each molecule (SMILES, SDF/MOL and
        RDKit molecules), pruned at `conformer_rmsd` Å heavy-atom RMSD, each a job."""
        items = (list(molecules) if isinstance(molecules, list | tuple)
                 else [molecules])
        first = str(items[0]) if items and isinstance(items[0], str | Path) else "python"
        options = SubmitOptions(group=group, first_input=first[:200], name=name, charge=charge,
                                uhf=uhf, force=force, skip_invalid=skip_invalid, spec=spec)
        ensemble = (ConformerOptions(conformers, conformer_rmsd) if conformers is not None
                    else None)
        return self.manager.submit(self._read(items, ensemble), options)

    def _read(self, items: list[Any], ensemble: ConformerOptions | None = None
              ) -> Iterator[ReadMolecule | BadRecord]:
        limits = Limits(max_input_bytes=self.settings.max_input_bytes,
                        max_atoms=self.settings.max_atoms)
        for index, item in enumerate(items, start=1):
            where = Where("python", index)
            if isinstance(item, Path) or (isinstance(item, str) and Path(item).exists()):
                yield from read_sources(expand_sources([str(item)], None), limits, ensemble)
            elif isinstance(item, str):
                yield from _from_smiles(item, where, limits, ensemble)
            elif isinstance(item, Mapping):
                if ensemble is not None:
                    yield BadRecord(where, "--conformers needs SMILES or SDF/MOL input "
                                           "(bonds to embed), not a QCSchema molecule")
                else:
                    yield _from_qcschema(item, where)
            elif type(item).__name__ == "Mol":
                yield from _from_rdkit(item, where, ensemble)
            else:
                yield BadRecord(where, f"cannot submit a {type(item).__name__}: give a path, "
                                       "a SMILES, a QCSchema dict or an RDKit molecule")

    # ------------------------------------------------------------- follow
    def status(self, group: str | None = None) -> Overview:
        return self.manager.overview(group)

    def show(self, job_id: str) -> JobView:
        return self.manager.show(job_id)

    def jobs(self, *, status: str | None = None, group: str | None = None
             ) -> list[dict[str, Any]]:
        return self.manager.records(Status(status) if status else None, group)

    def wait(self, job_ids: Iterable[str] = (), *, group: str | None = None,
             timeout: float | None = None) -> Progress:
        """Until every job is finished (or `timeout` seconds): the last progress."""
        import time

        start = time.monotonic()
        snap = None
        for snap in self.manager.follow(list(job_ids), group, 0.5):
            if snap.done or (timeout is not None and time.monotonic() - start >= timeout):
                break
        assert snap is not None  # follow yields at least once
        return snap

    def results(self, *, group: str | None = None, status: str | None = None,
                as_frame: bool | None = None, per_molecule: bool = False) -> Any:
        """The export's rows (the CSV's columns, typed): a pandas DataFrame when pandas
        is installed (or `as_frame=True`), else a list of dicts. `per_molecule`: one row
        per molecule (`qforge export --per-molecule`)."""
        _, pieces = self.manager.export("jsonl", Status(status) if status else None, group,
                                        per_molecule=per_molecule)
        rows = [json.loads(line) for line in "".join(pieces).splitlines() if line.strip()]
        if as_frame is False:
            return rows
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise
            return rows
        return pd.DataFrame(rows)

    def export(self, fmt: Literal["csv", "jsonl", "sdf", "xyz"], *, group: str | None = None,
               status: str | None = None, per_molecule: bool = False) -> str:
        _, pieces = self.manager.export(fmt, Status(status) if status else None, group,
                                        per_molecule=per_molecule)
        return "".join(pieces)

    def cancel(self, job_ids: Iterable[str] = (), *, group: str | None = None) -> Any:
        return self.manager.cancel(list(job_ids), group)

    def delete(self, job_ids: Iterable[str]) -> Any:
        return self.manager.delete(list(job_ids))

    def retry(self, job_ids: Iterable[str] = (), *, group: str | None = None,
              error_type: str | None = None, include_cancelled: bool = False) -> Any:
        """FAILED (and CANCELLED, when asked) jobs run again as a new attempt each."""
        return self.manager.retry(list(job_ids), group, error_type=error_type,
                                  include_cancelled=include_cancelled)


def _from_smiles(smiles: str, where: Where, limits: Limits,
                 ensemble: ConformerOptions | None) -> Iterator[ReadMolecule | BadRecord]:
    from qforge.inputs.chem import read_smiles_ensemble

    try:
        ens = read_smiles_ensemble(smiles, max_atoms=limits.max_atoms, conformers=ensemble)
    except InputError as exc:
        yield BadRecord(where, str(exc))
        return
    yield from _named(ens, sanitize_name(smiles)[:40] or f"molecule_{where.index}", where,
                      ensemble)


def _named(ens: Ensemble, name: str, where: Where, ensemble: ConformerOptions | None
           ) -> Iterator[ReadMolecule]:
    if ensemble is None:
        yield ReadMolecule(ens.molecules[0], name, where, ens.charge, ens.uhf, ens.topology,
                           ens.smiles)
        return
    for k, molecule in enumerate(ens.molecules, start=1):
        yield ReadMolecule(molecule, conformer_name(name, k, ensemble.count), where,
                           ens.charge, ens.uhf, ens.topology, ens.smiles,
                           (k, ensemble.count))


def _from_qcschema(data: Mapping[str, Any], where: Where) -> ReadMolecule | BadRecord:
    try:
        molecule = parse_qcschema_molecule(data)
        charge, uhf = qcschema_charge_uhf(data)
    except InputError as exc:
        return BadRecord(where, str(exc))
    name = data.get("name")
    return ReadMolecule(molecule, sanitize_name(name) if isinstance(name, str) and
                        sanitize_name(name) else f"molecule_{where.index}", where, charge, uhf)


def _from_rdkit(mol: Any, where: Where, ensemble: ConformerOptions | None
                ) -> Iterator[ReadMolecule | BadRecord]:
    from rdkit import Chem

    from qforge.inputs.chem import read_molblock_ensemble

    try:
        ens = read_molblock_ensemble(Chem.MolToMolBlock(mol), ensemble)
    except InputError as exc:
        yield BadRecord(where, str(exc))
        return
    title = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    yield from _named(ens, sanitize_name(title) or f"molecule_{where.index}", where, ensemble)
