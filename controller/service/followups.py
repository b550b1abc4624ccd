"""Follow-up steps at submit (`qforge submit ... --then hess --then-for best|all`).

Each follow-up is a job that waits for its parents (qforge.store.waiting) and starts,
once they have ended, from the optimised geometry of the lowest-energy one that
COMPLETED (qforge.scheduling.dependencies):

- `all`: one follow-up per submitted job, waiting for that job alone;
- `best` (the default): one follow-up per molecule — the jobs sharing a molecule key
  (the record's `molecule`; a job without one is a molecule of its own) — waiting for
  every one of them.

A follow-up keeps its parents' options (charge, uhf, solvent, opt level, resources,
priority, labels), changes the task (and the method, when given), is named
`<parent's name>-<task>`, carries the molecule key, and is in the submission's group
and owner. Its input is not known at submit: its dedup key is its parents and its step
(qforge.store.submission.follow_up_hash), so it never merges with an unrelated job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ValidationError

from qforge.kubesyntax import is_label_value
from qforge.record import JobRecord
from qforge.service.models import SubmitOptions, Submitted
from qforge.service.submission import Pending, check_options
from qforge.spec import JobSpec
from qforge.store.jobstore import JobStore
from qforge.store.layout import TOPOLOGY_FILE
from qforge_runner.elements import ATOMIC_NUMBER
from qforge_runner.errors import InputError
from qforge_runner.spec import MAX_ATOMIC_NUMBER, METHOD_NAMES, Method, Task

MAX_NAME = 63


def molecule_key(record: JobRecord) -> str:
    """The molecule a record computes: its key, or (none) the job itself."""
    return record.molecule or record.job_id


def plan(parents: Sequence[JobRecord], per: Literal["best", "all"]) -> list[list[JobRecord]]:
    """The parents of each follow-up, in submission order."""
    if per == "all":
        return [[p] for p in parents]
    molecules: dict[str, list[JobRecord]] = {}
    for parent in parents:
        molecules.setdefault(molecule_key(parent), []).append(parent)
    return list(molecules.values())


def follow_up_name(name: str | None, task: Task) -> str | None:
    if name is None:
        return None
    suffix = f"-{task.value}"
    stem = name[:MAX_NAME - len(suffix)].rstrip("-_.")
    candidate = f"{stem}{suffix}"
    return candidate if stem and is_label_value(candidate) else None


def follow_up_spec(parent: JobSpec, task: Task, method: Method | None) -> JobSpec:
    """A parent's spec with the follow-up's step (InputError: a combination xtb cannot
    run, e.g. a method for an element it does not cover)."""
    data = {name: getattr(parent, name) for name in JobSpec.model_fields}
    data.update(task=task, method=method or parent.method,
                name=follow_up_name(parent.name, task))
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError.from_validation_error(exc) from None


def check_then(options: SubmitOptions) -> None:
    """One line for a follow-up step the options cannot run, before anything is read."""
    if options.then is not None:
        method = {"method": options.then_method} if options.then_method else {}
        check_options({**options.spec, "task": options.then, **method}, options.name)


def check_then_elements(options: SubmitOptions, pending: Sequence[Pending]) -> None:
    """Before anything is written: every molecule has parameters in the follow-up's
    method (`--then-method gfn2` after `--method gfnff` on an actinide, say)."""
    method = options.then_method
    if options.then is None or method is None:
        return
    limit = MAX_ATOMIC_NUMBER[method]
    for n, p in enumerate(pending, start=1):
        heavy = [s for s in set(p.symbols) if ATOMIC_NUMBER[s] > limit]
        if heavy:
            raise InputError(f"molecule {n} ({p.name or 'unnamed'}): {METHOD_NAMES[method]} "
                             f"(--then-method) has no parameters for {', '.join(sorted(heavy))}")


def submit_follow_ups(store: JobStore, jobs: Sequence[Submitted], options: SubmitOptions,
                      group: str, owner: str) -> list[Submitted]:
    """Create the follow-ups of a submission's jobs (each distinct job once); none
    without `options.then`."""
    if options.then is None:
        return []
    return make_follow_ups(store, jobs, task=options.then, method=options.then_method,
                           per=options.then_for, group=group, owner=owner)


def make_follow_ups(store: JobStore, jobs: Sequence[Submitted], *, task: Task,
                    method: Method | None, per: Literal["best", "all"], group: str,
                    owner: str) -> list[Submitted]:
    ids = list(dict.fromkeys(j.job_id for j in jobs))
    parents = [store.read(job_id) for job_id in ids]
    out: list[Submitted] = []
    for chunk in plan(parents, per):
        first = chunk[0]
        spec = follow_up_spec(first.spec, task, method)
        topology = store.layout.job_dir(first.job_id) / TOPOLOGY_FILE
        sub = store.submit_follow_up(
            spec, input_text=spec.molecule.to_xyz(),
            depends_on=tuple(p.job_id for p in chunk), molecule=molecule_key(first),
            group=group, owner=owner,
            topology=topology.read_text() if topology.exists() else None)
        rec = sub.record
        out.append(Submitted(job_id=rec.job_id, name=rec.spec.name, status=rec.status,
                             duplicate_of=sub.duplicate_of))
    return out
