"""`reftguard evaluate-model`: Harmful Score and Finetuning Accuracy of a (finetuned) causal LM, and
whether it still helps on benign requests.

  HS  the fraction of held-out harmful prompts whose greedy reply complies (training/judge.py);
      lower is safer. The refusal rate and the no-content rate (replies that neither comply nor
      refuse) are reported beside it.
  FA  exact-match accuracy of greedy replies on held-out user-task problems with gold answers
      (training/usertask.py); higher is better.
  benign refusal rate  the fraction of held-out benign prompts (half contrast-dev hard negatives) whose
      greedy reply the same judge calls a refusal: a model that lowers HS by refusing everything shows here.
  benign ppl  perplexity of the model on the starting model's own replies to those benign prompts (when
      the rows carry a `reference`, as make-data writes them): how much general chat ability is left.
Prompts are wrapped by the same PromptEncoder as training and serving, and decoding is greedy, so the
numbers are deterministic for a given model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reftguard.config import option


@dataclass
class EvalModelConfig:
    model: str = option("packaged:smollm2", "Model to evaluate: a `distill` output directory, a local model, .gguf, hub id or packaged:smollm2.")
    harmful_eval: str = option("", "Held-out harmful prompts (labeled JSONL; default: harmful prompts of the packaged guard-dev.jsonl).")
    task_eval: str = option("", "Held-out user-task problems, JSONL {id, prompt, answer} (make-data writes task-eval.jsonl).")
    n_harmful: int = option(64, "Judge at most this many harmful prompts (a fixed, seeded sample).")
    n_problems: int = option(100, "Score at most this many task problems (the first ones).")
    benign_eval: str = option("", "Held-out benign prompts, JSONL {id, text, reference?} (make-data writes benign-eval.jsonl; default: a draw of contrast-dev hard negatives and guard-dev benign prompts, no references).")
    n_benign: int = option(64, "Judge at most this many benign prompts for the benign refusal rate (0 = skip).")
    hs_tokens: int = option(40, "Greedy reply length (tokens) for the harmful prompts; refusals show in the first few.")
    fa_tokens: int = option(8, "Greedy reply length (tokens) for the task problems; the gold answer is a short number.")
    gen_batch_size: int = option(16, "Prompts per generation batch.")
    eval_out: str = option("", "Write the result JSON (and a .replies.jsonl beside it with every reply) to this file.")


def harmful_prompts(path: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(id, text) of a seeded sample of harmful prompts."""
    import numpy as np

    from reftguard.data import load_labeled, packaged

    prompts = [p for p in load_labeled(path or packaged("guard-dev.jsonl")) if p.label == 1]
    if not prompts:
        raise ValueError(f"{path or 'guard-dev.jsonl'} holds no harmful prompts")
    pick = sorted(np.random.default_rng(seed).choice(len(prompts), size=min(n, len(prompts)), replace=False).tolist())
    return [(prompts[i].id, prompts[i].text) for i in pick]


def benign_rows(path: str, n: int) -> list[dict]:
    """The first n rows {id, text, kind?, reference?} of a benign eval file, or a packaged draw."""
    if not path:
        from reftguard.training.pipeline_data import benign_eval_prompts

        return benign_eval_prompts(n, 0)
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not (isinstance(r, dict) and isinstance(r.get("text"), str) and r["text"].strip())]
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 1} has no string `text`")
    return rows[:n]


def task_problems(path: str, n: int) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not (isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(r.get("answer"), str))]
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 1} is not {{id, prompt, answer}} with string prompt and answer")
    return rows[:n]


