"""report.json: what a scan did, computed from the outputs it wrote (not from in-memory counters), so
the report's numbers are the outputs' numbers. The exactly-once check compares the outputs' row count
and content hash with the input's, accumulated during the scan."""
from __future__ import annotations

import heapq
import json
import os
from pathlib import Path
from typing import Any

from reftguard.clients.scan.digest import MultisetHash, output_digest
from reftguard.clients.scan.records import scored_text
from reftguard.clients.scan.rows import ERROR, OUTPUTS, REASON, ROLE, SCORE, TURN, error_kind

BINS = 40  # score histogram over [-1, 1]
TOP = 20  # top-scoring flagged examples in the report
PREVIEW = 400  # characters of each example's scored text


def _bin(score: float) -> int:
    return min(BINS - 1, max(0, int((score + 1.0) / 2.0 * BINS)))


def summarize(fmt, paths: dict[str, Path], *, source_field: str = "source", text_field: str | None = None) -> dict[str, Any]:
    """Counts, content hash, histogram, per-source flag rates, top flagged and error kinds of the outputs."""
    counts = {n: 0 for n in OUTPUTS}
    h = MultisetHash()
    hist = {"allowed": [0] * BINS, "review": [0] * BINS, "flagged": [0] * BINS}
    by_source: dict[str, dict[str, int]] = {}
    by_reason: dict[str, dict[str, int]] = {}  # reason -> {"allowed", "review", "flagged"} (refusal examples are allowed)
    flags_by_role: dict[str, int] = {}
    errors: dict[str, int] = {}
    top: list[tuple[float, int, dict]] = []
    for name in OUTPUTS:
        for pos, rec in enumerate(fmt.read_output(paths[name])):
            counts[name] += 1
            h.add(output_digest(rec))
            if name == "errors":
                kind = error_kind(str(rec.get(ERROR)))
                errors[kind] = errors.get(kind, 0) + 1
                continue
            score, turn = float(rec[SCORE]), int(rec[TURN])
            hist[name][_bin(score)] += 1
            if source_field in rec:
                s = by_source.setdefault(str(rec[source_field]), {"rows": 0, "review": 0, "flagged": 0})
                s["rows"] += 1
                if name != "allowed":
                    s[name] += 1
            reason, role = str(rec.get(REASON) or ""), str(rec.get(ROLE) or "user")  # outputs of older scans lack both
            if reason:
                by_reason.setdefault(reason, {"allowed": 0, "review": 0, "flagged": 0})[name] += 1
            if name == "flagged":
                flags_by_role[role] = flags_by_role.get(role, 0) + 1
                example = {"id": str(rec.get("id", f"flagged[{pos}]")), "score": score, "turn": turn, "role": role, "reason": reason,
                           "text": scored_text(rec, turn, text_field)[:PREVIEW]}
                entry = (score, -pos, example)
                if len(top) < TOP:
                    heapq.heappush(top, entry)
                else:
                    heapq.heappushpop(top, entry)
    for s in by_source.values():
        s["flag_rate"] = s["flagged"] / s["rows"] if s["rows"] else 0.0
        s["review_rate"] = s["review"] / s["rows"] if s["rows"] else 0.0
    scored = counts["allowed"] + counts["review"] + counts["flagged"]
    return {
        "rows": {**counts, "output": sum(counts.values())},
        "output_hash": h.hex,
        "flag_rate": counts["flagged"] / scored if scored else 0.0,
        "review_rate": counts["review"] / scored if scored else 0.0,
        "by_source": dict(sorted(by_source.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "flags_by_role": dict(sorted(flags_by_role.items())),
        "histogram": {"edges": [round(-1 + 2 * i / BINS, 6) for i in range(BINS + 1)], **hist},
        "top_flagged": [e for _, _, e in sorted(top, key=lambda t: (-t[0], -t[1]))],
        "errors_by_kind": dict(sorted(errors.items())),
    }


def build_report(scan, ck, paths: dict[str, Path]) -> dict[str, Any]:
    cfg, engine = scan.cfg, scan.engine
    s = summarize(scan.fmt, paths, source_field=cfg.source_field, text_field=cfg.text_field)
    rows = {"input": ck.rows_done, **s.pop("rows")}
    out_hash = s.pop("output_hash")
    return {
        "input": str(scan.input.resolve()),
        "format": scan.fmt.name,
        "mode": engine.mode,
        "scorer": engine.where,
        "bundle_id": engine.bundle_id,
        "threshold": engine.threshold,
        "rows": rows,
        "content_hash": {"input": ck.input_hash, "output": out_hash},
        "exactly_once": rows["input"] == rows["output"] and ck.input_hash == out_hash,
        **s,
        "outputs": {n: os.path.relpath(p, scan.out) for n, p in paths.items()},
        "elapsed_s": round(ck.elapsed_s, 3),
        "rows_per_s": round(ck.rows_done / ck.elapsed_s, 1) if ck.elapsed_s > 0 else None,
    }


CARD = ".reftguard/card.md"  # kept so that `review --apply` can re-render the report


def write_report(out: Path, report: dict[str, Any], card: str | None = None) -> None:
    from reftguard.clients.scan.html import render_html

    card_path = out / CARD
    if card is None:
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    else:
        card_path.parent.mkdir(parents=True, exist_ok=True)
        card_path.write_text(card, encoding="utf-8")
    for name, text in (("report.json", json.dumps(report, indent=2) + "\n"), ("report.html", render_html(report, card))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
