"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network)."""
from __future__ import annotations

from html import escape
from typing import Any

W, H, PAD = 720, 240, 36


LAYERS = (("allowed", "#4c9a6a"), ("review", "#d9a441"), ("flagged", "#c8553d"))  # stacked bottom to top


def histogram_svg(hist: dict[str, Any], threshold: float) -> str:
    """Stacked allowed/review/flagged bars over [-1, 1] with the threshold as a dashed line."""
    edges = hist["edges"]
    n = len(edges) - 1
    layers = [(name, colour, hist.get(name) or [0] * n) for name, colour in LAYERS]  # reports of older scans have no review
    top = max([sum(c[i] for _, _, c in layers) for i in range(n)] + [1])
    x = lambda v: PAD + (v + 1.0) / 2.0 * (W - 2 * PAD)  # noqa: E731
    y = lambda c: H - PAD - c / top * (H - 2 * PAD)  # noqa: E731
    bw = (W - 2 * PAD) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="score histogram">',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#444"/>']
    for i in range(n):
        x0, below = x(edges[i]) + 0.5, 0
        for name, colour, counts in layers:
            if counts[i]:
                y1 = y(below + counts[i])
                parts.append(f'<rect x="{x0:.1f}" y="{y1:.1f}" width="{bw - 1:.1f}" height="{y(below) - y1:.1f}" fill="{colour}">'
                             f'<title>{edges[i]:+.2f}..{edges[i + 1]:+.2f}: {counts[i]} {name}</title></rect>')
                below += counts[i]
    for v in (-1.0, -0.5, 0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(v):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{v:+.1f}</text>')
    parts.append(f'<text x="{PAD - 4}" y="{PAD}" font-size="11" text-anchor="end">{top}</text>')
    tx = x(threshold)
    parts.append(f'<line x1="{tx:.1f}" y1="{PAD - 10}" x2="{tx:.1f}" y2="{H - PAD}" stroke="#222" stroke-dasharray="5,3" stroke-width="1.5"/>')
    parts.append(f'<text x="{tx + 4:.1f}" y="{PAD - 12}" font-size="11">threshold {threshold:+.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
       "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}.ok{color:#2a7}.bad{color:#c33}")


def render_html(r: dict[str, Any], card: str) -> str:
    rows = r["rows"]
    check = (f'<p class="ok">Exactly once: {rows["output"]} output rows = {rows["input"]} input rows, content hashes match.</p>' if r["exactly_once"]
             else f'<p class="bad">Exactly-once check FAILED: {rows["output"]} output rows vs {rows["input"]} input rows; hashes '
                  f'{r["content_hash"]["output"][:16]}… vs {r["content_hash"]["input"][:16]}…</p>')
    sections = [
        f"<h1>reftguard scan report</h1><p>{escape(r['input'])} ({escape(r['format'])}), {escape(r['mode'])} scoring by "
        f"{escape(r['scorer'])}, bundle <code>{escape(r['bundle_id'])}</code>, threshold {r['threshold']:+.4f}.</p>",
        "<h2>Counts</h2>" + _table(["input", "allowed", "review", "flagged", "errors", "review rate", "flag rate"],
                                   [[rows["input"], rows["allowed"], rows.get("review", 0), rows["flagged"], rows["errors"],
                                     f"{r.get('review_rate', 0):.2%}", f"{r['flag_rate']:.2%}"]]) + check,
        "<h2>Score histogram</h2>" + histogram_svg(r["histogram"], r["threshold"]),
    ]
    if r["by_source"]:
        sections.append("<h2>Flag rate per source</h2>" + _table(["source", "rows", "review", "flagged", "flag rate"],
                        [[k, v["rows"], v.get("review", 0), v["flagged"], f"{v['flag_rate']:.2%}"] for k, v in r["by_source"].items()]))
    if r.get("by_reason"):
        sections.append("<h2>Decisions per reason</h2>" + _table(["reason", "flagged", "review", "allowed"],
                        [[k, v["flagged"], v.get("review", 0), v["allowed"]] for k, v in r["by_reason"].items()]))
    if r.get("flags_by_role"):
        sections.append("<h2>Flags per role of the deciding turn</h2>" + _table(["role", "flagged"], [[k, v] for k, v in r["flags_by_role"].items()]))
    if r["errors_by_kind"]:
        sections.append("<h2>Errors</h2>" + _table(["reason", "rows"], [[k, v] for k, v in r["errors_by_kind"].items()]))
    sections.append("<h2>Top flagged</h2>" + _table(["id", "score", "turn", "role", "reason", "text"],
                    [[e["id"], f"{e['score']:+.4f}", e["turn"], e.get("role", "user"), e.get("reason", ""), e["text"]] for e in r["top_flagged"]]))
    sections.append(f"<h2>Bundle card</h2><pre>{escape(card)}</pre>")
    return f'<!doctype html><html><head><meta charset="utf-8"><title>reftguard scan report</title><style>{CSS}</style></head><body>{"".join(sections)}</body></html>\n'
