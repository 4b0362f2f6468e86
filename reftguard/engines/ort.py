"""The onnxruntime engine: one session over a verified guard bundle (numpy in, numpy out).

fp32 runs `model.onnx`; fp16 runs the bundle's `model.fp16.onnx` (fp16 decoder body, fp32 head, written
by the exporter: exporter/fp16.py), on CUDA in production and on CPU for calibration and tests. The
provider is CUDA when asked for (or under device auto when onnxruntime-gpu sees a GPU), else CPU. On GPU,
IO binding lets ORT copy inputs once and keeps outputs in preallocated buffers; on CPU it only adds
bookkeeping, so there it is off unless asked for (tests use it to check parity).
"""
from __future__ import annotations

import logging

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.threads import compute_threads
from reftguard.engines.selection import DEVICES, FP16_MODEL

log = logging.getLogger("reftguard.engine")


def available_cores() -> int:
    """Threads for an engine's pool (reftguard.threads: the cores given, or OMP_NUM_THREADS)."""
    return compute_threads()


class OrtEngine:
    name = "ort"

    def __init__(self, bundle: GuardBundle, device: str = "auto", threads: int = 0, io_binding: bool | None = None,
                 precision: str = "fp32"):
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"onnxruntime runs fp32 or fp16 graphs, not {precision!r}")
        self.bundle, self.precision = bundle, precision
        avail = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in avail
        if device == "cuda" and not want_cuda:
            raise RuntimeError(f"device 'cuda' requested but onnxruntime offers only {avail}; install reftguard[gpu]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads = threads or available_cores()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        path = bundle.model_path if precision == "fp32" else bundle.root / FP16_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"bundle {bundle.bundle_id} has no {path.name}")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.provider = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.outputs = bundle_io.output_names(o.name for o in self.session.get_outputs())
        self.io_binding = (self.provider == "cuda") if io_binding is None else io_binding
        log.info("bundle %s: onnxruntime %s on %s (%d threads)", bundle.bundle_id, precision, self.provider, opts.intra_op_num_threads)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input(bundle_io.INPUT_IDS, np.ascontiguousarray(input_ids))
            binding.bind_cpu_input(bundle_io.ATTENTION_MASK, np.ascontiguousarray(attention_mask))
            for name in self.outputs:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()
        else:
            out = self.session.run(self.outputs, bundle_io.feeds(input_ids, attention_mask))
        return tuple(o.astype(np.float32, copy=False) for o in out)

