"""Does the ReFT teacher beat the zero-training fit? One table on dev data, overall and per `kind`.

Rows (all at the same layer l, all fitted/trained on the training files only, dev used only to score):
  zero-training     R_l = difference of means of the starting model's states (midpoint centre)
  logistic probe    logistic regression on the same zero-training states (a strong non-ReFT reference)
  SFT only          train-teacher with reg_weight 0
  regulariser only  train-teacher with sft_weight 0
  SFT + regulariser the full ReFT teacher, same config and steps as the two rows above
  --full-teacher    optionally one more row, e.g. the shipped default teacher (trained longer)
Columns: AUROC and recall at 1% FPR. A `kind` holds one label only, so a kind's cell compares that kind
against every prompt of the other label (a harmful kind against all benign prompts, a benign kind against
all harmful ones).

Helpfulness (starting model vs the ReFT teachers): refusal rate of greedy replies on 50 benign dev prompts
(refusal-phrase detector) and the perplexity of the starting model's greedy replies to them.

    python -m research.teacher_vs_zero [--steps 80] [--full-teacher reftguard/data/default_teacher]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see reftguard/train_commands.py
from dataclasses import replace
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.data import TRAIN_FILES, load_labeled, packaged
from reftguard.features import cosine_scores, refusal_feature
from reftguard.training.fit import encode_texts
from reftguard.modeling.teacher import Teacher
from reftguard.training.teacher_train import QUICK, TrainConfig, balanced_subset, layer_states, train

log = logging.getLogger("research.teacher_vs_zero")

REFT_ROW = "SFT + regulariser (ReFT)"
FULL_ROW = "shipped default teacher (ReFT, default config)"
KINDS_ORDER = ("direct", "rephrased", "jailbreak", "disguised", "chat", "task", "instruction", "hard_negative")


def metrics(scores: np.ndarray, y: np.ndarray, kinds: list[str]) -> dict:
    out = {"overall": {"auroc": evaluation.auroc(scores, y), "recall_at_1pct_fpr": evaluation.recall_at_fpr(scores, y, 0.01)}}
    kinds_arr = np.array(kinds)
    for k in sorted(set(kinds), key=lambda k: KINDS_ORDER.index(k) if k in KINDS_ORDER else 99):
        label = y[kinds_arr == k][0]
        sel = (kinds_arr == k) | (y != label)
        out[k] = {"auroc": evaluation.auroc(scores[sel], y[sel]), "recall_at_1pct_fpr": evaluation.recall_at_fpr(scores[sel], y[sel], 0.01),
                  "n": int((kinds_arr == k).sum()), "label": "harmful" if label else "benign"}
    return out


def logistic_probe(h: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 300):
    """Standardised logistic regression fitted with L-BFGS (torch); returns a scoring function."""
    import torch

    mu, sd = h.mean(0), h.std(0) + 1e-6
    x = torch.from_numpy(((h - mu) / sd).astype(np.float32))
    t = torch.from_numpy(y.astype(np.float32))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, t) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    wn, bn = w.detach().numpy(), b.item()
    return lambda hh: ((hh - mu) / sd).astype(np.float32) @ wn + bn


def helpfulness(lm, tok, tok_dir: Path, fmt, prompts: list[str], reference: list[str] | None, reply_tokens: int) -> tuple[dict, list[str]]:
    """Refusal rate of greedy replies and perplexity of `reference` replies (the model's own if None)."""
    from reftguard.encoding import PromptEncoder
    from reftguard.training import sft
    from reftguard.training.generation import greedy_replies
    from reftguard.training.judge import is_refusal

    enc = PromptEncoder(Path(tok_dir) / "tokenizer.json", fmt, 512)
    replies = greedy_replies(lm, tok, enc.encode(prompts, "right").ids, reply_tokens)
    ref = reference if reference is not None else replies
    pairs = sft.encode_pairs(enc, prompts, ref, sft.turn_end(tok), reply_tokens)
    return {"refusal_rate": float(np.mean([is_refusal(r) for r in replies])), "perplexity": sft.perplexity(lm, pairs, tok.pad_token_id),
            "n": len(prompts)}, replies


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False))
    return value


def slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")[-60:]


def zero_stage(ns, dev, y, kinds, train_files) -> dict:
    """Zero-training fit and logistic probe (same states of the starting model), and its helpfulness."""
    from reftguard.prompt import PromptFormat
    from reftguard.training.fit import encode_texts as encode
    from reftguard.modeling.loading import load_causal_lm

    lm, tok = load_causal_lm(ns.model)
    tok_dir = Path(ns.out) / "tokenizer"
    tok.save_pretrained(tok_dir)
    fmt = PromptFormat.from_hf_tokenizer(tok)
    train_prompts = load_labeled(train_files)
    y_tr = np.array([q.label for q in train_prompts])
    pick = balanced_subset(list(range(len(train_prompts))), y_tr, ns.fit_size, 0)
    enc = lambda ps: encode(tok_dir, fmt, 512, [q.text for q in ps])  # noqa: E731
    h_tr = layer_states(lm, enc([train_prompts[i] for i in pick]), ns.layer, ns.batch, tok.pad_token_id)
    h_dev = layer_states(lm, enc(dev), ns.layer, ns.batch, tok.pad_token_id)
    r, c = refusal_feature(h_tr, y_tr[pick], "midpoint")
    rows = {
        f"zero-training (diff of means, {len(pick)} train prompts)": metrics(cosine_scores(h_dev, r, c), y, kinds),
        "logistic probe on zero-training states": metrics(logistic_probe(h_tr, y_tr[pick])(h_dev), y, kinds),
    }
    benign = [q.text for q in dev if q.label == 0][: ns.helpful_n]
    helpful, ref = helpfulness(lm, tok, tok_dir, fmt, benign, None, ns.reply_tokens)
    return {"rows": rows, "helpfulness": helpful, "benign": benign, "reference_replies": ref}


def teacher_stage(teacher_dir: Path, dev, y, kinds, ns, benign, ref) -> dict:
    """Dev metrics of a trained teacher; with `benign`, also its helpfulness against the reference replies."""
    t = Teacher.load(teacher_dir)
    lm, tok = t.load_model()
    ids = encode_texts(t.tokenizer_dir, t.prompt_format, t.max_tokens, [p.text for p in dev])
    scores = cosine_scores(layer_states(lm, ids, t.layer, ns.batch, tok.pad_token_id), t.refusal_feature, t.center)
    row = {"metrics": metrics(scores, y, kinds)}
    if benign is not None:
        row["helpfulness"], row["replies"] = helpfulness(lm, tok, t.tokenizer_dir, t.prompt_format, benign, ref, ns.reply_tokens)
    return row


def variant_configs(base: TrainConfig) -> dict[str, TrainConfig]:
    return {
        "SFT only": replace(base, reg_weight=0.0, out=base.out + "/sft_only"),
        "regulariser only": replace(base, sft_weight=0.0, out=base.out + "/reg_only"),
        REFT_ROW: replace(base, out=base.out + "/reft"),
    }


