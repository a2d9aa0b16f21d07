"""Schemathesis generates requests from the server's own OpenAPI schema (valid ones and invalid ones) and sends them
to the real server over HTTP: no request may cause a 5xx, and every error must have the SPEC's error body."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.api.conftest import RunningServer

MAX_EXAMPLES = 8  # per operation and mode: bounded so the whole test takes a minute or two on a loaded machine
SKIPPED = {("GET", "/api/v1/events")}  # an endless stream; its errors are tested in test_events


@pytest.mark.timeout(600)  # every operation of the API, the ingestion routes included, in both modes
def test_no_server_errors_on_generated_requests(server: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, timeout=30)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}")
                elif response.status_code >= 400 and response.status_code != 405:
                    body = response.json()
                    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body

            try:
                check()
            except Unsatisfiable:  # nothing invalid can be generated for it (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.path
            checked += 1
    assert checked >= 30  # every operation, both modes
    assert not failures, "\n".join(failures[:20])
