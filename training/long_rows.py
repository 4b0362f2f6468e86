"""Long-context rows for the regulariser: a training prompt placed after benign context, as served.

Under truncation `window` a long user turn is scored window by window, and the window that holds a final
request (the end-aligned last one) carries up to a full budget of context before it. A teacher trained on
short prompts alone sees that request diluted by context it never learned to ignore, so its score falls
(docs/training.md: candidates that beat the shipped guard on short held-out styles lost long-context
recall). These rows teach the regulariser that shape: `prefix + <left-cut context of benign fit-split
prompts, each followed by a separator> + request + suffix`, labelled by the request, so harmful requests
must score high behind context and benign ones (hard negatives included) must stay low behind it.

Token-level, from the rows the trainer already encoded: the text ids of a row are its ids without the
template, so no second tokenizer pass runs per step.
"""
from __future__ import annotations

import numpy as np

MIN_CONTEXT = 32  # fewer context tokens than this is a short prompt, which the regulariser already trains


class LongRows:
    """Builds long-context rows from encoded rows (`prefix + text + suffix` each)."""

    def __init__(self, rows: list[list[int]], context_pool: list[int], n_prefix: int, n_suffix: int,
                 separator: list[int], max_tokens: int, max_context: int):
        if not context_pool:
            raise ValueError("long-context rows need benign fit-split prompts for the context")
        self.rows, self.pool = rows, list(context_pool)
        self.n_prefix, self.n_suffix = n_prefix, n_suffix
        self.sep, self.max_tokens, self.max_context = list(separator), int(max_tokens), int(max_context)
        if self.max_context < MIN_CONTEXT:
            raise ValueError(f"max_context={max_context} is below the {MIN_CONTEXT}-token minimum of a long-context row")

    def text(self, i: int) -> list[int]:
        row = self.rows[i]
        return row[self.n_prefix : len(row) - self.n_suffix]

    def build(self, rng: np.random.Generator, requests: list[int]) -> list[list[int]]:
        """One row per request: a context length drawn uniformly from [MIN_CONTEXT, max_context] (less when
        the request leaves less room under max_tokens), filled with whole benign prompts, each followed by
        the separator, and cut on the left as an end-aligned window cuts; then the request."""
        out = []
        for r in requests:
            request = self.text(r)
            room = self.max_tokens - self.n_prefix - self.n_suffix - len(request)
            row = self.rows[r]
            if room < MIN_CONTEXT:  # the request alone nearly fills a window: it is its own long row
                out.append(list(row))
                continue
            n = min(int(rng.integers(MIN_CONTEXT, self.max_context + 1)), room)
            context: list[int] = []
            while len(context) < n:
                j = self.pool[int(rng.integers(len(self.pool)))]
                if j != r:
                    context += self.text(j) + self.sep
            out.append(row[: self.n_prefix] + context[len(context) - n :] + request + row[len(row) - self.n_suffix :])
        return out
