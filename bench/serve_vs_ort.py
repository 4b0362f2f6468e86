"""Every engine and precision on this machine, bare and behind the server, vs naive transformers, in one run.

    python -m bench.serve_vs_ort [--bundle DIR] [--quick] [--json OUT.json]

- bare engines: every (engine, precision) this machine runs (reftguard.engines.available: onnxruntime
  fp32, OpenVINO fp32 and bf16 on AMX/avx512_bf16, OpenVINO int8 where the bundle has its int8 graph,
  onnxruntime fp16 on CUDA), pre-tokenized, length-sorted batches straight into the engine, at the best
  batch size; each engine's tokens/s as a share of this CPU's GEMM limit in its number format
  (bench/results/cpu_limit.json, `python -m bench.cpu_limit`), at the graph's FLOPs per token;
- per engine: batch invariance (each prompt alone and regrouped vs served batching; max |Δ|), parity
  vs onnxruntime fp32 and guard-dev AUROC (threshold-free, so a precision without its own calibration
  is still measured; the bench runs such precisions with --allow-uncalibrated-precision);
- server: `reftguard serve --engine E --precision P` in a subprocess, driven through the Python client
  (unary with 1 and 16 clients, streams with 1 / 4 / 16); --quick serves the fastest engine only, 1 and 16
  clients;
- naive: a transformers full-model forward per prompt (what you'd write without reftguard).

Today's keys refer to the fastest engine: `ort_prompts_per_s` is the best bare engine's prompts/s and
`server_over_ort` the server (stream or unary, best) over that same engine. Timings on shared machines
are noisy (the JSON records the load average): compare the ratios side by side, not absolute numbers.
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

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.data import load_labeled, packaged
from reftguard.engines import available, calibrations, make_engine
from reftguard.engines.checks import batch_invariance, parity
from reftguard.scoring import BundleScorer


def prompts(n: int) -> list[str]:
    rows = load_labeled([packaged("guard-dev.jsonl"), packaged("handwritten-dev.jsonl")])
    texts = [r.text for r in rows]
    return (texts * (n // len(texts) + 1))[:n]


def engine_scorer(bundle: GuardBundle, key: str) -> BundleScorer:
    engine, precision = key.split("/")
    return BundleScorer(bundle, backend=make_engine(bundle, engine=engine, precision=precision, allow_uncalibrated_precision=True), max_windows=0)


def bench_bare(scorer: BundleScorer, ids: list[list[int]], sizes) -> dict:
    scorer.max_batch = 8
    scorer.score_ids(ids[:16])  # warm up
    best = {}
    for bs in sizes:
        scorer.max_batch, scorer.max_batch_tokens = bs, 1 << 30
        t = time.perf_counter()
        scorer.score_ids(ids)
        dt = time.perf_counter() - t
        rate = len(ids) / dt
        print(f"  bare {scorer.backend.label:18} batch {bs:>3}: {rate:8.1f} prompts/s", flush=True)
        if rate > best.get("prompts_per_s", 0):
            best = {"batch_size": bs, "prompts_per_s": rate, "tokens_per_s": sum(map(len, ids)) / dt}
    return best


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the bench that started it dies, even by a signal (a killed bench
    left its server running and taking CPU from the next one)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: stop() still ends it on a normal exit


class Server:
    def __init__(self, bundle_dir: str, extra: list[str]):
        # The benches time inference: the score cache would answer their repeated prompts without it.
        cache = [] if "--score-cache-entries" in extra else ["--score-cache-entries", "0"]
        cmd = [sys.executable, "-m", "reftguard.cli", "serve", "--bundle", bundle_dir, "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1",
               *cache, *extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     preexec_fn=_die_with_parent)
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


def bench_server(bundle: GuardBundle, key: str, texts: list[str], batch_size: int, conc: dict) -> dict:
    engine, precision = key.split("/")
    server = Server(str(bundle.root), ["--max-batch-size", str(batch_size), "--engine", engine, "--precision", precision,
                                       "--allow-uncalibrated-precision"])
    out: dict = {}
    try:
        target = f"127.0.0.1:{server.port}"
        asyncio.run(drive(target, texts[:32], 1, "unary"))  # warm up
        for mode in ("unary", "stream"):
            rates = {}
            for c in conc[mode]:
                rates[c] = asyncio.run(drive(target, texts, c, mode))
                print(f"  server {key:14} {mode:6} x{c:<2}: {rates[c]:8.1f} prompts/s", flush=True)
            out[f"{mode}_by_clients"] = rates
            out[f"{mode}_prompts_per_s"] = max(rates.values())
    finally:
        server.stop()
    return out


def flops_per_token(bundle: GuardBundle) -> float:
    """2 x the weights of the graph's decoder MatMuls: the FLOPs each token costs in its linear layers (the
    attention products, which grow with the prompt, are left out: small at these lengths)."""
    import onnx

    model = onnx.load(str(bundle.model_path))
    init = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    return 2.0 * sum(init[i] for n in model.graph.node if n.op_type == "MatMul" and n.name.startswith("/decoder/") for i in n.input if i in init)


def limit_shares(bundle: GuardBundle, engines: dict[str, float], avg_tokens: float, limit_file: Path) -> dict | None:
    """Per engine: GFLOP/s done (prompts/s x tokens x FLOPs per token) and its share of this CPU's GEMM limit
    in that number format (the best backend's rate; int8: torch._int_mm, the VNNI rate)."""
    if not limit_file.is_file():
        return None
    rows = json.loads(limit_file.read_text())["rows"]
    best = {p: max(r["gflops"] for r in rows if r["precision"] == p) for p in {r["precision"] for r in rows}}
    fpt = flops_per_token(bundle)
    out = {"flops_per_token": fpt, "limit_gflops": best, "engines": {}}
    for key, rate in engines.items():
        prec = key.split("/")[1]
        done = rate * avg_tokens * fpt / 1e9
        out["engines"][key] = {"gflops": done, "share_of_limit": done / best[prec] if prec in best else None}
    return out


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
    ap.add_argument("--quick", action="store_true", help="Fewer prompts and configurations; the server runs the fastest engine only.")
    ap.add_argument("--json", default="", help="Write the results here.")
    ap.add_argument("--batch-size", type=int, default=32, help="Server --max-batch-size (at least the best bare batch).")
    ap.add_argument("--engines", default="", help="Comma-separated name/precision keys to measure (default: all available).")
    ap.add_argument("--no-naive", action="store_true", help="Skip the naive transformers baseline.")
    ap.add_argument("--cpu-limit", default="bench/results/cpu_limit.json", help="This CPU's GEMM rates (python -m bench.cpu_limit).")
    ap.add_argument("--prompts", type=int, default=1024, help="Prompts per measurement in a full run (--quick: 192).")
    args = ap.parse_args()
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle as default_bundle

        bundle = default_bundle()
    n = 192 if args.quick else args.prompts
    texts = prompts(n)
    keys = args.engines.split(",") if args.engines else [f"{e}/{p}" for e, p in available(bundle)]
    load0 = os.getloadavg()
    res: dict = {"bundle_id": bundle.bundle_id, "layer": bundle.layer, "n_prompts": n, "quick": args.quick, "cpus": os.cpu_count(),
                 "load_avg_start": [round(x, 2) for x in load0], "calibrated": sorted(calibrations(bundle.manifest))}
    dev = load_labeled([packaged("guard-dev.jsonl")])
    if args.quick:  # a fixed 384-prompt subset (the file is grouped by label, so not its head)
        dev = [dev[i] for i in sorted(np.random.default_rng(0).permutation(len(dev))[:384])]
    dev_y = np.array([p.label for p in dev])
    ids = None
    res["engines"], res["engine_batch"], res["batch_invariance"], res["parity_vs_fp32"], res["auroc_by_precision"], res["auroc_by_engine"] = {}, {}, {}, {}, {}, {}
    ref_scores, scorers = None, {}
    for key in ["ort/fp32"] + [k for k in keys if k != "ort/fp32"]:
        scorer = scorers[key] = engine_scorer(bundle, key)
        ids = ids or scorer.encoder.encode(texts, "right").ids
        if key in keys:
            best = bench_bare(scorer, ids, (16, 32) if args.quick else (16, 32, 64))
            res["engines"][key], res["engine_batch"][key] = best["prompts_per_s"], best["batch_size"]
        scorer.max_batch, scorer.max_batch_tokens = 32, 16384
        dev_scores = scorer.scores([p.text for p in dev])
        ref_scores = dev_scores if key == "ort/fp32" else ref_scores
        inv = batch_invariance(scorer.backend.run, ids[: 64 if args.quick else 256], bundle.pad_token_id)
        res["batch_invariance"][key] = inv["max_abs_diff"]
        res["parity_vs_fp32"][key] = parity(dev_scores, ref_scores)
        res["auroc_by_engine"][key] = evaluation.auroc(dev_scores, dev_y)
        precision = key.split("/")[1]
        if precision not in res["auroc_by_precision"] or key.startswith("ort/") or precision == "bf16":
            res["auroc_by_precision"][precision] = res["auroc_by_engine"][key]
        print(f"  {key:18} batch invariance {inv['max_abs_diff']:.2e}  parity vs ort/fp32 max {res['parity_vs_fp32'][key]['max_abs_diff']:.2e}"
              f"  guard-dev AUROC {res['auroc_by_engine'][key]:.4f} (n={len(dev)})", flush=True)
    fastest = max(res["engines"], key=res["engines"].get)
    res["engine"], res["precision"] = fastest.split("/")
    res["ort_best_batch"] = res["engine_batch"][fastest]
    res["ort_fp32_prompts_per_s"] = res["engines"].get("ort/fp32")
    tokens = sum(map(len, ids))
    res["avg_tokens"] = tokens / n
    print(f"bundle {bundle.bundle_id} (layer {bundle.layer}), {n} prompts, {tokens / n:.0f} tokens/prompt avg, {os.cpu_count()} cpus; fastest: {fastest}")
    res["cpu_limit"] = limit_shares(bundle, res["engines"], res["avg_tokens"], Path(args.cpu_limit))
    conc = {"unary": (1, 16), "stream": (1, 16) if args.quick else (1, 4, 16)}
    res["server_by_engine"] = {}
    for key in [fastest] if args.quick else [fastest] + [k for k in res["engines"] if k != fastest]:
        # The bare engine again, right before its server: on a shared machine the load moves within
        # minutes, and the ratio should compare two measurements taken under the same load.
        sc = scorers[key]
        bare = bench_bare(sc, ids, (res["engine_batch"][key],))["prompts_per_s"]
        del sc.backend, sc  # free the engine's threads and memory before the server starts
        s = res["server_by_engine"][key] = {"bare_prompts_per_s": bare}
        s |= bench_server(bundle, key, texts, max(args.batch_size, res["engine_batch"][key]), conc)
        s["stream_over_bare"] = s["stream_prompts_per_s"] / bare
        s["best_over_bare"] = max(s["stream_prompts_per_s"], s["unary_prompts_per_s"]) / bare
    scorers.clear()
    res["ort_prompts_per_s"] = res["server_by_engine"][fastest]["bare_prompts_per_s"]  # the fastest engine, bare, measured next to its server
    best = res["server_by_engine"][fastest]
    for mode in ("unary", "stream"):
        res[f"server_{mode}_by_clients"], res[f"server_{mode}_prompts_per_s"] = best[f"{mode}_by_clients"], best[f"{mode}_prompts_per_s"]
    best_server = max(res["server_unary_prompts_per_s"], res["server_stream_prompts_per_s"])
    res["server_over_ort"] = best_server / res["ort_prompts_per_s"]
    res["server_stream_over_ort"] = res["server_stream_prompts_per_s"] / res["ort_prompts_per_s"]
    paths = ("ort", "server_unary", "server_stream")
    if not args.no_naive:
        naive_n = 24 if args.quick else 96
        res["naive_prompts_per_s"] = bench_naive(bundle, texts[:naive_n])
        res["server_over_naive"] = best_server / res["naive_prompts_per_s"]
        paths += ("naive",)
    for k in paths:
        res[f"{k}_tokens_per_s"] = res[f"{k}_prompts_per_s"] * tokens / n
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\n{'engine':<18}{'bare/s':>9}{'server stream/s':>17}{'batch inv':>11}{'AUROC':>8}")
    for key, rate in res["engines"].items():
        srv = res["server_by_engine"].get(key, {}).get("stream_prompts_per_s")
        print(f"{key:<18}{rate:>9.1f}{(f'{srv:.1f}' if srv else '-'):>17}{res['batch_invariance'][key]:>11.1e}{res['auroc_by_engine'][key]:>8.4f}")
    print(f"fastest {fastest}: server / bare = {res['server_over_ort']:.2f}x"
          + (f"   server / naive = {res['server_over_naive']:.1f}x" if "server_over_naive" in res else "")
          + f"   load avg {res['load_avg_start']} -> {res['load_avg_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
