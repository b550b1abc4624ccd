"""The controller Lease and what the leader loop does with it, against an in-memory Lease API
(the real API server: tests/cluster/test_concurrency.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from qforge.k8s.leader import LeaseElector
from qforge.k8s.operator import LeaderLoop
from qforge.scheduling.core import PassReport
from qforge.settings import Settings


class FakeLeases:
    """One Lease, with resourceVersion conflicts like the API server's."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.reads = 0
        self.writes = 0

    def _obj(self) -> Any:
        assert self.lease is not None
        spec = self.lease["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version=str(self.version),
                                     annotations=self.lease["metadata"].get("annotations")),
            spec=SimpleNamespace(holder_identity=spec.get("holderIdentity"),
                                 renew_time=spec.get("renewTime"),
                                 acquire_time=spec.get("acquireTime"),
                                 lease_duration_seconds=spec.get("leaseDurationSeconds"),
                                 lease_transitions=spec.get("leaseTransitions")))

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        self.reads += 1
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return self._obj()

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self.writes += 1
        if self.lease is not None:
            raise ApiException(status=409, reason="Conflict")
        self.lease, self.version = body, self.version + 1

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any) -> None:
        self.writes += 1
        if isinstance(body, dict):
            if body["metadata"]["resourceVersion"] != str(self.version):
                raise ApiException(status=409, reason="Conflict")
            self.lease = body
        else:  # release() writes the model it read back
            assert self.lease is not None
            self.lease["spec"].update(holderIdentity=body.spec.holder_identity,
                                      renewTime=body.spec.renew_time)
        self.version += 1

    def age(self, seconds: float) -> None:
        """Make the last renewal `seconds` older (the holder stopped renewing)."""
        assert self.lease is not None
        stamp = datetime.now(UTC) - timedelta(seconds=seconds)
        self.lease["spec"]["renewTime"] = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_leader_a_standby_and_takeover_after_the_lease_expires() -> None:
    api = FakeLeases()
    a = LeaseElector(api, "ns", "qforge-controller", "a", duration_seconds=15)
    b = LeaseElector(api, "ns", "qforge-controller", "b", duration_seconds=15)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    api.age(16)  # a stopped renewing (killed)
    assert b.try_acquire_or_renew() and b.leading
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


class FakePods:
    def __init__(self, pods: dict[str, str]) -> None:
        self.pods = pods  # name -> uid
        self.reads = 0

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self.reads += 1
        if name not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(metadata=SimpleNamespace(uid=self.pods[name]))


def test_a_lease_held_by_a_pod_that_is_gone_is_taken_at_once() -> None:
    api, pods = FakeLeases(), FakePods({"ctl-a": "uid-a"})
    a = LeaseElector(api, "ns", "r-controller", "ctl-a.1", pod=("ctl-a", "uid-a"),
                     core_api=pods)
    b = LeaseElector(api, "ns", "r-controller", "ctl-b.1", pod=("ctl-b", "uid-b"),
                     core_api=pods)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # a's pod is there: wait out the Lease
    del pods.pods["ctl-a"]  # a's pod is gone (its node died, or it was deleted)
    assert b.try_acquire_or_renew()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "ctl-b.1"


def test_a_lease_held_by_an_earlier_pod_of_the_same_name_is_taken() -> None:
    api, pods = FakeLeases(), FakePods({"ctl": "uid-1"})
    a = LeaseElector(api, "ns", "l", "ctl.1", pod=("ctl", "uid-1"), core_api=pods)
    assert a.try_acquire_or_renew()
    pods.pods["ctl"] = "uid-2"
    b = LeaseElector(api, "ns", "l", "ctl.7", pod=("ctl", "uid-2"), core_api=pods)
    assert b.try_acquire_or_renew()


def test_a_lease_without_a_pod_is_never_taken_early() -> None:
    api, pods = FakeLeases(), FakePods({})
    a = LeaseElector(api, "ns", "l", "host.1")
    b = LeaseElector(api, "ns", "l", "host.2", pod=("ctl-b", "uid-b"), core_api=pods)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and pods.reads == 0


def test_release_hands_over_at_once() -> None:
    api = FakeLeases()
    a = LeaseElector(api, "ns", "l", "a")
    b = LeaseElector(api, "ns", "l", "b")
    assert a.try_acquire_or_renew()
    a.release()
    assert not a.leading
    assert b.try_acquire_or_renew()


