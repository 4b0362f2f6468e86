"""bench/gpu_check: on a machine without CUDA the script passes with a SKIP line; with the CPU standing in
for CUDA every step (fp16 graph added to a copy, parity, batch invariance, throughput) runs for real."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.gpu_check import main
from reftguard.bundle import GuardBundle
from reftguard.engines.selection import detect_platform, has_fp16_graph

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_skips_without_cuda():
    if detect_platform().has_cuda:  # a GPU machine runs the real check instead (bench/gpu_check.sh)
        return
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("SKIP gpu_check: onnxruntime sees no CUDA GPU"), (r.stdout, r.stderr)


def test_gpu_check_steps_run_with_the_cpu_standing_in(tiny_bundle, tmp_path):
    out = tmp_path / "gpu.json"
    assert main(["--bundle", str(tiny_bundle), "--n", "48", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 48 and r["ok"] and 0 < r["parity_max_abs"] <= r["parity_atol"]  # fp16 differs from fp32, within tolerance
    assert set(r["throughput"]) == {"cpu/fp32", "cpu/fp16"} and all(v["prompts_per_s"] > 0 for v in r["throughput"].values())
    assert r["batch_invariance_max_abs"]["fp16"] >= 0 and set(r["auroc"]) == {"cpu/fp32", "cpu/fp16"}
    assert not has_fp16_graph(GuardBundle.load(tiny_bundle).manifest)  # the graph went into a copy
