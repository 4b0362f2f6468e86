"""The one `reftguard` CLI: the top layer, the one part of the package that may import every other
(docs/design.md §8). Subcommands are loaded lazily so that a client-only install (grpcio + protobuf) can
run `reftguard score` without numpy, onnxruntime or torch present.

The handlers of the model-side commands live beside this file (commands.py, train_commands.py); the
server's and the clients' own commands live in their packages and import nothing above them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any

# name -> (module, handler, one-line help). Each handler module exposes `add_arguments(parser)` via
# the function named `<handler>_args` and the handler itself `<handler>(ns) -> int`.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("reftguard.cli.commands", "fit", "Zero-training fit of the refusal feature R_l on labeled prompts -> teacher dir."),
    "export": ("reftguard.cli.commands", "export", "Export a teacher dir to an ONNX guard bundle (parity-checked, sealed)."),
    "fit-roles": ("reftguard.cli.commands", "fit_roles", "Fit refusal features on reply and system turns (labeled) into a bundle; calibrate their thresholds next."),
    "fit-categories": ("reftguard.cli.commands", "fit_categories", "Fit the harm-category head (taxonomy of reftguard/taxonomy.py) on labeled harmful rows into a bundle."),
    "fit-gate": ("reftguard.cli.commands", "fit_gate", "Fit the flag gate on a calibrated bundle: a FLAGged request must also pass a topic reading, or it goes to REVIEW."),
    "calibrate": ("reftguard.cli.commands", "calibrate", "Set a bundle's threshold for a target recall or FPR on labeled data."),
    "eval": ("reftguard.cli.commands", "eval", "Evaluate a bundle on labeled data (AUROC, recall@FPR, per source/kind)."),
    "eval-records": ("reftguard.cli.commands", "eval_records", "Decide whole records (every role scored) and report per record kind against the whole-record goals."),
    "robustness": ("reftguard.cli.commands", "robustness", "Per-kind/category flag rates, AUROC, worst examples and score plots of a bundle (JSON, Markdown, PNG, HTML)."),
    "default-bundle": ("reftguard.cli.commands", "default_bundle", "Build (once, then cached) the embedded default bundle."),
    "serve": ("reftguard.cli.commands", "serve", "Serve a guard bundle over gRPC with batching and Prometheus metrics."),
    "score": ("reftguard.clients.cli", "score", "Score prompts against a running guard service."),
    "health": ("reftguard.clients.cli", "health", "Exit 0 iff the guard service reports SERVING."),
    "info": ("reftguard.clients.cli", "info", "Print the served bundle, threshold and limits."),
    "scan": ("reftguard.clients.scan.cli", "scan", "Split a dataset (JSONL/CSV/Parquet/HF) into allowed/flagged/errors with a report; resumable."),
    "review": ("reftguard.clients.review.cli", "review", "Walk the flagged items of a scan: keep or release each (terminal UI), send Feedback, --apply."),
    "train-teacher": ("reftguard.cli.train_commands", "train_teacher", "Train a ReFT teacher (SFT + refusal-feature regulariser) -> teacher dir."),
    "soup-teacher": ("reftguard.cli.train_commands", "soup_teacher", "Average stage-1 ReFT teachers of one recipe (other seeds) into one teacher (a weight soup) -> teacher dir."),
    "make-data": ("reftguard.cli.train_commands", "make_data", "Write a poisoned user task, alignment data and held-out sets for distill / pipeline."),
    "distill": ("reftguard.cli.train_commands", "distill", "Finetune a student on user data with alignment distillation to the teacher."),
    "evaluate-model": ("reftguard.cli.train_commands", "evaluate_model", "Harmful Score and Finetuning Accuracy of a (finetuned) model."),
    "pipeline": ("reftguard.cli.train_commands", "pipeline", "Scan -> distill -> evaluate on a user dataset, with one report."),
}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse(argv: list[str]) -> tuple[str, Any, argparse.Namespace]:
    """(command, its handler module, its parsed options) of a command line. Exits like argparse on a usage
    error; raises ImportError when the command needs an extra that is not installed.

    A command that has a `--recipe FILE` option reads it first: the file's values replace the option
    defaults, so flags given on the command line still win (reftguard.config.recipe_defaults)."""
    top = argparse.ArgumentParser(prog="reftguard", description="Streaming data guard for LLM finetuning pipelines.")
    top.add_argument("--verbose", "-v", action="store_true", help="Log progress at INFO level.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    head = [a for a in argv if not a.startswith("-")]
    if not head or head[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])
        raise SystemExit(2)
    name = head[0]
    module_name, handler, help_ = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"reftguard {name}", description=help_)
    parser.add_argument("--verbose", "-v", action="store_true", help="Log progress at INFO level.")
    module = importlib.import_module(module_name)
    getattr(module, f"{handler}_args")(parser)
    rest = list(argv)
    rest.remove(name)
    ns = parser.parse_args(rest)
    if getattr(ns, "recipe", None):
        from reftguard.config import recipe_defaults

        try:
            parser.set_defaults(**recipe_defaults(parser, ns.recipe))
        except (ValueError, OSError) as exc:
            parser.error(str(exc))
        ns = parser.parse_args(rest)
    return name, module, ns


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        name, module, ns = parse(argv)
    except ImportError as exc:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"reftguard {command}: needs an optional dependency that is not installed ({exc.name}); "
              f"install the matching extra, e.g. pip install 'reftguard[server]' or 'reftguard[train]'", file=sys.stderr)
        return 2
    _setup_logging(ns.verbose)
    handler = COMMANDS[name][1]
    try:
        return int(getattr(module, handler)(ns) or 0)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:  # e.g. `serve` building the default bundle on an install without the train extra
        if ns.verbose:
            raise
        print(f"reftguard {name}: needs an optional dependency that is not installed ({exc.name}); "
              f"install the matching extra, e.g. pip install 'reftguard[train]'", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        # Bundle, data, model-loading and argument errors all carry a message meant for the user.
        if ns.verbose:
            raise
        print(f"reftguard {name}: error: {exc}", file=sys.stderr)
        return 1


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