def test_leader_renews_once_per_third_of_the_duration_not_every_pass() -> None:
    api, clock = FakeLeases(), Clock()
    a = LeaseElector(api, "ns", "l", "a", duration_seconds=15, clock=clock)
    assert a.try_acquire_or_renew()
    calls = api.reads + api.writes
    for _ in range(20):
        clock.now += 0.2  # 4 s of passes
        assert a.try_acquire_or_renew()
    assert api.reads + api.writes == calls
    clock.now += 1.1
    assert a.try_acquire_or_renew()
    assert api.writes == 2  # created, then renewed once


class FakeScheduler:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.wake = threading.Event()
        self.heartbeats = SimpleNamespace(retire=lambda: None)

    def start(self) -> None:
        self.log.append("start")

    def run_once(self) -> PassReport:
        self.log.append("pass")
        return PassReport()


class FakeExecutor:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def forget_all(self) -> None:
        self.log.append("forget")


def test_the_leader_loop_acts_only_while_leading_and_starts_afresh_after_losing_the_lease() -> None:
    api, clock = FakeLeases(), Clock()
    log: list[str] = []
    mine = LeaseElector(api, "ns", "l", "mine", duration_seconds=15, clock=clock)
    other = LeaseElector(api, "ns", "l", "other", duration_seconds=15, clock=clock)
    loop = LeaderLoop(Settings(), lambda: FakeScheduler(log),  # type: ignore[arg-type,return-value]
                    FakeExecutor(log), mine)  # type: ignore[arg-type]

    def later(seconds: float) -> None:
        clock.now += seconds
        api.age(seconds)

    assert other.try_acquire_or_renew()
    assert loop.run_once() is None and log == []
    later(16)  # the other controller stopped renewing
    assert loop.run_once() is not None
    assert log == ["start", "pass"]
    later(16)  # this one was paused past its Lease; the other took over meanwhile
    assert other.try_acquire_or_renew()
    assert loop.run_once() is None
    assert log == ["start", "pass", "forget"]
    assert loop.scheduler is None
    other.release()
    assert loop.run_once() is not None
    assert log == ["start", "pass", "forget", "start", "pass"]


def test_lease_times_never_fall_on_a_whole_second(monkeypatch: Any) -> None:
    """The client re-serialises MicroTimes with isoformat(), which drops a zero fraction;
    the API server rejects the result."""
    from qforge.k8s import leader

    class OnTheSecond(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    monkeypatch.setattr(leader, "datetime", OnTheSecond)
    assert leader._now().isoformat() == "2026-01-01T12:00:00.000001+00:00"


def test_an_unreachable_api_server_is_a_warning_line_and_a_bug_is_a_traceback() -> None:
    """While kube-apiserver restarts every pass fails; that is a one-line warning (the
    chaos tier saw 48 tracebacks in one restart before), while any other failure keeps
    its traceback."""
    import logging

    from urllib3.exceptions import MaxRetryError, NewConnectionError

    from qforge.k8s.operator import api_unreachable, one_line

    refused = MaxRetryError(None, "/apis/coordination.k8s.io/v1/leases",  # type: ignore[arg-type]
                            NewConnectionError(None, "Connection refused\n(errno 111)"))  # type: ignore[arg-type]
    assert api_unreachable(refused)
    assert api_unreachable(ApiException(status=503))
    assert api_unreachable(ApiException(status=0))
    assert api_unreachable(ConnectionRefusedError())
    assert not api_unreachable(ApiException(status=403))
    assert not api_unreachable(ValueError("a bug"))
    line = one_line(refused)
    assert "\n" not in line and line.startswith("MaxRetryError: ")
    assert len(one_line(ValueError("x" * 1000))) == 300

    class Failing:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def try_acquire_or_renew(self) -> bool:
            raise self.exc

        def release(self) -> None:
            pass

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("qforge.k8s.operator")
    handler = Keep()
    logger.addHandler(handler)
    try:
        for exc in (refused, ValueError("a bug")):
            loop = LeaderLoop(Settings(poll_interval=0.05), lambda: None,  # type: ignore[arg-type,return-value]
                              SimpleNamespace(), Failing(exc))  # type: ignore[arg-type]
            loop.thread.start()
            threading.Event().wait(0.2)
            loop.stop.set()
            loop.thread.join(timeout=10)
            assert not loop.thread.is_alive()
    finally:
        logger.removeHandler(handler)
    unreachable = [r for r in records if r.getMessage().startswith("Kubernetes API unreachable")]
    bugs = [r for r in records if r.getMessage() == "Scheduling pass failed"]
    assert unreachable and all(r.levelno == logging.WARNING and r.exc_info is None
                               for r in unreachable)
    assert bugs and all(r.exc_info is not None for r in bugs)
