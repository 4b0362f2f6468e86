"""Soak / load test with exactly-once accounting, against a local `reftguard serve` (loopback only).

    python bench/soak.py --bundle DIR [--streams 16] [--prompts 50000] [--unary 2] [--duration 600] [--json OUT]

N concurrent ScoreStreams (each its own client and connection) plus unary callers with tiny queue
bounds so overload and retries really happen. Every item id is tracked end to end; the run reports
lost, duplicated and misordered decisions (must be 0/0/0), rejections and client retries, latency
percentiles per request, server RSS every few seconds, and the final server metrics. Bounded in count
and time; stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def start_server(bundle: str, extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    cmd = [sys.executable, "-m", "reftguard.cli", "serve", "--bundle", bundle, "--host", "127.0.0.1", "--port", "0",
           "--metrics-host", "127.0.0.1", "--metrics-port", "0", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port, ready = [None], threading.Event()

    def pump():
        for line in proc.stderr:
            m = re.search(r"on port (\d+)", line)
            if m:
                port[0] = int(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(300)
    if port[0] is None:
        raise RuntimeError("server failed to start")
    return proc, port[0], 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def soak(target: str, streams: int, prompts: int, unary: int, duration: float, texts: list[str]) -> dict:
    from reftguard.clients import AsyncGuardClient

    t_end = time.monotonic() + duration
    per_stream = prompts // streams
    out: dict = {"lost": 0, "duplicated": 0, "misordered": 0, "retries": 0, "decisions": 0, "latencies_ms": []}

    async def stream(k: int):
        ids = [f"s{k}-{i}" for i in range(per_stream)]
        items = ({"id": i, "text": texts[(k * 7919 + j) % len(texts)]} for j, i in enumerate(ids))
        got = []
        async with AsyncGuardClient(target, max_retries=50) as c:
            async for d in c.score_stream(items, batch_size=16, max_in_flight=4):
                got.append(d.id)
                if time.monotonic() > t_end:
                    break
            out["retries"] += c.retries
        sent = ids[: len(got)] if len(got) < len(ids) else ids
        out["lost"] += len(set(sent) - set(got))
        out["duplicated"] += len(got) - len(set(got))
        out["misordered"] += sum(1 for a, b in zip(got, sent) if a != b)
        out["decisions"] += len(got)

    async def caller(k: int):
        async with AsyncGuardClient(target, max_retries=50) as c:
            n = 0
            while time.monotonic() < t_end and n < prompts // max(1, streams):
                batch = [{"id": f"u{k}-{n + j}", "text": texts[(n + j) % len(texts)]} for j in range(8)]
                t = time.perf_counter()
                ds = await c.score(batch)
                out["latencies_ms"].append((time.perf_counter() - t) * 1e3)
                assert [d.id for d in ds] == [b["id"] for b in batch]
                n += len(batch)
                out["decisions"] += len(ds)
            out["retries"] += c.retries

    t0 = time.perf_counter()
    await asyncio.gather(*(stream(k) for k in range(streams)), *(caller(k) for k in range(unary)))
    out["seconds"] = time.perf_counter() - t0
    return out


def run(bundle: str, streams: int, prompts: int, unary: int, duration: float, server_args: list[str]) -> dict:
    from reftguard.data import load_labeled, packaged

    texts = [p.text for p in load_labeled([packaged("guard-dev.jsonl"), packaged("handwritten-dev.jsonl")])]
    proc, port, _ = start_server(bundle, server_args)
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        t0 = time.monotonic()
        while not stop.wait(2.0):
            rss.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))

    threading.Thread(target=sample, daemon=True).start()
    try:
        rss.append((0.0, round(rss_mb(proc.pid), 1)))
        res = asyncio.run(soak(f"127.0.0.1:{port}", streams, prompts, unary, duration, texts))
        metrics = _metrics(proc)
    finally:
        stop.set()
        proc.terminate()
        res_exit = proc.wait(60)
    lat = np.array(res.pop("latencies_ms") or [float("nan")])
    res.update({
        "throughput_per_s": res["decisions"] / res["seconds"],
        "unary_latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99))},
        "rss_mb": rss, "server_exit_code": res_exit, "metrics": metrics,
    })
    return res


def _metrics(proc) -> dict:
    """The server's own counters, via its metrics port (found from /proc: the second listening socket)."""
    from prometheus_client.parser import text_string_to_metric_families

    for port in _listening_ports(proc.pid):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except Exception:
            continue
        keep = ("reftguard_errors_total", "reftguard_decisions_total", "reftguard_batch_size_count", "reftguard_batch_size_sum")
        return {f"{s.name}{s.labels or ''}": s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name.startswith(keep)}
    return {}


def _listening_ports(pid: int) -> list[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for line in open("/proc/net/tcp").read().splitlines()[1:] + open("/proc/net/tcp6").read().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and parts[9] in inodes:
            ports.append(int(parts[1].split(":")[1], 16))
    return ports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=50_000, help="Total prompts over all streams.")
    ap.add_argument("--unary", type=int, default=2, help="Concurrent unary callers.")
    ap.add_argument("--duration", type=float, default=600, help="Stop after this many seconds at most.")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    server_args = ["--max-queue-items", "256", "--max-batch-size", "32"]
    res = run(args.bundle, args.streams, args.prompts, args.unary, args.duration, server_args)
    print(json.dumps({k: v for k, v in res.items() if k != "rss_mb"}, indent=2))
    print("rss (s, MB):", res["rss_mb"][:3], "...", res["rss_mb"][-3:])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    sys.exit(0 if (res["lost"], res["duplicated"], res["misordered"]) == (0, 0, 0) else 1)


if __name__ == "__main__":
    main()
