"""Alignment distillation: finetune a student on the (filtered) user data while distilling it toward the
ReFT teacher's soft labels on safety data, so it learns the user's task and keeps refusing.

Recipe, top to bottom:
  1. load the student (LoRA on every layer by default) and its serving prompt format;
  2. encode the user pairs (prompt -> reply) and the alignment pairs (harmful -> refusal, benign ->
     helpful reply) exactly like teacher training does: reply tokens carry the loss, prompts do not;
  3. the batch schedule: step s is an alignment step iff floor((s+1)·f) > floor(s·f), f the alignment
     fraction, so exactly round-down(steps·f) steps are alignment steps, spread evenly; batches walk
     seeded per-epoch permutations of their pool, so every row is seen once per epoch;
  4. user steps: CE on reply tokens. Alignment steps, by `align_loss`:
       kl   λ · T² · KL(teacher ‖ student) on the reply tokens (the method; training/kd.py),
       ce   λ · CE on the same replies (hard-label SFT: the SafeInstr / Lisa-style baseline),
       none no alignment batches (plain finetuning);
     teacher targets come from the teacher on the fly or from a top-k cache built once (safetensors);
  5. log (JSONL + plot + tqdm), then save the adapter and student.json for `reftguard evaluate-model`.

Multi-GPU: as in teacher training, accelerate is used thinly (device, rank, gradient averaging), so
`accelerate launch -m reftguard.cli distill ...` runs the same recipe with per-rank batches.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reftguard.config import option
from reftguard.data import DataError, iter_jsonl
from reftguard.training.common import (LoraOptions, OptimOptions, add, finish_adapter, lr_at, plot,
                                       round_to_saved_dtype, wrap_trainable, write_rows)

log = logging.getLogger("reftguard.distill")

LOG_FILE = "distill_log.jsonl"
PLOT_FILE = "distill_curves.png"
META = "student.json"
LOGIT_CACHE = "teacher_topk.safetensors"
ALIGN_LOSSES = ("kl", "ce", "none")


@dataclass
class DistillConfig(OptimOptions, LoraOptions):
    student: str = option("packaged:smollm2", "Student causal LM to finetune: local directory, hub id, .gguf file, or packaged:smollm2.")
    teacher: str = option("", "Teacher directory (train-teacher output; its adapter is merged). Empty: the shipped default teacher.")
    user_data: str = option("", "User finetuning data (JSONL chat records, e.g. the allowed.jsonl of a scan).")
    align_data: str = option("", "Alignment data (JSONL chat records: harmful prompt -> refusal, benign -> helpful reply).")
    out: str = option("student", "Output directory (adapter, student.json, log, plot).")
    align_loss: str = option("kl", "Loss on alignment batches: kl (distill to the teacher), ce (hard-label SFT), none (plain finetuning).", choices=ALIGN_LOSSES)
    align_fraction: float = option(0.25, "Fraction of optimizer steps that are alignment batches (the rest are user batches).")
    kd_weight: float = option(1.0, "λ: weight of the alignment loss.")
    temperature: float = option(2.0, "T: softmax temperature of the KL (the loss is scaled by T²).")
    teacher_logits: str = option("cached", "Teacher targets: 'cached' (top-k, computed once, safetensors) or 'online' (teacher forward every alignment step).",
                                 choices=("cached", "online"))
    topk: int = option(64, "Keep the teacher's top-k tokens (+ one tail bucket) per reply token; 0 = the full vocabulary (online only).")
    logit_cache: str = option("", "Top-k cache file (default: OUT/teacher_topk.safetensors); rebuilt when teacher, T, k or data differ.")
    steps: int = option(100, "Optimizer steps (user + alignment).")
    batch_size: int = option(8, "Pairs per user batch.")
    align_batch_size: int = option(8, "Pairs per alignment batch.")
    max_tokens: int = option(256, "Longest prompt in tokens (template included); longer ones are cut on the right.")
    reply_tokens: int = option(48, "Longest reply in tokens; longer replies are cut (the end-of-turn marker is kept).")
    log_every: int = option(10, "Write a log row every this many steps.")
    seed: int = option(0, "Seed of the batch order and the LoRA initialisation.")
    progress: bool = option(True, "Show a tqdm progress bar.")


QUICK = dict(steps=16, batch_size=4, align_batch_size=4, log_every=4)


# ---------------------------------------------------------------------------------------------- data


def load_pairs(path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """(ids, prompts, replies) of a JSONL file of chat records (`messages` or `conversations`: the first
    user turn and the assistant turn after it) or flat records ({text|prompt, reply|response|output})."""
    ids, prompts, replies = [], [], []
    path = Path(path)
    for where, rec in iter_jsonl(path):
        prompt, reply = _exchange(rec)
        if not (isinstance(prompt, str) and prompt.strip() and isinstance(reply, str) and reply.strip()):
            raise DataError(f"{where}: needs a user prompt and an assistant reply (messages, or text + reply)")
        ids.append(str(rec.get("id", where)))
        prompts.append(prompt)
        replies.append(reply)
    if not ids:
        raise DataError(f"{path}: no records")
    return ids, prompts, replies


def _exchange(rec) -> tuple:
    if not isinstance(rec, dict):
        return None, None
    turns = rec.get("messages") or rec.get("conversations")
    if isinstance(turns, list):
        roles = [(t.get("role") or t.get("from"), t.get("content") or t.get("value")) for t in turns if isinstance(t, dict)]
        for i, (role, text) in enumerate(roles):
            if role in ("user", "human"):
                nxt = roles[i + 1] if i + 1 < len(roles) else (None, None)
                return text, nxt[1] if nxt[0] in ("assistant", "gpt") else None
        return None, None
    return rec.get("text") or rec.get("prompt"), rec.get("reply") or rec.get("response") or rec.get("output")


def is_align_step(step: int, fraction: float) -> bool:
    """Step s is an alignment step iff floor((s+1)·f) > floor(s·f): exact count, evenly spread."""
    return int((step + 1) * fraction) > int(step * fraction)


def epoch_batch(n: int, size: int, i: int, seed: int, stream: int) -> list[int]:
    """Rows of the i-th batch in an endless sequence of seeded per-epoch permutations of range(n)."""
    start = i * size
    rows: list[int] = []
    while len(rows) < min(size, n):
        epoch, pos = divmod(start + len(rows), n)
        perm = np.random.default_rng([seed, stream, epoch]).permutation(n)
        take = min(size - len(rows), n - pos)
        rows += perm[pos : pos + take].tolist()
    return rows


# ------------------------------------------------------------------------------------------ teacher


def teacher_dir(cfg: DistillConfig) -> Path:
    if cfg.teacher:
        return Path(cfg.teacher)
    from reftguard.default_bundle import _shipped_teacher

    shipped = _shipped_teacher()
    if shipped is None:
        raise FileNotFoundError("no --teacher given and this install ships no default teacher; train one with `reftguard train-teacher`")
    return shipped


def check_same_vocab(student_tok, teacher_tok) -> None:
    """KL over tokens needs one vocabulary: same size and the same ids for a probe text."""
    probe = "Distillation probe: 123 apples, <|im_start|> ünïcödé ✓"
    if len(student_tok) != len(teacher_tok) or student_tok.encode(probe) != teacher_tok.encode(probe):
        raise ValueError("the student and the teacher use different tokenizers; distillation over tokens needs the same vocabulary")


def teacher_id(root: Path) -> str:
    """What the logit cache is bound to: the teacher's metadata and adapter bytes."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and (f.name == "teacher.json" or "adapter" in f.parts):
            h.update(f.read_bytes())
    return h.hexdigest()[:24]


