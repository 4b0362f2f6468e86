"""The ORT engine: one onnxruntime session over a verified guard bundle (numpy in, numpy out).

It lives in the core, not in server/, because the in-process scan, calibration, eval and the exporter's
parity check run the same session without a server.

`OrtBackend.run` takes padded int64 arrays and returns fp32 `score` and `feature_norm`. The provider is
CUDA when onnxruntime-gpu is installed and a GPU is visible (unless forced to CPU), else CPU; the
choice is logged and exposed as `.provider`.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from reftguard.bundle import GuardBundle

log = logging.getLogger("reftguard.engine")
DEVICES = ("auto", "cpu", "cuda")


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OrtBackend:
    def __init__(self, bundle: GuardBundle, device: str = "auto", threads: int = 0, io_binding: bool | None = None):
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.bundle = bundle
        avail = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in avail
        if device == "cuda" and not want_cuda:
            raise RuntimeError(f"device 'cuda' requested but onnxruntime offers only {avail}; install reftguard[gpu]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or available_cores()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(bundle.model_path), sess_options=opts, providers=providers)
        self.provider = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        # On GPU, IO binding lets ORT copy inputs once and keeps outputs in preallocated buffers; on CPU
        # it only adds bookkeeping, so it is off unless asked for (tests use it to check parity).
        self.io_binding = (self.provider == "cuda") if io_binding is None else io_binding
        log.info("bundle %s: onnxruntime provider %s (%d threads)", bundle.bundle_id, self.provider, opts.intra_op_num_threads)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids))
            binding.bind_cpu_input("attention_mask", np.ascontiguousarray(attention_mask))
            binding.bind_output("score")
            binding.bind_output("feature_norm")
            self.session.run_with_iobinding(binding)
            score, norm = binding.copy_outputs_to_cpu()
        else:
            score, norm = self.session.run(["score", "feature_norm"], {"input_ids": input_ids, "attention_mask": attention_mask})
        return score.astype(np.float32, copy=False), norm.astype(np.float32, copy=False)
