"""Per-role refusal features: the method's R_l, fitted on each role's own turns, added to a bundle.

R_l was fitted (and the teacher trained) on requests; it reads a reply or a system prompt poorly (harmful
replies: recall 0.14 at 2% FPR on roles-dev). The same definition on that role's turns,
R_role = mean(state | harmful turns) - mean(state | benign turns), with the midpoint centre, reads them far
better (0.58; system prompts 0.84 -> 0.96): research/role_features.py, research/results/role_features.json.

The states come from the bundle's own graph (its `state` output, fp32 onnxruntime), so fitting needs no
torch and what is fitted is what is served. The features go into `role_features.npy` ([roles, 2, hidden]:
feature, centre) and the manifest's `role_features`; the bundle is re-sealed. Role thresholds calibrated
before are dropped (they were chosen on other scores): run `reftguard calibrate --target-fpr-role` next.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.config import option
from reftguard.data import data_hash, load_labeled
from reftguard.encoding import PromptEncoder, length_sorted_batches
from reftguard.features import CENTERS, refusal_feature

log = logging.getLogger("reftguard.roles")

ROLE_FEATURES = "role_features.npy"
FIT_ROLES = ("assistant", "system")


@dataclass
class FitRolesConfig:
    bundle: str = option("bundle", "Guard bundle directory (re-sealed in place with the features; its role thresholds are dropped: calibrate next).")
    data: list = option([], "Labeled turns with a `role` field (harmful/benign), e.g. roles-train.jsonl. Never pass dev data here.")
    roles: list = option(list(FIT_ROLES), "Roles to fit a feature for (user turns keep R_l, which the teacher was trained for).")
    center: str = option("midpoint", "Centre subtracted before the cosine: 'none' or the 'midpoint' of the class means.", choices=CENTERS)
    batch_size: int = option(16, "Turns per forward batch.")


def turn_states(bundle: GuardBundle, texts: list[str], batch_size: int = 16, engine=None) -> np.ndarray:
    """[n, hidden] last-token layer-l states of `texts`, each in the user-turn format and cut on the right to
    one row, from the bundle's graph on `engine` (default: fp32 onnxruntime, what the features are fitted on)."""
    if engine is None:
        from reftguard.engines.ort import OrtEngine  # lazy: onnxruntime only when fitting

        engine = OrtEngine(bundle)
    ids = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens).encode(texts, "right").ids
    out = np.zeros((len(ids), int(bundle.manifest["hidden_size"])), dtype=np.float32)
    for rows, input_ids, mask in length_sorted_batches(ids, batch_size, batch_size * bundle.max_tokens, bundle.pad_token_id):
        got = engine.run(input_ids, mask)
        if len(got) < 3:
            raise ValueError(f"bundle {bundle.bundle_id} has no `state` output (exported before per-role features); re-export it")
        out[rows] = got[2]
    return out


def fit_roles(cfg: FitRolesConfig) -> GuardBundle:
    bundle = GuardBundle.load(cfg.bundle)
    rows = load_labeled(cfg.data)
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
        r, c = refusal_feature(turn_states(bundle, [p.text for p in mine], cfg.batch_size), y, cfg.center)
        features.append(np.stack([r, c]))
        cos = float(r @ r_l / (np.linalg.norm(r) * np.linalg.norm(r_l)))
        fit[role] = {"n_harmful": int(y.sum()), "n_benign": int(len(y) - y.sum()), "data_hash": data_hash(mine), "cos_with_r_l": cos}
        log.info("%s feature from %d harmful and %d benign turns; cosine with R_l %.3f", role, y.sum(), len(y) - y.sum(), cos)
    np.save(bundle.root / ROLE_FEATURES, np.stack(features).astype(np.float32), allow_pickle=False)
    manifest = dict(bundle.manifest)
    manifest["role_features"] = {"file": ROLE_FEATURES, "roles": roles, "center": cfg.center,
                                 "data": [Path(d).name for d in cfg.data], "fit": fit}
    # Role thresholds were chosen on R_l's scores of those turns: stale now.
    manifest.pop("roles", None)
    if manifest.get("precisions"):
        manifest["precisions"] = {k: {f: v for f, v in e.items() if f != "roles"} for k, e in manifest["precisions"].items()}
    return bundle.reseal(manifest)
