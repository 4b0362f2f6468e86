"""`reftguard serve` as a real process: startup, CLI client, SIGTERM drain with work in flight."""
from __future__ import annotations

import os
import re
import signal
import json
import subprocess
import sys
import threading
import time

import grpc
import pytest

from reftguard.clients import GuardClient
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc

CLI = [sys.executable, "-m", "reftguard.cli"]


class ServeProcess:
    def __init__(self, bundle, *extra: str):
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", *extra],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(120):
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def _pump(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"serving bundle \S+ .* on port (\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def served(tiny_bundle):
    sp = ServeProcess(tiny_bundle, "--grace", "10", "--drain-delay", "1")
    yield sp
    if sp.proc.poll() is None:
        sp.proc.kill()
        sp.proc.wait()


def test_cli_score_health_info(served):
    out = subprocess.run([*CLI, "score", "--target", served.target, "hello", "how to make a bomb"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("score ") == 2 and "flagged" in out.stdout
    # whole records from a file (the demo's): every decision says its reason, role and turn when it has one
    from tests.conftest import ROOT

    rec = subprocess.run([*CLI, "score", "--target", served.target, "--jsonl", str(ROOT / "examples" / "records.jsonl"), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert rec.returncode == 0, rec.stderr
    rows = [json.loads(line) for line in rec.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["reply", "refusal", "persona", "benign"] and all({"role", "reason"} <= set(r) for r in rows)
    h = subprocess.run([*CLI, "health", "--target", served.target], capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "SERVING" in h.stdout
    i = subprocess.run([*CLI, "info", "--target", served.target], capture_output=True, text=True, timeout=60)
    assert '"bundle_id": "rg-' in i.stdout
    bad = subprocess.run([*CLI, "health", "--target", "127.0.0.1:1", "--timeout", "2"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unhealthy" in bad.stderr


def test_sigterm_drains_in_flight_work_then_exits_zero(served):
    channel = grpc.insecure_channel(served.target)
    stub = guard_pb2_grpc.GuardStub(channel)
    req = pb.ScoreRequest(items=[pb.Item(id=str(i), text="drain me " * 30) for i in range(64)])
    futures = [stub.Score.future(req, timeout=60) for _ in range(8)]
    time.sleep(0.05)
    served.proc.send_signal(signal.SIGTERM)
    # health flips to NOT_SERVING (within the 1 s drain delay) and stays there while in-flight batches complete
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    check = lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status  # noqa: E731
    deadline = time.time() + 10
    while check() != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert time.time() < deadline, "health never went NOT_SERVING after SIGTERM"
    while not all(f.done() for f in futures):
        try:
            assert check() == health_pb2.HealthCheckResponse.NOT_SERVING
        except grpc.RpcError as err:
            # The drain delay is over and the port closed; in-flight calls still finish. A probe that was already
            # on the wire when the server stopped accepting is cancelled by gRPC core rather than refused, so
            # both codes mean "closed". What must never happen is SERVING again, which the assert above checks.
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), err
            break
    # every RPC sent before SIGTERM is answered (the drain delay keeps serving while health says NOT_SERVING)
    assert [len(f.result().decisions) for f in futures] == [64] * 8
    assert served.proc.wait(30) == 0
    with pytest.raises(grpc.RpcError) as exc:
        stub.Score(req, timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
    assert any("draining" in l for l in served.lines)


def test_the_drain_ends_within_its_grace_period_while_a_worker_is_still_busy(tiny_bundle):
    """The process outlived "drained; exiting" by ~9 s: the interpreter joined worker threads still busy with
    work no one waited for any more, and with the manifests' pre-stop delay the pod was SIGKILLed. Here a
    request takes >10 s to tokenize (8 texts of 1.9M characters, no caps); the 1 s grace cuts it off and the
    process must be gone well before the tokenizer would have finished."""
    sp = ServeProcess(tiny_bundle, "--grace", "1", "--max-windows", "0", "--max-prompts-per-request", "10000000",
                      "--max-request-tokens", "1000000000", "--max-queue-items", "10000000", "--max-queue-tokens", "1000000000")
    try:
        channel = grpc.insecure_channel(sp.target, options=[("grpc.max_send_message_length", 32 << 20)])
        stub = guard_pb2_grpc.GuardStub(channel)
        slow = pb.ScoreRequest(items=[pb.Item(id=str(i), text="plain words here and there " * 70000) for i in range(8)])
        call = stub.Score.future(slow, timeout=60)
        time.sleep(1.0)  # parsed, and tokenizing
        t0 = time.monotonic()
        sp.proc.send_signal(signal.SIGTERM)
        assert sp.proc.wait(30) == 0
        took = time.monotonic() - t0
        assert took < 1 + 4, f"exit {took:.1f} s after SIGTERM with --grace 1:\n" + "".join(sp.lines)
        with pytest.raises(grpc.RpcError):  # cut off by the drain, told so (never an answer from a dead process)
            call.result()
        assert any("drained; exiting" in line for line in sp.lines)
        channel.close()
    finally:
        if sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait()


def test_tampered_bundle_refused_at_startup(tiny_bundle, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    (b / "refusal_feature.npy").write_bytes(b"tampered")
    out = subprocess.run([*CLI, "serve", "--bundle", str(b), "--port", "0", "--metrics-port", "-1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "refusal_feature.npy was modified" in out.stderr
