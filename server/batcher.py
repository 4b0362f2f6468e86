"""TokenBudgetBatcher: one asyncio task that owns the queue and feeds the backend.

Only the event-loop thread touches the queue (submit and the run loop), so there are no locks. A batch
holds at most `max_batch_size` prompts and `max_batch_tokens` padded tokens (rows x longest row). The
oldest queued prompt is always in the next batch (no starvation); the rest is filled from a window of
`sort_window` queued prompts, nearest in length first, so padding stays low. Work whose RPC was
cancelled or whose deadline passed is dropped before it reaches the backend.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reftguard.encoding import pad_batch

log = logging.getLogger("reftguard.batcher")


class Overloaded(Exception):
    """The queue is over its item or token bound and the caller asked not to wait."""


class TooLarge(Exception):
    """The request alone is over a queue bound: it can never be admitted, so retrying cannot help."""

    def __init__(self, message: str, field: str, limit: int):
        super().__init__(message)
        self.field, self.limit = field, limit


class ShuttingDown(Exception):
    """The server stopped before this prompt was scored."""


class DeadlineExpired(Exception):
    """The RPC's deadline passed before its prompt reached the backend; the work was dropped."""


@dataclass
class Job:
    ids: list[int]
    future: asyncio.Future  # resolves to a PromptResult
    deadline: float | None  # time.monotonic() value, or None
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class PromptResult:
    """What a queued prompt's future resolves to."""

    score: float
    queue_s: float  # from queued to its batch starting
    infer_s: float  # its batch's inference time


@dataclass
class BatchStats:
    size: int
    tokens: int
    padding_ratio: float
    infer_s: float


