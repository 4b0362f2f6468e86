"""A hostile client against `reftguard serve`, one run: three attacks, each beside an honest caller.

For each phase it reports health and Info p99 latency (they share the event loop with request parsing),
and the p50/p99 of a small unary Score from *another* identity (token), against the same measures idle:
  idle     nothing else runs;
  messages items of 1,500,000 chat messages (one user turn and a flood of replies; 15 MB, under the default
           16 MB message cap) from one identity;
  windows  one identity floods requests of 64 long texts of 16 windows each (~1,024 prompts, ~500k tokens);
           refused by max_request_tokens before they are tokenized;
  budget   the same flood cut to just under max_request_tokens (~120k tokens a request), so it is queued;
           again with --max-batch-tokens 4096 (smaller batches: a shorter wait for the one in flight);
  shadow   long items with --shadow-bundle set (a second server), against the same load without one.
Goals (stated here and in the results file, never asserted in tests): health p99 < 0.5 s; the other
identity's unary p99 <= 3x one maximum batch time; with a shadow, p99 within 1.5x of the same load without.

    python -m bench.hostile [--bundle DIR] [--seconds 20] [--out bench/results/hostile.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc

TOKENS = ("attacker", "honest")


def _p(xs: list[float], q: float) -> float | None:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def _channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])


def _stub(port: int, token: str):
    ch = _channel(port)
    return ch, guard_pb2_grpc.GuardStub(ch), (("authorization", f"Bearer {token}"),)


def _measure(port: int, seconds: float, attack=None) -> dict:
    """Run `attack(stop)` in threads while probing health, Info and a 1-item unary Score of another identity."""
    stop = threading.Event()
    attackers = [threading.Thread(target=attack, args=(stop,), daemon=True) for _ in range(2)] if attack else []
    for t in attackers:
        t.start()
    time.sleep(1.0 if attack else 0.0)  # let the attack build up
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ch, stub, md = _stub(port, TOKENS[1])
    health = health_pb2_grpc.HealthStub(ch)
    lat = {"health": [], "info": [], "unary": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, call in (("health", lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=30)),
                           ("info", lambda: stub.Info(pb.InfoRequest(), metadata=md, timeout=30)),
                           ("unary", lambda: stub.Score(pb.ScoreRequest(items=[pb.Item(id="h", text="How do I bake bread?")]), metadata=md, timeout=60))):
            t0 = time.perf_counter()
            try:
                call()
            except grpc.RpcError as err:
                lat.setdefault(f"{name}_errors", []).append(err.code().name)
                continue
            lat[name].append(time.perf_counter() - t0)
        time.sleep(0.05)
    stop.set()
    for t in attackers:
        t.join(120)
    ch.close()
    out = {f"{k}_p{int(q * 100)}_s": _p(v, q) for k, v in lat.items() if not k.endswith("_errors") for q in (0.5, 0.99)}
    out.update({k: {c: v.count(c) for c in set(v)} for k, v in lat.items() if k.endswith("_errors")})
    out["probes"] = len(lat["unary"])
    if attack:
        out["attacker_calls"] = dict(attack.codes)
    return out


def _flood(port: int, make_request):
    """Two attacker threads sending one request, serialized once: building it per call would make the
    bench's own Python (and its GIL) the bottleneck, not the server."""
    payload = make_request().SerializeToString()

    def run(stop: threading.Event):
        ch = _channel(port)
        call = ch.unary_unary("/reftguard.v1.Guard/Score")  # raw bytes in and out
        md = (("authorization", f"Bearer {TOKENS[0]}"),)
        while not stop.is_set():
            try:
                call(payload, metadata=md, timeout=60)
                codes["OK"] += 1
            except grpc.RpcError as err:
                codes[err.code().name] += 1
        ch.close()
    codes: Counter = Counter()
    run.codes = codes  # the attacker's own outcomes
    return run


def _message_flood() -> pb.ScoreRequest:
    msgs = [pb.ChatMessage(role="user", content="hi")] + [pb.ChatMessage(role="gpt", content="x")] * 1_500_000
    return pb.ScoreRequest(items=[pb.Item(id="flood", messages=msgs)])


LONG = "The committee reviewed the quarterly figures and agreed to revisit the budget next month. " * 60


