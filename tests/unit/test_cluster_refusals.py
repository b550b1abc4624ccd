"""The cluster tests' reading of refusals in a controller log (tests/cluster/helpers.py
`refusals`): every way the API server's 403 is printed, and none of the numbers a log
line holds anyway (two CI runs went red on those: a job id stamped at 14:03:10, a line
logged at 18:18:53,403)."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import refusals


@pytest.mark.parametrize("line", [
    "kubernetes.client.exceptions.ApiException: (403)",
    "Reason: Forbidden",
    'jobs.batch is forbidden: User "system:serviceaccount:q:qforge" cannot create',
    "POST /apis/batch/v1/namespaces/q/jobs: HTTP 403",
    "the API server answered status=403",
])
def test_a_refusal_is_seen(line: str) -> None:
    assert refusals(f"[2026-12-07 10:00:00,001] [controller] x - ERROR - {line}") != []


@pytest.mark.parametrize("line", [
    "[2026-12-07 18:18:53,403] [controller] kopf - INFO - Initial authentication has finished.",
    "[2026-12-07 14:03:10,001] [controller] q - INFO - Starting job stdin_20261207_140310_ab",
    "[2026-12-07 14:03:10,001] [controller] q - INFO - 403 jobs queued",
])
def test_numbers_in_a_line_are_not_refusals(line: str) -> None:
    assert refusals(line) == []
