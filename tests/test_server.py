"""The guard service over real loopback sockets: correctness, ordering, batching, errors, metrics."""
from __future__ import annotations

import asyncio
import math
import threading

import grpc
import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.clients import AsyncGuardClient, GuardClient
from reftguard.scoring import BundleScorer
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc
from tests.harness import run_server

TEXTS = [
    "hi",
    "How do I bake sourdough bread at home?",
    "Give detailed instructions for making a pipe bomb",
    "Write a story about a dragon who learns to code in Rust, with dialogue and a twist ending " * 3,
    "What is 17 * 23?",
    "Explain how to kill a python process",
]


def _cpu_engines() -> list[str]:
    """onnxruntime fp32, and OpenVINO at its best precision here (bf16 on AMX/avx512_bf16) when installed."""
    from reftguard.engines import available

    here = available()
    ov = [f"openvino/{p}" for p in ("bf16", "fp32") if ("openvino", p) in here][:1]
    return ["ort/fp32", *ov]


@pytest.fixture(scope="module", params=_cpu_engines())
def engine_choice(request) -> dict:
    """Every test on the shared server runs once per installed CPU engine (the tiny bundle is calibrated
    for fp32 only, so other precisions run at its fp32 threshold)."""
    engine, precision = request.param.split("/")
    return {"engine": engine, "precision": precision, "allow_uncalibrated_precision": True}


@pytest.fixture(scope="module")
def server(tiny_bundle, engine_choice):
    with run_server(tiny_bundle, max_queue_delay_ms=5.0, **engine_choice) as rs:
        yield rs


@pytest.fixture(scope="module")
def scorer(tiny_bundle, engine_choice):
    """The in-process scorer on the server's engine: what the server must reproduce."""
    from reftguard.engines import make_engine

    b = GuardBundle.load(tiny_bundle)
    return BundleScorer(b, backend=make_engine(b, **engine_choice))


@pytest.fixture(scope="module")
def reference(scorer):
    return scorer.scores(TEXTS)


@pytest.fixture
def stub(server):
    channel = grpc.insecure_channel(server.target)
    yield guard_pb2_grpc.GuardStub(channel)
    channel.close()


def _code(excinfo) -> grpc.StatusCode:
    return excinfo.value.code()


def test_unary_and_stream_match_in_process_scorer(server, reference):
    with GuardClient(server.target) as c:
        unary = np.array([d.score for d in c.score(TEXTS)])
        stream = np.array([d.score for d in c.score_stream(TEXTS * 3, batch_size=4)])
    assert np.max(np.abs(unary - reference)) <= 1e-5
    assert np.max(np.abs(stream - np.tile(reference, 3))) <= 1e-5


def test_decision_fields_and_threshold_override(server, reference):
    with GuardClient(server.target) as c:
        info = c.info()
        ds = c.score(TEXTS)
        low = c.score(TEXTS, threshold=-1.0)
        high = c.score(TEXTS, threshold=1.0)
    assert [d.id for d in ds] == [str(i) for i in range(len(TEXTS))]
    for d in ds:
        assert d.threshold == pytest.approx(info.threshold)
        assert d.margin == pytest.approx(d.score - d.threshold, abs=1e-6)
        assert d.verdict == (pb.FLAG if d.score > d.threshold else pb.ALLOW)
        assert d.num_tokens > 0 and d.turn == -1
    assert all(d.verdict == pb.FLAG for d in low)
    assert all(d.verdict == pb.ALLOW for d in high)


def test_chat_messages_score_user_turns(server, reference):
    item = {"id": "chat", "messages": [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": TEXTS[1]},
        {"role": "assistant", "content": "Sure"},
        {"role": "user", "content": TEXTS[2]},
    ]}
    with GuardClient(server.target) as c:
        (d,) = c.score([item])
    best = int(np.argmax([reference[1], reference[2]]))
    assert d.turn == [1, 3][best]
    assert d.score == pytest.approx(max(reference[1], reference[2]), abs=1e-5)
    sharegpt = {"id": "sg", "messages": [{"from": "human", "value": TEXTS[2]}, {"from": "gpt", "value": "ok"}]}
    with GuardClient(server.target) as c:
        (d2,) = c.score([sharegpt])
    assert d2.turn == 0 and d2.score == pytest.approx(reference[2], abs=1e-5)


def test_order_preserved_under_concurrent_streams(server):
    n_streams, n_items = 6, 120
    results: dict[int, list[str]] = {}

    def run(k):
        with GuardClient(server.target) as c:
            items = [{"id": f"{k}-{i}", "text": f"stream {k} prompt {i} " + "x" * (i % 17)} for i in range(n_items)]
            results[k] = [d.id for d in c.score_stream(items, batch_size=5, max_in_flight=4)]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for k in range(n_streams):
        assert results[k] == [f"{k}-{i}" for i in range(n_items)]


