"""Fair share in the scheduling core (the executor-independent part both the local
worker and the Kubernetes controller run), with the unit tier's fake executor."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

import pytest

from qforge.record import Status
from qforge.scheduling.core import Scheduler
from qforge.scheduling.fairshare import FairQueue, Policy, by_owner
from qforge.scheduling.owners import Owners, Tag
from qforge.settings import Settings, SettingsError
from qforge.store.jobstore import Claimed, JobStore
from qforge.store.layout import QueueKey

from .conftest import WATER, water_spec
from .test_scheduler import FakeExecutor, make, success


def submit(store: JobStore, owner: str, n: int, *, group: str | None = None,
           priority: int = 0) -> list[str]:
    items = [(water_spec(priority=priority), WATER)] * n
    done = store.submit_batch(items, group=group or f"{owner}-campaign", force=True,
                              owner=owner)
    return [s.record.job_id for s in done]


def owner_of(store: JobStore, job_id: str) -> str:
    return store.read(job_id).owner


def running_by_owner(store: JobStore, ex: FakeExecutor) -> Counter[str]:
    return Counter(owner_of(store, j) for j in ex.running)


def turnover(sched: Scheduler, ex: FakeExecutor, launched_at: dict[str, int],
             step: int) -> list[str]:
    """End the job that has run longest, then one pass: the jobs it started."""
    oldest = min(ex.running, key=lambda j: launched_at[j])
    ex.finish(success(oldest))
    started = sched.run_once().launched
    for j in started:
        launched_at[j] = step
    return started


def test_bob_submitting_after_alices_2000_starts_at_the_next_free_slot(
        store: JobStore) -> None:
    alice = submit(store, "alice", 2000)
    sched, ex, _ = make(store, cap=4)
    launched_at = {j: 0 for j in sched.run_once().launched}
    assert list(launched_at) == alice[:4]
    bob = submit(store, "bob", 10)
    # the cap is reached: nothing starts until a slot frees, and then it is bob's
    assert sched.run_once().launched == []
    step = 1
    assert turnover(sched, ex, launched_at, step) == [bob[0]]
    # bob's share is 2 of the 4 slots: every slot that frees goes to whoever is under
    # their share; alice keeps running throughout, bob's jobs in his order
    bob_started = [bob[0]]
    while bob_started != bob:
        step += 1
        started = turnover(sched, ex, launched_at, step)
        assert len(started) == 1
        if started[0] in bob:
            bob_started.append(started[0])
        per_owner = running_by_owner(store, ex)
        assert per_owner["alice"] >= 2 and per_owner["bob"] <= 2, per_owner
        assert per_owner["alice"] + per_owner["bob"] == 4
        # a slot bob frees while he still has queued jobs goes back to him
        assert per_owner["bob"] == min(2, len(bob) - sum(
            1 for j in bob if store.read(j).status is Status.COMPLETED))
    assert bob_started == bob
    # his 10 jobs ran two at a time, each slot refilled at the turnover that freed it
    assert step <= 1 + 10 * 4 // 2
    assert ex.launched[:4] == alice[:4]


def test_a_pass_with_free_slots_logs_whose_jobs_it_chooses_from(
        store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    alice = submit(store, "alice", 3)
    sched, ex, _ = make(store, cap=1)
    with caplog.at_level(logging.INFO, logger="qforge.scheduling.core"):
        sched.run_once()  # alice alone: the line of old, nothing more
        submit(store, "bob", 2)
        ex.finish(success(alice[0]))
        sched.run_once()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Found 3 queued jobs") == 1
    assert not any(m.startswith("Queued by owner") for m in messages[:2]), messages
    assert "Queued by owner: alice 2, bob 2" in messages, messages


def test_the_owners_line_names_the_largest_queues_first_and_counts_the_rest() -> None:
    assert by_owner(Counter(bob=10, alice=1996)) == "alice 1996, bob 10"
    assert by_owner(Counter(b=1, a=1)) == "a 1, b 1"
    many = Counter({f"user{i}": i for i in range(1, 9)})
    assert by_owner(many, most=3) == "user8 8, user7 7, user6 6, and 5 more owners"
    assert by_owner(Counter(a=2, b=1), most=1) == "a 2, and 1 more owner"


def test_an_owner_alone_gets_the_whole_cap(store: JobStore) -> None:
    alice = submit(store, "alice", 10)
    sched, _ex, _ = make(store, cap=6)
    assert sched.run_once().launched == alice[:6]


@pytest.mark.parametrize(("weights", "want"), [({"alice": 2}, (4, 2)),
                                                ({"alice": 2, "bob": 1}, (4, 2)),
                                                ({}, (3, 3))])
def test_weights_give_shares_over_a_long_run(store: JobStore, weights: dict[str, float],
                                             want: tuple[int, int]) -> None:
    alice = submit(store, "alice", 300)
    bob = submit(store, "bob", 300)
    sched, ex, _ = make(store, cap=6, fair_share_weights=weights)
    launched_at = {j: 0 for j in sched.run_once().launched}
    started: Counter[str] = Counter(owner_of(store, j) for j in launched_at)
    for step in range(1, 301):
        for j in turnover(sched, ex, launched_at, step):
            started[owner_of(store, j)] += 1
        per_owner = running_by_owner(store, ex)
        assert abs(per_owner["alice"] - want[0]) <= 1, (step, per_owner)
        assert abs(per_owner["bob"] - want[1]) <= 1, (step, per_owner)
    # over the run, jobs started in the ratio of the weights, within one job
    ratio = want[0] / want[1]
    assert abs(started["alice"] - ratio * started["bob"]) <= ratio + 1, started
    assert set(alice) & set(ex.launched) and set(bob) & set(ex.launched)


def test_a_job_saving_its_results_no_longer_counts_for_its_owner(store: JobStore) -> None:
    """The local worker frees a slot when xtb exits, before the job's outcome is
    collected and its running marker dropped: the owner whose job freed the slot is
    below their share and gets it back (counting the marker, the slot went to alice on
    a tie of shares, and the shares drifted)."""
    submit(store, "alice", 10)
    bob = submit(store, "bob", 10)
    sched, ex, _ = make(store, cap=3, fair_share_weights={"alice": 2})
    first = sched.run_once().launched
    assert Counter(owner_of(store, j) for j in first) == {"alice": 2, "bob": 1}
    ex.end_calculation(bob[0])
    assert store.queue.running_markers() and sched.run_once().launched == [bob[1]]
    assert running_by_owner(store, ex) == {"alice": 2, "bob": 1}
    ex.finish(success(bob[0]))
    assert sched.run_once().launched == []


def test_groups_of_one_owner_share_that_owners_slots(store: JobStore) -> None:
    campaign = submit(store, "alice", 50, group="campaign")
    quick = submit(store, "alice", 3, group="quick-test")
    bob = submit(store, "bob", 50, group="bobs")
    sched, _ex, _ = make(store, cap=4)
    first = sched.run_once().launched
    # two slots each for alice and bob; alice's two go one to each of her groups
    assert sorted(first) == sorted([campaign[0], quick[0], bob[0], bob[1]])


def test_priority_orders_within_an_owner_not_across_owners(store: JobStore) -> None:
    alice_low = submit(store, "alice", 3, group="a1")
    alice_high = submit(store, "alice", 2, group="a1", priority=10)
    bob_top = submit(store, "bob", 4, group="b1", priority=100)
    sched, _ex, _ = make(store, cap=4)
    first = sched.run_once().launched
    # bob's priority 100 does not take more than his share; alice's priority 10 runs
    # before her priority 0
    assert sorted(first) == sorted(alice_high + bob_top[:2])
    assert not set(alice_low) & set(first)


def test_owner_limit_holds_and_leaves_slots_to_others(store: JobStore) -> None:
    alice = submit(store, "alice", 20)
    sched, _ex, _ = make(store, cap=6, owner_max_running=2)
    assert sched.run_once().launched == alice[:2]  # the other four slots stay free
    bob = submit(store, "bob", 20)
    assert sched.run_once().launched == bob[:2]
    # a per-owner value in OWNER_LIMITS replaces the default for that owner
    store2 = JobStore(store.root.parent / "jobs2")
    store2.ensure()
    carol = submit(store2, "carol", 10)
    limits = Settings.from_env({"OWNER_LIMITS": '{"carol": {"max_running": 5}}',
                                "OWNER_MAX_RUNNING": "1"}).owner_limits
    sched2, _, _ = make(store2, cap=6, owner_max_running=1, owner_limits=limits)
    assert sched2.run_once().launched == carol[:5]


class RacingExecutor(FakeExecutor):
    """Launching a job here lets another worker's pass run in between (as two
    workers' passes interleave on a shared store)."""

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self.between: Scheduler | None = None

    def launch(self, claimed: Claimed) -> None:
        super().launch(claimed)
        other, self.between = self.between, None
        if other is not None:
            other.run_once()


