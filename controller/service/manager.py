"""The JobManager: every user operation, once, whichever door a request came in by.

Each method checks what the caller's identity may do (qforge.auth.roles), then reads
or writes the store through its indexes (O(what it returns)). It prints nothing: the
command line renders what it returns, the server serialises it, the Python client hands
it over as it is.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from qforge.auth.roles import (
    Identity,
    can_change,
    require_change,
    require_read,
    require_submit,
)
from qforge.ids import validate_job_id
from qforge.inputs import BadRecord, ReadMolecule
from qforge.record import JobRecord, Status
from qforge.scheduling.quota import check_owner_quota
from qforge.service import export, permolecule, submission
from qforge.service import table as tables_module
from qforge.service.ensemble import ensemble_counts
from qforge.service.followups import check_then, check_then_elements, submit_follow_ups
from qforge.service.models import (
    CancelResult,
    Deleted,
    JobPage,
    JobView,
    MoleculeCounts,
    Overview,
    Progress,
    ResultView,
    RetryResult,
    Structure,
    SubmitOptions,
    SubmitResult,
)
from qforge.service.overview import OverviewCache
from qforge.service.problems import InvalidMolecules, UsageError
from qforge.service.progress import Watch
from qforge.service.waiting import owners_cache, why_waiting
from qforge.settings import Settings
from qforge.store.jobstore import (
    CorruptRecord,
    JobNotFound,
    JobStore,
    default_group,
    load_report,
    load_result_json,
    validate_group,
)
from qforge.store.layout import DONE_STATUSES
from qforge_runner.result import to_qcschema

log = logging.getLogger(__name__)

RATE_WINDOW_MINUTES = 10.0
LOG_TAIL_BYTES = 16 * 1024  # the job page's tail of xtb's output
CAMPAIGNS_SHOWN = 20  # the campaigns page's groups with their progress (the rest by name)
ExportFormat = Literal["csv", "jsonl", "sdf", "xyz"]


class NoSuchGroup(JobNotFound):
    def __init__(self, group: str) -> None:
        super().__init__(f"no such group: {group}")


def _iso_ns(stamp: str | None) -> int:
    if not stamp:
        return 0
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp() * 1e9)


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

    # ------------------------------------------------------------ checks
    def _read_allowed(self) -> None:
        require_read(self.identity)

    def _change_allowed(self, record: JobRecord, verb: str) -> None:
        require_change(self.identity, verb, record.job_id, record.owner)

    def _need_group(self, group: str) -> None:
        if not self.store.groups.exists(group):
            raise NoSuchGroup(group)

    # ------------------------------------------------------------- reads
    def records(self, status: Status | None = None, group: str | None = None,
                warn: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
        """The records a listing returns as metadata.json holds them, in submission
        order; a corrupt one is reported through `warn` and skipped."""
        self._read_allowed()
        if group is not None:
            group = validate_group(group)
            self._need_group(group)
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
        """Counts per status and the rate of finishing: over the window, or over the
        group's life when it is younger (40 jobs done in the first 9 s are 267/min, not
        4/min over 10 min). The whole store from the index alone (done markers are named
        by when the job ended), a group from its members' records; through a server,
        shared by its readers for a moment (qforge.service.overview)."""
        self._read_allowed()
        if group is not None:
            group = validate_group(group)
            self._need_group(group)
        if self.overviews is None or owners:
            return self._overview(group, window_minutes, owners)
        return self.overviews.get((group, window_minutes),
                                  lambda: self._overview(group, window_minutes, False))

    def _overview(self, group: str | None, window_minutes: float, owners: bool) -> Overview:
        now = time.time_ns()
        since = now - int(window_minutes * 60e9)
        if group is None:
            counts = self.store.queries.counts()
            threshold = f"{since:020d}"
            recent = sum(1 for s in DONE_STATUSES for n in self.store.queries.done_names(Status(s))
                         if n[:20] >= threshold)
            return Overview(group=None, counts=counts, finished_in_window=recent,
                            window_minutes=window_minutes,
                            owners=self._owner_counts() if owners else None,
                            waiting=self.store.queries.waiting())
        counts = dict.fromkeys(Status, 0)
        recent = 0
        began = self._group_began_ns(group)
        if began is not None and began > since:  # younger than the window
            since = began
            window_minutes = max(now - began, 1e9) / 60e9  # at least a second
        keys: dict[str, tuple[str | None, bool, str | None]] = {}
        states = self.store.groups.states(group, molecules=keys)
        for st, finished_at in states.values():
            counts[st] += 1
            if st.terminal and _iso_ns(finished_at) >= since:
                recent += 1
        ensemble = ensemble_counts((j, k, f, states[j][0].terminal, n)
                                   for j, (k, f, n) in keys.items())
        return Overview(group=group, counts=counts, finished_in_window=recent,
                        window_minutes=window_minutes,
                        waiting=self.store.queries.waiting(group),
                        molecules=None if ensemble is None else MoleculeCounts.of(ensemble))

    def _owner_counts(self) -> dict[str, tuple[int, int]]:
        """Running and queued jobs per owner (each queued job's owner is read once per
        process: O(queued) the first time, then O(new ones); a server keeps them)."""
        from qforge.scheduling.fairview import fair_view
        from qforge.service.waiting import owners_cache

        view = fair_view(self.store, self.settings, owners_cache(self.store))
        return {o: (c.running, c.queued) for o, c in view.counts().items()}

    def _group_began_ns(self, group: str) -> int | None:
        """When the group's first member joined (its index markers' oldest mtime)."""
        oldest: int | None = None
        try:
            with os.scandir(self.store.layout.group(group)) as it:
                for entry in it:
                    try:
                        stamp = entry.stat(follow_symlinks=False).st_mtime_ns
                    except OSError:
                        continue
                    oldest = stamp if oldest is None else min(oldest, stamp)
        except FileNotFoundError:
            return None
        return oldest

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
        import json

        self._read_allowed()
        record = self.store.read(validate_job_id(job_id))
        if not record.status.terminal:
            return ResultView(exit_code=1, format=fmt, message=(
                f"job {record.job_id} is {record.status.value}: no result yet"))
        ok = 0 if record.status is Status.COMPLETED else 1
        job_dir = self.store.layout.job_dir(record.job_id)
        if fmt == "json":
            data = load_result_json(job_dir)
            body = data if data is not None else record.model_dump(mode="json")
            return ResultView(exit_code=ok, format=fmt, body=json.dumps(body, indent=2))
        report = load_report(job_dir)
        if fmt == "qcschema":
            if report is None:
                return ResultView(exit_code=1, format=fmt, message=(
                    f"job {record.job_id} has no readable result.json"))
            from qforge.molfile import qcschema_connectivity  # not for the worker's start-up

            schema = to_qcschema(record.spec, report,
                                 qcschema_connectivity(job_dir, record.spec))
            return ResultView(exit_code=ok, format=fmt, body=json.dumps(schema, indent=2))
        geometry = report.result.geometry if report and report.result else None
        if geometry is None:
            return ResultView(exit_code=1 if ok else 2, format=fmt, message=(
                f"job {record.job_id} ({record.spec.task.value}) has no optimised geometry; "
                f"its input is {job_dir}/input.xyz"))
        return ResultView(exit_code=ok, format=fmt, body=geometry.to_xyz())

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
            group = validate_group(group)
            self._need_group(group)
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
        """The campaigns page: the `shown` groups changed last (their index folder's
        mtime: a stat each) with counts, rate and time left from their cached tables
        (qforge.service.table), newest first; the other groups by name only."""
        self._read_allowed()
        groups = tables_module.recent_groups(self.store)
        out = []
        for name in groups[:shown]:
            table = self.tables.table(name)
            item = tables_module.live(table, RATE_WINDOW_MINUTES)
            item["began_ns"] = tables_module.summarise(table)["began_ns"]
            out.append(item)
        out.sort(key=lambda g: (-(g["began_ns"] or 0), g["group"]))
        return {"campaigns": out, "others": sorted(groups[shown:])}

    def _table(self, group: str) -> tables_module.Table:
        self._read_allowed()
        group = validate_group(group)
        self._need_group(group)
        return self.tables.table(group)

    def group_live(self, group: str) -> dict[str, Any]:
        """A campaign's counts, rate and time left: cheap enough to poll (a few stat()
        calls while nothing changed)."""
        return tables_module.live(self._table(group), RATE_WINDOW_MINUTES)

    def group_summary(self, group: str) -> dict[str, Any]:
        """The campaign page's plots and failures (tables_module.summarise)."""
        table = self._table(group)
        return {**tables_module.summarise(table),
                "live": tables_module.live(table, RATE_WINDOW_MINUTES)}

    def group_summary_json(self, group: str) -> bytes:
        """group_summary without its live part, as JSON bytes encoded once per change of
        the campaign (what the page fetches)."""
        return tables_module.summary_json(self._table(group))

    def table_page(self, group: str, *, offset: int = 0, limit: int = 50,
                   sort: str = "created", descending: bool = False,
                   status: Status | None = None, text: str = "") -> dict[str, Any]:
        """A page of a campaign's rows, sorted and filtered on the server: a slice of a
        cached order (O(page) once the group's rows are read)."""
        if sort not in tables_module.SORT_KEYS:
            raise UsageError(f"sort: one of {', '.join(tables_module.SORT_KEYS)}")
        if not 1 <= limit <= 500 or offset < 0:
            raise UsageError("limit: 1 to 500, offset: 0 or more")
        return tables_module.page(self._table(group), offset=offset, limit=limit,
                                  sort=sort, descending=descending, status=status,
                                  text=text[:200])

    def job_page(self, job_id: str) -> JobPage:
        """`show` and what the job page adds: may the caller cancel it, the tail of
        xtb's output, the input and optimised molecules."""
        view = self.show(job_id)
        record = JobRecord.model_validate(view.record)
        job_dir = self.store.layout.job_dir(record.job_id)
        log_name, tail = _log_tail(job_dir)
        report = load_report(job_dir) if record.status.terminal else None
        out = report.result.geometry if report and report.result else None
        mol = record.spec.molecule
        return JobPage(
            view=view, log_name=log_name, log_tail=tail,
            can_cancel=(not record.status.terminal
                        and can_change(self.identity, record.owner)),
            input=Structure(symbols=list(mol.symbols), geometry=list(mol.geometry)),
            optimised=(Structure(symbols=list(out.symbols), geometry=list(out.geometry))
                       if out is not None else None))

    # ------------------------------------------------------------ writes
    def submit(self, items: Iterable[ReadMolecule | BadRecord], options: SubmitOptions,
               *, tick: Callable[[], None] = lambda: None,
               progress: Callable[[int], None] = lambda n: None) -> SubmitResult:
        """All or nothing (unless `skip_invalid`): every molecule is validated before
        any is written; a molecule already queued, running or completed is not run again
        (unless `force`) and joins the group."""
        require_submit(self.identity)
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
        check_owner_quota(self.store, self.identity.name,
                          len(pending) * (2 if options.then else 1), self.settings,
                          owners=owners_cache(self.store))
        what, jobs = submission.write(self.store, pending, validated, group=group,
                                      force=options.force, owner=self.identity.name,
                                      progress=progress)
        follow = submit_follow_ups(self.store, jobs, options, group, self.identity.name)
        new = sum(1 for j in jobs if j.duplicate_of is None)
        log.info("%s submitted %d molecule(s) to group %s: %d new, %d follow-ups",
                 self.identity.name, len(jobs), group, new, len(follow))
        self._changed()
        molecules = len({j.molecule for j in jobs}) if first.ensembles else None
        return SubmitResult(group=group, jobs=jobs, skipped=bad, first_what=what,
                            follow_ups=follow, molecules=molecules)

    def cancel(self, job_ids: list[str], group: str | None) -> CancelResult:
        if bool(job_ids) == (group is not None):
            raise UsageError("cancel: give job ids or --group, not both (nor neither)")
        require_submit(self.identity)
        store = self.store
        if group is not None:
            group = validate_group(group)
            self._need_group(group)
            requested: list[tuple[str, Status]] = []
            already: list[tuple[str, Status]] = []
            shared = 0
            warnings: list[str] = []
            for job_id, (st, _) in store.groups.states(group).items():
                if st.terminal:
                    already.append((job_id, st))
                    continue
                try:
                    record = store.read(job_id)
                    if set(store.groups.of(record)) - {group}:
                        shared += 1  # another campaign counts on it: cancel it by its id
                        continue
                    if not can_change(self.identity, record.owner):
                        warnings.append(f"job {job_id} belongs to {record.owner}: kept")
                        continue
                    store.cancels.request(job_id)
                    requested.append((job_id, st))
                except (JobNotFound, CorruptRecord) as exc:
                    warnings.append(str(exc))
            self._changed()
            return CancelResult(group=group, requested=requested, already=already,
                                shared=shared, warnings=warnings)
        ids = list(dict.fromkeys(job_ids))
        records: list[JobRecord] = []
        missing: list[str] = []
        for job_id in ids:  # every permission checked before any request is left
            try:
                record = store.read(job_id)
            except JobNotFound:
                missing.append(job_id)
                continue
            self._change_allowed(record, "cancel")
            records.append(record)
        out_req: list[tuple[str, Status]] = []
        out_done: list[tuple[str, Status]] = []
        for record in records:
            after = store.cancels.request(record.job_id)
            (out_done if after.status.terminal else out_req).append(
                (after.job_id, after.status))
        self._changed()
        return CancelResult(requested=out_req, already=out_done, missing=missing)

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
        """All or nothing: every id is checked (a bad one ends the command with its one
        line, nothing deleted), then each job is removed."""
        require_submit(self.identity)
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            raise UsageError("delete: give at least one job id")
        for job_id in ids:
            validate_job_id(job_id)  # a malformed id is bad input (exit 2), not a lookup
            record = self.store.deletable(job_id)
            self._change_allowed(record, "delete")
        out = []
        for job_id in ids:
            record = self.store.delete(job_id)
            out.append((record.job_id, record.status))
        self._changed()
        return Deleted(jobs=out)


def _log_tail(job_dir: Any) -> tuple[str | None, str]:
    """The last LOG_TAIL_BYTES of xtb's output in the job folder (whole lines)."""
    for name in ("xtb.log", "runner.log"):
        path = job_dir / name
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                data = fh.read()
        except OSError:
            continue
        text = data.decode("utf-8", "replace")
        if size > LOG_TAIL_BYTES:
            text = text.partition("\n")[2]
        return name, text
    return None, ""


def follow(watch: Watch, interval: float,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """A snapshot of the followed jobs every `interval` seconds, until all are done."""
    while True:
        snap = watch.snapshot()
        yield snap
        if snap.done:
            return
        sleep(interval)
        watch.poll()
