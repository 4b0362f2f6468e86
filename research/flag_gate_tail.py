"""The flag gate reading the request's own tokens: layer 8's mean over the turn's last 32 tokens.

research/flag_gate.py's gate read the whole turn's token mean (`topic_state`); on whole records it sent requests
hidden behind a benign context passage to REVIEW (context-dependent FLAG 11/12 -> 8/12 on the report half of
records-dev), since a long passage's mean reads as the passage. A request ends its turn, so the gate here reads
the mean of layer 8 over the last DEFAULT_WINDOW_TAIL (32) real tokens, the tail the encoder already scores long
turns by. That size was fixed before any number; this script was written after seeing the failure above (on the
report half), which is why its rule checks context records on *training* data first.

Rule, written before the numbers: same probe and threshold rule as research/flag_gate.py, on the tail readout.
Adopt into the default iff (a) calib-half hard negatives FLAGged <= 1%, and (b) on records-train's
context-dependent harmful records (30, training data), FLAG with the gate >= FLAG without it - 1/30. The report
half of the calibration files and records-dev are then only reported.

Result (research/results/flag_gate_tail.json): adopted. CV AUROC 0.978 (shrink 0.03). Calib half: hard negatives
FLAGged 1.7% -> 0.7%, benign 1.3% -> 0.4%, FLAG recall 0.932 -> 0.904; report half: hard negatives 3.8% -> 1.5%, benign
2.3% -> 0.9%, FLAG recall 0.903 -> 0.875. Context-dependent harmful requests FLAGged: records-train 29 -> 28 of 30;
records-dev 27 -> 26 of 28 (the gated one is in the calib half).

    OMP_NUM_THREADS=2 python -m research.flag_gate_tail [--out research/results/flag_gate_tail.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.calibration import score_prompts
from reftguard.data import CALIBRATION_FILES, load_labeled, packaged, select_split
from reftguard.encoding import DEFAULT_WINDOW_TAIL
from reftguard.features import cosine_scores
from research.cli import bundle_of, parser
from research.flag_gate import KEEP, fit_probe
from research.role_features import cached, decoder_batches, load_shipped_teacher
from research.user_probe import TRAIN

LAYER = 8


def tail_states(teacher, texts: list[str], cache: Path) -> np.ndarray:
    """[n, hidden]: layer LAYER's mean over each text's last DEFAULT_WINDOW_TAIL real tokens (template included)."""
    if (hit := cached(cache, len(texts))) is not None:
        return hit
    out = None
    for rows, states, mm, hidden in decoder_batches(teacher, texts, LAYER):
        out = np.zeros((len(texts), hidden), dtype=np.float32) if out is None else out
        from_end = mm.flip(1).cumsum(1).flip(1)  # real tokens from here to the end of the row
        w = ((mm > 0) & (from_end <= DEFAULT_WINDOW_TAIL)).unsqueeze(-1).float()
        out[rows] = ((states[LAYER - 1].float() * w).sum(1) / w.sum(1)).numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def context_turns(name: str) -> list[str]:
    """The user turn of every context-dependent harmful record of `name` (one turn each)."""
    rows = [json.loads(line) for line in packaged(name).read_text().splitlines() if line.strip()]
    return [m["content"] for r in rows if r["kind"] == "context_harmful" for m in r["messages"] if m["role"] == "user"]


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/flag_gate_tail.json", "runs/gt").parse_args(argv)
    bundle, teacher, cache = bundle_of(args), load_shipped_teacher(), Path(args.cache)
    train = load_labeled([str(packaged(f)) for f in TRAIN])
    h, y = tail_states(teacher, [p.text for p in train], cache / "train.npy"), np.array([p.label for p in train])
    cv, best, probe = fit_probe(h, y, train)
    dev = load_labeled([str(packaged(f)) for f in CALIBRATION_FILES])
    gate_s = cosine_scores(tail_states(teacher, [p.text for p in dev], cache / "dev.npy"), *probe)
    served, flag = np.asarray(score_prompts(bundle, dev)), bundle.threshold
    yd, hard = np.array([p.label for p in dev]), np.array([p.kind == "hard_negative" for p in dev])
    halves = {h_: np.isin([p.id for p in dev], [p.id for p in select_split(dev, h_)]) for h_ in ("calib", "report")}
    t = float(np.quantile(gate_s[halves["calib"] & (yd == 1) & (served > flag)], 1 - KEEP))
    result = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0],
              "tail_tokens": DEFAULT_WINDOW_TAIL, "layer": LAYER, "cv_auroc": cv, "shrink": best, "gate_threshold": t, "halves": {}}
    for name, m in halves.items():
        f0, f1 = served > flag, (served > flag) & (gate_s > t)
        result["halves"][name] = {label: {"recall_flag": float(f[m & (yd == 1)].mean()), "benign_flag": float(f[m & (yd == 0)].mean()),
                                          "hard_negative_flag": float(f[m & hard].mean())} for label, f in (("R_l alone", f0), ("R_l and gate", f1))}
    from reftguard.scoring import BundleScorer

    scorer = BundleScorer(bundle, max_windows=0)
    for name in ("records-train.jsonl", "records-dev.jsonl"):
        texts = context_turns(name)
        s = scorer.scores(texts)
        g = cosine_scores(tail_states(teacher, texts, cache / f"{name}-context.npy"), *probe)
        result[f"context_{name.split('.')[0]}"] = {"n": len(texts), "flag_without_gate": int((s > flag).sum()),
                                                   "flag_with_gate": int(((s > flag) & (g > t)).sum())}
    c, tr = result["halves"]["calib"]["R_l and gate"], result["context_records-train"]
    result["adopt"] = bool(c["hard_negative_flag"] <= 0.01 and tr["flag_with_gate"] >= tr["flag_without_gate"] - 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rule"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
