"""The scoring core: user turns in, one typed decision input per item out.

Transport-free (no gRPC, no protobuf, no torch) so that the servicer, the in-process scan, calibration
and eval decide items with the same code: a turn is encoded into one row, or several window rows under
truncation `window`; every row is scored; an item's score is the maximum over all its rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.encoding import DEFAULT_MAX_WINDOWS, DEFAULT_TRUNCATION, Encoded, PromptEncoder, length_sorted_batches
from reftguard.engines.ort import OrtEngine as OrtBackend  # noqa: N814 (the class is OrtEngine; the alias is gone)


@dataclass(frozen=True)
class Turn:
    """One user turn to score."""

    item: int  # index of its item in the batch
    turn: int  # index in the item's messages; -1 for a plain text item
    text: str


@dataclass(frozen=True)
class Scored:
    """An item's result: its highest-scoring row and where that row came from."""

    score: float
    turn: int  # which user turn won (-1 for text items)
    window: int  # which window of that turn won (0 when it was not windowed)
    num_windows: int  # how many windows that turn was split into (1 when it fitted)
    truncated: bool  # some turn of the item lost tokens (truncation left/right)
    num_tokens: int  # tokens in the winning row, template included

    def flagged(self, threshold: float) -> bool:
        # Strict everywhere (server, scan, calibration, eval): a score equal to the threshold is allowed.
        return self.score > threshold


def text_turns(texts: Sequence[str]) -> list[Turn]:
    """Each text is an item with one turn."""
    return [Turn(i, -1, t) for i, t in enumerate(texts)]


def decide_items(scores: Sequence[float], turns: Sequence[Turn], enc: Encoded) -> list[Scored]:
    """One Scored per item from per-row scores (`enc` maps rows to turns, `turns` turns to items).

    The item takes the maximum over all its turns' windows; a strict `>` keeps the first of equal
    maxima, so the result does not depend on float ties. Items are 0..n-1 and each needs a row.
    """
    n_items = 1 + max(t.item for t in turns) if turns else 0
    best: list[int | None] = [None] * n_items  # item -> its winning row
    truncated = [False] * n_items
    for row, k in enumerate(enc.text):
        item = turns[k].item
        truncated[item] = truncated[item] or enc.truncated[row]
        if best[item] is None or scores[row] > scores[best[item]]:
            best[item] = row
    if None in best:
        raise ValueError(f"item {best.index(None)} has no scored row")
    return [
        Scored(float(scores[r]), turns[enc.text[r]].turn, enc.window[r], enc.num_windows[r], truncated[i], len(enc.ids[r]))
        for i, r in enumerate(best)
    ]


class BundleScorer:
    """Encode -> length-sorted batches -> ORT -> item decisions, in this process (scan --bundle,
    calibration, eval, benches). The server runs the same encoder and `decide_items` behind its batcher."""

    def __init__(self, bundle: GuardBundle, backend: OrtBackend | None = None, max_batch: int = 32, max_batch_tokens: int = 16384,
                 *, window_overlap: int = -1, max_windows: int = DEFAULT_MAX_WINDOWS, window_tail: int = -1):
        self.bundle = bundle
        self.backend = backend or OrtBackend(bundle)
        self.encoder = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens,
                                     window_overlap=window_overlap, max_windows=max_windows, window_tail=window_tail)
        self.max_batch, self.max_batch_tokens = max_batch, max_batch_tokens

    def score_ids(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and feature norms of encoded rows, in row order."""
        scores = np.zeros(len(ids), dtype=np.float32)
        norms = np.zeros(len(ids), dtype=np.float32)
        for rows, input_ids, mask in length_sorted_batches(ids, self.max_batch, self.max_batch_tokens, self.bundle.pad_token_id):
            s, n = self.backend.run(input_ids, mask)
            scores[rows], norms[rows] = s, n
        return scores, norms

    def score_turns(self, turns: Sequence[Turn], truncation: str = DEFAULT_TRUNCATION) -> list[Scored]:
        """One Scored per item; raises PromptRejected (its `index` is a position in `turns`)."""
        if not turns:
            return []
        enc = self.encoder.encode([t.text for t in turns], truncation)
        scores, _ = self.score_ids(enc.ids)
        return decide_items(scores, turns, enc)

    def score_texts(self, texts: Sequence[str], truncation: str = DEFAULT_TRUNCATION) -> list[Scored]:
        return self.score_turns(text_turns(texts), truncation)

    def scores(self, texts: Sequence[str], truncation: str = DEFAULT_TRUNCATION) -> np.ndarray:
        """float32 item scores of plain texts (what calibration and eval threshold)."""
        return np.array([s.score for s in self.score_texts(texts, truncation)], dtype=np.float32)
