"""Per-role refusal features: the method's R_l, fitted on each role's own turns, added to a bundle.

R_l was fitted (and the teacher trained) on requests; it reads a reply or a system prompt poorly (harmful
replies: recall 0.14 at 2% FPR on roles-dev). The same definition on that role's turns,
R_role = mean(state | harmful turns) - mean(state | benign turns), with the midpoint centre, reads them far
better (0.58; system prompts 0.84 -> 0.96): research/role_features.py, research/results/role_features.json.
With `--shrink ROLE=S` the role's direction is whitened by the within-class covariance first (shrinkage
LDA, reftguard.features.shrinkage_feature), and `--hand-labels` lets hand-read reply labels replace the
generator's: on roles-dev that reads hand-read harmful replies at 0.84/0.88 (calib/report) instead of
0.74/0.76 at the served threshold (research/reply_probe.py).

The states come from the bundle's own graph (its `state` output, fp32 onnxruntime), so fitting needs no
torch and what is fitted is what is served. The features go into `role_features.npy` ([roles, 2, hidden]:
feature, centre) and the manifest's `role_features`; the bundle is re-sealed. Role thresholds calibrated
before are dropped (they were chosen on other scores): run `reftguard calibrate --target-fpr-role` next.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.calibration import parse_role_targets
from reftguard.config import option
from reftguard.data import data_hash, load_labeled
from reftguard.encoding import PromptEncoder, length_sorted_batches
from reftguard.features import CENTERS, refusal_feature, shrinkage_feature

log = logging.getLogger("reftguard.roles")

ROLE_FEATURES = "role_features.npy"
FIT_ROLES = ("assistant", "system")


@dataclass
class FitRolesConfig:
    bundle: str = option("bundle", "Guard bundle directory (re-sealed in place with the features; its role thresholds are dropped: calibrate next).")
    data: list = option([], "Labeled turns with a `role` field (harmful/benign), e.g. roles-train.jsonl. Never pass dev data here.")
    roles: list = option(list(FIT_ROLES), "Roles to fit a feature for (user turns keep R_l, which the teacher was trained for).")
    center: str = option("midpoint", "Centre subtracted before the cosine: 'none' or the 'midpoint' of the class means.", choices=CENTERS)
    shrink: list = option([], "Per-role shrinkage ROLE=S (comma-separated, e.g. assistant=0.3,system=10): that role's feature is the class-mean difference whitened by the within-class covariance shrunk towards S * mean variance * I (smaller S whitens more); roles not listed take the plain difference of means.")
    hand_labels: list = option([], "JSON files of hand-read reply labels, {\"harmful\": [ids], \"evasive\": [ids]} (record ids, without ':assistant'): a listed assistant turn takes its hand label, evasive as benign (reftguard/data/reply-hand-labels-train.json). Never pass dev labels here.")
    batch_size: int = option(16, "Turns per forward batch.")


def turn_states(bundle: GuardBundle, texts: list[str], batch_size: int = 16, engine=None, output: str = bundle_io.STATE) -> np.ndarray:
    """[n, hidden] `output` rows of `texts` (default the last-token layer-l state; `topic_state` for the category
    head), each in the user-turn format and cut on the right to one row, from the bundle's graph on `engine`
    (default: fp32 onnxruntime, what the features are fitted on)."""
    if engine is None:
        from reftguard.engines.ort import OrtEngine  # lazy: onnxruntime only when fitting

        engine = OrtEngine(bundle)
    k = bundle_io.OUTPUT_NAMES.index(output)
    ids = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens).encode(texts, "right").ids
    out = np.zeros((len(ids), int(bundle.manifest["hidden_size"])), dtype=np.float32)
    for rows, input_ids, mask in length_sorted_batches(ids, batch_size, batch_size * bundle.max_tokens, bundle.pad_token_id):
        got = engine.run(input_ids, mask)
        if len(got) <= k:
            raise ValueError(f"bundle {bundle.bundle_id} has no `{output}` output (exported before it); re-export it")
        out[rows] = got[k]
    return out


def hand_labelled(rows: list, paths: list[str]) -> tuple[list, int]:
    """`rows` with each assistant turn listed in a hand-label file relabelled (harmful, or evasive -> benign),
    and how many labels changed. A listed id that names no assistant turn is an error: a stale file."""
    harmful, evasive = set(), set()
    for path in paths:
        d = json.loads(Path(path).read_text())
        harmful |= set(d.get("harmful", []))
        evasive |= set(d.get("evasive", []))
    if harmful & evasive:
        raise ValueError(f"--hand-labels: {len(harmful & evasive)} ids are both harmful and evasive, e.g. {sorted(harmful & evasive)[0]}")
    out, changed, seen = [], 0, set()
    for p in rows:
        k = p.id.removesuffix(":assistant")
        if p.role == "assistant" and (k in harmful or k in evasive):
            seen.add(k)
            label = int(k in harmful)
            changed += label != p.label
            p = replace(p, label=label)
        out.append(p)
    missing = (harmful | evasive) - seen
    if missing:
        raise ValueError(f"--hand-labels: {len(missing)} ids name no assistant turn in the data, e.g. {sorted(missing)[0]}")
    return out, changed


def fit_roles(cfg: FitRolesConfig) -> GuardBundle:
    bundle = GuardBundle.load(cfg.bundle)
    rows = load_labeled(cfg.data)
    relabelled = 0
    if cfg.hand_labels:
        rows, relabelled = hand_labelled(rows, cfg.hand_labels)
    shrink = parse_role_targets(cfg.shrink, "--shrink", upper=None)
    if shrink and cfg.center != "midpoint":  # checked before any state is computed
        raise ValueError(f"--shrink {', '.join(shrink)}: a whitened feature comes with the midpoint centre (--center midpoint)")
    roles = list(dict.fromkeys(cfg.roles))
    unknown = [r for r in roles if r not in FIT_ROLES]
    if unknown:
        raise ValueError(f"--roles {unknown}: only {FIT_ROLES} take a feature of their own (user turns keep R_l)")
    r_l = bundle.refusal_feature()
    features, fit = [], {}
    for role in roles:
        mine = [p for p in rows if p.role == role]
        y = np.array([p.label for p in mine], dtype=np.int64)
        if not mine or y.min() == y.max():
            raise ValueError(f"fit-roles: the data needs harmful and benign {role} turns (found {int(y.sum())} harmful of {len(mine)})")
        h = turn_states(bundle, [p.text for p in mine], cfg.batch_size)
        r, c = shrinkage_feature(h, y, shrink[role]) if role in shrink else refusal_feature(h, y, cfg.center)
        features.append(np.stack([r, c]))
        cos = float(r @ r_l / (np.linalg.norm(r) * np.linalg.norm(r_l)))
        fit[role] = {"n_harmful": int(y.sum()), "n_benign": int(len(y) - y.sum()), "data_hash": data_hash(mine), "cos_with_r_l": cos,
                     "method": f"shrinkage {shrink[role]:g}" if role in shrink else "mean difference"}
        log.info("%s feature (%s) from %d harmful and %d benign turns; cosine with R_l %.3f", role, fit[role]["method"],
                 y.sum(), len(y) - y.sum(), cos)
    np.save(bundle.root / ROLE_FEATURES, np.stack(features).astype(np.float32), allow_pickle=False)
    manifest = dict(bundle.manifest)
    manifest["role_features"] = {"file": ROLE_FEATURES, "roles": roles, "center": cfg.center,
                                 "data": [Path(d).name for d in cfg.data], "fit": fit}
    if cfg.hand_labels:
        manifest["role_features"]["hand_labels"] = {"files": [Path(d).name for d in cfg.hand_labels], "relabelled": relabelled}
    # Role thresholds were chosen on R_l's scores of those turns: stale now.
    manifest.pop("roles", None)
    if manifest.get("precisions"):
        manifest["precisions"] = {k: {f: v for f, v in e.items() if f != "roles"} for k, e in manifest["precisions"].items()}
    return bundle.reseal(manifest)
