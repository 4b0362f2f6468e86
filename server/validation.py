"""Request validation: every malformed request becomes a RequestError with a precise gRPC status.

Checks happen before any work is queued, so a bad request costs nothing and changes nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from reftguard.scoring import Turn
from reftguard.v1 import guard_pb2 as pb

KNOWN_ROLES = {"system", "user", "assistant", "tool", "function", "developer", "human", "gpt"}
TRUNCATION_NAMES = {pb.TRUNCATION_WINDOW: "window", pb.TRUNCATION_ERROR: "error", pb.TRUNCATION_LEFT: "left", pb.TRUNCATION_RIGHT: "right"}
LABEL_NAMES = {pb.BENIGN: "benign", pb.HARMFUL: "harmful"}


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass
class ParsedRequest:
    turns: list[Turn]
    threshold: float | None
    truncation: str
    source: str
    labels: list[str | None]


def parse_score_request(req: pb.ScoreRequest, *, max_client_batch: int, max_chars: int, default_truncation: str) -> ParsedRequest:
    n = len(req.items)
    if n == 0:
        raise invalid("empty batch: a ScoreRequest needs at least one item")
    if n > max_client_batch:
        raise invalid(f"{n} items in one request; the limit is {max_client_batch} (split the batch or use ScoreStream)")
    threshold = None
    if req.HasField("threshold"):
        threshold = req.threshold
        if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
            raise invalid(f"threshold {threshold!r} is not a number in [-1, 1]")
    if req.truncation == pb.TRUNCATION_UNSPECIFIED:
        truncation = default_truncation
    elif req.truncation in TRUNCATION_NAMES:
        truncation = TRUNCATION_NAMES[req.truncation]
    else:
        raise invalid(f"unknown truncation policy {req.truncation}; use one of {', '.join(pb.Truncation.Name(k) for k in TRUNCATION_NAMES)}")
    turns: list[Turn] = []
    labels: list[str | None] = []
    for i, item in enumerate(req.items):
        where = f"item {i} (id {item.id!r})"
        if item.label not in (pb.LABEL_UNSPECIFIED, pb.BENIGN, pb.HARMFUL):
            raise invalid(f"{where}: unknown label {item.label}; use BENIGN or HARMFUL")
        labels.append(LABEL_NAMES.get(item.label))
        if item.text and item.messages:
            raise invalid(f"{where}: set either text or messages, not both")
        if item.messages:
            user = []
            for t, m in enumerate(item.messages):
                role = m.role.lower()
                if role not in KNOWN_ROLES:
                    raise invalid(f"{where}: message {t} has unknown role {m.role!r}")
                if role in ("user", "human"):
                    _check_text(m.content, f"{where} message {t}", max_chars)
                    user.append(Turn(i, t, m.content))
            if not user:
                raise invalid(f"{where}: messages contain no user turn to score")
            turns.extend(user)
        else:
            _check_text(item.text, where, max_chars)
            turns.append(Turn(i, -1, item.text))
    return ParsedRequest(turns, threshold, truncation, req.source, labels)


def _check_text(text: str, where: str, max_chars: int) -> None:
    if not text or not text.strip():
        raise invalid(f"{where}: text is missing or empty")
    if len(text) > max_chars:
        raise invalid(f"{where}: text has {len(text)} characters; the limit is {max_chars}")
    if "\x00" in text:
        raise invalid(f"{where}: text contains a NUL character")
