"""Per-owner limits on submission, and fair share in people's words."""

from __future__ import annotations

import pytest

from qforge.scheduling.fairshare import Policy
from qforge.scheduling.fairview import (
    FairView,
    OwnerCount,
    fair_view,
    next_owner,
    owner_lines,
    waiting_words,
)
from qforge.scheduling.owners import Owners
from qforge.scheduling.quota import OwnerQuotaExceeded, check_owner_quota, quota_problem
from qforge.settings import Settings
from qforge.store.errors import StoreError
from qforge.store.jobstore import JobStore
from qforge.store.layout import QueueKey

from .conftest import WATER, water_spec
from .test_scheduler import make


def submit(store: JobStore, owner: str, n: int) -> list[str]:
    return [store.submit(water_spec(), input_text=WATER, owner=owner).job_id
            for _ in range(n)]


def snapshot(store: JobStore) -> list[str]:
    return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))


def test_a_submission_past_the_queued_limit_is_refused_and_nothing_changes(
        store: JobStore) -> None:
    submit(store, "alice", 3)
    submit(store, "bob", 5)
    settings = Settings.from_env({"OWNER_MAX_QUEUED": "4"}, jobs_dir=store.root)
    check_owner_quota(store, "alice", 1, settings)  # 3 + 1 fits
    before = snapshot(store)
    with pytest.raises(OwnerQuotaExceeded) as err:
        check_owner_quota(store, "alice", 2, settings)
    assert str(err.value) == ("alice has 3 queued jobs and may have at most 4: "
                              "2 more jobs refused, nothing was submitted")
    assert "\n" not in str(err.value) and isinstance(err.value, StoreError)
    assert snapshot(store) == before
    # bob is already past it (the limit came later): not one more
    with pytest.raises(OwnerQuotaExceeded, match="bob has 5 queued jobs"):
        check_owner_quota(store, "bob", 1, settings)
    # a per-owner value replaces the default; carol has none of her own
    per_owner = Settings.from_env({"OWNER_MAX_QUEUED": "4",
                                   "OWNER_LIMITS": '{"bob": {"max_queued": 100}}'},
                                  jobs_dir=store.root)
    check_owner_quota(store, "bob", 95, per_owner)
    with pytest.raises(OwnerQuotaExceeded, match="carol has 0 queued jobs"):
        check_owner_quota(store, "carol", 5, per_owner)


def test_running_jobs_do_not_count_against_the_queued_limit(store: JobStore) -> None:
    submit(store, "alice", 4)
    sched, _, _ = make(store, cap=3)
    sched.run_once()
    settings = Settings.from_env({"OWNER_MAX_QUEUED": "4"}, jobs_dir=store.root)
    check_owner_quota(store, "alice", 3, settings)  # 1 queued + 3


def test_no_limit_reads_no_record(store: JobStore) -> None:
    submit(store, "alice", 3)
    owners = Owners(store.peek)
    check_owner_quota(store, "alice", 10**6, Settings(jobs_dir=store.root), owners=owners)
    assert owners.reads == 0
    assert quota_problem("alice", 0, 1, None) is None
    assert quota_problem("alice", 2, 1, 2) == (
        "alice has 2 queued jobs and may have at most 2: 1 more job refused, "
        "nothing was submitted")


def keys(n: int, start: int = 0) -> list[QueueKey]:
    return [QueueKey.make(0, start + i, f"job{start + i:04d}") for i in range(n)]


def test_waiting_words_say_whose_turn_and_where_the_job_stands() -> None:
    alice, bob = keys(10), keys(3, start=100)
    view = FairView(cap=6, running={"alice": 3, "bob": 3}, queued={"alice": alice, "bob": bob})
    # a tie of shares: the earlier submission (alice's) is next
    assert waiting_words(view, "alice", alice[3]) == (
        "alice has 3 of 6 slots; alice's turn is next; position 4 among alice's jobs")
    view = FairView(cap=6, running={"alice": 4, "bob": 2}, queued={"alice": alice, "bob": bob})
    assert waiting_words(view, "alice", alice[3]) == (
        "alice has 4 of 6 slots; bob's turn is next; position 4 among alice's jobs")
    weighted = FairView(cap=6, running={"alice": 4, "bob": 2},
                        queued={"alice": alice, "bob": bob},
                        policy=Policy(weights={"alice": 3}))
    assert next_owner(weighted) == "alice"  # 4/3 < 2/1
    limited = FairView(cap=6, running={"alice": 2, "bob": 1},
                       queued={"alice": alice, "bob": bob}, policy=Policy(max_running=2))
    assert waiting_words(limited, "alice", alice[0]) == (
        "alice has 2 of 6 slots; alice may run 2 at once; bob's turn is next; "
        "position 1 among alice's jobs")
    assert next_owner(FairView(cap=1, running={}, queued={})) is None
    assert view.counts() == {"alice": OwnerCount(4, 10), "bob": OwnerCount(2, 3)}


def test_fair_view_of_a_store(store: JobStore) -> None:
    alice = submit(store, "alice", 5)
    bob = submit(store, "bob", 2)
    sched, _, _ = make(store, cap=2)
    sched.run_once()  # one each
    settings = Settings(jobs_dir=store.root, max_concurrent_jobs=2)
    view = fair_view(store, settings)
    assert view.counts() == {"alice": OwnerCount(1, 4), "bob": OwnerCount(1, 1)}
    key = next(k for k in store.queue.queued() if k.job_id == alice[3])
    assert waiting_words(view, "alice", key) == (
        "alice has 1 of 2 slots; alice's turn is next; position 3 among alice's jobs")
    assert bob[1] in {k.job_id for k in view.queued["bob"]}
    assert owner_lines(view.counts()) == ["  owner       running   queued",
                                          "  alice             1        4",
                                          "  bob               1        1"]
    assert owner_lines({}) == []
