"""RSS of the OpenVINO engine over many distinct batch shapes, with its per-shape kernel cache capped
(the engine's RUNTIME_CACHE_CAPACITY) against the plugin's default of 5,000 entries.

Each capacity runs in its own process on the same seeded sequence of (rows, width) shapes, as the server
produces them (widths a multiple of 8, as the bf16 engine pads). Side by side in one run:

    python -m research.openvino_shape_cache --bundle $(reftguard default-bundle --print-path) \\
        --json research/results/openvino_shape_cache.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(bundle: str, capacity: int, batches: int, precision: str) -> dict:
    import numpy as np

    from reftguard.bundle import GuardBundle
    from reftguard.engines.openvino import OpenVinoEngine

    def rss_mb() -> float:
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    e = OpenVinoEngine(GuardBundle.load(bundle), precision=precision, cache_capacity=capacity)
    rng = np.random.default_rng(0)
    timeline, tokens, t0 = [], 0, time.perf_counter()
    for k in range(batches):
        n, w = int(rng.integers(1, 33)), 8 * int(rng.integers(1, 20))
        e.run(rng.integers(5, 1000, size=(n, w)), np.ones((n, w), dtype=np.int64))
        tokens += n * w
        if k % 50 == 0 or k == batches - 1:
            timeline.append([k + 1, round(rss_mb(), 1)])
    return {"capacity": capacity, "rss_mb": timeline, "tokens_per_s": tokens / (time.perf_counter() - t0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--batches", type=int, default=600)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--capacities", default="256,5000")
    ap.add_argument("--json", default="")
    ap.add_argument("--one", type=int, default=-1, help=argparse.SUPPRESS)  # child: measure one capacity
    ns = ap.parse_args(argv)
    if ns.one >= 0:
        print(json.dumps(measure(ns.bundle, ns.one, ns.batches, ns.precision)))
        return 0
    runs = []
    for cap in map(int, ns.capacities.split(",")):
        out = subprocess.run([sys.executable, __file__, "--bundle", ns.bundle, "--batches", str(ns.batches), "--precision", ns.precision,
                              "--one", str(cap)], check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    for r in runs:  # growth over the second half of the run: what is left after warm-up
        half = next(v for k, v in r["rss_mb"] if k > ns.batches // 2)
        r["growth_second_half_mb"] = round(r["rss_mb"][-1][1] - half, 1)
    result = {"batches": ns.batches, "precision": ns.precision, "runs": runs,
              "note": "shape sequence seeded; tokens/s is noisy on a shared machine (load average in the file)",
              "load_avg": list(os.getloadavg())}
    print(json.dumps(result, indent=1))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
