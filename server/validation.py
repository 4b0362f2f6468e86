"""Request validation: every malformed request becomes a RequestError with a precise gRPC status.

Checks happen before any work is queued, so a bad request costs nothing and changes nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import grpc

from reftguard.config import env_name
from reftguard.prompt import ROLE_ALIASES, normalize_role, text_problem
from reftguard.scoring import Thresholds, Turn
from reftguard.v1 import guard_pb2 as pb

TRUNCATION_NAMES = {pb.TRUNCATION_WINDOW: "window", pb.TRUNCATION_ERROR: "error", pb.TRUNCATION_LEFT: "left", pb.TRUNCATION_RIGHT: "right"}
LABEL_NAMES = {pb.BENIGN: "benign", pb.HARMFUL: "harmful"}
LOGGED_CHARS = 128  # most characters of a client-supplied string that reach a log line


def clip(s: str, limit: int = LOGGED_CHARS) -> str:
    """A client string cut for a log line; log it with %r, so newlines and control characters stay escaped."""
    return s if len(s) <= limit else s[:limit] + f"...[{len(s)} chars]"


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, retry_after_ms: int | None = None):
        super().__init__(message)
        self.code, self.message, self.retry_after_ms = code, message, retry_after_ms


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def over_limit(what: str, limit: int, field: str, advice: str = "") -> RequestError:
    """INVALID_ARGUMENT naming the limit, the server setting that holds it and its flag/env twin."""
    flag = "--" + field.replace("_", "-")
    return invalid(f"{what}; the limit is {limit} ({field}: {flag} / {env_name(field)}){advice}")


class Limits(Protocol):
    """The request limits of ServerConfig that validation reads."""

    max_client_batch: int
    max_chars: int
    max_id_bytes: int
    max_turns_per_item: int
    max_prompts_per_request: int
    truncation: str


@dataclass
class ParsedRequest:
    turns: list[Turn]
    threshold: float | None
    truncation: str
    source: str
    labels: list[str | None]
    flag_refusal_examples: bool = False


def parse_score_request(req: pb.ScoreRequest, limits: Limits, thresholds: Thresholds) -> ParsedRequest:
    """Check everything that can be checked before tokenizing; the turns to encode, in order.

    Every scored turn is a prompt to the batcher (windows add more once encoded), so messages of every
    role are counted per item and per request from the messages' counts alone, before any per-message
    work: one item of millions of messages costs nothing. A turn of a role `thresholds` does not score
    (a bundle without that role's calibration) and an empty non-user turn are counted, not scored.
    """
    n = len(req.items)
    if n == 0:
        raise invalid("empty batch: a ScoreRequest needs at least one item")
    if n > limits.max_client_batch:
        raise over_limit(f"{n} items in one request", limits.max_client_batch, "max_client_batch", " (split the batch or use ScoreStream)")
    threshold = None
    if req.HasField("threshold"):
        threshold = req.threshold
        if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
            raise invalid(f"threshold {threshold!r} is not a number in [-1, 1]")
    if req.truncation == pb.TRUNCATION_UNSPECIFIED:
        truncation = limits.truncation
    elif req.truncation in TRUNCATION_NAMES:
        truncation = TRUNCATION_NAMES[req.truncation]
    else:
        raise invalid(f"unknown truncation policy {req.truncation}; use one of {', '.join(pb.Truncation.Name(k) for k in TRUNCATION_NAMES)}")
    # Counts first: len() of a repeated field touches no message.
    sizes = [len(item.messages) or 1 for item in req.items]
    for i, size in enumerate(sizes):
        if size > limits.max_turns_per_item:
            raise over_limit(f"item {i} has {size} messages", limits.max_turns_per_item, "max_turns_per_item",
                             " (every role counts; score a long chat as several items)")
    check_prompts(sum(sizes), limits.max_prompts_per_request, "messages of every role")
    turns: list[Turn] = []
    labels: list[str | None] = []
    for i, item in enumerate(req.items):
        check_id(item.id, f"item {i}", limits.max_id_bytes)
        where = f"item {i} (id {item.id!r})"
        if item.label not in (pb.LABEL_UNSPECIFIED, pb.BENIGN, pb.HARMFUL):
            raise invalid(f"{where}: unknown label {item.label}; use BENIGN or HARMFUL")
        labels.append(LABEL_NAMES.get(item.label))
        if item.text and item.messages:
            raise invalid(f"{where}: set either text or messages, not both")
        if item.messages:
            user = False
            for t, m in enumerate(item.messages):
                role = normalize_role(m.role)
                if role is None:
                    raise invalid(f"{where}: message {t} has unknown role {clip(m.role)!r}; use one of {', '.join(sorted(ROLE_ALIASES))}")
                if role == "user":
                    check_text(m.content, f"{where} message {t}", limits.max_chars)
                    user = True
                elif not m.content.strip() or not thresholds.scores(role):
                    continue
                else:
                    check_text(m.content, f"{where} message {t}", limits.max_chars)
                turns.append(Turn(i, t, m.content, role))
            if not user:
                raise invalid(f"{where}: messages contain no user turn to score")
        else:
            check_text(item.text, where, limits.max_chars)
            turns.append(Turn(i, -1, item.text))
    return ParsedRequest(turns, threshold, truncation, req.source, labels, req.flag_refusal_examples)


def check_prompts(n: int, limit: int, what: str, *, more: bool = False) -> None:
    """Prompts per request: every turn, and every window of a long one, is a prompt in the batcher."""
    if n > limit:
        counted = f"at least {n}" if more else str(n)
        raise over_limit(f"the request has {counted} prompts ({what})", limit, "max_prompts_per_request",
                         " (split the request; every message and window is a prompt)")


def check_id(id: str, where: str, max_id_bytes: int) -> None:
    """Ids come back in every decision and may be logged, so they are bounded (the message never echoes one)."""
    size = len(id.encode("utf-8", "surrogatepass"))
    if size > max_id_bytes:
        raise over_limit(f"{where}: id has {size} bytes", max_id_bytes, "max_id_bytes")


def check_text(text: str, where: str, max_chars: int) -> None:
    problem = text_problem(text, max_chars)
    if problem:
        raise invalid(f"{where}: text {problem[1]}")
