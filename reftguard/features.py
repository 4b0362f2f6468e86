"""Refusal-feature math on hidden states (numpy only, testable without torch).

R_l = mean(h_l | harmful) - mean(h_l | benign). The score is cos(h_l - c, R_l) where c is the
centre: zero (plain cosine, the paper's form) or the midpoint of the two class means ("centered"),
which removes the shared offset of all last-token states so the cosine measures the harmful-benign
axis rather than the common direction.
"""
from __future__ import annotations

import numpy as np

CENTERS = ("none", "midpoint")


def class_means(h: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("need both harmful (1) and benign (0) examples to fit a refusal feature")
    return h[y == 1].mean(axis=0), h[y == 0].mean(axis=0)


def refusal_feature(h: np.ndarray, y: np.ndarray, center: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(R, c): the difference-of-means direction and the centre vector for `center`."""
    if center not in CENTERS:
        raise ValueError(f"unknown center {center!r}; use one of {CENTERS}")
    mu_h, mu_b = class_means(h, y)
    r = (mu_h - mu_b).astype(np.float32)
    c = ((mu_h + mu_b) / 2.0).astype(np.float32) if center == "midpoint" else np.zeros_like(r)
    return r, c


def shrunk_covariance(within: np.ndarray, shrink: float) -> np.ndarray:
    """The covariance of within-class residuals `within` [n, d], shrunk towards a multiple of the identity
    (Ledoit-Wolf form: S + shrink * mean(diag S) * I), which keeps it invertible and well conditioned when d is
    large against n. Shared by the reply features and the category head (reftguard.category_head)."""
    if shrink <= 0:
        raise ValueError(f"shrink must be > 0, got {shrink}")
    cov = within.T @ within / len(within)
    return cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))


def shrinkage_feature(h: np.ndarray, y: np.ndarray, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """(R, c): the class-mean difference whitened by the pooled within-class covariance, shrunk towards a
    multiple of the identity (`shrunk_covariance`), and the midpoint centre.

    The plain difference of means is this with shrink -> infinity. A reply's last-token state carries large
    directions of style and length shared by both classes; whitening stops them from dominating the cosine
    (research/reply_probe.py). The result is still one direction and a centre, so the served head is unchanged.
    """
    h = np.asarray(h, dtype=np.float64)
    mu_h, mu_b = class_means(h, y)
    r = np.linalg.solve(shrunk_covariance(np.where(np.asarray(y)[:, None] == 1, h - mu_h, h - mu_b), shrink), mu_h - mu_b)
    r *= np.linalg.norm(mu_h - mu_b) / np.linalg.norm(r)  # the mean difference's length: cosine ignores it, logs read it
    return r.astype(np.float32), ((mu_h + mu_b) / 2.0).astype(np.float32)


def cosine_scores(h: np.ndarray, r: np.ndarray, c: np.ndarray | None = None, eps: float = 1e-8) -> np.ndarray:
    """cos(h - c, r) row-wise in float32 arithmetic, matching the exported ONNX head."""
    h = np.asarray(h, dtype=np.float32)
    if c is not None:
        h = h - np.asarray(c, dtype=np.float32)
    r = np.asarray(r, dtype=np.float32)
    num = h @ r
    den = np.maximum(np.linalg.norm(h, axis=-1) * np.linalg.norm(r), eps)
    return (num / den).astype(np.float32)
