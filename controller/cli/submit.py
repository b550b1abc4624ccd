"""`qforge submit`: many molecules in one call, validated before anything is written.

Two passes keep memory bounded for 100,000 molecules. The first reads every input
once (qforge.inputs), builds and validates each molecule's JobSpec and keeps only
a compact `Pending` (its symbols, its coordinates as an array of doubles, its name,
charge and unpaired electrons); a bad record stops the submission there, before anything
is written, unless --skip-invalid. The second rebuilds the specs a chunk at a time from
those already validated values (`model_construct`: validating them a second time would
cost as much as the first pass) and hands them to `JobStore.submit_batch`.

Per-job options apply to every molecule. --charge / --uhf override what a record
says (SMILES, SDF and QCSchema carry their own; XYZ does not: 0 and 0 by default).
--name names a single molecule; for a batch it is the stem of `<name>_<n>`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from pydantic import ValidationError

from qforge.cli import campaign, commands, render
from qforge.cli.progress import Bar, progress_bar
from qforge.inputs import (
    BadRecord,
    Format,
    Limits,
    ReadMolecule,
    expand_sources,
    read_sources,
)
from qforge.inputs.names import indexed_name
from qforge.inputs.topology import Topology, kept_topology, packed_json
from qforge.record import Status
from qforge.settings import Settings
from qforge.store.jobstore import JobStore, Submitted, default_group, validate_group
from qforge_runner.errors import InputError
from qforge_runner.molecule import Molecule
from qforge_runner.spec import JobSpec

# Options of the command that go into every molecule's spec as they are.
SPEC_OPTIONS: Final = ("method", "task", "opt_level", "solvent", "timeout", "cpu", "memory",
                       "priority", "temperature")
CHUNK: Final = 500  # specs rebuilt and written per submit_batch call
PROGRESS_MIN: Final = 200  # batches at least this big get a progress bar (on a terminal)
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

    @classmethod
    def of(cls, spec: JobSpec, symbols_cache: dict[tuple[str, ...], tuple[str, ...]],
           topology: Topology | None = None) -> Pending:
        mol = spec.molecule
        symbols = symbols_cache.setdefault(mol.symbols, mol.symbols)  # shared by isomers
        coords = array("d", [c for xyz in mol.geometry for c in xyz])
        return cls(symbols, coords, mol.comment, spec.name or "", spec.charge, spec.uhf,
                   kept_topology(topology, spec))

    def molecule(self) -> Molecule:
        """The validated molecule again (not validated a second time)."""
        c = self.coords
        geometry = tuple((c[i], c[i + 1], c[i + 2]) for i in range(0, len(c), 3))
        return Molecule.model_construct(symbols=self.symbols, geometry=geometry,
                                        comment=self.comment)

    def renamed(self, name: str) -> Pending:
        return Pending(self.symbols, self.coords, self.comment, name, self.charge, self.uhf,
                       self.topology)


def spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The per-job options given on the command line (charge, uhf and name apart)."""
    fields = {name: getattr(args, name) for name in SPEC_OPTIONS
              if getattr(args, name, None) is not None}
    labels = commands.parse_labels(getattr(args, "label", None) or [])
    if labels:
        fields["labels"] = labels
    return fields


def check_options(options: dict[str, Any], name: str | None) -> dict[str, Any]:
    """One line for a bad option (a typo in --solvent, a bad --memory), before any file
    is read, instead of the same error once per molecule. Returns the options as the
    spec validated them (enums, the solvent's spelling), for the second pass."""
    try:
        probe = JobSpec(molecule=_PROBE, name=name, **options)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None
    return {key: getattr(probe, key) for key in options}


def template(validated: dict[str, Any]) -> JobSpec:
    """A spec holding every per-job option as validated (`check_options`), the defaults
    for the rest: the second pass copies it with each molecule's own values."""
    return JobSpec(molecule=_PROBE, **validated)


def build_spec(molecule: Molecule, name: str, charge: int, uhf: int,
               options: dict[str, Any]) -> JobSpec:
    try:
        return JobSpec(molecule=molecule, name=name, charge=charge, uhf=uhf, **options)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None


