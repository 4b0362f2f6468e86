"""Pick the teacher recipe by held-out styles: every candidate teacher scored on the *calibration* half of
each dev file (the report half stays untouched for the final figures), plus its benign refusal rate.

For each teacher directory (torch, no export), per dev file: AUROC, recall at 1% FPR, and for files with
benign hard negatives the benign flag rate at the threshold that keeps recall 0.90 on that file's
harmful side (the operating point the contrast criterion asks for). Helpfulness: greedy replies (48
tokens) to the first 50 benign guard-dev prompts, as in docs/training.md, and to 50 benign contrast-dev
prompts (safe prompts that sound unsafe: the ones an over-refusing teacher refuses), and to the next 50 benign
guard-dev prompts (no teacher was picked on them), and to 50 benign chat prompts of guard-train that
train-teacher held back (no seed-0 teacher trained on them); and, the other side,
its refusal rate on the first 50 harmful guard-dev prompts (it should refuse them).

    python -m research.teacher_select --teacher old=reftguard/data/default_teacher --teacher new=runs/t1 \
        --out bench/results/teacher_select.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import numpy as np
from research.teacher_vs_zero import helpfulness, slug

from reftguard import evaluation
from reftguard.data import holdout_split, load_labeled, packaged, select_split
from reftguard.features import cosine_scores
from reftguard.training.fit import encode_texts
from reftguard.training.judge import is_refusal
from reftguard.modeling.teacher import Teacher
from reftguard.training.teacher_train import layer_states

DEV = ("guard-dev.jsonl", "handwritten-dev.jsonl", "contrast-dev.jsonl")


def file_metrics(scores: np.ndarray, y: np.ndarray, kinds: list[str]) -> dict:
    out = {"n": len(y), "auroc": evaluation.auroc(scores, y), "recall_at_1pct_fpr": evaluation.recall_at_fpr(scores, y, 0.01)}
    thr = evaluation.threshold_for_recall(scores, y, 0.90)
    hard = np.array([k == "hard_negative" for k in kinds]) & (y == 0)
    out["fpr_at_recall_0.90"] = float(np.mean(scores[y == 0] > thr))
    if hard.any():
        out["hard_negative_flag_rate_at_recall_0.90"] = float(np.mean(scores[hard] > thr))
    return out


def teacher_states(t: Teacher, lm, tok, texts: list[str]) -> np.ndarray:
    """[n, hidden] layer-l last-token states of `texts`, wrapped and cut as the teacher's guard reads them."""
    ids = encode_texts(t.tokenizer_dir, t.prompt_format, t.max_tokens, texts)
    return layer_states(lm, ids, t.layer, 32, tok.pad_token_id)


def portable_command(t: Teacher) -> str:
    """The teacher's reproducing command with its output directory renamed: no machine paths in results."""
    return re.sub(r"--out \S+", "--out teacher", t.record.get("command", ""))


def teacher_row(d: Path, dev: dict, helpful: dict, reply_tokens: int, row: dict | None = None) -> dict:
    """One teacher's figures; with `row` (a cached result), only the ones it lacks are computed."""
    t = Teacher.load(d)
    lm, tok = t.load_model()
    row = dict(row or {})
    if "files" not in row:
        row["files"] = {}
        for name, ps in dev.items():
            s = cosine_scores(teacher_states(t, lm, tok, [p.text for p in ps]), t.refusal_feature, t.center)
            row["files"][name] = file_metrics(s, np.array([p.label for p in ps]), [p.kind for p in ps])
    for name, prompts in helpful.items():
        if f"refusal_rate_{name}" in row:
            continue
        h, replies = helpfulness(lm, tok, t.tokenizer_dir, t.prompt_format, prompts, None, reply_tokens)
        row[f"refusal_rate_{name}"] = h["refusal_rate"]
        harmful = name.endswith("_harmful")  # list what went the wrong way, to read: refused benign, answered harmful
        row[f"{'answered' if harmful else 'refused'}_{name}"] = [p for p, r in zip(prompts, replies) if is_refusal(r) != harmful][:10]
    return row


