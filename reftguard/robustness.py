"""`reftguard robustness`: how a bundle's decisions hold up per kind and category of prompt.

A kind or category holds prompts of one label (or of both, for contrast groups); each (slice, label) row
gives its size, its flag rate at the served threshold (the false-positive rate for benign rows, the recall
for harmful ones) with a 95% Wilson interval (slices are small: read a goal against the interval) and its AUROC against every prompt of the other label in the same data, so a slice is
judged by whether *it* separates from the rest, not by the easy slices around it. The report also keeps
the worst-scored prompts of each kind (highest benign, lowest harmful) and the score distribution per kind.

Rows with a `role` (e.g. roles-dev: replies and system prompts) are scored with that role's feature and
flagged at that role's threshold, and get a table per role. With `--records`, whole finetuning records are
decided as served and tabled per record kind and per reason (reftguard/record_eval.py).

The report is numpy-only; matplotlib draws the PNG (train extra) and the HTML page embeds it.
"""
from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.config import option
from reftguard.data import LabeledPrompt, load_labeled, select_split

LABEL_NAMES = {0: "benign", 1: "harmful"}
BINS = np.linspace(-1.0, 1.0, 41)


@dataclass
class RobustnessConfig:
    bundle: str = option("", "Guard bundle directory.")
    data: list = option([], "Labeled JSONL file(s) (comma-separated): each is reported on its own and all together.")
    out: str = option("robustness", "Directory for report.json, report.md, scores.png and report.html.")
    threshold: float = option(float("nan"), "Report flag rates at this threshold instead of the bundle's served one.")
    worst: int = option(5, "Worst-scored examples kept per kind (highest-scored benign, lowest-scored harmful).")
    split: str = option("all", "Use one half of every file only: 'report' is the half a default calibration never saw.", choices=("all", "calib", "report"))
    truncation: str = option("window", "Policy for prompts over the bundle's max_tokens, as the server applies it (window, left, right).", choices=("window", "left", "right"))
    records: list = option([], "Record JSONL file(s) (messages, label, kind; e.g. records-dev.jsonl): decided whole, tabled per kind and reason.")


def slice_rows(scores: np.ndarray, labels: np.ndarray, keys: list[str], threshold) -> list[dict]:
    """One row per (key, label): n, flag rate at `threshold` (one, or one per row: each row's role), AUROC
    of the slice against all prompts of the other label (None when the data has none)."""
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
    rows = []
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[(k, int(labels[i]))].append(i)
    for (key, y), idx in sorted(groups.items()):
        other = np.flatnonzero(labels != y)
        s = np.concatenate([scores[idx], scores[other]])
        lab = np.concatenate([np.full(len(idx), y), 1 - np.full(len(other), y)])
        flagged = int(np.sum(scores[idx] > thr[idx]))
        rows.append({
            "slice": key, "label": LABEL_NAMES[y], "n": len(idx),
            "flag_rate": flagged / len(idx), "flagged": flagged,
            "flag_rate_ci95": list(evaluation.wilson_interval(flagged, len(idx))),
            "auroc": evaluation.auroc(s, lab) if len(other) else None,
            "mean_score": float(np.mean(scores[idx])),
        })
    return rows


