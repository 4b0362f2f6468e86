"""Is the reply reading limited by the head or by the state? Nonlinear heads against the shipped direction.

The shipped reply feature is one whitened direction (shrinkage LDA, shrink 0.3) on the layer-16 last-token
state. Candidates on the same states and hand labels (roles-train replies; benign exchanges and refusals as
the benign side): an RBF SVM and a one-hidden-layer MLP (on 128 principal components), each over a small grid.

Rule, written before the numbers: the same 5-fold CV as research/reply_probe.py (pooled out-of-fold
hand-harmful recall at 2% FPR on benign exchanges). A nonlinear head is worth a new head type in the bundle
only if its best CV recall beats the shipped direction's by >= 0.05. Dev is not read.

    OMP_NUM_THREADS=2 python -m research.reply_heads --bundle DIR   (needs scikit-learn; research only)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.features import cosine_scores
from research.cli import bundle_of, parser
from research.reply_labels import hand, key, states
from research.reply_probe import fit, folds_of, pooled_cv, rows_of


def sklearn_head(make):
    def score(x, y, z):
        m = make()
        m.fit(x, y)
        return m.decision_function(z) if hasattr(m, "decision_function") else m.predict_proba(z)[:, 1]
    return score


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/reply_heads.json", "runs/rl").parse_args(argv)
    from sklearn.decomposition import PCA
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    bundle = bundle_of(args)
    tr = rows_of("roles-train", "assistant")
    h = states(bundle, "roles-train", "assistant", tr, Path(args.cache))
    harmful, _ = hand("reply-hand-labels-train.json")
    y = np.array([key(r) in harmful for r in tr], dtype=np.int64)
    fold = folds_of(tr)
    benign = np.array([r["kind"] == "benign_exchange" for r in tr])
    res = {"shipped lda 0.3": pooled_cv(h, y, y, fold, benign, lambda x, yy, z: cosine_scores(z, *fit("0.3", x, yy)))}
    for c in (0.3, 1.0, 3.0):
        res[f"svm rbf C={c:g}"] = pooled_cv(h, y, y, fold, benign, sklearn_head(
            lambda c=c: make_pipeline(StandardScaler(), SVC(C=c, gamma="scale", class_weight="balanced"))))
    for a in (0.01, 0.1, 1.0):
        res[f"mlp 64 alpha={a:g}"] = pooled_cv(h, y, y, fold, benign, sklearn_head(
            lambda a=a: make_pipeline(StandardScaler(), PCA(128, random_state=0), MLPClassifier((64,), alpha=a, max_iter=500, random_state=0))))
    best = max((k for k in res if not k.startswith("shipped")), key=lambda k: res[k]["recall_at_2pct"])
    out = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0],
           "cv": res, "best_nonlinear": best,
           "worth_a_head": bool(res[best]["recall_at_2pct"] - res["shipped lda 0.3"]["recall_at_2pct"] >= 0.05)}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
