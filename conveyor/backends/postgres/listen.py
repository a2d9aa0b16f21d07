"""LISTEN/NOTIFY: idle workers wake on `conveyor_ready`, live event streams on `conveyor_changes`."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("conveyor.postgres")
WAKE_COOLDOWN_S = 0.01  # notifications closer than this wake a worker once (at the end of the cooldown)
LISTEN_WAIT_S = 0.25  # how long one wait for notifications lasts (a closing listener stops within it)
LISTEN_RECONNECT_S = (0.1, 0.2, 0.5, 1.0)  # back-off of the listener after losing its connection
READY_CHANNEL = "conveyor_ready"
CHANGES_CHANNEL = "conveyor_changes"


class Listener:
    """A dedicated connection that LISTENs on a channel in a daemon thread and counts notifications.

    The count is the worker's change token: reading it costs nothing. After losing its connection (a database restart)
    the thread reconnects with a short back-off and bumps the count, so workers look for work they may have missed.

    Debounced: the first notification wakes at once; more within `WAKE_COOLDOWN_S` are folded into one wake at the
    end of it. A stream of single enqueues then wakes each idle worker at most 1/WAKE_COOLDOWN_S times a second
    instead of once per job, while a lone job still starts without delay.
    """

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.count = 0
        self.callbacks: list[Callable[[], None]] = []
        self._last_wake = -math.inf
        self._pending = False
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=f"conveyor-listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    failures = 0
                    self._wake()  # (re)connected: whatever happened meanwhile may have made jobs ready
                    self.connected.set()
                    while not self._stop.is_set():
                        wait = LISTEN_WAIT_S
                        if self._pending:
                            wait = max(0.0, self._last_wake + WAKE_COOLDOWN_S - time.monotonic())
                        for _ in conn.notifies(timeout=wait):
                            self._notified()
                        if self._pending and time.monotonic() - self._last_wake >= WAKE_COOLDOWN_S:
                            self._wake()
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                self._wake()  # nudge workers to poll while the listener is down
                pause = LISTEN_RECONNECT_S[min(failures, len(LISTEN_RECONNECT_S) - 1)]
                failures += 1
                log.warning("listener on %s lost its connection (%s); reconnecting in %gs", self.channel, exc, pause)
                self._stop.wait(pause)
            finally:
                self._conn = None

    def _notified(self) -> None:
        if time.monotonic() - self._last_wake >= WAKE_COOLDOWN_S:
            self._wake()
        else:
            self._pending = True

    def _wake(self) -> None:
        self._pending = False
        self._last_wake = time.monotonic()
        self.count += 1
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception:  # a closed event loop must not kill the listener
                log.debug("listener callback failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()  # the thread sees it within one LISTEN_WAIT_S
        self._thread.join(timeout=3.0)
