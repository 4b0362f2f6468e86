"""The exchange reading again, now with a fitted reply feature: does the state at the reply's last token, read
in the chat template after its request, carry more than the reply read alone?

research/reply_reading.py chose the content reading when both were scored against R_l (harmful-reply AUROC
0.89 content vs 0.76 exchange). Since then replies get a feature of their own, a whitened direction fitted on
hand-read labels (research/reply_probe.py), and the reply goal (recall 0.90) is still short (0.84/0.88).
Here each reading gets the same fit: shrinkage LDA over the same grid, 5-fold CV on roles-train by group,
hand labels; also both states side by side (one direction over the concatenation, what a graph with two
outputs could serve).

Rule, written before the numbers (the same bar as reply_pooling): a reading replaces the content reading iff its
best CV hand-read recall at 2% FPR on benign exchanges beats content's by >= 0.05; dev halves are only reported
(calib threshold at 2% FPR on calib benign exchanges, as served).

Result (research/results/reply_exchange.json): content stays. CV hand-read recall at 2% FPR: content 0.77,
exchange 0.30, both 0.70 (dev calib/report: content 0.84/0.88, exchange 0.42/0.52). Read after its request,
a reply's last state says little about the reply itself.

    OMP_NUM_THREADS=2 python -m research.reply_exchange [--bundle DIR] [--out research/results/reply_exchange.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.data import packaged
from reftguard.features import cosine_scores
from research.cli import bundle_of, parser
from research.reply_labels import hand, key, measure_scores, states
from research.reply_probe import GRID, fit, folds_of, pooled_cv, rows_of
from research.role_features import cached


def requests_of(name: str, rows: list[dict]) -> list[str]:
    """The user turn each reply answers, from the records file the role rows were cut from."""
    recs = {}
    for line in packaged(name.replace("roles-", "records-") + ".jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            recs[r["id"]] = r["messages"]
    return [next(m["content"] for m in reversed(recs[key(r)]) if m["role"] == "user") for r in rows]


def exchange_states(bundle, name: str, rows: list[dict], cache: Path) -> np.ndarray:
    from reftguard.encoding import length_sorted_batches
    from reftguard.engines.ort import OrtEngine
    from reftguard.scoring import BundleScorer
    from research.reply_reading import exchange_rows

    p = cache / f"{bundle.bundle_id}-{name}-exchange.npy"
    if (hit := cached(p, len(rows))) is not None:
        return hit
    ids = exchange_rows(BundleScorer(bundle, max_windows=0), list(zip(requests_of(name, rows), [r["text"] for r in rows])))
    engine, out = OrtEngine(bundle), np.zeros((len(ids), int(bundle.manifest["hidden_size"])), dtype=np.float32)
    for idx, input_ids, mask in length_sorted_batches(ids, 8, 8 * bundle.max_tokens, bundle.pad_token_id):
        out[idx] = engine.run(input_ids, mask)[2]
    cache.mkdir(parents=True, exist_ok=True)
    np.save(p, out)
    return out


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/reply_exchange.json", "runs/rl").parse_args(argv)
    bundle, cache = bundle_of(args), Path(args.cache)
    tr, dv = rows_of("roles-train", "assistant"), rows_of("roles-dev", "assistant")
    readings = {"content": (states(bundle, "roles-train", "assistant", tr, cache), states(bundle, "roles-dev", "assistant", dv, cache)),
                "exchange": (exchange_states(bundle, "roles-train", tr, cache), exchange_states(bundle, "roles-dev", dv, cache))}
    readings["content+exchange"] = tuple(np.concatenate([readings["content"][i], readings["exchange"][i]], axis=1) for i in (0, 1))
    harmful, _ = hand("reply-hand-labels-train.json")
    y = np.array([key(r) in harmful for r in tr], dtype=np.int64)
    benign, fold = np.array([r["kind"] == "benign_exchange" for r in tr]), folds_of(tr)
    result: dict = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before the numbers ")[1].split("\n\n")[0], "readings": {}}
    for name, (h_tr, h_dv) in readings.items():
        cv = {m: pooled_cv(h_tr, y, y, fold, benign, lambda a, b, z, m=m: cosine_scores(z, *fit(m, a, b))) for m in map(str, GRID)}
        best = max(cv, key=lambda m: (cv[m]["recall_at_2pct"], float(m)))
        result["readings"][name] = {"cv": cv, "chosen_shrink": best, "dev": measure_scores(dv, cosine_scores(h_dv, *fit(best, h_tr, y)))}
        print(name, best, cv[best], {h: {k: v for k, v in d.items() if k in ("hand_harmful_recall", "evasive_flag_rate", "hand_auroc")}
                                     for h, d in result["readings"][name]["dev"].items()}, flush=True)
    base = result["readings"]["content"]
    top = lambda r: r["cv"][r["chosen_shrink"]]["recall_at_2pct"]  # noqa: E731
    result["adopt"] = [n for n, r in result["readings"].items() if n != "content" and top(r) - top(base) >= 0.05]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("adopt:", result["adopt"] or "none (content stays)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
