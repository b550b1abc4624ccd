"""From the paths of a `qforge submit` to a stream of named molecules and bad records.

A FILE is read in the format of its extension (formats.EXTENSIONS) unless --format
names one; ``-`` (stdin) and files of other extensions are sniffed from their first
lines (formats.sniff). A DIR stands for the files in it with a known extension, sorted
by name (not its subfolders, nor hidden files).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qforge.inputs.conformers import ConformerOptions, conformer_name
from qforge.inputs.formats import EXTENSIONS, Format, from_extension, sniff
from qforge.inputs.model import BadRecord, Limits, Raw, ReadMolecule
from qforge.inputs.names import file_stem, pick_name
from qforge.inputs.qcschema import read_qcschema
from qforge.inputs.sdf import read_sdf
from qforge.inputs.smiles import read_smiles
from qforge.inputs.stream import Budget, Stream
from qforge.inputs.xyz import read_xyz
from qforge_runner.errors import InputError


@dataclass(frozen=True)
class Source:
    """One input: `file` as the user named it ("stdin" for -), its path (None for
    stdin) and its format."""

    file: str
    path: Path | None
    format: Format | None  # None: sniffed from the first lines


def expand_sources(args: Sequence[str], fmt: Format | None = None) -> list[Source]:
    """The inputs named on the command line, folders expanded; InputError when one
    does not exist, a folder holds no molecule file, or stdin is named twice."""
    if not args:
        raise InputError("no input: name molecule files, a folder, or - for stdin")
    sources: list[Source] = []
    stdin_seen = False
    for arg in args:
        if arg == "-":
            if stdin_seen:
                raise InputError("- (stdin) is named twice")
            stdin_seen = True
            sources.append(Source("stdin", None, fmt))
            continue
        path = Path(arg)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise InputError(f"{arg}: no such file") from None
        except OSError as exc:
            raise InputError(f"{arg}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            found = sorted(
                child for child in path.iterdir()
                if not child.name.startswith(".") and from_extension(child.name) is not None
                and child.is_file())
            if not found:
                known = ", ".join(sorted(EXTENSIONS))
                raise InputError(f"{arg}: a folder with no molecule files ({known})")
            sources += [Source(str(child), child, fmt or from_extension(child.name))
                        for child in found]
        else:
            sources.append(Source(arg, path, fmt or from_extension(arg)))
    return sources


def _sizes(sources: Sequence[Source]) -> list[tuple[str, int]]:
    sizes = []
    for src in sources:
        if src.path is None:
            continue
        st = os.stat(src.path)
        if stat.S_ISREG(st.st_mode):
            sizes.append((src.file, st.st_size))
    return sizes


def _named(raws: Iterator[Raw | BadRecord], stem: str) -> Iterator[ReadMolecule | BadRecord]:
    """Name each molecule: its own title, else the file's stem when the file holds one
    record, else `<stem>_<n>` (the first record waits until the second shows)."""
    pending = next(raws, None)
    if pending is None:
        return
    second = next(raws, None)
    single = second is None

    def named(item: Raw | BadRecord) -> Iterator[ReadMolecule | BadRecord]:
        if isinstance(item, BadRecord):
            yield item
            return
        name = pick_name(item.title, stem, item.where.index, single=single)
        if not item.conformers:
            yield ReadMolecule(item.molecule, name, item.where, item.charge, item.uhf,
                               item.topology, item.smiles)
            return
        for k, molecule in enumerate(item.conformers, start=1):
            yield ReadMolecule(molecule, conformer_name(name, k, item.asked), item.where,
                               item.charge, item.uhf, item.topology, item.smiles,
                               (k, item.asked))

    yield from named(pending)
    if second is not None:
        yield from named(second)
        for item in raws:
            yield from named(item)


def _records(src: Source, stream: Stream, limits: Limits,
             conformers: ConformerOptions | None) -> Iterator[Raw | BadRecord]:
    if not stream.head().strip():
        raise InputError(f"{src.file}: empty, no molecule in it")
    fmt = src.format or sniff(stream.head())
    if fmt is None:
        raise InputError(f"{src.file}: cannot tell the molecule format; name it with "
                         "--format xyz|sdf|smi|json")
    if conformers is not None and fmt in (Format.xyz, Format.json):
        raise InputError(f"{src.file}: --conformers needs SMILES or SDF/MOL input (bonds "
                         f"to embed), not {fmt.value}")
    if fmt is Format.json:
        return read_qcschema(stream.read_text(), src.file, limits)
    if fmt is Format.xyz:
        return read_xyz(stream.lines(), src.file, limits)
    reader = read_sdf if fmt is Format.sdf else read_smiles
    return reader(stream.lines(), src.file, limits, conformers)


def read_sources(sources: Sequence[Source], limits: Limits,
                 conformers: ConformerOptions | None = None
                 ) -> Iterator[ReadMolecule | BadRecord]:
    """Every molecule of every source, in order, or the bad record in its place; with
    `conformers`, every conformer of every molecule (SMILES and SDF/MOL only).

    InputError (nothing should be submitted) for what spoils a whole input: over
    MAX_INPUT_BYTES, not text, unreadable, of an unknown format, or empty.
    """
    budget = Budget(limits.max_input_bytes)
    budget.check_sizes(_sizes(sources))
    for src in sources:
        try:
            stream = Stream(src.file, src.path, budget)
        except IsADirectoryError:
            raise InputError(f"{src.file}: is a directory") from None
        except OSError as exc:
            raise InputError(f"{src.file}: {exc.strerror or exc}") from None
        with stream:
            count = 0
            for item in _named(_records(src, stream, limits, conformers),
                               file_stem(src.file)):
                count += 1
                yield item
            if count == 0:
                raise InputError(f"{src.file}: no molecule in it")