def build_cache(teacher_lm, pairs, pad: int, temperature: float, topk: int, batch_size: int, meta: dict):
    """Top-k targets of every alignment pair from one no-grad pass of the teacher."""
    import torch

    from reftguard.training import kd, sft

    per: list = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            ids, mask, labels = (torch.from_numpy(a) for a in sft.collate(chunk, pad))
            logits, _ = sft.reply_logits(teacher_lm, ids, mask, labels)
            t = kd.teacher_targets(logits, temperature, topk)
            off = 0
            for p in chunk:
                n = len(p.ids) - p.n_prompt  # reply tokens of this pair, in row-major order
                per.append(kd.Targets(t.logp[off : off + n], t.idx[off : off + n], t.tail[off : off + n]))
                off += n
    return kd.LogitCache(per, meta)


# ------------------------------------------------------------------------------------------- the loop


def distill(cfg: DistillConfig, command: str = "") -> dict:
    import torch
    from accelerate import Accelerator
    from tqdm import tqdm

    from reftguard.training import kd, sft
    from reftguard.training.generation import prompt_encoder
    from reftguard.modeling.loading import load_causal_lm, torch_threads
    from reftguard.modeling.teacher import Teacher

    if not cfg.user_data:
        raise ValueError("no user data: pass --user-data FILTERED.jsonl")
    if not 0.0 <= cfg.align_fraction < 1.0:
        raise ValueError(f"align_fraction must be in [0, 1), got {cfg.align_fraction}")
    aligning = cfg.align_loss != "none" and cfg.align_fraction > 0
    if aligning and not cfg.align_data:
        raise ValueError(f"align_loss={cfg.align_loss} needs --align-data SAFETY.jsonl (or --align-loss none)")
    if cfg.teacher_logits == "cached" and cfg.topk <= 0 and cfg.align_loss == "kl":
        raise ValueError("a cached teacher needs --topk > 0 (the full vocabulary per token is too large to cache)")
    torch_threads()
    acc = Accelerator(cpu=not torch.cuda.is_available())
    dev, rank = acc.device, acc.process_index
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).unlink(missing_ok=True)

    # 1-2. student, prompt format, pairs
    torch.manual_seed(cfg.seed)
    student, tok = load_causal_lm(cfg.student)
    enc = prompt_encoder(tok, cfg.max_tokens)  # the serving encoder; the student dir needs no tokenizer copy
    end, pad = sft.turn_end(tok), tok.pad_token_id
    _, up, ur = load_pairs(cfg.user_data)
    user_pairs = sft.encode_pairs(enc, up, ur, end, cfg.reply_tokens)
    align_pairs = []
    if aligning:
        _, ap, ar = load_pairs(cfg.align_data)
        align_pairs = sft.encode_pairs(enc, ap, ar, end, cfg.reply_tokens)

    # teacher targets
    teacher_lm, cache, teacher_seconds = None, None, 0.0
    tdir = None
    if aligning and cfg.align_loss == "kl":
        tdir = teacher_dir(cfg)
        t1 = time.time()
        meta = {"teacher": teacher_id(tdir), "temperature": cfg.temperature, "topk": cfg.topk, "pairs": kd.pairs_key(align_pairs)}
        cache_path = Path(cfg.logit_cache) if cfg.logit_cache else out / LOGIT_CACHE
        if cfg.teacher_logits == "cached":
            cache = kd.LogitCache.load(cache_path, meta)
        if cache is None:
            teacher_lm, ttok = Teacher.load(tdir).load_model()
            check_same_vocab(tok, ttok)
            teacher_lm.to(dev)
            if cfg.teacher_logits == "cached":
                log.info("caching top-%d teacher targets for %d alignment pairs in %s", cfg.topk, len(align_pairs), cache_path)
                cache = build_cache(teacher_lm, align_pairs, pad, cfg.temperature, cfg.topk, 16, meta)
                cache.save(cache_path)
                teacher_lm = None  # the cache replaces the teacher: free its memory before training
        teacher_seconds = time.time() - t1

    # 3. trainable student
    model, params = wrap_trainable(student, cfg, cfg.seed, None)  # every layer: the student learns a task, not one feature
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.to(dev)
    base.train()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # 4. the loop
    rows: list[dict] = []
    window: dict[str, list[float]] = {}
    counts = {"user": 0, "align": 0}
    bar = tqdm(range(cfg.steps), disable=not cfg.progress or not acc.is_main_process, desc=f"distill[{cfg.align_loss}]")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        kind = "align" if aligning and is_align_step(step, cfg.align_fraction) else "user"
        pool, size = (align_pairs, cfg.align_batch_size) if kind == "align" else (user_pairs, cfg.batch_size)
        pick = epoch_batch(len(pool), size, counts[kind] * acc.num_processes + rank, cfg.seed, 1 if kind == "align" else 0)
        counts[kind] += 1
        input_ids, mask, labels = (torch.from_numpy(a).to(dev) for a in sft.collate([pool[j] for j in pick], pad))
        if kind == "user":
            loss = sft.reply_loss(base, input_ids, mask, labels)
            add(window, task_loss=loss.item())
        elif cfg.align_loss == "ce":
            ce = sft.reply_loss(base, input_ids, mask, labels)
            loss = cfg.kd_weight * ce
            add(window, align_ce=ce.item())
        else:
            logits, _ = sft.reply_logits(base, input_ids, mask, labels)
            if cache is not None:
                targets = cache.batch(pick)
                targets = kd.Targets(targets.logp.to(dev), targets.idx.to(dev), targets.tail.to(dev))
            else:
                with torch.no_grad():
                    tl, _ = sft.reply_logits(teacher_lm, input_ids, mask, labels)
                targets = kd.teacher_targets(tl, cfg.temperature, cfg.topk)
            kl = kd.kd_loss(logits, targets, cfg.temperature)
            loss = cfg.kd_weight * kl
            add(window, align_kl=kl.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if acc.num_processes > 1:
            for p in params:
                if p.grad is not None:
                    p.grad = acc.reduce(p.grad, reduction="mean")
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            row = {"step": done, "lr": lr_at(cfg, step), "seconds": round(time.time() - t0, 1), "user_batches": counts["user"],
                   "align_batches": counts["align"]} | {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            rows.append(row)
            if acc.is_main_process:
                write_rows(out / LOG_FILE, [row])
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("task_loss", "align_kl", "align_ce") if k in row})
    bar.close()

    # 5. the student directory
    summary = {
        "method": {"kl": "filter + alignment distillation (KL to the ReFT teacher)", "ce": "finetuning + hard-label SFT on alignment data",
                   "none": "plain finetuning"}[cfg.align_loss if aligning else "none"],
        "command": command,
        "config": asdict(cfg) | {"teacher": str(tdir) if tdir else cfg.teacher},
        "user_pairs": len(user_pairs),
        "align_pairs": len(align_pairs),
        "batches": counts,
        "teacher_targets_seconds": round(teacher_seconds, 2),
        "seconds": round(time.time() - t0, 1),
        "final": rows[-1] if rows else {},
        "log": LOG_FILE,
        "plot": PLOT_FILE,
    }
    if not acc.is_main_process:
        return summary
    if cfg.full_finetune:
        base.save_pretrained(out / "model")
        summary |= {"model": str((out / "model").resolve()), "adapter": None}
    else:
        round_to_saved_dtype(params, cfg.adapter_dtype)
        model.save_pretrained(str(out / "adapter"))
        finish_adapter(out / "adapter", cfg.student, half=cfg.adapter_dtype == "float16")
        summary |= {"model": cfg.student, "adapter": "adapter"}
    plot(rows, (("losses", ("task_loss", "align_kl", "align_ce")), ("batches", ("user_batches", "align_batches"))), out / PLOT_FILE)
    (out / META).write_text(json.dumps(summary, indent=2) + "\n")
    log.info("student written to %s in %.0fs (%d user / %d alignment batches)", out, summary["seconds"], counts["user"], counts["align"])
    return summary


def load_student(ref: str):
    """(model, tokenizer) for a `distill` output directory (base + merged adapter), a teacher directory,
    or any model reference."""
    from reftguard.modeling.loading import load_causal_lm
    from reftguard.modeling.teacher import META as TEACHER_META
    from reftguard.modeling.teacher import Teacher

    root = Path(ref)
    if (root / TEACHER_META).is_file():
        return Teacher.load(root).load_model()
    if not (root / META).is_file():
        return load_causal_lm(ref)
    meta = json.loads((root / META).read_text())
    model, tok = load_causal_lm(meta["model"])
    if meta.get("adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(root / meta["adapter"])).merge_and_unload()
        model.eval()
    return model, tok
