"""Job ids: UUID version 7 (RFC 9562), time-ordered, so new ids land at the end of every index instead of at random
places; inserts stay fast as tables grow, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import time

_last_ms = 0
_counter = 0


def uuid7() -> str:
    """A UUIDv7 string; ids made in one process increase strictly (a 12-bit counter orders ids of one millisecond)."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        _counter += 1
        if _counter > 0xFFF:  # more than 4096 ids in one millisecond: borrow the next millisecond
            _last_ms += 1
            _counter = 0
        ms = _last_ms
    else:
        _last_ms, _counter = ms, 0
    tail = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | tail
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
