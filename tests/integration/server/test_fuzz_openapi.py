"""Fuzzing driven by the server's own OpenAPI description (schemathesis, Hypothesis
underneath): whatever a client sends, no answer is a 5xx, and every answer matches what
the description says of its route (status code, content type, body schema)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_url
from schemathesis.specs.openapi.checks import positive_data_acceptance

from qforge.store.jobstore import JobStore
from qforge_runner.molecule import parse_xyz
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL

from .conftest import Server, running_server

# `make test` runs a budget per route that keeps the tier to about a minute; `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz) the full one.
EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 40


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    """A submission's body as the fuzzer draws it (the description says: a string)."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(
        value).encode()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # the fuzzer is one token asking very often
    with running_server(tmp_path_factory.mktemp("fuzz"),
                        env={"API_RATE_BURST": "100000"}) as srv:
        srv.token("fuzzer", "admin")
        mol = parse_xyz(WATER_EXPERIMENTAL)
        JobStore(srv.jobs).submit_batch([(JobSpec(molecule=mol, name="water"),
                                          mol.to_xyz())], group="g", owner="fuzzer")
        yield srv


@pytest.fixture(scope="module")
def api(live: Server) -> schemathesis.BaseSchema:
    return from_url(f"{live.url}/api/v1/openapi.json")


def test_no_answer_is_a_server_error_and_every_answer_is_described(
        live: Server, api: schemathesis.BaseSchema) -> None:
    """Each operation of the description, fuzzed in turn (Hypothesis draws the requests
    from its parameters and body); a failure names the operation and the request."""
    headers = {"Authorization": f"Bearer {live.tokens['fuzzer']}"}
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: schemathesis.Case) -> None:
            if case.path == "/api/v1/events":  # a stream that ends when its jobs do:
                case.query = {"job_id": ["nosuch"]}  # one of no job (404)
            if case.path == "/api/v1/groups/{group}/events":
                case.path_parameters = {"group": "nosuch"}
            # A submission's body is NDJSON, which the description can only call a string:
            # that any string is accepted is not claimed there (the other checks hold).
            excluded = [positive_data_acceptance] if case.path == "/api/v1/jobs" and (
                case.method == "POST") else []
            case.call_and_validate(base_url=live.url, timeout=60, headers=headers,
                                   excluded_checks=excluded)

        try:
            fuzz()
        except Exception as exc:  # every operation is fuzzed; all failures are shown
            failures.append(f"{operation.method.upper()} {operation.path}: "
                            f"{type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_the_description_names_every_route(live: Server, api: schemathesis.BaseSchema,
                                           tmp_path: Path) -> None:
    paths = set(api.raw_schema["paths"])
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/groups/{group}",
            "/api/v1/export", "/api/v1/events", "/api/v1/cancel"} <= paths
