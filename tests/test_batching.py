"""The dynamic batcher alone: requests merged into one call, results split back, a bounded queue, no waiting alone.

The model is a numpy function (output = 2 * input, summed per sample) whose
calls are recorded, and which can be held on an event so that requests pile
up in a known way; no test depends on timing.
"""

import asyncio
import threading
import time

import numpy as np
import pytest

from dslc.runtime.serving.batching import Batcher, QueueFull


class Model:
    """run(arrays, batch) -> [2x, per-sample sums]; records each call's sample count; can be held."""

    def __init__(self, fail_when=None):
        self.calls = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_when = fail_when

    def run(self, arrays, batch):
        self.calls.append(len(arrays[0]))
        self.entered.set()
        assert self.gate.wait(30)
        x = arrays[0]
        if self.fail_when is not None and np.any(x == self.fail_when):
            raise ValueError("bad sample")
        return [2 * x, x.reshape(len(x), -1).sum(axis=1)]


def sample(value, n=1, width=3):
    return [np.full((n, width), value, dtype=np.float32)]


async def held_then_released(batcher, model, jobs):
    """Submit one job and wait until the model holds it, queue `jobs`, release, and gather every answer."""
    model.gate.clear()
    first = batcher.submit(sample(0.0))
    await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 30)
    futures = [batcher.submit(arrays) for arrays in jobs]
    model.gate.set()
    return await first, await asyncio.gather(*futures, return_exceptions=True)


def with_batcher(model, **options):
    async def go(body):
        batcher = Batcher(model.run, **{"max_batch": 8, "max_wait_s": 0.0, "max_queue": 64, **options})
        batcher.start(asyncio.get_running_loop())
        try:
            return await body(batcher)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, batcher.close)
    return go


def test_waiting_requests_share_one_call_and_each_gets_its_own_rows():
    model = Model()

    async def body(batcher):
        jobs = [sample(float(i), n=1 + i % 2) for i in range(1, 6)]          # 2+1+2+1+2 = 8 samples
        first, answers = await held_then_released(batcher, model, jobs)
        return jobs, first, answers, batcher.stats

    jobs, first, answers, stats = asyncio.run(with_batcher(model)(body))
    assert model.calls == [1, 8]                    # the held call, then all five together
    for arrays, (doubled, sums) in zip(jobs, answers):
        np.testing.assert_array_equal(doubled, 2 * arrays[0])
        np.testing.assert_array_equal(sums, arrays[0].sum(axis=1))
    assert first[0].shape == (1, 3)
    assert stats.largest == 8 and stats.requests == 6 and stats.calls == 2


def test_batches_stop_at_max_batch_and_a_big_request_runs_alone():
    model = Model()

    async def body(batcher):
        return await held_then_released(batcher, model, [sample(1.0, n=3), sample(2.0, n=3), sample(3.0, n=3),
                                                         sample(4.0, n=20), sample(5.0)])

    _, answers = asyncio.run(with_batcher(model, max_batch=8)(body))
    # 3 + 3, then the 1-sample request fills up (the third 3 would pass 8); 20 samples run alone
    assert model.calls == [1, 7, 3, 20]
    assert [a[0].shape[0] for a in answers] == [3, 3, 3, 20, 1]


def test_requests_of_different_shapes_are_not_mixed():
    model = Model()

    async def body(batcher):
        return await held_then_released(batcher, model, [sample(1.0, width=3), sample(2.0, width=5),
                                                         sample(3.0, width=3)])

    _, answers = asyncio.run(with_batcher(model)(body))
    assert model.calls == [1, 2, 1]                 # width 3 twice together, then width 5
    assert [a[0].shape for a in answers] == [(1, 3), (1, 5), (1, 3)]


def test_max_batch_1_makes_one_call_per_request():
    model = Model()

    async def body(batcher):
        return await held_then_released(batcher, model, [sample(float(i)) for i in range(4)])

    asyncio.run(with_batcher(model, max_batch=1)(body))
    assert model.calls == [1, 1, 1, 1, 1]


def test_one_bad_request_fails_alone():
    model = Model(fail_when=7.0)

    async def body(batcher):
        return await held_then_released(batcher, model, [sample(1.0), sample(7.0), sample(2.0)])

    _, answers = asyncio.run(with_batcher(model)(body))
    assert isinstance(answers[1], ValueError)
    np.testing.assert_array_equal(answers[0][0], 2 * sample(1.0)[0])
    np.testing.assert_array_equal(answers[2][0], 2 * sample(2.0)[0])


def test_a_full_queue_refuses_at_once():
    model = Model()

    async def body(batcher):
        model.gate.clear()
        running = batcher.submit(sample(0.0))
        await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 30)
        queued = [batcher.submit(sample(1.0)), batcher.submit(sample(2.0))]
        with pytest.raises(QueueFull, match="2 requests are waiting"):
            batcher.submit(sample(3.0))
        model.gate.set()
        await asyncio.gather(running, *queued)
        return batcher.stats.refused

    assert asyncio.run(with_batcher(model, max_queue=2)(body)) == 1


def test_a_lone_request_never_waits_for_company():
    """max_wait is an hour: a request with nobody else on the way must still be answered at once."""
    model = Model()

    async def body(batcher):
        started = time.monotonic()
        for _ in range(3):
            with batcher.arriving() as ticket:
                future = batcher.submit(sample(1.0), ticket)
            await future
        return time.monotonic() - started

    assert asyncio.run(with_batcher(model, max_wait_s=3600.0)(body)) < 60
    assert model.calls == [1, 1, 1]


def test_a_request_still_being_read_is_waited_for():
    """While another request is on its way (being read), the batch waits for it (up to max_wait)."""
    model = Model()

    async def body(batcher):
        with batcher.arriving() as late:                          # on its way: the batch must wait for it
            with batcher.arriving() as ticket:
                first = batcher.submit(sample(1.0), ticket)
            await asyncio.sleep(0)                                 # the worker sees one job and one arriving
            second = batcher.submit(sample(2.0), late)
        return await asyncio.gather(first, second)

    asyncio.run(with_batcher(model, max_wait_s=3600.0)(body))
    assert model.calls == [2]
