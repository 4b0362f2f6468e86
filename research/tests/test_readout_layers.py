"""research/readout_layers.py: per-layer R_L and the multi-layer mean score, checked by hand on synthetic states."""
from __future__ import annotations

import numpy as np
import pytest

from research import readout_layers as rl


def test_layer_readouts_and_their_mean_by_hand():
    rng = np.random.default_rng(0)
    n, top, d = 40, max(rl.LAYERS), 6
    y = np.array([1, 0] * (n // 2))
    h = rng.normal(size=(n, top, d)).astype(np.float32)
    h[y == 1, 15, 0] += 3.0  # layer 16 (index 15) separates the labels along axis 0
    parts = rl.readouts(h, y)
    (L, r, c), = parts["layer16"]
    mh, mb = h[y == 1, 15].mean(0), h[y == 0, 15].mean(0)
    assert L == 16 and np.allclose(r, mh - mb, atol=1e-5) and np.allclose(c, (mh + mb) / 2, atol=1e-5)
    x = h[:, 15] - c
    by_hand = x @ r / (np.linalg.norm(x, axis=1) * np.linalg.norm(r))
    assert rl.score(h, parts["layer16"]) == pytest.approx(by_hand, abs=1e-5)
    combo = parts["mean14-18"]
    assert [p[0] for p in combo] == [14, 16, 18]
    assert rl.score(h, combo) == pytest.approx(np.mean([rl.score(h, [p]) for p in combo], axis=0), abs=1e-6)
    # the trained layer ranks the labels; the others are noise
    s16, s8 = rl.score(h, parts["layer16"]), rl.score(h, parts["layer8"])
    assert s16[y == 1].min() > s16[y == 0].mean() and abs(s8[y == 1].mean() - s8[y == 0].mean()) < abs(s16[y == 1].mean() - s16[y == 0].mean())
