"""`reftguard scan INPUT --out DIR`: the command line over `runner.Scan`."""
from __future__ import annotations

import argparse
import sys

import grpc

from reftguard.clients.cli import client_config, target_args
from reftguard.clients.requests import TRUNCATION_CHOICES
from reftguard.clients.scan.formats import FORMATS


def scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="JSONL / CSV / Parquet file, or an HF save_to_disk folder.")
    p.add_argument("--out", required=True, help="Output folder: allowed.*, flagged.*, errors.*, report.json, report.html; also the checkpoint.")
    target_args(p)
    p.add_argument("--bundle", default=None, help="Score in this process with this guard bundle (no server); otherwise --target is used.")
    p.add_argument("--compare-bundle", default=None, help="With --bundle: score every row with both bundles and write compare.json "
                   "(disagreement table, flag, FP and miss rates) and flips.jsonl (the rows whose verdict changes) instead of a scan.")
    p.add_argument("--format", choices=sorted(FORMATS), default=None, help="Input format (default: from the suffix, or an HF folder's files).")
    p.add_argument("--split", default=None, help="Split to scan when the HF folder holds a DatasetDict.")
    p.add_argument("--text-field", default=None, help="Field holding a plain prompt; default: auto-detect messages (OpenAI), conversations (ShareGPT), text or prompt.")
    p.add_argument("--source-field", default="source", help="Field whose values split the report's flag rate (default: source).")
    p.add_argument("--threshold", type=float, default=None, help="Override the bundle threshold for this scan.")
    p.add_argument("--source", default="", help="Source tag sent with each request (a label of the server's metrics).")
    p.add_argument("--truncation", choices=TRUNCATION_CHOICES, default=None,
                   help="Policy for prompts over max_tokens; 'error' sends such rows to errors.* (default: the server's; in-process: window).")
    p.add_argument("--flag-refusal-examples", action="store_true",
                   help="Flag records whose harmful request is answered by a refusal. By default they are allowed (reason refusal_example): "
                   "they are the safety data that keeps a finetuned model aligned.")
    p.add_argument("--policy", default="", help="In-process (--bundle) only: a policy file (docs/curation.md) whose section for --source sets thresholds and categories; a service applies its own.")
    # no choices= here: the engine list lives beside numpy (reftguard.engines), which a client install lacks;
    # make_engine refuses an unknown value with the list
    p.add_argument("--engine", default="auto", help="In-process (--bundle) only: inference engine, as `reftguard serve --engine` (auto: what a server here would run).")
    p.add_argument("--precision", default="auto", help="In-process (--bundle) only: precision, as `reftguard serve --precision`.")
    p.add_argument("--threads", type=int, default=0, help="In-process (--bundle) only: compute threads (0: OMP_NUM_THREADS, else every core). "
                                                        "Beside a server on the same cores give 1 (docs/scan.md).")
    p.add_argument("--score-cache-entries", type=int, default=100_000, help="In-process (--bundle) only: repeated turns (a shared system prompt, "
                                                                         "duplicated rows) scored once; 0: off.")
    p.add_argument("--batch-size", type=int, default=32, help="Items per ScoreStream request.")
    p.add_argument("--concurrency", "--in-flight", dest="in_flight", type=int, default=8,
                   help="Unanswered requests on the stream; bounds client memory and server queueing.")
    p.add_argument("--chunk-rows", type=int, default=1000, help="Rows per checkpoint: at most this much work is redone after a kill.")
    p.add_argument("--restart", action="store_true", help="Discard a checkpoint in --out from a different scan instead of refusing.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar (it is off anyway when stderr is not a terminal).")


def compare_bundles(ns) -> int:
    from reftguard.clients.scan.compare import compare

    if not ns.bundle:
        raise ValueError("--compare-bundle compares two bundles in this process: give the other one with --bundle")
    r = compare(ns.input, ns.out, ns.bundle, ns.compare_bundle, format=ns.format, split=ns.split, text_field=ns.text_field,
                source_field=ns.source_field, threshold=ns.threshold, truncation=ns.truncation)
    a, b = r["bundles"]["a"], r["bundles"]["b"]
    print(f"{r['rows']} rows: {a['bundle_id']} flags {r['flag_rate_a'] or 0:.2%}, {b['bundle_id']} flags {r['flag_rate_b'] or 0:.2%}; "
          f"{r['table']['allow->flag']} allow->flag, {r['table']['flag->allow']} flag->allow ({r['disagreement_rate'] or 0:.2%}); "
          f"see {ns.out}/compare.json and {ns.out}/flips.jsonl")
    return 0


def scan(ns) -> int:
    from reftguard.clients.scan.progress import print_summary, scan_progress
    from reftguard.clients.scan.runner import Scan, ScanConfig

    if ns.chunk_rows < 1 or ns.batch_size < 1 or ns.in_flight < 1:
        raise ValueError("--chunk-rows, --batch-size and --concurrency must be >= 1")
    if ns.compare_bundle:
        return compare_bundles(ns)
    remote = ns.bundle is None
    cfg = ScanConfig(input=ns.input, out=ns.out, bundle=ns.bundle, client=client_config(ns) if remote else None, format=ns.format,
                     split=ns.split, text_field=ns.text_field, source_field=ns.source_field, threshold=ns.threshold, source=ns.source,
                     truncation=ns.truncation, flag_refusal_examples=ns.flag_refusal_examples, policy=ns.policy, batch_size=ns.batch_size,
                     in_flight=ns.in_flight, chunk_rows=ns.chunk_rows, restart=ns.restart, engine=ns.engine, precision=ns.precision,
                     threads=ns.threads, score_cache_entries=ns.score_cache_entries)
    try:
        s = Scan(cfg)
    except grpc.RpcError as err:
        print(f"reftguard scan: cannot reach the guard service at {cfg.client.target}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    try:
        from reftguard.clients.scan.checkpoint import Checkpoint

        ck = Checkpoint.load(s.out)
        done = ck.rows_done if ck and ck.fingerprint == s.fingerprint else 0
        with scan_progress(s.reader.count(), done, enabled=not ns.no_progress and sys.stderr.isatty()) as on_rows:
            report = s.run(on_rows)
    except grpc.RpcError as err:
        # the checkpoint holds everything committed so far: the same command resumes from there
        print(f"reftguard scan: the guard service failed: {err.code().name}: {err.details()}; rerun the same command to resume",
              file=sys.stderr)
        return 1
    finally:
        s.close()
    print_summary(report, ns.out)
    return 0
