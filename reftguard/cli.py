"""The one `reftguard` CLI. Subcommands are loaded lazily so that a client-only install (grpcio +
protobuf) can run `reftguard score` without numpy, onnxruntime or torch present."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

# name -> (module, handler, one-line help). Each handler module exposes `add_arguments(parser)` via
# the function named `<handler>_args` and the handler itself `<handler>(ns) -> int`.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("reftguard.commands", "fit", "Zero-training fit of the refusal feature R_l on labeled prompts -> teacher dir."),
    "export": ("reftguard.commands", "export", "Export a teacher dir to an ONNX guard bundle (parity-checked, sealed)."),
    "calibrate": ("reftguard.commands", "calibrate", "Set a bundle's threshold for a target recall or FPR on labeled data."),
    "eval": ("reftguard.commands", "eval", "Evaluate a bundle on labeled data (AUROC, recall@FPR, per source/kind)."),
    "robustness": ("reftguard.commands", "robustness", "Per-kind/category flag rates, AUROC, worst examples and score plots of a bundle (JSON, Markdown, PNG, HTML)."),
    "quantize": ("reftguard.commands", "quantize", "Static int8 (QDQ) copy of a bundle for CPU serving, recalibrated on itself."),
    "default-bundle": ("reftguard.commands", "default_bundle", "Build (once, then cached) the embedded default bundle."),
    "serve": ("reftguard.server.cli", "serve", "Serve a guard bundle over gRPC with batching and Prometheus metrics."),
    "score": ("reftguard.clients.cli", "score", "Score prompts against a running guard service."),
    "health": ("reftguard.clients.cli", "health", "Exit 0 iff the guard service reports SERVING."),
    "info": ("reftguard.clients.cli", "info", "Print the served bundle, threshold and limits."),
    "scan": ("reftguard.clients.scan.cli", "scan", "Split a dataset (JSONL/CSV/Parquet/HF) into allowed/flagged/errors with a report; resumable."),
    "review": ("reftguard.clients.review.cli", "review", "Walk the flagged items of a scan: keep or release each (terminal UI), send Feedback, --apply."),
    "train-teacher": ("reftguard.train_commands", "train_teacher", "Train a ReFT teacher (SFT + refusal-feature regulariser) -> teacher dir."),
    "soup-teacher": ("reftguard.train_commands", "soup_teacher", "Average stage-1 ReFT teachers of one recipe (other seeds) into one teacher (a weight soup) -> teacher dir."),
    "make-data": ("reftguard.train_commands", "make_data", "Write a poisoned user task, alignment data and held-out sets for distill / pipeline."),
    "distill": ("reftguard.train_commands", "distill", "Finetune a student on user data with alignment distillation to the teacher."),
    "evaluate-model": ("reftguard.train_commands", "evaluate_model", "Harmful Score and Finetuning Accuracy of a (finetuned) model."),
    "pipeline": ("reftguard.train_commands", "pipeline", "Scan -> distill -> evaluate on a user dataset, with one report."),
}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def register(name: str, module: str, handler: str, help: str) -> None:
    COMMANDS[name] = (module, handler, help)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="reftguard", description="Streaming data guard for LLM finetuning pipelines.")
    top.add_argument("--verbose", "-v", action="store_true", help="Log progress at INFO level.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    head = [a for a in argv if not a.startswith("-")]
    if not head or head[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])
        return 2
    name = head[0]
    module_name, handler, help_ = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"reftguard {name}", description=help_)
    parser.add_argument("--verbose", "-v", action="store_true", help="Log progress at INFO level.")
    try:
        module = importlib.import_module(module_name)
        getattr(module, f"{handler}_args")(parser)
    except ImportError as exc:
        print(f"reftguard {name}: needs an optional dependency that is not installed ({exc.name}); "
              f"install the matching extra, e.g. pip install 'reftguard[server]' or 'reftguard[train]'", file=sys.stderr)
        return 2
    rest = list(argv)
    rest.remove(name)
    ns = parser.parse_args(rest)
    _setup_logging(ns.verbose)
    try:
        return int(getattr(module, handler)(ns) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Bundle, data, model-loading and argument errors all carry a message meant for the user.
        if ns.verbose:
            raise
        print(f"reftguard {name}: error: {exc}", file=sys.stderr)
        return 1


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
