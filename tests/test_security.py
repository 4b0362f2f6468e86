"""TLS, mutual TLS and bearer-token auth over real sockets."""
from __future__ import annotations

import argparse

import grpc
import pytest

from reftguard.bundle import GuardBundle
from reftguard.clients import ClientConfig, GuardClient
from reftguard.config import add_dataclass_args
from reftguard.server.config import ServerConfig
from tests.certs import make_pki
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc
from tests.harness import run_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _target(rs) -> str:
    return f"localhost:{rs.gs.port}"


def test_token_auth(tiny_bundle, tmp_path, monkeypatch):
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotated\nold-token\nnew-token\n")
    with run_server(tiny_bundle, auth_token_file=str(tokens)) as rs:
        with GuardClient(rs.target, token="new-token") as ok:
            assert len(ok.score(["hello"])) == 1
        with GuardClient(rs.target, token="old-token") as ok2:
            assert len(ok2.score(["hello"])) == 1
        for bad in ("wrong", None):
            with GuardClient(rs.target, token=bad, max_retries=0) as c:
                with pytest.raises(grpc.RpcError) as exc:
                    c.score(["hello"])
                assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as exc:
                    list(c.score_stream(["a", "b"]))
                assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert c.health()  # exempt by default
        # 2 unary + 2 stream rejections; a stream whose rejection raced its own writes is confirmed by
        # one unary probe (see AsyncGuardClient.score_stream), which is rejected and counted too.
        assert 4 <= rs.value("reftguard_errors_total", code="UNAUTHENTICATED") <= 6
        assert "wrong" not in rs.metrics_text()


def test_token_never_shown_in_help(monkeypatch):
    monkeypatch.setenv("REFTGUARD_AUTH_TOKEN", "s3cret-value")
    monkeypatch.setenv("REFTGUARD_FEEDBACK_TOKEN", "rev1ewer-value")
    p = argparse.ArgumentParser()
    add_dataclass_args(p, ServerConfig)
    assert "s3cret-value" not in p.format_help() and "rev1ewer-value" not in p.format_help()
    ns = p.parse_args([])
    assert (ns.auth_token, ns.feedback_token) == ("s3cret-value", "rev1ewer-value")


def test_health_can_require_token(tiny_bundle):
    with run_server(tiny_bundle, auth_token="t", auth_exempt_health=False) as rs:
        with GuardClient(rs.target, max_retries=0) as c:
            with pytest.raises(grpc.RpcError) as exc:
                c.health()
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tls_and_mtls(tiny_bundle, pki):
    with run_server(tiny_bundle, tls_cert=pki["server_cert"], tls_key=pki["server_key"]) as rs:
        with GuardClient(ClientConfig(target=_target(rs), tls_ca=pki["ca"])) as c:
            assert len(c.score(["over tls"])) == 1
        with GuardClient(_target(rs), max_retries=0, timeout=5) as plain:
            with pytest.raises(grpc.RpcError) as exc:
                plain.score(["plaintext to a TLS port"])
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    with run_server(tiny_bundle, tls_cert=pki["server_cert"], tls_key=pki["server_key"], tls_client_ca=pki["ca"]) as rs:
        with GuardClient(ClientConfig(target=_target(rs), tls_ca=pki["ca"], tls_cert=pki["client_cert"], tls_key=pki["client_key"])) as c:
            assert len(c.score(["mutual tls"])) == 1
        # the certificate subject names the caller (it used to be the peer IP, shared by every client on a host)
        from reftguard.server.auth import cert_subject

        class Ctx:
            def __init__(self, names):
                self.names = names

            def auth_context(self):
                return {"x509_common_name": self.names}

        assert cert_subject(Ctx([b"client2"])) == "client2" and cert_subject(Ctx([])) == ""
        assert rs.gs.servicer.auth.identify((), "ipv4:127.0.0.1:5", "client").identity == "cert:client"
        seen = []
        real = rs.gs.servicer._caller
        rs.gs.servicer._caller = lambda context: seen.append(real(context)) or seen[-1]
        try:
            for who in ("client", "client2"):
                with GuardClient(ClientConfig(target=_target(rs), tls_ca=pki["ca"], tls_cert=pki[f"{who}_cert"], tls_key=pki[f"{who}_key"])) as c:
                    c.score(["who am i"])
        finally:
            rs.gs.servicer._caller = real
        assert {c.identity for c in seen} == {"cert:client", "cert:client2"}
        with GuardClient(ClientConfig(target=_target(rs), tls_ca=pki["ca"], max_retries=0, timeout=5)) as no_cert:
            with pytest.raises(grpc.RpcError) as exc:
                no_cert.score(["no client cert"])
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_stream_limit_per_client(tiny_bundle):
    import asyncio

    from reftguard.v1 import guard_pb2 as pb
    from reftguard.v1 import guard_pb2_grpc

    with run_server(tiny_bundle, max_streams_per_client=2) as rs:
        async def run():
            ch = grpc.aio.insecure_channel(rs.target)
            stub = guard_pb2_grpc.GuardStub(ch)
            calls = [stub.ScoreStream() for _ in range(2)]
            codes = []
            for c in calls:  # two streams held open, each answered
                await c.write(pb.ScoreRequest(items=[pb.Item(id="x", text="hi")]))
                await c.read()
                codes.append(grpc.StatusCode.OK)
            # The third is refused before it reads anything; we send nothing on it, so no write can
            # race the server's close and mask the status.
            third = stub.ScoreStream()
            calls.append(third)
            try:
                await third.read()
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as e:
                codes.append(e.code())
                assert "concurrent streams" in e.details()
            for c in calls:
                c.cancel()
            await ch.close()
            return codes

        codes = asyncio.run(run())
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 1 and codes.count(grpc.StatusCode.OK) == 2


