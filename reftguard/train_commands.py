"""Handler of `reftguard train-teacher` (kept apart from reftguard/commands.py: it needs the train extra)."""
from __future__ import annotations

import argparse
import shlex
import sys

from reftguard.config import add_dataclass_args, from_args


def train_teacher_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.teacher_train import TrainConfig

    p.add_argument("--quick", action="store_true",
                   help="A short run (about 3 minutes on 2 CPU cores) for trying the recipe; flags given explicitly still win.")
    add_dataclass_args(p, TrainConfig, group="train-teacher")


def quick_config(ns: argparse.Namespace, argv: list[str]):
    """TrainConfig from the parsed flags; with --quick, QUICK values replace defaults not given on the command line."""
    from reftguard.training.teacher_train import QUICK, TrainConfig

    cfg = from_args(TrainConfig, ns)
    if getattr(ns, "quick", False):
        given = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
        for k, v in QUICK.items():
            if k not in given:
                setattr(cfg, k, v)
    return cfg


def train_teacher(ns) -> int:
    from reftguard.training.teacher_train import train

    cfg = quick_config(ns, sys.argv[1:])
    command = "reftguard " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t = train(cfg, command=command)
    if t is None:
        print(f"stopped at step {cfg.stop_at}; rerun the same command without --stop-at to resume from {cfg.out}/checkpoint.pt")
        return 0
    held = t.record["holdout_at_layer"]
    print(f"teacher written to {cfg.out}: layer {t.layer}, {t.record['refreshes']} R_l refreshes, "
          f"held-back AUROC {held['auroc']:.4f}, recall@1%FPR {held['recall_at_1pct_fpr']:.4f}, {t.record['seconds']:.0f}s")
    print(f"next: reftguard export --teacher {cfg.out} --out BUNDLE")
    return 0