def test_owner_limit_holds_across_two_workers_racing(store: JobStore) -> None:
    submit(store, "alice", 40)
    settings = Settings.from_env({}, jobs_dir=store.root, max_concurrent_jobs=4,
                                 owner_max_running=3)
    ex_a, ex_b = RacingExecutor(4), FakeExecutor(4)
    a = Scheduler(store, ex_a, settings, instance="a")
    b = Scheduler(store, ex_b, settings, instance="b")
    a.start()
    b.start()
    ex_a.between = b  # a computes alice's count (0), claims one, then b takes its part
    report = a.run_once()
    total = len(ex_a.running) + len(ex_b.running)
    assert total == 3, (ex_a.running, ex_b.running)
    assert len(store.queue.running_markers()) == 3
    assert len(report.launched) == 1 and len(ex_b.launched) == 2
    # the claims given back are QUEUED again, attempts as before
    queued = [store.read(k.job_id) for k in store.queue.queued()]
    assert len(queued) == 37 and all(r.status is Status.QUEUED and r.attempts == 0
                                     for r in queued)
    # as jobs end, neither worker takes alice past 3
    for _ in range(10):
        for ex in (ex_a, ex_b):
            if ex.running:
                ex.finish(success(sorted(ex.running)[0]))
        a.run_once()
        b.run_once()
        assert len(ex_a.running) + len(ex_b.running) <= 3
    assert len(ex_a.running) + len(ex_b.running) == 3