def _name(item: ReadMolecule, position: int, batch_name: str | None) -> str:
    return item.name if batch_name is None else indexed_name(batch_name, position)


def validate(items: Iterator[ReadMolecule | BadRecord], options: dict[str, Any], *,
             charge: int | None, uhf: int | None, name: str | None,
             tick: Callable[[], None] = lambda: None,
             ) -> tuple[list[Pending], list[BadRecord]]:
    """The first pass: every record checked, the good ones kept compactly."""
    pending: list[Pending] = []
    bad: list[BadRecord] = []
    symbols: dict[tuple[str, ...], tuple[str, ...]] = {}
    for item in items:
        tick()
        if isinstance(item, BadRecord):
            bad.append(item)
            continue
        mol_charge = charge if charge is not None else (item.charge or 0)
        mol_uhf = uhf if uhf is not None else (item.uhf or 0)
        job_name = _name(item, len(pending) + 1, name)
        try:
            spec = build_spec(item.molecule, job_name, mol_charge, mol_uhf, options)
        except InputError as exc:
            bad.append(BadRecord(item.where, str(exc)))
            continue
        pending.append(Pending.of(spec, symbols, item.topology))
    return pending, bad


def rebuild(chunk: Sequence[Pending], validated: dict[str, Any]
            ) -> list[tuple[JobSpec, str, str | None]]:
    """The second pass's (spec, input XYZ) pairs. Every value was validated together in
    the first pass (`validate`) or by `check_options` (`validated`), hence a copy of
    the options' `template` with the molecule's own values (`model_copy` validates
    nothing: as `model_construct`, without looking up the defaults again for each)."""
    base = template(validated)
    out = []
    for p in chunk:
        spec = base.model_copy(update={"molecule": p.molecule(), "name": p.name,
                                       "charge": p.charge, "uhf": p.uhf})
        # with the topology.json text, or None (JobStore.submit_batch keeps it)
        out.append((spec, spec.molecule.to_xyz(), packed_json(p.topology)))
    return out


def _group(args: argparse.Namespace, first_file: str) -> str:
    if args.group is not None:
        return validate_group(args.group)
    return default_group(first_file, datetime.now(UTC))


def submit(args: argparse.Namespace, settings: Settings) -> int:
    fmt = Format(args.format) if args.format else None
    sources = expand_sources(args.inputs, fmt)
    options = spec_options(args)
    validated = check_options(options, args.name)
    group = _group(args, args.inputs[0])
    limits = Limits(max_input_bytes=settings.max_input_bytes, max_atoms=settings.max_atoms)
    store = JobStore(settings.jobs_dir)

    with progress_bar("reading", total=None, enabled=not args.json) as bar:
        pending, bad = validate(read_sources(sources, limits), options, charge=args.charge,
                                uhf=args.uhf, name=args.name, tick=bar.advance)
    if len(pending) == 1 and args.name is not None:
        pending[0] = pending[0].renamed(args.name)
    if len(bad) == 1 and not pending:  # one molecule: one line, as for any bad input
        print(f"qforge: error: {bad[0]}", file=sys.stderr)
        return 2
    for record in bad:
        print(f"qforge: {'skipped ' if args.skip_invalid else ''}{record}", file=sys.stderr)
    if bad and not args.skip_invalid:
        print(f"qforge: error: {len(bad)} of {len(pending) + len(bad)} molecules are invalid; "
              "nothing was submitted (--skip-invalid submits the others)", file=sys.stderr)
        return 2
    if not pending:
        print("qforge: error: no valid molecule; nothing was submitted", file=sys.stderr)
        return 2

    first, outcomes = write(store, pending, validated, group=group, force=args.force,
                            show_progress=not args.json)
    return report(args, settings, store, first, outcomes, group, skipped=len(bad))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What is printed for one molecule (the full records are not kept: 100,000 of them
    would not fit the memory target)."""

    job_id: str
    name: str | None
    status: str
    duplicate_of: str | None

    @classmethod
    def of(cls, sub: Submitted) -> Outcome:
        rec = sub.record
        return cls(rec.job_id, rec.spec.name, rec.status.value, sub.duplicate_of)

    def json_line(self, status: str | None = None) -> str:
        return json.dumps({"job_id": self.job_id, "name": self.name,
                           "status": status or self.status, "duplicate_of": self.duplicate_of})


def write(store: JobStore, pending: Sequence[Pending], validated: dict[str, Any], *,
          group: str, force: bool, show_progress: bool = True,
          ) -> tuple[Submitted, list[Outcome]]:
    """The second pass: specs rebuilt and written CHUNK at a time. Returns the first
    molecule's full outcome (for the one-molecule summary) and every one compactly."""
    first: Submitted | None = None
    out: list[Outcome] = []
    with progress_bar("submitting", total=len(pending),
                      enabled=show_progress and len(pending) >= PROGRESS_MIN) as bar:
        for start in range(0, len(pending), CHUNK):
            items = rebuild(pending[start:start + CHUNK], validated)
            done = store.submit_batch(items, group=group, force=force,
                                      on_progress=partial(_moved, bar, len(out)))
            first = first or done[0]
            out += map(Outcome.of, done)
    if first is None:  # pragma: no cover - submit() returns before with nothing pending
        raise InputError("no molecule to submit")
    return first, out


