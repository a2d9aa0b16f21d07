"""Schemathesis generates requests from the server's own OpenAPI schema (valid ones and invalid ones) and sends them
to the real server over HTTP, on each backend: no request may cause a 5xx, and every error must have the SPEC's error
body. The walk is over the schema, so every route is in it as soon as it exists (the plugins' too, section 7's when
they land): a new route needs no new line here."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.api.conftest import RunningServer

MAX_EXAMPLES = 15  # per operation and mode: bounded so the whole test takes a minute or two on a loaded machine
SKIPPED = {("GET", "/api/v1/events")}  # an endless stream; its errors are tested in test_events


@pytest.mark.timeout(600)  # every operation of the API, the ingestion routes included
def test_no_server_errors_on_generated_requests(backend_server: RunningServer) -> None:
    """On each backend: values PostgreSQL stores differently from SQLite (NUL characters, huge numbers, deep JSON)
    must get the same clean answer from both."""
    server = backend_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    checked = 0
    timings: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        modes = [GenerationMode.POSITIVE]
        # Invalid path ids are slow to generate and test nothing new (404 for any id): negative cases for operations
        # that take a query or a body only.
        if len(operation.query) or len(operation.body):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

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
                elif response.status_code >= 400:
                    body = response.json()
                    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
                    assert all(isinstance(v, str) and v for v in body["error"].values()), body

            began = time.monotonic()
            try:
                check()
            except Unsatisfiable:  # nothing invalid can be generated for it (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.path
            checked += 1
            timings.append(f"{time.monotonic() - began:6.1f}s {mode.value} {operation.method.upper()} {operation.path}")
    print("\n".join(timings))
    assert checked >= 30  # every operation, and invalid input for those that take some
    assert not failures, "\n".join(failures[:20])
