"""Pieces shared by the training recipes (teacher training, distillation), in the torchtune style: the
recipe files read top to bottom and call these for the parts that are the same in both.

    setup_model          LoRA (or full) wrapping, device, AdamW                 -> Trainable
    optimizer_step       warm-up lr, zero_grad, backward, all-reduce, clip, step
    RunLog / log_step    values per step, averaged into JSONL rows (+ the tqdm postfix)
    checkpoint_and_stop  trainable weights, optimizer, step, log, every N steps and at --stop-at;
                         resume_checkpoint loads them back
    save_trainable       the adapter (or full model) a finished run leaves behind
plus the LoRA, optimizer and run options, the per-step random generator and the plot.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reftguard.config import option

log = logging.getLogger("reftguard.training")

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class OptimOptions:
    lr: float = option(1e-3, "Peak learning rate (AdamW).")
    warmup: int = option(10, "Linear warm-up steps; constant learning rate after.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    grad_clip: float = option(1.0, "Clip the gradient norm to this (0 = off).")


@dataclass
class LoraOptions:
    full_finetune: bool = option(False, "Train all weights instead of a LoRA adapter (large output).")
    lora_rank: int = option(8, "LoRA rank.")
    lora_alpha: float = option(16.0, "LoRA alpha (the update is scaled by alpha / rank).")
    lora_targets: list = option(ALL_PROJECTIONS, "Module names LoRA adapts (comma-separated).")
    adapter_dtype: str = option("float16", "dtype the adapter is saved in ('float16' halves its size; 'float32').", choices=("float16", "float32"))


@dataclass
class RunOptions:
    checkpoint_every: int = option(20, "Save a resumable checkpoint (trainable weights, optimizer, step, log) every this many steps (0 = only at --stop-at); a finished run deletes it.")
    resume: bool = option(True, "Resume from OUT/checkpoint.pt when it exists and matches this config.")
    stop_at: int = option(0, "Stop after this step with a checkpoint, without finishing (simulates an interruption).")
    progress: bool = option(True, "Show a tqdm progress bar.")


def lr_at(cfg: OptimOptions, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def step_rng(seed: int, step: int, rank: int, stream: int) -> np.random.Generator:
    """A generator that depends only on (seed, step, rank, stream): resume needs no sampler state."""
    return np.random.default_rng([seed, step, rank, stream])


def wrap_trainable(lm, cfg: LoraOptions, seed: int, layers: list[int] | None):
    """(model to save, trainable parameters): LoRA on `layers` (None: every layer), or all weights."""
    import torch

    if cfg.full_finetune:
        params = list(lm.parameters())
        for p in params:
            p.requires_grad_(True)
        return lm, params
    from peft import LoraConfig, get_peft_model

    from reftguard.modeling.loading import quiet_peft

    torch.manual_seed(seed)  # LoRA A is random: seed it for reproducible runs
    lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=list(cfg.lora_targets),
                      layers_to_transform=layers, bias="none")
    with quiet_peft():
        peft_model = get_peft_model(lm, lcfg)
    return peft_model, [p for p in peft_model.parameters() if p.requires_grad]


def round_to_saved_dtype(params, adapter_dtype: str) -> None:
    """Round trainable weights to what is saved, so anything measured after this sees the shipped weights."""
    import torch

    if adapter_dtype == "float16":
        with torch.no_grad():
            for p in params:
                p.copy_(p.half().float())


def finish_adapter(adapter_dir: Path, model_ref: str, half: bool) -> None:
    """Make a saved adapter portable and small: name the base model by its reftguard reference instead of
    this machine's path, drop peft's boilerplate README, and store the weights in float16 if asked."""
    from safetensors.torch import load_file, save_file

    conf = adapter_dir / "adapter_config.json"
    meta = json.loads(conf.read_text())
    meta["base_model_name_or_path"] = model_ref
    conf.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (adapter_dir / "README.md").unlink(missing_ok=True)
    if half:
        f = adapter_dir / "adapter_model.safetensors"
        save_file({k: v.half().contiguous() for k, v in load_file(str(f)).items()}, str(f), metadata={"format": "pt"})


def compact_tokenizer(tokenizer_dir: Path) -> None:
    """Rewrite tokenizer.json without indentation (same tokenizer): SmolLM2's drops from 3.5 MB to 1.6 MB."""
    from tokenizers import Tokenizer

    f = tokenizer_dir / "tokenizer.json"
    Tokenizer.from_file(str(f)).save(str(f), pretty=False)


def add(window: dict, **kv: float) -> None:
    """Accumulate values for the next log row (averaged when it is written)."""
    for k, v in kv.items():
        window.setdefault(k, []).append(v)


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def plot(rows: list[dict], panels, path: Path) -> None:
    """One panel per (title, keys): each key's values against step (rows marked final are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None and not r.get("final")]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------- the train loop


def accelerator():
    """Accelerate used thinly: the device and rank (CPU when there is no GPU), every core for torch."""
    import torch
    from accelerate import Accelerator

    from reftguard.modeling.loading import torch_threads

    torch_threads()
    return Accelerator(cpu=not torch.cuda.is_available())


@dataclass
class Trainable:
    """A model under training: `model` is what gets saved (the peft wrapper, or the model itself when
    fully finetuned), `base` the causal LM inside it (LoRA layers injected) on the device in train mode."""

    model: Any
    base: Any
    params: list
    opt: Any

    def state(self) -> dict:
        """The trainable weights by parameter name (what a checkpoint carries)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return {names[id(p)]: p.detach().clone() for p in self.params}

    def load_state(self, state: dict) -> None:
        import torch

        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, t in state.items():
                named[n].copy_(t)


