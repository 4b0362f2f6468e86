"""A real guard server on loopback ports, in a background thread with its own event loop."""
from __future__ import annotations

import asyncio
import threading
import urllib.request
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

from reftguard.bundle import GuardBundle
from reftguard.config import from_env
from reftguard.server.app import GuardServer, start_metrics
from reftguard.server.config import ServerConfig


class RunningServer:
    def __init__(self, gs: GuardServer, loop: asyncio.AbstractEventLoop):
        self.gs, self.loop = gs, loop

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gs.port}"

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.gs.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """{(sample name, sorted label items): value} from a real scrape."""
        out = {}
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)


@contextmanager
def run_server(bundle_path, **overrides):
    cfg = from_env(ServerConfig, **{"bundle": str(bundle_path), "host": "127.0.0.1", "port": 0, "metrics_host": "127.0.0.1", "metrics_port": 0, **overrides})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make():
        return GuardServer(cfg, GuardBundle.load(bundle_path))

    gs = asyncio.run_coroutine_threadsafe(make(), loop).result()
    gs.metrics_port = start_metrics(cfg, gs.metrics)
    rs = RunningServer(gs, loop)
    rs.call(gs.start())
    try:
        yield rs
    finally:
        rs.call(gs.stop(grace=1.0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