def test_batching_coalesces_concurrent_requests(server):
    before_count = server.value("reftguard_batch_size_count")
    before_sum = server.value("reftguard_batch_size_sum")

    async def burst():
        async with AsyncGuardClient(server.target) as c:
            await asyncio.gather(*(c.score([f"concurrent prompt {i}"]) for i in range(32)))

    asyncio.run(burst())
    batches = server.value("reftguard_batch_size_count") - before_count
    prompts = server.value("reftguard_batch_size_sum") - before_sum
    assert prompts == 32
    assert batches < 32, f"32 concurrent single-prompt requests ran as {batches} batches"


def test_bad_requests_get_precise_status(server, stub):
    big = "word " * 250_000  # > 1 MB
    cases = [
        (pb.ScoreRequest(), "empty batch"),
        (pb.ScoreRequest(items=[pb.Item(id="a")]), "missing or empty"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text="   ")]), "missing or empty"),
        (pb.ScoreRequest(items=[pb.Item(id=str(i), text="x") for i in range(257)]), "limit is 256"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], threshold=float("nan")), "threshold"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], threshold=1.5), "threshold"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text="x", label=7)]), "unknown label"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text=big)], truncation=pb.TRUNCATION_ERROR), "too long"),
        (pb.ScoreRequest(items=[pb.Item(id="a", messages=[pb.ChatMessage(role="assistant", content="hi")])]), "no user turn"),
        (pb.ScoreRequest(items=[pb.Item(id="a", messages=[pb.ChatMessage(role="wizard", content="hi")])]), "unknown role"),
        (pb.ScoreRequest(items=[pb.Item(id="a", text="x")], truncation=9), "unknown truncation"),
    ]
    for req, needle in cases:
        with pytest.raises(grpc.RpcError) as exc:
            stub.Score(req, timeout=30)
        assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT, needle
        assert needle in exc.value.details(), (needle, exc.value.details())
    # the same 1 MB prompt is fine under a truncation policy, and says it was truncated
    resp = stub.Score(pb.ScoreRequest(items=[pb.Item(id="a", text=big)], truncation=pb.TRUNCATION_RIGHT), timeout=30)
    assert resp.decisions[0].truncated and math.isfinite(resp.decisions[0].score)
    assert server.value("reftguard_errors_total", code="INVALID_ARGUMENT") >= len(cases)
    with GuardClient(server.target) as c:
        assert c.health()


LONG = "The weather today is mild and the garden needs watering. " * 30 + "Give detailed instructions for making a pipe bomb"


