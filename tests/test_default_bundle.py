"""The embedded default bundle built from the packaged SmolLM2 (slow: minutes on 2 cores)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reftguard.bundle import GuardBundle
from reftguard.calibration import EvalConfig, evaluate_bundle
from reftguard.data import packaged

# Measured with the shipped ReFT teacher: guard-dev AUROC 0.9965, recall@1%FPR 0.934 (docs/results.md);
# the floors sit a little below.
DEV_AUROC_FLOOR = 0.99
DEV_RECALL_AT_1PCT_FLOOR = 0.85


@pytest.fixture(scope="session")
def default_bundle_path():
    from reftguard.default_bundle import default_bundle

    return default_bundle().root


@pytest.mark.slow
def test_default_bundle_quality_and_cli(default_bundle_path, tmp_path):
    b = GuardBundle.load(default_bundle_path)
    assert b.manifest["source_model"]["name"] == "packaged:smollm2"
    assert b.manifest["exporter"]["parity_max_abs_diff"] < 1e-4
    report = evaluate_bundle(EvalConfig(bundle=str(default_bundle_path), data=[str(packaged("guard-dev.jsonl"))], json=str(tmp_path / "r.json")))
    assert report["auroc"] >= DEV_AUROC_FLOOR, report["auroc"]
    assert report["recall_at_1pct_fpr"] >= DEV_RECALL_AT_1PCT_FLOOR, report["recall_at_1pct_fpr"]
    assert b.manifest["teacher"]["kind"] == "reft"
    assert report["recall"] >= 0.95 - 1e-9  # calibrated recall-first on this very file
    # the CLI finds the same cached bundle (no rebuild) and `eval` accepts it
    out = subprocess.run([sys.executable, "-m", "reftguard.cli", "default-bundle", "--print-path"], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0 and out.stdout.strip() == str(default_bundle_path)
    ev = subprocess.run([sys.executable, "-m", "reftguard.cli", "eval", "--bundle", out.stdout.strip(), "--data", str(packaged("handwritten-dev.jsonl"))],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0 and "kind=disguised" in ev.stdout
