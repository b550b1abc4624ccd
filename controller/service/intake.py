"""A submission, whole: its options and every molecule checked before anything is
written (all or nothing, unless `skip_invalid`), the owner's quota, the jobs written
(qforge.service.submission) and their follow-up steps (qforge.service.followups)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from qforge.auth.roles import Identity, require_submit
from qforge.inputs import BadRecord, ReadMolecule
from qforge.scheduling.quota import check_owner_quota
from qforge.service import submission
from qforge.service.followups import check_then, check_then_elements, submit_follow_ups
from qforge.service.models import SubmitOptions, SubmitResult
from qforge.service.problems import InvalidMolecules, UsageError
from qforge.service.waiting import owners_cache
from qforge.settings import Settings
from qforge.store.jobstore import JobStore, default_group, validate_group

log = logging.getLogger(__name__)


def submit(store: JobStore, identity: Identity, settings: Settings,
           items: Iterable[ReadMolecule | BadRecord], options: SubmitOptions, *,
           tick: Callable[[], None], progress: Callable[[int], None]) -> SubmitResult:
    """A molecule already queued, running or completed is not run again (unless
    `force`) and joins the group."""
    require_submit(identity)
    validated = submission.check_options(dict(options.spec), options.name)
    check_then(options)  # the follow-up's step, checked as early
    group = (validate_group(options.group) if options.group is not None
             else default_group(options.first_input, datetime.now(UTC)))
    first = submission.FirstPass(dict(options.spec), charge=options.charge,
                                 uhf=options.uhf, name=options.name)
    for item in items:
        tick()
        first.add(item)
    pending = first.finish()
    bad = [str(b) for b in first.bad]
    if bad and not options.skip_invalid:
        raise InvalidMolecules(bad, len(pending) + len(bad))
    if not pending:
        raise InvalidMolecules(bad, len(bad)) if len(bad) == 1 else UsageError(
            "no valid molecule; nothing was submitted")
    check_then_elements(options, pending)
    # past the owner's OWNER_MAX_QUEUED: refused whole, before anything is written
    check_owner_quota(store, identity.name, len(pending) * (2 if options.then else 1),
                      settings, owners=owners_cache(store))
    what, jobs = submission.write(store, pending, validated, group=group,
                                  force=options.force, owner=identity.name,
                                  progress=progress)
    follow = submit_follow_ups(store, jobs, options, group, identity.name)
    new = sum(1 for j in jobs if j.duplicate_of is None)
    log.info("%s submitted %d molecule(s) to group %s: %d new, %d follow-ups",
             identity.name, len(jobs), group, new, len(follow))
    molecules = len({j.molecule for j in jobs}) if first.ensembles else None
    return SubmitResult(group=group, jobs=jobs, skipped=bad, first_what=what,
                        follow_ups=follow, molecules=molecules)
