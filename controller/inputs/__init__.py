"""Molecule files in, molecules out: the readers behind `qforge submit`.

`read_sources` turns paths (files, folders, ``-`` for stdin) into a stream of
`ReadMolecule` (a validated `Molecule` with its name, charge and unpaired electrons)
and `BadRecord` (what is wrong with one record, and where). The readers are pure in
the sense that they write nothing; they read each input once, a line or a record at a
time, so memory stays bounded whatever the file size. XYZ and QCSchema need nothing
but the base package; SDF/MOL and SMILES need RDKit (the ``cli`` extra).
"""

from qforge.inputs.formats import Format
from qforge.inputs.model import BadRecord, Limits, ReadMolecule, Where
from qforge.inputs.reader import expand_sources, read_sources

__all__ = ["BadRecord", "Format", "Limits", "ReadMolecule", "Where", "expand_sources",
           "read_sources"]
