"""Fixtures of the webhook tests: a real local receiver, and an app that may send to it (private addresses allowed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.webhooks.receiver import Receiver, serve_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture
def hook_settings() -> Settings:
    return Settings(lease_s=2.0, shutdown_grace_s=2.0, poll_interval_s=0.1, webhook_allow_private=True)


@pytest.fixture
def hook_app(db_url: str, hook_settings: Settings) -> Iterator[Conveyor]:
    conveyor = Conveyor(db_url, settings=hook_settings)

    @conveyor.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @conveyor.task(name="boom", max_retries=0)
    def boom() -> None:
        raise RuntimeError("boom")

    yield conveyor
    conveyor.close()