def _moved(bar: Bar, base: int, n: int) -> None:
    bar.update(base + n)


def report(args: argparse.Namespace, settings: Settings, store: JobStore, first: Submitted,
           outcomes: list[Outcome], group: str, *, skipped: int) -> int:
    if args.wait:
        return _wait(args, settings, store, outcomes)
    if args.json:
        for outcome in outcomes:
            print(outcome.json_line())
        return 0
    if len(outcomes) == 1:
        rec, spec = first.record, first.record.spec
        what = f"({spec.molecule.formula}, {spec.method.value} {spec.task.value})"
        if first.duplicate_of is None:
            print(f"Submitted job {rec.job_id} {what}: {rec.status.value}")
        else:
            print(f"Job {rec.job_id} {what} is already in the store: {rec.status.value} "
                  "(--force runs it again)")
        return 0
    dups = sum(1 for o in outcomes if o.duplicate_of is not None)
    skipped_note = f", {skipped} invalid skipped" if skipped else ""
    print(f"Submitted {len(outcomes)} molecules to group {group}: "
          f"{len(outcomes) - dups} new jobs, {dups} already in the store{skipped_note}")
    print(f"  follow with: qforge status --group {group}; qforge wait --group {group}")
    return 0


def _wait(args: argparse.Namespace, settings: Settings, store: JobStore,
          outcomes: list[Outcome]) -> int:
    """--wait: one job as before (status changes on stderr, then its outcome); a batch
    through `qforge wait`'s live progress (or quietly with --json, then one line per
    molecule with its final status)."""
    ids = list(dict.fromkeys(o.job_id for o in outcomes))
    if len(ids) == 1:
        final = commands.wait_for(store, ids[0], timeout=args.wait_timeout, quiet=args.json)
        if args.json:
            for outcome in outcomes:
                print(outcome.json_line(final.status.value))
        else:
            render.print_outcome(final)
        return 0 if final.status is Status.COMPLETED else 1
    if not args.json:
        follow = argparse.Namespace(group=None, job_ids=ids, timeout=args.wait_timeout,
                                    interval=0.5, json=False)
        return campaign.wait(follow, settings)
    watch = campaign.Watch(store, ids, None)
    start = time.monotonic()
    while not watch.done and (args.wait_timeout is None
                              or time.monotonic() - start < args.wait_timeout):
        time.sleep(0.5)
        watch.poll()
    for outcome in outcomes:
        status = watch.final.get(outcome.job_id) or watch.open.get(outcome.job_id)
        print(outcome.json_line(status.value if status else None))
    return 0 if watch.done and not watch.failed else 1
