"""Identifiers the library makes up: workflow IDs and outside-workflow message IDs."""

from __future__ import annotations

import os
import threading
import time

_MS = (1 << 48) - 1
_RAND_B = (1 << 62) - 1


class _RandomBytes:
    """``os.urandom`` read 4 KiB at a time. Each ``os.urandom`` call releases the
    GIL, and a thread waiting for it then runs first: on the call path of every
    workflow that cost 13 us about one call in ten. A forked child starts empty,
    so it never repeats its parent's bytes."""

    _SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(self._SIZE), 0
            start = self._pos
            self._pos = start + n
            return self._buf[start : start + n]

    def forget(self) -> None:
        self._buf, self._pos = b"", 0


_RANDOM = _RandomBytes()
os.register_at_fork(after_in_child=_RANDOM.forget)


def new_id() -> str:
    """A version-7 UUID (RFC 9562) as text: 48 bits of Unix time in
    milliseconds, then 74 random bits.

    IDs made later sort later, so a B-tree over them (the status table's
    primary key, the message ID index) takes new IDs at its right end, as
    it takes sequence numbers, instead of on a random page each time: fewer
    pages touched, split and logged, and a smaller working set as history
    grows. The 74 random bits keep IDs unique and unguessable.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_RANDOM.take(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    value = (
        (ms & _MS) << 80
        | 0x7 << 76  # version
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62  # variant
        | rand & _RAND_B
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
