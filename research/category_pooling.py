"""Which layer and which token positions read a request's harm category best?

The category head reads the graph's `state`, the last-token state of layer l (16), which the teacher shaped to
separate harmful from benign, not one harm from another. A topic may sit in other layers or be spread over the
request's tokens. Candidates as in research/reply_pooling.py (one torch pass of the shipped teacher, the request
in the user-turn format): layer x {last token, mean over real tokens}, and the two concatenations a graph could
output beside the state; each a shrinkage-LDA head (same shrink grid) on the hand labels of
research/category_labels.py.

Rule, written before the numbers (reply_pooling's bar): 5-fold CV top-1 against the hand labels, as in
research/category_labels.py. A candidate other than (layer l, last token) is worth a graph output only if its
best CV top-1 beats (l, last)'s best by >= 0.05; dev (hand labels) is reported for both, read after the choice.

Result (research/results/category_pooling.json): worth a graph output. Best CV top-1 per readout: 8/mean 0.81,
10/mean 0.81, 4/mean 0.80, 16/last+mean 0.80, 12/mean 0.80, 16/mean 0.78, 16/last (served) 0.72; every last-token
readout <= 0.73. Dev: 16/last 0.70, 8/mean (shrink 0.3, the grid's edge) 0.82. Shipped as `topic_state`.

    OMP_NUM_THREADS=2 python -m research.category_pooling [--out research/results/category_pooling.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.category_fit import hand_category_labels
from reftguard.category_head import fit_lda_head
from reftguard.data import packaged
from reftguard.taxonomy import CATEGORIES
from research.category_head import SHRINK, top1
from research.category_labels import DEV, TRAIN, folds, table
from research.cli import parser
from research.reply_pooling import candidates, pooled_states, view
from research.role_features import load_shipped_teacher


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/category_pooling.json", "runs/cp", bundle=False).parse_args(argv)
    teacher, cache = load_shipped_teacher(), Path(args.cache)
    read = hand_category_labels([str(packaged("category-hand-labels-train.json"))])
    ids, texts, _, y = table(TRAIN, read)
    _, dtexts, _, yd = table(DEV, hand_category_labels([str(packaged("category-hand-labels-dev.json"))]))
    h, hd = pooled_states(teacher, texts, cache / "train.npy"), pooled_states(teacher, dtexts, cache / "dev.npy")
    fold = folds(ids)
    judged = np.array([i in read for i in ids])
    cv = {}
    for name in candidates():
        x = view(h, name)
        for a in SHRINK:
            cv[f"{name}/{a:g}"] = float(np.mean([top1(fit_lda_head(x[fold != k], y[fold != k], CATEGORIES, a), x[(fold == k) & judged], y[(fold == k) & judged])
                                                 for k in range(5)]))
            print(f"{name}/{a:g}: CV top-1 {cv[f'{name}/{a:g}']:.3f}", flush=True)
    served = max((k for k in cv if k.startswith(f"{teacher.layer}/last/")), key=cv.get)
    best = max(cv, key=cv.get)
    dev = {}
    for k in {served, best}:
        name, a = k.rsplit("/", 1)
        dev[k] = top1(fit_lda_head(view(h, name), y, CATEGORIES, float(a)), view(hd, name), yd)
    result = {"rule": __doc__.split("Rule, written before the numbers ")[1].split("\n\n")[0], "cv_top1": cv, "served": served, "best": best,
              "worth_a_graph_output": bool(cv[best] - cv[served] >= 0.05), "dev_top1": dev}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rule", "cv_top1")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
