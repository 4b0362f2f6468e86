"""A blocking view of `AsyncGuardClient` for the scan that crosses threads once per batch of decisions.

`GuardClient.score_stream` hops from the caller's thread to the client's event loop once per
decision; at thousands of rows/s that hop costs more than the scoring. Here the stream is consumed
on the loop thread and decisions are handed over in lists, with at most `max_batches` lists waiting,
so a slow writer still pushes back on the stream (and the stream on the server).
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Iterable, Iterator

from reftguard.clients.client import GuardClient

_END = object()


class LoopClient(GuardClient):
    """GuardClient (its private loop thread and AsyncGuardClient) plus a batched `score_stream`."""

    def score_stream(self, items: Iterable[Any], *, handoff: int = 32, max_batches: int = 16, **kw: Any) -> Iterator[Any]:
        """Decisions for `items` in order (AsyncGuardClient.score_stream), delivered `handoff` at a time."""
        out: queue.SimpleQueue = queue.SimpleQueue()
        room = None
        stop = threading.Event()

        async def pump():
            nonlocal room
            room = asyncio.Semaphore(max_batches)
            batch: list = []
            try:
                async for d in self._aio.score_stream(items, **kw):
                    batch.append(d)
                    if len(batch) >= handoff:
                        await room.acquire()
                        out.put(batch)
                        batch = []
                    if stop.is_set():
                        return
                out.put(batch)
                out.put(_END)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                out.put(batch)  # decisions that did arrive are still delivered, in order, before the error
                out.put(exc)

        fut = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                got = out.get()
                if got is _END:
                    return
                if isinstance(got, BaseException):
                    raise got
                if room is not None and isinstance(got, list):
                    self._loop.call_soon_threadsafe(room.release)
                yield from got
        finally:
            stop.set()
            if not fut.done():
                fut.cancel()
            try:
                fut.result(timeout=10)
            except BaseException:  # noqa: BLE001 - cancelled or already reported
                pass