def _window_flood() -> pb.ScoreRequest:
    return pb.ScoreRequest(items=[pb.Item(id=str(i), text=LONG * 6) for i in range(64)])


def _budget_flood() -> pb.ScoreRequest:
    return pb.ScoreRequest(items=[pb.Item(id=str(i), text=LONG * 3) for i in range(28)])


def _long_items() -> pb.ScoreRequest:
    return pb.ScoreRequest(items=[pb.Item(id=str(i), text=LONG) for i in range(4)])


def _max_batch_s(port: int, rows: int = 16) -> float:
    """The fastest of three full batches (rows x ~500 tokens) from an idle server, after a warm-up."""
    ch, stub, md = _stub(port, TOKENS[1])
    full = pb.ScoreRequest(items=[pb.Item(id=str(i), text="word " * 480) for i in range(rows)], truncation=pb.TRUNCATION_RIGHT)
    stub.Score(full, metadata=md, timeout=120)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        stub.Score(full, metadata=md, timeout=120)
        times.append(time.perf_counter() - t0)
    ch.close()
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", default="bench/results/hostile.json")
    args = ap.parse_args(argv)
    from bench.serve_vs_ort import Server

    if args.bundle:
        bundle = args.bundle
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        bundle = str(ensure_default_bundle().root)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "tokens").write_text("\n".join(TOKENS) + "\n")
    shadow = tmp / "shadow"
    shutil.copytree(bundle, shadow)
    common = ["--auth-token-file", str(tmp / "tokens"), "--feedback-token", "reviewer"]
    result: dict = {"bundle": Path(bundle).name, "seconds_per_phase": args.seconds,
                    "goals": {"health_p99_s": "< 0.5", "other_identity_unary_p99": "<= 3x one maximum batch time",
                              "shadow": "unary p99 within 1.5x of the same load without a shadow"}}
    server = Server(bundle, common)
    try:
        result["max_batch_s"] = _max_batch_s(server.port)
        result["idle"] = _measure(server.port, args.seconds)
        result["messages"] = _measure(server.port, args.seconds, _flood(server.port, _message_flood))
        result["windows"] = _measure(server.port, args.seconds, _flood(server.port, _window_flood))
        result["budget"] = _measure(server.port, args.seconds, _flood(server.port, _budget_flood))
        result["long_no_shadow"] = _measure(server.port, args.seconds, _flood(server.port, _long_items))
    finally:
        server.stop()
    server = Server(bundle, common + ["--max-batch-tokens", "4096"])
    try:
        result["max_batch_s_4096"] = _max_batch_s(server.port, rows=8)
        result["budget_batch_4096"] = _measure(server.port, args.seconds, _flood(server.port, _budget_flood))
    finally:
        server.stop()
    server = Server(bundle, common + ["--shadow-bundle", str(shadow)])
    try:
        result["long_with_shadow"] = _measure(server.port, args.seconds, _flood(server.port, _long_items))
    finally:
        server.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    base, sh = result["long_no_shadow"].get("unary_p99_s"), result["long_with_shadow"].get("unary_p99_s")
    result["shadow_over_no_shadow_p99"] = sh / base if base and sh else None
    result["met"] = {
        "health_p99": {k: (result[k].get("health_p99_s") or 0) < 0.5 for k in ("messages", "windows", "long_with_shadow")},
        "other_identity_unary_p99": {**{k: (result[k].get("unary_p99_s") or 1e9) <= 3 * result["max_batch_s"] for k in ("messages", "windows", "budget")},
                                     "budget_batch_4096": (result["budget_batch_4096"].get("unary_p99_s") or 1e9) <= 3 * result["max_batch_s_4096"]},
        "shadow": (result["shadow_over_no_shadow_p99"] or 1e9) <= 1.5,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for k in ("idle", "messages", "windows", "budget", "budget_batch_4096", "long_no_shadow", "long_with_shadow"):
        r = result[k]
        print(f"{k:17} health p99 {r.get('health_p99_s')}  info p99 {r.get('info_p99_s')}  other-identity unary p50 "
              f"{r.get('unary_p50_s')} p99 {r.get('unary_p99_s')}  probes {r['probes']}")
    print(f"one max batch {result['max_batch_s']:.2f} s ({result['max_batch_s_4096']:.2f} s at 4096 tokens); shadow / no shadow unary p99: {result['shadow_over_no_shadow_p99']}; met {result['met']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
