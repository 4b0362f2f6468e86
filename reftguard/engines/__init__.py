"""Inference engines behind one contract, `Engine`: `run(input_ids, attention_mask) -> (score, feature_norm)`.

- `ort`: onnxruntime, fp32 on CPU or CUDA, fp16 (the bundle's fp16 graph) on CUDA (CPU for checks);
- `openvino`: OpenVINO on CPU, fp32 or bf16 (AMX / avx512_bf16).

`make_engine` is the one way to build one: it chooses (selection.py: auto = CUDA fp16, else OpenVINO
bf16, else ORT fp32), refuses a precision the bundle has no calibration for, and returns the engine with
`.name`, `.precision`, `.provider` (cpu|cuda), `.label` (engine/precision/device), `.threshold`,
`.calibration` and `.expected_fpr` (the bundle's calibration for that precision: serve at these, not at
the top-level fp32 ones) and `.choice` (what was chosen and why). Nothing here imports
onnxruntime or openvino until an engine is built.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from reftguard.bundle import GuardBundle, fpr_curves_of, review_thresholds_of
from reftguard.engines.selection import (
    DEVICES, ENGINES, PRECISIONS, Choice, EngineError, Platform, UncalibratedPrecision, calibration_for, calibrations,
    choose, detect_platform,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("reftguard.engine")

__all__ = ["DEVICES", "ENGINES", "PRECISIONS", "Choice", "Engine", "EngineError", "Platform", "UncalibratedPrecision", "available",
           "calibration_for", "calibrations", "choose", "detect_platform", "make_engine"]


class Engine(Protocol):
    """The engine contract (docs/design.md §4), the one thing the scorer, the server's models, calibration
    and the checks ask of an engine: padded int64 `input_ids` and `attention_mask` [batch, seq] in, fp32
    `(score, feature_norm)` [batch] out, then `state` [batch, hidden] where the graph has it (every output
    of bundle_io the graph has, in its order). `provider` is the device it runs on (cpu|cuda), `threads` its
    compute threads. Engines built by
    `make_engine` also carry `.label`, `.threshold` and `.expected_fpr` (see above); test doubles need not."""

    provider: str
    threads: int

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, ...]: ...


def make_engine(bundle: GuardBundle, *, engine: str = "auto", precision: str = "auto", device: str = "auto", threads: int = 0,
                allow_uncalibrated_precision: bool = False, cpu_flags=None, platform: Platform | None = None) -> Engine:
    """Build the engine for `bundle` on this machine (`cpu_flags` / `platform` override detection)."""
    platform = platform or detect_platform(cpu_flags)
    c = choose(bundle.manifest, platform, engine, precision, device, allow_uncalibrated_precision)
    if c.engine == "openvino":
        from reftguard.engines.openvino import OpenVinoEngine

        e = OpenVinoEngine(bundle, threads, c.precision)
    else:
        from reftguard.engines.ort import OrtEngine

        e = OrtEngine(bundle, c.device, threads, precision=c.precision)
    cal = calibration_for(bundle.manifest, c.precision) or calibration_for(bundle.manifest, "fp32")
    if not c.calibrated:
        # The caller asked for this (allow_uncalibrated_precision): calibrating that precision, or scoring at a
        # threshold of its own. The server, which decides at this threshold, warns (server/app.py).
        log.info("running %s without a %s calibration: its threshold is fp32's, %.4f", c.precision, c.precision, cal["threshold"])
    e.choice, e.label = c, c.label
    e.threshold, e.calibration = float(cal["threshold"]), cal.get("calibration") or {}
    # Whole-record scoring: a role is scored only where this precision carries its own calibration.
    e.role_thresholds = {role: float(v["threshold"]) for role, v in (cal.get("roles") or {}).items()}
    e.review_thresholds = review_thresholds_of(cal)
    e.fpr_curves = fpr_curves_of(cal)
    fpr = (e.calibration.get("at_threshold") or {}).get("fpr")
    e.expected_fpr = None if fpr is None else float(fpr)
    log.info("bundle %s: engine %s (%s), threshold %.4f", bundle.bundle_id, c.label, c.reason, e.threshold)
    return e


def available(bundle: GuardBundle | None = None, platform: Platform | None = None) -> list[tuple[str, str]]:
    """(engine, precision) pairs this machine can run (ignoring calibration): what benches and tests sweep."""
    platform = platform or detect_platform()
    manifest = bundle.manifest if bundle is not None else {"threshold": 0.0, "files": {}}
    out = []
    for eng, prec in (("ort", "fp32"), ("ort", "fp16"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")):
        try:
            choose(manifest, platform, eng, prec, "auto", allow_uncalibrated=True)
        except EngineError:
            continue
        if (eng, prec) == ("ort", "fp16") and not platform.has_cuda:
            continue  # runs on CPU (for checks) but is not a serving path there
        out.append((eng, prec))
    return out
