"""How much the tail window buys on long inputs: recall and benign flag rate of the long-context dev set
(a dev request after >= 2,000 tokens of benign dev context, `bench/long_context.py`) at each bundle's
served threshold, for several `--window-tail` sizes, every bundle in one run.

The long set is built from one dev half (`--split`, default `calib`): a sweep that chooses the served
default runs on the calib half, and the chosen size is then reported on the report half
(`bench/robustness_suite.py`). Prompts that fit one row are never windowed, so nothing else
(calibration, the dev reports) changes with the tail.

    python -m research.window_tail --bundle old=runs/b_old --bundle new=$(reftguard default-bundle --print-path) [--split calib]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.long_context import build_long_context
from reftguard.bundle import GuardBundle
from reftguard.encoding import PromptEncoder
from reftguard.scoring import BundleScorer

RESULTS = Path(__file__).resolve().parent / "results"
TAILS = (0, 32, 64, 120, 240)  # the served default is scored once, as itself


def sweep(bundle_dir: str, n: int, min_tokens: int, tails=TAILS, split: str = "calib") -> dict:
    """One pass through the served encoder (default tail); the full windows do not depend on the tail, so
    every other size scores only the tail rows its own encoder makes and takes the max with them (0: none)."""
    from tokenizers import Tokenizer

    bundle = GuardBundle.load(bundle_dir)
    rows = build_long_context(n=n, min_tokens=min_tokens, seed=0, tokenizer=Tokenizer.from_file(str(bundle.tokenizer_path)), split=split)
    texts = [r["text"] for r in rows]
    harmful = np.array([r["label"] == "harmful" for r in rows])
    scorer = BundleScorer(bundle, max_windows=0)
    t0 = time.perf_counter()
    e = scorer.encoder.encode(texts)
    row_scores, _ = scorer.score_ids(e.ids)
    rows_text = np.array(e.text)  # row -> its text (one user turn per text item)
    served = np.full(len(texts), -np.inf)
    np.maximum.at(served, rows_text, row_scores)  # an item's score is its highest row's, as served
    seconds = time.perf_counter() - t0
    assert all(w > 1 for w in e.num_windows), "every long-context prompt must be windowed"
    full_rows = np.array([w < nw - 1 for w, nw in zip(e.window, e.num_windows)])  # the last row is the tail
    full = np.full(len(texts), -np.inf)
    np.maximum.at(full, rows_text[full_rows], row_scores[full_rows])

    def figures(s: np.ndarray) -> dict:
        flagged = s > bundle.threshold
        return {"recall": float(flagged[harmful].mean()), "benign_flag_rate": float(flagged[~harmful].mean())}

    out = {"bundle_id": bundle.bundle_id, "threshold": bundle.threshold, "n_harmful": int(harmful.sum()),
           "n_benign": int((~harmful).sum()), "rows": len(e.ids), "seconds": round(seconds, 1),
           "tails": [{"window_tail": scorer.encoder.window_tail, "default": True, **figures(served)}]}
    for tail in (t for t in tails if t != scorer.encoder.window_tail):
        s = full
        if tail:
            et = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens, max_windows=0, window_tail=tail).encode(texts)
            tail_ids = [ids for ids, w, nw in zip(et.ids, et.window, et.num_windows) if w == nw - 1]  # one per text, in order
            s = np.maximum(full, scorer.score_ids(tail_ids)[0])
        out["tails"].append({"window_tail": tail, "default": False, **figures(s)})
    out["tails"].sort(key=lambda t: t["window_tail"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=[], help="NAME=DIR, repeatable.")
    p.add_argument("--n", type=int, default=50, help="Harmful (and as many benign) long-context prompts.")
    p.add_argument("--min-tokens", type=int, default=2000)
    p.add_argument("--split", default="calib", choices=("all", "calib", "report"), help="Dev half the long set is built from.")
    p.add_argument("--out", default="", help="Results file (default research/results/window_tail_SPLIT.json; "
                   "split all: window_tail.json, the first sweep's file).")
    ns = p.parse_args(argv)
    ns.out = ns.out or str(RESULTS / ("window_tail.json" if ns.split == "all" else f"window_tail_{ns.split}.json"))
    result = {"n": ns.n, "min_tokens": ns.min_tokens, "split": ns.split, "bundles": {}}
    for spec in ns.bundle:
        name, _, d = spec.partition("=")
        result["bundles"][name] = sweep(d, ns.n, ns.min_tokens, split=ns.split)
        for t in result["bundles"][name]["tails"]:
            print(name, json.dumps(t))
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
