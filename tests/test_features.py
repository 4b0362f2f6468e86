import numpy as np
import pytest

from reftguard.features import cosine_scores, refusal_feature


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
