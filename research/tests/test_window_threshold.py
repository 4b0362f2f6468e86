"""research/window_threshold.py: the windowed-item threshold it measures, checked by hand, and one real run on the
tiny bundle (both dev halves' long sets built, scored through the served scorer, thresholds applied strictly)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from research import window_threshold as wt


def test_window_threshold_by_hand():
    s = np.array([0.9, 0.35, 0.1, 0.3, 0.5, 0.2])
    harmful = np.array([True, True, False, False, False, False])
    # 4 benign, target 0.25 -> one may be flagged: the threshold is the second-highest benign score
    assert wt.window_threshold(s, harmful, served=0.4, target_fpr=0.25) == pytest.approx(0.3)
    # it only ever lowers the bar for long items: capped at the served threshold
    assert wt.window_threshold(s, harmful, served=0.25, target_fpr=0.25) == pytest.approx(0.25)
    f = wt.figures(s, harmful, 0.3)  # strict: 0.3 itself is allowed
    assert (f["flagged_harmful"], f["flagged_benign"], f["recall"], f["benign_flag_rate"]) == (2, 1, 1.0, 0.25)


def test_window_threshold_runs_on_a_real_bundle(tiny_bundle, tmp_path):
    out = tmp_path / "wt.json"
    assert wt.main(["--bundle", f"tiny={tiny_bundle}", "--n", "4", "--min-tokens", "300", "--target-fpr", "0.25",
                    "--out", str(out)]) == 0
    r = json.loads(out.read_text())["bundles"]["tiny"]
    assert r["window_threshold"] <= r["served_threshold"]
    for half in ("calib", "report"):
        for at in ("served", "window"):
            f = r[half][at]
            assert f["recall"] == f["flagged_harmful"] / 4 and f["benign_flag_rate"] == f["flagged_benign"] / 4
    # the calib-half target holds at the chosen threshold, unless the cap at the served threshold bound it
    assert r["calib"]["window"]["benign_flag_rate"] <= 0.25 or r["window_threshold"] == r["served_threshold"]
