"""An SDF read back by RDKit, with what RDKit logged meanwhile (its warnings too): the
chemistry tests assert both the molecules and the silence."""

from __future__ import annotations

import logging
from typing import Any


def read_sdf(text: str) -> tuple[list[Any], list[str]]:
    """Every record of `text` as RDKit's SDMolSupplier reads it (hydrogens kept), and
    every message RDKit logged while reading."""
    from rdkit import Chem, rdBase

    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    rdBase.LogToPythonLogger()
    logger = logging.getLogger("rdkit")
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [Keep()], False
    logger.setLevel(logging.DEBUG)
    try:
        supplier = Chem.SDMolSupplier()
        supplier.SetData(text, removeHs=False)
        mols = list(supplier)
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    return mols, messages
