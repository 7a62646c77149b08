"""How much work `dslc serve` accepts: batch and queue sizes, body and sample bounds, and a memory budget.

Every request reserves an estimate of the memory it will use before its body is
read (from Content-Length: the body, and the Python objects its JSON becomes)
and again once its sample count is known (the model's inputs and outputs for
those samples). A request that alone needs more than the budget, has a larger
body than `max_body` or more samples than `max_samples` gets 413; one that
does not fit beside the requests in flight gets 503 at once and uses nothing.
So the server's memory stays near its resting size plus `max_memory`, however
many clients send at once. Defaults come from the model's input size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

MiB = 1024 * 1024
DEFAULT_MAX_BODY = 16 * MiB
DEFAULT_MAX_MEMORY = 512 * MiB
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_QUEUE = 256          # requests waiting for the model; more get 503
BATCH_INPUT_BYTES = 4 * MiB      # the default --max-batch keeps one call's inputs under this ...
LARGEST_DEFAULT_BATCH = 128      # ... and at most this many samples
# Python objects per byte of JSON body: lists of floats take 32 bytes per value written in 2-4 bytes;
# measured 8-10x for numbers written as decimals, plus the body itself and its joined copy.
PARSE_BYTES_PER_BODY_BYTE = 16
# Memory per sample beyond the JSON: inputs as float64 then as the model's dtype (3x their size), and
# outputs as arrays, Python floats and JSON text (~100 bytes per value).
INPUT_COPIES = 3
BYTES_PER_OUTPUT_VALUE = 100


@dataclass(frozen=True)
class Limits:
    max_batch: int
    max_wait_s: float
    max_queue: int
    max_body: int
    max_memory: int
    max_samples: int
    sample_bytes: int

    @classmethod
    def for_model(cls, io, fixed_batch: int | None = None, max_batch: int | None = None,
                  max_wait_ms: float | None = None, max_queue: int | None = None, max_body: int | None = None,
                  max_memory: int | None = None) -> "Limits":
        """The limits for a model (a ModelIO), each option left None taking its model-derived default."""
        sample_bytes = io.input_bytes_per_sample * INPUT_COPIES + io.output_values_per_sample * BYTES_PER_OUTPUT_VALUE
        if max_batch is None:
            max_batch = 1 if fixed_batch else max(1, min(LARGEST_DEFAULT_BATCH,
                                                           BATCH_INPUT_BYTES // io.input_bytes_per_sample))
        memory = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
        max_samples = max(max_batch, min(65536, memory // 4 // sample_bytes))
        return cls(max_batch=max_batch, max_wait_s=(DEFAULT_MAX_WAIT_MS if max_wait_ms is None else max_wait_ms) / 1000,
                   max_queue=DEFAULT_MAX_QUEUE if max_queue is None else max_queue,
                   max_body=DEFAULT_MAX_BODY if max_body is None else max_body,
                   max_memory=memory, max_samples=max_samples, sample_bytes=sample_bytes)

    def body_cost(self, body_bytes: int) -> int:
        return body_bytes * PARSE_BYTES_PER_BODY_BYTE

    def samples_cost(self, samples: int) -> int:
        return samples * self.sample_bytes


class MemoryBudget:
    """Bytes reserved by the requests in flight, at most `total`; used from the event loop only."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self.peak = 0

    def try_reserve(self, nbytes: int) -> bool:
        if self.used + nbytes > self.total:
            return False
        self.used += nbytes
        self.peak = max(self.peak, self.used)
        return True

    def release(self, nbytes: int) -> None:
        self.used -= nbytes


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return freed heap pages to the system (glibc keeps them otherwise); a no-op elsewhere."""
    if _TRIM is not None:
        _TRIM(0)
