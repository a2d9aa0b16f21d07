"""The shared backend's operations on queues: their live settings, and their keys (fair limits per key): list them,
set their overrides, read their best ready jobs for the claim planner (`limits.py`), and forget the idle ones. SQL in
`<dialect>/queries.sql` (queues) and `<dialect>/groups.sql` (keys)."""

from __future__ import annotations

from typing import Any

from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.backends.params import QueueChange
from conveyor.job import GroupInfo, QueueInfo


class QueueOps:
    """A mixin of SQLBackend."""

    driver: Driver

    def list_queues(self) -> list[QueueInfo]:
        def go(tx: Tx) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return tx.rows("queue_settings"), tx.rows("queue_counts")

        settings_rows, count_rows = self.driver.read(go)
        settings = {r[0]: r for r in settings_rows}
        counts: dict[str, dict[str, int]] = {}
        for queue, status, n in count_rows:
            counts.setdefault(queue, {})[status] = n
        out = []
        for name in sorted(set(settings) | set(counts) | {"default"}):
            _, paused, concurrency, rate, group_concurrency, group_rate, keyed = settings.get(
                name, (name, False, None, None, None, None, False))
            out.append(QueueInfo(name, bool(paused), concurrency, rate, counts.get(name, {}), group_concurrency,
                                 group_rate, bool(keyed)))
        return out

    def set_queue(self, change: QueueChange, now: float) -> QueueInfo:
        params = {
            "name": change.name,
            "paused": change.paused,
            "concurrency": change.concurrency,
            "rate_limit": change.rate_limit,
            "clear_concurrency": change.clear_concurrency,
            "clear_rate_limit": change.clear_rate_limit,
            "group_concurrency": change.group_concurrency,
            "group_rate_limit": change.group_rate_limit,
            "clear_group_concurrency": change.clear_group_concurrency,
            "clear_group_rate_limit": change.clear_group_rate_limit,
            "now": now,
        }

        def go(tx: Tx) -> None:
            tx.execute("ensure_queue", {"name": change.name, "now": now})
            tx.execute("update_queue", params)

        self.driver.write(go)
        self._queues_changed()
        return next(q for q in self.list_queues() if q.name == change.name)

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
