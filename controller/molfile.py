"""MDL molfiles (SDF records) of results: coordinates with their bond table.

`sdf_record` writes one record: a 3D header, the atoms, the bonds with their orders,
formal charges (``M  CHG``) and radicals (``M  RAD``), then data items. V2000 while it
can hold the molecule (at most 999 atoms and 999 bonds), V3000 beyond.

`export_topology` decides which bond table a job's record gets: the one kept from its
SDF/MOL or SMILES input (topology.json); else bonds perceived from the geometry by
RDKit's `rdDetermineBonds.DetermineBonds` with the job's charge; else, when that fails,
RDKit's connectivity alone (single bonds), and when RDKit is not installed, none. The
second element of what it returns says which, in words, for the record's ``topology``
data item: nothing is left out silently.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from qforge.inputs.topology import Topology, TopologyError, read_topology
from qforge.store.layout import TOPOLOGY_FILE
from qforge_runner.molecule import Molecule
from qforge_runner.spec import JobSpec

# Bond orders are perceived for molecules up to this size (RDKit's search over
# valences grows quickly with the molecule); bigger ones get their connectivity only.
MAX_PERCEIVE_ATOMS: Final = 300
_V2000_MAX: Final = 999
_RAD_CODE: Final = {1: 2, 2: 3}  # radical electrons -> MDL's RAD (2 doublet, 3 triplet)


def _v2000_lines(molecule: Molecule, topology: Topology | None) -> list[str]:
    bonds = topology.bonds if topology else ()
    lines = [f"{molecule.natoms:3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000"]
    for sym, (x, y, z) in zip(molecule.symbols, molecule.geometry, strict=True):
        lines.append(f"{x:10.4f}{y:10.4f}{z:10.4f} {sym:<3s} 0  0  0  0  0  0  0  0  0  0"
                     "  0  0")
    lines += [f"{i + 1:3d}{j + 1:3d}{order:3d}  0" for i, j, order in bonds]
    if topology is not None:
        for tag, items in (("CHG", list(topology.charges)),
                           ("RAD", [(a, _RAD_CODE[n]) for a, n in topology.radicals])):
            for start in range(0, len(items), 8):
                chunk = items[start:start + 8]
                lines.append(f"M  {tag}{len(chunk):3d}"
                             + "".join(f" {a + 1:3d} {v:3d}" for a, v in chunk))
    return lines


def _v3000_lines(molecule: Molecule, topology: Topology | None) -> list[str]:
    bonds = topology.bonds if topology else ()
    charges = dict(topology.charges) if topology else {}
    radicals = dict(topology.radicals) if topology else {}
    lines = ["  0  0  0     0  0            999 V3000", "M  V30 BEGIN CTAB",
             f"M  V30 COUNTS {molecule.natoms} {len(bonds)} 0 0 0", "M  V30 BEGIN ATOM"]
    for n, (sym, (x, y, z)) in enumerate(zip(molecule.symbols, molecule.geometry,
                                             strict=True)):
        extra = (f" CHG={charges[n]}" if n in charges else "") + (
            f" RAD={_RAD_CODE[radicals[n]]}" if n in radicals else "")
        lines.append(f"M  V30 {n + 1} {sym} {x:.4f} {y:.4f} {z:.4f} 0{extra}")
    lines.append("M  V30 END ATOM")
    if bonds:
        lines.append("M  V30 BEGIN BOND")
        lines += [f"M  V30 {k} {order} {i + 1} {j + 1}"
                  for k, (i, j, order) in enumerate(bonds, start=1)]
        lines.append("M  V30 END BOND")
    lines.append("M  V30 END CTAB")
    return lines


def _one_line(value: str) -> str:
    """A data item's value on one line (a blank line would end the item)."""
    return " ".join(value.split()) if "\n" in value or "\r" in value else value


