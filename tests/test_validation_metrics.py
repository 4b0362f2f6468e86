"""Unit tests of request validation (parse_score_request) and the sliding-window rate gauges."""
from __future__ import annotations

import math

import grpc
import pytest

from reftguard.scoring import Thresholds, Turn
from reftguard.server.config import ServerConfig
from reftguard.server.metrics import GuardMetrics, SlidingRate
from reftguard.server.validation import RequestError, check_prompts, clip, parse_score_request
from reftguard.v1 import guard_pb2 as pb


def msg(role: str, content: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=role, content=content)


USER_ONLY = Thresholds(0.0)  # a bundle without role calibrations
ROLES = Thresholds(0.0, 0.0, 0.0)


def parse(req: pb.ScoreRequest, thresholds: Thresholds = USER_ONLY, **limits):
    return parse_score_request(req, ServerConfig(**limits), thresholds)


def refused(req: pb.ScoreRequest, **limits) -> str:
    with pytest.raises(RequestError) as exc:
        parse(req, **limits)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return exc.value.message


def test_user_turns_of_text_and_chat_items_in_order():
    req = pb.ScoreRequest(items=[
        pb.Item(id="t", text="plain", label=pb.HARMFUL),
        pb.Item(id="c", messages=[msg("system", "sys"), msg("user", "q1"), msg("assistant", "a"), msg("USER", "q2")]),
        pb.Item(id="s", messages=[msg("human", "sharegpt"), msg("gpt", "reply")]),
    ], threshold=0.25, source="ingest", truncation=pb.TRUNCATION_LEFT)
    p = parse(req)
    assert p.turns == [Turn(0, -1, "plain"), Turn(1, 1, "q1"), Turn(1, 3, "q2"), Turn(2, 0, "sharegpt")]
    assert p.labels == ["harmful", None, None]
    assert (p.threshold, p.truncation, p.source, p.flag_refusal_examples) == (0.25, "left", "ingest", False)
    assert parse(pb.ScoreRequest(items=[pb.Item(id="x", text="y")]), truncation="right").truncation == "right"
    # a bundle with role calibrations scores every turn with its role (aliases normalised)
    p = parse(req, ROLES)
    assert p.turns == [Turn(0, -1, "plain"), Turn(1, 0, "sys", "system"), Turn(1, 1, "q1"), Turn(1, 2, "a", "assistant"),
                       Turn(1, 3, "q2"), Turn(2, 0, "sharegpt"), Turn(2, 1, "reply", "assistant")]


def test_roles_aliases_and_empty_replies():
    chat = [msg("Developer", "rules"), msg("prompt", "q"), msg("response", "r"), msg("tool", "out"), msg("gpt", "  "), msg("model", "m")]
    p = parse(pb.ScoreRequest(items=[pb.Item(id="c", messages=chat)], flag_refusal_examples=True), ROLES)
    assert [(t.turn, t.role) for t in p.turns] == [(0, "system"), (1, "user"), (2, "assistant"), (3, "user"), (5, "assistant")]
    assert p.flag_refusal_examples  # an empty reply is counted, not scored (nothing to learn from it)


def test_turn_and_prompt_caps_name_their_setting():
    chat = [msg("user", f"hi {i}") for i in range(10)]
    assert len(parse(pb.ScoreRequest(items=[pb.Item(id="c", messages=chat)]), max_turns_per_item=10).turns) == 10
    m = refused(pb.ScoreRequest(items=[pb.Item(id="c", messages=chat)]), max_turns_per_item=9)
    assert "item 0 has 10 messages" in m and "the limit is 9" in m and "--max-turns-per-item / REFTGUARD_MAX_TURNS_PER_ITEM" in m
    # every role counts, scored or not: a bundle that scores user turns only still refuses a flood of replies
    mixed = [msg("gpt" if i % 2 else "user", str(i)) for i in range(20)]
    assert len(parse(pb.ScoreRequest(items=[pb.Item(id="c", messages=mixed)]), max_turns_per_item=20).turns) == 10
    assert "has 20 messages" in refused(pb.ScoreRequest(items=[pb.Item(id="c", messages=mixed)]), max_turns_per_item=19)
    items = [pb.Item(id=str(k), messages=chat) for k in range(3)]
    m = refused(pb.ScoreRequest(items=items), max_prompts_per_request=15)
    assert "has 30 prompts (messages of every role)" in m and "REFTGUARD_MAX_PROMPTS_PER_REQUEST" in m
    with pytest.raises(RequestError, match="has 17 prompts"):
        check_prompts(17, 16, "user turns and their windows")
    check_prompts(16, 16, "user turns and their windows")


def test_ids_are_capped_in_bytes_and_never_echoed():
    assert parse(pb.ScoreRequest(items=[pb.Item(id="é" * 256, text="x")]))  # 512 bytes
    m = refused(pb.ScoreRequest(items=[pb.Item(id="ok", text="x"), pb.Item(id="é" * 257, text="x")]))
    assert m.startswith("item 1: id has 514 bytes") and "REFTGUARD_MAX_ID_BYTES" in m and "é" not in m


