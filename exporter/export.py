"""Export a teacher to a guard bundle: cut at layer l, cosine head, ONNX, parity check, sealed manifest.

What we take from optimum's exporter design: a declarative per-family config (families.py), dynamic
axes named in one place, and validation of every export against PyTorch within an `atol`. What we
write ourselves: the model is not a stock task (a truncated decoder + gather + cosine head), so the
module (guard_module.py) and the validator below are ours; optimum's task configs assume full models.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reftguard import __version__
from reftguard.bundle import FEATURE, MODEL, GuardBundle, seal, staged
from reftguard.config import option
from reftguard.exporter.card import render_card

log = logging.getLogger("reftguard.export")

# Teacher-record entries left out of the manifest: timings and machine-local paths would make the
# bundle id differ between identical builds; the full record stays in the teacher directory.
VOLATILE_RECORD_KEYS = ("layer_table", "seconds", "config", "log", "plot")

PARITY_PROMPTS = (
    "hi",
    "How do I bake sourdough bread at home?",
    "Write a Python function that merges two sorted lists and explain its complexity in detail.",
    "Explain how to kill a zombie process on Linux.",
    "Give step-by-step instructions for picking a lock on a neighbour's front door without being noticed.",
    "Summarise the following passage in two sentences: " + "The committee met on Tuesday to review the budget. " * 6,
    "¿Cuál es la capital de Francia? 日本語のテキストも少し。 emoji 🚀",
    "x" * 3,
)


@dataclass
class ExportConfig:
    teacher: str = option("teacher", "Teacher directory written by `reftguard fit` or `reftguard train-teacher`.")
    out: str = option("bundle", "Guard bundle directory to write (replaced if it exists).")
    opset: int = option(18, "ONNX opset.")
    atol: float = option(1e-4, "Fail the export if |ORT score - PyTorch score| exceeds this on the parity prompts.")
    max_tokens: int = option(0, "Override the teacher's max_tokens (0 keeps it).")


def _export_onnx(module, path: Path, opset: int, sample) -> None:
    import torch

    input_ids, mask = sample
    torch.onnx.export(
        module,
        (input_ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["score", "feature_norm"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "score": {0: "batch"}, "feature_norm": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
        do_constant_folding=True,
    )


def _parity(bundle: GuardBundle, reference, texts) -> dict:
    """Scores of `bundle` (ORT) vs `reference(input_ids, mask) -> (scores, norms)` on one mixed-length
    batch, plus ORT batch invariance (each prompt alone vs in the batch)."""
    from reftguard.encoding import PromptEncoder, pad_batch
    from reftguard.engine_ort import OrtBackend

    enc = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens).encode(list(texts), "right")
    input_ids, mask = pad_batch(enc.ids, bundle.pad_token_id)
    backend = OrtBackend(bundle, device="cpu")
    scores, norms = backend.run(input_ids, mask)
    ref_scores, ref_norms = reference(input_ids, mask)
    alone = np.array([backend.run(*pad_batch([row], bundle.pad_token_id))[0][0] for row in enc.ids])
    return {
        "parity_max_abs_diff": float(np.max(np.abs(scores - ref_scores))),
        "feature_norm_max_rel_diff": float(np.max(np.abs(norms - ref_norms) / np.maximum(ref_norms, 1e-6))),
        "batch_invariance_max_abs_diff": float(np.max(np.abs(alone - scores))),
        "n": len(texts),
    }


def validate(bundle: GuardBundle, module, texts=PARITY_PROMPTS) -> dict:
    """Parity of the exported graph against the PyTorch module it came from."""
    import torch

    def reference(input_ids, mask):
        with torch.no_grad():
            s, n = module(torch.from_numpy(input_ids), torch.from_numpy(mask))
        return s.numpy(), n.numpy()

    return _parity(bundle, reference, texts)


def validate_against(bundle: GuardBundle, reference_bundle: GuardBundle, texts=PARITY_PROMPTS) -> dict:
    """Parity of a derived bundle (e.g. int8) against the bundle it came from."""
    from reftguard.engine_ort import OrtBackend

    return _parity(bundle, OrtBackend(reference_bundle, device="cpu").run, texts)


def export_bundle(cfg: ExportConfig) -> GuardBundle:
    import torch

    from reftguard.exporter.families import family_for
    from reftguard.exporter.guard_module import GuardModule
    from reftguard.training.models import torch_threads, weights_sha256
    from reftguard.training.teacher import Teacher

    torch_threads()
    t0 = time.time()
    teacher = Teacher.load(cfg.teacher)
    max_tokens = cfg.max_tokens or teacher.max_tokens
    model, _ = teacher.load_model()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # our additive 4D mask; exports as plain ops
    fam = family_for(model.config)
    fam.validate(model.config, teacher.layer, max_tokens)
    module = GuardModule(model, teacher.layer, teacher.refusal_feature, teacher.center).eval()

    out = Path(cfg.out)
    with staged(out) as work:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            src = teacher.tokenizer_dir / name
            if src.is_file():
                shutil.copy(src, work / name)
        np.save(work / FEATURE, teacher.refusal_feature.astype(np.float32), allow_pickle=False)
        sample = (torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]))
        _export_onnx(module, work / MODEL, cfg.opset, sample)
        holdout = teacher.record.get("holdout_at_layer") or {}
        threshold = float(holdout.get("threshold", 0.0))
        manifest = {
            "source_model": {
                "name": teacher.model,
                "architecture": type(model).__name__,
                "model_type": model.config.model_type,
                "weights_sha256": weights_sha256(model),
            },
            "layer": teacher.layer,
            "hidden_size": teacher.hidden_size,
            "num_layers_total": teacher.num_layers,
            "prompt_format": teacher.prompt_format.to_dict(),
            "max_tokens": max_tokens,
            "truncation": "window",  # what the server does by default with a prompt over max_tokens
            "padding_side": "right",
            "pad_token_id": 0,  # any id works: the attention mask, not the pad id, marks real tokens
            "score": {"kind": "cosine", "center": teacher.center_kind, "head_dtype": "float32"},
            "threshold": threshold,
            "calibration": {
                "method": "target recall on the fit's held-back training split (provisional; run `reftguard calibrate`)",
                "target": {"recall": 0.95},
                "data": "held-back split of the training data",
                "data_hash": teacher.record.get("data_hash"),
                "n": holdout.get("n"),
                "at_threshold": holdout,
            },
            "teacher": {"kind": teacher.kind, "record": {k: v for k, v in teacher.record.items() if k not in VOLATILE_RECORD_KEYS}},
            "exporter": {
                "version": __version__,
                "opset": cfg.opset,
                "dtype": "float32",
                "torch": torch.__version__,
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        seal(work, manifest, card=render_card)
        report = validate(GuardBundle.load(work), module)
        if report["parity_max_abs_diff"] > cfg.atol:
            raise RuntimeError(f"export parity failed: max |ORT - PyTorch| = {report['parity_max_abs_diff']:.2e} > atol {cfg.atol:.0e}")
        manifest["exporter"].update(report)
        seal(work, manifest, card=render_card)
    bundle = GuardBundle.load(out)
    log.info("exported %s to %s in %.1fs (parity %.1e)", bundle.bundle_id, out, time.time() - t0, report["parity_max_abs_diff"])
    return bundle

