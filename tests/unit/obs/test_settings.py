"""The observability settings and options: defaults, and bad values refused."""

from __future__ import annotations

import pytest

from qforge.cli.main import build_parser
from qforge.settings import Settings, SettingsError


def test_defaults_serve_no_metrics_and_log_text() -> None:
    s = Settings.from_env({})
    assert s.metrics_port is None and s.metrics_address == "0.0.0.0"
    assert s.log_format == "text"


def test_the_environment_sets_them() -> None:
    s = Settings.from_env({"METRICS_PORT": "9102", "METRICS_ADDRESS": "127.0.0.1",
                           "LOG_FORMAT": "json"})
    assert (s.metrics_port, s.metrics_address, s.log_format) == (9102, "127.0.0.1", "json")


@pytest.mark.parametrize(("env", "needle"), [
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
    ({"METRICS_PORT": "nine"}, "METRICS_PORT"),
])
def test_bad_values_name_their_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize("args", [
    ["worker", "--metrics-port", "70000"],
    ["worker", "--metrics-port", "x"],
    ["worker", "--log-format", "xml"],
    ["controller", "--log-format", "yaml"],
])
def test_bad_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(args)
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_options_reach_the_settings() -> None:
    args = build_parser().parse_args(["worker", "--metrics-port", "0", "--log-format", "json",
                                      "--metrics-address", "127.0.0.1"])
    assert (args.metrics_port, args.log_format, args.metrics_address) == (0, "json",
                                                                          "127.0.0.1")
