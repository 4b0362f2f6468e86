"""Does the reply feature read replies written another way than the packaged model writes them?

Every harmful reply the assistant feature was fitted on (roles-train) is a generation of the packaged starting
model: one style, often evasive. Checks on sets we do not have use other generations and hand-written records.
written-records-dev.jsonl (scripts/build_written_replies.py) holds replies written by hand, in varied styles, to
dev prompts: harmful ones going along with the request without operational detail, helpful ones to benign
prompts and hard negatives. written-roles-train.jsonl holds the same kind of replies to training prompts, by
other writers.

Candidates, each a shrinkage-LDA assistant feature (shrink 0.3, midpoint, as shipped) on the default bundle's
states, its threshold 2% FPR on the calib half of roles-dev's benign exchanges (as `calibrate` sets it):
  model     roles-train, hand labels (the default's feature before this study)
  w1        + written-roles-train's first round (145 harmful, 160 benign)
  w1+w3     + its third round too (written after the second rule's result)

Rule, written before the numbers: adopt `w1` into the default's role-feature data iff on the calib half of
written-records-dev its harmful-reply recall rises >= 0.05, its benign written replies flagged rise <= 0.02,
and on the calib half of roles-dev hand-read harmful recall falls <= 0.02. The report halves are only reported.

First result (set w1; research/results/written_replies.json): not adopted by that rule. The `model` feature
reads written harmful replies well (recall 0.90 / 0.84, calib / report) but flags 15% / 23% of written *benign*
replies (its threshold keeps 2% of the packaged model's benign replies): a gap the rule did not look at. `w1`:
recall 0.92 / 1.00 (+0.03 on calib, under the 0.05), benign written replies flagged 9% / 15%, AUROC 0.93 -> 0.98 /
0.88 -> 0.97; roles-dev hand-read recall unchanged (0.84 / 0.88), evasive replies flagged 0.17 / 0.23 -> 0.17 / 0.27.

Second rule, written after that result and before set w2 existed (65 harmful and 65 benign dev prompts no w1 reply
answers, replies by new writers): adopt `w1` iff on w2 (both halves: it chooses nothing else) benign written
replies flagged fall by >= 0.03, written harmful replies' recall falls by <= 0.02, and on the calib half of
roles-dev hand-read harmful recall falls <= 0.02 and evasive replies flagged rise <= 0.02.

Second result (`w2`, 60 harmful / 65 benign): adopted. Benign written replies flagged 15.4% -> 7.7%, harmful written
replies recalled 0.83 -> 0.93, AUROC 0.91 -> 0.97; roles-dev calib unchanged (recall 0.84, evasive 0.17; report
evasive 0.23 -> 0.27). In the default: RECIPE["role_features"]["data"] gains written-roles-train.jsonl.

Third rule, written after that and before round w3 existed. A learning curve of the second result (w2 benign
flagged 15.4%, 14.4%, 11.3%, 9.2%, 7.7% with 0, 25, 50, 75, 100% of w1's training replies) was still falling, so a
third round added 150 harmful and 150 benign training replies and, by other writers, 60 + 60 dev replies (w3) to
prompts no earlier round uses. Adopt `w1+w3` over `w1` iff on w3 (both halves) benign written replies flagged
fall by >= 0.02, written harmful recall falls by <= 0.02, and on the calib half of roles-dev hand-read harmful
recall falls <= 0.02 and evasive replies flagged rise <= 0.02.

Third result (w3: 54 harmful / 60 benign): adopted. Benign written replies flagged 6.7% -> 1.7%, harmful recall 0.944
-> 0.944, AUROC 0.988 -> 0.997; roles-dev calib unchanged (0.84, evasive 0.17); report half: hand-read recall 0.88
-> 0.85, evasive 0.27 -> 0.23. written-roles-train.jsonl now holds both training rounds (284 harmful, 310 benign).

Shipped: research/results/written_replies_bundles.json (`--compare` the defaults before the written replies,
with w1, with w1+w3; each at its own thresholds); the figures are in docs/design.md and the closing notes.

    OMP_NUM_THREADS=2 python -m research.written_replies [--bundle DIR] [--out research/results/written_replies.json]
    OMP_NUM_THREADS=2 python -m research.written_replies --compare OLD_BUNDLE NEW_BUNDLE
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.data import packaged, split_of_key
from reftguard.features import cosine_scores, shrinkage_feature
from research.cli import bundle_of, parser
from research.reply_labels import hand, key, measure_scores, states
from research.reply_probe import rows_of

SHRINK = 0.3
HALVES = ("calib", "report")


def written_dev() -> list[dict]:
    """The assistant turn of every written dev record: {id, text, label, group, kind, style, set}."""
    rows = [json.loads(line) for line in packaged("written-records-dev.jsonl").read_text().splitlines() if line.strip()]
    return [{"id": r["id"], "text": r["messages"][-1]["content"], "label": r["label"], "group": r["group"], "kind": r["kind"],
             "style": r["style"], "set": r["set"]} for r in rows if r["kind"] != "harmful_exchange"]  # an exchange repeats its reply


def hand_labels(rows: list[dict]) -> np.ndarray:
    harmful, _ = hand("reply-hand-labels-train.json")
    return np.array([key(r) in harmful if r["kind"] == "innocent_harmful_reply" and r["source"] != "replies-written"
                     else r["label"] == "harmful" for r in rows], dtype=np.int64)


def on_written(rows: list[dict], s: np.ndarray, t: float) -> dict:
    out = {}
    y = np.array([r["label"] == "harmful" for r in rows])
    for half in HALVES + ("all",):
        m = np.array([half == "all" or split_of_key(r["group"]) == half for r in rows])
        out[half] = {"n_harmful": int((m & y).sum()), "n_benign": int((m & ~y).sum()),
                     "harmful_recall": float((s[m & y] > t).mean()), "benign_flagged": float((s[m & ~y] > t).mean()),
                     "auroc": evaluation.auroc(s[m], y[m].astype(int))}
    return out


def compare(paths: list[str], out: str) -> int:
    """Whole written records decided by each bundle's serving path (its own thresholds), per half: the default
    before and after the written replies joined its fit, side by side."""
    from reftguard.bundle import GuardBundle
    from reftguard.record_eval import evaluate_records, load_records
    from reftguard.scoring import BundleScorer

    result = {}
    for path in paths:
        b = GuardBundle.load(path)
        scorer = BundleScorer(b, max_windows=0)
        result[b.bundle_id] = {split: {k: {"n": v["n"], "flag_rate": v["flag_rate"], "review": v["review"]} for k, v in
                                       evaluate_records(scorer, load_records(packaged("written-records-dev.jsonl"), split))["by_kind"].items()}
                               for split in ("report", "all")}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def main(argv=None) -> int:
    ap = parser(__doc__, "research/results/written_replies.json", "runs/wr")
    ap.add_argument("--compare", nargs="+", default=[], help="bundles whose whole-record decisions on the written set to set side by side "
                    "(written to research/results/written_replies_bundles.json) instead of the feature study")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args.compare, "research/results/written_replies_bundles.json")
    bundle, cache = bundle_of(args), Path(args.cache)
    train = rows_of("roles-train", "assistant")
    rounds_of = {f"{w['id']}:written:assistant": w["set"] for w in map(json.loads, Path("scripts/data/replies-written.jsonl").read_text().splitlines())
                 if w["side"] == "train"}  # the writing round of each written training turn (its source row)
    extra = [r | {"set": rounds_of[r["id"]]} for r in rows_of("written-roles-train", "assistant")]
    dev = rows_of("roles-dev", "assistant")
    wdev = written_dev()
    h_tr, h_x, h_dev = (states(bundle, n, "assistant", r, cache) for n, r in (("roles-train", train), ("written-roles-train", extra), ("roles-dev", dev)))
    h_w = states(bundle, "written-records-dev", "assistant", wdev, cache)
    y_tr, y_x = hand_labels(train), hand_labels(extra)
    rounds = {"model": set(), "w1": {"w1"}, "w1+w3": {"w1", "w3"}}  # the written training rounds each candidate adds
    cands = {}
    for name, sets in rounds.items():
        m = np.array([r["set"] in sets for r in extra])
        if sets <= {r["set"] for r in extra}:  # a round not written yet: no candidate
            cands[name] = shrinkage_feature(np.vstack([h_tr, h_x[m]]), np.concatenate([y_tr, y_x[m]]), SHRINK)
    served = bundle.role_features()["assistant"]
    result = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0],
              "n_written_train": {ws: {"harmful": int(y_x[[r["set"] == ws for r in extra]].sum()),
                                       "benign": int((1 - y_x[[r["set"] == ws for r in extra]]).sum())} for ws in sorted({r["set"] for r in extra})},
              "served_is": next((k for k, (r, _) in cands.items() if np.allclose(r, served[0], atol=1e-4)), None), "candidates": {}}
    for name, (r, c) in cands.items():
        roles = measure_scores(dev, cosine_scores(h_dev, r, c))
        t = roles["calib"]["threshold"]
        s_w = cosine_scores(h_w, r, c)
        per_set = {}
        for ws in sorted({x["set"] for x in wdev}):
            idx = [i for i, x in enumerate(wdev) if x["set"] == ws]
            rows = [wdev[i] for i in idx]
            by_style = {st: float((s_w[[i for i in idx if wdev[i]["style"] == st and wdev[i]["label"] == "harmful"]] > t).mean())
                        for st in sorted({x["style"] for x in rows if x["label"] == "harmful"})}
            per_set[ws] = on_written(rows, s_w[idx], t) | {"harmful_recall_by_style": by_style}
        result["candidates"][name] = {"roles_dev": roles, "written_dev": per_set}

    def judged(base: str, cand: str, on: str, half: str, recall_gain: float, benign_drop: float) -> bool:
        a, b = result["candidates"][base], result["candidates"][cand]
        wa, wb = a["written_dev"][on][half], b["written_dev"][on][half]
        ra, rb = a["roles_dev"]["calib"], b["roles_dev"]["calib"]
        return bool(wb["harmful_recall"] - wa["harmful_recall"] >= recall_gain and wa["benign_flagged"] - wb["benign_flagged"] >= benign_drop
                    and ra["hand_harmful_recall"] - rb["hand_harmful_recall"] <= 0.02)

    evasive_ok = lambda a, b: result["candidates"][b]["roles_dev"]["calib"]["evasive_flag_rate"] - result["candidates"][a]["roles_dev"]["calib"]["evasive_flag_rate"] <= 0.02  # noqa: E731
    result["adopt_first_rule"] = judged("model", "w1", "w1", "calib", 0.05, -0.02)
    if "w2" in result["candidates"]["model"]["written_dev"]:
        result["adopt_second_rule"] = judged("model", "w1", "w2", "all", -0.02, 0.03) and evasive_ok("model", "w1")
    if "w1+w3" in cands and "w3" in result["candidates"]["model"]["written_dev"]:
        result["adopt_third_rule"] = judged("w1", "w1+w3", "w3", "all", -0.02, 0.02) and evasive_ok("w1", "w1+w3")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rule"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
