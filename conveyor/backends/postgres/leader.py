"""Leader election for maintenance (rescue, prune): an expiring row per role, not a session advisory lock, so a
frozen (SIGSTOPped) leader loses the role like a dead one. Every worker calls the maintenance methods; only the
leader's calls do the work, so it runs once across the cluster."""

from __future__ import annotations

import contextlib

from conveyor.backends.postgres.driver import PostgresDriver
from conveyor.errors import BackendError

LEADER_TTL_S = 15.0  # the longest a leader that stops renewing (dead, frozen, cut off) keeps the role
LEADER_TTL_MIN_S = 1.0
LEADER_TTL_FIRST_S = 5.0


class Leadership:
    def __init__(self, driver: PostgresDriver, holder: str, role: str = "maintenance") -> None:
        self.driver = driver
        self.holder = holder
        self.role = role
        self.until = 0.0
        self._last: float | None = None

    @property
    def held(self) -> bool:
        """Whether the last election this process took part in made it the leader."""
        return self.until > 0

    def take(self, now: float) -> bool:
        """Take or renew the role; True while this process holds it. The role lasts three times the interval between
        this process's calls (1 to 15 s): a leader that stops calling is replaced about as fast as its jobs' leases
        run out."""
        if self._last is not None and 0 <= now - self._last < LEADER_TTL_MIN_S and self.until > now:
            return True  # renewed a moment ago (rescue and prune run in the same maintenance tick)
        ttl = LEADER_TTL_FIRST_S if self._last is None else 3 * (now - self._last)
        ttl = min(LEADER_TTL_S, max(LEADER_TTL_MIN_S, ttl))
        self._last = now
        params = {"role": self.role, "holder": self.holder, "until": now + ttl, "now": now}
        rows = self.driver.read(lambda tx: tx.rows("take_leadership", params))
        self.until = now + ttl if rows else 0.0
        return bool(rows)

    def resign(self) -> None:
        if self.held:
            with contextlib.suppress(BackendError):
                self.driver.write(lambda tx: tx.execute("resign_leadership", {"holder": self.holder}))
            self.until = 0.0
