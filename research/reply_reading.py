"""How should the guard read an assistant reply? Two readings, measured on dev records, one chosen.

  content   the reply's text wrapped as a user turn (the prompt format the refusal feature was fitted
            on): the guard asks "is this text a harmful request?" of the reply;
  exchange  the exchange in the chat template, user turn then the reply as the assistant turn, with
            the state at the reply's last token: the guard reads the reply in its context.

Rule, written before the numbers: pick the reading with the higher mean, over the two questions below,
of AUROC on the *calib* half of records-dev; report both on the report half.
  Q1 harmful reply: innocent_harmful_reply records (harmful) against benign_exchange records (benign);
  Q2 compliance vs refusal after a harmful request: compliance_prefix and harmful_exchange (harmful)
     against refusal_example (benign).
Under `content` Q2 is also answered without the score, by the refusal-phrase check (reftguard.refusal),
which is what the served decision uses; its accuracy is reported beside the AUROCs.

    python -m research.reply_reading --bundle $(reftguard default-bundle --print-path)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.data import packaged
from reftguard.evaluation import auroc
from reftguard.record_eval import load_records
from reftguard.refusal import is_refusal
from reftguard.scoring import BundleScorer

Q1 = ({"innocent_harmful_reply"}, {"benign_exchange"})
Q2 = ({"compliance_prefix", "harmful_exchange"}, {"refusal_example"})


def exchange_rows(scorer: BundleScorer, pairs: list[tuple[str, str]]) -> list[list[int]]:
    """prefix + user + suffix + reply, cut to max_tokens: the reply keeps its start (at most 3/4 of the
    room, where compliance or refusal shows), the user turn its end."""
    enc = scorer.encoder
    room = enc.budget
    rows = []
    for user, reply in pairs:
        u, r = enc._ids(user), enc._ids(reply)
        r = r[: max(room * 3 // 4, room - len(u))]
        u = u[max(0, len(u) - (room - len(r))):]
        rows.append(enc.prefix_ids + u + enc.suffix_ids + r)
    return rows


def measure(scorer: BundleScorer, records, reading: str) -> dict:
    out = {}
    for name, (pos, neg) in (("q1_harmful_reply", Q1), ("q2_compliance_vs_refusal", Q2)):
        sel = [r for r in records if r.kind in pos | neg]
        y = np.array([r.kind in pos for r in sel], dtype=np.int64)
        user = [next(c for role, c in r.messages if role == "user") for r in sel]
        reply = [r.messages[-1][1] for r in sel]
        if reading == "content":
            s = scorer.scores(reply)
        else:
            s, _ = scorer.score_ids(exchange_rows(scorer, list(zip(user, reply))))
        out[name] = {"n_pos": int(y.sum()), "n_neg": int((1 - y).sum()), "auroc": auroc(s, y)}
        if name.startswith("q2"):
            phrase = np.array([not is_refusal(t) for t in reply])
            out[name]["refusal_phrase_accuracy"] = float((phrase == y.astype(bool)).mean())
    out["mean_auroc"] = float(np.mean([out[k]["auroc"] for k in ("q1_harmful_reply", "q2_compliance_vs_refusal")]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", default="research/results/reply_reading.json")
    args = ap.parse_args(argv)
    scorer = BundleScorer(GuardBundle.load(args.bundle), max_windows=0)
    data = packaged("records-dev.jsonl")
    res = {"bundle_id": scorer.bundle.bundle_id, "rule": "higher mean AUROC over Q1, Q2 on the calib half"}
    for split in ("calib", "report"):
        recs = load_records(data, split)
        res[split] = {reading: measure(scorer, recs, reading) for reading in ("content", "exchange")}
    res["chosen"] = max(("content", "exchange"), key=lambda k: res["calib"][k]["mean_auroc"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
