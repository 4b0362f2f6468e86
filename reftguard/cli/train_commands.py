"""Handlers of the training commands: train-teacher, soup-teacher, make-data, distill, evaluate-model, pipeline
(kept apart from commands.py: they need the train extra)."""
from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import asdict

# Before torch loads OpenMP: busy-waiting worker threads make training many times slower on a machine
# whose cores are shared with other jobs (measured: 2 threads 3.5x slower than 1 under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reftguard.config import add_dataclass_args, from_args, portable


def train_teacher_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.teacher_train import TrainConfig

    p.add_argument("--recipe", default=None, metavar="FILE",
                   help="TOML file of options (option names as keys, e.g. `steps = 200`): they replace the defaults, and flags "
                        "given here still win. recipes/teacher-stage1.toml and recipes/teacher-stage2.toml reproduce the shipped teacher.")
    p.add_argument("--quick", action="store_true",
                   help="A short run (about 3 minutes on 2 CPU cores) for trying the recipe; options you set to non-default values still win.")
    add_dataclass_args(p, TrainConfig, group="train-teacher")


def with_quick(cfg, quick: dict, enabled: bool):
    """With --quick, the `quick` values replace the options of `cfg` that are still at their default
    (so options set by flag or recipe win)."""
    if enabled:
        defaults = asdict(type(cfg)())
        for k, v in quick.items():
            if getattr(cfg, k) == defaults[k]:
                setattr(cfg, k, v)
    return cfg


def quick_config(ns: argparse.Namespace):
    """TrainConfig from the parsed flags (with --quick applied)."""
    from reftguard.training.teacher_train import QUICK, TrainConfig

    return with_quick(from_args(TrainConfig, ns), QUICK, getattr(ns, "quick", False))


def command_line(*cfgs, name: str = "train-teacher") -> str:
    """The `reftguard NAME` command that reproduces `cfgs` (every non-default option spelled out,
    whether it came from a flag, a recipe or --quick)."""
    parts = ["reftguard", name]
    for cfg in cfgs:
        parts += _flags(cfg)
    return " ".join(shlex.quote(p) for p in parts)


def _flags(cfg) -> list[str]:
    defaults = asdict(type(cfg)())
    parts: list[str] = []
    for k, v in asdict(cfg).items():
        if v == defaults[k] or k == "progress":
            continue
        flag = "--" + k.replace("_", "-")
        v = portable(v)
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            parts += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return parts


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


def soup_teacher_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.soup import SoupConfig

    add_dataclass_args(p, SoupConfig, group="soup-teacher")


def soup_teacher(ns) -> int:
    from reftguard.training.soup import SoupConfig, soup_teacher

    cfg = from_args(SoupConfig, ns)
    t = soup_teacher(cfg, command=command_line(cfg, name="soup-teacher"))
    print(f"soup of {len(cfg.members)} teachers written to {cfg.out}: adapter rank {t.record['soup']['rank']}, "
          f"R_l cosine to the members' {', '.join(f'{c:.3f}' for c in t.record['cos_to_members_r_l'])}")
    print(f"next: reftguard export --teacher {cfg.out} --out BUNDLE, or stage 2 with --init-teacher {cfg.out}")
    return 0


def _quick_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--quick", action="store_true", help=f"{what}; options you set to non-default values still win.")


def make_data_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.pipeline_data import DataConfig

    add_dataclass_args(p, DataConfig, group="make-data")


def make_data(ns) -> int:
    from reftguard.training.pipeline_data import DataConfig, make_data

    for k, path in make_data(from_args(DataConfig, ns)).items():
        print(f"{k}: {path}")
    return 0


def distill_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.distill import DistillConfig

    _quick_flag(p, "A short smoke run (16 steps of 4 pairs)")
    add_dataclass_args(p, DistillConfig, group="distill")


def distill(ns) -> int:
    from reftguard.training.distill import QUICK, DistillConfig, distill

    cfg = with_quick(from_args(DistillConfig, ns), QUICK, ns.quick)
    s = distill(cfg, command=command_line(cfg, name="distill"))
    print(f"student written to {cfg.out} ({s['method']}): {s['batches']['user']} user / {s['batches']['align']} alignment batches, "
          f"{s['seconds']:.0f}s; evaluate it with: reftguard evaluate-model --model {cfg.out} --task-eval TASK_EVAL.jsonl")
    return 0


def evaluate_model_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.model_eval import EvalModelConfig

    add_dataclass_args(p, EvalModelConfig, group="evaluate-model")


def evaluate_model(ns) -> int:
    from reftguard.cli import print_json
    from reftguard.training.model_eval import EvalModelConfig, evaluate_model

    print_json(evaluate_model(from_args(EvalModelConfig, ns)))
    return 0


def pipeline_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.distill import DistillConfig
    from reftguard.training.model_eval import EvalModelConfig
    from reftguard.training.pipeline import PipelineConfig
    from reftguard.training.pipeline_data import DataConfig

    _quick_flag(p, "Small sizes for a smoke run (a few minutes on 2 CPU cores)")
    add_dataclass_args(p, PipelineConfig, group="pipeline")
    # --out, --user-data and --align-data come from distill: OUT is the run directory, the user data is
    # what gets filtered, and the student lands in OUT/student.
    add_dataclass_args(p, DistillConfig, group="distill")
    add_dataclass_args(p, DataConfig, group="make-data (inputs not given are generated)")
    # evaluate-model's --model and --eval-out are set by the pipeline itself (OUT/student, OUT/eval.json)
    add_dataclass_args(p, EvalModelConfig, group="evaluate", skip=("model", "eval_out"))


def pipeline(ns) -> int:
    from reftguard.training.distill import DistillConfig
    from reftguard.training.model_eval import EvalModelConfig
    from reftguard.training.pipeline import QUICK, PipelineConfig, render_markdown, run_pipeline
    from reftguard.training.pipeline_data import DataConfig

    cfgs = [from_args(c, ns) for c in (PipelineConfig, DistillConfig, DataConfig, EvalModelConfig)]
    for c in cfgs:
        with_quick(c, QUICK.get(type(c), {}), ns.quick)
    command = command_line(*cfgs, name="pipeline")
    if cfgs[0].filter and not cfgs[0].bundle:  # the default bundle, built here on first use
        from reftguard.exporter.default_bundle import ensure_default_bundle

        cfgs[0].bundle = str(ensure_default_bundle().root)
    report = run_pipeline(*cfgs, command=command)
    print(render_markdown(report))
    print(f"report: {cfgs[1].out}/report.json")
    return 0
