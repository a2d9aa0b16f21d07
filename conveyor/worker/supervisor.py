"""Runs N worker processes and restarts any that dies, so a task that kills its process (os._exit, the OOM killer)
does not take the service down."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("conveyor.supervisor")

CHECK_EVERY_S = 0.2
QUICK_DEATH_S = 5.0  # a child that dies sooner than this after its start is restarted after a pause
RESTART_PAUSE_S = 1.0
KILL_AFTER_EXTRA_S = 10.0
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    slot: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, argv: Sequence[str], processes: int, burst: bool, grace_s: float) -> None:
        self.argv = list(argv)
        self.processes = processes
        self.burst = burst
        self.grace_s = grace_s
        self.children: dict[int, Child] = {}
        self.restarts = 0
        self._signals = 0

    def _spawn(self, slot: int) -> None:
        # Children get their own process group: a Ctrl-C or a signal to our group reaches only the supervisor, which
        # forwards it once (a child that got it twice would skip its graceful drain). They die with the supervisor.
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.argv, process_group=0, preexec_fn=_die_with_parent
        )
        self.children[slot] = Child(slot, process)
        log.info("supervisor: started worker process %d (pid %d)", slot, process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        restart_at: dict[int, float] = {}
        while True:
            if self._signals:
                return self._wait_for_children()
            for slot, child in list(self.children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self.children[slot]
                if code == 0 and self.burst:
                    continue
                log.warning("supervisor: worker process %d (pid %d) died with %s; restarting it",
                            slot, child.process.pid, _describe(code))
                quick = time.monotonic() - child.started < QUICK_DEATH_S
                restart_at[slot] = time.monotonic() + (RESTART_PAUSE_S if quick else 0.0)
            for slot, when in list(restart_at.items()):
                if time.monotonic() >= when and not self._signals:
                    del restart_at[slot]
                    self.restarts += 1
                    self._spawn(slot)
            if not self.children and not restart_at:
                return 0
            time.sleep(CHECK_EVERY_S)

    def _wait_for_children(self) -> int:
        deadline = time.monotonic() + self.grace_s + KILL_AFTER_EXTRA_S
        forwarded = self._signals
        while any(c.process.poll() is None for c in self.children.values()):
            if self._signals > forwarded:  # a second signal: the children were told again, they stop at once
                forwarded = self._signals
            if time.monotonic() >= deadline:
                for child in self.children.values():
                    if child.process.poll() is None:
                        log.error("supervisor: worker pid %d did not stop in time; killing it", child.process.pid)
                        child.process.kill()
                break
            time.sleep(CHECK_EVERY_S)
        for child in self.children.values():
            child.process.wait()
        return 0


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the supervisor dies (no orphaned workers)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line of one supervised worker process."""
    return [sys.executable, "-m", "conveyor", *args]