def test_a_restart_rebuilds_the_fair_queue_reading_each_record_once(
        store: JobStore) -> None:
    alice = submit(store, "alice", 30)
    bob = submit(store, "bob", 5)
    sched, ex, _ = make(store, cap=4)
    sched.run_once()
    assert sched.owners.reads == 35
    for _ in range(5):
        sched.run_once()  # nothing new: no record read again
    assert sched.owners.reads == 35
    # a restart: a new scheduler (empty memory) decides as the old one would have
    sched2, _ex2, _ = make(store, cap=6, instance="other")
    launched = sched2.run_once().launched
    assert sched2.owners.reads == 35  # 31 queued and 4 running, once each
    # alice and bob run 2 each: ties go to the earlier submission (alice's)
    assert launched == [alice[2], bob[2], alice[3], bob[3], alice[4], bob[4]]
    assert sorted(ex.launched) == sorted(alice[:2] + bob[:2])


def test_a_submission_in_progress_is_taken_in_once_its_record_appears(
        store: JobStore) -> None:
    owners = Owners(store.peek)
    fair = FairQueue(owners)
    alice = submit(store, "alice", 2)
    ghost = QueueKey.make(0, 1, "0" * 26)  # a marker whose folder is not there yet
    keys = [*store.queue.queued(), ghost]
    fair.sync(keys, 1)
    assert len(fair) == 2 and fair.queued_by_owner == Counter(alice=2)
    fair.set_running({}, {})
    chosen = [fair.next(), fair.next(), fair.next()]
    assert [c[0].job_id for c in chosen if c] == alice
    assert chosen[2] is None
    assert chosen[0] is not None and chosen[0][1] == Tag("alice", "alice-campaign")


def test_fair_share_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="FAIR_SHARE_WEIGHTS"):
        Settings.from_env({"FAIR_SHARE_WEIGHTS": '{"alice": 0}'})
    with pytest.raises(SettingsError, match="FAIR_SHARE_WEIGHTS is not valid JSON"):
        Settings.from_env({"FAIR_SHARE_WEIGHTS": "alice=2"})
    with pytest.raises(SettingsError, match="OWNER_LIMITS"):
        Settings.from_env({"OWNER_LIMITS": '{"alice": {"max_runing": 2}}'})
    with pytest.raises(SettingsError, match="OWNER_MAX_QUEUED"):
        Settings.from_env({"OWNER_MAX_QUEUED": "0"})
    s = Settings.from_env({"FAIR_SHARE_WEIGHTS": '{"alice": 2.5}', "OWNER_MAX_RUNNING": "3",
                           "OWNER_LIMITS": '{"bob": {"max_queued": 10}}'})
    policy = Policy.from_settings(s)
    assert policy.weight("alice") == 2.5 and policy.weight("bob") == 1.0
    assert policy.running_limit("bob") == 3 and policy.queued_limit("bob") == 10
    assert policy.queued_limit("alice") is None


def reference_next(queued: dict[str, tuple[QueueKey, Tag]], running: Counter[str],
                   running_groups: Counter[Tag], policy: Policy) -> tuple[QueueKey, Tag] | None:
    """The rule, by brute force over every queued job: each owner's first job is that
    of their group with the fewest running, then the first key; owners by share, then
    that job."""
    firsts: dict[str, tuple[int, QueueKey, Tag]] = {}
    for key, tag in queued.values():
        limit = policy.running_limit(tag.owner)
        if limit is not None and running[tag.owner] >= limit:
            continue
        mine = (running_groups[tag], key, tag)
        if tag.owner not in firsts or mine[:2] < firsts[tag.owner][:2]:
            firsts[tag.owner] = mine
    if not firsts:
        return None
    _, key, _, tag = min((running[o] / policy.weight(o), k, o, t)
                         for o, (_, k, t) in firsts.items())
    return key, tag


