"""Export a teacher to a guard bundle: cut at layer l, cosine head, ONNX, parity check, sealed manifest.

What we take from optimum's exporter design: a declarative per-family export config (IO spec, dummy
inputs, atol, limits: reftguard.modeling.families), export-time settings scoped to the export, and
validation of every export against the original PyTorch model within the family's `atol` (validate.py).
What we write ourselves: the model is not a stock task (a truncated decoder + gather + cosine head), so
the module (reftguard.modeling.guard) and the validator are ours; optimum's task configs assume full models.
"""
from __future__ import annotations

import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reftguard import __version__
from reftguard.bundle import FEATURE, MODEL, GuardBundle, seal, staged
from reftguard.config import option
from reftguard.card import render_card

log = logging.getLogger("reftguard.export")

# Teacher-record entries left out of the manifest: timings and machine-local paths would make the
# bundle id differ between identical builds; the full record stays in the teacher directory.
VOLATILE_RECORD_KEYS = ("layer_table", "seconds", "config", "log", "plot")


@dataclass
class ExportConfig:
    teacher: str = option("teacher", "Teacher directory written by `reftguard fit` or `reftguard train-teacher`.")
    out: str = option("bundle", "Guard bundle directory to write (replaced if it exists).")
    opset: int = option(18, "ONNX opset.")
    atol: float = option(0.0, "Fail the export if |ORT score - HF model score| exceeds this on any parity batch (0 = the family's atol, 1e-4 for every family so far).")
    max_tokens: int = option(0, "Override the teacher's max_tokens (0 keeps it).")
    fp16: bool = option(False, "Also write model.fp16.onnx (fp16 decoder body, fp32 head) for CUDA serving at --precision fp16; calibrate it with `reftguard calibrate --precision fp16`.")
    topic_layer: int = option(-1, "Also output this layer's states averaged over every real token (`topic_state`, which the harm-category head reads) and over the last 32 (`tail_state`, which the flag gate reads): -1 = half the guard's layer (8 of 16 for the default; research/category_pooling.py), 0 = neither.")
    tail_tokens: int = option(32, "How many of a turn's last real tokens `tail_state` averages (the flag gate's reading of the request that ends a turn; the tail window's size, reftguard.encoding.DEFAULT_WINDOW_TAIL).")
    int8: bool = option(False, "Also write model.int8.xml/.bin (NNCF int8 for OpenVINO, fp32 head; measured for --precision auto on this CPU) for CPU serving at --precision int8; calibrate it with `reftguard calibrate --precision int8`.")


def _export_onnx(module, fam, path: Path, opset: int, vocab_size: int, outputs: int) -> None:
    """Trace `module` to ONNX with the family's first `outputs` output names."""
    import torch

    input_ids, mask = (torch.from_numpy(a) for a in fam.dummy_inputs(vocab_size, batch=2, max_len=4))
    with warnings.catch_warnings():
        # torch's exporter warns about three things that ask nothing of a reftguard user (the graph is
        # parity-checked against PyTorch after export, validate.py):
        # - the TorchScript exporter is legacy: dynamo=False is chosen here on purpose;
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)
        # - advanced indexing "produces incorrect results for negative indices": the head gathers each row's
        #   last real token (modeling.guard.gather_last) at an argmax, never negative;
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing", category=UserWarning)
        # - tracing freezes Python-level shape checks (e.g. the embedding's padding_idx check), which are
        #   constants for a given model.
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (input_ids, mask),
            str(path),
            input_names=fam.input_names,
            output_names=fam.output_names[:outputs],
            dynamic_axes={k: v for k, v in fam.dynamic_axes.items() if k in fam.input_names + fam.output_names[:outputs]},
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def export_bundle(cfg: ExportConfig) -> GuardBundle:
    import torch

    from reftguard.exporter.validate import validate_model_outputs
    from reftguard.modeling.families import family_for
    from reftguard.modeling.guard import GuardModule
    from reftguard.modeling.loading import torch_threads, weights_sha256
    from reftguard.modeling.teacher import Teacher

    torch_threads()
    t0 = time.time()
    teacher = Teacher.load(cfg.teacher)
    max_tokens = cfg.max_tokens or teacher.max_tokens
    model, _ = teacher.load_model()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # our additive 4D mask; exports as plain ops
    fam = family_for(model.config)
    fam.check(model, teacher.layer, max_tokens)
    topic_layer = teacher.layer // 2 if cfg.topic_layer < 0 else cfg.topic_layer
    module = GuardModule(model, teacher.layer, teacher.refusal_feature, teacher.center, topic_layer, cfg.tail_tokens).eval()

    out = Path(cfg.out)
    with staged(out) as work:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            src = teacher.tokenizer_dir / name
            if src.is_file():
                shutil.copy(src, work / name)
        np.save(work / FEATURE, teacher.refusal_feature.astype(np.float32), allow_pickle=False)
        _export_onnx(module, fam, work / MODEL, cfg.opset, int(model.config.vocab_size), 5 if topic_layer else 3)
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
            **({"topic_layer": topic_layer, "tail_tokens": module.tail_tokens} if topic_layer else {}),
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
        report = validate_model_outputs(GuardBundle.load(work), model, teacher.layer, teacher.refusal_feature, teacher.center,
                                        cfg.atol or fam.atol, topic_layer=topic_layer, tail_tokens=module.tail_tokens)
        manifest["exporter"].update(report)
        seal(work, manifest, card=render_card)
    bundle = GuardBundle.load(out)
    if cfg.int8:
        from reftguard.exporter.int8 import add_int8_graph

        bundle = add_int8_graph(out)
    if cfg.fp16:
        from reftguard.exporter.fp16 import add_fp16_graph

        bundle = add_fp16_graph(out)
    log.info("exported %s to %s in %.1fs (parity %.1e)", bundle.bundle_id, out, time.time() - t0, report["parity_max_abs_diff"])
    return bundle

