"""`qforge submit`: many molecules in one call, validated before anything is written.

The files are read here (qforge.inputs: one record at a time, memory bounded); the
service layer (qforge.service.submission) validates each molecule and writes them all or
none, on the store mounted here or through a server (`QFORGE_SERVER`), the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Final

from qforge.cli import campaign, commands, render
from qforge.cli.progress import progress_bar
from qforge.inputs import Format, Limits, expand_sources, read_sources
from qforge.inputs.conformers import DEFAULT_RMSD, ConformerOptions
from qforge.record import Status
from qforge.service.door import Manager
from qforge.service.models import SubmitOptions, SubmitResult, Submitted
from qforge.service.problems import InvalidMolecules
from qforge.service.submission import SPEC_OPTIONS, check_options
from qforge.settings import Settings
from qforge_runner.errors import InputError

PROGRESS_MIN: Final = 200  # batches at least this big get a progress bar (on a terminal)


def spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The per-job options given on the command line (charge, uhf and name apart)."""
    fields = {name: getattr(args, name) for name in SPEC_OPTIONS
              if name != "labels" and getattr(args, name, None) is not None}
    labels = commands.parse_labels(getattr(args, "label", None) or [])
    if labels:
        fields["labels"] = labels
    return fields


def options_of(args: argparse.Namespace) -> SubmitOptions:
    spec = spec_options(args)
    check_options(spec, args.name)  # one line for a bad option, before any file is read
    return SubmitOptions(group=args.group, first_input=args.inputs[0], name=args.name,
                         charge=args.charge, uhf=args.uhf, force=args.force,
                         skip_invalid=args.skip_invalid, spec=spec,
                         then=getattr(args, "then", None),
                         then_method=getattr(args, "then_method", None),
                         then_for=getattr(args, "then_for", None) or "best")


def conformer_options(args: argparse.Namespace) -> ConformerOptions | None:
    """--conformers N [--conformer-rmsd Å]: None without --conformers."""
    count, rmsd = getattr(args, "conformers", None), getattr(args, "conformer_rmsd", None)
    if count is None:
        if rmsd is not None:
            raise InputError("--conformer-rmsd needs --conformers N")
        return None
    return ConformerOptions(count, DEFAULT_RMSD if rmsd is None else rmsd)


def submit(args: argparse.Namespace, settings: Settings, manager: Manager) -> int:
    fmt = Format(args.format) if args.format else None
    sources = expand_sources(args.inputs, fmt)
    options = options_of(args)
    limits = Limits(max_input_bytes=settings.max_input_bytes, max_atoms=settings.max_atoms)
    conformers = conformer_options(args)
    try:
        with progress_bar("reading", total=None, enabled=not args.json) as bar:
            result = manager.submit(read_sources(sources, limits, conformers), options,
                                    tick=bar.advance)
    except InvalidMolecules as exc:
        if len(exc.lines) == 1 and str(exc) == exc.lines[0]:
            raise  # one molecule: one line, as for any bad input
        for line in exc.lines:
            print(f"qforge: {line}", file=sys.stderr)
        print(f"qforge: error: {exc}", file=sys.stderr)
        return 2
    for line in result.skipped:
        print(f"qforge: skipped {line}", file=sys.stderr)
    return report(args, manager, result)


def _json_line(job: Submitted, status: str | None = None) -> str:
    return json.dumps({"job_id": job.job_id, "name": job.name,
                       "status": status or job.status.value,
                       "duplicate_of": job.duplicate_of})


def report(args: argparse.Namespace, manager: Manager, result: SubmitResult) -> int:
    jobs = result.jobs
    if args.wait:
        return _wait(args, manager, jobs + result.follow_ups)
    if args.json:
        for job in jobs:
            print(_json_line(job))
        for job in result.follow_ups:
            print(_json_line(job)[:-1] + ', "follow_up": true}')
        return 0
    if len(jobs) == 1 and result.molecules is None:
        job = jobs[0]
        if job.duplicate_of is None:
            print(f"Submitted job {job.job_id} {result.first_what}: {job.status.value}")
        else:
            print(f"Job {job.job_id} {result.first_what} is already in the store: "
                  f"{job.status.value} (--force runs it again)")
        _follow_up_line(args, result)
        return 0
    dups = sum(1 for j in jobs if j.duplicate_of is not None)
    skipped_note = f", {len(result.skipped)} invalid skipped" if result.skipped else ""
    what = (f"{len(jobs)} molecules" if result.molecules is None else
            f"{_count(len(jobs), 'conformer job')} of {_count(result.molecules, 'molecule')}")
    print(f"Submitted {what} to group {result.group}: "
          f"{len(jobs) - dups} new jobs, {dups} already in the store{skipped_note}")
    print(f"  follow with: qforge status --group {result.group}; "
          f"qforge wait --group {result.group}")
    _follow_up_line(args, result)
    return 0


def _follow_up_line(args: argparse.Namespace, result: SubmitResult) -> None:
    ups = result.follow_ups
    if ups:
        dups = sum(1 for j in ups if j.duplicate_of is not None)
        per = "of each molecule's lowest-energy job" if args.then_for == "best" \
            else "of each job"
        print(f"Then {args.then}: {len(ups)} follow-up jobs {per}, waiting for their "
              f"parents" + (f" ({dups} already in the store)" if dups else ""))


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _wait(args: argparse.Namespace, manager: Manager, jobs: list[Submitted]) -> int:
    """--wait: one job as before (status changes on stderr, then its outcome); a batch
    through `qforge wait`'s live progress (or quietly with --json, then one line per
    molecule with its final status)."""
    ids = list(dict.fromkeys(j.job_id for j in jobs))
    if len(ids) == 1:
        final = commands.wait_for(manager, ids[0], timeout=args.wait_timeout, quiet=args.json)
        if args.json:
            for job in jobs:
                print(_json_line(job, final.status.value))
        else:
            render.print_outcome(final)
        return 0 if final.status is Status.COMPLETED else 1
    if not args.json:
        follow = argparse.Namespace(group=None, job_ids=ids, timeout=args.wait_timeout,
                                    interval=0.5, json=False)
        return campaign.wait(follow, manager)
    snap, ended = campaign.follow(manager, ids, None, timeout=args.wait_timeout,
                                  interval=0.5, quiet=True)
    statuses = {j: manager.show(j).record["status"] for j in ids} if len(ids) <= 50 else {}
    for job in jobs:
        print(_json_line(job, statuses.get(job.job_id) or snap.failed_status.get(job.job_id)
                         or (Status.COMPLETED.value if snap.done else None)))
    return 0 if ended and not snap.failed else 1
