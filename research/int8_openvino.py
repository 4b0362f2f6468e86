"""Does int8 pay on this CPU (#36 item 2)? Post-training quantization of the guard graph with NNCF for
OpenVINO (int8 weights and activations, VNNI), the cosine head kept in fp32, against fp32 and bf16.

Rule, written before any int8 number (the issue's): int8 is worth shipping (an `int8` precision that
`--precision auto` may pick) iff, in one run on this machine,
  (a) its AUROC on guard-dev is within 0.002 of fp32's,
  (b) batch invariance is 0 (a row's score does not depend on its batch), and
  (c) it is faster than bf16 on the same prompts (prompts/s, best batch size of each).
Calibration rows come from guard-train + guard-train-extra only (dev is for the figures).

    OMP_NUM_THREADS=2 python -m research.int8_openvino [--bundle DIR] [--n-calib 300] [--smooth-quant]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from reftguard import bundle_io, evaluation
from reftguard.bundle import GuardBundle
from reftguard.data import load_labeled, packaged
from reftguard.engines.openvino import OpenVinoEngine, import_openvino
from reftguard.scoring import BundleScorer

log = logging.getLogger("research.int8")


def quantize(bundle: GuardBundle, texts: list[str], smooth_quant: bool):
    """The bundle's graph as an OpenVINO model with int8 MatMuls (the head's excepted): the exporter's own
    quantizer, with SmoothQuant at its alpha or off (-1)."""
    from reftguard.exporter.int8 import SMOOTH_QUANT_ALPHA, quantize_graph

    return quantize_graph(bundle, texts, SMOOTH_QUANT_ALPHA if smooth_quant else -1)


def int8_engine(bundle: GuardBundle, model, threads: int, hint: str) -> OpenVinoEngine:
    """An OpenVinoEngine running `model` (the quantized graph) instead of the bundle's, non-int8 ops in `hint`."""
    ov = import_openvino()
    e = OpenVinoEngine(bundle, threads, "bf16" if hint == "bf16" else "fp32")
    e.compiled = ov.Core().compile_model(model, "CPU", e.config)
    e._outputs = [e.compiled.output(name) for name in bundle_io.output_names(n for o in e.compiled.outputs for n in o.get_names())]
    e.precision, e.label = "int8", f"openvino/int8+{hint}"
    e._local = type(e._local)()
    return e


def rate(scorer: BundleScorer, ids, sizes=(8, 16, 32)) -> dict:
    scorer.score_ids(ids[:16])
    best = {}
    for bs in sizes:
        scorer.max_batch, scorer.max_batch_tokens = bs, 1 << 30
        t = time.perf_counter()
        scorer.score_ids(ids)
        r = len(ids) / (time.perf_counter() - t)
        if r > best.get("prompts_per_s", 0):
            best = {"batch_size": bs, "prompts_per_s": r}
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="")
    ap.add_argument("--n-calib", type=int, default=300)
    ap.add_argument("--smooth-quant", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-speed", action="store_true", help="Skip the timing (e.g. while another job shares the cores).")
    ap.add_argument("--out", default="research/results/int8_openvino.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        bundle = ensure_default_bundle()
    train = load_labeled([packaged("guard-train.jsonl"), packaged("guard-train-extra.jsonl")])
    rng = np.random.default_rng(0)
    calib = [train[i].text for i in rng.choice(len(train), args.n_calib, replace=False)]
    t = time.perf_counter()
    q = quantize(bundle, calib, args.smooth_quant)
    quant_s = time.perf_counter() - t
    dev = load_labeled(packaged("guard-dev.jsonl"))
    y = np.array([p.label for p in dev])
    engines = {"fp32": OpenVinoEngine(bundle, args.threads, "fp32"), "bf16": OpenVinoEngine(bundle, args.threads, "bf16"),
               "int8+bf16": int8_engine(bundle, q, args.threads, "bf16")}
    out = {"bundle_id": bundle.bundle_id, "n_calib": args.n_calib, "smooth_quant": args.smooth_quant, "quantize_s": quant_s, "engines": {}}
    ids = None
    for name, e in engines.items():
        s = BundleScorer(bundle, backend=e, max_windows=0)
        ids = ids or s.encoder.encode([p.text for p in dev], "right").ids
        s.max_batch = 32
        batched, _ = s.score_ids(ids)
        s.max_batch = 1
        alone, _ = s.score_ids(ids[:96])
        row = {"auroc": evaluation.auroc(batched, y), "batch_invariance_max_abs": float(np.abs(alone - batched[:96]).max()),
               "scores": batched}
        if not args.no_speed:
            row |= rate(s, ids)
        out["engines"][name] = row
        log.info("%s: %s", name, {k: v for k, v in row.items() if k != "scores"})
    ref = out["engines"]["fp32"]["scores"]
    for row in out["engines"].values():
        row["max_abs_vs_fp32"] = float(np.abs(row.pop("scores") - ref).max())
    fp32 = out["engines"]["fp32"]
    i8, b16 = out["engines"]["int8+bf16"], out["engines"]["bf16"]
    out["rule"] = {"auroc_within_0.002": abs(i8["auroc"] - fp32["auroc"]) <= 0.002, "batch_invariant": i8["batch_invariance_max_abs"] == 0.0,
                   "faster_than_bf16": (i8["prompts_per_s"] > b16["prompts_per_s"]) if not args.no_speed else None}
    out["rule"]["ship"] = all(v is True for v in out["rule"].values())
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
