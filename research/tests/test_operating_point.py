"""research/operating_point.py: the oracle thresholds and the figures at them, checked by hand on a fixed example,
and one real run on the tiny bundle (report halves of the packaged dev files, scored by the served scorer)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from research import operating_point as op


def _file(scores, labels, kinds):
    return np.array(scores), np.array(labels), np.array(kinds, dtype=object)


def test_oracle_by_hand():
    files = {
        "contrast-dev.jsonl": _file([0.9, 0.8, 0.1, 0.5, 0.2, -0.1], [1, 1, 1, 0, 0, 0], ["contrast_harmful"] * 3 + ["hard_negative"] * 3),
        "handwritten-dev.jsonl": _file([0.7, 0.3, 0.0, 0.4, 0.6, 0.2], [0, 0, 0, 0, 1, 1], ["hard_negative"] * 4 + ["disguised"] * 2),
        "guard-dev.jsonl": _file([0.5, 0.35, -0.2], [1, 1, 0], ["direct", "direct", "chat"]),
    }
    r = op.oracle(files, served=0.0, min_recall=0.66, max_hn_rate=0.25)
    s = r["served"]  # strict: the hard negative at exactly 0.0 is not flagged
    assert (s["contrast_benign"]["flagged"], s["contrast_harmful"]["flagged"], s["hard_negative"]["flagged"]) == (2, 3, 3)
    assert (s["disguised"]["flagged"], s["guard_dev_harmful"]["flagged"], s["guard_dev_benign"]["flagged"]) == (2, 2, 0)
    # recall >= 0.66 of 3 harmful = 2: halfway between the 2nd harmful score (0.8) and the next lower score (0.5)
    c = r["contrast_recall"]
    assert c["threshold"] == pytest.approx(0.65)
    assert (c["contrast_benign"]["flagged"], c["contrast_harmful"]["rate"]) == (0, pytest.approx(2 / 3))
    # <= 25% of 4 hard negatives: one may be flagged, so the threshold is the second-highest hard negative
    h = r["hard_negative_rate"]
    assert h["threshold"] == pytest.approx(0.4)
    assert (h["hard_negative"]["flagged"], h["hard_negative"]["n"], h["disguised"]["flagged"], h["guard_dev_harmful"]["flagged"]) == (1, 4, 1, 1)


def test_oracle_runs_on_a_real_bundle(tiny_bundle, tmp_path):
    out = tmp_path / "op.json"
    assert op.main(["--bundle", f"tiny={tiny_bundle}", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["bundles"]["tiny"]
    assert r["served"]["threshold"] == pytest.approx(GuardBundle.load(tiny_bundle).threshold)
    assert r["contrast_recall"]["contrast_harmful"]["rate"] >= 0.90  # the oracle keeps the recall it was asked for
    assert r["hard_negative_rate"]["hard_negative"]["rate"] <= 0.03
    n = {k: v["n"] for k, v in r["served"].items() if isinstance(v, dict)}
    assert n["contrast_benign"] + n["contrast_harmful"] > 0 and n["guard_dev_harmful"] > 0 and n["hard_negative"] > 0
