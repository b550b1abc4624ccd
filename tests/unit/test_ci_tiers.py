"""The CI runner's plan (tools/ci/tiers.py) and the per-tier port ranges (tests/kube/procs.py)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.kube import procs
from tests.kube.tools import KubeToolsError

ROOT = Path(__file__).resolve().parents[2]


def _tiers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_tiers", ROOT / "tools/ci/tiers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_tiers"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_the_plan_runs_every_make_test_tier_once() -> None:
    tiers = _tiers()
    targets = [s.target for s in tiers.PLAN]
    assert len(targets) == len(set(targets))
    assert set(targets) >= {"lint", "test-unit", "test-integration", "test-browser",
                            "test-cluster", "test-chaos", "test-autoscale", "test-infra", "e2e"}


def test_the_real_node_tiers_never_overlap_and_side_by_side_tiers_have_own_ports() -> None:
    plan = {s.name: s for s in _tiers().PLAN}
    assert "infra" in plan["e2e"].after_any  # one real node per machine
    side_by_side = ["cluster", "chaos", "autoscale", "infra", "e2e"]
    ranges = [range(int(lo), int(hi) + 1)
              for lo, hi in (plan[n].ports.split("-") for n in side_by_side)]
    for i, a in enumerate(ranges):
        assert a.stop - 1 < 32768  # below the kernel's default ephemeral range
        for b in ranges[i + 1:]:
            assert not set(a) & set(b)
    # the kwok tiers need only the tools, not each other
    for name in ("cluster", "chaos", "autoscale"):
        assert plan[name].after == ("k8s-tools",)
        assert not {"cluster", "chaos", "autoscale"} & set(plan[name].after_any)


def test_only_keeps_the_tool_builds_a_chosen_tier_needs() -> None:
    tiers = _tiers()
    chosen = tiers.select(tiers.PLAN, ["cluster"])
    assert [s.name for s in chosen] == ["k8s-helm", "k8s-tools", "cluster"]
    assert chosen[-1].after_any == ()  # the fast tiers were not chosen: no wait for them
    with pytest.raises(SystemExit, match="unknown step"):
        tiers.select(tiers.PLAN, ["nope"])


def test_free_ports_come_from_the_sessions_range_and_never_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        busy.listen()
        lo = taken - 1 if taken > 1025 else taken
        monkeypatch.setenv(procs.PORT_RANGE_ENV, f"{lo}-{lo + 4}")
        monkeypatch.setattr(procs, "_handed_out", set())
        got = procs.free_ports(4)
        assert taken not in got and all(lo <= p <= lo + 4 for p in got)
        assert len(set(got)) == 4
        with pytest.raises(KubeToolsError, match="no free port left"):
            procs.free_port()  # the busy one, and the four handed out already


def test_a_malformed_port_range_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(procs.PORT_RANGE_ENV, "80-90")
    with pytest.raises(KubeToolsError, match="expected"):
        procs.free_port()
