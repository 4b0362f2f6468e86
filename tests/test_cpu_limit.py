"""bench/cpu_limit.py: the GEMM-rate bench runs every backend it finds and reports what it measured."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cpu_limit


def test_gflops_counts_two_operations_per_multiply_add():
    assert cpu_limit.gflops(1000, 1000, 1000, 1.0) == pytest.approx(2.0)
    assert cpu_limit.gflops(1536, 576, 1536, 0.01) == pytest.approx(2 * 1536 * 576 * 1536 / 0.01 / 1e9)


def test_every_backend_is_timed_on_a_small_shape(tmp_path):
    out = tmp_path / "limit.json"
    assert cpu_limit.main(["--m", "64", "--k", "32", "--n", "48", "--seconds", "0.05", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    got = {(row["backend"], row["precision"]) for row in r["rows"]}
    assert {("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("ort", "fp32"), ("openvino", "fp32")} <= got
    assert r["shape"] == [64, 32, 48] and all(row["gflops"] > 0 and row["seconds_per_call"] > 0 for row in r["rows"])


def test_engine_shares_of_the_limit_count_the_graphs_linear_flops(tiny_bundle, tmp_path):
    """bench.serve_vs_ort: FLOPs per token are 2 x the decoder's MatMul weights (from the model config here), and
    an engine's share of the limit is its GFLOP/s over the best measured rate of its number format."""
    from bench.serve_vs_ort import flops_per_token, limit_shares
    from reftguard.bundle import GuardBundle

    b = GuardBundle.load(tiny_bundle)
    h, mlp, kv = 32, 64, 32 * 2 // 4  # tests/tiny.py: hidden 32, MLP 64, 4 heads, 2 key-value heads
    per_layer = h * h * 2 + h * kv * 2 + h * mlp * 3  # q, o; k, v; gate, up, down
    fpt = flops_per_token(b)
    assert fpt == 2 * b.layer * per_layer
    limit = tmp_path / "limit.json"
    limit.write_text(json.dumps({"rows": [{"backend": "ort", "precision": "fp32", "gflops": 100.0},
                                          {"backend": "openvino", "precision": "fp32", "gflops": 200.0},
                                          {"backend": "torch", "precision": "int8", "gflops": 800.0}]}))
    r = limit_shares(b, {"ort/fp32": 10.0, "openvino/int8": 40.0, "ort/fp16": 5.0}, 50.0, limit)
    assert r["limit_gflops"] == {"fp32": 200.0, "int8": 800.0}
    assert r["engines"]["ort/fp32"]["share_of_limit"] == pytest.approx(10 * 50 * fpt / 1e9 / 200)
    assert r["engines"]["openvino/int8"]["share_of_limit"] == pytest.approx(40 * 50 * fpt / 1e9 / 800)
    assert r["engines"]["ort/fp16"]["share_of_limit"] is None  # no fp16 rate measured
    assert limit_shares(b, {"ort/fp32": 1.0}, 1.0, tmp_path / "missing.json") is None


def test_a_bench_server_dies_with_its_bench(tiny_bundle):
    """A bench killed by a signal takes the `reftguard serve` it started with it, instead of leaving it running
    beside the next measurement."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time\nfrom bench.serve_vs_ort import Server\n"
            f"s = Server({str(tiny_bundle)!r}, [])\nprint(s.proc.pid, flush=True)\ntime.sleep(120)\n")
    def running(pid: int) -> bool:  # a zombie waiting for a reaper has stopped running
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    bench = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server = int(bench.stdout.readline())
    assert running(server)
    bench.send_signal(signal.SIGKILL)
    bench.wait(30)
    deadline = time.monotonic() + 30
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    if running(server):
        os.kill(server, signal.SIGKILL)
        raise AssertionError("the server outlived its bench")
