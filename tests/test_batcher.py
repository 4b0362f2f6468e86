"""TokenBudgetBatcher without a model: a fake `run` scores each row by its first token id."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reftguard.server.batcher import DeadlineExpired, Overloaded, PromptResult, TokenBudgetBatcher, TooLarge


def fake_run(calls: list | None = None):
    def run(input_ids: np.ndarray, mask: np.ndarray):
        if calls is not None:
            calls.append(input_ids.shape)
        return input_ids[:, 0].astype(np.float32), np.ones(len(input_ids), dtype=np.float32)

    return run


def make(run=None, **kw) -> TokenBudgetBatcher:
    opts = dict(max_batch_size=8, max_batch_tokens=1000, max_queue_delay_ms=0.0, sort_window=256,
                max_queue_items=100, max_queue_tokens=10_000)
    opts.update(kw)
    return TokenBudgetBatcher(run or fake_run(), ThreadPoolExecutor(1), **opts)


def row(tag: int, length: int) -> list[int]:
    """A prompt of `length` tokens whose first token (and so its fake score) is `tag`."""
    return [tag] + [1] * (length - 1)


async def queue(b: TokenBudgetBatcher, lengths: list[int]) -> list[asyncio.Future]:
    """One submit per prompt, so queue order is submission order; prompt k is tagged 100 + k."""
    return [(await b.submit([row(100 + k, n)], wait=False))[0] for k, n in enumerate(lengths)]


def tags(jobs) -> list[int]:
    return [j.ids[0] - 100 for j in jobs]


def test_take_respects_the_token_budget_counted_as_padded_width():
    async def run():
        b = make(max_batch_tokens=40)
        await queue(b, [10] * 10)
        first, _ = b._take()
        assert len(first) == 4  # 4 rows x 10 tokens
        b2 = make(max_batch_tokens=40)
        await queue(b2, [10, 20, 20, 20])
        batch, _ = b2._take()
        assert tags(batch) == [0, 1]  # a second 20-token row pads the first to 20: 2 x 20 = 40, a third would be 60
        assert b2.queued_items == 4, "taking does not release: the run loop does, after the batch is chosen"

    asyncio.run(run())


def test_take_always_includes_the_oldest_and_fills_with_the_nearest_lengths():
    async def run():
        b = make(max_batch_size=3)
        await queue(b, [10, 50, 11, 9, 30, 12])
        batch, _ = b._take()
        assert tags(batch)[0] == 0 and sorted(tags(batch)) == [0, 2, 3]  # oldest (10), then 11 and 9, not 50/30/12
        batch, _ = b._take()
        assert tags(batch)[0] == 1  # the new oldest goes first even though it is the longest
        # an oldest prompt over the token budget still runs, alone: nothing starves
        b2 = make(max_batch_tokens=40)
        await queue(b2, [60, 5, 5])
        batch, _ = b2._take()
        assert tags(batch) == [0]
        assert tags(b2._take()[0]) == [1, 2]

    asyncio.run(run())


def test_take_drops_cancelled_and_expired_jobs():
    async def run():
        b = make()
        futures = await queue(b, [10, 10, 10])
        futures[0].cancel()  # its RPC went away
        expired = (await b.submit([row(200, 10)], wait=False, deadline=time.monotonic() - 1))[0]
        batch, dropped = b._take()
        assert tags(batch) == [1, 2]
        assert len(dropped) == 2 and not b._queue
        with pytest.raises(DeadlineExpired):
            expired.result()
        # every queued job dead: nothing to run, all released
        b2 = make()
        (f,) = await queue(b2, [10])
        f.cancel()
        batch, dropped = b2._take()
        assert batch == [] and len(dropped) == 1 and not b2._queue

    asyncio.run(run())


def test_results_are_frozen_scores_with_timing_and_no_norm():
    calls: list = []

    async def run():
        b = make(fake_run(calls))
        b.start()
        try:
            futures = await b.submit([row(7, 5), row(9, 3)], wait=False)
            results = await asyncio.gather(*futures)
        finally:
            await b.stop()
        return results

    results = asyncio.run(run())
    assert [r.score for r in results] == [7.0, 9.0]
    assert all(isinstance(r, PromptResult) and r.queue_s >= 0 and r.infer_s >= 0 for r in results)
    assert {f.name for f in dataclasses.fields(PromptResult)} == {"score", "queue_s", "infer_s"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].score = 1.0
    assert calls == [(2, 5)]


def test_queue_bounds_hold_for_the_first_request():
    async def run():
        b = make(max_queue_items=4, max_queue_tokens=100)
        with pytest.raises(TooLarge) as exc:
            await b.submit([row(1, 5)] * 5, wait=True)  # never fits, even into an empty queue: no waiting
        assert exc.value.field == "max_queue_items" and exc.value.limit == 4
        with pytest.raises(TooLarge) as exc:
            await b.submit([row(1, 60)] * 2, wait=False)
        assert exc.value.field == "max_queue_tokens"
        assert b.queued_items == 0
        await b.submit([row(1, 5)] * 4, wait=False)
        with pytest.raises(Overloaded):
            await b.submit([row(1, 5)], wait=False)
        assert b.queued_items == 4

    asyncio.run(run())


def test_can_score_uses_the_measured_rate():
    async def run():
        b = make(max_batch_tokens=512)
        assert b.can_score(10.0) == 512  # nothing measured yet: one batch
        b.start()
        try:
            await asyncio.gather(*(await b.submit([row(1, 8)] * 4, wait=False)))
        finally:
            await b.stop()
        assert b.tokens_per_s > 0 and b.can_score(2.0) == int(b.tokens_per_s * 2.0)

    asyncio.run(run())
