"""A harm-category head on the layer-l state: a linear softmax classifier, fitted and run in numpy.

Two fits give the same head (weights and bias over the standardised state): multinomial logistic regression
(`fit_head`), or shrinkage LDA (`fit_lda_head`: class means against a pooled covariance shrunk towards the
identity, its softmax tempered to the out-of-fold likelihood), which cross-validates better on the training
rows (research/category_head.py).

It reads one graph output (`input`, from the manifest): `topic_state`, the mean over real tokens of layer
l/2, where the graph has it (CV top-1 0.81 vs 0.72 on the last-token state, research/category_pooling.py), else
the last-token `state` the refusal feature reads; standardised per dimension, and gives a probability per class of reftguard.taxonomy. It names the harm of a decision;
it never decides whether an item is flagged (the fp32 cosine head does). Fitted on harmful training rows
only, so on a benign row its answer means nothing and is not reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.features import shrunk_covariance


@dataclass(frozen=True)
class CategoryHead:
    labels: tuple[str, ...]
    mean: np.ndarray  # [hidden]
    scale: np.ndarray  # [hidden]
    weights: np.ndarray  # [classes, hidden]
    bias: np.ndarray  # [classes]
    input: str = "state"  # the graph output it reads (reftguard.bundle_io): manifest `categories.input`

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


def _lda(x: np.ndarray, y: np.ndarray, c: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights [c, d], bias [c]) of shrinkage LDA with equal priors; classes without rows never win."""
    counts = np.bincount(y, minlength=c)
    mu = np.zeros((c, x.shape[1]))
    for k in np.flatnonzero(counts):
        mu[k] = x[y == k].mean(axis=0)
    w = np.linalg.solve(shrunk_covariance(x - mu[y], shrink), mu.T).T
    b = -0.5 * (w * mu).sum(axis=1)
    b[counts == 0] = -1e4
    return w, b


def fit_lda_head(states: np.ndarray, y: np.ndarray, labels: tuple[str, ...], shrink: float = 0.03, folds: int = 5) -> CategoryHead:
    """Shrinkage LDA on the standardised states. LDA's softmax is overconfident in high dimensions, so the
    logits are divided by a temperature that maximises the likelihood of out-of-fold predictions (`folds`
    folds, fixed permutation): the reported probability then means what it says on held-out rows."""
    x = np.asarray(states, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    x = (x - mean) / scale
    c = len(labels)
    fold = np.random.default_rng(0).permutation(len(y)) % folds
    z = np.zeros((len(y), c))
    for k in range(folds):
        w, b = _lda(x[fold != k], y[fold != k], c, shrink)
        z[fold == k] = x[fold == k] @ w.T + b

    def nll(t: float) -> float:
        u = z / t
        u = u - u.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(u).sum(axis=1)) - u[np.arange(len(y)), y]))

    temp = min(np.geomspace(0.1, 1000, 81), key=nll)
    w, b = _lda(x, y, c, shrink)
    return CategoryHead(tuple(labels), mean.astype(np.float32), scale.astype(np.float32), (w / temp).astype(np.float32),
                        (b / temp).astype(np.float32))
