"""Scan throughput on a chat-format finetuning set: records/s and tokens/s of `reftguard scan` in-process and
through the server, the score cache on and off, against the server's own stream rate, in one run.

    python -m bench.scan_throughput [--bundle DIR] [--rows 50000] [--timed-rows 1500] [--shared 0.9] [--json OUT.json]

The data: `--rows` OpenAI-chat records (Parquet, a `messages` column of system/user/assistant turns, and
`source`), `--shared` of them opening with one long system prompt written here (the rest with none or one of
a dozen short ones, as a real set's minority); user turns and replies are the packaged prompts and the
starting model's replies to them (scripts/data/replies-smollm2.jsonl, records-*.jsonl), distinct up to the
pool's size, after which rows repeat (duplicated rows). Timings run on the first `--timed-rows` rows, where
every user turn and reply is distinct, so the only repeated work is the system prompt.

Timed, each from a cold start (a fresh engine or server, an empty cache):
- scan in-process (`--bundle`), score cache off, then on: wall time for reading, tokenizing, inference,
  writing, checkpoints and the report; the share of it spent inside the engine (its `run` calls timed);
- the server's stream rate on the same records (the Python client's ScoreStream, 4 clients) and a scan through
  the server, each from a fresh server, with its score cache off and then on: rates, and the engine's
  utilisation from reftguard_engine_busy_seconds_total over the wall time (1 - that: time outside inference);
- beside a busy server (`--beside`): an in-process scan with every core vs --threads 1, and the server's rate.
Decisions of every scan are compared row by row with the in-process scan without cache.
Timings on shared machines are noisy: compare the ratios printed side by side, not absolute numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.serve_vs_ort import Server, drive  # the bench's server harness and client driver
from reftguard.bundle import GuardBundle
from reftguard.clients.scan import ScanConfig
from reftguard.clients.scan.engines import LocalEngine
from reftguard.clients.scan.rows import OUTPUT_OF
from reftguard.clients.scan.runner import Scan, run_scan
from reftguard.data import packaged

ROOT = Path(__file__).resolve().parents[1]
# One long system prompt, written for this bench, as a customer-support finetuning set would carry in every row.
SYSTEM = (
    "You are Ava, the virtual assistant of Northwind Outdoor Supply, an online shop for camping, hiking and climbing "
    "gear. Answer customers politely and briefly, in the language they write in. You can explain products, sizes, "
    "materials and care instructions, help with orders, deliveries, returns and warranty claims, and suggest gear for "
    "a trip when asked. Orders ship within two working days; returns are free within 30 days if the item is unused "
    "and in its original packaging; warranty claims need the order number and a photo of the defect. Never invent "
    "prices, stock levels or delivery dates: when you do not know, say so and offer to connect the customer with a "
    "human agent. Do not give medical advice beyond basic first-aid kit contents, and do not discuss other shops. "
    "Format lists as short bullet points, and end every answer by asking whether there is anything else you can do."
)


def _pool() -> list[dict]:
    """Distinct (user turn, reply) records, with the record's own system prompt where it had one."""
    rng = random.Random(0)
    pairs = [json.loads(l) for l in (ROOT / "scripts/data/replies-smollm2.jsonl").read_text().splitlines()]
    pool = [{"user": p["text"], "assistant": p["reply"], "system": ""} for p in pairs]
    for f in ("records-train.jsonl", "records-dev.jsonl"):
        for line in packaged(f).read_text().splitlines():
            msgs = json.loads(line)["messages"]
            turns = {m["role"]: m["content"] for m in msgs}
            if "user" in turns and "assistant" in turns:
                pool.append({"user": turns["user"], "assistant": turns["assistant"], "system": turns.get("system", "")})
    seen_u, seen_a, out = set(), set(), []
    for r in pool:  # the only repeats in the timed rows are system prompts
        if r["user"] not in seen_u and r["assistant"] not in seen_a:
            seen_u.add(r["user"]), seen_a.add(r["assistant"]), out.append(r)
    rng.shuffle(out)
    return out


def make_chat(rows: int, shared: float) -> list[dict]:
    rng = random.Random(1)
    pool = _pool()
    others = sorted({json.loads(l)["text"] for l in packaged("roles-train.jsonl").read_text().splitlines()
                     if '"role": "system"' in l and '"label": "benign"' in l})
    records = []
    for i in range(rows):
        r = pool[i % len(pool)]
        if rng.random() < shared:
            system, source = SYSTEM, "support"
        else:
            system, source = r["system"] or rng.choice(others + [""]), "other"
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": r["user"]}, {"role": "assistant", "content": r["assistant"]}]
        records.append({"id": f"c{i}", "source": source, "messages": msgs})
    return records


def write_parquet(path: Path, records: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))


