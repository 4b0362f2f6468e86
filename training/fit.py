"""Zero-training fit: R_l as a difference of means, layer chosen by AUROC on a held-back split of the
training file (never on dev).

Recipe, top to bottom:
  1. load the causal LM and derive the prompt format from its chat template;
  2. encode every training prompt exactly as the server will (reftguard.encoding);
  3. run the decoder once, collecting the last-real-token state after every layer;
  4. per layer: fit R on the fit split, score the held split, record AUROC / recall@1%FPR;
  5. pick the layer, refit R on all training prompts, save a teacher directory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.config import option
from reftguard.data import data_hash, holdout_split, load_labeled
from reftguard.encoding import PromptEncoder, length_sorted_batches
from reftguard.features import CENTERS, cosine_scores, refusal_feature
from reftguard.prompt import PromptFormat

log = logging.getLogger("reftguard.fit")


@dataclass
class FitConfig:
    model: str = option("packaged:smollm2", "Causal LM: local directory, hub id, .gguf file, or packaged:smollm2.")
    data: list = option([], "Labeled training JSONL file(s) (harmful/benign). Never pass dev data here.")
    out: str = option("teacher", "Teacher directory to write.")
    layer: int = option(0, "Layer to use (hidden state after this many decoder layers); 0 picks it by held-out AUROC.")
    max_layer: int = option(0, "Consider layers 1..max_layer only (0 = all); lower is faster.")
    center: str = option("midpoint", "Centre subtracted before the cosine: 'none' (the paper's plain cosine) or 'midpoint' of the class means.", choices=CENTERS)
    holdout: float = option(0.2, "Fraction of the training file held back to choose the layer.")
    max_tokens: int = option(512, "Longest prompt (template included) in tokens; longer ones are truncated on the right.")
    batch_size: int = option(32, "Prompts per forward batch.")
    seed: int = option(0, "Seed of the held-back split.")


def encode_texts(tokenizer_dir: Path, prompt: PromptFormat, max_tokens: int, texts: list[str]) -> list[list[int]]:
    enc = PromptEncoder(tokenizer_dir / "tokenizer.json", prompt, max_tokens)
    return enc.encode(texts, truncation="right").ids


def collect_states(model, ids: list[list[int]], num_layers: int, batch_size: int, pad_id: int) -> np.ndarray:
    """[n, num_layers, hidden] float32 last-token states, rows in input order."""
    import torch

    from reftguard.modeling.guard import last_token_states

    out = np.zeros((len(ids), num_layers, model.config.hidden_size), dtype=np.float32)
    for rows, input_ids, mask in length_sorted_batches(ids, batch_size, pad_id=pad_id):
        states = last_token_states(model, [(torch.from_numpy(input_ids), torch.from_numpy(mask))], num_layers)
        out[rows] = states.numpy()
    return out


def layer_table(states: np.ndarray, y: np.ndarray, fit_idx, held_idx, center: str) -> list[dict]:
    table = []
    for li in range(states.shape[1]):
        r, c = refusal_feature(states[fit_idx, li], y[fit_idx], center)
        s = cosine_scores(states[held_idx, li], r, c)
        yh = y[held_idx]
        table.append(
            {
                "layer": li + 1,
                "auroc": evaluation.auroc(s, yh),
                "recall_at_1pct_fpr": evaluation.recall_at_fpr(s, yh, 0.01),
                "gap": float(s[yh == 1].mean() - s[yh == 0].mean()),
            }
        )
    return table


def fit(cfg: FitConfig):
    from reftguard.modeling.loading import load_causal_lm, torch_threads, weights_sha256
    from reftguard.modeling.teacher import Teacher

    torch_threads()
    t0 = time.time()
    prompts = load_labeled(cfg.data)
    y = np.array([p.label for p in prompts])
    model, tok = load_causal_lm(cfg.model)
    out = Path(cfg.out)
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out / "tokenizer")
    prompt = PromptFormat.from_hf_tokenizer(tok)
    ids = encode_texts(out / "tokenizer", prompt, cfg.max_tokens, [p.text for p in prompts])
    n_layers = model.config.num_hidden_layers
    top = cfg.layer if cfg.layer else (cfg.max_layer or n_layers)
    if not 1 <= top <= n_layers:
        raise ValueError(f"layer {top} out of range 1..{n_layers}")
    log.info("collecting last-token states of %d prompts over %d layers", len(ids), top)
    states = collect_states(model, ids, top, cfg.batch_size, tok.pad_token_id)
    fit_idx, held_idx = holdout_split(prompts, cfg.holdout, cfg.seed)
    table = layer_table(states, y, fit_idx, held_idx, cfg.center)
    if cfg.layer:
        layer = cfg.layer
    else:
        best = max(table, key=lambda r: (r["auroc"] or 0.0, r["recall_at_1pct_fpr"] or 0.0))
        layer = best["layer"]
    # Refit on every training prompt at the chosen layer: the held split only served the choice.
    r, c = refusal_feature(states[:, layer - 1], y, cfg.center)
    held_scores = cosine_scores(states[held_idx, layer - 1], *refusal_feature(states[fit_idx, layer - 1], y[fit_idx], cfg.center))
    record = {
        "method": "difference of means (zero-training)",
        "data": [Path(d).name for d in cfg.data],  # names, not paths: the record ends up in the bundle id
        "data_hash": data_hash(prompts),
        "n": len(prompts),
        "n_harmful": int(y.sum()),
        "holdout_fraction": cfg.holdout,
        "layer_table": table,
        "chosen_layer": layer,
        "holdout_at_layer": evaluation.summarize(held_scores, y[held_idx], evaluation.threshold_for_recall(held_scores, y[held_idx], 0.95)),
        "seconds": round(time.time() - t0, 1),
    }
    teacher = Teacher(
        model=cfg.model,
        layer=layer,
        hidden_size=int(model.config.hidden_size),
        num_layers=int(n_layers),
        prompt_format=prompt,
        max_tokens=cfg.max_tokens,
        refusal_feature=r,
        center=c,
        center_kind=cfg.center,
        kind="zero-training",
        record=record | {"weights_sha256": weights_sha256(model)},
    )
    teacher.save(out)
    log.info("fit done in %.1fs: layer %d, held-out AUROC %.4f", time.time() - t0, layer, table[layer - 1]["auroc"] or 0)
    return teacher
