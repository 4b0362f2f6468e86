"""A harm-category head on the layer-l state: multinomial logistic regression, fitted and run in numpy.

It reads the same last-token state the refusal feature does (the graph's `state` output), standardised
per dimension, and gives a probability per class of reftguard.taxonomy. It names the harm of a decision;
it never decides whether an item is flagged (the fp32 cosine head does). Fitted on harmful training rows
only, so on a benign row its answer means nothing and is not reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CategoryHead:
    labels: tuple[str, ...]
    mean: np.ndarray  # [hidden]
    scale: np.ndarray  # [hidden]
    weights: np.ndarray  # [classes, hidden]
    bias: np.ndarray  # [classes]

    def probabilities(self, state: np.ndarray) -> np.ndarray:
        """[rows, classes] softmax probabilities of `state` [rows, hidden]."""
        z = ((np.asarray(state, dtype=np.float32) - self.mean) / self.scale) @ self.weights.T + self.bias
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def top(self, state: np.ndarray) -> list[tuple[str, float]]:
        """Per row, the most probable class and its probability."""
        p = self.probabilities(state)
        k = p.argmax(axis=-1)
        return [(self.labels[i], float(p[r, i])) for r, i in enumerate(k)]

    def save(self, path: Path) -> None:
        np.savez(path, labels=np.array(self.labels), mean=self.mean, scale=self.scale, weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, path: Path) -> "CategoryHead":
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(str(x) for x in z["labels"]), z["mean"], z["scale"], z["weights"], z["bias"])


def fit_head(states: np.ndarray, y: np.ndarray, labels: tuple[str, ...], l2: float = 1e-3, steps: int = 1000,
             lr: float = 0.5) -> CategoryHead:
    """Full-batch gradient descent on class-balanced softmax cross-entropy with an L2 penalty (deterministic:
    zero start, fixed steps). `y` holds indices into `labels`; classes without rows keep zero weights."""
    x = np.asarray(states, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    x = (x - mean) / scale
    n, d = x.shape
    c = len(labels)
    counts = np.bincount(y, minlength=c).astype(np.float64)
    row_w = (n / (c * np.maximum(counts, 1)))[y]  # each class weighs the same in the loss
    row_w /= row_w.sum()
    onehot = np.eye(c)[y]
    w, b = np.zeros((c, d)), np.zeros(c)
    for _ in range(steps):
        z = x @ w.T + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * row_w[:, None]
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(axis=0)
    return CategoryHead(tuple(labels), mean.astype(np.float32), scale.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
