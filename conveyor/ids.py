"""Job ids: UUID version 7 (RFC 9562), time-ordered, so new ids land at the end of every index instead of at random
places; inserts stay fast as tables grow, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import time

_last_ms = 0
_counter = 0
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}  # a random hex digit, top bits set to 0b10


def uuid7() -> str:
    """A UUIDv7 string; ids made in one process increase strictly (a 12-bit counter orders ids of one millisecond)."""
    return uuid7_many(1)[0]


def uuid7_many(n: int) -> list[str]:
    """`n` UUIDv7 strings in increasing order, as `n` calls of `uuid7` would make them (one clock read and one read of
    random bytes for the lot: a batch enqueue needs thousands). Layout: 48 bits of milliseconds, version 7, a 12-bit
    counter, variant 0b10, 62 random bits."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms, _counter = ms, -1
    noise = os.urandom(8 * n).hex()
    ids = []
    stamp = f"{_last_ms:012x}"
    for i in range(n):
        _counter += 1
        if _counter > 0xFFF:  # more than 4096 ids in one millisecond: borrow the next millisecond
            _last_ms += 1
            _counter = 0
            stamp = f"{_last_ms:012x}"
        r = noise[16 * i : 16 * i + 16]
        variant = _VARIANT_DIGIT[r[0]]
        ids.append(f"{stamp[:8]}-{stamp[8:]}-7{_counter:03x}-{variant}{r[1:4]}-{r[4:]}")
    return ids
