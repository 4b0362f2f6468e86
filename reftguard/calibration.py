"""Calibrate a bundle's threshold on labeled data, and evaluate a bundle (ORT + numpy, no torch)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle, seal
from reftguard.config import option
from reftguard.data import LabeledPrompt, data_hash, load_labeled, select_split

log = logging.getLogger("reftguard.calibrate")


@dataclass
class CalibrateConfig:
    bundle: str = option("", "Guard bundle directory to calibrate in place (its bundle_id changes).")
    data: list = option([], "Labeled JSONL file(s) to calibrate on (dev data, never the training file).")
    target_recall: float = option(0.0, "Pick the highest threshold reaching this recall (the paper's recall-first policy).")
    target_fpr: float = option(0.0, "Pick the lowest threshold whose false-positive rate is at most this.")
    max_fpr: float = option(0.05, "After a recall target: warn when the FPR at the chosen threshold exceeds this.")
    max_fpr_kind: list = option([], "Per-kind FPR limits KIND=F (comma-separated, e.g. hard_negative=0.03): the threshold is raised until the benign prompts of each kind are flagged at most at that rate. They win over a recall target; the recall they leave is reported.")
    split: str = option("all", "Calibrate on one half of the data only: 'calib' (then report on 'report' with `reftguard eval --split report`), 'report', or 'all'.", choices=("all", "calib", "report"))


@dataclass
class EvalConfig:
    bundle: str = option("", "Guard bundle directory.")
    data: list = option([], "Labeled JSONL file(s) to evaluate on.")
    json: str = option("", "Write the full report (overall, by_source, by_kind) to this JSON file.")
    threshold: float = option(float("nan"), "Evaluate at this threshold instead of the bundle's.")
    split: str = option("all", "Evaluate one half of the data only: 'report' is the half a default calibration (split 'calib') never saw.", choices=("all", "calib", "report"))


def score_prompts(bundle: GuardBundle, prompts: list[LabeledPrompt], truncation: str = "window") -> np.ndarray:
    """Item scores as the server computes them under `truncation` (its default: window). No window
    cap: offline data is scored whole rather than refused."""
    from reftguard.scoring import BundleScorer  # lazy: onnxruntime + tokenizers only when scoring

    return BundleScorer(bundle, max_windows=0).scores([p.text for p in prompts], truncation)


def calibrate(cfg: CalibrateConfig) -> GuardBundle:
    if bool(cfg.target_recall) == bool(cfg.target_fpr):
        raise ValueError("give exactly one of --target-recall or --target-fpr")
    for name, v in (("target_recall", cfg.target_recall), ("target_fpr", cfg.target_fpr)):
        if v and not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {v}")
    kind_fpr = evaluation.parse_kind_limits(cfg.max_fpr_kind)
    bundle = GuardBundle.load(cfg.bundle)
    prompts = select_split(load_labeled(cfg.data), cfg.split)
    y = np.array([p.label for p in prompts])
    kinds = [p.kind for p in prompts]
    s = score_prompts(bundle, prompts)
    thr, bound_by = evaluation.choose_threshold(s, y, kinds, target_recall=cfg.target_recall, target_fpr=cfg.target_fpr, kind_fpr=kind_fpr)
    target = ({"recall": cfg.target_recall} if cfg.target_recall else {"fpr": cfg.target_fpr}) | ({"fpr_by_kind": kind_fpr} if kind_fpr else {})
    report = evaluation.evaluate(s, y, thr, {"source": [p.source for p in prompts], "kind": kinds})
    at = {k: v for k, v in report.items() if not k.startswith("by_")}
    if cfg.target_recall and bound_by.startswith("fpr[") and (at["recall"] or 0) < cfg.target_recall:
        log.warning("per-kind limit %s lowers recall to %.4f, under the %.3f target", bound_by, at["recall"] or 0, cfg.target_recall)
    if cfg.target_recall and (at["fpr"] or 0) > cfg.max_fpr:
        log.warning("recall target %.3f costs FPR %.4f, over the %.4f budget", cfg.target_recall, at["fpr"], cfg.max_fpr)
    manifest = dict(bundle.manifest)
    manifest["threshold"] = float(np.float32(thr))
    manifest["calibration"] = {
        "method": "target recall (recall-first)" if cfg.target_recall else "target FPR",
        "target": target,
        "data": [Path(d).name for d in cfg.data],
        "split": cfg.split,
        "set_by": bound_by,
        "data_hash": data_hash(prompts),
        "n": len(prompts),
        "at_threshold": at,
        "fpr_by_source": {k: v["fpr"] for k, v in report["by_source"].items()},
        "fpr_by_kind": {k: v["fpr"] for k, v in report["by_kind"].items() if v["n_benign"]},
    }
    from reftguard.exporter.card import render_card  # stdlib-only module despite its package

    seal(bundle.root, manifest, card=render_card)
    return GuardBundle.load(bundle.root)


def evaluate_bundle(cfg: EvalConfig) -> dict:
    bundle = GuardBundle.load(cfg.bundle)
    prompts = select_split(load_labeled(cfg.data), cfg.split)
    s = score_prompts(bundle, prompts)
    thr = bundle.threshold if np.isnan(cfg.threshold) else cfg.threshold
    report = evaluation.evaluate(
        s, [p.label for p in prompts], thr, {"source": [p.source for p in prompts], "kind": [p.kind for p in prompts]}
    )
    report["bundle_id"] = bundle.bundle_id
    report["split"] = cfg.split
    cal = bundle.manifest.get("calibration") or {}
    # In-sample figures are labelled: the same prompts chose the threshold being evaluated.
    report["in_sample"] = bool(np.isnan(cfg.threshold)) and cal.get("data_hash") == data_hash(prompts)
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict) -> str:
    cols = ("n", "auroc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "precision", "recall", "fpr", "f1")
    rows = [("overall", report)] + [(f"source={k}", v) for k, v in report.get("by_source", {}).items()]
    rows += [(f"kind={k}", v) for k, v in report.get("by_kind", {}).items()]

    def cell(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    width = max(len(r[0]) for r in rows)
    out = [f"{'slice':<{width}}  " + "  ".join(f"{c:>10.10}" for c in cols)]
    out += [f"{name:<{width}}  " + "  ".join(f"{cell(r.get(c)):>10}" for c in cols) for name, r in rows]
    out.append(f"threshold {report['threshold']:.4f}  bundle {report.get('bundle_id', '')}")
    return "\n".join(out)