@pytest.mark.parametrize("seed", range(24))
def test_the_heaps_choose_as_the_rule_says_through_random_changes(seed: int) -> None:
    import random
    rng = random.Random(seed)
    records: dict[str, dict[str, str]] = {}
    owners = Owners(lambda job_id: records.get(job_id))
    policy = Policy(weights={"o0": 2.0, "o1": 0.5}, max_running=5 if seed % 2 else None,
                    running_limits={"o2": 2})
    fair = FairQueue(owners, policy, slack=0 if seed % 3 == 0 else 1024)  # 0: rebuilt often
    queued: dict[str, tuple[QueueKey, Tag]] = {}
    running: dict[str, Tag] = {}
    generation = 0
    for step in range(60):
        for _ in range(rng.randint(0, 80 if seed % 4 == 1 else 12)):  # submissions
            job_id = f"j{step:03d}{rng.randint(0, 10**6):07d}"
            tag = Tag(f"o{rng.randint(0, 4)}", rng.choice([None, "g1", "g2"]))
            records[job_id] = {"owner": tag.owner, **({"group": tag.group} if tag.group else {})}
            key = QueueKey.make(rng.choice([0, 0, 0, 5]), step * 100 + rng.randint(0, 99), job_id)
            queued[job_id] = (key, tag)
        for job_id in rng.sample(sorted(queued), k=min(len(queued), rng.randint(0, 2))):
            del queued[job_id]  # cancelled, or claimed by another worker
        for job_id in rng.sample(sorted(running), k=min(len(running), rng.randint(0, 3))):
            del running[job_id]  # finished
        generation += 1
        fair.sync(sorted(k for k, _ in queued.values()), generation)
        by_owner = Counter(t.owner for t in running.values())
        by_group = Counter(running.values())
        fair.set_running(by_owner, by_group)
        for _ in range(rng.randint(0, 4)):  # free slots
            want = reference_next(queued, by_owner, by_group, policy)
            got = fair.next()
            assert got == want, (seed, step)
            if got is None:
                break
            key, tag = got
            del queued[key.job_id]
            if rng.random() < 0.1:  # the claim was lost to another worker
                fair.undo(tag)
                continue
            running[key.job_id] = tag
            by_owner[tag.owner] += 1
            by_group[tag] += 1
    assert fair.queued_by_owner == Counter(t.owner for _, t in queued.values())


def test_a_marker_without_its_folder_waits_and_a_damaged_record_is_reported(
        store: JobStore, caplog: pytest.LogCaptureFixture) -> None:
    alice = submit(store, "alice", 2)
    store.layout.metadata(alice[1]).write_text("{ not json")
    sched, ex, _ = make(store, cap=4)
    # a submission under way: its queue marker, its folder not yet renamed into place
    staged = submit(JobStore(store.root.parent / "staging"), "bob", 1)[0]
    marker = QueueKey.make(0, time.time_ns(), staged)
    (store.layout.queue / marker.name).touch()
    with caplog.at_level(logging.INFO, logger="qforge"):
        sched.run_once()
    assert ex.launched == [alice[0]]
    assert [k.job_id for k in store.queue.queued()] == [staged]  # waits for its folder
    # the damaged record is claimed under the unknown owner and reported, as before
    assert any(alice[1] in r.message and r.levelno >= logging.ERROR for r in caplog.records)
    reads = sched.owners.reads
    sched.run_once()
    assert sched.owners.reads == reads + 1  # only the missing one is asked again
    # the folder appears (the submission's rename): bob's job is taken in and starts
    os.rename(store.root.parent / "staging" / staged, store.layout.job_dir(staged))
    assert sched.run_once().launched == [staged]


def test_shares_and_limits_hold_across_a_controller_restart(store: JobStore) -> None:
    """The cluster's controller keeps a stable instance name and adopts its runner Jobs
    at a restart: what it adopted counts against shares and limits at once (the same
    core as the worker's; the cluster tier's real restart test is not written)."""
    alice = submit(store, "alice", 10)
    sched, _, _ = make(store, cap=4, instance="qforge-controller", can_adopt=True,
                        owner_max_running=3)
    assert sched.run_once().launched == alice[:3]  # the limit leaves one slot free
    bob = submit(store, "bob", 10)
    assert sched.run_once().launched == [bob[0]]
    # a restart: a new process, the same instance name, the Jobs still running
    sched2, ex2, _ = make(store, cap=4, instance="qforge-controller", can_adopt=True,
                          owner_max_running=3)
    assert ex2.running == set(alice[:3]) | {bob[0]}
    assert sched2.run_once().launched == []  # the cap is full
    ex2.finish(success(alice[0]))
    # alice 2, bob 1: the slot goes to bob (fewer running), not back to alice
    assert sched2.run_once().launched == [bob[1]]
    assert sched2.owners.reads == 4 + 16  # each adopted and each queued job read once
