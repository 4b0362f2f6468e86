import numpy as np
import pytest

from reftguard.evaluation import auroc
from reftguard.features import cosine_scores, refusal_feature, shrinkage_feature


def test_difference_of_means_and_centered_cosine():
    h = np.array([[3.0, 1.0], [5.0, 1.0], [1.0, 1.0], [-1.0, 1.0]])
    y = np.array([1, 1, 0, 0])
    r, c = refusal_feature(h, y, "midpoint")
    np.testing.assert_allclose(r, [4.0, 0.0])  # mean(h|1)=(4,1), mean(h|0)=(0,1)
    np.testing.assert_allclose(c, [2.0, 1.0])
    s = cosine_scores(h, r, c)
    np.testing.assert_allclose(s, [1.0, 1.0, -1.0, -1.0], atol=1e-6)
    r0, c0 = refusal_feature(h, y, "none")
    assert not c0.any()
    # plain cosine with the shared (0,1) offset is < 1 for the harmful rows
    assert cosine_scores(h, r0)[0] == pytest.approx(3 / np.sqrt(10), abs=1e-6)


def test_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        refusal_feature(np.ones((2, 3)), np.array([1, 1]))


def test_shrinkage_feature_whitens_away_a_noisy_shared_direction():
    """Classes 0.5 apart on a quiet axis and 2 apart on an axis where both spread by 10: the mean difference
    leans on the loud axis and ranks poorly; whitening finds the quiet one."""
    rng = np.random.default_rng(0)
    n = 400
    y = np.repeat([1, 0], n // 2)
    h = np.stack([0.5 * y + 0.1 * rng.standard_normal(n), 2.0 * y + 10 * rng.standard_normal(n), rng.standard_normal(n)], axis=1)
    r_mean, c_mean = refusal_feature(h, y, "midpoint")
    r, c = shrinkage_feature(h, y, 0.01)
    assert auroc(cosine_scores(h, r, c), y) > 0.95 > 0.8 > auroc(cosine_scores(h, r_mean, c_mean), y)
    np.testing.assert_allclose(c, c_mean, rtol=1e-6)  # same midpoint centre
    assert np.linalg.norm(r) == pytest.approx(np.linalg.norm(r_mean), rel=1e-5)  # scaled to the mean difference's length
    # much shrinkage is the plain difference of means again
    r_big, _ = shrinkage_feature(h, y, 1e6)
    assert float(r_big @ r_mean / np.linalg.norm(r_big) / np.linalg.norm(r_mean)) > 0.9999
    with pytest.raises(ValueError, match="shrink must be > 0"):
        shrinkage_feature(h, y, 0.0)
