"""Giving freed heap memory back to the system while data streams (glibc's malloc_trim; elsewhere nothing).

Training allocates a batch, its activations and gradients every step and frees
them again, while a few small things live on (the step's loss kept for the
epoch). glibc's heap then keeps the freed space between those small blocks as
its own: reusable, but counted in the process's resident memory, and growing
step after step, so a long epoch over streamed data would hold far more than
the batches in flight. `Trimmer.read()` counts what a stream has read and,
every TRIM_BYTES or TRIM_BATCHES batches, asks malloc to hand its free pages
back (malloc_trim(0): about a millisecond). With another allocator (macOS,
Windows, musl) there is no such call and it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

TRIM_BYTES = 8 * 2**20          # read between trims
TRIM_BATCHES = 256              # batches between trims (small rows: the steps' own memory adds up first)


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


class Trimmer:
    """Counts the bytes and batches a stream has read; trims the heap every TRIM_BYTES or TRIM_BATCHES."""

    def __init__(self, every_bytes: int = TRIM_BYTES, every_batches: int = TRIM_BATCHES):
        self.every_bytes, self.every_batches = every_bytes, every_batches
        self.bytes = self.batches = 0
        self.trims = 0

    def read(self, nbytes: int) -> None:
        self.bytes += nbytes
        self.batches += 1
        if self.bytes >= self.every_bytes or self.batches >= self.every_batches:
            self.trim()

    def trim(self) -> None:
        self.bytes = self.batches = 0
        if _TRIM is not None:
            _TRIM(0)
            self.trims += 1


def available() -> bool:
    """Whether this process's allocator can give free heap pages back (glibc)."""
    return _TRIM is not None