def evaluate_model(cfg: EvalModelConfig, model=None, tok=None) -> dict:
    """HS and FA (and every reply, for audit). `model`/`tok` skip loading when the caller has them."""
    import time

    from reftguard.training import judge, usertask
    from reftguard.training.distill import load_student
    from reftguard.training.generation import greedy_replies, prompt_encoder
    from reftguard.modeling.loading import torch_threads

    if not cfg.task_eval:
        raise ValueError("no task problems: pass --task-eval TASK_EVAL.jsonl (reftguard make-data writes one)")
    torch_threads()
    t0 = time.time()
    if model is None:
        model, tok = load_student(cfg.model)
    enc = prompt_encoder(tok, 512)
    harm = harmful_prompts(cfg.harmful_eval, cfg.n_harmful)
    task = task_problems(cfg.task_eval, cfg.n_problems)
    harm_replies = greedy_replies(model, tok, enc.encode([t for _, t in harm], truncation="right").ids, cfg.hs_tokens, cfg.gen_batch_size)
    task_replies = greedy_replies(model, tok, enc.encode([r["prompt"] for r in task], truncation="right").ids, cfg.fa_tokens, cfg.gen_batch_size)
    verdicts = [judge.verdict(r) for r in harm_replies]
    hits = [usertask.exact_match(r, p["answer"]) for r, p in zip(task_replies, task)]
    benign = benign_rows(cfg.benign_eval, cfg.n_benign) if cfg.n_benign > 0 else []
    benign_replies = greedy_replies(model, tok, enc.encode([r["text"] for r in benign], truncation="right").ids, cfg.hs_tokens,
                                    cfg.gen_batch_size) if benign else []
    benign_verdicts = [judge.verdict(r) for r in benign_replies]
    result = {
        "model": cfg.model,
        "harmful_score": verdicts.count("compliance") / len(verdicts),
        "refusal_rate": verdicts.count("refusal") / len(verdicts),
        "no_content_rate": verdicts.count("no_content") / len(verdicts),
        "finetuning_accuracy": sum(hits) / len(hits) if hits else float("nan"),
        "n_harmful": len(harm),
        "n_task": len(task),
        **benign_metrics(benign, benign_verdicts),
        "benign_ppl": reference_perplexity(model, tok, enc, benign),
        "judge": "refusal-phrase detector (training/judge.py)",
        "seconds": round(time.time() - t0, 1),
    }
    if cfg.eval_out:
        out = Path(cfg.eval_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        with open(out.with_suffix(".replies.jsonl"), "w", encoding="utf-8") as f:
            for (pid, text), reply, v in zip(harm, harm_replies, verdicts):
                f.write(json.dumps({"set": "harmful", "id": pid, "prompt": text, "reply": reply, "verdict": v}, ensure_ascii=False) + "\n")
            for p, reply, ok in zip(task, task_replies, hits):
                f.write(json.dumps({"set": "task", "id": p.get("id"), "prompt": p["prompt"], "reply": reply, "answer": p["answer"],
                                    "correct": ok}, ensure_ascii=False) + "\n")
            for r, reply, v in zip(benign, benign_replies, benign_verdicts):
                f.write(json.dumps({"set": "benign", "id": r.get("id"), "kind": r.get("kind"), "prompt": r["text"], "reply": reply,
                                    "verdict": v}, ensure_ascii=False) + "\n")
    return result


def benign_metrics(rows: list[dict], verdicts: list[str]) -> dict:
    """Benign refusal rate over all benign prompts and over their hard negatives / the rest."""
    def rate(vs: list[str]):
        return vs.count("refusal") / len(vs) if vs else None

    hard = [v for r, v in zip(rows, verdicts) if r.get("kind") == "hard_negative"]
    other = [v for r, v in zip(rows, verdicts) if r.get("kind") != "hard_negative"]
    return {"benign_refusal_rate": rate(verdicts), "benign_refusal_rate_hard_negative": rate(hard), "benign_refusal_rate_other": rate(other),
            "n_benign": len(rows), "n_benign_hard_negative": len(hard)}


def reference_perplexity(model, tok, enc, rows: list[dict], reply_tokens: int = 64) -> float | None:
    """Token-weighted perplexity of the model on the rows' `reference` replies (the starting model's greedy
    replies) given their prompts, over the reply tokens; None when no row carries one."""
    from reftguard.training import sft

    pairs = [(r["text"], r["reference"]) for r in rows if isinstance(r.get("reference"), str) and r["reference"].strip()]
    if not pairs:
        return None
    # no end-of-turn marker: the references are cut at a token budget, and the chance of ending a reply there
    # would measure how short a model's replies are, not how well it still writes the starting model's text
    encoded = sft.encode_pairs(enc, [p for p, _ in pairs], [a for _, a in pairs], "", reply_tokens)
    return sft.perplexity(model, encoded, tok.pad_token_id)
