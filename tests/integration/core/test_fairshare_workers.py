"""Fair share between owners with real `qforge worker` processes and real xtb (task sp
on water, the fastest real calculation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from qforge.record import JobRecord, Status
from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.result import RunReport
from qforge_runner.spec import JobSpec
from tests.molecules import CAFFEINE
from tests.molecules import WATER_EXPERIMENTAL as WATER
from tests.waiting import wait_until

from .conftest import qforge

Start = Callable[..., subprocess.Popen[str]]


def submit_as(store: JobStore, owner: str, n: int, *, molecule: str = WATER,
              task: str = "sp") -> list[str]:
    spec = JobSpec(molecule=parse_xyz(molecule), task=task)  # type: ignore[arg-type]
    done = store.submit_batch([(spec, molecule)] * n, group=f"{owner}-campaign",
                              force=True, owner=owner)
    return [s.record.job_id for s in done]


def when(stamp: str | None) -> datetime:
    assert stamp is not None
    return datetime.fromisoformat(stamp)


def most_at_once(records: list[JobRecord],
                 end: Callable[[JobRecord], datetime] | None = None) -> int:
    """The most of these jobs that were running at one instant (from their records:
    claimed at started_at, until finished_at or `end`)."""
    events = sorted([(when(r.started_at), 1) for r in records]
                    + [(end(r) if end else when(r.finished_at), -1)
                       for r in records])  # ends sort first
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def report_of(jobs: Path, job_id: str) -> RunReport:
    return RunReport.model_validate_json((jobs / job_id / "result.json").read_text())


def ended_by(jobs: Path, job_id: str) -> datetime:
    """A moment no later than the job's xtb exited (when the worker frees its slot): the
    runner's start plus the seconds xtb ran, which began after the runner did."""
    report = report_of(jobs, job_id)
    assert report.result is not None
    return datetime.fromisoformat(report.started_at) + timedelta(
        seconds=report.result.wall_time)


def calculation_end(jobs: Path, job_id: str) -> datetime:
    """When the job's calculation ended, as the runner stamped it in result.json (just
    after xtb exited: the worker frees the slot at that exit, a few milliseconds
    earlier)."""
    return datetime.fromisoformat(report_of(jobs, job_id).finished_at)


def test_bob_submitting_after_alice_starts_at_the_next_free_slot(
        jobs: Path, start_worker: Start) -> None:
    """Issue 22's case at cap 4: alice's 2,000 jobs, then bob's 10 (one `qforge submit`
    of ten molecules). Bob's first job starts within one slot turnover of his
    submission; he then holds his share, 2 of the 4 slots, never more, while alice
    keeps running hers; he is done while almost all of alice's still wait."""
    store = JobStore(jobs)
    store.ensure()
    # caffeine (about 0.3 s a job): her 2,000 outlast bob's submission on a machine of
    # any speed (water jobs could all be done before bob is)
    alice = submit_as(store, "alice", 2000, molecule=CAFFEINE)
    worker = start_worker("--poll-interval", "0.2", "--max-concurrent", "4")
    wait_until(lambda: sum(store.read(j).status is Status.COMPLETED for j in alice[:8]) == 8,
               120, "alice's first jobs to complete")
    # bob submits through the command line: the OS user owns a local submission
    env = {"LOGNAME": "bob", "USER": "bob"}
    out = qforge("submit", "-", "--task", "sp", "--json", "--force", stdin=CAFFEINE * 10,
                 jobs=jobs, env=env)
    assert out.returncode == 0, out.stderr
    bob = [json.loads(line)["job_id"] for line in out.stdout.splitlines()]
    assert len(bob) == 10
    wait_until(lambda: all(store.read(j).status is Status.COMPLETED for j in bob), 120,
               "bob's jobs to complete")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    bobs = [store.read(j) for j in bob]
    assert {r.owner for r in bobs} == {"bob"}
    alices = [store.read(j) for j in alice]
    submitted = when(bobs[0].created_at)
    first = min(when(r.started_at) for r in bobs)
    # at most one slot turnover (a pass already under way: every slot) went to alice
    # between bob's submission and his first start
    cut_in = [r for r in alices if r.started_at and submitted < when(r.started_at) < first]
    assert len(cut_in) <= 4, [r.started_at for r in cut_in]
    # bob held his share of 2 and never more (from each claim until his xtb exited:
    # the records' finished_at come after the slot is refilled); alice's jobs kept
    # running while his ran
    assert most_at_once(bobs, end=lambda r: ended_by(jobs, r.job_id)) == 2
    last = max(when(r.finished_at) for r in bobs)
    during = [r for r in alices if r.started_at and first < when(r.started_at) < last]
    assert len(during) >= 2, len(during)
    # and he did not wait for her 2,000: from his submission to his last job's end only
    # a few dozen of hers started (how many ran before he submitted depends on how fast
    # a loaded machine starts `qforge submit`, not on the scheduler: not counted)
    queued = sum(1 for r in alices if r.status is Status.QUEUED)
    meanwhile = [r for r in alices if r.started_at and submitted < when(r.started_at) < last]
    print(f"alice's jobs started between bob's submission and his first: {len(cut_in)}; "
          f"while his ran: {len(during)}; from his submission to his end: "
          f"{len(meanwhile)}; still queued after him: {queued} of 2000")
    assert len(meanwhile) < 100 and queued > 1000


