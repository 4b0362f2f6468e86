"""Soak / load test with exactly-once accounting, against a local `reftguard serve` (loopback only).

    python -m bench.soak --bundle DIR [--streams 16] [--prompts 50000] [--unary 2] [--unary-rate 2]
                         [--shadow-bundle DIR] [--duration 600] [--json OUT] [--plot OUT.png]

N concurrent ScoreStreams (each its own client and connection) plus unary callers that each send
`--unary-rate` Score calls a second (`--unary-items` items each), with tiny queue bounds so overload,
fair queueing and retries really happen. Every item id is tracked end to end; the run reports lost,
duplicated and misordered decisions (must be 0/0/0), rejections and client retries, unary latency
percentiles, stream throughput before and after the unary callers start, and a timeline (decisions,
queue depth, server RSS) every `--sample-s` seconds.

Phases, by stream progress: unary callers start once a quarter of the stream prompts are answered;
at half, the server gets a SIGHUP reload (the --bundle symlink flipped to a fresh copy, as a publish
would) and, with --shadow-bundle, the shadow symlink appears so the reload turns shadow scoring on.
A caller whose retries run out is counted (`unary_failed`, `stream_failed`, with status codes) and the
run goes on: the report is always written. Bounded in count and time; stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np


def start_server(bundle: str, extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    cmd = [sys.executable, "-m", "reftguard.cli", "serve", "--bundle", bundle, "--host", "127.0.0.1", "--port", "0",
           "--metrics-host", "127.0.0.1", "--metrics-port", "0", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port, ready = [None], threading.Event()
    log: list[str] = []

    def pump():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"on port (\d+)", line)
            if m:
                port[0] = int(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(600)
    if port[0] is None:
        raise RuntimeError("server failed to start:\n" + "".join(log[-20:]))
    proc.log = log  # type: ignore[attr-defined]
    return proc, port[0], 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def code_of(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return code().name if callable(code) else type(exc).__name__


class Soak:
    def __init__(self, target: str, streams: int, prompts: int, unary: int, duration: float, texts: list[str], *,
                 unary_rate: float = 2.0, unary_items: int = 4, on_half=None, max_retries: int = 50):
        self.target, self.streams, self.unary, self.texts = target, streams, unary, texts
        self.per_stream = prompts // streams
        self.t_end = time.monotonic() + duration
        self.unary_rate, self.unary_items, self.on_half = unary_rate, unary_items, on_half
        self.max_retries = max_retries
        self.out: dict = {"lost": 0, "duplicated": 0, "misordered": 0, "retries": 0, "decisions": 0, "stream_decisions": 0,
                          "unary_calls": 0, "unary_failed": 0, "stream_failed": 0, "failure_codes": {}, "latencies_ms": [],
                          "events": {}}
        self.codes: Counter = Counter()
        self.unary_go = asyncio.Event()
        self.t0 = time.monotonic()

    def event(self, name: str) -> None:
        self.out["events"][name] = round(time.monotonic() - self.t0, 1)

    def _progress(self) -> None:
        total = self.per_stream * self.streams
        done = self.out["stream_decisions"]
        if done >= total / 4 and not self.unary_go.is_set():
            self.event("unary_start")
            self.unary_go.set()
        if done >= total / 2 and self.on_half is not None:
            half, self.on_half = self.on_half, None
            self.event("reload")
            threading.Thread(target=half, daemon=True).start()

    async def stream(self, k: int) -> None:
        from reftguard.clients import AsyncGuardClient

        ids = [f"s{k}-{i}" for i in range(self.per_stream)]
        items = ({"id": i, "text": self.texts[(k * 7919 + j) % len(self.texts)]} for j, i in enumerate(ids))
        got: list[str] = []
        sent = ids
        try:
            async with AsyncGuardClient(self.target, max_retries=self.max_retries) as c:
                try:
                    async for d in c.score_stream(items, batch_size=16, max_in_flight=4):
                        got.append(d.id)
                        self.out["stream_decisions"] += 1
                        self._progress()
                        if time.monotonic() > self.t_end:
                            sent = ids[: len(got)]  # stopped by the clock: what it had asked for by then
                            break
                finally:
                    self.out["retries"] += c.retries
        except Exception as exc:  # retries ran out: a result, not the end of the run
            self.out["stream_failed"] += 1
            self.codes[code_of(exc)] += 1
            # everything this stream was asked to score and did not get counts as lost
        self.out["lost"] += len(set(sent) - set(got))
        self.out["duplicated"] += len(got) - len(set(got))
        self.out["misordered"] += sum(1 for a, b in zip(got, sent) if a != b)
        self.out["decisions"] += len(got)

    async def caller(self, k: int) -> None:
        from reftguard.clients import AsyncGuardClient

        await self.unary_go.wait()
        n = 0
        async with AsyncGuardClient(self.target, max_retries=self.max_retries) as c:
            nxt = time.monotonic()
            while time.monotonic() < self.t_end and not self.streams_done.is_set():
                batch = [{"id": f"u{k}-{n + j}", "text": self.texts[(n + j) % len(self.texts)]} for j in range(self.unary_items)]
                t = time.perf_counter()
                self.out["unary_calls"] += 1
                try:
                    ds = await c.score(batch)
                except Exception as exc:  # retries ran out: count it and keep calling
                    self.out["unary_failed"] += 1
                    self.codes[code_of(exc)] += 1
                else:
                    self.out["latencies_ms"].append((time.perf_counter() - t) * 1e3)
                    if [d.id for d in ds] != [b["id"] for b in batch]:
                        self.out["misordered"] += 1
                    self.out["decisions"] += len(ds)
                n += len(batch)
                nxt += 1.0 / self.unary_rate
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            self.out["retries"] += c.retries

    async def run(self) -> dict:
        self.streams_done = asyncio.Event()
        self.t0 = time.monotonic()
        callers = [asyncio.ensure_future(self.caller(k)) for k in range(self.unary)]
        await asyncio.gather(*(self.stream(k) for k in range(self.streams)))
        self.event("streams_done")
        self.streams_done.set()
        self.unary_go.set()
        await asyncio.gather(*callers)
        self.out["seconds"] = time.monotonic() - self.t0
        self.out["failure_codes"] = dict(self.codes)
        return self.out


async def soak(target: str, streams: int, prompts: int, unary: int, duration: float, texts: list[str], **kw) -> dict:
    return await Soak(target, streams, prompts, unary, duration, texts, **kw).run()


def run(bundle: str, streams: int, prompts: int, unary: int, duration: float, server_args: list[str], *,
        shadow_bundle: str = "", unary_rate: float = 2.0, unary_items: int = 4, sample_s: float = 2.0) -> dict:
    from reftguard.data import load_labeled, packaged

    texts = [p.text for p in load_labeled([packaged("guard-dev.jsonl"), packaged("handwritten-dev.jsonl")])]
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    active, shadow_link = work / "active", work / "shadow"
    os.symlink(Path(bundle).resolve(), active)
    args = list(server_args) + (["--shadow-bundle", str(shadow_link)] if shadow_bundle else [])
    proc, port, _ = start_server(str(active), args)
    timeline: list[dict] = []
    stop = threading.Event()
    soak_obj: list[Soak] = []
    t0 = time.monotonic()

    def sample():
        while not stop.wait(sample_s):
            m = _metrics(proc, ("reftguard_queue_depth", "reftguard_shadow_decisions_total", "reftguard_models_loaded"))
            s = soak_obj[0].out if soak_obj else {}
            timeline.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(proc.pid), 1),
                             "stream_decisions": s.get("stream_decisions", 0),
                             "queue_depth": m.get("reftguard_queue_depth", float("nan")),
                             "shadow_decisions": sum(v for k, v in m.items() if k.startswith("reftguard_shadow_decisions_total")),
                             "models_loaded": m.get("reftguard_models_loaded", float("nan"))})

    def half():
        """Publish a fresh copy of the bundle (new dir + symlink flip), let the shadow appear, SIGHUP."""
        copy = work / "active-v2"
        shutil.copytree(Path(bundle).resolve(), copy)
        _flip(active, copy)
        if shadow_bundle:
            os.symlink(Path(shadow_bundle).resolve(), shadow_link)
        proc.send_signal(signal.SIGHUP)

    threading.Thread(target=sample, daemon=True).start()
    try:
        timeline.append({"t": 0.0, "rss_mb": round(rss_mb(proc.pid), 1), "stream_decisions": 0})
        s = Soak(f"127.0.0.1:{port}", streams, prompts, unary, duration, texts, unary_rate=unary_rate, unary_items=unary_items, on_half=half)
        soak_obj.append(s)
        res = asyncio.run(s.run())
        metrics = _metrics(proc)
    finally:
        stop.set()
        proc.terminate()
        res_exit = proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    lat = np.array(res.pop("latencies_ms") or [float("nan")])
    infer_n = metrics.get('reftguard_phase_seconds_count{\'phase\': \'infer\'}', 0.0)
    infer_mean_ms = 1e3 * metrics.get('reftguard_phase_seconds_sum{\'phase\': \'infer\'}', 0.0) / infer_n if infer_n else float("nan")
    res.update({
        "throughput_per_s": (res["decisions"]) / res["seconds"],
        "unary_latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99)),
                             "n": int(np.isfinite(lat).sum())},
        "batch_infer_ms_mean": infer_mean_ms,
        "unary_p95_over_batch_infer": float(np.percentile(lat, 95)) / infer_mean_ms if infer_n else float("nan"),
        "stream_throughput_per_s": _phase_rates(timeline, res["events"]),
        "rss_mb": [(p["t"], p["rss_mb"]) for p in timeline],
        "timeline": timeline, "server_exit_code": res_exit, "metrics": metrics,
        "reloads_ok": metrics.get("reftguard_reloads_total{'result': 'ok'}", 0.0),
    })
    return res


def _flip(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _phase_rates(timeline: list[dict], events: dict) -> dict:
    """Stream decisions per second before the unary callers start, with them before the reload, and after it."""
    def rate(a: float, b: float) -> float | None:
        pts = [p for p in timeline if a <= p["t"] <= b]
        if len(pts) < 2 or pts[-1]["t"] == pts[0]["t"]:
            return None
        return (pts[-1]["stream_decisions"] - pts[0]["stream_decisions"]) / (pts[-1]["t"] - pts[0]["t"])

    u, r, e = events.get("unary_start"), events.get("reload"), events.get("streams_done", float("inf"))
    out = {"streams_only": rate(0.0, u) if u else None, "with_unary": rate(u, r if r else e) if u else None,
           "after_reload": rate(r, e) if r else None}
    if out["streams_only"] and out["with_unary"]:
        out["drop_with_unary"] = 1.0 - out["with_unary"] / out["streams_only"]
    return out


def _metrics(proc, keep=("reftguard_errors_total", "reftguard_decisions_total", "reftguard_batch_size_count", "reftguard_batch_size_sum",
                         "reftguard_phase_seconds_sum", "reftguard_phase_seconds_count", "reftguard_reloads_total", "reftguard_shadow_",
                         "reftguard_queue_depth", "reftguard_models_loaded")) -> dict:
    """The server's own counters, via its metrics port (found from /proc: the second listening socket)."""
    from prometheus_client.parser import text_string_to_metric_families

    for port in _listening_ports(proc.pid):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except Exception:
            continue
        return {f"{s.name}{s.labels or ''}": s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith(keep) and "_bucket" not in s.name}
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