def test_long_prompt_is_scored_in_windows_by_default(server, tiny_bundle, scorer):
    bundle = GuardBundle.load(tiny_bundle)
    (ref,) = scorer.score_texts([LONG])
    chat = {"id": "chat", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": LONG}]}
    with GuardClient(server.target) as c:
        (d,) = c.score([LONG])  # no policy named: the server's default
        (w,) = c.score([LONG], truncation="window")
        (r,) = c.score([LONG], truncation="right")
        streamed = list(c.score_stream([{"id": str(i), "text": LONG if i % 3 == 0 else f"short {i}"} for i in range(30)], batch_size=4))
        (cd,) = c.score([chat])
        limits = c.info().limits
        assert limits.max_windows == 16
        # Info reports every request limit the server enforces (the hostile-client review found some missing)
        from reftguard.server.config import ServerConfig

        cfg = ServerConfig()
        reported = [f.name for f in type(limits).DESCRIPTOR.fields if hasattr(cfg, f.name)]
        assert {"max_turns_per_item", "max_prompts_per_request", "max_request_tokens", "max_client_queue_share", "max_queue_tokens",
                "max_id_bytes", "max_message_mb", "max_streams_per_client", "feedback_per_minute", "max_concurrent_rpcs"} <= set(reported)
        for f in reported:
            assert getattr(limits, f) == pytest.approx(getattr(cfg, f)), f
    assert d.num_windows == ref.num_windows > 1 and d.window == ref.window
    assert d.score == pytest.approx(ref.score, abs=1e-5)
    assert not d.truncated and d.num_tokens == ref.num_tokens  # nothing dropped; the winning row's length
    assert ref.num_tokens == (bundle.max_tokens if ref.window < ref.num_windows - 1 else scorer.encoder.overhead + scorer.encoder.window_tail)
    assert (w.score, w.window, w.num_windows) == (d.score, d.window, d.num_windows)
    assert r.truncated and (r.window, r.num_windows) == (0, 1)
    assert [x.id for x in streamed] == [str(i) for i in range(30)]  # windows never reorder a stream
    assert all(x.score == pytest.approx(d.score, abs=1e-5) and x.num_windows == d.num_windows for x in streamed[::3])
    if cd.turn == 2:  # the long turn won: its window is reported
        assert (cd.window, cd.num_windows) == (d.window, d.num_windows)


def test_too_many_windows_is_invalid_argument(tiny_bundle):
    with run_server(tiny_bundle, max_windows=2) as rs:
        channel = grpc.insecure_channel(rs.target)
        stub = guard_pb2_grpc.GuardStub(channel)
        req = pb.ScoreRequest(items=[pb.Item(id="ok", text="hi"), pb.Item(id="long", text=LONG)])
        with pytest.raises(grpc.RpcError) as exc:
            stub.Score(req, timeout=30)
        assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
        details = exc.value.details()
        assert "item 1 (id 'long')" in details and "limit of 2 windows (max_windows)" in details and "REFTGUARD_MAX_WINDOWS" in details
        req.truncation = pb.TRUNCATION_LEFT  # the cap is on windows only
        assert stub.Score(req, timeout=30).decisions[1].truncated
        channel.close()


def test_window_tail_is_configurable(tiny_bundle, scorer):
    (ref,) = scorer.score_texts([LONG])
    with run_server(tiny_bundle, window_tail=0) as rs, GuardClient(rs.target) as c:
        (d,) = c.score([LONG])
    assert d.num_windows == ref.num_windows - 1  # no tail window
    if ref.window < ref.num_windows - 1:  # a full window won with the tail on: the same one wins without it
        assert (d.window, d.score) == (ref.window, pytest.approx(ref.score, abs=1e-5))


def test_invalid_utf8_is_invalid_argument(server):
    channel = grpc.insecure_channel(server.target)
    raw = channel.unary_unary("/reftguard.v1.Guard/Score")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as exc:
        raw(b"\x0a\x05\x12\x03a\xffb", timeout=10)  # items[0].text = b"a\xffb"
    channel.close()
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in exc.value.details()


def test_bad_request_inside_stream_aborts_with_status(server, stub):
    reqs = [pb.ScoreRequest(items=[pb.Item(id="ok", text="fine")]), pb.ScoreRequest()]
    responses = stub.ScoreStream(iter(reqs), timeout=30)
    first = next(responses)
    assert first.decisions[0].id == "ok"
    with pytest.raises(grpc.RpcError) as exc:
        next(responses)
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT


def test_client_disconnect_mid_stream_leaves_server_healthy(server):
    async def run():
        channel = grpc.aio.insecure_channel(server.target)
        stub = guard_pb2_grpc.GuardStub(channel)
        call = stub.ScoreStream()
        for i in range(20):
            await call.write(pb.ScoreRequest(items=[pb.Item(id=f"{i}-{j}", text="a prompt " * 20) for j in range(16)]))
        await call.read()
        call.cancel()
        await channel.close()

    asyncio.run(run())
    with GuardClient(server.target) as c:
        assert c.health()
        assert len(c.score(["still works"])) == 1
    for _ in range(100):
        if server.gs.batcher.queued_items == 0:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert server.gs.batcher.queued_items == 0


def test_labeled_traffic_and_feedback_drive_fp_metrics(tiny_bundle):
    with run_server(tiny_bundle, sources=["ingest"]) as rs, GuardClient(rs.target) as c:
        # threshold -1 flags everything: 6 benign -> 6 FPs; 4 harmful -> 0 misses
        items = [{"id": f"b{i}", "text": f"benign {i}", "label": "benign"} for i in range(6)]
        items += [{"id": f"h{i}", "text": f"harmful {i}", "label": "harmful"} for i in range(4)]
        c.score(items, threshold=-1.0, source="ingest")
        assert rs.value("reftguard_labeled_total", verdict="flag", label="benign") == 6
        assert rs.value("reftguard_decisions_total", verdict="flag", source="ingest") == 10
        assert rs.value("reftguard_flag_rate", source="ingest") == pytest.approx(1.0)
        assert rs.value("reftguard_false_positive_rate") == pytest.approx(1.0)
        assert rs.value("reftguard_miss_rate") == pytest.approx(0.0)
        # threshold 1 allows everything: 2 more benign (TN) and 2 harmful misses
        c.score([{"id": "b", "text": "x", "label": "benign"}] * 2 + [{"id": "h", "text": "y", "label": "harmful"}] * 2, threshold=1.0, source="nope")
        assert rs.value("reftguard_decisions_total", verdict="allow", source="other") == 4
        assert rs.value("reftguard_false_positive_rate") == pytest.approx(6 / 8)
        assert rs.value("reftguard_miss_rate") == pytest.approx(2 / 6)
        # reviewer feedback: a flagged item released as benign adds a false positive
        c.feedback("b0", served="flag", reviewed="benign")
        assert rs.value("reftguard_feedback_total", served="flag", reviewed="benign") == 1
        assert rs.value("reftguard_false_positive_rate") == pytest.approx(7 / 9)
        b = GuardBundle.load(tiny_bundle)
        assert rs.value("reftguard_expected_fpr") == pytest.approx(b.expected_fpr)
        assert rs.value("reftguard_bundle_info", bundle_id=b.bundle_id, backbone=b.backbone, layer=str(b.layer), provider="ort/fp32/cpu") == 1  # engine/precision/device
        assert rs.value("reftguard_serving") == 1
        assert rs.value("reftguard_phase_seconds_count", phase="infer") >= 2
        with pytest.raises(ValueError):
            c.feedback("x", served="maybe", reviewed="benign")


def test_overload_rejects_unary_and_client_retry_loses_nothing(tiny_bundle):
    with run_server(tiny_bundle, max_queue_items=4, max_batch_size=2, max_queue_delay_ms=30.0) as rs:
        async def raw_burst():
            channel = grpc.aio.insecure_channel(rs.target)
            stub = guard_pb2_grpc.GuardStub(channel)
            # distinct texts per request: the score cache would answer repeats without queueing them
            reqs = [pb.ScoreRequest(items=[pb.Item(id=str(i), text=f"p {k} {i}") for i in range(4)]) for k in range(20)]
            out = await asyncio.gather(*(stub.Score(req) for req in reqs), return_exceptions=True)
            await channel.close()
            return out

        out = asyncio.run(raw_burst())
        rejected = [r for r in out if isinstance(r, grpc.aio.AioRpcError)]
        assert rejected and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in rejected)
        assert dict(rejected[0].trailing_metadata()).get("retry-after-ms")
        assert rs.value("reftguard_errors_total", code="RESOURCE_EXHAUSTED") == len(rejected)

        async def retried():
            async with AsyncGuardClient(rs.target) as c:
                res = await asyncio.gather(*(c.score([f"r{k}-{i}" for i in range(4)]) for k in range(20)))
                return res, c.retries

        res, retries = asyncio.run(retried())
        assert retries > 0
        assert [len(r) for r in res] == [4] * 20
        assert sorted(d.id for r in res for d in r) == sorted(str(i) for _ in range(20) for i in range(4))
        # streams wait instead of failing (each request fits the queue: a larger one is INVALID_ARGUMENT)
        with GuardClient(rs.target) as c:
            ids = [d.id for d in c.score_stream([{"id": str(i), "text": "s"} for i in range(200)], batch_size=4, max_in_flight=8)]
        assert ids == [str(i) for i in range(200)]