# -- issue 16: what a hostile client found ------------------------------------------------------


def _raw_stub(rs):
    channel = grpc.insecure_channel(rs.target, options=[("grpc.max_send_message_length", 64 << 20)])
    return channel, guard_pb2_grpc.GuardStub(channel)


def _refused(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call(*args, **kw)
    return exc.value


def test_one_item_cannot_carry_unbounded_prompts(tiny_bundle):
    """One item with 10,000 chat messages used to queue 10,000 prompts: the caps count messages of every
    role per item (a flood of `gpt` replies used to pass uncounted) and prompts (messages, then windows)
    per request, from the counts alone, and name the limit."""
    with run_server(tiny_bundle, max_turns_per_item=64, max_prompts_per_request=100, max_windows=0) as rs:
        channel, stub = _raw_stub(rs)
        before = rs.value("reftguard_batch_size_sum")
        m = [pb.ChatMessage(role="user", content=f"hi {i}") for i in range(10000)]
        err = _refused(stub.Score, pb.ScoreRequest(items=[pb.Item(id="big", messages=m)]), timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "item 0 has more than 64 messages" in err.details() and "the limit is 64" in err.details()
        assert "REFTGUARD_MAX_TURNS_PER_ITEM" in err.details()
        # one user turn carrying 100,000 replies: refused before any message is read (the tiny bundle scores user turns only)
        flood = [pb.ChatMessage(role="user", content="hi")] + [pb.ChatMessage(role="gpt", content="x")] * 100_000
        err = _refused(stub.Score, pb.ScoreRequest(items=[pb.Item(id="flood", messages=flood)]), timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "item 0 has more than 64 messages" in err.details()
        # many items, each under the per-item cap, add up to too many prompts
        many = [pb.Item(id=str(k), messages=m[:60]) for k in range(2)]
        err = _refused(stub.Score, pb.ScoreRequest(items=many), timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "REFTGUARD_MAX_PROMPTS_PER_REQUEST" in err.details()
        # windows are prompts too: one long text over 100 windows is refused once encoded
        err = _refused(stub.Score, pb.ScoreRequest(items=[pb.Item(id="long", text="word " * 20000)]), timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "REFTGUARD_MAX_PROMPTS_PER_REQUEST" in err.details()
        assert "windows" in err.details()
        # a stream is held to the same caps per request
        err = _refused(lambda: list(stub.ScoreStream(iter([pb.ScoreRequest(items=[pb.Item(id="big", messages=m)])]), timeout=20)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "REFTGUARD_MAX_TURNS_PER_ITEM" in err.details()
        assert rs.value("reftguard_batch_size_sum") == before, "nothing of a refused request may be scored"
        assert rs.gs.batcher.queued_items == 0
        ok = stub.Score(pb.ScoreRequest(items=[pb.Item(id="chat", messages=m[:64])]), timeout=20)
        assert ok.decisions[0].id == "chat"
        channel.close()


def test_a_request_over_its_token_budget_is_refused_before_or_while_tokenizing(tiny_bundle):
    """One request of 64 items x 16 windows queued 486k tokens (10 min of CPU) and tokenizing it took
    10-21 s before any cap was checked. max_request_tokens bounds its cost: from the texts' lengths
    before any tokenizing when they prove it, else exactly while encoding, and names the setting."""
    with run_server(tiny_bundle, max_request_tokens=3000, max_windows=0, max_prompts_per_request=100_000) as rs:
        channel, stub = _raw_stub(rs)
        encoder = rs.gs.model.encoder
        real, chunks = encoder._encode, []
        encoder._encode = lambda texts, truncation: chunks.append(len(texts)) or real(texts, truncation)
        try:
            huge = pb.ScoreRequest(items=[pb.Item(id=str(i), text="x" * 400_000) for i in range(4)])
            err = _refused(stub.Score, huge, timeout=20)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "REFTGUARD_MAX_REQUEST_TOKENS" in err.details()
            assert "at least" in err.details() and "the limit is 3000" in err.details() and chunks == []  # never tokenized
            # lengths that do not prove it: found after the first chunk of 32 texts, the rest never tokenized
            medium = pb.ScoreRequest(items=[pb.Item(id=str(i), text="plain words here " * 40) for i in range(40)])
            err = _refused(stub.Score, medium, timeout=20)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_request_tokens" in err.details()
            assert chunks == [32]
        finally:
            encoder._encode = real
        assert rs.gs.batcher.queued_items == 0
        assert len(stub.Score(pb.ScoreRequest(items=medium.items[:4]), timeout=20).decisions) == 4
        channel.close()


def test_request_larger_than_the_whole_queue_is_refused_not_admitted(tiny_bundle):
    """An empty queue used to admit a request of any size; now the queue bounds hold for the first
    request too, and a request that could never fit is INVALID_ARGUMENT (retrying cannot help)."""
    with run_server(tiny_bundle, max_queue_items=8, max_batch_size=4) as rs:
        channel, stub = _raw_stub(rs)
        before = rs.value("reftguard_batch_size_sum")
        req = pb.ScoreRequest(items=[pb.Item(id=str(i), text=f"prompt {i}") for i in range(9)])
        for call in (lambda: stub.Score(req, timeout=20), lambda: list(stub.ScoreStream(iter([req]), timeout=20))):
            err = _refused(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert "9 prompts" in err.details() and "REFTGUARD_MAX_QUEUE_ITEMS" in err.details()
        assert rs.value("reftguard_batch_size_sum") == before and rs.gs.batcher.queued_items == 0
        assert len(stub.Score(pb.ScoreRequest(items=req.items[:8]), timeout=20).decisions) == 8
        channel.close()
    with run_server(tiny_bundle, max_queue_tokens=200) as rs:
        channel, stub = _raw_stub(rs)
        err = _refused(stub.Score, pb.ScoreRequest(items=[pb.Item(id=str(i), text=f"a few words {i} " * 5) for i in range(12)]), timeout=20)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "REFTGUARD_MAX_QUEUE_TOKENS" in err.details()
        channel.close()


def _streams(target: str, metadata: list) -> list[tuple[grpc.StatusCode, str]]:
    """Open one ScoreStream per metadata entry, all held open together: OK for each stream that answered
    its first request, else its status. (Sync gRPC: a request write that races the server refusing the
    stream is dropped quietly, so the status read is the server's.)"""
    import threading

    channel = grpc.insecure_channel(target)
    stub = guard_pb2_grpc.GuardStub(channel)
    hold = threading.Event()

    def requests():
        yield pb.ScoreRequest(items=[pb.Item(id="x", text="hi")])
        hold.wait(60)

    calls, out = [], []
    for md in metadata:
        calls.append(stub.ScoreStream(requests(), metadata=md, timeout=60))
        try:
            next(calls[-1])
            out.append((grpc.StatusCode.OK, ""))
        except grpc.RpcError as err:
            out.append((err.code(), err.details()))
    hold.set()
    for c in calls:
        c.cancel()
    channel.close()
    return out


def test_second_authorization_header_cannot_bypass_the_stream_limit(tiny_bundle):
    """client_identity read the first `authorization` value and the interceptor accepted the last, so a
    random first token gave every stream a new identity. Two headers are now refused, and the identity
    is the verified token (auth on) or the peer's address (auth off), never a header the client chose."""
    with run_server(tiny_bundle, auth_token="secret1", max_streams_per_client=4) as rs:
        two = [[("authorization", f"Bearer rnd{k}"), ("authorization", "Bearer secret1")] for k in range(8)]
        out = _streams(rs.target, two)
        assert {code for code, _ in out} == {grpc.StatusCode.UNAUTHENTICATED}, out
        assert all("one 'authorization' header" in details for _, details in out), out
        one = [[("authorization", "Bearer secret1")]] * 8
        codes = [code for code, _ in _streams(rs.target, one)]
        assert codes.count(grpc.StatusCode.OK) == 4 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4, codes
    with run_server(tiny_bundle, max_streams_per_client=4) as rs:  # auth off: a made-up header is no identity
        codes = [code for code, _ in _streams(rs.target, [[("authorization", f"Bearer rnd{k}")] for k in range(8)])]
        assert codes.count(grpc.StatusCode.OK) == 4 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4, codes
        (dup,) = _streams(rs.target, [[("authorization", "Bearer a"), ("authorization", "Bearer b")]])
        assert dup[0] == grpc.StatusCode.UNAUTHENTICATED, dup
        channel, stub = _raw_stub(rs)
        err = _refused(stub.Score, pb.ScoreRequest(items=[pb.Item(id="x", text="hi")]), timeout=20,
                       metadata=[("authorization", "Bearer a"), ("authorization", "Bearer b")])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "one 'authorization' header" in err.details()
        channel.close()


FORGED = "\n2026-12-01 12:00:00,000 INFO reftguard.server: FORGED"


def test_client_strings_cannot_forge_log_lines_and_ids_are_bounded(tiny_bundle, caplog):
    """Feedback(id='x'*2**20 + newline + a fake record) wrote a 1 MB log line and a forged one, and Score
    echoed a 1 MB id. Ids are now capped (max_id_bytes) and every client string is logged as a short repr."""
    import logging

    with run_server(tiny_bundle) as rs, caplog.at_level(logging.INFO, logger="reftguard"):
        channel, stub = _raw_stub(rs)
        for call, req in ((stub.Feedback, pb.FeedbackRequest(id="x" * 2**20 + FORGED, served=pb.FLAG, reviewed=pb.BENIGN)),
                          (stub.Score, pb.ScoreRequest(items=[pb.Item(id="ok", text="hi"), pb.Item(id="i" * 2**20, text="hi")]))):
            err = _refused(call, req, timeout=20)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            assert "REFTGUARD_MAX_ID_BYTES" in err.details() and len(err.details()) < 1000, err.details()[:300]
        assert stub.Score(pb.ScoreRequest(items=[pb.Item(id="i" * 512, text="hi")]), timeout=20).decisions[0].id == "i" * 512
        stub.Feedback(pb.FeedbackRequest(id="a" + FORGED, served=pb.FLAG, reviewed=pb.BENIGN, reviewer="r" * 5000 + FORGED,
                                         source="s" + FORGED), timeout=20)
        channel.close()
    lines = [r.getMessage() for r in caplog.records]
    feedback = [m for m in lines if m.startswith("feedback ")]
    assert len(feedback) == 1, lines
    assert "'a\\n2026-12-01" in feedback[0] and "'s\\n2026-12-01" in feedback[0]  # shown as a repr, not a new line
    for m in lines:
        assert "\n" not in m and len(m) < 2000, m[:300]


def test_feedback_needs_the_reviewer_credential_and_is_rate_limited(tiny_bundle, tmp_path):
    """Any client could call Feedback and so move the false-positive and miss rates at will. With a
    reviewer credential configured only it may (others get PERMISSION_DENIED), and each identity has a
    per-minute Feedback budget (RESOURCE_EXHAUSTED with a retry hint beyond it)."""
    reviewers = tmp_path / "reviewers"
    reviewers.write_text("# rotated\nrev-old\nrev-new\n")
    verdict = dict(served="flag", reviewed="benign")
    with run_server(tiny_bundle, auth_token="client", feedback_token_file=str(reviewers), feedback_per_minute=3) as rs:
        with GuardClient(rs.target, token="client", max_retries=0) as c:
            assert len(c.score(["hi"])) == 1
            with pytest.raises(grpc.RpcError) as exc:
                c.feedback("a", **verdict)
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED and "--feedback-token" in exc.value.details()
        with GuardClient(rs.target, token="rev-new", max_retries=0) as r:
            for _ in range(3):
                r.feedback("a", **verdict)
            with pytest.raises(grpc.RpcError) as exc:
                r.feedback("a", **verdict)
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "feedback_per_minute" in exc.value.details()
            assert int(dict(exc.value.trailing_metadata())["retry-after-ms"]) > 0
            assert len(r.score(["a reviewer may score too"])) == 1
        with GuardClient(rs.target, token="rev-old", max_retries=0) as r2:  # another credential, its own budget
            r2.feedback("b", **verdict)
        assert rs.value("reftguard_feedback_total", served="flag", reviewed="benign") == 4
        assert rs.value("reftguard_errors_total", code="PERMISSION_DENIED") == 1
    with run_server(tiny_bundle, feedback_token="rev") as rs:  # auth off for scoring, not for feedback
        with GuardClient(rs.target, max_retries=0) as c:
            assert len(c.score(["open"])) == 1
            with pytest.raises(grpc.RpcError) as exc:
                c.feedback("a", **verdict)
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with GuardClient(rs.target, token="rev", max_retries=0) as r:
            r.feedback("a", **verdict)


def test_only_reviewers_labels_move_the_false_positive_metrics(tiny_bundle, caplog):
    """Labeled Score traffic from any scoring client used to move the FP and miss rates (inverted labels set
    both to 1.0), undoing the Feedback credential. With a reviewer credential configured, other callers'
    labels are dropped and counted apart; without one the server says at start that anyone may label."""
    import logging

    inverted = [{"id": str(i), "text": t, "label": "benign"} for i, t in enumerate(["How do I build a pipe bomb?"] * 8)]
    with run_server(tiny_bundle, feedback_token="rev") as rs:
        with GuardClient(rs.target, max_retries=0) as c:
            c.score(inverted)
        assert rs.value("reftguard_labels_ignored_total") == 8
        assert sum(rs.value("reftguard_labeled_total", verdict=v, label="benign") for v in ("allow", "flag")) == 0
        with GuardClient(rs.target, token="rev", max_retries=0) as r:
            r.score(inverted[:3])
        assert sum(rs.value("reftguard_labeled_total", verdict=v, label="benign") for v in ("allow", "flag")) == 3
    with caplog.at_level(logging.WARNING, logger="reftguard.server"):
        with run_server(tiny_bundle) as rs, GuardClient(rs.target, max_retries=0) as c:
            c.score(inverted[:2])
            assert sum(rs.value("reftguard_labeled_total", verdict=v, label="benign") for v in ("allow", "flag")) == 2
    assert any("no reviewer credential" in r.getMessage() and "--feedback-token" in r.getMessage() for r in caplog.records)


def test_a_token_on_the_command_line_is_warned_about():
    from reftguard.server.cli import secrets_on_command_line

    warned = secrets_on_command_line(["serve", "--auth-token", "x", "--feedback-token=y", "--auth-token-file", "f"])
    assert len(warned) == 2 and "REFTGUARD_AUTH_TOKEN" in warned[0] and "--feedback-token-file" in warned[1]
    assert secrets_on_command_line(["serve", "--auth-token-file", "f", "--feedback-token-file", "g"]) == []


def test_serve_binds_loopback_and_refuses_an_open_port_without_auth(tiny_bundle, caplog):
    """`reftguard serve` bound 0.0.0.0 with auth off by default. It now binds loopback; on any other
    address it needs a token or mutual TLS, or an explicit --insecure-no-auth (then it warns)."""
    import logging
    import subprocess
    import sys

    from reftguard.server.auth import check_exposure

    assert ServerConfig().host == "127.0.0.1" and ServerConfig().metrics_host == "127.0.0.1"
    out = subprocess.run([sys.executable, "-m", "reftguard.cli", "serve", "--bundle", str(tiny_bundle), "--host", "0.0.0.0",
                          "--port", "0", "--metrics-port", "-1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "refusing to serve gRPC on 0.0.0.0" in out.stderr and "--insecure-no-auth" in out.stderr, out.stderr
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(ServerConfig(host=host), tokens=False)
    check_exposure(ServerConfig(host="0.0.0.0"), tokens=True)
    check_exposure(ServerConfig(host="10.1.2.3", tls_cert="c", tls_key="k", tls_client_ca="ca"), tokens=False)
    with pytest.raises(ValueError, match="REFTGUARD_AUTH_TOKEN"):
        check_exposure(ServerConfig(host="::"), tokens=False)
    with pytest.raises(ValueError):
        check_exposure(ServerConfig(host="guard.internal"), tokens=False)  # a name may resolve anywhere
    with caplog.at_level(logging.WARNING, logger="reftguard"):
        check_exposure(ServerConfig(host="0.0.0.0", insecure_no_auth=True), tokens=False)
    assert any("unauthenticated" in r.getMessage() for r in caplog.records)


def test_only_reviewers_see_the_shadow_bundle(tiny_bundle, tmp_path):
    import shutil

    shadow = tmp_path / "candidate"
    shutil.copytree(tiny_bundle, shadow)
    with run_server(tiny_bundle, shadow_bundle=str(shadow), feedback_token="rev") as rs:
        with GuardClient(rs.target, max_retries=0) as c:
            info = c.info()
            assert not info.HasField("shadow") and info.shadow_fraction == 0 and info.active.bundle_id
        with GuardClient(rs.target, token="rev", max_retries=0) as r:
            assert r.info().shadow.bundle_id == GuardBundle.load(shadow).bundle_id
