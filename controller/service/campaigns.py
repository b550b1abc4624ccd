"""The page's reads of campaigns (groups), from their cached tables (qforge.service.table):
the list of campaigns, one campaign's counts, plots and pages of rows."""

from __future__ import annotations

from typing import Any

from qforge.record import Status
from qforge.service import table as tables_module
from qforge.service.problems import UsageError
from qforge.service.status import RATE_WINDOW_MINUTES
from qforge.store.jobstore import JobStore

CAMPAIGNS_SHOWN = 20  # the campaigns page's groups with their progress (the rest by name)


def campaigns(store: JobStore, tables: tables_module.Tables, shown: int) -> dict[str, Any]:
    """The `shown` groups changed last (their index folder's mtime: a stat each) with
    counts, rate and time left from their cached tables, newest first; the other groups
    by name only."""
    groups = tables_module.recent_groups(store)
    out = []
    for name in groups[:shown]:
        table = tables.table(name)
        item = tables_module.live(table, RATE_WINDOW_MINUTES)
        item["began_ns"] = tables_module.summarise(table)["began_ns"]
        out.append(item)
    out.sort(key=lambda g: (-(g["began_ns"] or 0), g["group"]))
    return {"campaigns": out, "others": sorted(groups[shown:])}


def live(table: tables_module.Table) -> dict[str, Any]:
    return tables_module.live(table, RATE_WINDOW_MINUTES)


def summary(table: tables_module.Table) -> dict[str, Any]:
    return {**tables_module.summarise(table), "live": live(table)}


def page(table: tables_module.Table, *, offset: int, limit: int, sort: str,
         descending: bool, status: Status | None, text: str) -> dict[str, Any]:
    """A page of a campaign's rows, sorted and filtered on the server: a slice of a
    cached order (O(page) once the group's rows are read). Its arguments are checked
    first (check_page)."""
    return tables_module.page(table, offset=offset, limit=limit, sort=sort,
                              descending=descending, status=status, text=text[:200])


def check_page(*, offset: int, limit: int, sort: str) -> None:
    if sort not in tables_module.SORT_KEYS:
        raise UsageError(f"sort: one of {', '.join(tables_module.SORT_KEYS)}")
    if not 1 <= limit <= 500 or offset < 0:
        raise UsageError("limit: 1 to 500, offset: 0 or more")
