"""The helpers the controller takes from the runner package (one of each): the one line of
a pydantic error, the timestamp format; and the runner package never imports the
controller's."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qforge_runner.errors import InputError, validation_line
from qforge_runner.timestamps import utcnow

RUNNER = Path(__file__).resolve().parents[3] / "runner_image"


class _Labels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    team: str = Field(max_length=3)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    charge: int = 0
    labels: _Labels | None = None
    name: str = "x"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if " " in value:
            raise ValueError("name: no spaces,\n  please")
        return value


def _error(**data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Spec.model_validate(data)
    return info.value


def test_a_pydantic_error_is_one_line_led_by_where() -> None:
    assert validation_line(_error(charge="one")) == (
        "charge: Input should be a valid integer, unable to parse string as an integer")
    assert validation_line(_error(labels={"team": "abcd"})) == (
        "labels.team: String should have at most 3 characters")


def test_our_own_sentences_lose_pydantics_prefix_and_are_not_led_twice() -> None:
    # "Value error, " dropped; the message names its field already; newlines folded
    assert validation_line(_error(name="a b")) == "name: no spaces, please"


def test_a_prefix_and_a_spelling_of_the_location() -> None:
    assert validation_line(_error(charge="x"), prefix="spec").startswith("spec.charge: ")

    def env(loc: Sequence[str | int]) -> str:
        return str(loc[0]).upper()

    assert validation_line(_error(labels={"team": "abcd"}), location=env) == (
        "LABELS: String should have at most 3 characters")


def test_input_error_words_it_the_same() -> None:
    exc = _error(charge="x")
    assert str(InputError.from_validation_error(exc)) == validation_line(exc)


def test_timestamps_are_utc_with_microseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", utcnow())


def test_no_module_of_the_runner_package_imports_the_controller() -> None:
    modules = sorted(f"qforge_runner.{p.stem}" for p in RUNNER.glob("*.py")
                     if p.stem != "__init__")
    assert "qforge_runner.timestamps" in modules and "qforge_runner.errors" in modules
    code = (f"import sys; import {', '.join(modules)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'qforge'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