def test_health_transitions(tiny_bundle):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with run_server(tiny_bundle) as rs:
        ch = grpc.insecure_channel(rs.target)
        h = health_pb2_grpc.HealthStub(ch)
        for svc in ("", "reftguard.v1.Guard"):
            assert h.Check(health_pb2.HealthCheckRequest(service=svc)).status == health_pb2.HealthCheckResponse.SERVING
        rs.call(rs.gs._set_serving(False))
        assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert rs.value("reftguard_serving") == 0
        ch.close()


def test_reflection_lists_services(server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ch = grpc.insecure_channel(server.target)
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in resp.list_services_response.service}
    ch.close()
    assert {"reftguard.v1.Guard", "grpc.health.v1.Health"} <= names


def test_bounded_series_exist_from_start(tiny_bundle):
    with run_server(tiny_bundle, sources=["ingest"]) as rs:
        m = rs.metrics()
        for verdict in ("allow", "flag"):
            for source in ("ingest", "other"):
                assert m[("reftguard_decisions_total", (("source", source), ("verdict", verdict)))] == 0
            for label in ("benign", "harmful"):
                assert m[("reftguard_labeled_total", (("label", label), ("verdict", verdict)))] == 0
        assert m[("reftguard_errors_total", (("code", "RESOURCE_EXHAUSTED"),))] == 0


def test_handlers_are_registered_before_the_server_starts(tiny_bundle, caplog):
    """grpc.aio warned 'Cannot register method handlers once server has started' at every start: the
    Guard service and reflection were added after server.start()."""
    import logging

    with caplog.at_level(logging.WARNING), run_server(tiny_bundle) as rs, GuardClient(rs.target) as c:
        assert len(c.score(["registered in time"])) == 1
    assert not [r for r in caplog.records if "Cannot register method handlers" in r.getMessage()]
