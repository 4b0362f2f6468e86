"""Does a whitened direction read user turns better than R_l, as it did replies (research/reply_probe.py)?

The user-turn score is cos(h_l - c_l, R_l), R_l the teacher's class-mean difference. For replies the same
mean difference whitened by the shrunk within-class covariance (reftguard.features.shrinkage_feature) raised
AUROC 0.89 -> 0.95. Requests may gain too: the curation goals that stay unmet (hard negatives FLAGged, benign
prompts sent to the band) are ranking-limited.

Rule, written before any number was seen:
  * fit on the teacher's training files only (guard-train, guard-train-extra, contrast-train, persona-train);
    shrink S chosen by 5-fold CV there (folds by group): the best pooled out-of-fold AUROC of harmful against
    every benign row (hard negatives included);
  * adopt the whitened user feature iff, on the calib half of the calibration files, with thresholds chosen as
    the recipe chooses them (flag: FPR 2% with hard negatives <= 2%; review: recall 0.98):
      - benign rows sent to REVIEW or FLAG fall by >= 0.01 (absolute), and
      - hard negatives FLAGged do not rise, and
      - FLAG recall does not fall by more than 0.01;
  * the report half is only reported.

Result (research/results/user_probe.json): not adopted. Train CV AUROC 0.996 at shrink 1, but on the calib
half benign REVIEW-or-FLAG 7.5% -> 7.9%, AUROC 0.992 -> 0.989, hard negatives FLAGged unchanged (1.7%): unlike
replies, R_l (which the teacher was trained towards) is already the better direction for requests.

    OMP_NUM_THREADS=2 python -m research.user_probe [--bundle DIR] [--out research/results/user_probe.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.data import CALIBRATION_FILES, load_labeled, packaged, select_split
from reftguard.default_bundle import RECIPE
from reftguard.features import cosine_scores, shrinkage_feature
from research.cli import bundle_of, parser
from research.reply_probe import FOLDS, hash_fold
from research.role_features import cached

TRAIN = ("guard-train.jsonl", "guard-train-extra.jsonl", "contrast-train.jsonl", "persona-train.jsonl")
SHRINKS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def states(bundle, name: str, rows, cache: Path) -> np.ndarray:
    from reftguard.role_fit import turn_states

    p = cache / f"{bundle.bundle_id}-{name}.npy"
    if (hit := cached(p, len(rows))) is not None:
        return hit
    cache.mkdir(parents=True, exist_ok=True)
    np.save(p, turn_states(bundle, [r.text for r in rows]))
    return np.load(p)


def operating_point(s: np.ndarray, y: np.ndarray, kinds: list[str], flag: float | None = None, review: float | None = None) -> dict:
    """Rates at the recipe's thresholds, chosen on these rows unless given."""
    cal = RECIPE["calibration"]
    if flag is None:
        flag, _ = evaluation.choose_threshold(s, y, kinds, target_fpr=cal["target_fpr"], kind_fpr={"hard_negative": 0.02})
        review = min(evaluation.threshold_for_recall(s, y, cal["review_recall"]), flag)
    hard = np.array([k == "hard_negative" for k in kinds])
    return {"flag": float(flag), "review": float(review), "auroc": evaluation.auroc(s, y),
            "recall_flag": float((s[y == 1] > flag).mean()), "recall_flag_or_review": float((s[y == 1] > review).mean()),
            "benign_review_or_flag": float((s[y == 0] > review).mean()), "benign_flag": float((s[y == 0] > flag).mean()),
            "hard_negative_flag": float((s[hard] > flag).mean()), "n_hard_negative": int(hard.sum())}


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/user_probe.json", "runs/up").parse_args(argv)
    bundle = bundle_of(args)
    cache = Path(args.cache)
    train = load_labeled([str(packaged(f)) for f in TRAIN])
    h = states(bundle, "train", train, cache)
    y = np.array([p.label for p in train])
    fold = np.array([hash_fold(p.group or p.id) for p in train])
    cv = {}
    for shrink in SHRINKS:
        s = np.zeros(len(y))
        for k in range(FOLDS):
            r, c = shrinkage_feature(h[fold != k], y[fold != k], shrink)
            s[fold == k] = cosine_scores(h[fold == k], r, c)
        cv[shrink] = evaluation.auroc(s, y)
        print(f"CV shrink {shrink:g}: AUROC {cv[shrink]:.4f}", flush=True)
    best = max(SHRINKS, key=lambda k: (cv[k], k))
    r, c = shrinkage_feature(h, y, best)
    dev = load_labeled([str(packaged(f)) for f in CALIBRATION_FILES])
    hd = states(bundle, "dev", dev, cache)
    result = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before any number was seen:\n")[1].split("\n\n")[0],
              "cv_auroc": {f"{k:g}": v for k, v in cv.items()}, "chosen_shrink": best, "halves": {"calib": {}, "report": {}}}
    from reftguard.calibration import score_prompts

    scores = {"shipped": np.asarray(score_prompts(bundle, dev)), "whitened": cosine_scores(hd, r, c)}
    for name, s in scores.items():
        at = {}
        for half in ("calib", "report"):  # thresholds chosen on calib, applied to report
            ids = {p.id for p in select_split(dev, half)}
            m = np.array([p.id in ids for p in dev])
            yy, kinds = np.array([p.label for p in dev])[m], [p.kind for p, k in zip(dev, m) if k]
            at = operating_point(s[m], yy, kinds, at.get("flag"), at.get("review"))
            result["halves"][half][name] = at
    cal, sh = result["halves"]["calib"]["whitened"], result["halves"]["calib"]["shipped"]
    result["adopt"] = bool(sh["benign_review_or_flag"] - cal["benign_review_or_flag"] >= 0.01 and cal["hard_negative_flag"] <= sh["hard_negative_flag"]
                           and cal["recall_flag"] >= sh["recall_flag"] - 0.01)
    print(json.dumps(result["halves"], indent=1))
    print("adopt:", result["adopt"])
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
