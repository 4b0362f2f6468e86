"""bench/cpu_limit.py: the GEMM-rate bench runs every backend it finds and reports what it measured."""
from __future__ import annotations

import json

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
