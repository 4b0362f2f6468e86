"""The embedded default bundle: where it is cached, what its cache key covers, and loading it.

Recipe (deterministic: same inputs, same bundle_id; built by reftguard.exporter.default_bundle):
  teacher  = the shipped trained teacher (reftguard/data/default_teacher, two stages: recipes/);
  bundle   = export(teacher), per-role features fitted on roles-train, calibrated on the `calib` half of guard-dev, handwritten-dev and
             contrast-dev (hard negatives included) for a target FPR, with a per-kind limit on hard
             negatives. The `report` half of the same files is never used to choose anything, so
             figures measured on it (docs/results.md) are out of sample.
The cache key hashes the recipe, the reftguard version, the calibration data, the backbone file and the
teacher, so a change to any of them builds a fresh bundle.

This module is the core's side (no torch): it finds and loads the cached bundle. Building one needs the
exporter, so the builder is passed in (`build`); `reftguard default-bundle`, `reftguard serve` without
--bundle and `reftguard.exporter.default_bundle.ensure_default_bundle()` pass it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from reftguard import __version__
from reftguard.bundle import BundleError, GuardBundle
from reftguard.data import CALIBRATION_FILES

log = logging.getLogger("reftguard.default")

RECIPE = {
    # The graph also outputs layer 8's token means, over the whole turn (the category head's reading) and over its
    # last 32 tokens (the flag gate's): research/category_pooling.py, research/flag_gate_tail.py.
    "export": {"topic_layer": 8, "tail_tokens": 32},
    # Replies and system prompts are read with refusal features fitted on their own turns (roles-train),
    # not with R_l, which the teacher learnt from requests (reftguard/role_fit.py): whitened directions
    # (shrinkage by 5-fold CV on roles-train), replies on their hand-read labels (research/reply_probe.py), plus
    # replies written by hand in many styles, two rounds: fitted on the packaged model's replies alone, the feature
    # flagged 15% of a fresh written set's benign replies; each round, judged on a fresh set, cut it (to 1.7%, w3):
    # research/written_replies.py.
    "role_features": {"data": ["roles-train.jsonl", "written-roles-train.jsonl"], "roles": ["assistant", "system"], "center": "midpoint",
                      "shrink": ["assistant=0.3", "system=10"], "hand_labels": ["reply-hand-labels-train.json"]},
    # The harm-category head on the graph's topic state (layer 8, mean over tokens), fitted on classes read by
    # hand for guard-train (the data's own category strings often name a kind of harm, not a domain) and the
    # mapped categories of guard-train-extra. Shrinkage LDA, its shrink by 5-fold CV on those rows
    # (research/category_labels.py, research/category_pooling.py).
    "categories": {"data": ["guard-train.jsonl", "guard-train-extra.jsonl"], "method": "lda", "shrink": 0.3,
                   "hand_labels": ["category-hand-labels-train.json"]},
    # FPR-first on data with hard negatives: the paper's recall-first threshold (recall 0.95 on guard-dev)
    # flagged 13% of hand-written hard negatives; users stop trusting a guard that strips legitimate data.
    # Replies and system prompts get thresholds of their own, on the calib half of the labelled role
    # turns (roles-dev): whole finetuning records are judged, not only their user turns. Role rows do not
    # touch the user-turn threshold.
    "calibration": {"data": list(CALIBRATION_FILES + ("roles-dev.jsonl",)), "split": "calib", "target_fpr": 0.02,
                    "max_fpr_kind": ["hard_negative=0.02"], "target_fpr_role": ["assistant=0.02", "system=0.02"],
                    # A review band under each flag threshold, down to recall 0.98 on the calib half: rows a
                    # person should see (docs/curation.md). Replies' band is capped at 5% of benign calib
                    # replies: uncapped, on their noisy labels (partly evasive) it sent 71% of them to review.
                    "review_recall": 0.98, "review_recall_role": ["system=0.98", "assistant=0.98"],
                    "review_max_benign": ["assistant=0.05"]},
    # A request over its flag threshold is FLAGged only if a second reading agrees, of its tail state (layer 8's
    # mean over the turn's last 32 tokens: the request, not a context passage before it); else REVIEW. Prompts that
    # only sound unsafe leave FLAG; FLAG-or-REVIEW recall does not move. Fitted on the teacher's training files; its
    # threshold keeps 97% of the calib half's FLAGged harmful prompts (research/flag_gate_tail.py: calib hard
    # negatives FLAGged 1.7% -> 0.7%; the whole-turn mean had also gated context-dependent requests, flag_gate.py).
    # Its review edge keeps 98% of the calib half's harmful prompts in the band and ALLOWs requests it reads as benign;
    # the band's lower edge is then recalibrated to recall 0.98 under that rule (research/review_gate.py: calib benign
    # prompts in REVIEW or FLAG 7.5% -> 4.7%).
    "flag_gate": {"data": ["guard-train.jsonl", "guard-train-extra.jsonl", "contrast-train.jsonl", "persona-train.jsonl"],
                  "calib_data": list(CALIBRATION_FILES), "split": "calib", "shrink": 0.03, "keep": 0.97, "review_keep": 0.98},
    # No int8 graph: measured on this bundle it is 1.67x bf16 but loses 0.031 AUROC on replies (the role features
    # are fitted on fp32 states), so auto would not serve it, and it adds ~3 minutes to every build. Add it with
    # `reftguard export --int8` / exporter.int8.add_int8_graph (docs/design.md).
}
BUILD_COMMAND = "reftguard default-bundle"


def cache_root() -> Path:
    return Path(os.environ.get("REFTGUARD_CACHE", Path.home() / ".cache" / "reftguard"))


def shipped_teacher() -> Path | None:
    """The teacher directory packaged with reftguard (None if this install carries none)."""
    from importlib import resources

    p = Path(str(resources.files("reftguard.data").joinpath("default_teacher")))
    return p if (p / "teacher.json").is_file() else None


def serves_bf16() -> bool:
    """Whether this machine serves OpenVINO bf16 (AMX/avx512_bf16 and openvino installed): the default
    bundle built here then also carries a bf16 calibration, and its cache key says so."""
    from reftguard.engines import available

    return ("openvino", "bf16") in available()


def cache_key() -> str:
    from reftguard.data import packaged
    from reftguard.modeling.loading import packaged_gguf

    h = hashlib.sha256(json.dumps([RECIPE, __version__, serves_bf16()], sort_keys=True).encode())
    for name in (RECIPE["calibration"]["data"] + RECIPE["role_features"]["data"] + RECIPE["role_features"]["hand_labels"]
                 + RECIPE["categories"]["data"] + RECIPE["categories"]["hand_labels"] + RECIPE["flag_gate"]["data"]):
        h.update(packaged(name).read_bytes())
    gguf = packaged_gguf()
    h.update(f"{gguf.name}:{gguf.stat().st_size}".encode())
    teacher = shipped_teacher()
    if teacher:
        for f in sorted(teacher.rglob("*")):
            if f.is_file():
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def default_bundle(out: str | Path | None = None, *, build: Callable[[Path], GuardBundle] | None = None, rebuild: bool = False) -> GuardBundle:
    """The default bundle at `out` (or the cache). A missing or unusable one is built by `build` (which
    writes a bundle at the path it is given); without `build` it is an error that says how to build it.
    Concurrent callers wait on a lock, so one process builds and the others load its result."""
    if rebuild and build is None:
        raise ValueError("rebuild needs a builder (reftguard.exporter.default_bundle.build)")
    target = Path(out) if out else cache_root() / f"default-{cache_key()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / (target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not rebuild:
            try:
                return GuardBundle.load(target)
            except BundleError as exc:
                if build is None:
                    raise
                log.warning("cached default bundle is unusable (%s); rebuilding", exc)
        if build is None:
            raise FileNotFoundError(f"no default bundle at {target} yet: build it with `{BUILD_COMMAND}` "
                                    "(needs reftguard[train]), or give a bundle")
        # Built beside the target and moved in whole: a build that fails half-way (exported, not yet
        # calibrated) must not leave a sealed bundle that the next call would load as the default.
        partial = target.parent / (target.name + ".partial")
        for stale in (partial, target):
            if stale.exists():
                shutil.rmtree(stale)
        try:
            build(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        os.replace(partial, target)
        return GuardBundle.load(target)
