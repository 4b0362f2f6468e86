"""The curator's view of a bundle, in one run: the review band and the harm categories.

Band: on the report half of the dev files the calibration never saw (guard-dev, handwritten-dev,
contrast-dev), user turns decided at the bundle's flag and review thresholds (and its flag gate, with its review
edge where it has one): recall of FLAG or REVIEW,
benign prompts sent to REVIEW or FLAG, hard negatives FLAGged; and the trade-off curve: for each review
recall target, the band's lower edge chosen on the calib half and its cost on the report half; and the flag
threshold's own curve: for each hard-negative FPR budget on the calib half (the calibration's per-kind
limit), what FLAG keeps on the report half (what it gives up goes to the band, not to ALLOW).
Categories: top-1 accuracy of the category head on every harmful dev prompt with a data category (the head
was fitted on training rows only), per class with n, against classes read by hand (the data's own category
strings often name a kind of harm, not a domain: research/category_labels.py); against the mapped data
categories beside it.

    python -m bench.curation [--bundle DIR] [--out bench/results/curation.json]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.calibration import review_band, score_prompts
from reftguard.category_fit import hand_category_labels, labelled_rows
from reftguard.data import CALIBRATION_FILES, load_labeled, packaged, select_split
from reftguard.default_bundle import RECIPE
from reftguard.role_fit import turn_states

CURVE = (0.90, 0.95, 0.97, 0.98, 0.99)
HARD_NEGATIVE_BUDGETS = (0.02, 0.01, 0.005)
GOALS = {"recall_flag_or_review": (">=", 0.98), "benign_review_or_flag": ("<=", 0.08), "hard_negative_flag": ("<=", 0.01),
         "category_top1": (">=", 0.80)}


def verdict_rates(s: np.ndarray, y: np.ndarray, kinds: list[str], flag: float, review: float, passes: np.ndarray, bands: np.ndarray) -> dict:
    """Verdict rates as `decide` gives them for one user turn: FLAG over the flag threshold and through the gate
    (`passes`), else REVIEW over the flag threshold (gated), or over the band's edge where the gate's review edge
    lets it in (`bands`)."""
    benign, harmful, hard = y == 0, y == 1, np.array([k == "hard_negative" for k in kinds])
    flagged, either = (s > flag) & passes, (s > flag) | ((s > min(flag, review)) & bands)
    return {"n_harmful": int(harmful.sum()), "n_benign": int(benign.sum()), "n_hard_negative": int(hard.sum()),
            "recall_flag": float(flagged[harmful].mean()), "recall_flag_or_review": float(either[harmful].mean()),
            "benign_flag": float(flagged[benign].mean()), "benign_review": float((either & ~flagged)[benign].mean()),
            "benign_review_or_flag": float(either[benign].mean()),
            "hard_negative_flag": float(flagged[hard].mean()) if hard.any() else None,
            "hard_negative_review_or_flag": float(either[hard].mean()) if hard.any() else None}


def gate_notes(bundle: GuardBundle, gate, prompts) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, whether it passes `gate` (the bundle's) and whether the gate lets it into the band (all do without one)."""
    if gate is None:
        return np.ones(len(prompts), dtype=bool), np.ones(len(prompts), dtype=bool)
    return gate.notes(turn_states(bundle, [p.text for p in prompts], output=gate.input))


