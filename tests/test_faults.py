"""Fault injection: deadlines, inference failures, stalled clients, bundle swaps, server kills, replicas."""
from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import threading
import time

import grpc
import pytest

from reftguard.clients import AsyncGuardClient, GuardClient
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc
from tests.harness import run_server
from tests.test_serve_process import ServeProcess


def test_expired_deadline_work_is_not_run(tiny_bundle):
    with run_server(tiny_bundle, max_queue_delay_ms=400.0, max_batch_size=64) as rs:
        before = rs.value("reftguard_batch_size_sum")
        ch = grpc.insecure_channel(rs.target)
        stub = guard_pb2_grpc.GuardStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Score(pb.ScoreRequest(items=[pb.Item(id="late", text="too slow")]), timeout=0.1)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.6)  # past the batcher's linger: the job must have been dropped, not inferred
        assert rs.value("reftguard_batch_size_sum") == before
        assert rs.gs.batcher.queued_items == 0
        assert len(stub.Score(pb.ScoreRequest(items=[pb.Item(id="ok", text="in time")]), timeout=10).decisions) == 1
        # expired and cancelled calls show up in the error counter (they used to be invisible)
        _eventually(lambda: rs.value("reftguard_errors_total", code="DEADLINE_EXCEEDED") == 1)
        call = stub.Score.future(pb.ScoreRequest(items=[pb.Item(id="gone", text="cancelled while queued")]), timeout=10)
        time.sleep(0.1)  # queued, inside the batcher's linger
        call.cancel()
        _eventually(lambda: rs.value("reftguard_errors_total", code="CANCELLED") == 1)
        assert rs.value("reftguard_batch_size_sum") == before + 1  # only the call that was answered ran
        ch.close()


