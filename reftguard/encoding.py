"""Prompt encoding shared by fitting, export parity checks and serving (tokenizers only, no torch).

A user turn becomes `prefix_ids + text_ids + suffix_ids`. The prefix and suffix are tokenized once;
truncation only ever removes tokens of the user text, so the template (and the last token, whose state
is scored) is always intact.

Policies for a turn over `max_tokens`: `window` (the default) splits its text into overlapping windows,
each wrapped in the template as its own row, so nothing is dropped and a harmful request after a long
benign context is still scored, plus one short *tail* row (the text's last `window_tail` tokens) so that
a request at the very end is also scored without most of the context before it;
`right`/`left` keep the start/end; `error` rejects.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard.prompt import PromptFormat

TRUNCATION_POLICIES = ("window", "error", "left", "right")
DEFAULT_TRUNCATION = "window"
# Windows per turn, by default. Scoring cost grows linearly with it; 16 windows of a 512-token bundle
# cover ~6k tokens of text, longer than any prompt a finetuning set needs scored whole.
DEFAULT_MAX_WINDOWS = 16
# Tokens in the tail window of a windowed turn (see PromptEncoder), unless a quarter of the window is less.
DEFAULT_WINDOW_TAIL = 32
# Characters per token assumed for a tokenizer with a normalizer (which can change text lengths); others
# use their longest vocabulary entry. Text beyond budget x that many characters can never fit, so it is cut
# (or rejected) before tokenizing, which keeps a 1 MB prompt cheap.
MAX_CHARS_PER_TOKEN = 64


class PromptRejected(ValueError):
    """A prompt the policy cannot score; `index` is its position in the texts given to `encode`."""

    index: int


class PromptTooLong(PromptRejected):
    """A prompt is over max_tokens and the truncation policy is `error`."""

    def __init__(self, index: int, num_tokens: int, max_tokens: int, unit: str = "tokens"):
        self.index, self.num_tokens, self.max_tokens = index, num_tokens, max_tokens
        super().__init__(
            f"it has {num_tokens} {unit}, over the limit of {max_tokens} tokens; "
            "shorten it or use truncation 'window', 'left' or 'right'"
        )


class TooManyWindows(PromptRejected):
    """A prompt needs more windows than `max_windows` under truncation `window`."""

    def __init__(self, index: int, num_windows: int, max_windows: int, window: int, at_least: bool = False):
        self.index, self.num_windows, self.max_windows = index, num_windows, max_windows
        super().__init__(
            f"it needs {'at least ' if at_least else ''}{num_windows} windows of {window} tokens, over the limit of "
            f"{max_windows} windows (max_windows); raise it (--max-windows / REFTGUARD_MAX_WINDOWS) or use truncation "
            "'left' or 'right' to score only part of it"
        )


ENCODE_CHUNK = 32  # texts tokenized per step of a budgeted encoding


@dataclass(frozen=True)
class Budget:
    """What one request may become: rows (turns and their windows) and tokens (their lengths summed;
    the cost of scoring it). 0 = no cap."""

    rows: int = 0
    tokens: int = 0


class OverBudget(ValueError):
    """A request's texts make more rows or tokens than its Budget allows. `at_least` counts are lower
    bounds from the texts' lengths (found before tokenizing); otherwise found after `encoded` texts."""

    def __init__(self, unit: str, count: int, cap: int, encoded: int, at_least: bool = True):
        self.unit, self.count, self.cap, self.encoded, self.at_least = unit, count, cap, encoded, at_least
        self.field = "rows" if unit == "prompts" else "tokens"
        self.what = f"the request has {'at least ' if at_least else ''}{count} {unit}"
        super().__init__(f"{self.what}, over the cap of {cap}")


