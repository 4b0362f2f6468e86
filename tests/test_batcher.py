"""TokenBudgetBatcher without a model: a fake model scores each row by its first token id (plus its offset)."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reftguard.server.batcher import DeadlineExpired, Overloaded, PromptResult, TokenBudgetBatcher, TooLarge


@dataclasses.dataclass(eq=False)
class FakeModel:
    """What the batcher needs of a ServedModel: `run`, `row_scores`, `row_notes` and `pad_id`. Records every batch it ran."""

    offset: float = 0.0
    pad_id: int = 0
    batches: list = dataclasses.field(default_factory=list)

    def run(self, input_ids: np.ndarray, mask: np.ndarray):
        self.batches.append([int(x) for x in input_ids[:, 0]])
        return input_ids[:, 0].astype(np.float32) + self.offset, np.ones(len(input_ids), dtype=np.float32)

    def row_scores(self, outputs, roles):
        return outputs[0]

    def row_notes(self, outputs):
        return None


M = FakeModel()


def make(**kw) -> TokenBudgetBatcher:
    opts = dict(max_batch_size=8, max_batch_tokens=1000, max_queue_delay_ms=0.0, sort_window=256,
                max_queue_items=100, max_queue_tokens=10_000, reserve=0.0)
    opts.update(kw)
    return TokenBudgetBatcher(ThreadPoolExecutor(1), **opts)


def row(tag: int, length: int) -> list[int]:
    """A prompt of `length` tokens whose first token (and so its fake score) is `tag`."""
    return [tag] + [1] * (length - 1)


async def queue(b: TokenBudgetBatcher, lengths: list[int], *, model=M, caller: str = "c", tag: int = 100) -> list[asyncio.Future]:
    """One submit per prompt, so queue order is submission order; prompt k is tagged `tag` + k."""
    return [(await b.submit([row(tag + k, n)], model=model, caller=caller, wait=False))[0] for k, n in enumerate(lengths)]


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
        expired = (await b.submit([row(200, 10)], model=M, wait=False, deadline=time.monotonic() - 1))[0]
        batch, dropped = b._take()
        assert tags(batch) == [1, 2]
        assert len(dropped) == 2 and not b._callers
        with pytest.raises(DeadlineExpired):
            expired.result()
        # every queued job dead: nothing to run, all released
        b2 = make()
        (f,) = await queue(b2, [10])
        f.cancel()
        batch, dropped = b2._take()
        assert batch == [] and len(dropped) == 1 and not b2._callers

    asyncio.run(run())


def test_results_are_frozen_scores_with_timing_and_no_norm():
    model = FakeModel()

    async def run():
        b = make()
        b.start()
        try:
            futures = await b.submit([row(7, 5), row(9, 3)], model=model, wait=False)
            results = await asyncio.gather(*futures)
        finally:
            await b.stop()
        return results

    results = asyncio.run(run())
    assert [r.score for r in results] == [7.0, 9.0]
    assert all(isinstance(r, PromptResult) and r.queue_s >= 0 and r.infer_s >= 0 for r in results)
    assert {f.name for f in dataclasses.fields(PromptResult)} == {"score", "queue_s", "infer_s", "category"}  # no norm
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].score = 1.0
    assert model.batches == [[7, 9]]


def test_queue_bounds_hold_for_the_first_request():
    async def run():
        b = make(max_queue_items=4, max_queue_tokens=100)
        with pytest.raises(TooLarge) as exc:
            await b.submit([row(1, 5)] * 5, model=M, wait=True)  # never fits, even into an empty queue: no waiting
        assert exc.value.field == "max_queue_items" and exc.value.limit == 4
        with pytest.raises(TooLarge) as exc:
            await b.submit([row(1, 60)] * 2, model=M, wait=False)
        assert exc.value.field == "max_queue_tokens"
        assert b.queued_items == 0
        await b.submit([row(1, 5)] * 4, model=M, wait=False)
        with pytest.raises(Overloaded):
            await b.submit([row(1, 5)], model=M, wait=False)
        assert b.queued_items == 4

    asyncio.run(run())


def test_can_score_uses_the_measured_rate():
    async def run():
        b = make(max_batch_tokens=512)
        assert b.can_score(10.0) == 512  # nothing measured yet: one batch
        b.start()
        try:
            await asyncio.gather(*(await b.submit([row(1, 8)] * 4, model=M, wait=False)))
        finally:
            await b.stop()
        assert b.tokens_per_s > 0 and b.can_score(2.0) == int(b.tokens_per_s * 2.0)

    asyncio.run(run())


def test_batches_never_mix_models_and_each_runs_on_its_own_model():
    old, new = FakeModel(offset=0.0), FakeModel(offset=1000.0)

    async def run():
        b = make(max_batch_size=8)
        # a reload in the middle: both callers have jobs of the old model queued before jobs of the new one
        f_old = await queue(b, [10] * 5, model=old, caller="a", tag=100) + await queue(b, [10] * 5, model=old, caller="b", tag=200)
        f_new = await queue(b, [10] * 5, model=new, caller="a", tag=300) + await queue(b, [10] * 5, model=new, caller="b", tag=400)
        b.start()
        try:
            return [r.score for r in await asyncio.gather(*f_old)], [r.score for r in await asyncio.gather(*f_new)]
        finally:
            await b.stop()

    s_old, s_new = asyncio.run(run())
    assert s_old == [100 + k for k in range(5)] + [200 + k for k in range(5)]  # scored by the model they were queued for
    assert s_new == [1300 + k for k in range(5)] + [1400 + k for k in range(5)]
    assert all(t < 300 for batch in old.batches for t in batch) and all(t >= 300 for batch in new.batches for t in batch)
    assert sum(map(len, old.batches)) == 10 and sum(map(len, new.batches)) == 10


def test_a_light_caller_is_not_starved_by_saturating_ones():
    async def run(stream_keys):
        b = make(max_batch_size=32, max_queue_items=1000)
        for k in range(8):  # 8 saturating streams, 60 prompts each, queued first
            await queue(b, [10 + k] * 60, caller=stream_keys[k], tag=1000 * (k + 1))
        await queue(b, [12, 30, 7, 12], caller="unary:u", tag=100)  # arrives last, lengths unlike the others
        batches = [b._take()[0] for _ in range(3)]
        assert all(len(x) == 32 for x in batches), "fair sharing keeps batches full"
        light = [sorted(t for t in tags(x) if t < 100) for x in batches]
        for k in range(8 if len(set(stream_keys)) == 8 else 0):  # each client's stream gets its share, oldest first
            mine = [t for t in tags(batches[0]) if 900 + 1000 * k <= t < 900 + 1000 * (k + 1)]
            assert mine and min(mine) == 900 + 1000 * k
        return light

    # the servicer's keys: all streams of one client are one caller, its unary calls another
    assert asyncio.run(run(["stream:peer"] * 8))[0] == [0, 1, 2, 3], "all of the light caller's work is in the next batch"
    # 8 clients' streams and one unary caller: an equal share each (32 / 9), the rest in the batch after
    light = asyncio.run(run([f"stream:{k}" for k in range(8)]))
    assert len(light[0]) >= 3 and sorted(light[0] + light[1]) == [0, 1, 2, 3]


def test_callers_take_turns_and_each_caller_is_oldest_first():
    async def run():
        b = make(max_batch_tokens=10)  # one 10-token row per batch: the anchor alone
        await queue(b, [10] * 3, caller="a", tag=100)
        await queue(b, [10] * 3, caller="b", tag=200)
        await queue(b, [10] * 1, caller="c", tag=300)
        return [tags(b._take()[0]) for _ in range(7)]

    order = asyncio.run(run())
    assert order == [[0], [100], [200], [1], [101], [2], [102]]  # round-robin over callers, FIFO within each


def test_full_batches_with_two_busy_callers():
    async def run():
        b = make(max_batch_size=8)
        await queue(b, [10] * 40, caller="a", tag=100)
        await queue(b, [10] * 40, caller="b", tag=200)
        sizes = []
        while b._callers:
            batch, _ = b._take()
            sizes.append(len(batch))
            assert sum(t < 100 for t in tags(batch)) == 4  # half each
        return sizes

    assert asyncio.run(run()) == [8] * 10


def test_streams_leave_the_reserve_to_unary_calls():
    async def run():
        b = make(max_queue_items=8, reserve=0.25)
        await b.submit([row(1, 5)] * 6, model=M, caller="stream:s", wait=True)  # up to 6 = 75% of 8
        blocked = asyncio.ensure_future(b.submit([row(2, 5)], model=M, caller="stream:s", wait=True))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "a waiting caller stops at the reserve"
        await b.submit([row(3, 5)] * 2, model=M, caller="unary:u", wait=False)  # the reserve is the unary calls'
        with pytest.raises(Overloaded):
            await b.submit([row(3, 5)], model=M, caller="unary:u", wait=False)
        b.start()
        try:
            await asyncio.wait_for(blocked, 10)  # room again once batches run
        finally:
            await b.stop()
        # a waiting request larger than the stream's part of the queue still gets into an empty queue
        b2 = make(max_queue_items=4, reserve=0.25)
        await asyncio.wait_for(b2.submit([row(1, 5)] * 4, model=M, caller="stream:s", wait=True), 5)

    asyncio.run(run())


def test_one_client_holds_at_most_its_share_of_the_queue():
    """One identity could fill the whole queue (two large requests), so every other identity's unary calls
    got RESOURCE_EXHAUSTED. Its unary calls and streams together now hold at most client_share of it."""
    async def run():
        b = make(max_queue_items=100, max_queue_tokens=10_000, client_share=0.5)
        futs = await b.submit([row(1, 5)] * 60, model=M, caller="unary:a", wait=False)  # holding nothing: any request that fits
        with pytest.raises(Overloaded, match=r"already has 60 prompts .* share of the queue is 0.5 \(max_client_queue_share\)"):
            await b.submit([row(1, 5)], model=M, caller="unary:a", wait=False)
        blocked = asyncio.ensure_future(b.submit([row(1, 5)], model=M, caller="stream:a", wait=True))  # same client
        await asyncio.sleep(0.05)
        assert not blocked.done(), "a stream of the same client waits for its share"
        futs += await b.submit([row(2, 5)] * 30, model=M, caller="unary:b", wait=False)  # another client still gets in
        assert b.queued_items == 90
        b.start()
        try:
            futs += await asyncio.wait_for(blocked, 10)
            await asyncio.wait_for(asyncio.gather(*futs), 10)
        finally:
            await b.stop()
        assert b.queued_items == 0 and not b._held  # every release returned what the client held
        with pytest.raises(ValueError, match="max_client_queue_share"):
            make(client_share=0.0)

    asyncio.run(run())


def live_and_shadow(active, shadow, n_live: int, n_shadow: int, check=None, **kw):
    """Queue n_shadow shadow prompts (tag 7), then `check(batcher)`, then n_live live ones (tags 100..), all
    before the batcher starts; run it and return (live results, shadow results)."""
    async def run():
        b = make(**kw)
        s_futs = b.submit_shadow([row(7, 5)] * n_shadow, model=shadow)
        if check:
            check(b)
        a_futs = await queue(b, [5] * n_live, model=active)
        b.start()
        try:
            return await asyncio.gather(*a_futs), await asyncio.gather(*s_futs)
        finally:
            await b.stop()

    return asyncio.run(run())


def test_shadow_work_runs_only_when_nothing_else_is_queued_and_is_bounded():
    active, shadow = FakeModel(), FakeModel(offset=0.5)

    def full(b):
        with pytest.raises(Overloaded):
            b.submit_shadow([row(7, 5)], model=shadow)  # dropped first: its queue is full

    a, s = live_and_shadow(active, shadow, 8, 6, full, max_batch_size=4, max_shadow_items=6)
    assert [r.score for r in s] == [7.5] * 6
    assert len(active.batches) == 2 and len(shadow.batches) == 2  # queued first, but run after the active work


def test_shadow_min_share_gives_a_saturated_server_a_shadow_sample():
    """With --shadow-min-share 0.25, queued shadow work gets every 4th batch while live work waits (here:
    all the time), instead of none; the live results are unchanged."""
    order: list[str] = []

    class Logged(FakeModel):
        def __init__(self, name, offset):
            super().__init__(offset=offset)
            self.name = name

        def run(self, input_ids, mask):
            order.append(self.name)
            return super().run(input_ids, mask)

    active, shadow = Logged("live", 0.0), Logged("shadow", 0.5)

    a, s = live_and_shadow(active, shadow, 12, 4, max_batch_size=2, max_shadow_items=8, shadow_min_share=0.25)
    assert [r.score for r in a] == [100.0 + k for k in range(12)] and [r.score for r in s] == [7.5] * 4
    # 6 live batches of 2 and 2 shadow batches of 2; every 4th batch is the shadow's while live work waits.
    assert order == ["live", "live", "live", "shadow", "live", "live", "live", "shadow"]
    with pytest.raises(ValueError, match="shadow_min_share"):
        make(shadow_min_share=1.0)


def test_stale_shadow_work_makes_room_for_new():
    shadow = FakeModel()

    async def run():
        b = make(max_shadow_items=4)
        stale = b.submit_shadow([row(1, 5)] * 4, model=shadow, deadline=time.monotonic() - 1)  # waited too long
        fresh = b.submit_shadow([row(2, 5)] * 4, model=shadow, deadline=time.monotonic() + 60)
        assert all(isinstance(f.exception(), DeadlineExpired) for f in stale)
        assert b.shadow_items == 4 and not any(f.done() for f in fresh)
        with pytest.raises(Overloaded):
            b.submit_shadow([row(3, 5)], model=shadow)
        for f in fresh:
            f.cancel()

    asyncio.run(run())


def test_shadow_batches_are_small_so_live_work_never_waits_long_behind_one():
    """A shadow batch of up to max_batch_tokens could not be interrupted, so a live request that arrived
    while it ran waited seconds (hostile-client review, bug C). Shadow batches take shadow_batch_tokens."""
    active, shadow = FakeModel(), FakeModel(offset=0.5)

    async def run():
        b = make(max_batch_size=64, max_batch_tokens=1000, shadow_batch_tokens=20, max_shadow_items=64)
        s_futs = b.submit_shadow([row(7, 5)] * 12, model=shadow)
        b.start()
        try:
            await asyncio.gather(*s_futs)
            a = await queue(b, [5] * 12, model=active)
            await asyncio.gather(*a)
        finally:
            await b.stop()

    asyncio.run(run())
    assert [len(x) for x in shadow.batches] == [4, 4, 4]  # 4 rows x 5 tokens = the 20-token shadow budget
    assert [len(x) for x in active.batches] == [12]  # live batches keep the full budget
    assert make(max_batch_tokens=300).shadow_batch_tokens == 300  # 0: as large as live batches
