"""How many threads one process's compute pools (torch, onnxruntime, OpenVINO) use.

By default every core the process may run on (`os.sched_getaffinity`: a container's CPU set, not the
host's core count). `OMP_NUM_THREADS` overrides it, for every engine alike: two processes that share
cores and each spin up a full pool wait on each other's threads (measured 30x slower on 2 cores), so
a job that runs beside a server, or a test run with several workers, sets OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import os


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def compute_threads() -> int:
    """OMP_NUM_THREADS when it is a positive integer, else `cores()`."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        n = 0
    return n if n > 0 else cores()


def tokenizer_workers() -> int:
    """The server's tokenizer threads beside an engine that uses every core: one per 8 cores, at least 1.
    Tokenizing a request is ~1% of its time on the engine (bench/scan_throughput.py), so a few threads keep the
    engine fed; more would only take cores from it."""
    return max(1, cores() // 8)
