#!/usr/bin/env bash
# The GPU check in one go, under 8 minutes (bench/gpu_check.py): CUDA fp16 parity, batch invariance and
# throughput against onnxruntime on the CPU. On a machine without a CUDA GPU it prints a SKIP line and passes.
#   bash bench/gpu_check.sh [--bundle DIR] [--n 512]
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 python -m bench.gpu_check "$@"
