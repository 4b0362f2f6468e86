"""cProfile of the server path (every server thread: event loop, tokenizer pool, engine thread) under
concurrent streaming clients; prints the top functions by own time and the share spent in the engine.

    python -m bench.profile_server [--bundle DIR] [--engine auto] [--precision auto] [--prompts 1024] [--clients 4]

The server runs in this process (so every thread can be profiled); the clients run in a subprocess so
their protobuf and gRPC work is not counted. A thread-local cProfile.Profile is started in each server
thread through threading.setprofile, and the per-thread stats are merged.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import threading
import time
from pathlib import Path

PROFILES: list[cProfile.Profile] = []
IDLE = ("of '_queue.SimpleQueue' objects", "posix.waitpid", "'poll' of 'select.epoll'", "'acquire' of '_thread.lock'", "'wait' of ")
ENGINE_CALLS = ("_pyopenvino.infer", "run' of 'onnxruntime.capi.onnxruntime_pybind11_state.InferenceSession")


def _start_thread_profile(*_):
    p = cProfile.Profile()
    PROFILES.append(p)
    p.enable()  # replaces this hook for the thread


def client(target: str, n: int, clients: int) -> None:
    """The load: `clients` streams over `n` prompts; prints prompts/s. Run in a subprocess (`--client`)."""
    from bench.serve_vs_ort import prompts
    from reftguard.clients import AsyncGuardClient

    texts = prompts(n)

    async def one(shard):
        async with AsyncGuardClient(target) as c:
            return len([d async for d in c.score_stream(shard, batch_size=16, max_in_flight=8)])

    async def run():
        await one(texts[:32])
        t = time.perf_counter()
        done = await asyncio.gather(*(one(texts[i::clients]) for i in range(clients)))
        print(f"{sum(done) / (time.perf_counter() - t):.1f}")

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--prompts", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--client", default="", help=argparse.SUPPRESS)  # TARGET: be the load subprocess
    args = ap.parse_args()
    if args.client:
        return client(args.client, args.prompts, args.clients)
    from reftguard.bundle import GuardBundle
    from reftguard.config import from_env
    from reftguard.server.app import GuardServer
    from reftguard.server.config import ServerConfig

    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle as default_bundle

        bundle = default_bundle()
    cfg = from_env(ServerConfig, bundle=str(bundle.root), host="127.0.0.1", port=0, metrics_port=-1, engine=args.engine,
                   precision=args.precision, allow_uncalibrated_precision=True)

    async def run() -> str:
        gs = GuardServer(cfg, bundle)
        await gs.start()
        main_prof = cProfile.Profile()
        PROFILES.append(main_prof)
        threading.setprofile(_start_thread_profile)
        main_prof.enable()
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.profile_server", "--client", f"127.0.0.1:{gs.port}",
                                                    "--prompts", str(args.prompts), "--clients", str(args.clients),
                                                    stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        out, _ = await proc.communicate()
        main_prof.disable()
        threading.setprofile(None)
        wall = time.perf_counter() - t
        await gs.stop(grace=1.0)
        return f"{out.decode().strip()} prompts/s over {wall:.1f}s wall"

    rate = asyncio.run(run())
    for p in PROFILES:
        p.disable()
    stats = pstats.Stats(PROFILES[0])
    for p in PROFILES[1:]:
        try:
            stats.add(p)
        except TypeError:  # a profile that never ran
            pass
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("tottime").print_stats(args.top)
    own = {k: v[2] for k, v in stats.stats.items()}
    idle = sum(t for k, t in own.items() if any(w in k[2] for w in IDLE))
    engine = sum(t for k, t in own.items() if any(w in k[2] for w in ENGINE_CALLS))
    busy = sum(own.values()) - idle
    print(f"bundle {bundle.bundle_id}, engine {args.engine}/{args.precision}, {args.clients} streaming clients: {rate}")
    print(f"busy thread time {busy:.2f}s (idle waits excluded): engine calls {engine:.2f}s ({engine / busy:.0%}), "
          f"everything else {busy - engine:.2f}s ({(busy - engine) / busy:.0%})")
    print(buf.getvalue())


if __name__ == "__main__":
    main()
