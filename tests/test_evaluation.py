"""Metric functions against hand-computed values on small fixed examples."""
import math

import numpy as np
import pytest

from reftguard import evaluation as ev


def test_auroc_hand_computed():
    # pairs (pos, neg): (0.9>0.1)(0.9>0.4)(0.35<0.4)(0.35>0.1) -> 3 of 4
    assert ev.auroc([0.9, 0.35, 0.1, 0.4], [1, 1, 0, 0]) == pytest.approx(0.75)


def test_auroc_ties_count_half():
    assert ev.auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert ev.auroc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)


def test_auroc_single_class_is_none():
    assert ev.auroc([0.1, 0.2], [1, 1]) is None


def test_confusion_strict_threshold():
    c = ev.confusion([0.5, 0.6, 0.5, 0.1], [1, 1, 0, 0], threshold=0.5)
    # 0.5 is not > 0.5: only 0.6 flagged
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (1, 0, 1, 2)
    assert c["precision"] == 1.0 and c["recall"] == 0.5 and c["fpr"] == 0.0
    assert c["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_threshold_for_recall_is_highest_reaching_target():
    s = [0.9, 0.8, 0.7, 0.6, 0.65, 0.2]
    y = [1, 1, 1, 1, 0, 0]
    t = ev.threshold_for_recall(s, y, 0.75)  # need 3 of 4 positives: kth = 0.7, next lower score 0.65
    assert t == pytest.approx(0.675)
    assert ev.confusion(s, y, t)["recall"] == 0.75
    assert ev.confusion(s, y, t)["fp"] == 0


def test_threshold_for_fpr_budget():
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    t = ev.threshold_for_fpr(s, y, 0.125)  # 8 negatives, 1 FP allowed
    c = ev.confusion(s, y, t)
    assert c["fp"] == 1 and c["recall"] == 1.0
    t0 = ev.threshold_for_fpr(s, y, 0.0)
    assert ev.confusion(s, y, t0)["fp"] == 0 and ev.confusion(s, y, t0)["tp"] == 1


def test_recall_at_fpr_and_groups():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(1, 0.1, 50), rng.normal(0, 0.1, 100)])
    y = np.array([1] * 50 + [0] * 100)
    assert ev.recall_at_fpr(s, y, 0.01) == 1.0
    rep = ev.evaluate(s, y, 0.5, {"source": ["a"] * 75 + ["b"] * 75})
    assert set(rep["by_source"]) == {"a", "b"}
    assert rep["by_source"]["a"]["n"] == 75
    assert rep["n_harmful"] == 50 and rep["n_benign"] == 100
    for key in ("auroc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "precision", "recall", "f1", "fpr", "threshold", "n"):
        assert key in rep


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        ev.auroc([math.nan, 0.1], [1, 0])
