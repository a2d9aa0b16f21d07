"""When a failed attempt runs again: a task's retry policy. Whether it runs again at all is the job's budget
(`max_retries`), which the backend keeps; the policy says when."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from conveyor.errors import ConfigError
from conveyor.job import LATEST_RUN_AT_S

DEFAULT_RETRY_BACKOFF_S = 1.0
DEFAULT_RETRY_BACKOFF_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: after the n-th failed attempt the job waits between half and all of
    `min(backoff_max_s, backoff_s * 2 ** (n - 1))` seconds, so retries of many jobs that failed together spread out."""

    backoff_s: float = DEFAULT_RETRY_BACKOFF_S
    backoff_max_s: float = DEFAULT_RETRY_BACKOFF_MAX_S

    def __post_init__(self) -> None:
        for name in ("backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ConfigError(f"retry {name} must be a non-negative number of seconds, got {value!r}")

    def delay_s(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after the `failures`-th failed attempt (1-based)."""
        ceiling = float(min(self.backoff_max_s, self.backoff_s * 2.0 ** max(0, failures - 1)))
        jitter: float = (rng or random).uniform(0, ceiling / 2)
        return ceiling / 2 + jitter

    def retry_at(self, failures: int, now: float, after: float | None = None) -> float:
        """When the job may start again after its `failures`-th failed attempt. `after` (a task's
        `Retry(after=...)`, an HTTP worker's `retry_after`) replaces the backoff; a far future is capped."""
        delay = self.delay_s(failures) if after is None else max(0.0, after)
        return min(now + delay, LATEST_RUN_AT_S)
