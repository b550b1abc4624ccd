"""A submission on the wire: NDJSON, streamed. The first line holds the options
(`{"options": {...}}`, a SubmitOptions), every other line one molecule as the client read
it. The server trusts none of it: each line is parsed and validated again here (a bad
line is a bad record of the submission, named by its line number), and the service layer
validates each molecule's job spec as for a local submission."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qforge.inputs import BadRecord, ReadMolecule, Where
from qforge.inputs.names import sanitize_name
from qforge.inputs.topology import Topology, TopologyError
from qforge.service.models import SubmitOptions
from qforge_runner.errors import InputError, validation_line
from qforge_runner.molecule import Molecule


class WireWhere(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field("upload", max_length=4096)
    index: int = Field(1, ge=1)
    line: int | None = Field(None, ge=1)


class WireTopology(BaseModel):
    """A molecule's bond table (qforge.inputs.topology), 0-based atoms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["sdf", "smiles", "qcschema"]
    bonds: list[tuple[int, int, int]] = Field(max_length=1_000_000)
    charges: list[tuple[int, int]] = Field(default_factory=list, max_length=1_000_000)
    radicals: list[tuple[int, int]] = Field(default_factory=list, max_length=1_000_000)


class WireMolecule(BaseModel):
    """One molecule as a client sends it (`qforge.client.remote.encode_molecule`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: list[str]
    geometry: list[list[float]]
    comment: str = Field("", max_length=4096)
    name: str = Field("molecule", max_length=4096)
    charge: int | None = None
    uhf: int | None = None
    where: WireWhere = WireWhere()
    topology: WireTopology | None = None
    # canonical isomeric SMILES (names the molecule: conformers.molecule_key) and, for
    # one conformer of an ensemble, (its number, how many were asked for)
    smiles: str | None = Field(None, min_length=1, max_length=100_000)
    conformer: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None


def encode_molecule(item: ReadMolecule) -> str:
    mol = item.molecule
    where = {"file": item.where.file, "index": item.where.index, "line": item.where.line}
    data: dict[str, Any] = {
        "symbols": list(mol.symbols), "geometry": [list(a) for a in mol.geometry],
        "comment": mol.comment, "name": item.name, "charge": item.charge, "uhf": item.uhf,
        "where": where}
    top = item.topology
    if top is not None:
        data["topology"] = {"source": top.source, "bonds": top.bonds, "charges": top.charges,
                            "radicals": top.radicals}
    if item.smiles is not None:
        data["smiles"] = item.smiles
    if item.conformer is not None:
        data["conformer"] = item.conformer
    return json.dumps(data, separators=(",", ":"))


class WireBad(BaseModel):
    """A record the client could not read: the server lists it among the invalid ones
    (so the submission is refused as a whole, unless skip_invalid)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bad: str = Field(max_length=4096)
    where: WireWhere = WireWhere()


def encode_bad(item: BadRecord) -> str:
    where = {"file": item.where.file, "index": item.where.index, "line": item.where.line}
    return json.dumps({"bad": item.message, "where": where}, separators=(",", ":"))


def decode_options(line: bytes) -> SubmitOptions:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise InputError("the submission's first line must be {\"options\": {...}}") from None
    if not isinstance(data, dict) or set(data) != {"options"}:
        raise InputError("the submission's first line must be {\"options\": {...}}")
    try:
        return SubmitOptions.model_validate(data["options"])
    except ValidationError as exc:
        raise InputError(f"options: {validation_line(exc)}") from None


def decode_molecule(line: bytes, number: int, max_atoms: int) -> ReadMolecule | BadRecord:
    """One line of the body (its 1-based `number` in the upload) as a molecule, or a bad
    record saying what is wrong with it."""
    here = Where("upload", number - 1, number)
    try:
        data: Any = json.loads(line)
        if isinstance(data, dict) and "bad" in data:
            told = WireBad.model_validate(data)
            return BadRecord(Where(told.where.file[:200], told.where.index, told.where.line),
                             told.bad)
        wire = WireMolecule.model_validate(data)
    except RecursionError:
        return BadRecord(here, "nested too deeply to read")
    except ValueError as exc:  # JSON and pydantic's ValidationError alike
        what = validation_line(exc) if isinstance(exc, ValidationError) else "not JSON"
        return BadRecord(here, f"not a molecule: {what}")
    where = Where(wire.where.file[:200], wire.where.index, wire.where.line)
    if len(wire.symbols) > max_atoms:
        return BadRecord(where, f"{len(wire.symbols)} atoms: more than MAX_ATOMS={max_atoms}")
    try:
        molecule = Molecule(symbols=tuple(wire.symbols),
                            geometry=tuple(tuple(a) for a in wire.geometry),
                            comment=wire.comment)
    except ValidationError as exc:
        return BadRecord(where, validation_line(exc))
    name = sanitize_name(wire.name) or "molecule"
    topology = None
    if wire.topology is not None:
        t = wire.topology
        try:
            topology = Topology(tuple(t.bonds), tuple(t.charges), tuple(t.radicals),
                                t.source).check(molecule.natoms)
        except TopologyError as exc:
            return BadRecord(where, f"topology: {exc}")
    return ReadMolecule(molecule=molecule, name=name, where=where, charge=wire.charge,
                        uhf=wire.uhf, topology=topology, smiles=wire.smiles,
                        conformer=wire.conformer)
