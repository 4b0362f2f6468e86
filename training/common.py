"""Pieces shared by the training recipes (teacher training, distillation): LoRA and optimizer options,
the trainable wrapper, the per-step random generator, the JSONL log and its plot, adapter finishing."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.config import option

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

    torch.manual_seed(seed)  # LoRA A is random: seed it for reproducible runs
    lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=list(cfg.lora_targets),
                      layers_to_transform=layers, bias="none")
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
