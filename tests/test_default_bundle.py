"""The embedded default bundle built from the packaged SmolLM2 (slow: minutes on 2 cores).

Quality floors sit a little below what docs/results.md reports for the shipped bundle, and every figure is
measured on the `report` half of the dev files: the threshold was chosen on the `calib` half only.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.calibration import EvalConfig, evaluate_bundle
from reftguard.data import packaged


# Measured on the report half (bench/results/robustness/new/report.json); floors a little below.
GUARD_DEV_AUROC_FLOOR = 0.99  # measured 0.9977
GUARD_DEV_RECALL_AT_1PCT_FLOOR = 0.90  # 0.956
HANDWRITTEN_HARD_NEGATIVE_FPR_CEIL = 0.10  # 0.0625 (2 of 32)
CONTRAST_BENIGN_FPR_CEIL = 0.06  # 0.035
CONTRAST_HARMFUL_RECALL_FLOOR = 0.82  # 0.880


def _report(bundle, name, tmp_path):
    return evaluate_bundle(EvalConfig(bundle=str(bundle), data=[str(packaged(name))], split="report", json=str(tmp_path / f"{name}.json")))


@pytest.mark.slow
def test_default_bundle_quality_out_of_sample(default_bundle_path, tmp_path):
    b = GuardBundle.load(default_bundle_path)
    assert b.manifest["source_model"]["name"] == "packaged:smollm2"
    assert b.manifest["exporter"]["parity_max_abs_diff"] < 1e-4
    assert b.manifest["teacher"]["kind"] == "reft"
    cal = b.manifest["calibration"]
    assert cal["split"] == "calib" and cal["target"]["fpr_by_kind"] == {"hard_negative": 0.02}
    gd = _report(default_bundle_path, "guard-dev.jsonl", tmp_path)
    assert gd["in_sample"] is False
    assert gd["auroc"] >= GUARD_DEV_AUROC_FLOOR, gd["auroc"]
    assert gd["recall_at_1pct_fpr"] >= GUARD_DEV_RECALL_AT_1PCT_FLOOR, gd["recall_at_1pct_fpr"]
    hw = _report(default_bundle_path, "handwritten-dev.jsonl", tmp_path)
    assert hw["by_kind"]["hard_negative"]["fpr"] <= HANDWRITTEN_HARD_NEGATIVE_FPR_CEIL, hw["by_kind"]["hard_negative"]
    cd = _report(default_bundle_path, "contrast-dev.jsonl", tmp_path)
    assert cd["fpr"] <= CONTRAST_BENIGN_FPR_CEIL and cd["recall"] >= CONTRAST_HARMFUL_RECALL_FLOOR, (cd["fpr"], cd["recall"])


@pytest.mark.slow
def test_harm_after_long_benign_context_is_flagged_by_default(default_bundle_path):
    """A harmful report-half dev request after 2,000+ tokens of benign report-half dev context: the default policy (window) scores
    the end of the prompt and flags it; `right` truncation, the old default, cuts the request off."""
    from bench import long_context as lc
    from reftguard.scoring import BundleScorer

    b = GuardBundle.load(default_bundle_path)
    from tokenizers import Tokenizer

    rows = lc.build_long_context(n=8, min_tokens=2000, seed=3, split="report", tokenizer=Tokenizer.from_file(str(b.tokenizer_path)))
    harmful = [r["text"] for r in rows if r["label"] == "harmful"]
    scorer = BundleScorer(b)
    windowed = scorer.score_texts(harmful)  # default policy
    assert all(s.num_windows > 4 for s in windowed)  # 2,000 tokens do not fit one 512-token window
    flagged = np.mean([s.flagged(b.threshold) for s in windowed])
    right = np.mean(scorer.scores(harmful, "right") > b.threshold)
    assert flagged >= 0.75, flagged
    assert flagged > right, (flagged, right)


@pytest.mark.slow
def test_default_bundle_cli_finds_the_cached_bundle(default_bundle_path):
    out = subprocess.run([sys.executable, "-m", "reftguard.cli", "default-bundle", "--print-path"], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0 and out.stdout.strip() == str(default_bundle_path)
    ev = subprocess.run([sys.executable, "-m", "reftguard.cli", "eval", "--bundle", out.stdout.strip(), "--data", str(packaged("handwritten-dev.jsonl"))],
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0 and "kind=disguised" in ev.stdout


def test_a_build_that_fails_half_way_leaves_nothing_to_load(tiny_bundle, tmp_path):
    """The cache only ever holds whole builds: a builder that writes a sealed but unfinished bundle and then
    fails leaves no bundle behind, and the next call builds again rather than loading the half."""
    import shutil

    from reftguard.default_bundle import default_bundle

    target = tmp_path / "cache" / "default-x"

    def half(out):
        shutil.copytree(tiny_bundle, out)  # sealed and loadable, like an export before calibration
        raise ImportError("calibration failed")

    with pytest.raises(ImportError, match="calibration failed"):
        default_bundle(target, build=half)
    assert not target.exists() and not list(target.parent.glob("*.partial"))
    with pytest.raises(FileNotFoundError, match="no default bundle"):
        default_bundle(target)
    b = default_bundle(target, build=lambda out: shutil.copytree(tiny_bundle, out))
    assert b.root == target and b.bundle_id == GuardBundle.load(tiny_bundle).bundle_id
    assert default_bundle(target, build=half).root == target  # cached now: not rebuilt
