"""Server vs bare onnxruntime vs naive transformers, on the same bundle and prompts, in one run.

    python bench/serve_vs_ort.py [--bundle DIR] [--quick] [--json OUT.json]

- bare ORT: pre-tokenized, length-sorted batches straight into the session, at the best batch size;
- server: `reftguard serve` in a subprocess, driven through the Python client (unary and stream,
  1 / 4 / 16 concurrent clients);
- naive: a transformers full-model forward per prompt (what you'd write without reftguard).
Timings on shared machines are noisy: compare the ratios printed side by side, not absolute numbers.
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
from pathlib import Path

import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.data import load_labeled, packaged
from reftguard.scoring import BundleScorer


def prompts(n: int) -> list[str]:
    rows = load_labeled([packaged("guard-dev.jsonl"), packaged("handwritten-dev.jsonl")])
    texts = [r.text for r in rows]
    return (texts * (n // len(texts) + 1))[:n]


def bench_ort(bundle: GuardBundle, texts: list[str], sizes=(8, 16, 32, 64)) -> dict:
    scorer = BundleScorer(bundle)
    ids = scorer.encoder.encode(texts, "right").ids
    scorer.max_batch = 8
    scorer.score_ids(ids[:16])  # warm up
    best = {}
    for bs in sizes:
        scorer.max_batch, scorer.max_batch_tokens = bs, 1 << 30
        t = time.perf_counter()
        scorer.score_ids(ids)
        dt = time.perf_counter() - t
        rate = len(ids) / dt
        print(f"  bare ORT batch {bs:>3}: {rate:8.1f} prompts/s")
        if rate > best.get("prompts_per_s", 0):
            best = {"batch_size": bs, "prompts_per_s": rate, "tokens_per_s": sum(map(len, ids)) / dt}
    return best


class Server:
    def __init__(self, bundle_dir: str, extra: list[str]):
        cmd = [sys.executable, "-m", "reftguard.cli", "serve", "--bundle", bundle_dir, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", *extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.port = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                m = re.search(r"on port (\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(600)
        if self.port is None:
            raise RuntimeError("server failed to start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


async def drive(target: str, texts: list[str], clients: int, mode: str) -> float:
    from reftguard.clients import AsyncGuardClient

    shards = [texts[i::clients] for i in range(clients)]

    async def one(shard):
        async with AsyncGuardClient(target) as c:
            if mode == "stream":
                n = 0
                async for _ in c.score_stream(shard, batch_size=16, max_in_flight=8):
                    n += 1
                return n
            n = 0
            for i in range(0, len(shard), 16):
                n += len(await c.score(shard[i : i + 16]))
            return n

    t = time.perf_counter()
    done = await asyncio.gather(*(one(s) for s in shards))
    dt = time.perf_counter() - t
    assert sum(done) == len(texts)
    return len(texts) / dt


def bench_naive(bundle: GuardBundle, texts: list[str]) -> float:
    import torch

    from reftguard.modeling.loading import load_causal_lm, torch_threads

    torch_threads()
    model, tok = load_causal_lm(bundle.manifest["source_model"]["name"])
    t = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
            model(**ids, output_hidden_states=True)
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="Bundle dir (default: the embedded default bundle).")
    ap.add_argument("--quick", action="store_true", help="Fewer prompts and configurations (< 3 min on 2 cores).")
    ap.add_argument("--json", default="", help="Write the results here.")
    ap.add_argument("--batch-size", type=int, default=32, help="Server --max-batch-size.")
    ap.add_argument("--int8", default="", help="Also time bare ORT on this int8 bundle (from `reftguard quantize`).")
    args = ap.parse_args()
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.default_bundle import default_bundle

        bundle = default_bundle()
    n = 192 if args.quick else 1024
    texts = prompts(n)
    tokens = sum(len(x) for x in BundleScorer(bundle).encoder.encode(texts, "right").ids)
    print(f"bundle {bundle.bundle_id} (layer {bundle.layer}), {n} prompts, {tokens / n:.0f} tokens/prompt avg, {os.cpu_count()} cpus")
    res: dict = {"bundle_id": bundle.bundle_id, "layer": bundle.layer, "n_prompts": n, "avg_tokens": tokens / n}
    ort = bench_ort(bundle, texts, (16, 32) if args.quick else (8, 16, 32, 64))
    res["ort_prompts_per_s"], res["ort_best_batch"] = ort["prompts_per_s"], ort["batch_size"]
    if args.int8:
        q = bench_ort(GuardBundle.load(args.int8), texts, (ort["batch_size"],))
        res["int8_ort_prompts_per_s"] = q["prompts_per_s"]
        res["int8_over_fp32"] = q["prompts_per_s"] / ort["prompts_per_s"]
        print(f"  int8 / fp32 bare ORT = {res['int8_over_fp32']:.2f}x")
    server = Server(str(bundle.root), ["--max-batch-size", str(max(args.batch_size, ort["batch_size"]))])
    try:
        target = f"127.0.0.1:{server.port}"
        asyncio.run(drive(target, texts[:32], 1, "unary"))  # warm up
        conc = (1, 16) if args.quick else (1, 4, 16)
        for mode in ("unary", "stream"):
            rates = {}
            for c in conc:
                rates[c] = asyncio.run(drive(target, texts, c, mode))
                print(f"  server {mode:6} x{c:<2}: {rates[c]:8.1f} prompts/s")
            res[f"server_{mode}_by_clients"] = rates
            res[f"server_{mode}_prompts_per_s"] = max(rates.values())
    finally:
        server.stop()
    naive_n = 24 if args.quick else 96
    res["naive_prompts_per_s"] = bench_naive(bundle, texts[:naive_n])
    print(f"  naive transformers : {res['naive_prompts_per_s']:8.1f} prompts/s")
    best_server = max(res["server_unary_prompts_per_s"], res["server_stream_prompts_per_s"])
    res["server_over_ort"] = best_server / res["ort_prompts_per_s"]
    res["server_over_naive"] = best_server / res["naive_prompts_per_s"]
    for k in ("ort", "server_unary", "server_stream", "naive"):
        res[f"{k}_tokens_per_s"] = res[f"{k}_prompts_per_s"] * tokens / n
    print(f"\n{'path':<16}{'prompts/s':>12}{'tokens/s':>12}")
    for k in ("ort", "server_unary", "server_stream", "naive"):
        print(f"{k:<16}{res[k + '_prompts_per_s']:>12.1f}{res[k + '_tokens_per_s']:>12.0f}")
    print(f"server / bare ORT = {res['server_over_ort']:.2f}x   server / naive = {res['server_over_naive']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
