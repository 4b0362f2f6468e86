"""TokenBudgetBatcher: one asyncio task that owns the queue and feeds the engines.

Only the event-loop thread touches the queue (submit and the run loop), so there are no locks.

- **Models.** Every job carries the ServedModel it was admitted under (its encoder tokenized it). A
  batch holds jobs of one model only and runs on that model's engine, so a reload never mixes bundles.
- **Fairness.** Jobs queue per caller (the servicer keys unary calls and streams apart, by client
  identity). Each batch is filled round-robin over the callers (max-min fair: a caller with little
  work gets all of it in, the rest of the batch is shared by the others), so one saturating stream
  or client cannot starve the others. The caller whose turn it is (callers rotate after each batch)
  anchors the batch: its oldest prompt is always in it. Within a caller the oldest prompt is taken
  first; further slots go to its prompts nearest in length to the batch's width (from its oldest
  `sort_window`), so padding stays low. A batch holds at most `max_batch_size` prompts and
  `max_batch_tokens` padded tokens (rows x longest row) and is filled as long as anything fits.
- **Admission.** The queue is bounded in prompts and tokens. Callers that wait (streams) leave
  `reserve` of both bounds free for callers that fail fast (unary calls), so streams that keep the
  queue full do not turn every unary call into RESOURCE_EXHAUSTED. One client (its unary calls and
  streams together) holds at most `client_share` of both bounds, so it cannot fill the queue for all.
- **Shadow work** (a candidate bundle scored off the response path) has its own bounded queue and runs
  only when no other work is queued: under load it is dropped first (`submit_shadow` refuses it).
- Work whose RPC was cancelled or whose deadline passed is dropped before it reaches an engine.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from reftguard.encoding import pad_batch

if TYPE_CHECKING:
    from reftguard.server.served import ServedModel  # what a job carries: its pad id and its engine's `run`

log = logging.getLogger("reftguard.batcher")


def client_of(caller: str) -> str:
    """The client identity in a caller key "kind:identity" (unary and stream calls rotate apart, but
    share one client's queue share)."""
    return caller.partition(":")[2] or caller


SHADOW = "\x00shadow"  # the shadow queue's caller key (no client identity can take it)


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


@dataclass(eq=False)
class Job:
    ids: list[int]
    future: asyncio.Future  # resolves to a PromptResult
    deadline: float | None  # time.monotonic() value, or None
    model: ServedModel
    caller: str = ""
    role: str = "user"  # picks the row's feature (ServedModel.row_scores)
    enqueued: float = field(default_factory=time.monotonic)

    def dead(self, now: float) -> bool:
        """Cancelled by its RPC, or past its deadline (then failed with DeadlineExpired)."""
        if self.future.done():
            return True
        if self.deadline is not None and now > self.deadline:
            self.future.set_exception(DeadlineExpired("deadline passed while queued"))
            return True
        return False


@dataclass(frozen=True)
class PromptResult:
    """What a queued prompt's future resolves to."""

    score: float
    queue_s: float  # from queued to its batch starting
    infer_s: float  # its batch's inference time
    category: tuple | None = None  # the row's notes: harm category, probability, passes the flag gate, in its band (scoring.row_notes)


@dataclass
class BatchStats:
    size: int
    tokens: int  # padded: the batch's shape
    real_tokens: int  # padding excluded
    infer_s: float
    shadow: bool = False

    @property
    def padding_ratio(self) -> float:
        return 1.0 - self.real_tokens / self.tokens


class TokenBudgetBatcher:
    def __init__(
        self,
        executor: Executor,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_queue_delay_ms: float,
        sort_window: int,
        max_queue_items: int,
        max_queue_tokens: int,
        reserve: float = 0.25,
        client_share: float = 1.0,
        max_shadow_items: int = 0,
        shadow_min_share: float = 0.0,
        shadow_batch_tokens: int = 0,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_error: Callable[[BaseException | None], None] | None = None,
    ):
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.delay_s = max_queue_delay_ms / 1000.0
        self.sort_window = sort_window
        self.max_queue_items = max_queue_items
        self.max_queue_tokens = max_queue_tokens
        self.reserve = reserve
        if not 0.0 < client_share <= 1.0:
            raise ValueError(f"max_client_queue_share must be in (0, 1], got {client_share}")
        self.client_share = client_share
        self._held: dict[str, tuple[int, int]] = {}  # caller -> (prompts, tokens) it has queued
        self.max_shadow_items = max_shadow_items
        if not 0.0 <= shadow_min_share < 1.0:
            raise ValueError(f"shadow_min_share must be in [0, 1), got {shadow_min_share}")
        self.shadow_min_share = shadow_min_share
        # A batch cannot be interrupted, so live work that arrives while a shadow batch runs waits for it:
        # shadow batches are kept small (0: as large as live ones).
        self.shadow_batch_tokens = shadow_batch_tokens or max_batch_tokens
        self._live_batches = 0  # live batches since the last shadow batch
        self.on_batch = on_batch
        self.on_error = on_error
        self._callers: OrderedDict[str, deque[Job]] = OrderedDict()  # rotation order: next anchor first
        self._shadow: OrderedDict[str, deque[Job]] = OrderedDict()
        self.queued_items = 0
        self.queued_tokens = 0
        self.shadow_items = 0
        self.tokens_per_s: float | None = None  # measured: padded tokens per second of inference (EWMA)
        self._wakeup = asyncio.Event()
        self._space = asyncio.Condition()
        self._task: asyncio.Task | None = None

    # -- producer side -------------------------------------------------------------------------
    def _fits(self, n: int, tokens: int, share: float = 1.0) -> bool:
        return (self.queued_items + n <= self.max_queue_items * share
                and self.queued_tokens + tokens <= self.max_queue_tokens * share)

    def _fits_caller(self, caller: str, n: int, tokens: int) -> bool:
        # One client holds at most client_share of each bound; one holding nothing may queue any
        # request that fits the whole queue, so a large request is slow, never impossible.
        items, held = self._held.get(client_of(caller), (0, 0))
        return not items or (items + n <= self.max_queue_items * self.client_share
                             and held + tokens <= self.max_queue_tokens * self.client_share)

    def _fits_waiting(self, n: int, tokens: int) -> bool:
        # A waiting caller leaves the reserve free; a request bigger than what is left is still
        # admitted into an empty queue (it fits the whole queue, checked in `submit`).
        return self._fits(n, tokens, 1.0 - self.reserve) or (self.queued_items == 0 and self._fits(n, tokens))

    async def submit(self, ids: list[list[int]], *, model: ServedModel, caller: str = "", wait: bool,
                     deadline: float | None = None, roles: list[str] | None = None) -> list[asyncio.Future]:
        """Queue prompts for `model` on behalf of `caller`; one future per prompt, resolving to its PromptResult.

        wait=False raises Overloaded when the queue is full (unary calls fail fast); wait=True blocks
        until there is room outside the reserve (streams: the caller stops reading, which is gRPC flow
        control). A request over a bound of the whole queue raises TooLarge either way: it would never fit.
        """
        tokens = sum(len(x) for x in ids)
        for field_, have, limit in (("max_queue_items", len(ids), self.max_queue_items), ("max_queue_tokens", tokens, self.max_queue_tokens)):
            if have > limit:
                what = "prompts" if field_ == "max_queue_items" else "tokens"
                raise TooLarge(f"the request has {len(ids)} prompts and {tokens} tokens, more {what} than the whole queue holds", field_, limit)
        if wait:
            room = lambda: self._fits_waiting(len(ids), tokens) and self._fits_caller(caller, len(ids), tokens)  # noqa: E731
            if not room():
                async with self._space:
                    await self._space.wait_for(room)
        elif not self._fits(len(ids), tokens):
            raise Overloaded(f"queue full ({self.queued_items} prompts, {self.queued_tokens} tokens waiting); retry with backoff")
        elif not self._fits_caller(caller, len(ids), tokens):
            items, held = self._held[client_of(caller)]
            raise Overloaded(f"this client already has {items} prompts ({held} tokens) queued, its share of the queue is "
                             f"{self.client_share:g} (max_client_queue_share); retry with backoff")
        futures = self._enqueue(self._callers, caller, ids, model, deadline, roles)
        self.queued_items += len(ids)
        self.queued_tokens += tokens
        items, held = self._held.get(client_of(caller), (0, 0))
        self._held[client_of(caller)] = (items + len(ids), held + tokens)
        return futures

    def submit_shadow(self, ids: list[list[int]], *, model: ServedModel, deadline: float | None = None,
                      roles: list[str] | None = None) -> list[asyncio.Future]:
        """Queue shadow work (run only when nothing else is queued); Overloaded when its queue is full
        even after dropping what waited past its deadline (DeadlineExpired)."""
        if self.shadow_items + len(ids) > self.max_shadow_items:
            now = time.monotonic()
            for q in list(self._shadow.values()):
                dead = [j for j in q if j.dead(now)]
                self.shadow_items -= len(dead)
                self._remove(self._shadow, dead, set())
        if self.shadow_items + len(ids) > self.max_shadow_items:
            raise Overloaded(f"shadow queue full ({self.shadow_items} prompts)")
        self.shadow_items += len(ids)
        return self._enqueue(self._shadow, SHADOW, ids, model, deadline, roles)

    def _enqueue(self, queues: OrderedDict, caller: str, ids, model, deadline, roles=None) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        q = queues.get(caller)
        if q is None:
            q = queues[caller] = deque()  # a new caller joins the end of the rotation
        futures = []
        for k, row in enumerate(ids):
            fut = loop.create_future()
            q.append(Job(row, fut, deadline, model, caller, roles[k] if roles else "user"))
            futures.append(fut)
        self._wakeup.set()
        return futures

    def can_score(self, seconds: float) -> int:
        """Tokens the backend can score in `seconds` at the measured rate; one full batch before any
        measurement. Streams size their read-ahead with it, so a drain can answer what they read."""
        if self.tokens_per_s is None:
            return self.max_batch_tokens
        return int(self.tokens_per_s * seconds)

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
        for queues in (self._callers, self._shadow):
            for q in queues.values():
                for job in q:
                    if not job.future.done():
                        job.future.set_exception(ShuttingDown("server shutting down before this prompt was scored; retry"))
            queues.clear()
        self._held.clear()

    async def _release(self, jobs: list[Job], shadow: bool) -> None:
        if shadow:
            self.shadow_items -= len(jobs)
            return
        self.queued_items -= len(jobs)
        self.queued_tokens -= sum(len(j.ids) for j in jobs)
        for j in jobs:
            client = client_of(j.caller)
            items, held = self._held[client]
            if items == 1:
                del self._held[client]
            else:
                self._held[client] = (items - 1, held - len(j.ids))
        async with self._space:
            self._space.notify_all()

    async def _loop(self) -> None:
        while True:
            if not self._callers and not self._shadow:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.delay_s and self._callers and self.queued_items < self.max_batch_size:
                await asyncio.sleep(self.delay_s)  # let concurrent requests join this batch
            shadow = self._shadow_turn()
            jobs, dropped = (self._take(self._shadow, self.shadow_batch_tokens) if shadow else self._take(self._callers))
            await self._release(jobs + dropped, shadow)
            if jobs:
                await self._infer(jobs, shadow)
            del jobs, dropped  # hold no model past its last job

    def _shadow_turn(self) -> bool:
        """Shadow work runs when nothing else waits, and, with `shadow_min_share` s > 0, also as every
        round(1/s)-th batch while live work waits: a saturated server still gives the candidate a
        sample (at that share of its capacity) instead of none."""
        if not self._shadow:
            shadow = False
        elif not self._callers:
            shadow = True
        else:
            shadow = self.shadow_min_share > 0 and self._live_batches + 1 >= round(1 / self.shadow_min_share)
        self._live_batches = 0 if shadow else self._live_batches + 1
        return shadow

    def _take(self, queues: OrderedDict[str, deque[Job]] | None = None, max_tokens: int = 0) -> tuple[list[Job], list[Job]]:
        """Pick the next batch from `queues` (fair over callers, one model, at most `max_tokens` padded
        tokens, default max_batch_tokens; one row always fits) and drop dead jobs."""
        queues = self._callers if queues is None else queues
        budget = max_tokens or self.max_batch_tokens
        now = time.monotonic()
        dropped: list[Job] = []
        windows: dict[str, list[Job]] = {}
        for caller in list(queues):
            q = queues[caller]
            while q and q[0].dead(now):
                dropped.append(q.popleft())
            live = []
            for job in list(q)[: self.sort_window]:
                if job.dead(now):
                    dropped.append(job)
                else:
                    live.append(job)
            if live:
                windows[caller] = live
        if not windows:
            self._remove(queues, dropped, set())
            return [], dropped
        model = next(iter(windows.values()))[0].model  # the anchor's: the caller whose turn it is
        chosen: list[Job] = []
        served: list[str] = []
        width = 0
        # Round 1: every caller's oldest prompt of this model, in rotation order (the anchor's always).
        for caller, live in windows.items():
            oldest = live[0]
            if len(chosen) == self.max_batch_size:
                break
            if oldest.model is not model or (chosen and max(width, len(oldest.ids)) * (len(chosen) + 1) > budget):
                continue
            chosen.append(oldest)
            served.append(caller)
            width = max(width, len(oldest.ids))
            live.pop(0)
        # Later rounds: one prompt per caller per round, nearest in length to the batch's width.
        active = [c for c in served if windows[c]]
        while active and len(chosen) < self.max_batch_size:
            still = []
            for caller in active:
                if len(chosen) == self.max_batch_size:
                    break
                live = windows[caller]
                fits = [j for j in live if j.model is model and max(width, len(j.ids)) * (len(chosen) + 1) <= budget]
                if not fits:
                    continue  # the batch only grows: nothing of this caller fits later either
                # cheapest first: the longest row not wider than the batch, else the shortest wider one
                pick = min(fits, key=lambda j: (max(width, len(j.ids)), -len(j.ids) if len(j.ids) <= width else len(j.ids)))
                chosen.append(pick)
                width = max(width, len(pick.ids))
                live.remove(pick)
                if live:
                    still.append(caller)
            active = still
        self._remove(queues, chosen + dropped, set(served))
        return chosen, dropped

    @staticmethod
    def _remove(queues: OrderedDict[str, deque[Job]], jobs: list[Job], served: set[str]) -> None:
        """Take `jobs` out of the queues; callers served this batch go to the back of the rotation."""
        taken = set(map(id, jobs))
        for caller in list(queues):
            q = queues[caller]
            if any(id(j) in taken for j in q):
                q = queues[caller] = deque(j for j in q if id(j) not in taken)
            if not q:
                del queues[caller]
            elif caller in served:
                queues.move_to_end(caller)

    async def _infer(self, jobs: list[Job], shadow: bool = False) -> None:
        model = jobs[0].model
        input_ids, mask = pad_batch([j.ids for j in jobs], model.pad_id)
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, model.run, input_ids, mask)
            scores = model.row_scores(outputs, [j.role for j in jobs])  # the norm is not served
            cats = model.row_notes(outputs) or [None] * len(jobs)
        except Exception as exc:  # the batch fails; other batches are unaffected
            log.exception("inference failed for a batch of %d", len(jobs))
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            if self.on_error and not shadow:  # a broken candidate does not make the server unhealthy
                self.on_error(exc)
            return
        infer_s = time.monotonic() - start
        rate = mask.size / max(infer_s, 1e-6)
        self.tokens_per_s = rate if self.tokens_per_s is None else 0.8 * self.tokens_per_s + 0.2 * rate
        for j, score, cat in zip(jobs, scores, cats):
            if not j.future.done():
                j.future.set_result(PromptResult(float(score), start - j.enqueued, infer_s, cat))
        if self.on_error and not shadow:
            self.on_error(None)
        if self.on_batch:
            self.on_batch(BatchStats(len(jobs), int(mask.size), int(mask.sum()), infer_s, shadow))