def sdf_record(molecule: Molecule, title: str, topology: Topology | None,
               props: Sequence[tuple[str, str]]) -> str:
    """One SDF record: the molfile (3D), its data items, ``$$$$``."""
    if topology is not None and any(n not in _RAD_CODE for _, n in topology.radicals):
        raise TopologyError("an atom with more than 2 radical electrons cannot be written "
                            "in an MDL molfile")
    header = [" ".join(title.split())[:80], "  qforge" + " " * 12 + "3D", ""]
    nbonds = len(topology.bonds) if topology else 0
    small = molecule.natoms <= _V2000_MAX and nbonds <= _V2000_MAX
    body = _v2000_lines(molecule, topology) if small else _v3000_lines(molecule, topology)
    lines = [*header, *body, "M  END"]
    for key, value in props:
        lines += [f">  <{key}>", _one_line(value), ""]
    lines.append("$$$$")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- which bond table
@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """RDKit's bond perception prints its failures to C++'s std::cerr (file
    descriptor 2), not through its logger: hidden here, the reason goes into the
    record's property instead."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _rdkit_mol(molecule: Molecule) -> Any:
    from rdkit import Chem

    mol = Chem.MolFromXYZBlock(molecule.to_xyz())
    if mol is None:
        raise ValueError("RDKit cannot read the geometry")
    return mol


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def perceive(molecule: Molecule, charge: int, uhf: int) -> tuple[Topology | None, str]:
    """Bonds and bond orders from the geometry (RDKit's DetermineBonds with `charge`),
    or the connectivity alone when that fails; the words say which and why."""
    try:
        from rdkit import Chem, rdBase
        from rdkit.Chem import rdDetermineBonds
    except ImportError:
        return None, "none: perceiving bonds needs RDKit (pip install 'qforge[cli]')"
    from qforge.inputs.topology import from_rdkit

    quiet: Any = rdBase.BlockLogs()  # noqa: F841 - RDKit logs nothing while it lives
    why = ""
    if molecule.natoms <= MAX_PERCEIVE_ATOMS:
        for charged_fragments in (True, False) if uhf else (True,):
            try:
                mol = _rdkit_mol(molecule)
                with _quiet_stderr():
                    rdDetermineBonds.DetermineBonds(mol, charge=charge,
                                                    allowChargedFragments=charged_fragments)
                Chem.SanitizeMol(mol)
            except Exception as exc:  # RDKit raises ValueError, RuntimeError, its own
                why = _first_line(exc)
                continue
            found = from_rdkit(mol, "perceived")
            if found is None:
                why = "RDKit gave bonds an MDL molfile cannot hold"
                continue
            if found.radical_electrons != uhf:
                why = (f"RDKit's structure has {found.radical_electrons} unpaired electrons, "
                       f"the job {uhf}")
                continue
            return found, f"perceived from the geometry (RDKit DetermineBonds, charge {charge})"
    else:
        why = f"more than {MAX_PERCEIVE_ATOMS} atoms"
    try:
        mol = _rdkit_mol(molecule)
        with _quiet_stderr():
            rdDetermineBonds.DetermineConnectivity(mol)
    except Exception as exc:  # as above
        return None, f"none: RDKit could not perceive bonds ({why or _first_line(exc)})"
    bonds = tuple((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), 1) for b in mol.GetBonds())
    return (Topology(bonds, source="perceived"),
            f"connectivity only, all bonds single: bond orders not determined ({why})")


def export_topology(path: Path, molecule: Molecule, charge: int, uhf: int
                    ) -> tuple[Topology | None, str]:
    """The bond table for a job's exported structure (`path`: its topology.json), and
    how it was obtained (see the module's docstring)."""
    try:
        kept = read_topology(path, molecule.natoms)
    except TopologyError as exc:
        found, how = perceive(molecule, charge, uhf)
        return found, f"{how}; {path.name} unusable: {exc}"
    if kept is not None:
        return kept, f"from the input ({kept.source})"
    return perceive(molecule, charge, uhf)


def qcschema_connectivity(job_dir: Path, spec: JobSpec) -> list[tuple[int, int, float]] | None:
    """The QCSchema connectivity of a job: its kept bond table (topology.json), else
    none (QCSchema's connectivity is optional; a perceived one would be a guess)."""
    try:
        kept = read_topology(job_dir / TOPOLOGY_FILE, spec.molecule.natoms)
    except TopologyError:
        return None
    return None if kept is None else kept.qcschema_connectivity()
