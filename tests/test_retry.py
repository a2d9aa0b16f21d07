"""The retry policy: when a failed attempt runs again."""

from __future__ import annotations

import math
import random

import pytest

from conveyor import ConfigError, Conveyor
from conveyor.job import LATEST_RUN_AT_S
from conveyor.retry import RetryPolicy


@pytest.mark.parametrize("seed", range(5))
def test_backoff_is_exponential_with_equal_jitter_and_capped(seed: int) -> None:
    rng = random.Random(seed)
    policy = RetryPolicy(2.0, 60.0)
    for failures in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (failures - 1))
        assert ceiling / 2 <= policy.delay_s(failures, rng) <= ceiling


def test_retry_at_is_now_plus_the_backoff_or_the_tasks_own_delay() -> None:
    policy = RetryPolicy(4.0, 4.0)
    assert 1000 + 2 <= policy.retry_at(1, 1000.0) <= 1000 + 4
    assert policy.retry_at(5, 1000.0, after=30) == 1030
    assert policy.retry_at(5, 1000.0, after=-3) == 1000  # a negative delay: at once
    assert policy.retry_at(1, 1000.0, after=math.inf) == LATEST_RUN_AT_S  # Retry(after=inf): a far future


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan, "1", True])
def test_a_bad_backoff_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="backoff_max_s"):
        RetryPolicy(1.0, bad)  # type: ignore[arg-type]


def test_a_task_owns_its_policy() -> None:
    app = Conveyor("sqlite:///:memory:", demo_tasks=False)

    @app.task(retry_backoff=2, retry_backoff_max=7)
    def custom() -> None: ...

    @app.task
    def plain() -> None: ...

    assert custom.retry_policy == RetryPolicy(2, 7)
    assert plain.retry_policy == RetryPolicy()
    with pytest.raises(ConfigError, match="backoff_s"):
        app.task(retry_backoff=-1)(lambda: None)
