"""What calibration, tests and the bench measure about an engine: batch invariance and parity vs fp32.

Batch invariance: a prompt's score must not depend on what else is in its batch. Rows are scored as
the server and calibration batch them (length-sorted, up to 32) and again (a) each alone, with no
padding, and (b) in arrival order, 8 at a time, so with other company and other padding widths. The
figure is the max |Δscore| over both; it is exactly 0 when the kernels do not depend on batch shape.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from reftguard.encoding import length_sorted_batches, pad_batch

# Each check takes `run`, an engine's bound `run` method (the contract of reftguard.engines.Engine).


def score_rows(run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], ids: Sequence[Sequence[int]], pad_id: int = 0,
               max_batch: int = 32) -> np.ndarray:
    """Scores of encoded rows in row order, length-sorted batches of `max_batch` (as served)."""
    out = np.zeros(len(ids), dtype=np.float32)
    for rows, input_ids, mask in length_sorted_batches(list(ids), max_batch, 1 << 30, pad_id):
        out[rows] = run(input_ids, mask)[0]
    return out


def batch_invariance(run: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], ids: Sequence[Sequence[int]], pad_id: int = 0,
                     n_alone: int = 32, batched: np.ndarray | None = None) -> dict:
    """{'max_abs_diff', 'alone', 'regrouped', 'n'}: served batching vs alone (first `n_alone` rows) and
    vs arrival-order batches of 8."""
    ids = list(ids)
    ref = score_rows(run, ids, pad_id) if batched is None else batched
    alone = np.array([run(*pad_batch([row], pad_id))[0][0] for row in ids[:n_alone]], dtype=np.float32)
    regrouped = np.concatenate([run(*pad_batch(ids[i : i + 8], pad_id))[0] for i in range(0, len(ids), 8)]) if ids else ref
    d_alone = float(np.max(np.abs(alone - ref[: len(alone)]))) if len(alone) else 0.0
    d_regrouped = float(np.max(np.abs(regrouped - ref))) if len(ids) else 0.0
    return {"max_abs_diff": max(d_alone, d_regrouped), "alone": d_alone, "regrouped": d_regrouped, "n": len(ids)}


def parity(scores: np.ndarray, reference: np.ndarray, threshold: float | None = None, reference_threshold: float | None = None) -> dict:
    """{'max_abs_diff', 'mean_abs_diff', 'n'} of `scores` vs fp32 `reference`, plus verdict flips when
    thresholds are given (each precision at its own threshold)."""
    d = np.abs(np.asarray(scores, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    out = {"max_abs_diff": float(d.max()) if d.size else 0.0, "mean_abs_diff": float(d.mean()) if d.size else 0.0, "n": int(d.size)}
    if threshold is not None:
        ref_thr = threshold if reference_threshold is None else reference_threshold
        out["verdict_flips"] = int(np.sum((np.asarray(scores) > threshold) != (np.asarray(reference) > ref_thr)))
    return out