def _eventually(check, timeout: float = 10.0) -> None:
    """Wait for `check()` (server-side effects of a client action land asynchronously)."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


class FnEngine:
    """An engine from a function (fault injection): swapped in as a new model on the same bundle."""

    provider, threads = "cpu", 1

    def __init__(self, run):
        self.run = run


def swap_run(rs, run) -> None:
    async def swap():
        rs.gs.swap(rs.gs.model.with_engine(FnEngine(run)))

    rs.call(swap())


def test_inference_failure_is_internal_and_isolated(tiny_bundle):
    with run_server(tiny_bundle) as rs:
        real = rs.gs.model.run

        def flaky(input_ids, mask):
            if input_ids.shape[1] > 60:  # "corrupted" batches: the long prompts
                raise RuntimeError("injected: bad input shape")
            return real(input_ids, mask)

        swap_run(rs, flaky)
        with GuardClient(rs.target, max_retries=0) as c:
            assert len(c.score(["short one"])) == 1  # other batches unaffected
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as exc:
                    c.score(["long " * 100])
                assert exc.value.code() == grpc.StatusCode.INTERNAL
                assert "injected" in exc.value.details()
            time.sleep(0.2)
            assert not c.health(), "three failed batches in a row must flip health to NOT_SERVING"
            assert rs.value("reftguard_errors_total", code="INTERNAL") == 3
            swap_run(rs, real)
            assert len(c.score(["recovered"])) == 1
            time.sleep(0.2)
            assert c.health()


def test_stalled_stream_is_bounded_by_flow_control(tiny_bundle):
    with run_server(tiny_bundle) as rs:
        real = rs.gs.model.run

        def slow(input_ids, mask):  # inference slower than the client writes: only flow control bounds memory
            time.sleep(0.05)
            return real(input_ids, mask)

        swap_run(rs, slow)

        async def run():
            ch = grpc.aio.insecure_channel(rs.target)
            call = guard_pb2_grpc.GuardStub(ch).ScoreStream()
            req = pb.ScoreRequest(items=[pb.Item(id=str(i), text="stall " * 200) for i in range(16)])
            rows = 16 * len(rs.gs.model.encoder.encode(["stall " * 200]).ids)  # prompts per request: every window is one
            before = rs.value("reftguard_batch_size_sum")
            written, max_depth = 0, 0
            t_end = time.monotonic() + 3.0
            while time.monotonic() < t_end:  # write as fast as we can for 3 s, never reading a response
                try:
                    await asyncio.wait_for(call.write(req), timeout=1.0)
                except asyncio.TimeoutError:
                    break
                written += 1
                max_depth = max(max_depth, rs.gs.batcher.queued_items)
            processed = (rs.value("reftguard_batch_size_sum") - before) / rows
            call.cancel()
            await ch.close()
            return written, processed, max_depth, req.ByteSize(), rows

        written, processed, max_depth, req_bytes, rows = asyncio.run(run())
        # Unbounded reading would take ~20 KB requests as fast as the client writes them (thousands in
        # 3 s); with flow control the client can only get ahead of the slow backend by the stream's
        # in-flight bound plus what the transport buffers.
        slack = (16 << 20) // req_bytes  # HTTP/2 windows and socket buffers on loopback: up to ~16 MiB
        assert written - processed <= 8 + 1 + slack, (written, processed, slack)
        # at most STREAM_IN_FLIGHT requests waiting in the stream's queue, the one being admitted and the
        # one whose answer the stream awaits (still queued when a request spans several batches)
        assert max_depth <= (8 + 2) * rows, max_depth


def test_bundle_swapped_on_disk_needs_verified_reload(tiny_bundle, tmp_path, data_dir):
    from reftguard.calibration import CalibrateConfig, calibrate

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    with run_server(b) as rs, GuardClient(rs.target) as c:
        first = c.info().bundle_id
        with open(b / "model.onnx", "ab") as f:  # swapped/tampered on disk
            f.write(b"junk")
        assert c.info().bundle_id == first  # not picked up silently
        assert rs.call(rs.gs.reload()) is False  # explicit reload verifies and refuses
        assert c.info().bundle_id == first and len(c.score(["still serving"])) == 1
        shutil.rmtree(b)
        shutil.copytree(tiny_bundle, b)
        calibrate(CalibrateConfig(bundle=str(b), data=[str(data_dir / "dev.jsonl")], target_fpr=0.05))
        assert rs.call(rs.gs.reload()) is True
        info = c.info()
        assert info.bundle_id != first and info.bundle_id == json.loads((b / "guard.json").read_text())["bundle_id"]
        assert rs.value("reftguard_reloads_total", result="refused") == 1
        assert rs.value("reftguard_reloads_total", result="ok") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigkill_mid_stream_client_reconnects_without_loss(tiny_bundle):
    port = _free_port()
    sp = ServeProcess(tiny_bundle, "--port", str(port))
    items = [{"id": f"k{i}", "text": f"kill test prompt {i} " + "y" * (i % 31)} for i in range(1500)]
    got: list[str] = []
    errors: list[BaseException] = []

    def consume():
        try:
            with GuardClient(f"127.0.0.1:{port}", max_retries=40) as c:
                for d in c.score_stream(items, batch_size=10, max_in_flight=4):
                    got.append(d.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    try:
        deadline = time.time() + 60
        while len(got) < 200 and time.time() < deadline:
            time.sleep(0.01)
        sp.proc.kill()
        sp.proc.wait()
        killed_at = len(got)
        sp = ServeProcess(tiny_bundle, "--port", str(port))
        t.join(180)
    finally:
        sp.proc.kill()
    assert not errors, errors
    assert 0 < killed_at < len(items)
    assert got == [it["id"] for it in items]  # nothing lost, nothing twice, in order


def test_two_replicas_one_drained_mid_run(tiny_bundle):
    def served(rs) -> float:
        return sum(rs.value("reftguard_decisions_total", verdict=v, source="default") for v in ("allow", "flag"))

    with run_server(tiny_bundle) as a, run_server(tiny_bundle) as b:
        target = f"ipv4:127.0.0.1:{a.gs.port},127.0.0.1:{b.gs.port}"
        items = [{"id": f"r{i}", "text": f"replica prompt {i} " + "z" * (i % 50)} for i in range(4000)]
        received = [0]

        async def run():
            async with AsyncGuardClient(target, max_retries=40) as c:
                async def stream(k):
                    shard, ids = items[k::4], []
                    async for d in c.score_stream(shard, batch_size=8, max_in_flight=4):
                        ids.append(d.id)
                        received[0] += 1
                    return ids, shard

                task = asyncio.gather(*(stream(k) for k in range(4)))
                while received[0] < 300:
                    await asyncio.sleep(0.01)
                # drain replica a mid-run, on its own loop, without blocking ours
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(a.gs.stop(grace=2.0), a.loop))
                return await task

        results = asyncio.run(run())
        for ids, shard in results:
            assert ids == [it["id"] for it in shard]
        assert served(b) > 0
        assert received[0] == len(items)


def _busy_streams_through_sigterm(sp: ServeProcess, n_streams: int, n_unary: int) -> tuple[list, list]:
    """Keep `n_streams` ScoreStreams writing as fast as flow control allows and `n_unary` unary calls in
    flight, SIGTERM the server once every stream has had an answer; (answers, code, details) of each.
    Sync gRPC: its request thread stops quietly when the server ends a stream, so the status read is
    the server's (grpc.aio can report a write that raced the close as a local INTERNAL error)."""
    text = "The weather is mild and the garden needs watering before the heat. " * 30  # 12 windows of the tiny bundle
    req = pb.ScoreRequest(items=[pb.Item(id=str(i), text=f"{i} {text}") for i in range(64)])  # ~770 prompts, ~100k tokens
    channel = grpc.insecure_channel(sp.target)
    stub = guard_pb2_grpc.GuardStub(channel)
    answered = [0] * n_streams
    streams: list = [None] * n_streams
    unary: list = [None] * n_unary
    started = threading.Event()

    def forever():
        while True:
            yield req

    def stream(k):
        try:
            for resp in stub.ScoreStream(forever(), timeout=120):
                assert len(resp.decisions) == len(req.items)
                answered[k] += 1
                if all(answered):
                    started.set()
            streams[k] = (answered[k], grpc.StatusCode.OK, "")
        except grpc.RpcError as err:
            streams[k] = (answered[k], err.code(), err.details())

    def call(k):
        started.wait(120)
        try:
            unary[k] = (len(stub.Score(req, timeout=60).decisions), grpc.StatusCode.OK, "")
        except grpc.RpcError as err:
            unary[k] = (0, err.code(), err.details())

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(n_streams)]
    threads += [threading.Thread(target=call, args=(k,)) for k in range(n_unary)]
    for t in threads:
        t.start()
    assert started.wait(120), "the streams never got going"
    time.sleep(0.2)  # let the unary calls reach the queue
    sp.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(120)
    channel.close()
    return streams, unary