def markdown(results: dict, steps_note: str) -> str:
    kinds = [k for k in KINDS_ORDER if any(k in r for r in results["rows"].values())]
    head = "| method | AUROC | R@1%FPR | " + " | ".join(f"{k} AUROC / R@1%" for k in kinds) + " |"
    lines = [f"Dev file: {results['dev']} (n={results['n_dev']}). {steps_note}", "", head, "|" + "---|" * (3 + len(kinds))]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in results["rows"].items():
        cells = [f(r["overall"]["auroc"]), f(r["overall"]["recall_at_1pct_fpr"])]
        cells += [f"{f(r[k]['auroc'])} / {f(r[k]['recall_at_1pct_fpr'])}" if k in r else "-" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results.get("helpfulness"):
        lines += ["", "| model | refusal rate on benign dev prompts | perplexity of the starting model's benign replies |", "|---|---|---|"]
        for name, h in results["helpfulness"].items():
            lines.append(f"| {name} | {h['refusal_rate']:.3f} (n={h['n']}) | {h['perplexity']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench", help="Work directory: trained teachers, cached stages, table.md and table.json.")
    p.add_argument("--table-dir", default="research/results", help="Also write table.md and table.json here (committed; no weights).")
    p.add_argument("--model", default="packaged:smollm2")
    p.add_argument("--dev", default="guard-dev.jsonl", help="Packaged dev file (or a path) to score; never trained on.")
    p.add_argument("--layer", type=int, default=16)
    p.add_argument("--steps", type=int, default=80, help="Training steps of every variant (the fixed config is --quick otherwise).")
    p.add_argument("--fit-size", type=int, default=1200, help="Balanced training prompts for the zero-training fit and the probe.")
    p.add_argument("--full-teacher", default="", help="Add this teacher dir (e.g. reftguard/data/default_teacher) as one more row.")
    p.add_argument("--skip", default="", help="Comma-separated variants not to train (e.g. 'SFT only').")
    p.add_argument("--helpful-n", type=int, default=50)
    p.add_argument("--reply-tokens", type=int, default=48)
    p.add_argument("--batch", type=int, default=32)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    dev_path = Path(ns.dev) if Path(ns.dev).is_file() else packaged(ns.dev)
    dev = load_labeled(dev_path)
    y = np.array([q.label for q in dev])
    kinds = [q.kind for q in dev]
    train_files = [str(packaged(f)) for f in TRAIN_FILES]
    base_cfg = TrainConfig(**(QUICK | {"model": ns.model, "data": train_files, "out": str(out), "layer": ns.layer, "steps": ns.steps,
                                        "max_tokens": 512, "progress": False, "resume": True}))
    results: dict = {"dev": dev_path.name, "n_dev": len(dev), "layer": ns.layer, "train_config": {k: v for k, v in vars(base_cfg).items()},
                     "rows": {}, "helpfulness": {}, "seconds": {}}

    # Variants first: their training must not compete with the scoring below for the CPU.
    teacher_dirs: dict[str, Path] = {}
    skip = {s.strip() for s in ns.skip.split(",") if s.strip()}
    for name, cfg in variant_configs(base_cfg).items():
        if name in skip:
            continue
        t1 = time.time()
        if not (Path(cfg.out) / "teacher.json").is_file():
            train(replace(cfg, reply_cache=str(out / "benign_replies.jsonl")))
        teacher_dirs[name] = Path(cfg.out)
        results["seconds"][name] = round(time.time() - t1, 1)
    if ns.full_teacher:
        teacher_dirs[FULL_ROW] = Path(ns.full_teacher)

    # Each stage caches its result in OUT/stages/, so an interrupted or partial run (e.g. --skip while a
    # variant is still training elsewhere) is completed by the next one without redoing work.
    zero = cached(out / "stages" / "zero.json", lambda: zero_stage(ns, dev, y, kinds, train_files))
    results["rows"].update(zero["rows"])
    results["helpfulness"]["starting model"] = zero["helpfulness"]
    benign, ref = zero["benign"], zero["reference_replies"]
    for name, d in teacher_dirs.items():
        full = name in (REFT_ROW, FULL_ROW)  # helpfulness is measured for the teachers meant to be used
        row = cached(out / "stages" / f"{slug(name)}-{slug(str(d))}.json", lambda: teacher_stage(d, dev, y, kinds, ns, benign if full else None, ref))
        results["rows"][name] = row["metrics"]
        if full:
            results["helpfulness"][name] = row["helpfulness"]
        results.setdefault("teachers", {})[name] = str(d)
    (out / "benign_replies_before.json").write_text(json.dumps(dict(zip(benign, ref)), indent=1, ensure_ascii=False))
    results["seconds"]["total"] = round(time.time() - t0, 1)
    note = f"Trained variants: {ns.steps} steps of the --quick config at layer {ns.layer}" + (
        f"; the shipped-teacher row is {ns.full_teacher} (its own config and step count)" if ns.full_teacher else "") + "; all rows at the same layer, fitted on training files only."
    for d in {out, Path(ns.table_dir)}:
        d.mkdir(parents=True, exist_ok=True)
        (d / "table.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (d / "table.md").write_text(markdown(results, note))
    print(markdown(results, note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
