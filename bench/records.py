"""Whole-record quality and cost of a bundle, in one run.

Quality: every record of records-dev (report half by default) decided by the serving path, per kind,
against the whole-record goals (reftguard.record_eval.GOALS); the same for written-records-dev (replies
written by hand, not by the packaged model). Cost: records per second through a real
server (`reftguard serve` in a subprocess, on loopback) for the same records whole (every role scored) and as prompt-only items (their
user turns alone), side by side in one run on one warm server.

    python -m bench.records [--bundle DIR] [--out bench/results/records.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reftguard.bundle import GuardBundle
from reftguard.data import packaged
from reftguard.record_eval import evaluate_records, format_table, load_records
from reftguard.scoring import BundleScorer


def _throughput(bundle: Path, whole: list[dict], prompt_only: list[dict], repeats: int) -> dict:
    from bench.serve_vs_ort import Server
    from reftguard.clients import GuardClient

    out = {}
    server = Server(str(bundle), [])
    try:
        c = GuardClient(f"127.0.0.1:{server.port}")
        list(c.score_stream(whole[:64], batch_size=32))  # warm-up
        for _ in range(repeats):  # interleaved, so drift hits both alike
            for name, items in (("whole_records", whole), ("prompt_only", prompt_only)):
                t0 = time.perf_counter()
                n = len(list(c.score_stream(items, batch_size=32)))
                out.setdefault(name, []).append(n / (time.perf_counter() - t0))
        c.close()
    finally:
        server.stop()
    rates = {k: max(v) for k, v in out.items()}
    return {"records_per_s": rates, "runs": out, "whole_vs_prompt_only": rates["whole_records"] / rates["prompt_only"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="", help="guard bundle (default: the embedded default bundle)")
    ap.add_argument("--split", default="report", choices=("calib", "report", "all"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/records.json")
    args = ap.parse_args(argv)
    if args.bundle:
        path = Path(args.bundle)
    else:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        path = ensure_default_bundle().root
    bundle = GuardBundle.load(path)
    records = load_records(packaged("records-dev.jsonl"), args.split)
    scorer = BundleScorer(bundle, max_windows=0)
    quality = evaluate_records(scorer, records)
    print(format_table(quality))
    # The model's own replies to harmful prompts are often evasive, so their kind is a noisy label: each
    # was read by hand (reftguard/data/reply-hand-labels-dev.json). Recall on the ones read as harmful.
    hand = json.loads(packaged("reply-hand-labels-dev.json").read_text())
    for name in ("harmful", "not_harmful"):
        ids = {f"{i}" for i in hand[name]}
        sel = [r for r in load_records(packaged("records-dev.jsonl"), "all") if r.id in ids]
        decided = evaluate_records(scorer, sel)["by_kind"]["innocent_harmful_reply"]
        quality[f"hand_labelled_{name}"] = {"n": decided["n"], "flag_rate": decided["flag_rate"],
                                            "flag_or_review_rate": (decided["flag"] + decided["review"]) / decided["n"], "split": "all"}
        print(f"innocent prompt + a reply read by hand as {name}: {decided['flag']}/{decided['n']} flagged, "
              f"{decided['flag'] + decided['review']}/{decided['n']} flagged or for review")
    # Replies written by hand, in many styles, to dev prompts (scripts/build_written_replies.py): never calibrated or
    # fitted on, the closest thing here to records written by others.
    quality["written"] = evaluate_records(scorer, load_records(packaged("written-records-dev.jsonl"), args.split))
    print("replies written by hand:\n" + format_table(quality["written"]))
    with_replies = [r for r in records if any(role != "user" for role, _ in r.messages)]
    whole = [{"id": r.id, "messages": [{"role": role, "content": c} for role, c in r.messages]} for r in with_replies]
    prompt_only = [{"id": r.id, "messages": [{"role": role, "content": c} for role, c in r.messages if role == "user"]} for r in with_replies]
    cost = _throughput(path, whole, prompt_only, args.repeats) | {"records": len(whole)}
    print(f"records/s: whole {cost['records_per_s']['whole_records']:.1f}, prompt-only {cost['records_per_s']['prompt_only']:.1f} "
          f"(ratio {cost['whole_vs_prompt_only']:.2f}) on {len(whole)} records with replies")
    result = {"bundle_id": bundle.bundle_id, "split": args.split, "quality": quality, "throughput": cost}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
