"""Prompt encoding shared by fitting, export parity checks and serving (tokenizers only, no torch).

A user turn becomes `prefix_ids + text_ids + suffix_ids`. The prefix and suffix are tokenized once;
truncation only ever removes tokens of the user text, so the template (and the last token, whose state
is scored) is always intact.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.prompt import PromptFormat

TRUNCATION_POLICIES = ("error", "left", "right")
# No token of a BPE vocabulary is anywhere near this long, so text beyond budget x this many characters
# can never fit; it is cut (or rejected) before tokenizing, which keeps a 1 MB prompt cheap.
MAX_CHARS_PER_TOKEN = 64


class PromptTooLong(ValueError):
    """A prompt is over max_tokens and the truncation policy is `error`."""

    def __init__(self, index: int, num_tokens: int, max_tokens: int, unit: str = "tokens"):
        self.index, self.num_tokens, self.max_tokens = index, num_tokens, max_tokens
        super().__init__(
            f"item {index} has {num_tokens} {unit}, over the limit of {max_tokens} tokens; "
            "shorten it or use truncation 'left' or 'right'"
        )


@dataclass
class Encoded:
    ids: list[list[int]]
    truncated: list[bool]

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]


class PromptEncoder:
    def __init__(self, tokenizer_file: str | Path, prompt: PromptFormat, max_tokens: int):
        from tokenizers import Tokenizer  # lazy: keeps `import reftguard.encoding` cheap

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.prompt = prompt
        self.max_tokens = int(max_tokens)
        self.prefix_ids = self._ids(prompt.prefix)
        self.suffix_ids = self._ids(prompt.suffix)
        self.overhead = len(self.prefix_ids) + len(self.suffix_ids)
        if self.overhead >= self.max_tokens:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for text after the {self.overhead}-token template")

    def _ids(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_special_tokens=False).ids if s else []

    def encode(self, texts: list[str], truncation: str = "right") -> Encoded:
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"unknown truncation policy {truncation!r}; use one of {TRUNCATION_POLICIES}")
        budget = self.max_tokens - self.overhead
        max_chars = budget * MAX_CHARS_PER_TOKEN
        precut = [len(t) > max_chars for t in texts]
        for i, long in enumerate(precut):
            if long and truncation == "error":
                raise PromptTooLong(i, len(texts[i]), self.max_tokens, unit="characters")
        clipped = [t if not long else (t[:max_chars] if truncation == "right" else t[-max_chars:]) for t, long in zip(texts, precut)]
        encs = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        ids, truncated = [], []
        for i, enc in enumerate(encs):
            body = enc.ids
            cut = len(body) > budget or precut[i]
            if cut:
                if truncation == "error":
                    raise PromptTooLong(i, len(body) + self.overhead, self.max_tokens)
                body = body[:budget] if truncation == "right" else body[len(body) - budget :]
            ids.append(self.prefix_ids + body + self.suffix_ids)
            truncated.append(cut)
        return Encoded(ids=ids, truncated=truncated)


def pad_batch(ids: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest row. Right padding keeps positions 0..n-1 for real tokens and, under a
    causal mask, real tokens never see pads, so a prompt's score does not depend on its batch."""
    n, width = len(ids), max(len(x) for x in ids)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return input_ids, mask


def length_sorted_batches(ids: list[list[int]], max_batch: int, max_tokens: int = 1 << 30, pad_id: int = 0):
    """Yield (row_indices, input_ids, attention_mask) with rows sorted by length to keep padding low.

    A batch holds at most `max_batch` rows and at most `max_tokens` padded tokens (rows × longest row).
    """
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batch: list[int] = []
    for i in order:
        width = len(ids[i])  # sorted ascending, so the newest row is the widest
        if batch and (len(batch) + 1 > max_batch or (len(batch) + 1) * width > max_tokens):
            yield (batch, *pad_batch([ids[j] for j in batch], pad_id))
            batch = []
        batch.append(i)
    if batch:
        yield (batch, *pad_batch([ids[j] for j in batch], pad_id))
