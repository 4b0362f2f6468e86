"""Which layer and which token positions read a reply best?

The served reply reading takes the last-token state of the guard's layer l (16), the state the teacher was
trained to shape for requests. A reply's harm is spread over its tokens, and another layer may carry it
better. Candidates, from one torch pass of the shipped teacher over the reply text in the user-turn format
(as served): layer in LAYERS x pooling in {last token, mean over real tokens} x shrink in GRID, each a
shrinkage-LDA direction (reftguard.features.shrinkage_feature) on hand-labelled roles-train replies; and two
concatenations a graph could output beside the state: layer 16 last + mean, layer 16 last + layer 14 last.

Rule, written before the numbers: choose by the same 5-fold cross-validation on roles-train as
research/reply_probe.py (pooled out-of-fold hand-harmful recall at 2% FPR on benign exchanges). A candidate
other than (layer l, last token) is worth a graph output only if its CV recall beats (l, last)'s best by
>= 0.05; dev (both halves, at the threshold 2% FPR on the calib half's benign exchanges) is then reported for
both, and read only after the choice.

    OMP_NUM_THREADS=1 python -m research.reply_pooling [--out research/results/reply_pooling.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.features import cosine_scores
from research.cli import parser
from research.reply_labels import hand, key, measure_scores
from research.reply_probe import GRID, cv_recall, fit, rows_of
from research.role_features import cached, decoder_batches, load_shipped_teacher

LAYERS = (4, 8, 10, 12, 14, 16)
POOLS = ("last", "mean")


def pooled_states(teacher, texts: list[str], cache: Path) -> np.ndarray:
    """[n, len(LAYERS), 2, hidden]: last-token and mean states at each layer of LAYERS."""
    if (hit := cached(cache, len(texts))) is not None:
        return hit
    from reftguard.modeling.guard import gather_last

    out = None
    for rows, states, mm, hidden in decoder_batches(teacher, texts, max(LAYERS)):
        out = np.zeros((len(texts), len(LAYERS), 2, hidden), dtype=np.float32) if out is None else out
        w = mm.unsqueeze(-1).float()
        for j, layer in enumerate(LAYERS):
            h = states[layer - 1].float()
            out[rows, j, 0] = gather_last(h, mm).numpy()
            out[rows, j, 1] = ((h * w).sum(1) / w.sum(1)).numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


CONCATS = {"16/last+mean": ((16, "last"), (16, "mean")), "16/last+14/last": ((16, "last"), (14, "last"))}


def candidates() -> list[str]:
    return [f"{layer}/{pool}" for layer in LAYERS for pool in POOLS] + list(CONCATS)


def view(h: np.ndarray, name: str) -> np.ndarray:
    """The states a reading `name` ("16/last", or a CONCATS key) takes from pooled_states' array."""
    parts = CONCATS.get(name) or ((int(name.split("/")[0]), name.split("/")[1]),)
    return np.concatenate([h[:, LAYERS.index(layer), POOLS.index(pool)] for layer, pool in parts], axis=1)


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/reply_pooling.json", "runs/rp", bundle=False).parse_args(argv)
    teacher = load_shipped_teacher()
    tr, dv = rows_of("roles-train", "assistant"), rows_of("roles-dev", "assistant")
    h_tr = pooled_states(teacher, [r["text"] for r in tr], Path(args.cache) / "roles-train.npy")
    h_dv = pooled_states(teacher, [r["text"] for r in dv], Path(args.cache) / "roles-dev.npy")
    harmful, _ = hand("reply-hand-labels-train.json")
    y = np.array([key(r) in harmful for r in tr], dtype=np.int64)
    cv = {}
    for name in candidates():
        for m in map(str, GRID):
            cv[f"{name}/{m}"] = cv_recall(tr, view(h_tr, name), y, y, m, "benign_exchange")
    served = max((k for k in cv if k.startswith(f"{teacher.layer}/last/")), key=cv.get)
    best = max(cv, key=cv.get)
    result = {"rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0], "cv_hand_recall_at_2pct": cv,
              "served_best": served, "best": best, "worth_an_output": bool(cv[best] - cv[served] >= 0.05), "dev": {}}
    for name in {served, best}:
        reading, m = name.rsplit("/", 1)
        r, c = fit(m, view(h_tr, reading), y)
        result["dev"][name] = measure_scores(dv, cosine_scores(view(h_dv, reading), r, c))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rule", "cv_hand_recall_at_2pct")}, indent=1))
    top = sorted(cv.items(), key=lambda kv: -kv[1])[:10]
    print("top CV:", top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