def worst_examples(scores: np.ndarray, prompts: list[LabeledPrompt], k: int) -> dict[str, list[dict]]:
    """Per kind: the k benign prompts with the highest scores and the k harmful ones with the lowest."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_kind[p.kind].append(i)
    out = {}
    for kind, idx in sorted(by_kind.items()):
        rows = []
        for y, sign in ((0, -1.0), (1, 1.0)):  # benign: descending score; harmful: ascending
            mine = sorted((i for i in idx if prompts[i].label == y), key=lambda i: (sign * scores[i], prompts[i].id))[:k]
            rows += [{"id": prompts[i].id, "label": LABEL_NAMES[y], "score": float(scores[i]), "category": prompts[i].category,
                      "text": prompts[i].text if len(prompts[i].text) <= 400 else prompts[i].text[:200] + " […] " + prompts[i].text[-180:]}
                     for i in mine]
        out[kind] = rows
    return out


def histograms(scores: np.ndarray, prompts: list[LabeledPrompt]) -> dict[str, dict]:
    """Per 'kind (label)': counts over fixed bins on [-1, 1] (the server's score histogram range)."""
    keys: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        keys[f"{p.kind} ({LABEL_NAMES[p.label]})"].append(i)
    return {k: {"edges": BINS.tolist(), "counts": np.histogram(np.clip(scores[v], -1, 1), BINS)[0].tolist()} for k, v in sorted(keys.items())}


def _summary(s: np.ndarray, y: np.ndarray, user: np.ndarray, threshold: float) -> dict:
    """Metrics of the user rows at the user threshold (role rows are in the per-role table)."""
    return evaluation.summarize(s[user], y[user], threshold) if len(set(y[user].tolist())) > 1 else {"n": int(len(s))}


def build_report(scores: np.ndarray, prompts: list[LabeledPrompt], files: list[str], threshold: float, worst: int,
                 role_thresholds: dict[str, float] | None = None) -> dict:
    """The whole report from scores (numpy only, no model): overall, per file, per role, per kind, per
    category. A row of a role in `role_thresholds` is flagged at that threshold, every other at `threshold`."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.array([p.label for p in prompts])
    roles = role_thresholds or {}
    thr = np.array([roles.get(p.role, threshold) for p in prompts], dtype=np.float64)
    user = np.array([p.role not in roles for p in prompts])
    report = {"threshold": float(threshold), "role_thresholds": dict(roles), "overall": _summary(s, y, user, threshold), "files": {}}
    for name in dict.fromkeys(files):
        sel = np.array([f == name for f in files])
        fp = [p for p, m in zip(prompts, sel) if m]
        report["files"][name] = {
            "overall": _summary(s[sel], y[sel], user[sel], threshold),
            "by_kind": slice_rows(s[sel], y[sel], [p.kind for p in fp], thr[sel]),
            "by_category": slice_rows(s[sel], y[sel], [f"{p.kind}/{p.category or '-'}" for p in fp], thr[sel]),
        }
    report["by_role"] = slice_rows(s, y, [p.role for p in prompts], thr)
    report["by_kind"] = slice_rows(s, y, [p.kind for p in prompts], thr)
    report["worst"] = worst_examples(s, prompts, worst)
    report["histograms"] = histograms(s, prompts)
    return report


def _cell(v) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _table(title: str, rows: list[dict]) -> list[str]:
    head = [f"| {title} | label | n | flag rate | 95% interval | AUROC vs other label |", "|---|---|---|---|---|---|"]
    return head + [f"| {r['slice']} | {r['label']} | {r['n']} | {r['flag_rate']:.3f} | {_ci(r.get('flag_rate_ci95'))} | {_cell(r['auroc'])} |"
                   for r in rows] + [""]


def _ci(ci) -> str:
    return "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def markdown(report: dict) -> str:
    o = report["overall"]
    lines = [f"# Robustness report: bundle `{report.get('bundle_id', '')}`", "",
             f"Threshold {report['threshold']:.4f} (flag when score > threshold); split `{report.get('split', 'all')}`; "
             f"truncation `{report.get('truncation', 'window')}`.", "",
             f"Overall: n={o['n']}, AUROC {_cell(o.get('auroc'))}, recall@1%FPR {_cell(o.get('recall_at_1pct_fpr'))}, "
             f"recall {_cell(o.get('recall'))}, FPR {_cell(o.get('fpr'))} (user turns).", "",
             "## All files, by role (each at its role's threshold)", "", *_table("role", report.get("by_role", [])),
             "## All files, by kind", "", *_table("kind", report["by_kind"])]
    if report.get("records"):
        lines += ["## Whole records, by kind and reason", "", "| record kind | n | flagged | review | reasons |", "|---|---|---|---|---|"]
        lines += [f"| {kind} | {k['n']} | {k['flag_rate']:.3f} | {k['review'] / k['n']:.3f} | "
                  + ", ".join(f"{r} {c}" for r, c in sorted(k["reasons"].items(), key=lambda kv: -kv[1])) + " |"
                  for kind, k in report["records"]["by_kind"].items()]
        lines.append("")
    for name, f in report["files"].items():
        fo = f["overall"]
        lines += [f"## {name}", "", f"n={fo['n']}, AUROC {_cell(fo.get('auroc'))}, recall@1%FPR {_cell(fo.get('recall_at_1pct_fpr'))}, "
                  f"recall {_cell(fo.get('recall'))}, FPR {_cell(fo.get('fpr'))}", ""]
        lines += _table("kind", f["by_kind"]) + _table("category", f["by_category"])
    lines += ["## Worst-scored examples per kind", ""]
    for kind, rows in report["worst"].items():
        lines += [f"### {kind}", "", "| id | label | score | text |", "|---|---|---|---|"]
        lines += [f"| {r['id']} | {r['label']} | {r['score']:.4f} | {r['text'][:160].replace('|', '/').replace(chr(10), ' ')} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def plot_png(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hists = report["histograms"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    centers = (BINS[:-1] + BINS[1:]) / 2
    for key, h in hists.items():
        counts = np.asarray(h["counts"], dtype=float)
        ax.plot(centers, counts / max(counts.sum(), 1), marker=".", label=key, linestyle="--" if "(harmful)" in key else "-")
    ax.axvline(report["threshold"], color="k", linewidth=1, label="threshold")
    ax.set_xlabel("score (cosine to R_l)")
    ax.set_ylabel("share of the kind")
    ax.set_title("Score distribution per kind")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def html_page(report: dict, png: Path) -> str:
    """One self-contained page: the plot inlined as base64, the markdown tables as preformatted text."""
    img = base64.b64encode(png.read_bytes()).decode() if png.is_file() else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>reftguard robustness</title>"
            "<style>body{font-family:sans-serif;margin:2em}pre{white-space:pre-wrap;font-size:12px}</style></head><body>"
            f"<h1>Robustness: bundle {html.escape(str(report.get('bundle_id', '')))}</h1>"
            + (f"<img alt='score distributions' src='data:image/png;base64,{img}'>" if img else "")
            + f"<pre>{html.escape(markdown(report))}</pre></body></html>\n")


def run(cfg: RobustnessConfig) -> dict:
    from reftguard.bundle import GuardBundle
    from reftguard.calibration import score_prompts

    if not cfg.data:
        raise ValueError("no data: pass --data FILE[,FILE...] (labeled JSONL)")
    bundle = GuardBundle.load(cfg.bundle)
    prompts, files = [], []
    for f in cfg.data:
        ps = select_split(load_labeled(f), cfg.split)
        prompts += ps
        files += [Path(f).name] * len(ps)
    thr = bundle.threshold if np.isnan(cfg.threshold) else cfg.threshold
    report = build_report(score_prompts(bundle, prompts, cfg.truncation), prompts, files, thr, cfg.worst, bundle.role_thresholds)
    report |= {"bundle_id": bundle.bundle_id, "split": cfg.split, "truncation": cfg.truncation, "data": [Path(f).name for f in cfg.data]}
    if cfg.records:
        from reftguard.record_eval import evaluate_records, load_records
        from reftguard.scoring import BundleScorer

        scorer = BundleScorer(bundle, max_windows=0)
        if not np.isnan(cfg.threshold):
            scorer.thresholds = scorer.thresholds.with_user(cfg.threshold)
        report["records"] = evaluate_records(scorer, load_records(cfg.records, cfg.split))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    plot_png(report, out / "scores.png")
    (out / "report.html").write_text(html_page(report, out / "scores.png"))
    return report