class TokenBudgetBatcher:
    def __init__(
        self,
        run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_delay_ms: float,
        sort_window: int,
        max_queue_items: int,
        max_queue_tokens: int,
        pad_id: int = 0,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_error: Callable[[BaseException | None], None] | None = None,
    ):
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.delay_s = max_queue_delay_ms / 1000.0
        self.sort_window = sort_window
        self.max_queue_items = max_queue_items
        self.max_queue_tokens = max_queue_tokens
        self.pad_id = pad_id
        self.on_batch = on_batch
        self.on_error = on_error
        self._queue: deque[Job] = deque()
        self.queued_items = 0
        self.queued_tokens = 0
        self.tokens_per_s: float | None = None  # measured: padded tokens per second of inference (EWMA)
        self._wakeup = asyncio.Event()
        self._space = asyncio.Condition()
        self._task: asyncio.Task | None = None

    # -- producer side -------------------------------------------------------------------------
    def _fits(self, n: int, tokens: int) -> bool:
        # The bounds hold for the first request too: `submit` refuses what could never fit.
        return self.queued_items + n <= self.max_queue_items and self.queued_tokens + tokens <= self.max_queue_tokens

    async def submit(self, ids: list[list[int]], *, wait: bool, deadline: float | None = None) -> list[asyncio.Future]:
        """Queue prompts; returns one future per prompt, resolving to its PromptResult.

        wait=False raises Overloaded when the queue is full (unary calls fail fast); wait=True blocks
        until there is room (streams: the caller stops reading, which is gRPC flow control). A request
        over a bound of the whole queue raises TooLarge either way: it would never fit.
        """
        tokens = sum(len(x) for x in ids)
        for field, have, limit in (("max_queue_items", len(ids), self.max_queue_items), ("max_queue_tokens", tokens, self.max_queue_tokens)):
            if have > limit:
                what = "prompts" if field == "max_queue_items" else "tokens"
                raise TooLarge(f"the request has {len(ids)} prompts and {tokens} tokens, more {what} than the whole queue holds", field, limit)
        if not self._fits(len(ids), tokens):
            if not wait:
                raise Overloaded(
                    f"queue full ({self.queued_items} prompts, {self.queued_tokens} tokens waiting); retry with backoff"
                )
            async with self._space:
                await self._space.wait_for(lambda: self._fits(len(ids), tokens))
        loop = asyncio.get_running_loop()
        futures = []
        for row in ids:
            fut = loop.create_future()
            self._queue.append(Job(ids=row, future=fut, deadline=deadline))
            futures.append(fut)
        self.queued_items += len(ids)
        self.queued_tokens += tokens
        self._wakeup.set()
        return futures

    def can_score(self, seconds: float) -> int:
        """Tokens the backend can score in `seconds` at the measured rate; one full batch before any
        measurement. Streams size their read-ahead with it, so a drain can answer what they read."""
        if self.tokens_per_s is None:
            return self.max_batch_tokens
        return int(self.tokens_per_s * seconds)

    def swap_backend(self, run) -> None:
        """Use `run` from the next batch on (the batch in flight finishes on the old one)."""
        self._run = run

    # -- consumer side -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="token-budget-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(ShuttingDown("server shutting down before this prompt was scored; retry"))
        self._queue.clear()

    async def _release(self, jobs: list[Job]) -> None:
        self.queued_items -= len(jobs)
        self.queued_tokens -= sum(len(j.ids) for j in jobs)
        async with self._space:
            self._space.notify_all()

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.delay_s and self.queued_items < self.max_batch_size:
                await asyncio.sleep(self.delay_s)  # let concurrent requests join this batch
            jobs, dropped = self._take()
            await self._release(jobs + dropped)
            if jobs:
                await self._infer(jobs)

    def _take(self) -> tuple[list[Job], list[Job]]:
        """Pick the next batch (oldest live job + nearest-length neighbours) and drop dead jobs."""
        now = time.monotonic()
        dropped, window = [], []
        for job in list(self._queue)[: self.sort_window]:
            if job.future.done():  # cancelled by its RPC
                dropped.append(job)
            elif job.deadline is not None and now > job.deadline:
                job.future.set_exception(DeadlineExpired("deadline passed while queued"))
                dropped.append(job)
            else:
                window.append(job)
        if not window:
            for job in dropped:
                self._queue.remove(job)
            return [], dropped
        oldest = window[0]
        ranked = sorted(window[1:], key=lambda j: len(j.ids))
        lengths = [len(j.ids) for j in ranked]
        pos = bisect.bisect_left(lengths, len(oldest.ids))
        lo, hi = pos - 1, pos  # ranked[lo] is the next shorter job, ranked[hi] the next longer
        chosen, width = [oldest], len(oldest.ids)
        while len(chosen) < self.max_batch_size:
            cost_lo = width * (len(chosen) + 1) if lo >= 0 else None
            cost_hi = max(width, lengths[hi]) * (len(chosen) + 1) if hi < len(ranked) else None
            options = [c for c in (cost_lo, cost_hi) if c is not None and c <= self.max_batch_tokens]
            if not options:
                break
            if cost_lo is not None and cost_lo == min(options):
                chosen.append(ranked[lo])
                lo -= 1
            else:
                chosen.append(ranked[hi])
                width = max(width, lengths[hi])
                hi += 1
        taken = set(map(id, chosen + dropped))
        self._queue = deque(j for j in self._queue if id(j) not in taken)
        return chosen, dropped

    async def _infer(self, jobs: list[Job]) -> None:
        input_ids, mask = pad_batch([j.ids for j in jobs], self.pad_id)
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            scores = (await loop.run_in_executor(self._executor, self._run, input_ids, mask))[0]  # (score, feature_norm): the norm is not served
        except Exception as exc:  # the batch fails; other batches are unaffected
            log.exception("inference failed for a batch of %d", len(jobs))
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            if self.on_error:
                self.on_error(exc)
            return
        infer_s = time.monotonic() - start
        rate = mask.size / max(infer_s, 1e-6)
        self.tokens_per_s = rate if self.tokens_per_s is None else 0.8 * self.tokens_per_s + 0.2 * rate
        for j, score in zip(jobs, scores):
            if not j.future.done():
                j.future.set_result(PromptResult(float(score), start - j.enqueued, infer_s))
        if self.on_error:
            self.on_error(None)
        if self.on_batch:
            real = int(mask.sum())
            self.on_batch(BatchStats(len(jobs), int(mask.size), 1.0 - real / mask.size, infer_s))
