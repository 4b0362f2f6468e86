"""A uniform weight soup of LoRA teachers: the same recipe trained with other seeds, averaged into one.

One stage-1 run of the shipped recipe lands anywhere in a wide band on held-out styles (docs/training.md:
seed 1 of tC's recipe moved handwritten-dev recall at 1% FPR from 0.84 to 0.16). Averaging the weights of
runs that start from the same model (a "model soup", Wortsman et al. 2022) keeps what the seeds agree on
and shrinks what each one learned by chance, at no serving cost: the soup is one adapter and one network.

Each member's update of a weight is delta_i = (alpha / r) B_i A_i. Their mean is an exact LoRA adapter of
rank k r: A = [A_1; ...; A_k], B = [B_1 ... B_k] / k, with the members' alpha / r scaling kept (so the
adapter config says r = k r, lora_alpha = k alpha). With `rank` < k r, each averaged update is replaced by
its best rank-`rank` approximation (truncated SVD), so the soup is as small as one member. R_l and the
centre are then re-estimated from the soup itself, as train-teacher does for a finished run.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from reftguard.config import option, portable

log = logging.getLogger("reftguard.soup")

WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# what must agree for an average of the members to be one teacher of the same guard
SAME = ("model", "layer", "max_tokens", "center_kind", "kind")
SAME_ADAPTER = ("r", "lora_alpha", "target_modules", "layers_to_transform", "base_model_name_or_path")


@dataclass
class SoupConfig:
    members: list = option([], "Stage-1 LoRA teacher directories to average: the same starting model, data and recipe, other --seed values.")
    out: str = option("teacher", "Teacher directory to write (the soup adapter, its R_l and centre).")
    data: list = option([], "The members' training file(s), to re-estimate R_l on the first member's fit split (checked against the recorded data hash); default: the files its record names.")
    rank: int = option(0, "Rank of the soup adapter: 0 keeps the exact mean (rank = members x their rank); a smaller rank keeps each averaged weight update's best rank-r approximation (SVD), so the adapter is as small as one member's.")
    batch_size: int = option(32, "Prompts per no-grad forward batch when R_l is re-estimated.")


def soup_lora(members: list[dict], rank: int = 0) -> dict:
    """The uniform soup of LoRA state dicts with equal (r, alpha): an exact rank k r adapter (`rank` 0), or its
    per-module best rank-`rank` approximation; in both the peft scaling stays alpha_k / r_k = alpha / r
    (the caller writes r_k = the returned rank and alpha_k = r_k * alpha / r)."""
    import torch

    k = len(members)
    keys = sorted(members[0])
    if any(sorted(m) != keys for m in members[1:]):
        raise ValueError("the members' adapters cover different modules: they are not the same recipe")
    out = {}
    for key in keys:
        if "lora_A" in key:
            out[key] = torch.cat([m[key] for m in members], 0)  # [k r, in]
        elif "lora_B" in key:
            out[key] = torch.cat([m[key] for m in members], 1) / k  # [out, k r]
        else:
            raise ValueError(f"{key}: only LoRA A/B weights can be averaged this way")
    if rank and rank < lora_rank(out):
        for key in [key for key in out if "lora_A" in key]:
            kb = key.replace("lora_A", "lora_B")
            a, b = out[key].double(), out[kb].double()
            qb, rb = torch.linalg.qr(b)  # B A = qb (rb ra^T) qa^T: the SVD of a small k r x k r matrix
            qa, ra = torch.linalg.qr(a.T)
            u, s, vh = torch.linalg.svd(rb @ ra.T)
            root = s[:rank].sqrt()
            out[kb] = ((qb @ u[:, :rank]) * root).to(members[0][kb].dtype).contiguous()
            out[key] = (root[:, None] * (vh[:rank] @ qa.T)).to(members[0][key].dtype).contiguous()
    return out


def lora_rank(state: dict) -> int:
    """The rank of a LoRA state dict (the rows of its A matrices)."""
    return next(v.shape[0] for key, v in state.items() if "lora_A" in key)


def load_members(dirs: list[str]):
    """The member teachers, checked to be stage-1 LoRA teachers of one guard (same model, layer, data,
    prompt reading and adapter shape)."""
    from reftguard.modeling.teacher import Teacher

    if len(dirs) < 2:
        raise ValueError("a soup needs at least two --members")
    ts = [Teacher.load(Path(d)) for d in dirs]
    for t in ts:
        if not t.adapter or t.record.get("stage1"):
            raise ValueError(f"{t.root}: soup stage-1 LoRA teachers (then run stage 2 on the soup with --init-teacher)")
    adapters = [json.loads((t.root / t.adapter / ADAPTER_CONFIG).read_text()) for t in ts]
    first, a0 = ts[0], adapters[0]
    for t, a in zip(ts[1:], adapters[1:]):
        diff = [f for f in SAME if getattr(t, f) != getattr(first, f)]
        diff += ["prompt_format"] * (t.prompt_format != first.prompt_format)
        diff += ["data"] * (t.record.get("data_hash") != first.record.get("data_hash"))
        diff += [f"adapter {f}" for f in SAME_ADAPTER if _norm(a.get(f)) != _norm(a0.get(f))]
        if diff:
            raise ValueError(f"{t.root} differs from {first.root} in {', '.join(diff)}: not a soup of one recipe")
    return ts, a0


def _norm(value):
    return sorted(value) if isinstance(value, list) else value  # peft writes target_modules in set order


def soup_teacher(cfg: SoupConfig, command: str = ""):
    """Write the soup teacher to cfg.out (adapter, tokenizer, R_l and centre re-estimated from the soup on the
    first member's final-feature subset) and return it."""
    from safetensors.torch import load_file, save_file

    from reftguard.data import data_hash, load_labeled
    from reftguard.features import refusal_feature
    from reftguard.training.teacher_train import TeacherData, TrainConfig, class_cosines, final_states

    ts, meta = load_members(cfg.members)
    known = TrainConfig.__dataclass_fields__
    tcfg = TrainConfig(**{k: v for k, v in ts[0].record["config"].items() if k in known and k != "init_teacher"})
    tcfg.data = list(cfg.data or tcfg.data)
    if data_hash(load_labeled(tcfg.data)) != ts[0].record.get("data_hash"):  # before anything is written
        raise ValueError(f"--data {','.join(map(str, tcfg.data))} is not the data the members were trained on (data hash differs)")
    weights = soup_lora([load_file(str(t.root / t.adapter / WEIGHTS)) for t in ts], cfg.rank)
    out = Path(cfg.out)
    adir = out / "adapter"
    adir.mkdir(parents=True, exist_ok=True)
    for f in (ts[0].root / ts[0].adapter).iterdir():  # README and anything else peft wrote
        if f.name not in (WEIGHTS, ADAPTER_CONFIG):
            shutil.copy(f, adir / f.name)
    r = lora_rank(weights)
    (adir / ADAPTER_CONFIG).write_text(json.dumps(meta | {"r": r, "lora_alpha": r * float(meta["lora_alpha"]) / meta["r"]}, indent=2) + "\n")
    save_file(weights, str(adir / WEIGHTS))

    soup = replace(ts[0], root=out, adapter="adapter")  # the first member's model, layer and prompt reading
    lm, tok = soup.load_model()
    d = TeacherData.load(tcfg, out, tok)  # also writes the tokenizer the way train-teacher does
    h, y = final_states(lm, d, tcfg, soup.layer, cfg.batch_size)
    soup.refusal_feature, soup.center = refusal_feature(h, y, soup.center_kind)
    cosines = class_cosines(h, y, soup.refusal_feature, soup.center)
    soup.record = {
        "method": f"uniform weight soup of {len(ts)} ReFT teachers (same recipe, other seeds)",
        "command": command,
        "data": portable([str(x) for x in tcfg.data]),
        "data_hash": ts[0].record.get("data_hash"),
        "config": ts[0].record.get("config"),
        "soup": {"rank": r, "exact": not cfg.rank or r == len(ts) * meta["r"]},
        "members": [{"command": t.record.get("command", ""), "seconds": t.record.get("seconds"), "holdout_at_layer": t.record.get("holdout_at_layer"),
                     "refreshes": t.record.get("refreshes")} for t in ts],
        "final_feature_on": f"{len(y)} fit-split prompts of the first member's split",
        "harmful_cos": cosines[0],
        "benign_cos": cosines[1],
        "cos_to_members_r_l": [float(np.dot(soup.refusal_feature, m) / (np.linalg.norm(soup.refusal_feature) * np.linalg.norm(m))) for m in (t.refusal_feature for t in ts)],
        "soup_config": {k: portable(v) for k, v in asdict(cfg).items()},
    }
    soup.save(out)
    log.info("soup of %d teachers written to %s (adapter rank %d)", len(ts), out, r)
    return soup

