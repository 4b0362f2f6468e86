"""Handler of `reftguard train-teacher` (kept apart from reftguard/commands.py: it needs the train extra)."""
from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import asdict

# Before torch loads OpenMP: busy-waiting worker threads make training many times slower on a machine
# whose cores are shared with other jobs (measured: 2 threads 3.5x slower than 1 under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reftguard.config import add_dataclass_args, from_args


def train_teacher_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.teacher_train import TrainConfig

    p.add_argument("--quick", action="store_true",
                   help="A short run (about 3 minutes on 2 CPU cores) for trying the recipe; options you set to non-default values still win.")
    add_dataclass_args(p, TrainConfig, group="train-teacher")


def _defaults() -> dict:
    from reftguard.training.teacher_train import TrainConfig

    return asdict(TrainConfig())


def quick_config(ns: argparse.Namespace):
    """TrainConfig from the parsed flags; with --quick, QUICK values replace options still at their default."""
    from reftguard.training.teacher_train import QUICK, TrainConfig

    cfg = from_args(TrainConfig, ns)
    if getattr(ns, "quick", False):
        defaults = _defaults()
        for k, v in QUICK.items():
            if getattr(cfg, k) == defaults[k]:
                setattr(cfg, k, v)
    return cfg


def command_line(cfg) -> str:
    """The `reftguard train-teacher` command that reproduces `cfg` (every non-default option spelled out,
    whether it came from a flag, an env var or --quick)."""
    defaults = _defaults()
    parts = ["reftguard", "train-teacher"]
    for k, v in asdict(cfg).items():
        if v == defaults[k] or k == "progress":
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            parts += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def train_teacher(ns) -> int:
    from reftguard.training.teacher_train import train

    cfg = quick_config(ns)
    t = train(cfg, command=command_line(cfg))
    if t is None:
        print(f"stopped at step {cfg.stop_at}; rerun the same command without --stop-at to resume from {cfg.out}/checkpoint.pt")
        return 0
    held = t.record["holdout_at_layer"]
    print(f"teacher written to {cfg.out}: layer {t.layer}, {t.record['refreshes']} R_l refreshes, "
          f"held-back AUROC {held['auroc']:.4f}, recall@1%FPR {held['recall_at_1pct_fpr']:.4f}, {t.record['seconds']:.0f}s")
    print(f"next: reftguard export --teacher {cfg.out} --out BUNDLE")
    return 0