@pytest.mark.parametrize("req, needle", [
    (pb.ScoreRequest(), "empty batch"),
    (pb.ScoreRequest(items=[pb.Item(id=str(i), text="x") for i in range(3)]), "REFTGUARD_MAX_CLIENT_BATCH"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], threshold=math.nan), "threshold"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], threshold=-1.5), "threshold"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], truncation=9), "unknown truncation"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x", label=5)]), "unknown label"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x", messages=[msg("user", "y")])]), "either text or messages"),
    (pb.ScoreRequest(items=[pb.Item(id="a", messages=[msg("wizard", "y")])]), "unknown role"),
    (pb.ScoreRequest(items=[pb.Item(id="a", messages=[msg("assistant", "y")])]), "no user turn"),
    (pb.ScoreRequest(items=[pb.Item(id="a", messages=[msg("user", " ")])]), "message 0: text is missing"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="nul\x00")]), "NUL"),
    (pb.ScoreRequest(items=[pb.Item(id="a", text="x" * 11)]), "the limit is 10"),
])
def test_bad_requests(req, needle):
    assert needle in refused(req, max_client_batch=2, max_chars=10)


def test_clip_keeps_log_lines_short():
    assert clip("short") == "short"
    cut = clip("x" * 1000 + "\nFORGED")
    assert len(cut) < 160 and cut.endswith("...[1007 chars]") and "FORGED" not in cut


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sliding_rate_is_nan_when_empty_and_forgets_old_buckets():
    clock = Clock()
    rate = SlidingRate(60.0, slots=60, clock=clock)
    assert math.isnan(rate.value())
    rate.add(1.0)
    rate.add(0.0)
    rate.add(1.0, den=2.0)
    assert rate.value() == pytest.approx(2 / 4)
    clock.t += 30
    rate.add(0.0, den=4.0)
    assert rate.value() == pytest.approx(2 / 8)
    clock.t += 45  # the first buckets are 75 s old: out of the 60 s window
    assert rate.value() == pytest.approx(0 / 4)
    clock.t += 61
    assert math.isnan(rate.value())  # no data, not a misleading 0
    assert not rate._buckets  # trimmed, memory stays bounded


def test_guard_metrics_gauges_follow_decisions_and_feedback():
    m = GuardMetrics(["ingest"], window_s=60.0)
    get = m.registry.get_sample_value
    assert math.isnan(get("reftguard_flag_rate", {"source": "ingest"})) and math.isnan(get("reftguard_false_positive_rate"))
    assert m.source_label("nope") == "other" and m.source_label("") == "other" and m.source_label("ingest") == "ingest"
    m.record_decision("ingest", True, 0.5, "benign")  # a false positive
    m.record_decision("ingest", False, -0.5, "harmful")  # a miss
    m.record_decision("ingest", False, -0.5, None)  # unlabeled: flag rate only
    assert get("reftguard_flag_rate", {"source": "ingest"}) == pytest.approx(1 / 3)
    assert get("reftguard_false_positive_rate") == 1.0 and get("reftguard_miss_rate") == 1.0
    m.record_feedback(False, "benign")  # a reviewer confirms an allowed item was benign
    m.record_feedback(True, "harmful")  # and a flagged one harmful
    assert get("reftguard_false_positive_rate") == pytest.approx(1 / 2) and get("reftguard_miss_rate") == pytest.approx(1 / 2)
    assert get("reftguard_feedback_total", {"served": "flag", "reviewed": "harmful"}) == 1
    for code in ("CANCELLED", "DEADLINE_EXCEEDED", "PERMISSION_DENIED"):
        assert get("reftguard_errors_total", {"code": code}) == 0  # exist from the start


def test_messages_are_counted_on_the_wire_before_parsing():
    """A request of millions of messages used to be parsed (a Python object each, on the event loop) before its
    count was checked; the wire walk stops one message past the cap."""
    from reftguard.server.wire import too_many_messages

    def req(*counts: int) -> bytes:
        return pb.ScoreRequest(items=[pb.Item(id=str(k), messages=[msg("user", "q")] + [msg("gpt", "x")] * (n - 1)) for k, n in enumerate(counts)],
                               threshold=0.5, source="ingest").SerializeToString()

    assert too_many_messages(req(64, 64, 10), 64, 1024) is None
    assert too_many_messages(req(3, 65), 64, 1024) == "item 1 has more than 64 messages"
    assert too_many_messages(req(60, 60), 64, 100) == "the request has more than 100 messages"
    assert too_many_messages(pb.ScoreRequest(items=[pb.Item(id="t", text="y" * 1000)]).SerializeToString(), 1, 1) is None
    assert too_many_messages(b"\\x0a\\xff\\xff", 1, 1) is None  # malformed: left to the parser, which says why
    assert too_many_messages(req(2_000_000), 64, 1024) == "item 0 has more than 64 messages"
