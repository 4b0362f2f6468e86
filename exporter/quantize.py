"""Static int8 (QDQ) quantization of a guard bundle for faster CPU serving.

Why static: ORT's *dynamic* quantization computes activation scales per batch, so a prompt's score
changes with its batch-mates (measured up to 0.08). Static QDQ fixes every activation scale at
calibration time from training prompts, so each row is quantized the same way whatever else is in the
batch. Only the decoder's weight MatMuls are quantized (attention products and MLP down-projections stay
fp32, see `keep_fp32`); the cosine head (its MatMul with R_l is not a `*_proj` node, and the norms) stays fp32.
The quantized model scores differently from the fp32 one, so its threshold is recalibrated on the int8
model itself before the bundle is sealed.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import MODEL, GuardBundle, seal, staged
from reftguard.config import option
from reftguard.encoding import PromptEncoder, pad_batch
from reftguard.engines.selection import FP16_MODEL

log = logging.getLogger("reftguard.quantize")


@dataclass
class QuantizeConfig:
    bundle: str = option("", "fp32 guard bundle to quantize.")
    out: str = option("", "Directory for the int8 bundle (replaced if it exists).")
    calib_data: list = option([], "Labeled JSONL to take activation ranges from (training prompts, not dev).")
    calib_prompts: int = option(64, "Prompts used for activation ranges.")
    calibrate_on: list = option([], "Labeled JSONL to recalibrate the threshold on with the int8 model (dev data).")
    target_recall: float = option(0.9, "Recall target for the recalibrated threshold.")
    keep_fp32: list = option(["down_proj"], "Node-name substrings whose MatMuls stay fp32 (LLM MLP down-projections carry activation outliers that a static int8 range clips).")


class _Reader:
    """onnxruntime CalibrationDataReader over encoded prompts, one at a time (no padding in the ranges)."""

    def __init__(self, ids: list[list[int]]):
        self._it = iter(ids)

    def get_next(self):
        row = next(self._it, None)
        if row is None:
            return None
        return bundle_io.feeds(*pad_batch([row]))


def quantize_bundle(cfg: QuantizeConfig) -> GuardBundle:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reftguard.calibration import CalibrateConfig, calibrate
    from reftguard.data import load_labeled
    from reftguard.card import render_card
    from reftguard.exporter.validate import validate_against

    src = GuardBundle.load(cfg.bundle)
    prompts = load_labeled(cfg.calib_data)
    rng = np.random.default_rng(0)
    pick = [prompts[i].text for i in rng.choice(len(prompts), size=min(cfg.calib_prompts, len(prompts)), replace=False)]
    ids = PromptEncoder(src.tokenizer_path, src.prompt_format, src.max_tokens).encode(pick, "right").ids
    out = Path(cfg.out)
    with staged(out) as work:
        for f in src.root.iterdir():
            if f.is_file() and f.name not in (MODEL, FP16_MODEL, "guard.json"):
                shutil.copy(f, work / f.name)
        pre = work / "pre.onnx"
        quant_pre_process(str(src.model_path), str(pre), skip_symbolic_shape=True)
        import onnx

        # Only weight MatMuls (the *_proj layers) are quantized: attention's activation x activation
        # products and the listed outlier-prone projections stay fp32.
        keep = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
                if n.op_type == "MatMul" and ("_proj/" not in n.name or any(k in n.name for k in cfg.keep_fp32))]
        quantize_static(
            str(pre), str(work / MODEL), _Reader(ids), nodes_to_exclude=keep,
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"], per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        )
        pre.unlink()
        manifest = {k: v for k, v in src.manifest.items() if k not in ("precisions", "fp16")}  # those were for the fp32 graph
        manifest["exporter"] = dict(src.manifest["exporter"], dtype="int8 (static QDQ, MatMul only; head fp32)")
        manifest["quantization"] = {"from_bundle": src.bundle_id, "calib_prompts": len(ids), "method": "static QDQ MinMax, per-channel weights",
                                    "kept_fp32": sorted(cfg.keep_fp32), "kept_fp32_nodes": len(keep)}
        seal(work, manifest, card=render_card)
        manifest["quantization"].update(validate_against(GuardBundle.load(work), src))
        seal(work, manifest, card=render_card)
    return calibrate(CalibrateConfig(bundle=str(out), data=cfg.calibrate_on, target_recall=cfg.target_recall))
