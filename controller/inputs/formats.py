"""The input formats, told from a file's extension or, failing that, its first lines."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePath
from typing import Final


class Format(StrEnum):
    xyz = "xyz"  # one or many concatenated XYZ frames (Å)
    sdf = "sdf"  # SDF / MOL: one or many records (RDKit)
    smi = "smi"  # SMILES, one a line, optional name column (RDKit, embedded in 3D)
    json = "json"  # one QCSchema molecule, or a list of them


EXTENSIONS: Final[dict[str, Format]] = {
    ".xyz": Format.xyz,
    ".sdf": Format.sdf,
    ".sd": Format.sdf,
    ".mol": Format.sdf,
    ".smi": Format.smi,
    ".smiles": Format.smi,
    ".json": Format.json,
}

# A first token made of SMILES characters only (atoms, bonds, rings, branches, charges).
_JSON_LIST = re.compile(r"^\[\s*(\{|\]|$)")  # "[{" or "[]", not a SMILES "[NH4+]"
_SMILES_TOKEN = re.compile(r"^[A-Za-z0-9@+\-\[\]()=#$%/\\.:*~]+$")


def from_extension(file: str) -> Format | None:
    return EXTENSIONS.get(PurePath(file).suffix.lower())


def sniff(head: str) -> Format | None:
    """The format of a text from its beginning (a few KiB), or None when unclear.

    JSON starts with '{' or '['; XYZ with an atom count alone on its line; an SDF or
    MOL file has a V2000/V3000 counts line or 'M  END' within its first records;
    SMILES is a first word made of SMILES characters. Checked in that order.
    """
    body = head.lstrip("\ufeff")
    stripped = body.lstrip()
    if stripped.startswith("{") or _JSON_LIST.match(stripped):
        return Format.json
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0].split()
    if len(first) == 1 and first[0].isdecimal():
        return Format.xyz
    if "V2000" in body or "V3000" in body or "M  END" in body:
        return Format.sdf
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        token = line.split()[0]
        return Format.smi if _SMILES_TOKEN.match(token) else None
    return None