def band(bundle: GuardBundle) -> dict:
    rows = load_labeled([str(packaged(f)) for f in CALIBRATION_FILES])
    halves = {h: select_split(rows, h) for h in ("calib", "report")}
    scores = {h: score_prompts(bundle, ps) for h, ps in halves.items()}
    y = {h: np.array([p.label for p in ps]) for h, ps in halves.items()}
    flag = bundle.threshold
    review = bundle.review_thresholds.get("user", flag)
    kinds = {h: [p.kind for p in ps] for h, ps in halves.items()}
    gate = bundle.flag_gate()
    notes = {h: gate_notes(bundle, gate, ps) for h, ps in halves.items()}
    gated_band = gate is not None and np.isfinite(gate.review_threshold)

    def on_report(flag_t: float, review_t: float) -> dict:
        return verdict_rates(scores["report"], y["report"], kinds["report"], flag_t, review_t, *notes["report"])

    curve = []
    for target in CURVE:  # what each recall target would cost: chosen on calib (as `calibrate` does), measured on report
        low = review_band(scores["calib"], y["calib"], flag, target, banded=notes["calib"][1] if gated_band else None)["threshold"]
        curve.append({"target_recall": target, "review_threshold": float(low)} | on_report(flag, low))
    flag_curve = []
    for budget in HARD_NEGATIVE_BUDGETS:  # the calibration's own rule, with a tighter hard-negative limit
        t, _ = evaluation.choose_threshold(scores["calib"], y["calib"], kinds["calib"], target_fpr=RECIPE["calibration"]["target_fpr"],
                                           kind_fpr={"hard_negative": budget})
        flag_curve.append({"hard_negative_budget": budget, "flag_threshold": float(t)} | on_report(t, min(review, t)))
    return {"flag_threshold": flag, "review_threshold": review, "review_gate": gate.review_threshold if gated_band else None,
            "report": on_report(flag, review), "curve": curve, "flag_curve": flag_curve}


def categories(bundle: GuardBundle) -> dict | None:
    """Top-1 of the head on every harmful dev row with a class, against the classes read by hand
    (category-hand-labels-dev.json); against the data's own categories mapped onto the taxonomy beside it."""
    head = bundle.category_head()
    if head is None:
        return None
    files = [str(packaged(f)) for f in ("guard-dev.jsonl", "handwritten-dev.jsonl")]
    rows = labelled_rows(files, hand_category_labels([str(packaged("category-hand-labels-dev.json"))]))
    guess = dict(zip((i for i, _, _ in rows), (g for g, _ in head.top(turn_states(bundle, [t for _, t, _ in rows], output=head.input)))))
    per: dict[str, Counter] = {}
    for i, _, truth in rows:
        per.setdefault(truth, Counter())["n"] += 1
        per[truth]["correct"] += guess[i] == truth
    confusion = Counter(f"{truth}->{guess[i]}" for i, _, truth in rows if guess[i] != truth)
    mapped = labelled_rows(files)
    return {"labels": "read by hand", "n": len(rows), "top1": sum(c["correct"] for c in per.values()) / len(rows),
            "per_class": {k: {"n": c["n"], "top1": c["correct"] / c["n"]} for k, c in sorted(per.items())},
            "top1_vs_data_categories": {"n": len(mapped), "top1": sum(guess[i] == c for i, _, c in mapped) / len(mapped)},
            "input": head.input, "fitted_on": bundle.manifest["categories"]["n"], "most_confused": dict(confusion.most_common(8))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="")
    ap.add_argument("--out", default="bench/results/curation.json")
    args = ap.parse_args(argv)
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        bundle = ensure_default_bundle()
    out = {"bundle_id": bundle.bundle_id, "band": band(bundle), "categories": categories(bundle)}
    r, c = out["band"]["report"], out["categories"]
    measured = {"recall_flag_or_review": r["recall_flag_or_review"], "benign_review_or_flag": r["benign_review_or_flag"],
                "hard_negative_flag": r["hard_negative_flag"], "category_top1": c["top1"] if c else None}
    out["goals"] = {k: {"op": op, "target": t, "value": measured[k],
                        "met": measured[k] is not None and (measured[k] >= t if op == ">=" else measured[k] <= t)} for k, (op, t) in GOALS.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for k, g in out["goals"].items():
        print(f"{k:24} {g['op']} {g['target']}: {g['value']}  {'met' if g['met'] else 'NOT met'}")
    for p in out["band"]["curve"]:
        print(f"review recall target {p['target_recall']:.2f}: recall {p['recall_flag_or_review']:.3f}, benign to review/flag {p['benign_review_or_flag']:.3f}")
    for p in out["band"]["flag_curve"]:
        print(f"hard-negative limit {p['hard_negative_budget']:g}: hard negatives flagged {p['hard_negative_flag']:.3f}, harmful flagged {p['recall_flag']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
