"""Thread sizing follows the cores a process is given (its CPU set, not the host's), and OMP_NUM_THREADS wins."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import os; from reftguard.threads import compute_threads, cores, tokenizer_workers; "
         "print(cores(), compute_threads(), tokenizer_workers())")


def _probe(cpus: set[int], env: dict[str, str]) -> list[int]:
    code = f"import os; os.sched_setaffinity(0, {sorted(cpus)!r}); " + PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env)
    assert out.returncode == 0, out.stderr
    return [int(x) for x in out.stdout.split()]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU sets are Linux-only")
def test_sizes_follow_the_cpu_set_and_omp_num_threads():
    one = {min(os.sched_getaffinity(0))}
    assert _probe(one, {}) == [1, 1, 1]                         # one core: one engine thread, one tokenizer thread
    assert _probe(one, {"OMP_NUM_THREADS": "3"}) == [1, 3, 1]   # the override wins for the engine
    assert _probe(one, {"OMP_NUM_THREADS": "x"}) == [1, 1, 1]   # a bad value is ignored, not fatal
    every = os.sched_getaffinity(0)
    n = len(every)
    assert _probe(every, {}) == [n, n, max(1, n // 8)]
