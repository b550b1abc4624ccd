"""The retry ladder applied where the scheduling core records a run's outcome (both
executors share it): when the job asked for it (`--auto-retry`, or AUTO_RETRY for every
job) and `qforge.scheduling.ladder` has a rung for how the run ended, the job is queued
again as its next attempt with the rung's change, instead of ending."""

from __future__ import annotations

import logging

from qforge.record import JobRecord, Status
from qforge.scheduling.ladder import next_rung
from qforge.settings import Settings
from qforge.store.jobstore import Claimed, JobStore
from qforge_runner.errors import InputError
from qforge_runner.harness import SADDLE_DISPLACED
from qforge_runner.molecule import Molecule, parse_xyz
from qforge_runner.result import RunReport
from qforge_runner.spec import Task

log = logging.getLogger(__name__)


def _saddle(store: JobStore, record: JobRecord, report: RunReport | None) -> Molecule | None:
    """A completed ohess at a saddle point: xtb's displaced geometry (None otherwise)."""
    result = report.result if report is not None and report.success else None
    if result is None or record.spec.task is not Task.ohess \
            or result.quality.imaginary_frequencies == 0:
        return None
    try:
        text = (store.layout.job_dir(record.job_id) / SADDLE_DISPLACED).read_text()
        molecule = parse_xyz(text)
    except (OSError, InputError):
        return None
    return molecule if molecule.symbols == record.spec.molecule.symbols else None


def retry_by_ladder(store: JobStore, settings: Settings, claimed: Claimed,
                    ended: JobRecord, report: RunReport | None) -> JobRecord | None:
    """Queue the job again on the ladder's next rung, when there is one: returns the
    QUEUED record (None: `ended` stands). `ended` is the record the run would end with."""
    if not (ended.spec.auto_retry or settings.auto_retry) \
            or ended.status not in (Status.FAILED, Status.COMPLETED) \
            or store.cancels.requested(ended.job_id):
        return None
    used = {a.rung for a in ended.history if a.rung}
    timeout = ended.spec.timeout or settings.job_timeout
    rung = next_rung(spec=ended.spec, error=ended.error if ended.status is Status.FAILED
                     else None, used=used, saddle=_saddle(store, ended, report),
                     timeout=timeout)
    if rung is None:
        return None
    spec = ended.spec.model_copy(update=rung.spec)
    queued = store.retries.requeue_claimed(ended, claimed.marker, change=rung.change,
                                           rung=rung.name, spec=spec)
    log.info("Job %s: attempt %d %s; attempt %d queued: %s", ended.job_id, ended.attempt,
             "ended at a saddle point" if ended.error is None else
             f"failed ({ended.error.type})", queued.attempt, rung.change)
    return queued
