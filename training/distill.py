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
  5. log (JSONL + plot + tqdm) and checkpoint every N steps (trainable weights, optimizer, step, batch
     counts: a rerun resumes and equals an uninterrupted run); then save the adapter and student.json
     for `reftguard evaluate-model`.

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

from reftguard.config import option, portable
from reftguard.data import DataError, iter_jsonl
from reftguard.training import sft
from reftguard.training.common import (LoraOptions, OptimOptions, RunLog, RunOptions, accelerator, checkpoint_and_stop, config_key,
                                       log_step, lr_at, optimizer_step, plot, progress, resume_checkpoint, save_trainable, setup_model)

log = logging.getLogger("reftguard.distill")

LOG_FILE = "distill_log.jsonl"
PLOT_FILE = "distill_curves.png"
META = "student.json"
LOGIT_CACHE = "teacher_topk.safetensors"
CHECKPOINT = "checkpoint.pt"
ALIGN_LOSSES = ("kl", "ce", "none")


@dataclass
class DistillConfig(OptimOptions, LoraOptions, RunOptions):
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


QUICK = dict(steps=16, batch_size=4, align_batch_size=4, log_every=4)


# ---------------------------------------------------------------------------------------------- data


def load_pairs(path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """(ids, prompts, replies) of a JSONL file of chat records (`messages` or `conversations`: the first
    user turn and the assistant turn after it) or flat records ({text|prompt, reply|response|output})."""
    ids, prompts, replies = [], [], []
    path = Path(path)
    for where, rec in iter_jsonl(path):
        prompt, reply = sft.record_exchange(rec)
        if not (isinstance(prompt, str) and prompt.strip() and isinstance(reply, str) and reply.strip()):
            raise DataError(f"{where}: needs a user prompt and an assistant reply (messages, or text + reply)")
        ids.append(str(rec.get("id", where)))
        prompts.append(prompt)
        replies.append(reply)
    if not ids:
        raise DataError(f"{path}: no records")
    return ids, prompts, replies


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
    from reftguard.default_bundle import shipped_teacher

    shipped = shipped_teacher()
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


def teacher_record(root: str | Path) -> dict:
    """What identifies the teacher a run used, for result files: its directory, the sha256 of its adapter
    weights, the sha256 of every file in it (path and bytes) and the id the logit cache is bound to."""
    import hashlib

    root = Path(root)
    content = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        content.update(f.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    meta = json.loads((root / "teacher.json").read_text()) if (root / "teacher.json").is_file() else {}
    weights = root / meta["adapter"] / "adapter_model.safetensors" if meta.get("adapter") else None
    return {"dir": portable(str(root.resolve())), "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights and weights.is_file() else None,
            "content_sha256": content.hexdigest(), "cache_id": teacher_id(root)}


def build_cache(teacher_lm, pairs, pad: int, temperature: float, topk: int, batch_size: int, meta: dict):
    """Top-k targets of every alignment pair from one no-grad pass of the teacher."""
    import torch

    from reftguard.training import kd

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


@dataclass
class TeacherTargets:
    """KL targets for alignment batches: rows of the top-k cache, or the teacher run on the batch (online)."""

    root: Path
    record: dict | None = None  # teacher_record(root), taken when the teacher was read
    cache: object = None  # kd.LogitCache
    teacher_lm: object = None
    seconds: float = 0.0

    @classmethod
    def load(cls, cfg: DistillConfig, out: Path, tok, pairs, pad: int, dev) -> "TeacherTargets":
        from reftguard.modeling.teacher import Teacher
        from reftguard.training import kd

        t = cls(teacher_dir(cfg))
        t.record = teacher_record(t.root)
        t1 = time.time()
        meta = {"teacher": t.record["cache_id"], "temperature": cfg.temperature, "topk": cfg.topk, "pairs": kd.pairs_key(pairs)}
        cache_path = Path(cfg.logit_cache) if cfg.logit_cache else out / LOGIT_CACHE
        if cfg.teacher_logits == "cached":
            t.cache = kd.LogitCache.load(cache_path, meta)
        if t.cache is None:
            t.teacher_lm, ttok = Teacher.load(t.root).load_model()
            check_same_vocab(tok, ttok)
            t.teacher_lm.to(dev)
            if cfg.teacher_logits == "cached":
                log.info("caching top-%d teacher targets for %d alignment pairs in %s", cfg.topk, len(pairs), cache_path)
                t.cache = build_cache(t.teacher_lm, pairs, pad, cfg.temperature, cfg.topk, 16, meta)
                t.cache.save(cache_path)
                t.teacher_lm = None  # the cache replaces the teacher: free its memory before training
        t.seconds = time.time() - t1
        return t

    def batch(self, pick: list[int], input_ids, mask, labels, cfg: DistillConfig):
        import torch

        from reftguard.training import kd

        if self.cache is not None:
            cached = self.cache.batch(pick)
            return kd.Targets(cached.logp.to(input_ids.device), cached.idx.to(input_ids.device), cached.tail.to(input_ids.device))
        with torch.no_grad():
            tl, _ = sft.reply_logits(self.teacher_lm, input_ids, mask, labels)
        return kd.teacher_targets(tl, cfg.temperature, cfg.topk)


# ------------------------------------------------------------------------------------------- the loop


def batch_loss(cfg: DistillConfig, kind: str, base, batch, pick: list[int], targets: TeacherTargets | None, run: RunLog):
    """The loss of one batch: CE on reply tokens for user batches; for alignment batches, λ·CE (ce) or
    λ·T²·KL(teacher ‖ student) on the same reply tokens (kl)."""
    from reftguard.training import kd

    input_ids, mask, labels = batch
    if kind == "user":
        loss = sft.reply_loss(base, input_ids, mask, labels)
        run.add(task_loss=loss.item())
        return loss
    if cfg.align_loss == "ce":
        ce = sft.reply_loss(base, input_ids, mask, labels)
        run.add(align_ce=ce.item())
        return cfg.kd_weight * ce
    logits, _ = sft.reply_logits(base, input_ids, mask, labels)
    kl = kd.kd_loss(logits, targets.batch(pick, input_ids, mask, labels, cfg), cfg.temperature)
    run.add(align_kl=kl.item())
    return cfg.kd_weight * kl


def _check(cfg: DistillConfig) -> bool:
    """Refuse inconsistent options; whether alignment batches run at all."""
    if not cfg.user_data:
        raise ValueError("no user data: pass --user-data FILTERED.jsonl")
    if not 0.0 <= cfg.align_fraction < 1.0:
        raise ValueError(f"align_fraction must be in [0, 1), got {cfg.align_fraction}")
    aligning = cfg.align_loss != "none" and cfg.align_fraction > 0
    if aligning and not cfg.align_data:
        raise ValueError(f"align_loss={cfg.align_loss} needs --align-data SAFETY.jsonl (or --align-loss none)")
    if cfg.teacher_logits == "cached" and cfg.topk <= 0 and cfg.align_loss == "kl":
        raise ValueError("a cached teacher needs --topk > 0 (the full vocabulary per token is too large to cache)")
    return aligning


def _config_key(cfg: DistillConfig) -> dict:
    """Fields that must match for a checkpoint to be resumed (the run length and logging may change)."""
    return config_key(cfg, {"steps", "stop_at", "resume", "progress", "out", "log_every", "checkpoint_every", "logit_cache"})


def distill(cfg: DistillConfig, command: str = "") -> dict | None:
    import torch

    from reftguard.modeling.loading import load_causal_lm
    from reftguard.training.generation import prompt_encoder

    aligning = _check(cfg)
    acc = accelerator()
    dev, rank = acc.device, acc.process_index
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run = RunLog(out / LOG_FILE, acc.is_main_process)

    # 1-2. student, prompt format, pairs, teacher targets
    torch.manual_seed(cfg.seed)
    student, tok = load_causal_lm(cfg.student)
    enc = prompt_encoder(tok, cfg.max_tokens)  # the serving encoder; the student dir needs no tokenizer copy
    end, pad = sft.turn_end(tok), tok.pad_token_id
    user_pairs = sft.encode_pairs(enc, *load_pairs(cfg.user_data)[1:], end, cfg.reply_tokens)
    align_pairs = sft.encode_pairs(enc, *load_pairs(cfg.align_data)[1:], end, cfg.reply_tokens) if aligning else []
    targets = TeacherTargets.load(cfg, out, tok, align_pairs, pad, dev) if aligning and cfg.align_loss == "kl" else None

    # 3. trainable student (LoRA on every layer: the student learns a task, not one feature); resume
    t = setup_model(student, cfg, cfg.seed, None, dev)
    ck, match = out / CHECKPOINT, {"config_key": _config_key(cfg)}
    blob = resume_checkpoint(ck, t, run, match) if cfg.resume else None
    if blob is None:
        run.path.unlink(missing_ok=True)
    start, counts = (blob["step"], blob["counts"]) if blob else (0, {"user": 0, "align": 0})

    # 4. the loop
    bar = progress(start, cfg.steps, cfg.progress and acc.is_main_process, f"distill[{cfg.align_loss}]")
    for step in bar:
        kind = "align" if aligning and is_align_step(step, cfg.align_fraction) else "user"
        pool, size = (align_pairs, cfg.align_batch_size) if kind == "align" else (user_pairs, cfg.batch_size)
        pick = epoch_batch(len(pool), size, counts[kind] * acc.num_processes + rank, cfg.seed, 1 if kind == "align" else 0)
        counts[kind] += 1
        batch = tuple(torch.from_numpy(a).to(dev) for a in sft.collate([pool[j] for j in pick], pad))
        optimizer_step(t, batch_loss(cfg, kind, t.base, batch, pick, targets, run), acc, cfg, step)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            log_step(run, done, lr_at(cfg, step), head={"user_batches": counts["user"], "align_batches": counts["align"]}, bar=bar,
                     show=("task_loss", "align_kl", "align_ce"))
        if checkpoint_and_stop(cfg, done, ck, t, run, match, counts=dict(counts)):
            return None
    bar.close()

    # 5. the student directory
    summary = {
        "method": {"kl": "filter + alignment distillation (KL to the ReFT teacher)", "ce": "finetuning + hard-label SFT on alignment data",
                   "none": "plain finetuning"}[cfg.align_loss if aligning else "none"],
        "command": command,
        "config": asdict(cfg) | {"teacher": str(targets.root) if targets else cfg.teacher},
        "user_pairs": len(user_pairs),
        "align_pairs": len(align_pairs),
        "teacher": targets.record if targets else None,
        "batches": counts,
        "teacher_targets_seconds": round(targets.seconds if targets else 0.0, 2),
        "seconds": run.seconds(),
        "final": run.rows[-1] if run.rows else {},
        "log": LOG_FILE,
        "plot": PLOT_FILE,
    }
    return save_student(cfg, out, t, run, summary) if acc.is_main_process else summary


def save_student(cfg: DistillConfig, out: Path, t, run: RunLog, summary: dict) -> dict:
    """Adapter (or model), plot and student.json; drops the checkpoint."""
    model_ref, adapter = save_trainable(t, cfg, out, cfg.student)
    summary |= {"model": model_ref, "adapter": adapter}
    plot(run.rows, (("losses", ("task_loss", "align_kl", "align_ce")), ("batches", ("user_batches", "align_batches"))), out / PLOT_FILE)
    (out / META).write_text(json.dumps(summary, indent=2) + "\n")
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: the checkpoint would only be resumed into a no-op
    log.info("student written to %s in %.0fs (%d user / %d alignment batches)", out, summary["seconds"], summary["batches"]["user"],
             summary["batches"]["align"])
    return summary


def load_student(ref: str):
    """(model, tokenizer) for a `distill` output directory (base + merged adapter), a teacher directory,
    or any model reference."""
    from reftguard.modeling.loading import load_causal_lm, load_merged
    from reftguard.modeling.teacher import META as TEACHER_META
    from reftguard.modeling.teacher import Teacher

    root = Path(ref)
    if (root / TEACHER_META).is_file():
        return Teacher.load(root).load_model()
    if not (root / META).is_file():
        return load_causal_lm(ref)
    meta = json.loads((root / META).read_text())
    return load_merged(meta["model"], root / meta["adapter"] if meta.get("adapter") else None)
