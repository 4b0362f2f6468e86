"""A thread pool whose free workers go round the callers, for tokenizing.

A plain executor runs work in arrival order, so one client that sends many large requests holds every
tokenizer thread and another client's one-line request waits behind all of it. Here each caller has its
own queue and a free worker takes the next caller's oldest task, in rotation, as the batcher does with
prompts. Requests are tokenized in chunks (PromptEncoder.steps), one task per chunk, so the wait for a
worker is at most one chunk of another caller's work per worker.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from reftguard.encoding import Budget, Encoded, PromptEncoder


class FairPool:
    def __init__(self, workers: int, name: str = "tok"):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.workers = self._free = workers
        self._waiting: OrderedDict[str, deque[tuple[Callable, tuple, asyncio.Future]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(map(len, self._waiting.values()))

    async def run(self, caller: str, fn: Callable, *args: Any) -> Any:
        """fn(*args) on a worker thread, when it is `caller`'s turn."""
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(caller, deque()).append((fn, args, fut))
        self._dispatch()
        return await fut  # a cancelled caller's task that has not started is skipped

    def _dispatch(self) -> None:
        while self._free and self._waiting:
            caller, q = next(iter(self._waiting.items()))
            fn, args, fut = q.popleft()
            if q:
                self._waiting.move_to_end(caller)  # its next task waits for everyone else's
            else:
                del self._waiting[caller]
            if fut.done():
                continue
            self._free -= 1
            done = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            done.add_done_callback(lambda d, fut=fut: self._finished(d, fut))

    def _finished(self, done: asyncio.Future, fut: asyncio.Future) -> None:
        self._free += 1
        if not fut.done():
            if done.cancelled():
                fut.cancel()
            elif done.exception() is not None:
                fut.set_exception(done.exception())
            else:
                fut.set_result(done.result())
        self._dispatch()

    def shutdown(self) -> None:
        for q in self._waiting.values():
            for _, _, fut in q:
                fut.cancel()
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


async def encode_fairly(pool: FairPool, caller: str, encoder: PromptEncoder, texts: list[str], truncation: str,
                        budget: Budget) -> Encoded:
    """Encode a request one chunk per task on `pool` (OverBudget as PromptEncoder.steps raises it)."""
    out = Encoded(ids=[], truncated=[], text=[], window=[], num_windows=[])
    steps = encoder.steps(texts, truncation, budget, out)  # lengths over the budget raise here, untokenized
    while await pool.run(caller, next, steps, None) is not None:
        pass
    return out