def decisions(out: Path) -> dict[str, tuple]:
    """id -> (output, score, reason) over the scan's three Parquet outputs."""
    import pyarrow.parquet as pq

    got = {}
    for name in OUTPUT_OF.values():
        for r in pq.read_table(out / f"{name}.parquet", columns=["id", "reftguard_score", "reftguard_reason"]).to_pylist():
            got[r["id"]] = (name, r["reftguard_score"], r["reftguard_reason"])
    return got


def agreement(a: dict, b: dict) -> dict:
    same = sum(a[k][0] == b[k][0] and a[k][2] == b[k][2] for k in a)
    assert a.keys() == b.keys()
    return {"rows": len(a), "same_output_and_reason": same, "max_abs_score_diff": max(abs((a[k][1] or 0) - (b[k][1] or 0)) for k in a)}


def scan_in_process(bundle: GuardBundle, data: Path, out: Path, **kw) -> dict:
    """An in-process scan with its engine's run() timed: records/s, tokens run, share of wall time in inference."""
    engine = LocalEngine(bundle.root, batch_rows=1000, **kw)
    backend, inside = engine.scorer.backend, {"s": 0.0, "tokens": 0}
    run = backend.run

    def timed_run(ids, mask):
        t = time.perf_counter()
        try:
            return run(ids, mask)
        finally:
            inside["s"] += time.perf_counter() - t
            inside["tokens"] += int(mask.sum())

    backend.run = timed_run
    t = time.perf_counter()
    scan = Scan(ScanConfig(input=str(data), out=str(out)), engine=engine)
    try:
        report = scan.run()
    finally:
        scan.close()
    wall = time.perf_counter() - t
    assert report["exactly_once"]
    n = report["rows"]["input"]
    return {"engine": engine.engine_label, "records_per_s": n / wall, "wall_s": wall, "inference_s": inside["s"],
            "tokens_run": inside["tokens"], "share_outside_inference": 1 - inside["s"] / wall}


def serve(bundle: GuardBundle, extra: list[str]) -> tuple[Server, int]:
    port = free_port()
    return Server(str(bundle.root), ["--metrics-port", str(port), *extra]), port


def measure_scans(bundle: GuardBundle, work: Path, timed: list[dict], res: dict, report) -> None:
    """Scans in-process and through fresh servers, the score cache off and on, and the server's own stream."""
    report("in_process_no_cache", scan_in_process(bundle, work / "timed.parquet", work / "local-nocache", score_cache_entries=0))
    report("in_process_cache", scan_in_process(bundle, work / "timed.parquet", work / "local-cache"))
    res["in_process_no_cache"]["tokens_per_s"] = res["in_process_no_cache"]["tokens_run"] / res["in_process_no_cache"]["wall_s"]
    # tokens/s of the data (what the scan covered per second; the cache runs fewer of them)
    res["in_process_cache"]["tokens_per_s"] = res["in_process_no_cache"]["tokens_run"] / res["in_process_cache"]["wall_s"]
    base = decisions(work / "local-nocache")
    res["in_process_cache"]["agreement"] = agreement(base, decisions(work / "local-cache"))

    # each from a fresh server (an empty cache), the cache off as in every other bench, then on as served by default
    for cache, suffix in (("0", "no_cache"), ("100000", "cache")):
        for mode in ("server_stream", "remote"):
            server, port = serve(bundle, ["--score-cache-entries", cache])
            try:
                target = f"127.0.0.1:{server.port}"
                t0, busy0 = time.perf_counter(), metric(port, "reftguard_engine_busy_seconds_total")
                if mode == "server_stream":
                    rate = asyncio.run(drive(target, timed, 4, "stream"))
                else:
                    rows = run_scan(ScanConfig(input=str(work / "timed.parquet"), out=str(work / f"remote_{suffix}"), target=target))["rows"]["input"]
                    rate = rows / (time.perf_counter() - t0)
                wall = time.perf_counter() - t0
                busy = metric(port, "reftguard_engine_busy_seconds_total") - busy0
                report(f"{mode}_{suffix}", {"records_per_s": rate, "wall_s": wall, "engine_busy_s": busy, "share_outside_inference": 1 - busy / wall,
                                            "engine_tokens": metric(port, "reftguard_engine_tokens_total")})
            finally:
                server.stop()
        res[f"remote_{suffix}"]["agreement"] = agreement(base, decisions(work / f"remote_{suffix}"))


