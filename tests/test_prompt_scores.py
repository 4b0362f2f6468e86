"""Prompt-only items score exactly as before whole-record scoring (and every refactor since): the default
bundle's fp32 scores on the three dev files against a stored reference (slow: builds the default bundle).

The reference (tests/data/default_prompt_scores.json) was written by the code before roles existed
(commit 6c481cd) and checked identical by this code. Where the default bundle's graph is the one the
reference was made with (same model.onnx hash), scores must match bit for bit (sha256 of the float32
array); a graph exported on another CPU differs in the last bits, so there every score is compared to
the stored one (5 decimals) within 1e-4 and every verdict away from the threshold must agree.

    python -m tests.test_prompt_scores --write   # record a new reference (only for an intended change)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.data import packaged
from reftguard.scoring import BundleScorer

REFERENCE = Path(__file__).parent / "data" / "default_prompt_scores.json"
FILES = ("guard-dev.jsonl", "handwritten-dev.jsonl", "contrast-dev.jsonl")


def compute(bundle: GuardBundle) -> dict:
    scorer = BundleScorer(bundle, max_windows=0)
    out = {"model_onnx_sha256": bundle.manifest["files"]["model.onnx"], "threshold": bundle.threshold, "files": {}}
    for name in FILES:
        texts = [json.loads(line)["text"] for line in packaged(name).read_text(encoding="utf-8").splitlines() if line.strip()]
        s = scorer.scores(texts).astype(np.float32)
        out["files"][name] = {"sha256": hashlib.sha256(s.tobytes()).hexdigest(), "scores": [round(float(x), 5) for x in s]}
    return out


@pytest.mark.slow
def test_prompt_only_scores_are_unchanged(default_bundle_path):
    ref = json.loads(REFERENCE.read_text())
    b = GuardBundle.load(default_bundle_path)
    got = compute(b)
    same_graph = got["model_onnx_sha256"] == ref["model_onnx_sha256"]
    for name in FILES:
        r, g = ref["files"][name], got["files"][name]
        if same_graph:
            assert g["sha256"] == r["sha256"], name  # max |delta| 0
        s, rs = np.array(g["scores"]), np.array(r["scores"])
        assert s.shape == rs.shape and np.abs(s - rs).max() <= 1e-4, name
        clear = np.abs(rs - ref["threshold"]) > 2e-4  # verdicts on the threshold's edge may flip across CPUs
        assert ((s > b.threshold) == (rs > ref["threshold"]))[clear].all(), name


if __name__ == "__main__" and "--write" in sys.argv:
    from reftguard.exporter.default_bundle import ensure_default_bundle

    REFERENCE.write_text(json.dumps(compute(ensure_default_bundle()), indent=None) + "\n")
