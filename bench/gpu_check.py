"""The GPU check, prepared for the day a GPU machine is lent (#36): CUDA fp16 parity, batch invariance and
throughput against onnxruntime on the CPU, in one go (`bench/gpu_check.sh` caps it at 8 minutes).

- parity: max |score(fp16 on CUDA) - score(fp32 on CPU)| over the guard-dev prompts, against the bundle's
  fp16 tolerance (exporter/fp16.py FP16_ATOL); AUROC of both on guard-dev;
- batch invariance: each prompt scored alone and in arrival-order batches against served batching (engines.checks);
- throughput: prompts/s and tokens/s of CUDA fp16, CUDA fp32 and CPU fp32 on the same prompts, one run.

Without a CUDA GPU visible to onnxruntime it prints a SKIP line and exits 0. `--device cpu` runs the same
steps with the CPU standing in for CUDA (what the tests do: every step is exercised on a CPU machine).

    python -m bench.gpu_check [--bundle DIR] [--n 512] [--out bench/results/gpu_check.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.data import load_labeled, packaged, spread
from reftguard.engines import make_engine
from reftguard.engines.checks import batch_invariance
from reftguard.engines.selection import detect_platform, has_fp16_graph
from reftguard.scoring import BundleScorer


def scorer(bundle: GuardBundle, precision: str, device: str) -> BundleScorer:
    return BundleScorer(bundle, backend=make_engine(bundle, engine="ort", precision=precision, device=device, allow_uncalibrated_precision=True),
                        max_windows=0)


def timed(s: BundleScorer, ids: list[list[int]]) -> dict:
    s.score_ids(ids[:16])  # warm up (CUDA kernels, allocator)
    t = time.perf_counter()
    scores, _ = s.score_ids(ids)
    dt = time.perf_counter() - t
    return {"scores": scores, "prompts_per_s": len(ids) / dt, "tokens_per_s": sum(map(len, ids)) / dt}


def check(bundle_dir: Path, n: int, device: str) -> dict:
    from reftguard.exporter.fp16 import FP16_ATOL, add_fp16_graph

    with tempfile.TemporaryDirectory() as tmp:
        bundle = GuardBundle.load(bundle_dir)
        if not has_fp16_graph(bundle.manifest):  # a copy gets the fp16 graph: the bundle given stays as it is
            shutil.copytree(bundle_dir, Path(tmp) / "b")
            bundle = add_fp16_graph(Path(tmp) / "b")
        rows = spread(load_labeled(packaged("guard-dev.jsonl")), n)
        y = np.array([p.label for p in rows])
        scorers = {"cpu/fp32": scorer(bundle, "fp32", "cpu"), **{f"{device}/{p}": scorer(bundle, p, device) for p in ("fp16", "fp32")}}
        ids = scorers["cpu/fp32"].encoder.encode([p.text for p in rows], "right").ids
        runs = {k: timed(s, ids) for k, s in scorers.items()}
        fp16 = scorers[f"{device}/fp16"]
        base = runs["cpu/fp32"]["scores"]
        out = {
            "device": device, "bundle_id": bundle.bundle_id, "n": len(ids), "tokens": int(sum(map(len, ids))),
            "parity_max_abs": float(np.abs(runs[f"{device}/fp16"]["scores"] - base).max()), "parity_atol": FP16_ATOL,
            "auroc": {k: evaluation.auroc(r["scores"], y) for k, r in runs.items()},
            "batch_invariance_max_abs": {"fp16": batch_invariance(fp16.backend.run, ids[:128], bundle.pad_token_id, n_alone=128)["max_abs_diff"]},
            "throughput": {k: {m: round(r[m], 1) for m in ("prompts_per_s", "tokens_per_s")} for k, r in runs.items()},
        }
        out["speedup_fp16_vs_cpu_fp32"] = runs[f"{device}/fp16"]["prompts_per_s"] / runs["cpu/fp32"]["prompts_per_s"]
        out["ok"] = out["parity_max_abs"] <= FP16_ATOL
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="Guard bundle (default: the embedded default bundle, built if missing).")
    ap.add_argument("--n", type=int, default=512, help="guard-dev prompts to score.")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: run every step with the CPU standing in for CUDA.")
    ap.add_argument("--out", default="bench/results/gpu_check.json")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not detect_platform().has_cuda:
        print("SKIP gpu_check: onnxruntime sees no CUDA GPU on this machine (install reftguard[gpu] on a GPU machine); nothing checked")
        return 0
    if args.bundle:
        bundle_dir = Path(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        bundle_dir = ensure_default_bundle().root
    out = check(bundle_dir, args.n, args.device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    if not out["ok"]:
        print(f"FAIL gpu_check: fp16 parity {out['parity_max_abs']:.2e} > {out['parity_atol']:.0e}", file=sys.stderr)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