def test_sigterm_answers_what_streams_read_then_says_resend(tiny_bundle):
    """Under SIGTERM with busy streams the server used to keep scoring everything it had read ahead until
    the grace period ran out, then cut every stream with 'UNAVAILABLE: Cancelling all calls': requests it
    had read got no answer and no 're-send' status, and the log showed 'Task exception was never
    retrieved'. Now streams stop reading, answer what they read, and end with the documented status."""
    # A queue far larger than grace can score (8 requests in flight on each of 6 streams is ~5M tokens,
    # over 10 s of the tiny model), so only the server's read-ahead bound can keep the drain within
    # grace; the unary calls are admitted (not RESOURCE_EXHAUSTED) and are in flight at SIGTERM.
    sp = ServeProcess(tiny_bundle, "--grace", "3", "--max-queue-items", "100000", "--max-queue-tokens", "20000000")
    try:
        streams, unary = _busy_streams_through_sigterm(sp, n_streams=6, n_unary=3)
        assert sp.proc.wait(60) == 0
    finally:
        if sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait()
    log = "".join(sp.lines)
    for answered, code, details in streams:
        assert answered > 0
        assert code == grpc.StatusCode.UNAVAILABLE and "re-send unanswered requests" in details, (code, details, log[-3000:])
    for n, code, details in unary:  # answered, or told to re-send before the grace period ran out
        assert code == grpc.StatusCode.OK or (code == grpc.StatusCode.UNAVAILABLE and "draining" in details), (code, details)
    assert "never retrieved" not in log and "Traceback" not in log, log[-3000:]


def test_queue_depth_shows_what_waits_while_a_batch_runs(tiny_bundle):
    """reftguard_queue_depth used to be set only after a batch finished, so it read 0 while thousands of
    prompts waited; it is read at scrape time now."""
    with run_server(tiny_bundle, max_batch_size=4, max_queue_delay_ms=1.0) as rs:
        real, gate = rs.gs.model.run, threading.Event()

        def held(input_ids, mask):
            gate.wait(20)  # the first batch holds the engine until the test has scraped
            return real(input_ids, mask)

        swap_run(rs, held)
        with GuardClient(rs.target) as c:
            t = threading.Thread(target=lambda: c.score([f"prompt {i}" for i in range(32)]))
            t.start()
            _eventually(lambda: rs.gs.batcher.queued_items == 28)  # 32 admitted, one batch of 4 taken and held
            assert rs.value("reftguard_queue_depth") == 28 and rs.value("reftguard_queue_tokens") > 0
            gate.set()
            t.join(30)
        _eventually(lambda: rs.value("reftguard_queue_depth") == 0)