def setup_model(lm, cfg, seed: int, layers: list[int] | None, device) -> Trainable:
    """Wrap `lm` for training (cfg: LoraOptions + OptimOptions), move it to `device`, build AdamW."""
    import torch

    model, params = wrap_trainable(lm, cfg, seed, layers)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.to(device)
    base.train()
    return Trainable(model, base, params, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay))


def optimizer_step(t: Trainable, loss, acc, cfg: OptimOptions, step: int) -> None:
    """One update: the warm-up learning rate of `step`, then zero_grad, backward, the mean of the
    gradients over ranks (the model is not DDP-wrapped: recipes run submodules of it directly), clip, step."""
    import torch

    for g in t.opt.param_groups:
        g["lr"] = lr_at(cfg, step)
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    if acc.num_processes > 1:
        for p in t.params:
            if p.grad is not None:
                p.grad = acc.reduce(p.grad, reduction="mean")
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(t.params, cfg.grad_clip)
    t.opt.step()


@dataclass
class RunLog:
    """A run's JSONL log: values added since the last row (`window`), the rows so far, the wall clock
    (`t0` is moved back on resume so `seconds` covers every session of the run)."""

    path: Path
    main: bool  # only the main process writes files
    t0: float = field(default_factory=time.time)
    rows: list = field(default_factory=list)
    window: dict = field(default_factory=dict)

    def add(self, **kv: float) -> None:
        add(self.window, **kv)

    def seconds(self) -> float:
        return round(time.time() - self.t0, 1)

    def append(self, row: dict) -> dict:
        self.rows.append(row)
        if self.main:
            write_rows(self.path, [row])
        return row


def log_step(run: RunLog, step: int, lr: float, head: dict | None = None, tail: dict | None = None, bar=None, show=()) -> dict:
    """Write the row of `step`: step, lr, seconds, `head`, the window's means, `tail`; clear the window."""
    row = {"step": step, "lr": lr, "seconds": run.seconds()} | (head or {})
    row |= {k: float(np.mean(v)) for k, v in run.window.items()} | (tail or {})
    run.window = {}
    if bar is not None:
        bar.set_postfix({k: f"{row[k]:.3f}" for k in show if k in row})
    return run.append(row)


def progress(start: int, steps: int, show: bool, desc: str):
    from tqdm import tqdm

    return tqdm(range(start, steps), initial=start, total=steps, disable=not show, desc=desc)


def config_key(cfg, skip: set[str]) -> dict:
    """The config fields a checkpoint must match to be resumed (`skip`: what may change between sessions)."""
    return {k: v for k, v in asdict(cfg).items() if k not in skip}


def save_checkpoint(path: Path, step: int, t: Trainable, run: RunLog, match: dict, **extra) -> None:
    """Everything a resumed run needs besides the config: trainable weights, optimizer, step, log rows and
    the open window; `match` is compared on resume, `extra` is the recipe's own state."""
    import torch

    if run.main:
        torch.save({"step": step, "trainable": t.state(), "optimizer": t.opt.state_dict(), **extra, "rows": run.rows,
                    "window": run.window, **match, "seconds": time.time() - run.t0}, path)


def checkpoint_and_stop(cfg: RunOptions, done: int, path: Path, t: Trainable, run: RunLog, match: dict, **extra) -> bool:
    """Checkpoint after step `done` when due (every cfg.checkpoint_every steps, and at --stop-at); True
    when the run stops here."""
    if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.stop_at:
        save_checkpoint(path, done, t, run, match, **extra)
    if done == cfg.stop_at:
        log.info("stopped at step %d (checkpoint %s)", done, path)
        return True
    return False


def resume_checkpoint(path: Path, t: Trainable, run: RunLog, match: dict) -> dict | None:
    """Load `path` into `t` and `run` if it exists; the checkpoint (for the recipe's own state) or None.
    A checkpoint written under a different `match` is refused: resuming it would mix two runs."""
    import torch

    if not path.is_file():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if any(blob.get(k) != v for k, v in match.items()):
        raise ValueError(f"{path} was written by a different config; remove it or use --no-resume to start over")
    t.load_state(blob["trainable"])
    t.opt.load_state_dict(blob["optimizer"])
    run.rows, run.window = blob["rows"], blob.get("window", {})
    run.t0 -= blob.get("seconds", 0.0)
    log.info("resumed from %s at step %d", path, blob["step"])
    return blob


def save_trainable(t: Trainable, cfg, out: Path, model_ref: str) -> tuple[str, str | None]:
    """Save what a finished run trained: the full model (out/model) or the adapter (out/adapter, rounded to
    and stored in cfg.adapter_dtype). Returns (model reference to load, adapter dir name or None)."""
    if cfg.full_finetune:
        t.base.save_pretrained(out / "model")
        return str((out / "model").resolve()), None
    round_to_saved_dtype(t.params, cfg.adapter_dtype)  # anything measured after this sees the shipped weights
    t.model.save_pretrained(str(out / "adapter"))
    finish_adapter(out / "adapter", model_ref, half=cfg.adapter_dtype == "float16")
    return model_ref, "adapter"