def held_back_chat(n: int, holdout: float = 0.15, seed: int = 0) -> list[str]:
    """The first n benign chat prompts of guard-train.jsonl in the teachers' held-back split (train-teacher's
    default --holdout and --seed)."""
    rows = load_labeled(packaged("guard-train.jsonl"))
    held = holdout_split(rows, holdout, seed)[1]
    return [rows[i].text for i in held if rows[i].label == 0 and rows[i].kind == "chat"][:n]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", action="append", default=[], help="NAME=DIR, repeatable.")
    p.add_argument("--out", default="bench/results/teacher_select.json")
    p.add_argument("--cache", default="runs/teacher_select", help="Per-teacher results are cached here (keyed by name and dir).")
    p.add_argument("--reply-tokens", type=int, default=48)
    p.add_argument("--helpful-n", type=int, default=50)
    p.add_argument("--merge", action="store_true", help="Keep the rows of --out's teachers that this run does not score (their directories may be gone); the named ones are scored and replace theirs.")
    p.add_argument("--shipped", default="", help="ROLE=NAME,... which teacher each bundle ships (e.g. old=old,new=tB), for the docs table.")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    dev = {f: select_split(load_labeled(packaged(f)), "calib") for f in DEV}
    guard_dev = {lab: [q.text for q in load_labeled(packaged("guard-dev.jsonl")) if q.label == lab] for lab in (0, 1)}
    helpful = {
        "guard_dev_benign": guard_dev[0][: ns.helpful_n],
        "contrast_dev_benign": [q.text for q in dev["contrast-dev.jsonl"] if q.label == 0][: ns.helpful_n],
        # the next 50: a check on prompts no teacher was picked on (the first 50 are how candidates are compared)
        "guard_dev_benign_51_100": guard_dev[0][ns.helpful_n: 2 * ns.helpful_n],
        # the other side: a teacher that stops refusing harmful prompts has nothing to distil
        "guard_dev_harmful": guard_dev[1][: ns.helpful_n],
        # chit-chat no seed-0 teacher trained on: the benign chat rows of guard-train that train-teacher holds
        # back by an id hash (never in an SFT pool; tH, seed 1, holds back others)
        "train_heldout_chat_benign": held_back_chat(ns.helpful_n),
    }
    results = {"selection_split": "calib", "teachers": {}, "shipped": dict(kv.split("=", 1) for kv in ns.shipped.split(",") if kv)}
    if ns.merge and Path(ns.out).is_file():
        kept = json.loads(Path(ns.out).read_text())
        results["teachers"] = kept["teachers"]
        results["shipped"] = results["shipped"] or kept.get("shipped", {})
    for spec in ns.teacher:
        name, _, d = spec.partition("=")
        t0 = time.time()
        path = Path(ns.cache) / f"{slug(name)}-{slug(d)}.json"
        old = json.loads(path.read_text()) if path.is_file() else None
        row = old if old and all(f"refusal_rate_{k}" in old for k in helpful) else teacher_row(Path(d), dev, helpful, ns.reply_tokens, old)
        if row is not old:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=1, ensure_ascii=False))
        command = portable_command(Teacher.load(Path(d)))
        results["teachers"][name] = row | {"dir": d, "record": command}
        logging.info("%s done in %.0fs", name, time.time() - t0)
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(results, indent=1) + "\n")
    for name, r in results["teachers"].items():
        cells = [f"{f}: AUROC {m['auroc']:.4f} R@1% {m['recall_at_1pct_fpr']:.3f} FPR@R.90 {m['fpr_at_recall_0.90']:.3f}"
                 + (f" HN@R.90 {m['hard_negative_flag_rate_at_recall_0.90']:.3f}" if "hard_negative_flag_rate_at_recall_0.90" in m else "")
                 for f, m in r["files"].items()]
        print(f"{name}: refusal {r['refusal_rate_guard_dev_benign']:.2f} / contrast {r['refusal_rate_contrast_dev_benign']:.2f}"
              f" / harmful {r['refusal_rate_guard_dev_harmful']:.2f}\n  " + "\n  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
