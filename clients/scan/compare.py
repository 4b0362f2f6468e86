"""`reftguard scan INPUT --out DIR --bundle A --compare-bundle B`: what promoting B over A would change.

Both bundles score every row in this process, each at its own threshold (or --threshold for both),
with the scan's own reading, item rules and decisions (`LocalEngine`). Writes `compare.json` (the
disagreement table overall and per source, flag rates, and FP / miss rates where rows carry a
`label`) and `flips.jsonl` (every row whose verdict changes, with both scores and verdicts).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from reftguard.clients.scan.engines import LocalEngine
from reftguard.clients.scan.formats import detect_format
from reftguard.clients.scan.records import prepare
from reftguard.clients.scan.rows import OUR_COLUMNS

VERDICTS = ("allow", "review", "flag")


def _rates(table: Counter, labels: Counter) -> dict[str, Any]:
    n = sum(table.values())
    out: dict[str, Any] = {"rows": n, "flag_rate_a": None, "flag_rate_b": None, "review_rate_a": None, "review_rate_b": None,
                           "disagreement_rate": None}
    if n:
        for verdict in ("flag", "review"):
            out[f"{verdict}_rate_a"] = sum(v for (a, _), v in table.items() if a == verdict) / n
            out[f"{verdict}_rate_b"] = sum(v for (_, b), v in table.items() if b == verdict) / n
        out["disagreement_rate"] = sum(v for (a, b), v in table.items() if a != b) / n
    out["table"] = {f"{a}->{b}": table[(a, b)] for a in VERDICTS for b in VERDICTS}
    for side in ("a", "b"):  # labels: (side, label, verdict) counts; a reviewed row is neither a FP nor a miss
        benign = sum(labels[(side, "benign", v)] for v in VERDICTS)
        harmful = sum(labels[(side, "harmful", v)] for v in VERDICTS)
        out[f"fpr_{side}"] = labels[(side, "benign", "flag")] / benign if benign else None
        out[f"miss_rate_{side}"] = labels[(side, "harmful", "allow")] / harmful if harmful else None
    return out


def compare(input: str, out: str, bundle_a: str, bundle_b: str, *, format: str | None = None, split: str | None = None,
            text_field: str | None = None, source_field: str = "source", threshold: float | None = None,
            truncation: str | None = None) -> dict[str, Any]:
    fmt = detect_format(Path(input), format)
    engines = [LocalEngine(b, threshold=threshold, truncation=truncation) for b in (bundle_a, bundle_b)]
    streams = [e.decide(prepare(r, text_field, e.max_chars) for r in fmt.reader(Path(input), split).rows(0)) for e in engines]
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, Counter] = defaultdict(Counter)
    labels: dict[str, Counter] = defaultdict(Counter)
    unscored = 0
    with open(outdir / "flips.jsonl", "w", encoding="utf-8") as flips:
        for (row, oa), (_, ob) in zip(*streams):
            if oa is None or ob is None:
                unscored += 1
                continue
            rec = row.record or {}
            source = str(rec.get(source_field, "")) if source_field in rec else ""
            va, vb = oa.verdict, ob.verdict
            for key in ("", source):
                tables[key][(va, vb)] += 1
            label = rec.get("label")
            if label in ("benign", "harmful"):
                labels[""][("a", label, va)] += 1
                labels[""][("b", label, vb)] += 1
            if va != vb:
                flip = {k: v for k, v in rec.items() if k not in OUR_COLUMNS}
                flip.update({"reftguard_row": row.index, "reftguard_score_a": oa.score, "reftguard_verdict_a": va,
                             "reftguard_score_b": ob.score, "reftguard_verdict_b": vb})
                flips.write(json.dumps(flip, ensure_ascii=False) + "\n")
    report = {
        "bundles": {side: {"bundle_id": e.bundle_id, "threshold": e.threshold} for side, e in zip("ab", engines)},
        **_rates(tables[""], labels[""]),
        "unscored_rows": unscored,
        "per_source": {s: _rates(t, Counter()) for s, t in sorted(tables.items()) if s},
    }
    (outdir / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    for e in engines:
        e.close()
    return report
