"""`reftguard fit-categories`: fit the harm-category head on a bundle's own states and seal it into the bundle.

Harmful training rows whose data category maps onto the taxonomy (reftguard.taxonomy) are read through the
bundle's graph (`state` output, fp32 onnxruntime); a linear softmax head (shrinkage LDA or multinomial logistic
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


def labelled_rows(paths: list[str]) -> list[tuple[str, str]]:
    """(text, class) of the harmful rows with a category, from raw JSONL (the category is not part of LabeledPrompt)."""
    out = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                cls = category_of(r.get("category")) if r.get("label") == "harmful" else None
                if cls:
                    out.append((r["text"], cls))
    return out


def fit_categories(cfg: FitCategoriesConfig) -> GuardBundle:
    bundle = GuardBundle.load(cfg.bundle)
    rows = labelled_rows(cfg.data)
    if not rows:
        raise ValueError("fit-categories: no harmful rows with a category in the data")
    y = np.array([CATEGORIES.index(c) for _, c in rows])
    states = turn_states(bundle, [t for t, _ in rows])
    head = (fit_lda_head(states, y, CATEGORIES, cfg.shrink) if cfg.method == "lda"
            else fit_head(states, y, CATEGORIES, cfg.l2, cfg.steps))
    head.save(bundle.root / CATEGORY_HEAD)
    counts = Counter(c for _, c in rows)
    manifest = dict(bundle.manifest)
    manifest["categories"] = {"file": CATEGORY_HEAD, "labels": list(CATEGORIES), "data": [Path(d).name for d in cfg.data],
                              "n": {c: counts.get(c, 0) for c in CATEGORIES},
                              "data_hash": hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16],
                              "method": cfg.method, **({"shrink": cfg.shrink} if cfg.method == "lda" else {"l2": cfg.l2, "steps": cfg.steps})}
    log.info("category head on %d harmful rows: %s", len(rows), dict(counts))
    return bundle.reseal(manifest)
