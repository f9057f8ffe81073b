"""Giving freed memory back to the system after requests that left a worker's heap larger (glibc only).

An upload of 64 megapixels makes arrays of hundreds of MB; glibc maps those itself and unmaps them when freed, but
then raises its threshold for mapping (up to 32 MB), so the arrays of the requests after it come from the heap,
whose freed pages it keeps: over 10,000 uploads of every size a worker grew 58% above its size after warm-up
(benchmarks/RESULTS.md, issue 22). ``malloc_trim(0)`` hands every whole free page back. It costs the next request
its page faults (a third more time if done after every request), so it runs only when the worker's resident memory
has grown past a margin since the last trim, and after the response is sent (``call_on_close``).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

# Growth of resident memory since the last trim that triggers one: this share of it, at least MIN_SLACK_BYTES.
SLACK_SHARE = 0.05
MIN_SLACK_BYTES = 8 << 20


def resident_bytes() -> int | None:
    """This process's resident memory (Linux: /proc/self/statm), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library)."""
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


class HeapTrimmer:
    """Call :meth:`after_request` after each request: it trims the heap when resident memory has grown by more
    than max(SLACK_SHARE x its level after the last trim, MIN_SLACK_BYTES). Does nothing without glibc or
    /proc."""

    def __init__(self, trim: Callable[[int], int] | None = None, rss: Callable[[], int | None] = resident_bytes):
        self.trim = trim if trim is not None else malloc_trim()
        self.rss = rss
        self.level = rss() if self.trim is not None else None
        self.trims = 0
        self._busy = threading.Lock()  # threaded servers (serve --dev): one look at a time, the others skip

    def after_request(self) -> None:
        if self.trim is None or self.level is None or not self._busy.acquire(blocking=False):
            return
        try:
            self._after_request()
        finally:
            self._busy.release()

    def _after_request(self) -> None:
        now = self.rss()
        if now is None:
            return
        if now > self.level + max(SLACK_SHARE * self.level, MIN_SLACK_BYTES):
            self.trim(0)
            self.trims += 1
            self.level = self.rss() or now  # what is left is in use (TensorFlow loaded for an explanation...)
        elif now < self.level:
            self.level = now  # growth counts from the smallest size since the last trim
