"""`reftguard fit-categories`: fit the harm-category head on a bundle's own states and seal it into the bundle.

Harmful training rows with a class (read by hand, or their data category mapped onto the taxonomy,
reftguard.taxonomy) are read through the bundle's graph (fp32 onnxruntime; its `topic_state` output where the
graph has one, else `state`); a linear softmax head (shrinkage LDA or multinomial logistic
regression) is fitted on them in numpy (reftguard.category_head) and written to `category_head.npz`, listed in
the manifest's `categories`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.category_head import fit_head, fit_lda_head
from reftguard.config import option
from reftguard.role_fit import turn_states
from reftguard.taxonomy import CATEGORIES, category_of

log = logging.getLogger("reftguard.categories")

CATEGORY_HEAD = "category_head.npz"


@dataclass
class FitCategoriesConfig:
    bundle: str = option("bundle", "Guard bundle directory (re-sealed in place with the head).")
    data: list = option([], "Labeled JSONL file(s) whose harmful rows carry a `category` (mapped onto the taxonomy). Never pass dev data here.")
    method: str = option("lda", "How the head is fitted: 'lda' (shrinkage LDA, won 5-fold CV on the training rows by 0.06 top-1, research/category_head.py) or 'logistic'.", choices=("lda", "logistic"))
    shrink: float = option(0.03, "LDA: covariance shrinkage towards the identity (0.03 won the CV).")
    l2: float = option(1e-3, "Logistic: L2 penalty.")
    steps: int = option(1000, "Logistic: gradient steps (full batch, deterministic; 1000 won its CV).")
    hand_labels: list = option([], "JSON files of hand-read classes, {\"labels\": {id: class}} (reftguard/data/category-hand-labels-train.json): a listed row takes its hand class instead of its mapped data category. Never pass dev labels here.")


def hand_category_labels(paths: list[str]) -> dict[str, str]:
    """{row id: class} from hand-label files ({"labels": {id: class}}, reftguard/data/category-hand-labels-*.json);
    a class outside the taxonomy, or one id given two classes, is an error."""
    out: dict[str, str] = {}
    for path in paths:
        for pid, cls in json.loads(Path(path).read_text())["labels"].items():
            if cls not in CATEGORIES:
                raise ValueError(f"{path}: {pid!r} has class {cls!r}, not one of {CATEGORIES}")
            if out.setdefault(pid, cls) != cls:
                raise ValueError(f"{path}: {pid!r} is {cls!r} here and {out[pid]!r} in an earlier file")
    return out


def labelled_rows(paths: list[str], hand: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(id, text, class) of the harmful rows with a class: the hand label where `hand` has the row's id (rows
    without a data category included), else the data category mapped onto the taxonomy. From raw JSONL (the
    category is not part of LabeledPrompt). A hand label naming no harmful row of the data is an error: a stale file."""
    hand = hand or {}
    out, seen = [], set()
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("label") != "harmful":
                    continue
                seen.add(r["id"])
                cls = hand.get(r["id"]) or category_of(r.get("category"))
                if cls:
                    out.append((r["id"], r["text"], cls))
    if missing := set(hand) - seen:
        raise ValueError(f"{len(missing)} hand-labelled ids name no harmful row of {[Path(p).name for p in paths]}, e.g. {sorted(missing)[0]}")
    return out


def head_input(bundle: GuardBundle) -> str:
    """The graph output a head fitted on `bundle` reads: the topic state where the graph has one."""
    return bundle_io.TOPIC if bundle.manifest.get("topic_layer") else bundle_io.STATE


def fit_categories(cfg: FitCategoriesConfig) -> GuardBundle:
    bundle = GuardBundle.load(cfg.bundle)
    hand = hand_category_labels(cfg.hand_labels)
    rows = labelled_rows(cfg.data, hand)
    if not rows:
        raise ValueError("fit-categories: no harmful rows with a category in the data")
    y = np.array([CATEGORIES.index(c) for _, _, c in rows])
    source = head_input(bundle)
    states = turn_states(bundle, [t for _, t, _ in rows], output=source)
    head = (fit_lda_head(states, y, CATEGORIES, cfg.shrink) if cfg.method == "lda"
            else fit_head(states, y, CATEGORIES, cfg.l2, cfg.steps))
    head.save(bundle.root / CATEGORY_HEAD)
    counts = Counter(c for _, _, c in rows)
    manifest = dict(bundle.manifest)
    manifest["categories"] = {"file": CATEGORY_HEAD, "labels": list(CATEGORIES), "input": source, "data": [Path(d).name for d in cfg.data],
                              "n": {c: counts.get(c, 0) for c in CATEGORIES},
                              "data_hash": hashlib.sha256(json.dumps([r[1:] for r in rows], ensure_ascii=False).encode()).hexdigest()[:16],
                              **({"hand_labels": {"files": [Path(h).name for h in cfg.hand_labels], "rows": len(hand)}} if hand else {}),
                              "method": cfg.method, **({"shrink": cfg.shrink} if cfg.method == "lda" else {"l2": cfg.l2, "steps": cfg.steps})}
    log.info("category head on %d harmful rows: %s", len(rows), dict(counts))
    return bundle.reseal(manifest)
