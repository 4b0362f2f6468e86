"""Turning user inputs (strings, dicts, Items) into ScoreRequests, and the retry policy."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import grpc

from reftguard.v1 import guard_pb2 as pb

LABELS = {None: pb.LABEL_UNSPECIFIED, "": pb.LABEL_UNSPECIFIED, "benign": pb.BENIGN, "harmful": pb.HARMFUL}
# None leaves the policy to the server (window by default: long prompts are scored as overlapping windows).
TRUNCATIONS = {None: pb.TRUNCATION_UNSPECIFIED, "window": pb.TRUNCATION_WINDOW, "error": pb.TRUNCATION_ERROR,
               "left": pb.TRUNCATION_LEFT, "right": pb.TRUNCATION_RIGHT}
TRUNCATION_CHOICES = tuple(k for k in TRUNCATIONS if k)
# Scoring is idempotent, so a call the server cancelled (e.g. mid-shutdown) is safe to send again.
# A caller's own cancellation surfaces as asyncio.CancelledError, never as this status.
RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def to_item(x: Any, index: int) -> pb.Item:
    """str -> Item(id=index, text); dict with id/text/messages/label -> Item; Item passes through."""
    if isinstance(x, pb.Item):
        return x
    if isinstance(x, str):
        return pb.Item(id=str(index), text=x)
    if isinstance(x, dict):
        label = x.get("label")
        if label not in LABELS:
            raise ValueError(f"item {index}: label must be 'harmful', 'benign' or absent, got {label!r}")
        messages = [pb.ChatMessage(role=m.get("role", m.get("from", "")), content=m.get("content", m.get("value", ""))) for m in x.get("messages") or []]
        return pb.Item(id=str(x.get("id", index)), text=x.get("text") or "", messages=messages, label=LABELS[label])
    raise TypeError(f"item {index}: expected str, dict or reftguard.v1.Item, got {type(x).__name__}")


def make_request(items: Iterable[Any], *, start: int = 0, threshold: float | None = None, source: str = "", truncation: str | None = None,
                 flag_refusal_examples: bool = False, accept_review: bool = False) -> pb.ScoreRequest:
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {'/'.join(TRUNCATION_CHOICES)}, got {truncation!r}")
    req = pb.ScoreRequest(items=[to_item(x, start + i) for i, x in enumerate(items)], source=source, truncation=TRUNCATIONS[truncation],
                          flag_refusal_examples=flag_refusal_examples, accept_review=accept_review)
    if threshold is not None:
        req.threshold = threshold
    return req


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for x in items:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Backoff:
    """Exponential backoff with full jitter; honours the server's retry-after-ms hint."""

    max_retries: int = 8
    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int, err: grpc.RpcError | None = None) -> float:
        hint = 0.0
        try:
            for key, value in (err.trailing_metadata() or ()) if err is not None else ():
                if key == "retry-after-ms":
                    hint = float(value) / 1000.0
        except Exception:  # trailing metadata is best effort
            pass
        return max(hint, random.uniform(0, min(self.cap_s, self.base_s * (2**attempt))))

    def should_retry(self, err: grpc.RpcError, attempt: int) -> bool:
        return err.code() in RETRYABLE and attempt < self.max_retries