def test_an_owner_limit_holds_across_two_workers(jobs: Path, start_worker: Start) -> None:
    store = JobStore(jobs)
    store.ensure()
    env = {"OWNER_MAX_RUNNING": "2"}
    workers = [start_worker("--poll-interval", "0.2", "--max-concurrent", "3",
                            "--worker-id", name, log_name=f"{name}.log", env=env)
               for name in ("wa", "wb")]
    wait_until(lambda: len(list(store.layout.workers.iterdir())) == 2, 60,
               "both workers to beat")
    # caffeine optimisations (a few tenths of a second each): both workers are busy
    alice = submit_as(store, "alice", 12, molecule=CAFFEINE, task="opt")
    bob = submit_as(store, "bob", 6, molecule=CAFFEINE, task="opt")
    wait_until(lambda: all(store.read(j).status is Status.COMPLETED for j in alice + bob),
               300, "every job to complete")
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    alices = [store.read(j) for j in alice]
    bobs = [store.read(j) for j in bob]
    assert all(r.attempts == 1 for r in alices + bobs)
    # each owner had at most 2 running at any instant, though 6 slots were there
    assert most_at_once(alices) <= 2 and most_at_once(bobs) <= 2
    assert {r.placement.worker_id for r in alices + bobs if r.placement} == {"wa", "wb"}


def test_a_submission_past_the_owners_queued_limit_is_refused_whole(jobs: Path) -> None:
    env = {"LOGNAME": "carol", "USER": "carol", "OWNER_MAX_QUEUED": "2"}
    three = WATER * 3  # three frames: three molecules
    out = qforge("submit", "-", "--force", stdin=three, jobs=jobs, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == ("qforge: error: carol has 0 queued jobs and may have "
                                  "at most 2: 3 more "
                                  "jobs refused, nothing was submitted"), out.stderr
    store = JobStore(jobs)
    assert store.job_ids() == [] and store.queue.queued() == []
    assert qforge("submit", "-", "--force", stdin=WATER * 2, jobs=jobs,
                  env=env).returncode == 0
    out = qforge("submit", "-", "--force", stdin=WATER, jobs=jobs, env=env)
    assert out.returncode == 2 and "carol has 2 queued jobs" in out.stderr
    assert len(store.job_ids()) == 2
    # another owner has a limit of their own
    assert qforge("submit", "-", "--force", stdin=WATER, jobs=jobs,
                  env={**env, "LOGNAME": "dave", "USER": "dave"}).returncode == 0


def test_weights_two_to_one_with_a_real_worker(jobs: Path, start_worker: Start) -> None:
    """alice:bob = 2:1 at cap 6: while both have work queued, whenever the cap is full
    alice holds 4 of the slots and bob 2, each within one job, and exactly 4 and 2 most
    of the time. Slots, not started counts, are what the weights share (starts follow
    the jobs' durations: a slot of short jobs turns over more often).

    Read from the records and the runner's reports, not from the scheduler: at each
    launch (the claim's started_at), the jobs claimed by then whose calculation had not
    ended (result.json's finished_at). That stamp comes a few milliseconds after xtb
    exits and the worker refills the slot, so a reading can count a job that already
    left; it never misses one. The readings taken are those where the cap is full: 6
    held. Fewer is a pass still filling the slots it found free; more is a job that
    already left still counted (it would blur the reading, not the scheduler)."""
    store = JobStore(jobs)
    store.ensure()
    alice = submit_as(store, "alice", 80)
    bob = submit_as(store, "bob", 40)
    worker = start_worker("--until-idle", "--poll-interval", "0.2", "--max-concurrent", "6",
                          env={"FAIR_SHARE_WEIGHTS": '{"alice": 2}'})
    assert worker.wait(timeout=300) == 0
    records = {r.job_id: r for r in (store.read(j) for j in alice + bob)}
    assert all(r.status is Status.COMPLETED for r in records.values())
    claimed = {j: when(r.started_at) for j, r in records.items()}
    ended = {j: calculation_end(jobs, j) for j in records}
    # steady state: from the launch that first fills the cap until either owner's last
    # start (after it, that owner has nothing queued and the other takes the free slots)
    order = sorted(records, key=claimed.__getitem__)
    last = min(max(claimed[j] for j in alice), max(claimed[j] for j in bob))
    steady = [j for j in order[6:] if claimed[j] < last]
    held_at: list[tuple[int, int]] = []
    for j in steady:
        held = Counter(records[k].owner for k in records
                       if claimed[k] <= claimed[j] < ended[k])
        held_at.append((held["alice"], held["bob"]))
    full = [h for h in held_at if sum(h) == 6]
    print(f"held (alice, bob) at each of {len(steady)} launches in steady state:",
          " ".join(f"{a}{b}" for a, b in held_at), f"| cap full: {Counter(full)}")
    assert len(full) >= 30, held_at
    assert all(abs(a - 4) <= 1 and abs(b - 2) <= 1 for a, b in full), Counter(full)
    assert Counter(full).most_common(1)[0][0] == (4, 2), Counter(full)
