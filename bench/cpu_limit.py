"""What this CPU can do at the guard's GEMM shape, through each backend the engines use, in one run.

The guard's forward is dominated by matrix products of a batch's token rows with the layers' weights
(SmolLM2-135M: hidden 576, MLP 1536). This times one such product, [M x K] @ [K x N], repeatedly, per
backend and number format, and reports GFLOP/s (2*M*K*N per product): the ceiling a serving engine can
approach on this machine, to set the engines' tokens/s against (about 113 MFLOP per token at layer 16).

  torch      fp32, bf16 (torch.mm), int8 (torch._int_mm, int8 x int8 -> int32)
  openvino   fp32, bf16 (a one-MatMul model, INFERENCE_PRECISION_HINT)
  ort        fp32 (a one-MatMul ONNX model)

    OMP_NUM_THREADS=2 python -m bench.cpu_limit [--m 1536 --k 576 --n 1536] [--seconds 2] [--out bench/results/cpu_limit.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np


def gflops(m: int, k: int, n: int, seconds_per_call: float) -> float:
    return 2.0 * m * k * n / seconds_per_call / 1e9


def rate(call: Callable[[], object], seconds: float) -> float:
    """Seconds per call: the best of the timed rounds after a warm-up (other jobs only ever slow a round)."""
    call()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(5):
            call()
        best = min(best, (time.perf_counter() - t0) / 5)
    return best


def torch_paths(m, k, n, threads):
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    yield "torch", "fp32", lambda: torch.mm(a, b)
    ab, bb = a.bfloat16(), b.bfloat16()
    yield "torch", "bf16", lambda: torch.mm(ab, bb)
    ai, bi = torch.randint(-128, 127, (m, k), dtype=torch.int8), torch.randint(-128, 127, (k, n), dtype=torch.int8)
    yield "torch", "int8", lambda: torch._int_mm(ai, bi)


def openvino_paths(m, k, n, threads):
    from reftguard.engines.openvino import import_openvino

    ov = import_openvino()
    import openvino.opset13 as ops

    x = ops.parameter([m, k], ov.Type.f32, name="x")
    w = ops.constant(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32))
    model = ov.Model([ops.matmul(x, w, False, False)], [x])
    a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    for precision, hint, name in (("fp32", "f32", "float32"), ("bf16", "bf16", "bfloat16")):
        try:
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
        except RuntimeError:
            continue
        if f"'{name}'" not in str(compiled.get_property("INFERENCE_PRECISION_HINT")):
            continue  # no bf16 units: OpenVINO would silently run f32
        req = compiled.create_infer_request()
        yield "openvino", precision, lambda req=req: req.infer({0: a})


def ort_paths(m, k, n, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [w])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    yield "ort", "fp32", lambda: sess.run(None, {"x": a})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=1536, help="Rows: the token rows of a batch.")
    ap.add_argument("--k", type=int, default=576, help="Hidden size.")
    ap.add_argument("--n", type=int, default=1536, help="MLP width.")
    ap.add_argument("--seconds", type=float, default=2.0, help="Timed per path (after a warm-up call).")
    ap.add_argument("--out", default="bench/results/cpu_limit.json")
    args = ap.parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    rows = []
    for paths in (torch_paths, openvino_paths, ort_paths):
        for backend, precision, call in paths(args.m, args.k, args.n, threads):
            s = rate(call, args.seconds)
            rows.append({"backend": backend, "precision": precision, "seconds_per_call": s, "gflops": gflops(args.m, args.k, args.n, s)})
            print(f"{backend:9} {precision:5} {rows[-1]['gflops']:8.1f} GFLOP/s")
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), [])
    out = {"shape": [args.m, args.k, args.n], "threads": threads, "cpu": platform.processor() or platform.machine(),
           "cpu_flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni"))),
           "load_average": os.getloadavg(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
