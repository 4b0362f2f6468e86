"""The OpenVINO engine (CPU): reads the bundle's model.onnx directly, runs it in fp32 or bf16.

bf16 is OpenVINO's `INFERENCE_PRECISION_HINT`: matmuls and most activations run in bf16 on AMX or
avx512_bf16 units. The bundle's hashes cover the one fp32 graph; the bf16 program is OpenVINO's
compilation of it, and the bundle carries a separate bf16 calibration (scores shift by up to ~0.03).
The head's reductions still accumulate in fp32 inside OpenVINO's kernels.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.engines.ort import available_cores

log = logging.getLogger("reftguard.engine")
HINTS = {"fp32": "f32", "bf16": "bf16"}
TYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}  # how OpenVINO reports the compiled precision


class OpenVinoEngine:
    name = "openvino"
    provider = "cpu"

    def __init__(self, bundle: GuardBundle, threads: int = 0, precision: str = "bf16"):
        import openvino as ov

        if precision not in HINTS:
            raise ValueError(f"openvino runs {' or '.join(HINTS)} here, not {precision!r}")
        self.bundle, self.precision = bundle, precision
        core = ov.Core()
        n = threads or available_cores()
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": n, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(core.read_model(str(bundle.model_path)), "CPU", config)
        got = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if f"'{TYPE_NAMES[precision]}'" not in got:  # e.g. bf16 asked on a CPU without bf16 units
            raise RuntimeError(f"OpenVINO compiled the bundle at {got}, not {precision}")
        self._outputs = [self.compiled.output(name) for name in bundle_io.OUTPUT_NAMES]
        self._local = threading.local()  # one infer request per calling thread
        log.info("bundle %s: openvino %s %s on cpu (%d threads)", bundle.bundle_id, ov.__version__.split("-")[0], precision, n)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        req = getattr(self._local, "req", None)
        if req is None:
            req = self._local.req = self.compiled.create_infer_request()
        out = req.infer(bundle_io.feeds(np.ascontiguousarray(input_ids), np.ascontiguousarray(attention_mask)))
        # The request reuses its output buffers on the next call: copy.
        score, norm = (np.array(out[o], dtype=np.float32, copy=True) for o in self._outputs)
        return score, norm
