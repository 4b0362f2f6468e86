"""Scan throughput: `reftguard scan` rows/s on a JSONL of packaged prompts, in-process and remote,
against the bare ORT loop of bench/serve_vs_ort.py, in one run.

    python -m bench.scan_throughput [--bundle DIR] [--rows 20000] [--quick] [--json OUT.json]

- bare ORT: pre-tokenized, length-sorted batches straight into the session, at the best batch size
  (tokenizing is not timed: this is the ceiling a scan can approach);
- in-process: `run_scan(..., bundle=DIR)` over the JSONL, wall time including reading, tokenizing,
  writing the three outputs, checkpoints and the report;
- remote: `reftguard serve` in a subprocess and `run_scan(..., target=...)` through ScoreStream.
Timings on shared machines are noisy: compare the ratios printed side by side, not absolute numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from bench.serve_vs_ort import Server, bench_bare, engine_scorer  # the same bare-engine loop and server harness
from reftguard.bundle import GuardBundle
from reftguard.clients.scan import ScanConfig, run_scan
from reftguard.data import packaged

FILES = ("guard-dev.jsonl", "handwritten-dev.jsonl", "guard-train.jsonl", "guard-train-extra.jsonl")


def make_jsonl(path: Path, n: int) -> list[str]:
    rows = [json.loads(l) for f in FILES for l in packaged(f).read_text().splitlines()]
    # shuffled (fixed seed) so that the prefix timed in the bare ORT loop has the same length mix as the file
    random.Random(0).shuffle(rows)
    texts = []
    with open(path, "w") as f:
        for i in range(n):
            r = rows[i % len(rows)]
            f.write(json.dumps({"id": f"r{i}", "text": r["text"], "source": r["source"]}) + "\n")
            texts.append(r["text"])
    return texts


def timed_scan(cfg: ScanConfig) -> tuple[float, dict]:
    t = time.perf_counter()
    report = run_scan(cfg)
    dt = time.perf_counter() - t
    assert report["exactly_once"] and report["rows"]["input"] == report["rows"]["output"]
    return report["rows"]["input"] / dt, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="Bundle dir (default: the embedded default bundle).")
    ap.add_argument("--rows", type=int, default=20000, help="Rows in the generated JSONL.")
    ap.add_argument("--ort-rows", type=int, default=4096, help="Rows of it timed in the bare ORT loop (a representative prefix).")
    ap.add_argument("--quick", action="store_true", help="2000 rows, ORT on 1024, two batch sizes.")
    ap.add_argument("--batch-size", type=int, default=32, help="Items per ScoreStream request.")
    ap.add_argument("--concurrency", type=int, default=8, help="Requests in flight on the stream.")
    ap.add_argument("--json", default="", help="Write the results here.")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.ort_rows = min(args.rows, 2000), min(args.ort_rows, 1024)
    if args.bundle:
        bundle = GuardBundle.load(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle as default_bundle

        bundle = default_bundle()
    work = Path(tempfile.mkdtemp(prefix="reftguard-scan-bench-"))
    texts = make_jsonl(work / "in.jsonl", args.rows)
    print(f"bundle {bundle.bundle_id} (layer {bundle.layer}), {args.rows} rows, {os.cpu_count()} cpus, in {work}")
    res: dict = {"bundle_id": bundle.bundle_id, "backbone": bundle.backbone, "layer": bundle.layer, "rows": args.rows,
                 "batch_size": args.batch_size, "concurrency": args.concurrency}
    scorer = engine_scorer(bundle, "ort/fp32")
    ort = bench_bare(scorer, scorer.encoder.encode(texts[: args.ort_rows], "right").ids, (16, 32) if args.quick else (8, 16, 32, 64))
    res["ort_rows_per_s"], res["ort_best_batch"] = ort["prompts_per_s"], ort["batch_size"]
    rate, _ = timed_scan(ScanConfig(input=str(work / "in.jsonl"), out=str(work / "local"), bundle=str(bundle.root)))
    res["in_process_rows_per_s"] = rate
    print(f"  scan in-process   : {rate:8.1f} rows/s")
    server = Server(str(bundle.root), ["--max-batch-size", str(max(args.batch_size, ort["batch_size"]))])
    try:
        target = f"127.0.0.1:{server.port}"
        rate, _ = timed_scan(ScanConfig(input=str(work / "in.jsonl"), out=str(work / "remote"), target=target,
                                        batch_size=args.batch_size, in_flight=args.concurrency))
    finally:
        server.stop()
    res["remote_rows_per_s"] = rate
    print(f"  scan remote       : {rate:8.1f} rows/s")
    res["in_process_over_ort"] = res["in_process_rows_per_s"] / res["ort_rows_per_s"]
    res["remote_over_ort"] = res["remote_rows_per_s"] / res["ort_rows_per_s"]
    rows = [("bare ORT", "ort", f"(batch {res['ort_best_batch']})"), ("in-process", "in_process", ""), ("remote", "remote", "(target >= 0.85)")]
    print(f"\n{'path':<14}{'rows/s':>10}{'x bare ORT':>12}")
    for label, key, note in rows:
        rate = res[f"{key}_rows_per_s"]
        print(f"{label:<14}{rate:>10.1f}{rate / res['ort_rows_per_s']:>12.2f}   {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
