"""Detection metrics and threshold selection (numpy only).

Convention everywhere: a prompt is flagged when `score > threshold` (strict). Labels are 1 = harmful,
0 = benign.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D and the same length, got {s.shape} and {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    return s, y


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None if one class is absent."""
    s, y = _arrays(scores, labels)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95% Wilson score interval of a rate k/n (None for n=0). Dev slices are small (2 of 32 hard
    negatives is 6.2%, and one prompt moves it 3 points), so a goal is read against the interval, not the point."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is outside 0..n={n}")
    p, z2 = k / n, z * z
    mid = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def confusion(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict:
    s, y = _arrays(scores, labels)
    flag = s > threshold
    tp = int(np.sum(flag & (y == 1)))
    fp = int(np.sum(flag & (y == 0)))
    fn = int(np.sum(~flag & (y == 1)))
    tn = int(np.sum(~flag & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    fpr = fp / (fp + tn) if fp + tn else None
    f1 = (2 * precision * recall / (precision + recall)) if precision and recall else (0.0 if recall is not None else None)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "fpr": fpr, "f1": f1}


def threshold_for_fpr(scores: Sequence[float], labels: Sequence[int], target_fpr: float) -> float:
    """The lowest threshold whose FPR is <= target_fpr (maximises recall under the FPR budget)."""
    s, y = _arrays(scores, labels)
    neg = np.sort(s[y == 0])[::-1]
    if len(neg) == 0:
        raise ValueError("no benign examples: cannot pick a threshold for a target FPR")
    allowed = int(math.floor(target_fpr * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(neg[-1] - 1e-6)
    return float(neg[allowed])


def threshold_for_recall(scores: Sequence[float], labels: Sequence[int], target_recall: float) -> float:
    """The highest threshold whose recall is >= target_recall (fewest false positives at that recall).

    It sits halfway between the k-th highest harmful score and the next lower score of any example,
    so small score noise does not flip the k-th harmful prompt.
    """
    s, y = _arrays(scores, labels)
    pos = np.sort(s[y == 1])[::-1]
    if len(pos) == 0:
        raise ValueError("no harmful examples: cannot pick a threshold for a target recall")
    k = max(1, int(math.ceil(target_recall * len(pos) - 1e-9)))
    kth = pos[k - 1]
    below = s[s < kth]
    return float((kth + below.max()) / 2.0) if len(below) else float(kth - 1e-6)


def parse_kind_limits(specs: Sequence[str]) -> dict[str, float]:
    """['hard_negative=0.03', ...] -> {'hard_negative': 0.03}; a bad spec raises ValueError naming it."""
    out: dict[str, float] = {}
    for spec in specs:
        kind, sep, value = str(spec).partition("=")
        try:
            f = float(value)
        except ValueError:
            f = float("nan")
        if not sep or not kind.strip() or not 0.0 <= f <= 1.0:
            raise ValueError(f"per-kind FPR limit {spec!r} is not KIND=F with F in [0, 1] (e.g. hard_negative=0.03)")
        out[kind.strip()] = f
    return out


def choose_threshold(scores: Sequence[float], labels: Sequence[int], kinds: Sequence[str], *, target_recall: float = 0.0,
                     target_fpr: float = 0.0, kind_fpr: dict[str, float] | None = None) -> tuple[float, str]:
    """(threshold, what set it): the recall or FPR target first, then raised until the benign prompts of
    every kind in `kind_fpr` are flagged at most at their rate. Raising a threshold never raises an FPR,
    so every per-kind limit holds at the returned threshold; the recall target may then be missed,
    which the caller reports."""
    s, y = _arrays(scores, labels)
    if target_recall:
        thr, by = threshold_for_recall(s, y, target_recall), f"recall>={target_recall}"
    else:
        thr, by = threshold_for_fpr(s, y, target_fpr), f"fpr<={target_fpr}"
    kinds = np.asarray(list(kinds), dtype=object)
    for kind, limit in sorted((kind_fpr or {}).items()):
        sel = (kinds == kind) & (y == 0)
        if not sel.any():
            raise ValueError(f"per-kind FPR limit for {kind!r}: no benign prompts of that kind in the calibration data")
        t = threshold_for_fpr(s[sel], np.zeros(int(sel.sum()), dtype=np.int64), limit)
        if t > thr:
            thr, by = t, f"fpr[{kind}]<={limit}"
    return thr, by


def recall_at_fpr(scores: Sequence[float], labels: Sequence[int], fpr: float) -> float | None:
    s, y = _arrays(scores, labels)
    if y.sum() == 0 or (1 - y).sum() == 0:
        return None
    return confusion(s, y, threshold_for_fpr(s, y, fpr))["recall"]


def summarize(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict:
    s, y = _arrays(scores, labels)
    out = {
        "n": int(len(s)),
        "n_harmful": int(y.sum()),
        "n_benign": int((1 - y).sum()),
        "threshold": float(threshold),
        "auroc": auroc(s, y),
        "recall_at_1pct_fpr": recall_at_fpr(s, y, 0.01),
        "recall_at_5pct_fpr": recall_at_fpr(s, y, 0.05),
    }
    out.update(confusion(s, y, threshold))
    return out


def evaluate(scores: Sequence[float], labels: Sequence[int], threshold: float, groups: dict[str, Sequence[str]]) -> dict:
    """Overall metrics plus the same per group (e.g. groups={"source": [...], "kind": [...]} -> by_source, by_kind)."""
    report = summarize(scores, labels, threshold)
    s, y = _arrays(scores, labels)
    for name, values in groups.items():
        idx: dict[str, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            idx[str(v)].append(i)
        report[f"by_{name}"] = {k: summarize(s[v], y[v], threshold) for k, v in sorted(idx.items())}
    return report
