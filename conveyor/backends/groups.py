"""The shared backend's operations on the keys of a queue (fair limits per key): list them, set their overrides, read
their best ready jobs for the claim planner (`limits.py`), and forget the idle ones. SQL in `<dialect>/groups.sql`."""

from __future__ import annotations

from typing import Any

from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.job import GroupInfo


class GroupOps:
    """A mixin of SQLBackend."""

    driver: Driver

    def list_groups(self, queue: str, limit: int = 100, key: str | None = None) -> tuple[list[GroupInfo], int]:
        def go(tx: Tx) -> tuple[list[Any], list[Any], list[Any]]:
            return (tx.rows("list_groups", {"queue": queue, "key": key, "limit": limit}),
                    tx.rows("count_groups", {"queue": queue}), tx.rows("queue_group_limits", {"queue": queue}))

        rows, total, limits = self.driver.read(go)
        concurrency, rate = limits[0] if limits else (None, None)
        groups = [GroupInfo(k, running, ready, c if c is not None else concurrency, r if r is not None else rate,
                            c is not None, r is not None)
                  for k, ready, c, r, _served, running in rows]
        return groups, int(total[0][0])

    def set_group(self, queue: str, key: str, concurrency: int | None, rate_limit: float | None, now: float) -> None:
        def go(tx: Tx) -> None:
            tx.execute("mark_grouped", {"queue": queue, "now": now})
            tx.execute("set_group", {"queue": queue, "key": key, "concurrency": concurrency,
                                     "rate_limit": rate_limit, "now": now})

        self.driver.write(go)
        self._queues_changed()

    def prune_groups(self, before: float) -> int:
        """Forget the keys with nothing ready or running, no override, and no turn since `before`."""
        return self.driver.write(lambda tx: tx.execute("prune_groups", {"before": before}))

    def _queues_changed(self) -> None:
        """A queue's settings changed (a dialect that caches them forgets them)."""

    def _ready_in_groups(self, tx: Tx, queue: str, keys: list[str], limits: list[int], types: Any) -> list[Any]:
        """The best `limits[i]` ready jobs of each key `keys[i]` of `queue`, in one statement: an index range per
        key (SQLite reads the largest limit of each; the planner takes only what a key allows)."""
        return tx.rows("ready_in_groups", {"queue": queue, "keys": dumps(keys), "types": types,
                                           "limit": max(limits, default=0)})
