"""Hostile requests over a real socket: every one gets a precise status, the server never crashes and
stays SERVING. (A longer run: FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py.)"""
from __future__ import annotations

import os

import grpc
from hypothesis import HealthCheck, example, given, settings

from reftguard.clients import GuardClient
from reftguard.v1 import guard_pb2 as pb
from tests.fuzzing import metadata, score_requests
from tests.harness import run_server

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def test_fuzz_score(role_bundle):
    """On a bundle that scores every role (assistant and system calibrations)."""
    seen: dict[str, int] = {}
    with run_server(role_bundle, max_chars=200_000) as rs:
        channel = grpc.insecure_channel(rs.target, options=[("grpc.max_send_message_length", 64 << 20)])
        raw = channel.unary_unary("/reftguard.v1.Guard/Score")

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(score_requests(), metadata())
        # Random draws are valid only ~1 time in 70, so 300 of them hold none about 2% of the time: one valid
        # request is always among the examples, so the OK path is exercised between hostile ones every run.
        @example(pb.ScoreRequest(items=[pb.Item(id="ok", text="hello")]).SerializeToString(), [])
        def one(payload: bytes, md: list):
            try:
                raw(payload, timeout=30, metadata=md)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
                assert err.details(), "an error must say what was wrong"
            seen[code.name] = seen.get(code.name, 0) + 1
            if sum(k == "authorization" for k, _ in md) > 1:  # never two credentials, auth on or off
                assert code == grpc.StatusCode.UNAUTHENTICATED, (code, md)
            else:
                assert code in ALLOWED, (code, payload[:200], md)

        one()
        channel.close()
        with GuardClient(rs.target) as c:
            assert c.health()
            assert len(c.score(["still fine"])) == 1
        assert rs.value("reftguard_errors_total", code="INTERNAL") == 0
    print(f"fuzz: {sum(seen.values())} requests, by status {seen}")  # shown with -s
    assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0 and seen.get("UNAUTHENTICATED", 0) > 0, seen
