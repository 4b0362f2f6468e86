"""Render the tables of the lab notebook (research/*.md) from the results files, as bench/render_results.py does for
the docs (same markers, same helpers, a registry of its own):

    python -m research.render_notebook            # rewrite every marked block in research/*.md
    python -m research.render_notebook --check    # exit 1 and print a diff if a notebook page differs from a fresh render

Sources are research/results/ (the one-off experiments), and bench/results/ where the notebook shows more of a
maintained results file than the docs do (every candidate bundle of robustness/summary.json, every candidate
teacher of teacher_select.json, the earlier paper-table runs).
"""
from __future__ import annotations

import functools
import sys
from typing import Sequence

from bench.render_results import ROOT, Table, detection_table, f3, fmt, md_table, num, render_paper_table_seeds
from bench.render_results import check as _check
from bench.render_results import main as _main
from bench.render_results import register as _register

GLOBS = ("research/*.md",)
REGISTRY: dict[str, Table] = {}
register = functools.partial(_register, registry=REGISTRY)


def main(argv: list[str] | None = None) -> int:
    return _main(argv, GLOBS, REGISTRY, "python -m research.render_notebook", __doc__)


def check() -> list[str]:
    """Unified diffs of the notebook pages that differ from a fresh render (empty: all in sync)."""
    return _check(ROOT, GLOBS, REGISTRY)


# ---- safe finetuning: bench/paper_table.py ----

def _paper_row(row: dict, cols: Sequence[str]) -> list[str]:
    b = row.get("batches")
    cell = {
        "run": row["name"],
        "HS ↓": f3(row["harmful_score"]),
        "refusal rate": f3(row["refusal_rate"]),
        "no content": f3(row["no_content_rate"]),
        "FA ↑": f3(row["finetuning_accuracy"]),
        "harmful rows trained": row.get("harmful_rows_trained", ""),
        "batches user/align": f"{b['user']}/{b['align']}" if b else "",
        "train s": num(row["train_seconds"]) if "train_seconds" in row else "",
        "peak RSS MB": num(row["peak_rss_mb"]) if "peak_rss_mb" in row else "",
    }
    return [cell[c] for c in cols]


PAPER_COLS = ("run", "HS ↓", "refusal rate", "no content", "FA ↑", "harmful rows trained", "batches user/align", "train s", "peak RSS MB")


def _paper_setup(r: dict) -> str:
    s, first = r["scan"]["rows"], r["rows"][0]
    j = r.get("judge_agreement")
    judge = f" Refusal judge vs {j['n']} hand labels: {f3(j['agreement'])} agreement on comply-or-not." if j else ""
    return (f"Student {r['student']}, seed {r['seed']}, {r['size']['user_steps']} user batches of {r['size']['batch_size']}, "
            f"alignment fraction {r['size']['align_fraction']}. The guard flagged {s['flagged']} of {s['input']} user rows. "
            f"HS on {first['n_harmful']} held-out harmful prompts, FA on {first['n_task']} held-out problems.{judge} "
            f"Wall time of the whole table: {num(r['total_seconds'])} s.")


def render_paper_table(r: dict) -> str:
    """The seed-0 table with every column (docs/distill.md)."""
    return _paper_setup(r) + "\n\n" + md_table(PAPER_COLS, (_paper_row(row, PAPER_COLS) for row in r["rows"]))


def render_paper_variant(r: dict) -> str:
    """A variant run (another seed, another alignment fraction): runs (a)-(d) only, all columns."""
    rows = [row for row in r["rows"] if "train_seconds" in row]
    return (f"Seed {r['seed']}, alignment fraction {r['size']['align_fraction']}, the guard flagged {r['scan']['rows']['flagged']} "
            f"of {r['scan']['rows']['input']} user rows.\n\n" + md_table(PAPER_COLS, (_paper_row(row, PAPER_COLS) for row in rows)))


def render_paper_seeds(seed0: dict, seed1: dict, f50: dict) -> str:
    """HS / FA of runs (a)-(d) in every setting, and the mean over the two seeds at the default fraction."""
    def by_key(r: dict) -> dict:
        return {row["key"]: row for row in r["rows"]}

    s0, s1, h = by_key(seed0), by_key(seed1), by_key(f50)
    hsfa = lambda row: f"{f3(row['harmful_score'])} / {f3(row['finetuning_accuracy'])}" if row else ""  # noqa: E731
    header = ["run", f"seed {seed0['seed']}, f = {seed0['size']['align_fraction']}", f"seed {seed1['seed']}, f = {seed1['size']['align_fraction']}",
              f"mean of the two seeds", f"seed {f50['seed']}, f = {f50['size']['align_fraction']}"]
    rows = []
    for key in ("a", "b", "c", "d"):
        a, b = s0.get(key), s1.get(key)
        mean = ""
        if a and b:
            mean = f"{f3((a['harmful_score'] + b['harmful_score']) / 2)} / {f3((a['finetuning_accuracy'] + b['finetuning_accuracy']) / 2)}"
        rows.append([(a or b)["name"], hsfa(a), hsfa(b), mean, hsfa(h.get(key))])
    return "HS ↓ / FA ↑ of each run; f is the fraction of alignment batches of (c) and (d).\n\n" + md_table(header, rows)


register("paper_table", ["bench/results/paper_table.json"], render_paper_table)
register("paper_table_seed1", ["research/results/paper_table_seed1.json"], render_paper_variant)
register("paper_table_f50", ["research/results/paper_table_f50.json"], render_paper_variant)
register("paper_seeds", ["bench/results/paper_table.json", "research/results/paper_table_seed1.json", "research/results/paper_table_f50.json"],
         render_paper_seeds)


