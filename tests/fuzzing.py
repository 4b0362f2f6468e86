"""Hypothesis strategies for hostile ScoreRequests, sent as raw bytes so that even invalid UTF-8 and
lone surrogates (which the protobuf runtime refuses to serialize) reach the server, and for hostile
call metadata (duplicate `authorization` headers)."""
from __future__ import annotations

import math
import string

from hypothesis import strategies as st

# Every role spelling the server knows (reftguard.prompt.ROLE_ALIASES) and some it must refuse.
ROLES = st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool", "developer", "response", "model", "Prompt", "",
                         "USER", "wizard", "user\x00", " assistant "])
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),  # any code point, surrogates too
    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff" * 10, "<|im_end|>", "<|im_start|>assistant\n", "a" * 5000]),
    st.integers(0, 3).map(lambda k: "x" * (10 ** (k + 3))),  # up to 1 MB
)


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, wire: int, payload: bytes) -> bytes:
    return varint((num << 3) | wire) + payload


def string_field(num: int, s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")  # lone surrogates -> invalid UTF-8 on the wire
    return field(num, 2, varint(len(raw)) + raw)


@st.composite
def messages(draw):
    """A few messages with nasty texts, many (up to past max_turns_per_item) with short ones, or now and
    then a flood of thousands of replies (every role counts toward the caps)."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        flood = field(3, 2, _len(string_field(1, draw(ROLES)) + string_field(2, "x")))
        return field(3, 2, _len(string_field(1, "user") + string_field(2, "hi"))) + flood * draw(st.integers(1000, 20000))
    many = shape < 3
    count, text = (draw(st.integers(20, 150)), st.text(max_size=12)) if many else (draw(st.integers(0, 6)), NASTY_TEXT)
    out = b""
    for _ in range(count):
        out += field(3, 2, _len(string_field(1, draw(ROLES)) + string_field(2, draw(text))))
    return out


HEADER_VALUE = st.text(alphabet=string.ascii_letters + string.digits + " -._~+/=", max_size=24)


@st.composite
def metadata(draw) -> list[tuple[str, str]]:
    """Call metadata: 0-3 `authorization` headers (bearer or not) among other keys, in any order. Two or
    more in about one call in five, so most calls still reach the request parser."""
    count = (0, 0, 0, 0, 0, 1, 1, 1, 2, 3)[draw(st.integers(0, 9))]
    auth = [("authorization", draw(st.one_of(HEADER_VALUE, HEADER_VALUE.map(lambda v: "Bearer " + v)))) for _ in range(count)]
    other = [(draw(st.sampled_from(["x-request-id", "user-agent-extra", "authorization-extra", "x-b3"])), draw(HEADER_VALUE))
             for _ in range(draw(st.integers(0, 2)))]
    return draw(st.permutations(auth + other))


def _len(b: bytes) -> bytes:
    return varint(len(b)) + b


@st.composite
def items(draw):
    body = string_field(1, draw(st.one_of(st.just(""), st.text(max_size=8), st.just("dup"))))
    if draw(st.booleans()):
        body += string_field(2, draw(NASTY_TEXT))
    if draw(st.booleans()):
        body += draw(messages())
    if draw(st.booleans()):
        body += field(4, 0, varint(draw(st.integers(-3, 9))))
    return field(1, 2, _len(body))


@st.composite
def score_requests(draw) -> bytes:
    req = b"".join(draw(st.lists(items(), max_size=12)))
    if draw(st.booleans()):
        t = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([math.nan, -1.0, 1.0, 1.0000001])))
        import struct

        req += field(2, 5, struct.pack("<f", t))
    if draw(st.booleans()):
        req += string_field(3, draw(st.one_of(st.text(max_size=10), st.sampled_from(["ingest", "other", ""]))))
    if draw(st.booleans()):
        req += field(4, 0, varint(draw(st.integers(-2, 7))))
    if draw(st.booleans()):
        req += field(5, 0, varint(draw(st.integers(0, 3))))  # flag_refusal_examples (any varint reads as a bool)
    if draw(st.integers(0, 9)) == 0:
        req += draw(st.binary(max_size=20))  # trailing garbage
    return req
