"""Shared fixtures. `db_url` runs a test once per backend: the conformance suite."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("CONVEYOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/conveyor.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    if importlib.util.find_spec("conveyor.backends.postgres") is None:
        if IN_CI:
            pytest.fail("the PostgreSQL backend is missing, and CI must run the PostgreSQL suite")
        pytest.skip("the PostgreSQL backend is not built yet")
    from tests.pg import fresh_database

    with fresh_database(PG_ADMIN_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{'sqlite' if request.param == 'sqlite' else 'pg'}_url"))


@pytest.fixture
def settings() -> Settings:
    return Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1)


@pytest.fixture
def app(db_url: str, settings: Settings) -> Iterator[Conveyor]:
    conveyor = Conveyor(db_url, settings=settings)
    yield conveyor
    conveyor.close()


@pytest.fixture
def sqlite_app(sqlite_url: str, settings: Settings) -> Iterator[Conveyor]:
    conveyor = Conveyor(sqlite_url, settings=settings)
    yield conveyor
    conveyor.close()