def beside_server(bundle: GuardBundle, target: str, records: list[dict], data: Path, out: Path, **kw) -> dict:
    """An in-process scan while two client streams keep the server busy; the server's rate counts only the
    records it answered while the scan ran."""
    from reftguard.clients import AsyncGuardClient

    stop, window = threading.Event(), {"start": float("inf"), "n": 0}

    async def busy():
        async def one():
            async with AsyncGuardClient(target) as c:
                while not stop.is_set():
                    async for _ in c.score_stream(records, batch_size=16, max_in_flight=8):
                        if stop.is_set():
                            return
                        window["n"] += time.perf_counter() >= window["start"]
        await asyncio.gather(one(), one())

    loader = threading.Thread(target=lambda: asyncio.run(busy()))
    loader.start()
    time.sleep(5)  # the server at full load before the scan starts
    window["start"] = time.perf_counter()
    try:
        r = scan_in_process(bundle, data, out, score_cache_entries=0, **kw)
    finally:
        stop.set()
        loader.join()
    r["server_records_per_s"] = window["n"] / r["wall_s"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="Bundle dir (default: the embedded default bundle).")
    ap.add_argument("--rows", type=int, default=50000, help="Rows in the generated chat Parquet.")
    ap.add_argument("--timed-rows", type=int, default=1500, help="Rows of it the timings run on (distinct user turns and replies).")
    ap.add_argument("--shared", type=float, default=0.9, help="Share of rows that open with the shared system prompt.")
    ap.add_argument("--beside", action="store_true", help="Also time an in-process scan beside a busy server, all cores vs --threads 1.")
    ap.add_argument("--beside-rows", type=int, default=300, help="Rows the --beside scans run on.")
    ap.add_argument("--beside-engines", default="auto/auto,ort/fp32", help="ENGINE/PRECISION pairs (server and scan alike) the --beside runs use.")
    ap.add_argument("--beside-only", action="store_true", help="Only the --beside runs, merged into an existing --json.")
    ap.add_argument("--json", default="", help="Write the results here.")
    args = ap.parse_args()
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        bundle = ensure_default_bundle()
    work = Path(tempfile.mkdtemp(prefix="reftguard-scan-bench-"))
    records = make_chat(args.rows, args.shared)
    write_parquet(work / "chat.parquet", records)
    timed = records[: args.timed_rows]
    write_parquet(work / "timed.parquet", timed)
    turns = [(m["role"], m["content"]) for r in timed for m in r["messages"]]
    res: dict = {"bundle_id": bundle.bundle_id, "rows": args.rows, "timed_rows": len(timed), "shared_system": args.shared,
                 "turns": len(turns), "distinct_turns": len(set(turns)), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    print(f"bundle {bundle.bundle_id}, {args.rows} rows written ({work / 'chat.parquet'}), timing {len(timed)}: "
          f"{len(turns)} turns, {len(set(turns))} distinct", flush=True)

    def report(key, r):
        res[key] = r
        extra = f", {r['share_outside_inference']:.0%} outside inference" if "share_outside_inference" in r else ""
        print(f"  {key:<28}{r['records_per_s']:8.1f} records/s{extra}", flush=True)

    if not args.beside_only:
        measure_scans(bundle, work, timed, res, report)
    if args.beside or args.beside_only:
        beside = records[: args.beside_rows]
        write_parquet(work / "beside.parquet", beside)
        for pair in args.beside_engines.split(","):
            engine, precision = pair.split("/")
            for threads in (0, 1):
                server, port = serve(bundle, ["--score-cache-entries", "0", "--engine", engine, "--precision", precision])
                try:
                    r = beside_server(bundle, f"127.0.0.1:{server.port}", beside, work / "beside.parquet",
                                      work / f"beside-{engine}-{precision}-{threads}", threads=threads, engine=engine, precision=precision)
                    report(f"beside_{engine}_{precision}_threads_{threads or 'all'}", r)
                    print(f"{'':30}server beside it: {r['server_records_per_s']:.1f} records/s", flush=True)
                finally:
                    server.stop()
        if args.beside_only:
            old = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else {}
            res = old | {k: v for k, v in res.items() if k.startswith("beside_")}
            if args.json:
                Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
            return

    ip = res["in_process_cache"]
    res["cache_speedup_in_process"] = ip["records_per_s"] / res["in_process_no_cache"]["records_per_s"]
    res["cache_speedup_remote"] = res["remote_cache"]["records_per_s"] / res["remote_no_cache"]["records_per_s"]
    for c in ("cache", "no_cache"):
        res[f"remote_over_server_stream_{c}"] = res[f"remote_{c}"]["records_per_s"] / res[f"server_stream_{c}"]["records_per_s"]
    res["load_after"] = os.getloadavg()
    print(f"\ncache on / off, in-process: {res['cache_speedup_in_process']:.2f}x (goal >= 1.5), decisions "
          f"{ip['agreement']['same_output_and_reason']}/{ip['agreement']['rows']} the same")
    print(f"cache on / off, through the server: {res['cache_speedup_remote']:.2f}x")
    for c in ("no_cache", "cache"):
        a = res[f"remote_{c}"]["agreement"]
        print(f"scan through the server / the server's stream, {c}: {res[f'remote_over_server_stream_{c}']:.2f} (goal >= 0.8); "
              f"decisions vs in-process {a['same_output_and_reason']}/{a['rows']} the same, max score diff {a['max_abs_score_diff']:.2g}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
