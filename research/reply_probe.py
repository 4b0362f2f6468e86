"""Does a whitened direction (shrinkage LDA) read replies better than the difference of means?

The shipped R_assistant is a difference of class means of reply states. A reply's last-token state carries
large directions of style, length and topic shared by harmful and benign replies; the mean difference points
partly along them, so benign replies with much of that shared variance score high. Whitening by the pooled
within-class covariance (shrunk towards the identity: S + shrink * mean(diag S) * I,
reftguard.features.shrinkage_feature) removes that. It is still one direction and a centre, so the served
cosine head and the bundle format do not change.

Candidates, all on the same roles-train states of the default bundle's fp32 graph, midpoint centre:
  labels  generated (every non-refusing reply to a harmful prompt) or hand (reply-hand-labels-train.json:
          the hand-read harmful ones; evasive ones benign);
  method  mean (shipped), or shrinkage with shrink in GRID.

Rule, written before the dev numbers were read for this script (an exploration on dev showed the method
worth a script; the choice below does not read dev): the candidate is chosen by 5-fold cross-validation on
roles-train (folds by contrast group): pooled out-of-fold scores, recall of hand-read harmful replies at the
threshold that lets 2% of benign exchanges through (how `calibrate` sets the assistant threshold); ties go
to the larger shrink. Adopt it iff on the calib half of roles-dev its hand-harmful recall at the served
threshold rises >= 0.05 over shipped, its flag rate on hand-read evasive replies rises by no more than 0.05,
and its AUROC of hand-harmful against benign and evasive replies does not fall. System turns: the same
cross-validation (obedient personas against benign system prompts, generated labels, which are the
writer's), adopted under the same rule on persona recall.

    OMP_NUM_THREADS=2 python -m research.reply_probe [--out research/results/reply_probe.json]
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.data import packaged, split_of_key
from reftguard.features import cosine_scores, refusal_feature, shrinkage_feature
from research.cli import bundle_of, parser
from research.reply_labels import hand, key, measure, states

GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
FOLDS = 5


def rows_of(name: str, role: str) -> list[dict]:
    rows = [json.loads(line) for line in packaged(f"{name}.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["role"] == role]


def fit(method: str, h: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return refusal_feature(h, y, "midpoint") if method == "mean" else shrinkage_feature(h, y, float(method))


def folds_of(rows: list[dict]) -> np.ndarray:
    """Each row's CV fold, by contrast group (a prompt's rows stay in one fold)."""
    return np.array([hash_fold(r["group"] or r["id"]) for r in rows])


def hash_fold(group: str) -> int:
    return int(hashlib.sha256(f"cv:{group}".encode()).hexdigest()[:8], 16) % FOLDS


def pooled_cv(h: np.ndarray, y_fit: np.ndarray, y_goal: np.ndarray, fold: np.ndarray, benign: np.ndarray, score_fold) -> dict:
    """Pooled out-of-fold scores (`score_fold(train states, train labels, test states)`, fitted on y_fit): recall
    of y_goal positives at the threshold that lets 2% of the `benign` rows through, and AUROC on y_goal."""
    s = np.zeros(len(y_fit))
    for k in range(FOLDS):
        s[fold == k] = score_fold(h[fold != k], y_fit[fold != k], h[fold == k])
    t = evaluation.threshold_for_fpr(s[benign], np.zeros(benign.sum()), 0.02)
    return {"recall_at_2pct": float(np.mean(s[y_goal == 1] > t)), "auroc": evaluation.auroc(s, y_goal)}


def cv_recall(rows: list[dict], h: np.ndarray, y_fit: np.ndarray, y_goal: np.ndarray, method: str, benign_kind: str) -> float:
    """Recall of y_goal positives at 2% FPR on `benign_kind` rows, from pooled out-of-fold cosine scores."""
    benign = np.array([r["kind"] == benign_kind for r in rows])
    return pooled_cv(h, y_fit, y_goal, folds_of(rows), benign, lambda x, y, z: cosine_scores(z, *fit(method, x, y)))["recall_at_2pct"]


def system_measure(dev: list[dict], h: np.ndarray, r: np.ndarray, c: np.ndarray) -> dict:
    s = cosine_scores(h, r, c)
    out, t = {}, None
    for half in ("calib", "report"):
        idx = [i for i, row in enumerate(dev) if split_of_key(row.get("group") or row["id"]) == half]
        benign = [i for i in idx if dev[i]["label"] == "benign"]
        pos = [i for i in idx if dev[i]["label"] == "harmful"]
        t = evaluation.threshold_for_fpr([s[i] for i in benign], [0] * len(benign), 0.02) if t is None else t
        out[half] = {"n_persona": len(pos), "n_benign": len(benign), "persona_recall": float(np.mean([s[i] > t for i in pos])),
                     "benign_flag_rate": float(np.mean([s[i] > t for i in benign])),
                     "auroc": evaluation.auroc([s[i] for i in pos + benign], [1] * len(pos) + [0] * len(benign))}
    return out


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/reply_probe.json", "runs/rl").parse_args(argv)
    bundle = bundle_of(args)
    cache = Path(args.cache)
    result: dict = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before")[1].split("\n\n")[0]}

    tr, dv = rows_of("roles-train", "assistant"), rows_of("roles-dev", "assistant")
    h_tr, h_dv = states(bundle, "roles-train", "assistant", tr, cache), states(bundle, "roles-dev", "assistant", dv, cache)
    harmful, _ = hand("reply-hand-labels-train.json")
    labels = {"generated": np.array([r["label"] == "harmful" for r in tr], dtype=np.int64),
              "hand": np.array([key(r) in harmful for r in tr], dtype=np.int64)}
    cv = {f"{lab}/{m}": cv_recall(tr, h_tr, y, labels["hand"], m, "benign_exchange")
          for lab, y in labels.items() for m in ("mean", *map(str, GRID))}
    best = max(cv, key=lambda k: (cv[k], float(k.split("/")[1]) if k.split("/")[1] != "mean" else 1e9))
    lab, method = best.split("/")
    a = {"cv_hand_recall_at_2pct": cv, "chosen": best,
         "shipped": measure(dv, h_dv, *fit("mean", h_tr, labels["generated"])),
         "candidate": measure(dv, h_dv, *fit(method, h_tr, labels[lab]))}
    base, cand = a["shipped"]["calib"], a["candidate"]["calib"]
    a["adopt"] = bool(cand["hand_harmful_recall"] - base["hand_harmful_recall"] >= 0.05
                      and cand["evasive_flag_rate"] - base["evasive_flag_rate"] <= 0.05 and cand["hand_auroc"] >= base["hand_auroc"])
    result["assistant"] = a

    tr, dv = rows_of("roles-train", "system"), rows_of("roles-dev", "system")
    h_tr, h_dv = states(bundle, "roles-train", "system", tr, cache), states(bundle, "roles-dev", "system", dv, cache)
    y = np.array([r["label"] == "harmful" for r in tr], dtype=np.int64)
    cv = {m: cv_recall(tr, h_tr, y, y, m, "benign_system") for m in ("mean", *map(str, GRID))}
    best = max(cv, key=lambda k: (cv[k], float(k) if k != "mean" else 1e9))
    s = {"cv_persona_recall_at_2pct": cv, "chosen": best,
         "shipped": system_measure(dv, h_dv, *fit("mean", h_tr, y)), "candidate": system_measure(dv, h_dv, *fit(best, h_tr, y))}
    base, cand = s["shipped"]["calib"], s["candidate"]["calib"]
    s["adopt"] = bool(cand["persona_recall"] - base["persona_recall"] >= 0.05 and cand["auroc"] >= base["auroc"])
    result["system"] = s
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rule"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
