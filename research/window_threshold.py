"""Would windowed items need a threshold of their own? A measurement, nothing served uses it.

Every long-context loss of a candidate teacher flags none of the benign long prompts (docs/training.md): the
served threshold, calibrated on short prompts, may sit high for an item whose score is the max over windows
that carry hundreds of tokens of context. For each bundle this picks a windowed-item threshold on the
*calib*-half long set (a dev request after >= 2,000 tokens of benign dev context, `bench/long_context.py`)
at a benign flag-rate target, never above the served threshold (it may only lower the bar for long items),
and reports recall and benign flag rate on the *report*-half long set at the served threshold and at it.

    python -m research.window_threshold --bundle new=$(reftguard default-bundle --print-path) --bundle tU1=runs/bU1 \
        --out research/results/window_threshold.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.long_context import build_long_context
from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.scoring import BundleScorer


def window_threshold(scores: np.ndarray, harmful: np.ndarray, served: float, target_fpr: float) -> float:
    """The lowest threshold whose benign flag rate on these long items is <= target_fpr, capped at `served`."""
    return min(served, evaluation.threshold_for_fpr(scores, harmful.astype(int), target_fpr))


def figures(scores: np.ndarray, harmful: np.ndarray, threshold: float) -> dict:
    c = evaluation.confusion(scores, harmful.astype(int), threshold)  # strict, as everywhere
    return {"threshold": float(threshold), "recall": c["recall"], "benign_flag_rate": c["fpr"],
            "flagged_harmful": c["tp"], "flagged_benign": c["fp"]}


def long_scores(scorer: BundleScorer, tokenizer, n: int, min_tokens: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = build_long_context(n=n, min_tokens=min_tokens, seed=0, tokenizer=tokenizer, split=split)
    harmful = np.array([r["label"] == "harmful" for r in rows])
    return scorer.scores([r["text"] for r in rows]), harmful


def measure(bundle_dir: str, n: int, min_tokens: int, target_fpr: float) -> dict:
    from tokenizers import Tokenizer

    bundle = GuardBundle.load(bundle_dir)
    scorer, tokenizer = BundleScorer(bundle, max_windows=0), Tokenizer.from_file(str(bundle.tokenizer_path))  # once for both halves
    cal_s, cal_y = long_scores(scorer, tokenizer, n, min_tokens, "calib")
    rep_s, rep_y = long_scores(scorer, tokenizer, n, min_tokens, "report")
    thr = window_threshold(cal_s, cal_y, bundle.threshold, target_fpr)
    return {"bundle_id": bundle.bundle_id, "served_threshold": bundle.threshold, "window_threshold": thr,
            "calib": {"auroc": evaluation.auroc(cal_s, cal_y), "served": figures(cal_s, cal_y, bundle.threshold), "window": figures(cal_s, cal_y, thr)},
            "report": {"auroc": evaluation.auroc(rep_s, rep_y), "served": figures(rep_s, rep_y, bundle.threshold), "window": figures(rep_s, rep_y, thr)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=[], help="NAME=DIR, repeatable.")
    p.add_argument("--n", type=int, default=50, help="Harmful (and as many benign) long prompts per dev half.")
    p.add_argument("--min-tokens", type=int, default=2000)
    p.add_argument("--target-fpr", type=float, default=0.02, help="Benign flag-rate target on the calib-half long set.")
    p.add_argument("--out", default="research/results/window_threshold.json")
    ns = p.parse_args(argv)
    bundles = dict(b.split("=", 1) for b in ns.bundle)
    out = {"n": ns.n, "min_tokens": ns.min_tokens, "target_fpr": ns.target_fpr,
           "bundles": {name: measure(d, ns.n, ns.min_tokens, ns.target_fpr) for name, d in bundles.items()}}
    Path(ns.out).write_text(json.dumps(out, indent=1) + "\n")
    for name, r in out["bundles"].items():
        s, w = r["report"]["served"], r["report"]["window"]
        print(f"{name}: served {s['threshold']:.4f} -> recall {s['recall']:.2f} / benign {s['benign_flag_rate']:.2f}; "
              f"window {w['threshold']:.4f} -> recall {w['recall']:.2f} / benign {w['benign_flag_rate']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
