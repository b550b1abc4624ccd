"""A campaign's rows for the page, kept in memory between requests.

A group's rows (one compact Row per member, from its metadata.json) are read once; after
that a request costs a few stat() calls while nothing changed, and a re-read of the
members still open (queued or running: a terminal status is final) when something did,
plus a listing of the group's index when members joined or left. The store tells what
changed through its index folders' mtimes (queue, running, done/*, the group's own), by
the rule JobStore.listing uses: a folder whose mtime is younger than a margin is not
trusted to be unchanged, and everything is checked again after RELIST_SECONDS.

Sorted and filtered orders, the summary (counts, rate, plot points, histogram, failures)
and the pages are computed from the rows and cached by the table's version: a page of a
10^5-job group is a slice of a cached order, O(page).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from qforge.record import Status
from qforge.service.ensemble import ensemble_counts, ensemble_line
from qforge.service.export import formula as formula_of
from qforge.store.jobstore import JobStore, validate_group
from qforge.store.layout import DONE_STATUSES
from qforge_runner.errors import InputError

log = logging.getLogger(__name__)

MTIME_MARGIN = 1.0  # s: a folder changed more recently than this may change unseen
RELIST_SECONDS = 10.0  # check everything again this often (NFS attribute caching)
MAX_PLOT_POINTS = 2000  # beyond this, the scatter shows an even sample (it says so)
HISTOGRAM_BINS = 30
TIMELINE_BINS = 40
MAX_TABLES = 32
# Rows kept in all (a row is a few hundred bytes: 400,000 fit the chart's 512 MiB limit
# with room to spare); the table asked for last is always kept.
MAX_ROWS = 400_000

SortKey = Literal["created", "name", "formula", "status", "energy", "gap", "dipole",
                  "wall", "job_id", "error"]
SORT_KEYS: tuple[str, ...] = ("created", "name", "formula", "status", "energy", "gap",
                              "dipole", "wall", "job_id", "error")


@dataclass(slots=True)
class Row:
    job_id: str
    name: str
    formula: str
    status: Status
    energy: float | None  # Eh
    gap: float | None  # eV
    dipole: float | None  # D
    wall: float | None  # s
    error_type: str | None
    error_message: str | None
    owner: str
    created_ns: int
    finished_ns: int | None
    molecule: str | None = None  # its molecule key (conformers of one molecule share it)
    followup: bool = False  # waits on other jobs (a follow-up step, not a conformer)

    def as_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, "formula": self.formula,
                "status": self.status.value, "energy_eh": self.energy, "gap_ev": self.gap,
                "dipole_debye": self.dipole, "wall_time_s": self.wall,
                "error_type": self.error_type, "error_message": self.error_message,
                "owner": self.owner}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _iso_ns(stamp: Any) -> int | None:
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(when.timestamp() * 1e9)


def row_of(data: dict[str, Any]) -> Row | None:
    """A member's row from its metadata.json as parsed (None: not a readable record)."""
    try:
        spec = data["spec"]
        status = Status(data["status"])
        symbols = spec["molecule"]["symbols"]
        res = data.get("result") or {}
        err = data.get("error") or {}
        return Row(
            job_id=str(data["job_id"]), name=str(spec.get("name") or ""),
            formula=formula_of(symbols), status=status, energy=_num(res.get("energy")),
            gap=_num(res.get("gap")), dipole=_num(res.get("dipole_debye")),
            wall=_num(res.get("wall_time")),
            error_type=err.get("type") if isinstance(err.get("type"), str) else None,
            error_message=(err.get("message") if isinstance(err.get("message"), str)
                           else None),
            owner=str(data.get("owner") or "unknown"),
            created_ns=int(data.get("created_ns") or 0),
            finished_ns=_iso_ns(data.get("finished_at")) if status.terminal else None,
            molecule=data["molecule"] if isinstance(data.get("molecule"), str) else None,
            followup=bool(data.get("depends_on")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _sort_value(key: str) -> Callable[[Row], Any]:
    """A key that puts missing values last whichever the direction (see `ordered`)."""
    if key in ("energy", "gap", "dipole", "wall"):
        attr = {"energy": "energy", "gap": "gap", "dipole": "dipole", "wall": "wall"}[key]
        return lambda r: getattr(r, attr)
    return {
        "created": lambda r: (r.created_ns, r.job_id),
        "name": lambda r: r.name.lower(),
        "formula": lambda r: r.formula,
        "status": lambda r: r.status.value,
        "job_id": lambda r: r.job_id,
        "error": lambda r: r.error_type or "",
    }[key]


@dataclass
class Table:
    group: str
    rows: dict[str, Row] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)  # the members not finished yet
    version: int = 0
    sig: tuple[tuple[int, int], ...] = ()
    group_sig: tuple[int, int] = (0, 0)
    checked_wall: float = 0.0
    checked_mono: float = -1e9
    orders: OrderedDict[tuple[str, bool, str, str], list[Row]] = field(
        default_factory=OrderedDict)
    finished: list[int] = field(default_factory=list)  # sorted finished_ns
    summary: dict[str, Any] | None = None
    summary_json: bytes | None = None  # the summary as the page fetches it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def changed(self) -> None:
        self.version += 1
        self.orders.clear()
        self.summary = None
        self.summary_json = None
        self.finished = sorted(r.finished_ns for r in self.rows.values()
                               if r.finished_ns is not None)


def _sig(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)


class Tables:
    """The tables of the groups asked for lately (an app holds one, shared by every
    request and every client)."""

    def __init__(self, store: JobStore, max_tables: int = MAX_TABLES,
                 max_rows: int = MAX_ROWS) -> None:
        self.store = store
        self.max_tables = max_tables
        self.max_rows = max_rows
        self._tables: OrderedDict[str, Table] = OrderedDict()
        self._lock = threading.Lock()
        lay = store.layout
        self._watched = [os.fspath(p) for p in (
            lay.queue, lay.running, *(lay.done(s) for s in DONE_STATUSES))]

    def table(self, group: str) -> Table:
        """The group's table, brought up to date (the caller checked the group exists)."""
        with self._lock:
            table = self._tables.get(group)
            if table is None:
                table = self._tables[group] = Table(group)
            self._tables.move_to_end(group)
        with table.lock:
            self._refresh(table)
        with self._lock:
            rows = sum(len(t.rows) for t in self._tables.values())
            while len(self._tables) > 1 and (len(self._tables) > self.max_tables
                                             or rows > self.max_rows):
                _, dropped = self._tables.popitem(last=False)
                rows -= len(dropped.rows)
        return table

    def cached(self) -> list[str]:
        """The groups whose tables are held, least recently asked for first."""
        with self._lock:
            return list(self._tables)

    def _refresh(self, table: Table) -> None:
        store = self.store
        group_dir = os.fspath(store.layout.group(table.group))
        group_sig = _sig(group_dir)
        sig = tuple(_sig(p) for p in self._watched)
        now_wall, now_mono = time.time(), time.monotonic()
        newest = max(m for _, m in (*sig, group_sig)) / 1e9
        if (sig == table.sig and group_sig == table.group_sig
                and table.checked_wall - newest > MTIME_MARGIN
                and now_mono - table.checked_mono < RELIST_SECONDS):
            return
        changed = False
        if group_sig != table.group_sig or now_mono - table.checked_mono >= RELIST_SECONDS:
            members = set(store.groups.ids(table.group))
            for gone in [j for j in table.rows if j not in members]:
                del table.rows[gone]
                table.open.discard(gone)
                changed = True
            new = [j for j in members if j not in table.rows]
        else:
            new = []
        for job_id in (*new, *list(table.open)):  # O(new + unfinished), not O(group)
            data = store.peek(job_id)
            row = row_of(data) if data is not None and self._member(data, table.group) \
                else None
            old = table.rows.get(job_id)
            if row is None:
                table.open.discard(job_id)
                if old is not None:
                    del table.rows[job_id]
                    changed = True
                continue
            if row.status.terminal:
                table.open.discard(job_id)
            else:
                table.open.add(job_id)
            if old is None or old != row:
                table.rows[job_id] = row
                changed = True
        table.sig, table.group_sig = sig, group_sig
        table.checked_wall, table.checked_mono = now_wall, now_mono
        if changed or table.version == 0:
            table.changed()

    def _member(self, data: dict[str, Any], group: str) -> bool:
        return bool(data.get("group") == group or (
            self.store.layout.memberships(str(data.get("job_id"))) / group).exists())


def recent_groups(store: JobStore) -> list[str]:
    """Every valid group, changed last first (its index folder's mtime: a stat each)."""
    found: list[tuple[int, str]] = []
    try:
        with os.scandir(store.layout.groups) as it:
            for entry in it:
                try:
                    validate_group(entry.name)
                    found.append((entry.stat().st_mtime_ns, entry.name))
                except (InputError, OSError):
                    continue
    except FileNotFoundError:
        pass
    return [name for _, name in sorted(found, reverse=True)]


def warm(tables: Tables, limit: int) -> None:
    """Read the tables of the `limit` groups changed last (a server's start: the first
    visitor of a 10^5-job campaign should not wait for its records to be read)."""
    started = time.monotonic()
    groups = recent_groups(tables.store)[:limit]
    for group in groups:
        try:
            tables.table(group)
        except OSError as exc:
            log.warning("Could not read campaign %s ahead of the page: %s", group, exc)
    if groups:
        log.info("Read the tables of %d campaign(s) for the page in %.1f s", len(groups),
                 time.monotonic() - started)


# ----------------------------------------------------------------- what the page reads
def ordered(table: Table, sort: str, descending: bool, status: Status | None,
            text: str) -> list[Row]:
    """The rows filtered (a status; `text` in the name, formula, id or error, any case)
    and sorted (missing values last), cached by the table's version."""
    key = (sort, descending, status.value if status else "", text.lower())
    cached = table.orders.get(key)
    if cached is not None:
        table.orders.move_to_end(key)
        return cached
    rows = table.rows.values()
    if status is not None:
        rows = [r for r in rows if r.status is status]  # type: ignore[assignment]
    needle = text.lower()
    if needle:
        rows = [r for r in rows if needle in r.name.lower() or needle in r.formula.lower()
                or needle in r.job_id or needle in (r.error_type or "")
                or needle in (r.error_message or "").lower()]  # type: ignore[assignment]
    value = _sort_value(sort)
    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    present.sort(key=value, reverse=descending)
    missing.sort(key=lambda r: (r.created_ns, r.job_id))
    out = present + missing
    table.orders[key] = out
    while len(table.orders) > 16:
        table.orders.popitem(last=False)
    return out


def counts(table: Table) -> dict[str, int]:
    out = dict.fromkeys((s.value for s in Status), 0)
    for row in table.rows.values():
        out[row.status.value] += 1
    return out


def live(table: Table, window_minutes: float, now_ns: int | None = None) -> dict[str, Any]:
    """Counts per status, the rate of finishing over the window (or the group's life
    when younger) and the time left at that rate: O(statuses + log n) once counted."""
    now = time.time_ns() if now_ns is None else now_ns
    summary = summarise(table)
    c: dict[str, int] = summary["counts"]
    total = sum(c.values())
    finished = sum(c[s.value] for s in Status if s.terminal)
    since = now - int(window_minutes * 60e9)
    began = summary["began_ns"]
    if began is not None and began > since:
        since = began
        window_minutes = max(now - began, 1e9) / 60e9
    recent = len(table.finished) - bisect.bisect_left(table.finished, since)
    rate = recent / window_minutes if window_minutes else 0.0
    left = total - finished
    eta = 0.0 if left == 0 else (None if rate <= 0 else 60.0 * left / rate)
    molecules = summary["molecules"]
    return {"group": table.group, "version": table.version, "total": total,
            "counts": c, "finished": finished, "rate_per_minute": round(rate, 3),
            "molecules": None if molecules is None else ensemble_line(molecules),
            "window_minutes": round(window_minutes, 3),
            "eta_seconds": None if eta is None else round(eta, 1)}


def summarise(table: Table) -> dict[str, Any]:
    """Counts, the scatter's points (gap against energy; an even sample past
    MAX_PLOT_POINTS), the energy histogram, finished jobs over time and the failures by
    error type: once per version of the table."""
    if table.summary is not None:
        return table.summary
    rows = list(table.rows.values())
    done = sorted((r for r in rows if r.status is Status.COMPLETED and r.energy is not None),
                  key=lambda r: (r.created_ns, r.job_id))
    plotted = [r for r in done if r.gap is not None]
    step = max(1, math.ceil(len(plotted) / MAX_PLOT_POINTS))
    points = [[r.energy, r.gap, r.name or r.formula, r.job_id] for r in plotted[::step]]
    energies = [r.energy for r in done if r.energy is not None]
    histogram: dict[str, Any] = {"bins": [], "lo": None, "hi": None}
    if energies:
        lo, hi = min(energies), max(energies)
        width = (hi - lo) / HISTOGRAM_BINS or 1.0
        bins: list[dict[str, Any]] = [{"lo": lo + i * width, "hi": lo + (i + 1) * width,
                                       "count": 0, "names": [], "first": None}
                                      for i in range(HISTOGRAM_BINS)]
        for r in done:
            assert r.energy is not None
            b = bins[min(HISTOGRAM_BINS - 1, int((r.energy - lo) / width))]
            b["count"] += 1
            if len(b["names"]) < 3:
                b["names"].append(r.name or r.formula)
            if b["first"] is None:
                b["first"] = r.job_id
        histogram = {"bins": bins, "lo": lo, "hi": hi}
    failures: dict[str, dict[str, Any]] = {}
    messages: dict[str, Counter[str]] = {}
    for r in rows:
        if r.status is not Status.FAILED:
            continue
        kind = r.error_type or "unknown"
        entry = failures.setdefault(kind, {"type": kind, "count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append({"job_id": r.job_id, "name": r.name or r.formula})
        messages.setdefault(kind, Counter())[(r.error_message or "")[:300]] += 1
    for kind, entry in failures.items():
        entry["messages"] = [{"message": m, "count": n}
                             for m, n in messages[kind].most_common(5)]
    began = min((r.created_ns for r in rows), default=None)
    table.summary = {
        "group": table.group, "version": table.version, "counts": counts(table),
        "began_ns": began, "points": points, "completed_with_gap": len(plotted),
        "histogram": histogram, "timeline": _timeline(rows, began),
        "molecules": ensemble_counts((r.job_id, r.molecule, r.followup, r.status.terminal,
                                      r.name) for r in rows),
        "failures": sorted(failures.values(), key=lambda e: -int(e["count"]))}
    return table.summary


def summary_json(table: Table) -> bytes:
    """The summary as JSON bytes, encoded once per version (a 10^5-job campaign's
    scatter is MAX_PLOT_POINTS points: the page asks for it on every change)."""
    if table.summary_json is None:
        table.summary_json = json.dumps(summarise(table), separators=(",", ":"),
                                        allow_nan=False).encode()
    return table.summary_json


def _timeline(rows: list[Row], began: int | None) -> dict[str, Any]:
    """Jobs finished (completed, failed, cancelled) by time since the first submission,
    cumulative, in TIMELINE_BINS steps up to the last finish."""
    ends = [(r.finished_ns, r.status.value) for r in rows if r.finished_ns is not None]
    if began is None or not ends:
        return {"seconds": [], "series": {}}
    last = max(t for t, _ in ends)
    span = max(last - began, 1)
    step = span / TIMELINE_BINS
    series = {s.value: [0] * (TIMELINE_BINS + 1) for s in Status if s.terminal}
    for t, st in ends:
        series[st][min(TIMELINE_BINS, max(0, math.ceil((t - began) / step)))] += 1
    for values in series.values():
        for i in range(1, len(values)):
            values[i] += values[i - 1]
    return {"seconds": [round(i * step / 1e9, 3) for i in range(TIMELINE_BINS + 1)],
            "series": series}


def page(table: Table, *, offset: int, limit: int, sort: str, descending: bool,
         status: Status | None, text: str) -> dict[str, Any]:
    rows = ordered(table, sort, descending, status, text)
    return {"group": table.group, "version": table.version, "total": len(rows),
            "offset": offset, "limit": limit, "sort": sort, "descending": descending,
            "rows": [r.as_json() for r in rows[offset:offset + limit]]}
