#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# promtool and prometheus (Debian package) for the rule tests and the Prometheus integration test.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "scripts/test.sh: promtool/prometheus missing; install the 'prometheus' package (apt-get install prometheus)" >&2
  fi
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One compute thread per process and passive waits: the suite runs one worker per core, and its servers,
# CLI subprocesses and engines would otherwise each start a pool as wide as the machine and spin-wait
# against each other (measured: 30x slower matmuls on 2 cores). reftguard.threads reads OMP_NUM_THREADS
# for onnxruntime and OpenVINO too.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" OMP_WAIT_POLICY=PASSIVE
workers="${REFTGUARD_TEST_WORKERS:-$(python -c 'import os; print(max(1, len(os.sched_getaffinity(0))))')}"
# The embedded default bundle (minutes when not cached) is built here with every core, before the workers
# start: inside one worker it would build on one thread while the other worker waits for it.
OMP_NUM_THREADS="$workers" MKL_NUM_THREADS="$workers" python -m reftguard.cli default-bundle >/dev/null
# --dist loadfile keeps a file's tests (and its module fixtures) on one worker, and files go out in
# collection order, longest first (tests/conftest.py HEAVY_FIRST); the 20 slowest tests are listed.
python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile --no-loadscope-reorder --durations=20 "$@"
