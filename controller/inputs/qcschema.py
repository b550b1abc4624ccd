"""JSON: one QCSchema molecule, or a list of them (the whole file is parsed at once,
within MAX_INPUT_BYTES). Charge and multiplicity come from each molecule."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from qforge.inputs.model import BadRecord, Limits, Raw, Where
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
        yield Raw(molecule, where, name if isinstance(name, str) else None, charge, uhf)
