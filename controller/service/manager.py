"""The JobManager: every user operation, once, whichever door a request came in by.

Each method checks what the caller's identity may do (qforge.auth.roles), then reads
or writes the store through its indexes (O(what it returns)). It prints nothing: the
command line renders what it returns, the server serialises it, the Python client hands
it over as it is. The work of each concern is in its module: status.py (counts and
rates), results.py (a job's result and page), campaigns.py (the page's campaigns),
export.py and permolecule.py, progress.py (following jobs), intake.py (a submission),
changes.py (cancel, delete), retry.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from qforge.auth.roles import Identity, require_read
from qforge.ids import validate_job_id
from qforge.inputs import BadRecord, ReadMolecule
from qforge.record import Status
from qforge.service import campaigns as campaigns_module
from qforge.service import changes, export, intake, permolecule, results, status
from qforge.service import table as tables_module
from qforge.service.campaigns import CAMPAIGNS_SHOWN
from qforge.service.lookup import NoSuchGroup, known_group
from qforge.service.models import (
    CancelResult,
    Deleted,
    JobPage,
    JobView,
    Overview,
    Progress,
    ResultView,
    RetryResult,
    SubmitOptions,
    SubmitResult,
)
from qforge.service.overview import OverviewCache
from qforge.service.problems import UsageError
from qforge.service.progress import Watch, follow
from qforge.service.status import RATE_WINDOW_MINUTES
from qforge.service.waiting import why_waiting
from qforge.settings import Settings
from qforge.store.jobstore import CorruptRecord, JobStore

__all__ = ["CAMPAIGNS_SHOWN", "RATE_WINDOW_MINUTES", "JobManager", "NoSuchGroup", "follow"]

ExportFormat = Literal["csv", "jsonl", "sdf", "xyz"]


class JobManager:
    def __init__(self, store: JobStore, identity: Identity, settings: Settings, *,
                 sleep: Callable[[float], None] = time.sleep,
                 tables: tables_module.Tables | None = None,
                 overviews: OverviewCache | None = None) -> None:
        self.store = store
        self.tables = tables or tables_module.Tables(store)
        self.identity = identity
        self.settings = settings
        self.sleep = sleep  # between two polls of `follow` (a test's clock)
        self.overviews = overviews  # shared by a server's requests; None: always afresh

    def _changed(self) -> None:
        """A write went through this door: no overview of before it is answered again."""
        if self.overviews is not None:
            self.overviews.clear()

    def _read_allowed(self) -> None:
        require_read(self.identity)

    # ------------------------------------------------------------- reads
    def records(self, status: Status | None = None, group: str | None = None,
                warn: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
        """The records a listing returns as metadata.json holds them, in submission
        order; a corrupt one is reported through `warn` and skipped."""
        self._read_allowed()
        if group is not None:
            group = known_group(self.store, group)
        out: list[dict[str, Any]] = []
        for item in self.store.queries.select_data(status=status, group=group):
            if isinstance(item, CorruptRecord):
                warn(f"skipping {item}")
            else:
                out.append(item)
        out.sort(key=lambda r: (r.get("created_ns", 0), r["job_id"]))
        return out

    def overview(self, group: str | None = None,
                 window_minutes: float = RATE_WINDOW_MINUTES, *,
                 owners: bool = False) -> Overview:
        """Counts per status and the rate of finishing (qforge.service.status); through a
        server, shared by its readers for a moment (qforge.service.overview)."""
        self._read_allowed()
        if group is not None:
            group = known_group(self.store, group)
        if self.overviews is None or owners:
            return status.overview(self.store, self.settings, group, window_minutes, owners)
        return self.overviews.get((group, window_minutes), lambda: status.overview(
            self.store, self.settings, group, window_minutes, False))

    def show(self, job_id: str) -> JobView:
        self._read_allowed()
        record = self.store.read(validate_job_id(job_id))
        waiting: list[str] = []
        if record.status is Status.QUEUED:
            waiting = why_waiting(self.store, record, self.settings)
        elif record.status is Status.RUNNING and record.waiting_reason:
            waiting = [record.waiting_reason]
        return JobView(record=record.model_dump(mode="json"),
                       groups=self.store.groups.of(record), waiting=waiting,
                       folder=str(self.store.layout.job_dir(record.job_id)))

    def result(self, job_id: str, fmt: Literal["json", "xyz", "qcschema"]) -> ResultView:
        self._read_allowed()
        record = self.store.read(validate_job_id(job_id))
        return results.result_view(record, self.store.layout.job_dir(record.job_id), fmt)

    def export(self, fmt: ExportFormat, status: Status | None = None,
               group: str | None = None, warn: Callable[[str], None] = lambda line: None,
               *, per_molecule: bool = False) -> tuple[int, Iterator[str]]:
        """How many jobs (molecules, `per_molecule`) an export holds, and its text in
        pieces (each record read once; nothing is written before the selection is known)."""
        records = self.records(status, group, warn)
        if per_molecule:
            return permolecule.pieces(fmt, records, self.store.layout.job_dir, group)
        return len(records), export.export_pieces(fmt, records, self.store.layout.job_dir,
                                                  group)

    def watch(self, job_ids: list[str], group: str | None) -> Watch:
        """A set of jobs to follow (a group, or ids: not both)."""
        self._read_allowed()
        if bool(job_ids) == (group is not None):
            raise UsageError("give job ids or a group, not both (nor neither)")
        if group is not None:
            group = known_group(self.store, group)
        for job_id in job_ids:
            validate_job_id(job_id)
        return Watch(self.store, list(dict.fromkeys(job_ids)), group)

    def progress(self, job_ids: list[str], group: str | None) -> Progress:
        return self.watch(job_ids, group).snapshot()

    def follow(self, job_ids: list[str], group: str | None,
               interval: float = 0.5) -> Iterator[Progress]:
        """Snapshots of the followed jobs until all are done (`qforge wait`)."""
        return follow(self.watch(job_ids, group), interval, self.sleep)

    # --------------------------------------------------- the page's reads
    def campaigns(self, shown: int = CAMPAIGNS_SHOWN) -> dict[str, Any]:
        """The campaigns page (qforge.service.campaigns)."""
        self._read_allowed()
        return campaigns_module.campaigns(self.store, self.tables, shown)

    def _table(self, group: str) -> tables_module.Table:
        self._read_allowed()
        return self.tables.table(known_group(self.store, group))

    def group_live(self, group: str) -> dict[str, Any]:
        """A campaign's counts, rate and time left: cheap enough to poll (a few stat()
        calls while nothing changed)."""
        return campaigns_module.live(self._table(group))

    def group_summary(self, group: str) -> dict[str, Any]:
        """The campaign page's plots and failures (tables_module.summarise)."""
        return campaigns_module.summary(self._table(group))

    def group_summary_json(self, group: str) -> bytes:
        """group_summary without its live part, as JSON bytes encoded once per change of
        the campaign (what the page fetches)."""
        return tables_module.summary_json(self._table(group))

    def table_page(self, group: str, *, offset: int = 0, limit: int = 50,
                   sort: str = "created", descending: bool = False,
                   status: Status | None = None, text: str = "") -> dict[str, Any]:
        """A page of a campaign's rows, sorted and filtered on the server."""
        campaigns_module.check_page(offset=offset, limit=limit, sort=sort)
        return campaigns_module.page(self._table(group), offset=offset, limit=limit,
                                     sort=sort, descending=descending, status=status,
                                     text=text)

    def job_page(self, job_id: str) -> JobPage:
        """`show` and what the job page adds (qforge.service.results.job_page)."""
        return results.job_page(self.show(job_id), self.store.layout.job_dir,
                                self.identity)

    # ------------------------------------------------------------ writes
    def submit(self, items: Iterable[ReadMolecule | BadRecord], options: SubmitOptions,
               *, tick: Callable[[], None] = lambda: None,
               progress: Callable[[int], None] = lambda n: None) -> SubmitResult:
        """All or nothing (unless `skip_invalid`): every molecule is validated before
        any is written; a molecule already queued, running or completed is not run again
        (unless `force`) and joins the group (qforge.service.intake)."""
        out = intake.submit(self.store, self.identity, self.settings, items, options,
                            tick=tick, progress=progress)
        self._changed()
        return out

    def cancel(self, job_ids: list[str], group: str | None) -> CancelResult:
        out = changes.cancel(self.store, self.identity, job_ids, group)
        self._changed()
        return out

    def retry(self, job_ids: list[str], group: str | None, *, error_type: str | None = None,
              include_cancelled: bool = False) -> RetryResult:
        """FAILED (and CANCELLED, when asked) jobs queued again as a new attempt each
        (qforge.service.retry)."""
        from qforge.service.retry import retry_jobs

        out = retry_jobs(self.store, self.identity, job_ids, group, error_type=error_type,
                         include_cancelled=include_cancelled)
        self._changed()
        return out

    def delete(self, job_ids: list[str]) -> Deleted:
        """All or nothing: every id is checked, then each job is removed."""
        out = changes.delete(self.store, self.identity, job_ids)
        self._changed()
        return out
