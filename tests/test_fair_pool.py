"""FairPool: tokenizer threads go round the callers, so one client's flood of chunks cannot hold every worker."""
from __future__ import annotations

import asyncio
import threading

import pytest

from reftguard.server.fair_pool import FairPool


def test_a_free_worker_takes_the_next_callers_task_not_the_oldest():
    started: list[str] = []
    gate = threading.Event()

    def work(name: str) -> str:
        started.append(name)
        gate.wait(10)
        return name

    async def run():
        pool = FairPool(1)
        flood = [asyncio.ensure_future(pool.run("attacker", work, f"a{k}")) for k in range(5)]
        await asyncio.sleep(0.05)  # a0 holds the one worker; a1..a4 wait
        honest = asyncio.ensure_future(pool.run("honest", work, "h0"))
        await asyncio.sleep(0.05)
        assert pool.waiting == 5
        gate.set()
        assert await honest == "h0"
        assert await asyncio.gather(*flood) == [f"a{k}" for k in range(5)]
        pool.shutdown()

    asyncio.run(run())
    # a1 was waiting before the honest caller arrived, so it goes first; then the rotation puts the honest
    # caller ahead of the attacker's other three (a plain executor would run all five first)
    assert started == ["a0", "a1", "h0", "a2", "a3", "a4"]


def test_errors_and_cancelled_waiters_are_handled():
    def boom():
        raise ValueError("bad text")

    async def run():
        pool = FairPool(1)
        gate = threading.Event()
        first = asyncio.ensure_future(pool.run("a", gate.wait, 10))
        await asyncio.sleep(0.02)
        ran = []
        cancelled = asyncio.ensure_future(pool.run("b", ran.append, "never"))
        await asyncio.sleep(0.02)
        cancelled.cancel()  # its RPC went away before a worker was free: the task is skipped
        gate.set()
        await first
        with pytest.raises(ValueError, match="bad text"):
            await pool.run("c", boom)
        assert await pool.run("c", sum, [1, 2]) == 3 and ran == []
        pool.shutdown()

    asyncio.run(run())
