"""The OpenVINO engine (CPU): reads the bundle's model.onnx directly, runs it in fp32 or bf16; or runs the
bundle's int8 graph (model.int8.xml, NNCF post-training quantization, exporter/int8.py), whose int8
MatMuls use VNNI and whose other ops run in bf16 where the CPU has bf16 units (else fp32).

bf16 is OpenVINO's `INFERENCE_PRECISION_HINT`: matmuls and most activations run in bf16 on AMX or
avx512_bf16 units. The bundle's hashes cover the one fp32 graph; the bf16 program is OpenVINO's
compilation of it, and the bundle carries a separate bf16 calibration (scores shift by up to ~0.03).
The head's reductions still accumulate in fp32 inside OpenVINO's kernels.

Batch invariance in bf16. A row's score does not depend on the batch size, but it can depend on the
padded width of its batch: OpenVINO's reductions over the key axis are blocked by that width, and a
reduction-order difference that is ~1e-7 in fp32 can flip a bf16 rounding and move a score by ~2e-3
(measured on SmolLM2 layer 16: a 43-token prompt alone vs padded to 57). So in bf16 every row is run
at a width that depends on its own length only: rows are grouped by their length rounded up to
`width_multiple` (8) and each group is padded to exactly that width. A prompt then scores the same
bits whatever its company (tested: max |Δ| = 0), for a few pad tokens per row.
"""
from __future__ import annotations

import logging
import sys
import threading

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.engines.ort import available_cores
from reftguard.engines.selection import INT8_MODEL, has_bf16_units, read_cpu_flags

log = logging.getLogger("reftguard.engine")
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}  # int8: the hint covers the ops left unquantized
# OpenVINO's CPU plugin keeps compiled kernels per input shape (rows x width) in a runtime cache of 5,000
# entries by default. A server sees thousands of shapes, so RSS kept growing through a 40k-prompt soak
# (+5% in three minutes). 256 entries hold the common shapes; measured on the default bundle, RSS then
# stops growing after ~200 distinct batches instead of climbing on.
RUNTIME_CACHE_CAPACITY = 256


def import_openvino():
    """`openvino`, imported without its telemetry. `import openvino` sends a usage event to Google Analytics
    (openvino_telemetry, on unless the user opted out). A guard server must not phone home, and the send forks
    a process, which gRPC then logs as "Other threads are currently calling into gRPC, skipping fork()
    handlers". OpenVINO falls back to its no-op telemetry stub when openvino_telemetry cannot be imported."""
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


class OpenVinoEngine:
    name = "openvino"
    provider = "cpu"

    def __init__(self, bundle: GuardBundle, threads: int = 0, precision: str = "bf16", width_multiple: int | None = None,
                 cache_capacity: int = RUNTIME_CACHE_CAPACITY):
        ov = import_openvino()
        if precision not in HINTS:
            raise ValueError(f"openvino runs {' or '.join(HINTS)} here, not {precision!r}")
        self.bundle, self.precision = bundle, precision
        # Reduced precisions pad each row to its own width (module docstring): batch invariance.
        self.width_multiple = (1 if precision == "fp32" else 8) if width_multiple is None else width_multiple
        self.pad_id = bundle.pad_token_id
        core = ov.Core()
        n = self.threads = threads or available_cores()
        hint = HINTS[precision]
        if precision == "int8" and not has_bf16_units(read_cpu_flags()):
            hint = "f32"
        self.config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": n, "PERFORMANCE_HINT": "LATENCY",
                       "CPU_RUNTIME_CACHE_CAPACITY": cache_capacity}
        path = bundle.root / INT8_MODEL if precision == "int8" else bundle.model_path
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", self.config)
        got = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        want = {"f32": "float32", "bf16": "bfloat16"}[hint]
        if f"'{want}'" not in got:  # e.g. bf16 asked on a CPU without bf16 units
            raise RuntimeError(f"OpenVINO compiled the bundle at {got}, not {want}")
        self._outputs = [self.compiled.output(name) for name in bundle_io.output_names(n for o in self.compiled.outputs for n in o.get_names())]
        self._local = threading.local()  # one infer request per calling thread
        log.info("bundle %s: openvino %s %s on cpu (%d threads)", bundle.bundle_id, ov.__version__.split("-")[0], precision, n)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, ...]:
        m = self.width_multiple
        if m <= 1:
            return self._infer(input_ids, attention_mask)
        widths = -(-attention_mask.sum(1) // m) * m  # each row's own width: its length rounded up
        outs: list[np.ndarray] | None = None
        for w in np.unique(widths):
            rows = np.flatnonzero(widths == w)
            ids = np.full((len(rows), w), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), w), dtype=np.int64)
            k = min(int(w), input_ids.shape[1])
            ids[:, :k], mask[:, :k] = input_ids[rows, :k], attention_mask[rows, :k]
            part = self._infer(ids, mask)
            if outs is None:
                outs = [np.empty((len(widths), *p.shape[1:]), dtype=np.float32) for p in part]
            for o, p in zip(outs, part):
                o[rows] = p
        return tuple(outs)

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, ...]:
        req = getattr(self._local, "req", None)
        if req is None:
            req = self._local.req = self.compiled.create_infer_request()
        out = req.infer(bundle_io.feeds(np.ascontiguousarray(input_ids), np.ascontiguousarray(attention_mask)))
        # The request reuses its output buffers on the next call: copy.
        return tuple(np.array(out[o], dtype=np.float32, copy=True) for o in self._outputs)
