"""The watch-fed view of runner Jobs: what the cap counts (pure)."""

from __future__ import annotations

from typing import Any

from qforge.k8s import naming
from qforge.k8s.view import JobView, holds_slot


def job(name: str, *, succeeded: int = 0, finalizer: bool = True,
        deleting: bool = False, conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": {naming.ANNOTATION_JOB_ID: name}}
    if finalizer:
        meta["finalizers"] = [naming.FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"succeeded": succeeded,
                                         "conditions": conditions or []}}


def test_a_job_holds_a_slot_until_its_pod_ended() -> None:
    assert holds_slot(job("a"))
    assert not holds_slot(job("a", succeeded=1))
    assert not holds_slot(job("a", conditions=[{"type": "Failed", "status": "True"}]))
    assert holds_slot(job("a", conditions=[{"type": "Failed", "status": "False"}]))


def test_the_count_follows_events_and_creates_not_yet_seen() -> None:
    view = JobView()
    view.replace([job("a"), job("b", succeeded=1, finalizer=False)], listed_at=0.0)
    assert view.unfinished() == 1 and view.known() == 2
    view.expect("c", now=1.0)
    assert view.unfinished() == 2
    view.apply("ADDED", job("c"))  # seen: counted once, no longer pending
    assert view.unfinished() == 2 and not view.pending("c")
    view.apply("MODIFIED", job("a", succeeded=1))
    assert view.unfinished() == 1
    view.apply("DELETED", job("c"))
    assert view.unfinished() == 0


def test_bodies_are_kept_only_for_jobs_that_still_matter() -> None:
    view = JobView()
    view.replace([job("run"), job("unrecorded", succeeded=1),
                  job("recorded", succeeded=1, finalizer=False)], 0.0)
    assert view.body("run") is not None and view.body("unrecorded") is not None
    assert view.body("recorded") is None and view.state("recorded") is not None
    assert [n for n, _ in view.unrecorded()] == ["unrecorded"]


def test_a_listing_drops_creates_answered_before_it_that_it_does_not_show() -> None:
    view = JobView()
    view.replace([], 0.0)
    view.expect("early", now=1.0)
    view.created("early", now=2.0)  # answered before the listing began: deleted since
    view.expect("late", now=5.0)
    view.created("late", now=5.5)
    gone = view.replace([job("x")], listed_at=3.0)
    assert gone == set()
    assert not view.pending("early") and view.pending("late")
    assert view.unfinished() == 2  # x, and late (created after the listing began)
    assert view.replace([], listed_at=6.0) == {"x"}


def test_a_create_still_in_flight_keeps_its_slot_through_a_listing() -> None:
    """A create queued behind the writers (or the token bucket) when a resync listing
    begins may commit after the listing's snapshot: dropping it would let the cap be
    exceeded. It holds its slot until the watch shows the Job or its create fails."""
    view = JobView()
    view.replace([], 0.0)
    view.expect("queued", now=1.0)  # sent much later
    view.replace([], listed_at=10.0)
    assert view.pending("queued") and view.unfinished() == 1
    view.created("queued", now=11.0)
    view.apply("ADDED", job("queued"))
    assert not view.pending("queued") and view.unfinished() == 1
    view.expect("refused", now=12.0)
    view.unexpect("refused")
    assert view.unfinished() == 1


def test_ten_thousand_finished_jobs_cost_no_slot_and_no_body() -> None:
    view = JobView()
    view.replace([job(f"f{i}", succeeded=1, finalizer=False) for i in range(10_000)], 0.0)
    assert view.unfinished() == 0 and view.known() == 10_000
    assert all(view.body(f"f{i}") is None for i in range(0, 10_000, 997))
