"""xtb's environment: threads from the CPU allowance, stack size, parameter path."""

from __future__ import annotations

from pathlib import Path

from qforge_runner.harness import xtb_environment
from tests.unit.runner.helpers import water_spec


def _fake_install(tmp_path: Path) -> Path:
    (tmp_path / "prefix" / "bin").mkdir(parents=True)
    (tmp_path / "prefix" / "share" / "xtb").mkdir(parents=True)
    xtb = tmp_path / "prefix" / "bin" / "xtb"
    xtb.write_text("")
    return xtb


def test_threads_follow_the_cpu_allowance(tmp_path: Path) -> None:
    env = xtb_environment(water_spec(cpu=4), str(_fake_install(tmp_path)),
                          base={"OMP_NUM_THREADS": "64", "PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["MKL_NUM_THREADS"] == "4"
    assert env["OPENBLAS_NUM_THREADS"] == "4"
    assert env["OMP_MAX_ACTIVE_LEVELS"] == "1"
    assert env["PATH"] == "/bin"


def test_stack_size_has_a_default_the_environment_may_override(tmp_path: Path) -> None:
    xtb = str(_fake_install(tmp_path))
    assert xtb_environment(water_spec(), xtb, base={})["OMP_STACKSIZE"] == "1G"
    assert xtb_environment(water_spec(), xtb, base={"OMP_STACKSIZE": "4G"})["OMP_STACKSIZE"] \
        == "4G"


def test_xtbpath_points_at_the_installations_parameters(tmp_path: Path) -> None:
    xtb = _fake_install(tmp_path)
    env = xtb_environment(water_spec(), str(xtb), base={})
    assert env["XTBPATH"] == str((tmp_path / "prefix" / "share" / "xtb").resolve())
    assert xtb_environment(water_spec(), str(xtb), base={"XTBPATH": "/opt/x"})["XTBPATH"] \
        == "/opt/x"
    (tmp_path / "prefix" / "share" / "xtb").rmdir()
    assert "XTBPATH" not in xtb_environment(water_spec(), str(xtb), base={})


def test_the_callers_environment_is_not_changed(tmp_path: Path) -> None:
    base = {"A": "1"}
    xtb_environment(water_spec(), str(_fake_install(tmp_path)), base=base)
    assert base == {"A": "1"}
