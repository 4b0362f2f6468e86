"""The int8 graph for CPU serving: `model.int8.xml` (+ `.bin`), the guard graph quantized by NNCF for OpenVINO.

Why: on CPUs with VNNI and no AMX, bf16 already runs at ~90% of the machine's bf16 GEMM rate; int8 GEMMs
run ~2x faster there (bench/cpu_limit.py). Measured on the default bundle (research/int8_openvino.py):
without SmoothQuant int8 lost 0.015 guard-dev AUROC (activation outliers); with it (alpha 0.95) it keeps
AUROC within 0.001 of fp32 and is ~1.7x bf16 in prompts/s, batch invariance 0.

What stays fp32: the cosine head (every `/head/` node: centre, dot product, norms), as docs/design.md §2
requires. Post-training quantization: activation scales are fixed from calibration prompts of the
training files (never dev), so a row is quantized the same way whatever its batch. The int8 graph
scores differently from fp32, so it gets its own calibration (`reftguard calibrate --precision int8`).

The graph's record (manifest['int8']) holds what `--precision auto` decides on (engines/selection.py
`int8_pays`): guard-dev AUROC of int8 and fp32, batch invariance, and the measured speed of int8 against
the precision auto would otherwise serve on this CPU, with the CPU's model name. A bundle built on one
CPU model and served on another is not auto-served in int8 (an explicit `--precision int8` still is).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from reftguard import bundle_io, evaluation
from reftguard.bundle import GuardBundle, seal
from reftguard.data import load_labeled, packaged, spread
from reftguard.encoding import length_sorted_batches
from reftguard.engines.selection import INT8_MODEL, detect_platform

log = logging.getLogger("reftguard.export")
INT8_WEIGHTS = INT8_MODEL.replace(".xml", ".bin")
CALIBRATION_FILES = ("guard-train.jsonl", "guard-train-extra.jsonl")
SMOOTH_QUANT_ALPHA = 0.95


def quantize_graph(bundle: GuardBundle, texts: list[str], alpha: float = SMOOTH_QUANT_ALPHA):
    """The bundle's graph as an OpenVINO model with int8 MatMuls, the head's excepted."""
    import nncf

    from reftguard.engines.openvino import import_openvino
    from reftguard.scoring import BundleScorer

    ov = import_openvino()
    ids = BundleScorer(bundle).encoder.encode(texts, "right").ids
    feeds = [bundle_io.feeds(i, m) for _, i, m in length_sorted_batches(ids, 8, 8 * bundle.max_tokens, bundle.pad_token_id)]
    smooth = nncf.AdvancedSmoothQuantParameters(matmul=alpha)
    return nncf.quantize(ov.Core().read_model(str(bundle.model_path)), nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(patterns=["/head/.*"]),
                         advanced_parameters=nncf.AdvancedQuantizationParameters(smooth_quant_alphas=smooth))


def _rate(scorer, ids: list[list[int]]) -> float:
    scorer.score_ids(ids[:16])  # warm up
    t = time.perf_counter()
    scorer.score_ids(ids)
    return len(ids) / (time.perf_counter() - t)


def measure(bundle: GuardBundle, n_dev: int, n_speed: int) -> dict:
    """guard-dev AUROC of fp32 (onnxruntime) and int8 (and roles-dev AUROC per role the bundle reads with a
    feature of its own), int8's batch invariance, and prompts/s of int8 against
    what auto would serve on this CPU otherwise (OpenVINO bf16 where the CPU has bf16 units, else onnxruntime fp32)."""
    from reftguard.calibration import score_prompts
    from reftguard.engines import make_engine
    from reftguard.engines.checks import batch_invariance
    from reftguard.scoring import BundleScorer

    platform = detect_platform()
    baseline = "bf16" if platform.cpu_bf16 else "fp32"
    engine = {"fp32": make_engine(bundle, engine="ort", precision="fp32"),
              "int8": make_engine(bundle, precision="int8", allow_uncalibrated_precision=True)}
    if baseline == "bf16":
        engine["bf16"] = make_engine(bundle, precision="bf16", allow_uncalibrated_precision=True)
    scorer = {k: BundleScorer(bundle, backend=e, max_windows=0, max_batch=32) for k, e in engine.items()}
    dev = spread(load_labeled(packaged("guard-dev.jsonl")), n_dev)
    y = np.array([p.label for p in dev])
    ids = scorer["fp32"].encoder.encode([p.text for p in dev], "right").ids
    scores = {k: scorer[k].score_ids(ids)[0] for k in ("fp32", "int8")}
    rate = {k: _rate(scorer[k], ids[:n_speed]) for k in ("int8", baseline)}
    # Replies and system prompts are read through the same states with features fitted on fp32 ones: int8 must
    # keep those rankings too (on the default bundle it did not: replies 0.938 -> 0.907).
    by_role = {}
    roles = load_labeled(packaged("roles-dev.jsonl"))
    for role in (bundle.manifest.get("role_features") or {}).get("roles", []):
        mine = [p for p in roles if p.role == role]
        yr = np.array([p.label for p in mine])
        by_role[role] = {k: evaluation.auroc(score_prompts(bundle, mine, engine=engine[k]), yr) for k in ("fp32", "int8")}
    return {
        "auroc": {k: evaluation.auroc(scores[k], y) for k in ("fp32", "int8")}, "n_dev": len(ids), "auroc_by_role": by_role,
        "max_abs_diff_vs_fp32": float(np.abs(scores["int8"] - scores["fp32"]).max()),
        "batch_invariance_max_abs": batch_invariance(engine["int8"].run, ids[:64], bundle.pad_token_id, n_alone=64)["max_abs_diff"],
        "speed": {"cpu_model": platform.cpu_model, "baseline": baseline, "threads": engine["int8"].threads,
                  "prompts": min(n_speed, len(ids)), f"{baseline}_prompts_per_s": round(rate[baseline], 1),
                  "int8_prompts_per_s": round(rate["int8"], 1), "int8_speedup": round(rate["int8"] / rate[baseline], 3)},
    }


def add_int8_graph(bundle_dir: str | Path, n_calib: int = 300, seed: int = 0, n_dev: int = 100_000, n_speed: int = 256) -> GuardBundle:
    """Add (or replace) the bundle's int8 graph, measure it (`measure`), record that under manifest['int8']
    and re-seal. Any earlier int8 calibration is dropped: it was for another graph."""
    import nncf

    from reftguard.card import render_card
    from reftguard.engines.openvino import import_openvino

    bundle = GuardBundle.load(bundle_dir)
    root = bundle.root
    rows = load_labeled([packaged(f) for f in CALIBRATION_FILES])
    pick = np.random.default_rng(seed).choice(len(rows), min(n_calib, len(rows)), replace=False)
    t0 = time.perf_counter()
    model = quantize_graph(bundle, [rows[i].text for i in sorted(pick)])
    import_openvino().save_model(model, str(root / INT8_MODEL), compress_to_fp16=False)
    manifest = dict(bundle.manifest)
    manifest.pop("int8", None)
    manifest["precisions"] = {p: e for p, e in (manifest.get("precisions") or {}).items() if p != "int8"}
    seal(root, manifest)  # hash the new files so the bundle loads
    record = {"file": INT8_MODEL, "weights": INT8_WEIGHTS, "quantizer": f"nncf {nncf.__version__}, OpenVINO, ModelType.TRANSFORMER",
              "smooth_quant_alpha": SMOOTH_QUANT_ALPHA, "head": "float32 (every /head/ node)",
              "calibration_rows": {"files": list(CALIBRATION_FILES), "n": len(pick), "seed": seed},
              "quantize_s": round(time.perf_counter() - t0, 1)} | measure(GuardBundle.load(root), n_dev, n_speed)
    manifest["int8"] = record
    seal(root, manifest, card=render_card)
    log.info("int8 graph added to %s: guard-dev AUROC %.4f (fp32 %.4f), %.2fx %s", root, record["auroc"]["int8"], record["auroc"]["fp32"],
             record["speed"]["int8_speedup"], record["speed"]["baseline"])
    return GuardBundle.load(root)
