"""The queue controls of `Conveyor`: list queues, change their live settings (pause, concurrency, rate limit, and
the fair limits per key), and read or override the keys of a queue."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import QueueChange
from conveyor.errors import InvalidArgumentsError
from conveyor.job import GroupInfo, QueueInfo
from conveyor.options import MAX_NAME, usable_key

if TYPE_CHECKING:
    from conveyor.backends import Backend

_UNSET: Any = object()
MAX_CONCURRENCY = 1_000_000
MIN_RATE, MAX_RATE = 0.001, 1e6  # a vanishing rate would make the claim's rate window infinite


def check_name(kind: str, value: Any) -> str:
    if not usable_key(value):
        raise InvalidArgumentsError(f"{kind} must be a non-empty string of at most {MAX_NAME} characters without NUL")
    return str(value)


def check_concurrency(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidArgumentsError(f"{field} must be an integer from 1 to {MAX_CONCURRENCY}, got {value!r:.40}")
    return value


def check_rate(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not MIN_RATE <= value <= MAX_RATE:
        raise InvalidArgumentsError(f"{field} must be between {MIN_RATE} and {MAX_RATE:g} jobs per second, "
                                    f"got {value!r:.40}")
    return float(value)


class QueueControls:
    """A mixin of `Conveyor`."""

    clock: Callable[[], float]

    @property
    def backend(self) -> Backend:
        raise NotImplementedError

    def list_queues(self) -> list[QueueInfo]:
        return self.backend.list_queues()

    def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        concurrency: int | None = _UNSET,
        rate_limit: float | None = _UNSET,
        group_concurrency: int | None = _UNSET,
        group_rate_limit: float | None = _UNSET,
    ) -> QueueInfo:
        """Change a queue's live settings; pass None to lift a limit. `group_concurrency` and `group_rate_limit`
        apply to each key of the queue (fair limits per key)."""
        check_name("queue", name)
        given: dict[str, Any] = {k: v for k, v in (("concurrency", concurrency), ("rate_limit", rate_limit),
                                   ("group_concurrency", group_concurrency),
                                   ("group_rate_limit", group_rate_limit)) if v is not _UNSET}
        for field, value in given.items():
            (check_rate if field.endswith("rate_limit") else check_concurrency)(field, value)
        change = QueueChange(
            name=name,
            paused=paused,
            concurrency=given.get("concurrency"),
            rate_limit=given.get("rate_limit"),
            clear_concurrency="concurrency" in given and concurrency is None,
            clear_rate_limit="rate_limit" in given and rate_limit is None,
            group_concurrency=given.get("group_concurrency"),
            group_rate_limit=given.get("group_rate_limit"),
            clear_group_concurrency="group_concurrency" in given and group_concurrency is None,
            clear_group_rate_limit="group_rate_limit" in given and group_rate_limit is None,
        )
        return self.backend.set_queue(change, self.clock())

    def pause_queue(self, name: str) -> QueueInfo:
        return self.set_queue(name, paused=True)

    def resume_queue(self, name: str) -> QueueInfo:
        return self.set_queue(name, paused=False)

    def list_groups(self, queue: str, *, limit: int = 100) -> tuple[list[GroupInfo], int]:
        """The keys of `queue`, busiest first (running, then ready), at most `limit`, and how many it has."""
        check_name("queue", queue)
        return self.backend.list_groups(queue, limit)

    def get_group(self, queue: str, key: str) -> GroupInfo:
        """One key of `queue` (a key with no jobs yet says 0 running and 0 ready, and the queue's limits)."""
        check_name("queue", queue)
        self._check_key(key)
        found, _ = self.backend.list_groups(queue, 1, key)
        if found:
            return found[0]
        info = next((q for q in self.list_queues() if q.name == queue), None)
        return GroupInfo(key, 0, 0, info.group_concurrency if info else None, info.group_rate_limit if info else None)

    def set_group(self, queue: str, key: str, *, concurrency: int | None = None,
                  rate_limit: float | None = None) -> GroupInfo:
        """Override the queue's group limits for one key (None: the queue's own)."""
        check_name("queue", queue)
        self._check_key(key)
        check_concurrency("concurrency", concurrency)
        rate = check_rate("rate_limit", rate_limit)
        self.backend.set_group(queue, key, concurrency, rate, self.clock())
        return self.get_group(queue, key)

    @staticmethod
    def _check_key(key: Any) -> None:
        if not usable_key(key):
            raise InvalidArgumentsError(f"group key must be a non-blank string of at most {MAX_NAME} characters "
                                        "without NUL")