@dataclass
class Encoded:
    """Rows to score. A turn that fits is one row; under `window` a longer one is several rows."""

    ids: list[list[int]]
    truncated: list[bool]  # per row: tokens of the text were dropped (left/right only)
    text: list[int]  # per row: index of the input text it encodes
    window: list[int]  # per row: window index within its text (0 when not windowed; the tail row is the last)
    num_windows: list[int]  # per row: how many windows its text has, tail row included (1 when not windowed)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def extend(self, part: Encoded, first_text: int) -> None:
        """Append the rows of texts encoded separately, whose first text is `first_text` here."""
        self.ids += part.ids
        self.truncated += part.truncated
        self.text += [first_text + k for k in part.text]
        self.window += part.window
        self.num_windows += part.num_windows


class PromptEncoder:
    def __init__(self, tokenizer_file: str | Path, prompt: PromptFormat, max_tokens: int, *,
                 window_overlap: int = -1, max_windows: int = DEFAULT_MAX_WINDOWS, window_tail: int = -1):
        from tokenizers import Tokenizer  # lazy: keeps `import reftguard.encoding` cheap

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # The most characters one token can stand for: the longest vocabulary entry (byte-level and
        # metaspace entries are never shorter than the text they decode to). A normalizer can change
        # lengths, so then the generous constant.
        longest = max(map(len, self.tokenizer.get_vocab(with_added_tokens=True)), default=1)
        self.chars_per_token = longest if self.tokenizer.normalizer is None else max(longest, MAX_CHARS_PER_TOKEN)
        self.prompt = prompt
        self.max_tokens = int(max_tokens)
        self.prefix_ids = self._ids(prompt.prefix)
        self.suffix_ids = self._ids(prompt.suffix)
        self.overhead = len(self.prefix_ids) + len(self.suffix_ids)
        if self.overhead >= self.max_tokens:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for text after the {self.overhead}-token template")
        self.budget = self.max_tokens - self.overhead  # text tokens one row can hold
        # A quarter of the window by default: a request up to that many tokens that straddles a window
        # boundary still lies whole inside one window, at 4/3 the cost of disjoint windows.
        self.window_overlap = self.budget // 4 if window_overlap < 0 else int(window_overlap)
        if self.window_overlap >= self.budget:
            raise ValueError(f"window_overlap={window_overlap} must be below the {self.budget}-token text budget of a window")
        self.max_windows = int(max_windows)  # 0: no limit; counts the tail row
        # The end-aligned last window holds up to a full budget of context before a final request, and that
        # context dilutes the last-token state the head reads; a short tail row sees the request nearly
        # alone. 32 tokens was chosen on a long-context set built from calib-half dev prompts, over six
        # trained bundles (research/results/window_tail_calib.json, docs/design.md); a quarter of the
        # window where that is smaller. 0 turns it off.
        self.window_tail = min(DEFAULT_WINDOW_TAIL, self.budget // 4) if window_tail < 0 else int(window_tail)
        if self.window_tail >= self.budget:
            raise ValueError(f"window_tail={window_tail} must be below the {self.budget}-token text budget of a window")

    def _ids(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_special_tokens=False).ids if s else []

    def encode(self, texts: list[str], truncation: str = DEFAULT_TRUNCATION, budget: Budget | None = None) -> Encoded:
        """Rows for `texts`; with a `budget`, OverBudget as soon as they pass it (see `steps`)."""
        if budget is None:
            return self._encode(texts, truncation)
        out = Encoded(ids=[], truncated=[], text=[], window=[], num_windows=[])
        for _ in self.steps(texts, truncation, budget, out):
            pass
        return out

    def steps(self, texts: list[str], truncation: str, budget: Budget, out: Encoded):
        """Encode `texts` into `out` ENCODE_CHUNK texts per step (an iterator: each next() tokenizes one
        chunk, so a server can interleave other callers' chunks between them). A request whose lengths
        alone prove it over `budget` raises OverBudget at once, before any tokenizing; otherwise it is
        raised after the chunk that passes the budget, so a request over it costs at most one chunk."""
        rows, tokens = self.at_least(texts, truncation)
        self._check(budget, rows, tokens, 0, at_least=True)
        return self._steps(texts, truncation, budget, out)

    def _steps(self, texts, truncation, budget, out):
        for start in range(0, len(texts), ENCODE_CHUNK):
            try:
                part = self._encode(texts[start:start + ENCODE_CHUNK], truncation)
            except PromptRejected as exc:
                exc.index += start
                raise
            out.extend(part, start)
            done = min(start + ENCODE_CHUNK, len(texts))
            self._check(budget, len(out.ids), sum(map(len, out.ids)), done, at_least=done < len(texts))
            yield done

    @staticmethod
    def _check(budget: Budget, rows: int, tokens: int, encoded: int, at_least: bool) -> None:
        if budget.rows and rows > budget.rows:
            raise OverBudget("prompts", rows, budget.rows, encoded, at_least)
        if budget.tokens and tokens > budget.tokens:
            raise OverBudget("tokens", tokens, budget.tokens, encoded, at_least)

    def at_least(self, texts: list[str], truncation: str) -> tuple[int, int]:
        """Lower bounds on the rows and tokens `texts` encode to, from their lengths alone: no token is
        longer than `chars_per_token` characters."""
        rows = tokens = 0
        for t in texts:
            n = -(-len(t) // self.chars_per_token)  # text tokens, at least
            if truncation != "window" or n <= self.budget:
                rows, tokens = rows + 1, tokens + min(n, self.budget) + self.overhead
                continue
            full = len(self.window_starts(n))
            tail = 1 if self.window_tail else 0
            rows += full + tail
            tokens += full * self.max_tokens + tail * (self.window_tail + self.overhead)
        return rows, tokens

    def _encode(self, texts: list[str], truncation: str) -> Encoded:
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"unknown truncation policy {truncation!r}; use one of {TRUNCATION_POLICIES}")
        budget = self.budget
        # Under window every token is kept, so only text too long for `max_windows` windows is refused
        # before tokenizing; otherwise what lies beyond one row's budget is cut (or refused).
        if truncation != "window":
            max_chars = budget * self.chars_per_token
        else:
            max_chars = self._span(self.max_windows - (self.window_tail > 0)) * self.chars_per_token if self.max_windows else float("inf")
        precut = [len(t) > max_chars for t in texts]
        for i, long in enumerate(precut):
            if long and truncation == "error":
                raise PromptTooLong(i, len(texts[i]), self.max_tokens, unit="characters")
            if long and truncation == "window":
                raise TooManyWindows(i, self.max_windows + 1, self.max_windows, budget, at_least=True)
        clipped = [t if not long else (t[:max_chars] if truncation == "right" else t[-max_chars:]) for t, long in zip(texts, precut)]
        encs = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        out = Encoded(ids=[], truncated=[], text=[], window=[], num_windows=[])
        for i, enc in enumerate(encs):
            body = enc.ids
            cut = (len(body) > budget or precut[i]) and truncation != "window"
            if cut:
                if truncation == "error":
                    raise PromptTooLong(i, len(body) + self.overhead, self.max_tokens)
                body = body[:budget] if truncation == "right" else body[len(body) - budget :]
            spans = [(start, start + budget) for start in self.window_starts(len(body))]
            if len(spans) > 1 and self.window_tail:
                spans.append((len(body) - self.window_tail, len(body)))
            if self.max_windows and len(spans) > self.max_windows:
                raise TooManyWindows(i, len(spans), self.max_windows, budget)
            for w, (start, end) in enumerate(spans):
                out.ids.append(self.prefix_ids + body[start:end] + self.suffix_ids)
                out.truncated.append(cut)
                out.text.append(i)
                out.window.append(w)
                out.num_windows.append(len(spans))
        return out

    def window_starts(self, n: int) -> list[int]:
        """Start offsets of the windows over `n` text tokens: [0] when they fit in one row; else every
        `budget - overlap` tokens, with the last window aligned to end exactly at the text's end."""
        if n <= self.budget:
            return [0]
        stride = self.budget - self.window_overlap
        count = 1 + -(-(n - self.budget) // stride)
        return [min(k * stride, n - self.budget) for k in range(count)]

    def _span(self, windows: int) -> int:
        """Most text tokens `windows` full windows can cover (at least one row's budget)."""
        return self.budget + max(windows - 1, 0) * (self.budget - self.window_overlap)


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