def plot(res: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = res["timeline"]
    t = [p["t"] for p in tl]
    dec = [p["stream_decisions"] for p in tl]
    thr = [0.0] + [(dec[i] - dec[i - 1]) / max(t[i] - t[i - 1], 1e-9) for i in range(1, len(tl))]
    k = 5  # smooth over k samples: a stream answers in bursts of whole requests
    smooth = [sum(thr[max(0, i - k + 1): i + 1]) / len(thr[max(0, i - k + 1): i + 1]) for i in range(len(thr))]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, smooth)
    axes[0].set_ylabel(f"stream decisions/s\n(mean of {k} samples)")
    axes[1].plot(t, [p.get("queue_depth", float("nan")) for p in tl])
    axes[1].set_ylabel("queue depth")
    axes[2].plot(t, [p["rss_mb"] for p in tl])
    axes[2].set_ylabel("server RSS (MB)")
    axes[2].set_xlabel("seconds")
    for name, at in res["events"].items():
        for ax in axes:
            ax.axvline(at, color="grey", ls="--", lw=0.8)
        axes[0].annotate(name, (at, max(smooth) if smooth else 0), fontsize=7, rotation=90, va="top")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--shadow-bundle", default="", help="Candidate bundle: becomes the shadow at the halfway reload.")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=50_000, help="Total prompts over all streams.")
    ap.add_argument("--unary", type=int, default=2, help="Unary callers.")
    ap.add_argument("--unary-rate", type=float, default=2.0, help="Score calls per second per unary caller.")
    ap.add_argument("--unary-items", type=int, default=4, help="Items per unary Score call.")
    ap.add_argument("--duration", type=float, default=600, help="Stop after this many seconds at most.")
    ap.add_argument("--sample-s", type=float, default=2.0, help="Timeline sampling period.")
    ap.add_argument("--json", default="")
    ap.add_argument("--plot", default="", help="PNG of throughput, queue depth and RSS over time (needs matplotlib).")
    ap.add_argument("server_args", nargs="*", help="Extra `reftguard serve` flags (after --).")
    args = ap.parse_args()
    server_args = ["--max-queue-items", "256", "--max-batch-size", "32", *args.server_args]
    res = run(args.bundle, args.streams, args.prompts, args.unary, args.duration, server_args, shadow_bundle=args.shadow_bundle,
              unary_rate=args.unary_rate, unary_items=args.unary_items, sample_s=args.sample_s)
    res["config"] = {k: v for k, v in vars(args).items() if k not in ("bundle", "shadow_bundle", "json", "plot")}
    print(json.dumps({k: v for k, v in res.items() if k not in ("rss_mb", "timeline")}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.plot:
        plot(res, args.plot)
    sys.exit(0 if (res["lost"], res["duplicated"], res["misordered"]) == (0, 0, 0) else 1)


if __name__ == "__main__":
    main()
