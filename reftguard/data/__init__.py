"""Labeled prompt files shipped with reftguard (see PROVENANCE.md) and the loader for that schema.

Kept in the core package (stdlib only) because fitting, calibration, evaluation and the default bundle
all read the same schema.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

from reftguard.prompt import normalize_role

LABELS = {"benign": 0, "harmful": 1}
TRAIN_FILES = ("guard-train.jsonl", "guard-train-extra.jsonl")
DEV_FILES = ("guard-dev.jsonl", "handwritten-dev.jsonl")
# The default teacher also trains on the contrast set (benign prompts that only sound unsafe, written for
# this project); its dev half joins the files the default threshold is calibrated (and reported) on.
TEACHER_TRAIN_FILES = TRAIN_FILES + ("contrast-train.jsonl",)
CALIBRATION_FILES = DEV_FILES + ("contrast-dev.jsonl",)
# Whole finetuning records (scripts/build_record_data.py): records with harm in any role, and the labelled
# assistant/system turns that per-role thresholds are calibrated on (`roles-dev`, calib half).
# Replies written by hand (scripts/build_written_replies.py): dev records for evaluation only, train turns for fitting.
RECORD_TRAIN_FILES = ("records-train.jsonl", "roles-train.jsonl", "written-roles-train.jsonl")
RECORD_DEV_FILES = ("records-dev.jsonl", "roles-dev.jsonl", "written-records-dev.jsonl")
# Every packaged file some teacher trains on (each packaged file is this, a calibration file or a record
# dev file): evaluation sets built from dev prompts refuse these.
PACKAGED_TRAIN_FILES = TEACHER_TRAIN_FILES + ("contrast-train-extra.jsonl", "persona-train.jsonl") + RECORD_TRAIN_FILES


class DataError(ValueError):
    """A labeled prompt file does not follow the schema."""


@dataclass(frozen=True)
class LabeledPrompt:
    id: str
    text: str
    label: int  # 1 harmful, 0 benign
    source: str = "unknown"
    kind: str = "unknown"
    category: str = ""
    group: str = ""  # contrast group: prompts that share surface words stay on one side of every split
    role: str = "user"  # the turn's role (system | user | assistant): per-role calibration rows carry one


def packaged(name: str) -> Path:
    """Path of a data file shipped inside the package."""
    p = Path(str(resources.files(__package__).joinpath(name)))
    if not p.is_file():
        raise FileNotFoundError(f"packaged data file {name} is missing from {p.parent}")
    return p


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(`file:line`, parsed record) for every non-blank line; invalid JSON raises DataError naming the line."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc


def load_labeled(paths: str | Path | Iterable[str | Path]) -> list[LabeledPrompt]:
    """Read `{"id","text","label":"harmful"|"benign", "source"?, "kind"?}` JSONL from one or more files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[LabeledPrompt] = []
    seen: set[str] = set()
    for path in paths:
        for where, rec in iter_jsonl(path):
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object")
            text, label = rec.get("text"), rec.get("label")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: field 'text' must be a non-empty string")
            if label not in LABELS:
                raise DataError(f"{where}: field 'label' must be 'harmful' or 'benign', got {label!r}")
            pid = str(rec.get("id", f"{Path(path).name}:{where.rsplit(':', 1)[1]}"))
            role = normalize_role(rec.get("role", "user"))
            if role is None:
                raise DataError(f"{where}: field 'role' must be a chat role such as user, assistant or system, got {rec.get('role')!r}")
            if pid in seen:
                raise DataError(f"{where}: duplicate id {pid!r}")
            seen.add(pid)
            out.append(
                LabeledPrompt(
                    id=pid,
                    text=text,
                    label=LABELS[label],
                    source=str(rec.get("source") or "unknown"),
                    kind=str(rec.get("kind") or "unknown"),
                    category=str(rec.get("category") or ""),
                    group=str(rec.get("group") or ""),
                    role=role,
                )
            )
    if not out:
        raise DataError(f"no labeled prompts in {[str(p) for p in paths]}")
    return out


def spread(rows: list, n: int) -> list:
    """At most `n` rows taken evenly across `rows`: the packaged files are grouped by label, so their head is
    one class."""
    return rows[:: max(1, len(rows) // max(n, 1))][:n]


def data_hash(prompts: list[LabeledPrompt]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps([p.id, p.text, p.label], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


SPLITS = ("calib", "report")


def split_of(p: LabeledPrompt, salt: str = "calib-report") -> str:
    """'calib' or 'report', half and half by a hash of the prompt's contrast group (else its id).

    Dev files are cut this way so that a threshold is chosen on one half and every figure is reported
    on the other; prompts of one contrast group never straddle the cut."""
    return split_of_key(p.group or p.id, salt)


def split_of_key(key: str, salt: str = "calib-report") -> str:
    """The half of a prompt whose contrast group (else id) is `key`: `split_of` for raw records."""
    u = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16)
    return SPLITS[u & 1]


def check_split(split: str) -> None:
    if split not in ("", "all", *SPLITS):
        raise ValueError(f"split must be one of {SPLITS} or 'all', got {split!r}")


def select_split(prompts: list[LabeledPrompt], split: str) -> list[LabeledPrompt]:
    """The prompts of one split ('' or 'all' keeps everything)."""
    check_split(split)
    if split in ("", "all"):
        return prompts
    out = [p for p in prompts if split_of(p) == split]
    if not out:
        raise DataError(f"no prompts in split {split!r}")
    return out


def holdout_split(prompts: list[LabeledPrompt], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic (fit_idx, held_idx) split by hashing ids, stratified by label."""
    fit, held = [], []
    for i, p in enumerate(prompts):
        u = int(hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if u < fraction else fit).append(i)
    return fit, held
