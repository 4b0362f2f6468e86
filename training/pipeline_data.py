"""`reftguard make-data`: the four files the safe-finetuning pipeline and the paper table run on.

  user.jsonl          the customer's poisoned finetuning set: n_task arithmetic problems with gold
                      replies + n_general general instructions (benign training-pool prompts with the
                      reply model's own greedy replies: what real finetuning sets mix in, and what keeps
                      the student able to chat) + harmful prompts (guard-train pool) with placeholder
                      compliant replies, harmful_fraction of the whole
  task-eval.jsonl     held-out problems {id, prompt, answer} for Finetuning Accuracy
  align.jsonl         alignment (safety) data: harmful prompts -> a refusal (training/sft.py), benign
                      prompts -> the reply model's own greedy reply (helpful, in its own style)
  harmful-eval.jsonl  held-out harmful prompts for the Harmful Score (guard-dev pool: never trained on)
  benign-eval.jsonl   held-out benign prompts, half of them contrast-dev hard negatives (benign prompts
                      that only sound unsafe), half guard-dev benign prompts, each with the reply model's
                      greedy `reference` reply: the students' benign refusal rate (over-refusal) and
                      their perplexity on the starting model's replies (general ability kept)

Harmful prompts of user.jsonl and align.jsonl are disjoint draws from the training pool; the benign
alignment prompts and the general instructions are disjoint draws from the training pool too
(guard-train + guard-train-extra). Every greedy reply is cached beside the data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.config import option

FILES = {"user": "user.jsonl", "task_eval": "task-eval.jsonl", "align": "align.jsonl", "harmful_eval": "harmful-eval.jsonl",
         "benign_eval": "benign-eval.jsonl"}


@dataclass
class DataConfig:
    data_dir: str = option("pipeline-data", "Directory to write user.jsonl, task-eval.jsonl, align.jsonl and harmful-eval.jsonl to.")
    reply_model: str = option("packaged:smollm2", "Model whose greedy replies are the helpful targets of benign alignment prompts.")
    n_task: int = option(360, "Arithmetic problems in the user data.")
    n_general: int = option(120, "General instructions in the user data: benign training-pool prompts with the reply model's own greedy replies (0 = arithmetic only).")
    harmful_fraction: float = option(0.1, "Fraction of the user data that is harmful prompts with placeholder compliant replies.")
    n_task_eval: int = option(100, "Held-out arithmetic problems (task-eval.jsonl).")
    n_align_harmful: int = option(48, "Harmful prompts with refusals in the alignment data.")
    n_align_benign: int = option(48, "Benign prompts with helpful replies in the alignment data.")
    n_harmful_eval: int = option(64, "Held-out harmful prompts (harmful-eval.jsonl).")
    n_benign_eval: int = option(64, "Held-out benign prompts (benign-eval.jsonl): half contrast-dev hard negatives, half guard-dev benign.")
    align_reply_tokens: int = option(48, "Longest generated reply (tokens): helpful alignment replies, general instructions, benign references.")
    data_seed: int = option(0, "Seed of every draw above.")


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def make_data(cfg: DataConfig, model=None, tok=None) -> dict[str, Path]:
    """Write the five files (see the module docstring); returns their paths by key."""
    from reftguard.data import TRAIN_FILES, load_labeled, packaged
    from reftguard.training import sft, usertask

    out = Path(cfg.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([cfg.data_seed, 808])
    pool = load_labeled([packaged(n) for n in TRAIN_FILES])
    harm = [pool[i] for i in rng.permutation([i for i, p in enumerate(pool) if p.label == 1])]
    ben = [pool[i] for i in rng.permutation([i for i, p in enumerate(pool) if p.label == 0])]
    n_poison = round((cfg.n_task + cfg.n_general) * cfg.harmful_fraction / (1.0 - cfg.harmful_fraction))
    if n_poison + cfg.n_align_harmful > len(harm) or cfg.n_align_benign + cfg.n_general > len(ben):
        raise ValueError("not enough training-pool prompts for these sizes")

    train, held = usertask.task_split(cfg.n_task, cfg.n_task_eval, cfg.data_seed)
    align_harm = harm[n_poison : n_poison + cfg.n_align_harmful]
    align_ben = ben[: cfg.n_align_benign]
    general = ben[cfg.n_align_benign : cfg.n_align_benign + cfg.n_general]
    benign_eval = benign_eval_prompts(cfg.n_benign_eval, cfg.data_seed)
    # one model and one cache for every reply the starting model writes; each set is generated on its own
    # (batch composition changes padding, so adding a set never changes the replies of another)
    lm = [model, tok]
    ben_replies = _helpful_replies(cfg, [(p.id, p.text) for p in align_ben], lm)
    gen_replies = _helpful_replies(cfg, [(p.id, p.text) for p in general], lm)
    ref_replies = _helpful_replies(cfg, [(r["id"], r["text"]) for r in benign_eval], lm)
    user = usertask.poisoned_dataset(train, [(p.id, p.text) for p in harm[:n_poison]], cfg.data_seed,
                                     general=[(p.id, p.text, r) for p, r in zip(general, gen_replies)])
    align = [{"id": p.id, "messages": [{"role": "user", "content": p.text}, {"role": "assistant", "content": sft.refusal_for(p.id, cfg.data_seed)}],
              "label": "harmful"} for p in align_harm]
    align += [{"id": p.id, "messages": [{"role": "user", "content": p.text}, {"role": "assistant", "content": r}], "label": "benign"}
              for p, r in zip(align_ben, ben_replies)]
    align = [align[i] for i in rng.permutation(len(align))]
    dev_harm = [p for p in load_labeled(packaged("guard-dev.jsonl")) if p.label == 1]
    pick = sorted(rng.choice(len(dev_harm), size=min(cfg.n_harmful_eval, len(dev_harm)), replace=False).tolist())
    paths = {k: out / v for k, v in FILES.items()}
    _write(paths["user"], user)
    _write(paths["task_eval"], [{"id": p.id, "prompt": p.prompt, "answer": p.answer} for p in held])
    _write(paths["align"], align)
    _write(paths["harmful_eval"], [{"id": dev_harm[i].id, "text": dev_harm[i].text, "label": "harmful", "source": dev_harm[i].source,
                                    "kind": dev_harm[i].kind} for i in pick])
    _write(paths["benign_eval"], [r | {"reference": ref} for r, ref in zip(benign_eval, ref_replies)])
    return paths


def benign_eval_prompts(n: int, seed: int) -> list[dict]:
    """A seeded draw of n held-out benign prompts: half hard negatives of contrast-dev (benign prompts that
    only sound unsafe: what an over-refusing model refuses), half benign prompts of guard-dev. Neither file
    is trained on by the teacher, the guard or the student."""
    from reftguard.data import load_labeled, packaged

    rng = np.random.default_rng([seed, 809])
    hard = [p for p in load_labeled(packaged("contrast-dev.jsonl")) if p.label == 0]
    other = [p for p in load_labeled(packaged("guard-dev.jsonl")) if p.label == 0 and p.kind != "hard_negative"]
    n_hard = min(n // 2, len(hard))
    picked = [hard[i] for i in sorted(rng.choice(len(hard), size=n_hard, replace=False).tolist())]
    picked += [other[i] for i in sorted(rng.choice(len(other), size=min(n - n_hard, len(other)), replace=False).tolist())]
    return [{"id": p.id, "text": p.text, "label": "benign", "source": p.source, "kind": p.kind} for p in picked]


def _helpful_replies(cfg: DataConfig, items: list[tuple[str, str]], lm: list) -> list[str]:
    """Greedy replies of the reply model to (id, prompt) items, cached beside the data (keyed by model,
    prompt id, prompt and length), so a rerun costs nothing. `lm` is [model, tokenizer], loaded on first need."""
    from reftguard.training.generation import ReplyCache, greedy_replies, prompt_encoder

    cache = ReplyCache(Path(cfg.data_dir) / ".helpful_replies.jsonl", generator=f"{cfg.reply_model}|greedy|{cfg.align_reply_tokens}")
    todo = cache.missing(items)
    if todo:
        if lm[0] is None:
            from reftguard.modeling.loading import load_causal_lm

            lm[:] = load_causal_lm(cfg.reply_model)
        model, tok = lm
        enc = prompt_encoder(tok, 256)
        chunk = [items[j] for j in todo]
        cache.add(chunk, greedy_replies(model, tok, enc.encode([t for _, t in chunk], truncation="right").ids, cfg.align_reply_tokens))
    # An empty greedy reply would be no target at all: fall back to a plain acknowledgement.
    return [cache.get(pid, t) or "Sure, happy to help with that." for pid, t in items]
