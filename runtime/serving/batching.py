"""Dynamic batching: concurrent requests gathered into one onnxruntime call, results split back per request.

    batcher = Batcher(session.run, max_batch=64, max_wait_s=0.002, max_queue=256)
    batcher.start(asyncio.get_running_loop())
    with batcher.arriving() as ticket:       # a request is being read; the worker may wait for it
        arrays = parse(body)
        future = batcher.submit(arrays, ticket)  # QueueFull when max_queue requests are waiting
    outputs = await future

One worker thread owns the model and runs one call at a time (onnxruntime
releases the GIL, so the event loop keeps reading requests meanwhile). When
the worker is free it takes the oldest request and every waiting request whose
samples have the same shape (a text model's token length, say), up to
`max_batch` samples. It waits up to `max_wait_s` for more only while other
requests are still being read, so a lone client never waits. A request larger
than `max_batch` runs alone, in slices of `max_batch`. If a merged call fails,
each request is run on its own, so one bad request cannot fail the others.
`max_batch=1` turns batching off: one onnxruntime call per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """The queue holds `max_queue` requests already; the caller answers 503."""


@dataclass
class _Job:
    arrays: list[np.ndarray]
    future: asyncio.Future
    samples: int
    key: tuple                 # per-sample shapes and dtypes: jobs with equal keys can share a call
    queued_at: float = field(default_factory=time.perf_counter)


class _Ticket:
    """One request on its way; `landed` once submitted (or given up)."""
    __slots__ = ("landed",)

    def __init__(self):
        self.landed = False


@dataclass
class BatchStats:
    """Counters for /health and the benchmark: calls made, samples run, the largest batch seen."""
    calls: int = 0
    samples: int = 0
    requests: int = 0
    largest: int = 0
    refused: int = 0


class Batcher:
    """The queue and the one worker thread that runs `run(arrays, batch) -> outputs` on gathered requests."""

    def __init__(self, run, max_batch: int, max_wait_s: float, max_queue: int):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s) if max_batch > 1 else 0.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._jobs: deque[_Job] = deque()
        self._queued = 0                # samples in _jobs
        self._arriving = 0
        self._idle = False              # the worker waits for a first job
        self._gathering = False         # the worker waits for more jobs (or for arrivals to land)
        self._cond = threading.Condition()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the event loop's side

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._work, name="dslc-batcher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the worker after the call in progress; waiting requests get a RuntimeError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def waiting(self) -> int:
        return len(self._jobs)

    @contextlib.contextmanager
    def arriving(self):
        """Count a request as on its way (being read and parsed) until it is submitted or given up."""
        ticket = _Ticket()
        with self._cond:
            self._arriving += 1
        try:
            yield ticket
        finally:
            if not ticket.landed:
                with self._cond:
                    self._arriving -= 1
                    if self._gathering and self._arriving == 0:
                        self._cond.notify()

    def submit(self, arrays: list[np.ndarray], ticket: _Ticket | None = None) -> asyncio.Future:
        """A future for `arrays`' outputs (one array per model output, this request's samples only).

        `ticket` (from `arriving`) stops counting the request as on its way, under the same lock."""
        future = self._loop.create_future()
        key = tuple((a.shape[1:], a.dtype.str) for a in arrays)
        with self._cond:
            if ticket is not None and not ticket.landed:
                ticket.landed = True
                self._arriving -= 1
            if self._closed:
                raise RuntimeError("the server is stopping")
            if len(self._jobs) >= self.max_queue:
                self.stats.refused += 1
                raise QueueFull(f"{len(self._jobs)} requests are waiting already (the server's --max-queue)")
            job = _Job(arrays, future, int(arrays[0].shape[0]), key)
            self._jobs.append(job)
            self._queued += job.samples
            # wake the worker only when it has something to do: every wake-up costs the event loop the GIL
            if self._idle or (self._gathering and (self._arriving == 0 or self._queued >= self.max_batch)):
                self._cond.notify()
        return future

    # ------------------------------------------------------------ the worker's side

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            results = self._run_batch(batch)
            self._loop.call_soon_threadsafe(_deliver, results)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            self._idle = True
            while not self._jobs and not self._closed:
                self._cond.wait()
            self._idle = False
            if self._closed:
                for job in self._jobs:
                    self._loop.call_soon_threadsafe(_fail, job.future, RuntimeError("the server is stopping"))
                self._jobs.clear()
                return None
            head = self._jobs[0]
            deadline = head.queued_at + self.max_wait_s
            self._gathering = True
            while (self._arriving > 0 and not self._closed and self._fill(head.key) < self.max_batch
                   and (left := deadline - time.perf_counter()) > 0):
                self._cond.wait(left)
            self._gathering = False
            taken = self._take(head.key)
            self._queued -= sum(job.samples for job in taken)
            return taken

    def _fill(self, key) -> int:
        return sum(job.samples for job in self._jobs if job.key == key)

    def _take(self, key) -> list[_Job]:
        """The oldest job and the next ones of the same key, up to max_batch samples (the oldest always)."""
        taken, kept, total = [], deque(), 0
        while self._jobs:
            job = self._jobs.popleft()
            if not taken or (job.key == key and total + job.samples <= self.max_batch):
                taken.append(job)
                total += job.samples
            else:
                kept.append(job)
            if total >= self.max_batch:
                break
        kept.extend(self._jobs)
        self._jobs = kept
        return taken

    def _run_batch(self, jobs: list[_Job]) -> list[tuple[asyncio.Future, list | None, BaseException | None]]:
        stats = self.stats
        if len(jobs) == 1:
            return [self._run_alone(jobs[0])]
        arrays = [np.concatenate(parts) for parts in zip(*(job.arrays for job in jobs))]
        try:
            outputs = self._run(arrays, self.max_batch)
        except Exception:  # noqa: BLE001  (find the request that fails; the others get their answers)
            return [self._run_alone(job) for job in jobs]
        stats.calls += 1
        stats.samples += len(arrays[0])
        stats.requests += len(jobs)
        stats.largest = max(stats.largest, len(arrays[0]))
        results, start = [], 0
        for job in jobs:
            stop = start + job.samples
            results.append((job.future, [out[start:stop] for out in outputs], None))
            start = stop
        return results

    def _run_alone(self, job: _Job):
        try:
            outputs = self._run(job.arrays, self.max_batch)
        except Exception as err:  # noqa: BLE001  (handed to the request, which answers for it)
            return job.future, None, err
        self.stats.calls += 1
        self.stats.samples += job.samples
        self.stats.requests += 1
        self.stats.largest = max(self.stats.largest, min(job.samples, self.max_batch))
        return job.future, outputs, None


def _deliver(results) -> None:
    for future, outputs, error in results:
        if future.done():              # the client went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outputs)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
