"""Could the operating point alone meet the goals the shipped guard misses? An oracle bound, nothing served uses it.

The thresholds here are chosen on the *report* halves themselves, the data the goals are read on, so each figure
is the best any single threshold could do for that goal, never a served or out-of-sample figure. If even the
oracle misses a goal, no calibration can meet it and only the representation (the teacher) can. Per bundle:

- contrast-dev: the fewest benign prompts flagged at any threshold that keeps harmful recall >= 0.90;
- handwritten-dev: the lowest threshold flagging <= 3% of hard negatives, and the recall left there on the
  harmful side of each dev file (guard-dev, the contrast harmful prompts, disguised requests).

    python -m research.operating_point --bundle new=$(reftguard default-bundle --print-path) \
        --out research/results/operating_point.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.calibration import score_prompts
from reftguard.data import load_labeled, packaged, select_split

DEV = ("guard-dev.jsonl", "handwritten-dev.jsonl", "contrast-dev.jsonl")


def flagged(scores: np.ndarray, mask: np.ndarray, threshold: float) -> dict:
    """How many of the masked prompts score strictly above the threshold, as everywhere."""
    k, n = int((scores[mask] > threshold).sum()), int(mask.sum())
    return {"flagged": k, "n": n, "rate": k / n if n else None}


def oracle(files: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], served: float, min_recall: float, max_hn_rate: float) -> dict:
    """files: name -> (scores, labels 1/0, kinds) of its report half. Every figure at the served threshold and at
    the two oracle thresholds."""
    cs, cy, _ = files["contrast-dev.jsonl"]
    hs, hy, hk = files["handwritten-dev.jsonl"]
    hn = (hk == "hard_negative") & (hy == 0)
    thresholds = {"served": served,
                  "contrast_recall": evaluation.threshold_for_recall(cs, cy, min_recall),
                  "hard_negative_rate": evaluation.threshold_for_fpr(hs[hn], np.zeros(int(hn.sum()), dtype=np.int64), max_hn_rate)}
    gs, gy, _ = files["guard-dev.jsonl"]
    out = {}
    for name, t in thresholds.items():
        out[name] = {"threshold": float(t),
                     "contrast_benign": flagged(cs, cy == 0, t), "contrast_harmful": flagged(cs, cy == 1, t),
                     "hard_negative": flagged(hs, hn, t), "disguised": flagged(hs, (hk == "disguised") & (hy == 1), t),
                     "guard_dev_harmful": flagged(gs, gy == 1, t), "guard_dev_benign": flagged(gs, gy == 0, t)}
    return out


def report_half(bundle: GuardBundle) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    per_file = {f: select_split(load_labeled(packaged(f)), "report") for f in DEV}
    scores = score_prompts(bundle, [p for ps in per_file.values() for p in ps])  # one pass, as the served scorer
    out, start = {}, 0
    for f, ps in per_file.items():
        out[f] = (scores[start:start + len(ps)], np.array([p.label for p in ps]), np.array([p.kind for p in ps], dtype=object))
        start += len(ps)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=[], help="NAME=DIR, repeatable.")
    p.add_argument("--min-recall", type=float, default=0.90, help="Contrast-dev harmful recall the oracle must keep.")
    p.add_argument("--max-hard-negative-rate", type=float, default=0.03)
    p.add_argument("--out", default="research/results/operating_point.json")
    ns = p.parse_args(argv)
    res = {}
    for name, d in (b.split("=", 1) for b in ns.bundle):
        bundle = GuardBundle.load(d)
        res[name] = {"bundle_id": bundle.bundle_id, **oracle(report_half(bundle), bundle.threshold, ns.min_recall, ns.max_hard_negative_rate)}
    Path(ns.out).write_text(json.dumps({"split": "report", "min_recall": ns.min_recall,
                                        "max_hard_negative_rate": ns.max_hard_negative_rate, "bundles": res}, indent=1) + "\n")
    for name, r in res.items():
        for at in ("served", "contrast_recall", "hard_negative_rate"):
            f = r[at]
            print(f"{name} {at:>18} {f['threshold']:+.4f}: contrast benign {f['contrast_benign']['flagged']}/{f['contrast_benign']['n']}"
                  f" recall {f['contrast_harmful']['rate']:.3f}; hard neg {f['hard_negative']['flagged']}/{f['hard_negative']['n']};"
                  f" guard-dev recall {f['guard_dev_harmful']['rate']:.3f}; disguised {f['disguised']['flagged']}/{f['disguised']['n']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
