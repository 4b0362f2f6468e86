"""Counting a ScoreRequest's chat messages on the wire, before it is parsed.

Parsing builds a Python object per message on the event loop: one request of two million `gpt` messages
held health and Info for seconds. `too_many_messages` walks the encoded bytes instead (tags and lengths
only, skipping every payload) and stops as soon as an item passes its cap, so a flood costs a few
dozen steps, not two million objects. Anything it cannot read is left to the real parser, which then
reports the error.
"""
from __future__ import annotations

ITEMS, MESSAGES = 1, 3  # ScoreRequest.items, Item.messages (proto/reftguard/v1/guard.proto)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes, start: int, end: int):
    """(field number, payload start, payload end) of the length-delimited fields in buf[start:end]."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"wire type {wire}")


def too_many_messages(data: bytes, per_item: int, per_request: int) -> str | None:
    """Why a ScoreRequest carries too many chat messages (every role), or None. Stops early."""
    total = 0
    try:
        for k, (field, start, end) in enumerate(f for f in _fields(data, 0, len(data)) if f[0] == ITEMS):
            count = 0
            for sub, _, _ in _fields(data, start, end):
                if sub == MESSAGES:
                    count += 1
                    total += 1
                    if count > per_item:
                        return f"item {k} has more than {per_item} messages"
                    if total > per_request:
                        return f"the request has more than {per_request} messages"
    except (ValueError, IndexError):
        return None  # malformed: the parser says what is wrong
    return None
