"""A submission of many molecules, validated before anything is written.

Two passes keep memory bounded for 100,000 molecules. The first (`FirstPass`) takes each
molecule as it arrives (read from files by the command line, or streamed up to the
server), builds and validates its JobSpec and keeps only a compact `Pending` (its symbols,
its coordinates as an array of doubles, its name, charge and unpaired electrons); a bad
record is listed, and unless `skip_invalid` nothing is written. The second (`write`)
rebuilds the specs a chunk at a time from those already validated values (`model_copy`:
validating them a second time would cost as much as the first pass) and hands them to
`JobStore.submit_batch`.

Per-job options apply to every molecule. `charge` / `uhf` override what a record says
(SMILES, SDF and QCSchema carry their own; XYZ does not: 0 and 0 by default). `name`
names a single molecule; for a batch it is the stem of `<name>_<n>`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from pydantic import ValidationError

from qforge.inputs import BadRecord, ReadMolecule
from qforge.inputs.conformers import conformer_name, molecule_key
from qforge.inputs.names import indexed_name
from qforge.inputs.topology import Topology, kept_topology, packed_json
from qforge.service.models import Submitted
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge.store.jobstore import Submitted as StoreSubmitted
from qforge_runner.errors import InputError
from qforge_runner.molecule import Molecule

# Options of a submission that go into every molecule's spec as they are.
SPEC_OPTIONS: Final = ("method", "task", "opt_level", "solvent", "timeout", "cpu", "memory",
                       "priority", "temperature", "labels", "etemp", "scc_iterations",
                       "auto_retry")
CHUNK: Final = 500  # specs rebuilt and written per submit_batch call
# A molecule any option set can be checked against once, before any file is read.
_PROBE: Final = Molecule(symbols=("H", "H"), geometry=((0.0, 0.0, 0.0), (0.0, 0.0, 0.74)))


@dataclass(frozen=True, slots=True)
class Pending:
    """A validated molecule, compactly: what the second pass needs to rebuild its spec
    (about 24 bytes an atom; 100,000 parsed specs would not fit the memory target)."""

    symbols: tuple[str, ...]
    coords: array[float]  # x1, y1, z1, x2, ... in Å, as validated
    comment: str
    name: str
    charge: int
    uhf: int
    topology: bytes | None = None  # the bond table, packed (qforge.inputs.topology)
    molecule_key: str | None = None  # JobRecord.molecule (conformers.molecule_key)

    @classmethod
    def of(cls, spec: JobSpec, symbols_cache: dict[tuple[str, ...], tuple[str, ...]],
           topology: Topology | None = None, key: str | None = None) -> Pending:
        mol = spec.molecule
        symbols = symbols_cache.setdefault(mol.symbols, mol.symbols)  # shared by isomers
        coords = array("d", [c for xyz in mol.geometry for c in xyz])
        return cls(symbols, coords, mol.comment, spec.name or "", spec.charge, spec.uhf,
                   kept_topology(topology, spec), key)

    def molecule(self) -> Molecule:
        """The validated molecule again (not validated a second time)."""
        c = self.coords
        geometry = tuple((c[i], c[i + 1], c[i + 2]) for i in range(0, len(c), 3))
        return Molecule.model_construct(symbols=self.symbols, geometry=geometry,
                                        comment=self.comment)

    def renamed(self, name: str) -> Pending:
        return Pending(self.symbols, self.coords, self.comment, name, self.charge, self.uhf,
                       self.topology, self.molecule_key)


def check_options(options: dict[str, Any], name: str | None) -> dict[str, Any]:
    """One line for a bad option (a typo in the solvent, a bad memory), before any
    molecule is read, instead of the same error once per molecule. Returns the options as
    the spec validated them (enums, the solvent's spelling), for the second pass."""
    unknown = sorted(set(options) - set(SPEC_OPTIONS))
    if unknown:
        raise InputError(f"unknown job option(s): {', '.join(unknown)} "
                         f"(known: {', '.join(SPEC_OPTIONS)})")
    try:
        probe = JobSpec(molecule=_PROBE, name=name, **options)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None
    return {key: getattr(probe, key) for key in options}


def build_spec(molecule: Molecule, name: str, charge: int, uhf: int,
               options: dict[str, Any]) -> JobSpec:
    try:
        return JobSpec(molecule=molecule, name=name, charge=charge, uhf=uhf, **options)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None


class FirstPass:
    """Every record checked as it arrives, the good ones kept compactly."""

    def __init__(self, options: dict[str, Any], *, charge: int | None, uhf: int | None,
                 name: str | None) -> None:
        self.options = options
        self.charge, self.uhf, self.name = charge, uhf, name
        self.pending: list[Pending] = []
        self.bad: list[BadRecord] = []
        self._symbols: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._keys: dict[str, str] = {}  # one string per molecule, shared by its conformers
        self.ensembles = False  # whether any molecule came as conformers
        self._molecules = 0  # molecules seen (a conformer counts with its molecule)
        self._last: tuple[str, int] | None = None  # (file, index) of the last molecule

    def add(self, item: ReadMolecule | BadRecord) -> None:
        if isinstance(item, BadRecord):
            self.bad.append(item)
            return
        charge = self.charge if self.charge is not None else (item.charge or 0)
        uhf = self.uhf if self.uhf is not None else (item.uhf or 0)
        here = (item.where.file, item.where.index)
        if item.conformer is None or item.conformer[0] == 1 or here != self._last:
            self._molecules += 1
        self._last = here
        job_name = item.name
        if self.name is not None:
            job_name = indexed_name(self.name, self._molecules)
            if item.conformer is not None:
                job_name = conformer_name(job_name, *item.conformer)
        try:
            spec = build_spec(item.molecule, job_name, charge, uhf, self.options)
        except InputError as exc:
            self.bad.append(BadRecord(item.where, str(exc)))
            return
        self.ensembles |= item.conformer is not None
        pending = Pending.of(spec, self._symbols, item.topology)
        key = molecule_key(item.smiles, charge, uhf, b"" if item.smiles else
                           " ".join(pending.symbols).encode() + pending.coords.tobytes())
        self.pending.append(replace(pending, molecule_key=self._keys.setdefault(key, key)))

    def finish(self) -> list[Pending]:
        """The molecules to write (a single one named by `name` itself)."""
        if len(self.pending) == 1 and self.name is not None:
            self.pending[0] = self.pending[0].renamed(self.name)
        return self.pending


def rebuild(chunk: Sequence[Pending], validated: dict[str, Any]
            ) -> list[tuple[JobSpec, str, str | None, str | None]]:
    """The second pass's (spec, input XYZ, topology.json or None, molecule key) items,
    from a template
    holding every per-job option as validated and each molecule's own values."""
    base = JobSpec(molecule=_PROBE, **validated)
    out = []
    for p in chunk:
        spec = base.model_copy(update={"molecule": p.molecule(), "name": p.name,
                                       "charge": p.charge, "uhf": p.uhf})
        out.append((spec, spec.molecule.to_xyz(), packed_json(p.topology), p.molecule_key))
    return out


def write(store: JobStore, pending: Sequence[Pending], validated: dict[str, Any], *,
          group: str, force: bool, owner: str,
          progress: Callable[[int], None] = lambda n: None,
          ) -> tuple[str, list[Submitted]]:
    """The second pass: specs rebuilt and written CHUNK at a time. Returns the first
    molecule's description (formula, method, task) and every outcome compactly."""
    out: list[Submitted] = []
    what = ""
    for start in range(0, len(pending), CHUNK):
        items = rebuild(pending[start:start + CHUNK], validated)
        done = store.submit_batch(items, group=group, force=force, owner=owner,
                                  on_progress=_offset(progress, len(out)))
        if not what and done:
            spec = done[0].record.spec
            what = f"({spec.molecule.formula}, {spec.method.value} {spec.task.value})"
        out += map(_outcome, done, (p.molecule_key for p in pending[start:start + CHUNK]))
    return what, out


def _outcome(sub: StoreSubmitted, key: str | None) -> Submitted:
    rec = sub.record
    # every value comes from a validated record: not validated again (100,000 of them)
    return Submitted.model_construct(job_id=rec.job_id, name=rec.spec.name,
                                     status=rec.status, duplicate_of=sub.duplicate_of,
                                     molecule=rec.molecule or key)


def _offset(progress: Callable[[int], None], base: int) -> Callable[[int], None]:
    return lambda n: progress(base + n)
