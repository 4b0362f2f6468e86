"""Does a teacher trained with reply states in its regulariser read replies better (#32 item 5)?

Candidate: stage 1 of the shipped recipe plus `--reply-data roles-train.jsonl` (the assistant turns of the
labelled role rows, read as served: content as a user turn; harmful replies towards R_l, benign replies and
refusals away). Each teacher is read through torch (no export): user-turn scores against its R_l, and reply
scores against R_assistant fitted on roles-train the way `reftguard fit-roles` fits it (the default recipe).

Rule, written before any candidate number (decided on the `calib` halves only; `report` halves are
reported beside, never used to choose):
  adopt the candidate (rebuild the default bundle from it) iff
  (a) reply recall at 2% FPR on roles-dev (assistant turns, refusals among the negatives) rises by >= 0.10
      (the per-role feature's own adoption bar, research/role_features.py), and
  (b) on each of guard-dev, handwritten-dev and contrast-dev, user-turn AUROC falls by <= 0.005 and recall
      at 1% FPR by <= 0.02 (the issue: prompt-only figures may not fall; these are the noise margins of
      about one hard case on a calib half).
  Otherwise the shipped teacher stays and this file's result says why.

    python -m research.reply_teacher --teacher old=reftguard/data/default_teacher --teacher new=runs/teacher-r1
"""
from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import numpy as np
from research.teacher_select import DEV, teacher_states

from reftguard import evaluation
from reftguard.data import load_labeled, packaged, select_split
from reftguard.features import cosine_scores, refusal_feature
from reftguard.modeling.teacher import Teacher

SPLITS = ("calib", "report")


def metrics(s: np.ndarray, y: np.ndarray) -> dict:
    return {"n": int(len(y)), "auroc": evaluation.auroc(s, y), "recall_at_1pct_fpr": evaluation.recall_at_fpr(s, y, 0.01),
            "recall_at_2pct_fpr": evaluation.recall_at_fpr(s, y, 0.02)}


def teacher_row(d: Path) -> dict:
    t = Teacher.load(d)
    lm, tok = t.load_model()
    state = lambda rows: teacher_states(t, lm, tok, [p.text for p in rows])  # noqa: E731
    label = lambda rows: np.array([p.label for p in rows])  # noqa: E731
    row: dict = {"user": {}, "assistant": {}}
    for name in DEV:
        rows = load_labeled(packaged(name))
        for split in SPLITS:
            part = select_split(rows, split)
            row["user"][f"{name}:{split}"] = metrics(cosine_scores(state(part), t.refusal_feature, t.center), label(part))
    train = [p for p in load_labeled(packaged("roles-train.jsonl")) if p.role == "assistant"]
    r, c = refusal_feature(state(train), label(train), "midpoint")
    row["cos_r_assistant_r_l"] = float(r @ t.refusal_feature / (np.linalg.norm(r) * np.linalg.norm(t.refusal_feature)))
    dev = [p for p in load_labeled(packaged("roles-dev.jsonl")) if p.role == "assistant"]
    for split in SPLITS:
        part = select_split(dev, split)
        h = state(part)
        row["assistant"][split] = {"role_feature": metrics(cosine_scores(h, r, c), label(part)),
                                   "r_l": metrics(cosine_scores(h, t.refusal_feature, t.center), label(part))}
    return row


def verdict(old: dict, new: dict) -> dict:
    gain = new["assistant"]["calib"]["role_feature"]["recall_at_2pct_fpr"] - old["assistant"]["calib"]["role_feature"]["recall_at_2pct_fpr"]
    falls = {}
    for name in DEV:
        o, n = old["user"][f"{name}:calib"], new["user"][f"{name}:calib"]
        falls[name] = {"auroc": o["auroc"] - n["auroc"], "recall_at_1pct_fpr": o["recall_at_1pct_fpr"] - n["recall_at_1pct_fpr"]}
    ok_user = all(f["auroc"] <= 0.005 and f["recall_at_1pct_fpr"] <= 0.02 for f in falls.values())
    return {"reply_recall_gain_calib": gain, "user_falls_calib": falls, "adopt": bool(gain >= 0.10 and ok_user)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", action="append", default=[], help="NAME=DIR; the first is the baseline.")
    p.add_argument("--out", default="research/results/reply_teacher.json")
    p.add_argument("--cache", default="runs/reply_teacher", help="Per-teacher rows are cached here (keyed by name and directory).")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows = {}
    for spec in ns.teacher:
        name, _, d = spec.partition("=")
        cached = Path(ns.cache) / f"{name}-{d.replace('/', '_')}.json"
        if cached.is_file():
            rows[name] = json.loads(cached.read_text())
        else:
            rows[name] = teacher_row(Path(d)) | {"dir": d}
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(rows[name]))
        logging.info("%s: %s", name, json.dumps(rows[name]["assistant"]))
    if len(rows) < 2:
        return 0
    names = list(rows)
    result = {"rule": __doc__.split("Rule, written")[1].split("python -m")[0].strip(), "teachers": rows,
              "verdicts": {n: verdict(rows[names[0]], rows[n]) for n in names[1:]}}
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["verdicts"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
