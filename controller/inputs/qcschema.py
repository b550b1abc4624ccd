"""JSON: one QCSchema molecule, or a list of them (the whole file is parsed at once,
within MAX_INPUT_BYTES). Charge and multiplicity come from each molecule.

A molecule's `connectivity` ([atom, atom, bond order], 0-based) is kept as its topology
when every order is 1, 2 or 3 and the molecule is neutral and closed-shell (QCSchema
has no per-atom formal charges or radicals to write back); otherwise the export
perceives bonds from the geometry, as for XYZ input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from qforge.inputs.model import BadRecord, Limits, Raw, Where
from qforge.inputs.topology import Topology, TopologyError
from qforge_runner.errors import InputError
from qforge_runner.molecule import parse_qcschema_molecule, qcschema_charge_uhf


def read_qcschema(text: str, file: str, limits: Limits) -> Iterator[Raw | BadRecord]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield BadRecord(Where(file, 1, exc.lineno),
                        f"not valid JSON (line {exc.lineno} column {exc.colno}): {exc.msg}")
        return
    except RecursionError:  # e.g. [[[[...]]]] 100,000 deep: no molecule is nested so
        yield BadRecord(Where(file, 1), "not a QCSchema molecule: the JSON is nested too "
                                        "deeply to read")
        return
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items, start=1):
        where = Where(file, index)
        if not isinstance(item, Mapping):
            yield BadRecord(where, "expected a QCSchema molecule (a JSON object)")
            continue
        symbols = item.get("symbols")
        if isinstance(symbols, list) and len(symbols) > limits.max_atoms:
            yield BadRecord(where, f"{len(symbols)} atoms, more than "
                                   f"MAX_ATOMS={limits.max_atoms}")
            continue
        try:
            molecule = parse_qcschema_molecule(item)
            charge, uhf = qcschema_charge_uhf(item)
        except InputError as exc:
            yield BadRecord(where, str(exc))
            continue
        name = item.get("name")
        yield Raw(molecule, where, name if isinstance(name, str) else None, charge, uhf,
                  _topology(item.get("connectivity"), molecule.natoms))


def _topology(connectivity: object, natoms: int) -> Topology | None:
    """A QCSchema connectivity as a kept topology, when it can be one (see above); a
    malformed one is left to the export's perception rather than refused."""
    if not isinstance(connectivity, list) or not connectivity:
        return None
    bonds = []
    for bond in connectivity:
        if not (isinstance(bond, list) and len(bond) == 3
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bond)):
            return None
        i, j, order = bond
        if i != int(i) or j != int(j) or order not in (1, 2, 3):
            return None
        bonds.append((int(i), int(j), int(order)))
    try:
        return Topology(tuple(bonds), source="qcschema").check(natoms)
    except TopologyError:
        return None
