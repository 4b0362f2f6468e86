"""Shadow scoring: a candidate bundle scores a sample of live items off the response path.

The response is sent first; then the picked items are encoded with the shadow model's own encoder and
queued as shadow work, which the batcher runs only when nothing else is queued. Whatever cannot be
done at once is dropped and counted (`reftguard_shadow_dropped_total`): too many shadow requests in
flight, the shadow queue full, the shadow cannot encode an item (e.g. a smaller max_tokens under
truncation `error`), or the server stopping. Each verdict is taken at its own bundle's threshold (a
client's threshold override is about the active bundle's scale), so a disagreement means "promoting
the candidate would change this decision".
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from typing import Sequence

from reftguard.encoding import Budget, PromptRejected
from reftguard.scoring import Scored, Thresholds, Turn, decide
from reftguard.server.batcher import SHADOW, DeadlineExpired, Overloaded, ShuttingDown
from reftguard.server.fair_pool import encode_fairly
from reftguard.server.metrics import GuardMetrics

log = logging.getLogger("reftguard.shadow")
MAX_TASKS = 256  # shadow requests being encoded or scored at once; more are dropped
MAX_WAIT_S = 10.0  # shadow work not started this long after it was queued is dropped (the server is busy)
# Item ids whose shadow verdict is kept for Feedback, per scoring client and in all (the oldest client's
# memory goes first): one client cannot push out the others' verdicts.
RECENT_IDS_PER_CLIENT = 8192
RECENT_CLIENTS = 64


def pick(n_items: int, fraction: float, rng: random.Random) -> list[int]:
    """Items (indices) sampled for the shadow, each with probability `fraction`."""
    if fraction >= 1.0:
        return list(range(n_items))
    return [i for i in range(n_items) if rng.random() < fraction]


def shadow_turns(turns: Sequence[Turn], items: Sequence[int], thresholds: Thresholds) -> list[Turn]:
    """The turns of `items` that the shadow scores (its own roles), renumbered 0..len(items)-1 (what
    `decide` expects). Every item keeps its user turns, which every bundle scores."""
    new = {old: k for k, old in enumerate(items)}
    return [Turn(new[t.item], t.turn, t.text, t.role) for t in turns if t.item in new and thresholds.scores(t.role)]


class ShadowScorer:
    def __init__(self, metrics: GuardMetrics, seed: int | None = None):
        self.metrics = metrics
        self.rng = random.Random(seed)
        self._tasks: set[asyncio.Task] = set()
        self._recent: OrderedDict[str, OrderedDict[str, bool]] = OrderedDict()  # client -> item id -> shadow flagged

    def offer(self, rt, a, scored: list[Scored], source: str, client: str = "") -> None:
        """Start shadow scoring of a sample of an answered request's items; never waits."""
        shadow = rt.shadow
        if shadow is None:
            return
        items = pick(len(scored), rt.shadow_fraction, self.rng)
        if not items:
            return
        if len(self._tasks) >= MAX_TASKS:
            self.metrics.shadow_dropped.inc(len(items))
            return
        # Only what the comparison needs travels with the task: not the request's model, which a reload
        # may retire while this waits (a task holding it would keep a whole engine in memory).
        turns = shadow_turns(a.parsed.turns, items, shadow.thresholds)
        # The active verdict at its bundle's own thresholds, like the shadow's: under a client override,
        # the deciding turn is judged again at its role's own threshold.
        own = a.model.thresholds
        active = [(scored[k].score, scored[k].flag if a.parsed.threshold is None else scored[k].score > own.of(scored[k].role),
                   a.parsed.labels[k], a.request.items[k].id) for k in items]
        task = asyncio.get_running_loop().create_task(self._score(rt, shadow, turns, a.parsed.truncation, active, source, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, rt, shadow, turns: list[Turn], truncation: str, active: list[tuple], source: str, client: str = "") -> None:
        """`active`: per picked item, (active score, active flagged at its bundle threshold, label, id)."""
        try:  # the live request passed the budget; the shadow's own tokenizer may count differently
            enc = await encode_fairly(rt.tokenize_pool, SHADOW, shadow.encoder, [t.text for t in turns], truncation, Budget())
            futures = rt.batcher.submit_shadow(enc.ids, model=shadow, deadline=time.monotonic() + MAX_WAIT_S, roles=[turns[i].role for i in enc.text])
            results = await asyncio.gather(*futures)
        except (PromptRejected, Overloaded, DeadlineExpired, ShuttingDown, asyncio.CancelledError) as exc:
            self.metrics.shadow_dropped.inc(len(active))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        except Exception:  # the shadow engine failed: count it, never affect the served decisions
            log.exception("shadow scoring failed")
            self.metrics.shadow_dropped.inc(len(active))
            return
        decided = decide([r.score for r in results], turns, enc, shadow.thresholds, shadow.notes_of(results))
        for (score, flagged, label, item_id), s in zip(active, decided):
            flag = s.flag
            self.metrics.record_shadow(source, flagged, flag, score, s.score, label)
            self._remember(client, item_id, flag)

    def _remember(self, client: str, item_id: str, flagged: bool) -> None:
        if not item_id:
            return
        mine = self._recent.setdefault(client, OrderedDict())
        self._recent.move_to_end(client)
        mine[item_id] = flagged
        mine.move_to_end(item_id)
        while len(mine) > RECENT_IDS_PER_CLIENT:
            mine.popitem(last=False)
        while len(self._recent) > RECENT_CLIENTS:
            self._recent.popitem(last=False)

    def feedback(self, item_id: str, reviewed: str) -> None:
        """A reviewer's verdict on an item the shadow also decided feeds the shadow's FP and miss rates. An id
        that several clients used is ambiguous (one may have claimed another's ids) and is not counted."""
        found = [mine[item_id] for mine in self._recent.values() if item_id in mine]
        if len(found) == 1:
            self.metrics.record_shadow_feedback(found[0], reviewed)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