# ---- teacher vs zero-training: research/teacher_vs_zero.py ----

KINDS_ORDER = ("direct", "rephrased", "disguised", "chat", "task", "instruction", "hard_negative")


def render_teacher_vs_zero(r: dict) -> str:
    rows_in = r["rows"]
    kinds = [k for k in KINDS_ORDER if any(k in row for row in rows_in.values())]
    kinds += sorted({k for row in rows_in.values() for k in row if k != "overall" and k not in kinds})
    rows = []
    for name, row in rows_in.items():
        cells = [name, f3(row["overall"]["auroc"]), f3(row["overall"]["recall_at_1pct_fpr"])]
        cells += [f"{f3(row[k]['auroc'])} / {f3(row[k]['recall_at_1pct_fpr'])}" if k in row else "-" for k in kinds]
        rows.append(cells)
    cfg = r.get("train_config", {})
    out = (f"Dev file {r['dev']} (n={num(r['n_dev'])}), layer {r['layer']}; trained variants: {cfg.get('steps')} steps of the "
           f"`--quick` config.\n\n" + md_table(["method", "AUROC", "R@1%FPR", *(f"{k} AUROC / R@1%" for k in kinds)], rows))
    if r.get("helpfulness"):
        help_rows = [[name, f"{f3(h['refusal_rate'])} (n={h['n']})", f3(h["perplexity"])] for name, h in r["helpfulness"].items()]
        out += "\n\n" + md_table(["model", "refusal rate on benign dev prompts", "perplexity of the starting model's benign replies"], help_rows)
    return out


register("teacher_vs_zero", ["research/results/table.json"], render_teacher_vs_zero)
register("teacher_vs_zero_handwritten", ["research/results/table_handwritten.json"], render_teacher_vs_zero)


@register("window_tail", ["research/results/window_tail.json"])
def render_window_tail(r: dict) -> str:
    """Long-context recall / benign flag rate per tail-window size, every bundle side by side, and the
    mean over bundles of recall minus benign flag rate (the figure the served default is chosen by on the
    calib-half set, research/NOTEBOOK.md). `default` marks the served default when the sweep ran."""
    names = list(r["bundles"])
    tails = [t["window_tail"] for t in r["bundles"][names[0]]["tails"]]
    rows = []
    for i, tail in enumerate(tails):
        per = [b["tails"][i] for b in r["bundles"].values()]
        cells = [f"{f3(t['recall'])} / {f3(t['benign_flag_rate'])}" for t in per]
        mean = sum(t["recall"] - t["benign_flag_rate"] for t in per) / len(per)
        default = r["bundles"][names[0]]["tails"][i]["default"]
        rows.append([("off" if tail == 0 else f"{tail} tokens") + (" (default then)" if default else ""), *cells, f3(mean)])
    return md_table(["tail window", *[f"{n}: recall / benign flagged" for n in names], "mean recall − flagged"], rows)


register("window_tail_calib", ["research/results/window_tail_calib.json"], render_window_tail)
register("window_tail_report", ["research/results/window_tail_report.json"], render_window_tail)


@register("teacher_select", ["bench/results/teacher_select.json"])
def render_teacher_select(select: dict) -> str:
    """Candidate teachers on the calib half of each dev file (how the recipe was picked)."""
    files = ("guard-dev.jsonl", "handwritten-dev.jsonl", "contrast-dev.jsonl")
    rows = []
    for name, t in select["teachers"].items():
        cells = [f"{f3(t['files'][f]['auroc'])} / {f3(t['files'][f]['recall_at_1pct_fpr'])}" for f in files]
        mean = sum(t["files"][f]["auroc"] for f in files) / len(files)  # the soup's selection figure (research/NOTEBOOK.md)
        rows.append([name, *cells, fmt(mean, 4), f3(t["files"]["contrast-dev.jsonl"].get("hard_negative_flag_rate_at_recall_0.90")),
                     f3(t["refusal_rate_guard_dev_benign"]), f3(t["refusal_rate_contrast_dev_benign"]),
                     f3(t.get("refusal_rate_guard_dev_benign_51_100")), f3(t.get("refusal_rate_train_heldout_chat_benign")),
                     f3(t["refusal_rate_guard_dev_harmful"])])
    return md_table(["teacher", *[f"{f} AUROC / R@1%" for f in files], "mean AUROC", "contrast benign flagged at recall 0.90",
                     "refusal, guard-dev benign ↓", "refusal, contrast benign ↓", "refusal, guard-dev benign 51-100 ↓",
                     "refusal, held-back training chat ↓", "refusal, guard-dev harmful ↑"], rows)


# ---- every candidate bundle on the report halves (bench/robustness_suite.py, research/teacher_select.py) ----

@register("candidates", ["bench/results/robustness/summary.json", "bench/results/teacher_select.json"])
def render_candidates(summary: dict, select: dict) -> str:
    """The first bundle, every candidate measured and the shipped one (last); `shipped` in teacher_select.json
    names each bundle's teacher."""
    names = sorted((n for n in summary if n in select["shipped"]), key=lambda n: (n == "new", n != "old"))  # old, candidates, new
    return detection_table(summary, select, [(n, f"{n} bundle") for n in names])


# ---- safe finetuning over seeds with earlier teachers: bench/paper_table.py --seeds ----

register("paper_table_seeds_tC", ["research/results/paper_table_seeds.json"], render_paper_table_seeds)
register("paper_table_seeds_quick", ["research/results/paper_table_seeds_quick.json"], render_paper_table_seeds)


if __name__ == "__main__":
    sys.exit(main())
