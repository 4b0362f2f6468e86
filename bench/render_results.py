"""Render the measured-results tables in the docs from the JSON files in bench/results/.

    python bench/render_results.py            # rewrite every marked block in docs/*.md and README.md
    python bench/render_results.py --check    # exit 1 and print a diff if a doc differs from a fresh render
    python bench/render_results.py --list     # the registered blocks and the files they read

A doc marks a generated block with a pair of HTML comments, each on a line of its own (invisible when
rendered):

    <!-- results:NAME -->
    ...generated markdown, never edited by hand...
    <!-- /results:NAME -->

Everything between the markers is replaced by the output of the renderer registered as NAME. Figures
in a marked block therefore always come from a results file; numbers typed into the prose around
a block are the author's responsibility (keep them few). A block whose NAME is not registered is an
error.

Adding a table (e.g. for a new detection result), at the bottom of this file:

    def render_robustness(report: dict) -> str:
        rows = [[name, f3(r["auroc"]), f3(r["recall_at_1pct_fpr"])] for name, r in report["sets"].items()]
        return md_table(["set", "AUROC", "recall@1%FPR"], rows)

    register("robustness", ["bench/results/robustness.json"], render_robustness)

`register(name, sources, fn)`: `sources` are paths relative to the repository root (`.json` is parsed
as one document, `.jsonl` as a list of objects, one per line); `fn` is called with the parsed
sources as positional arguments, in the order given, and returns markdown (no surrounding markers).
`register` also works as a decorator: `@register("name", [...])`. Put the markers into the doc, run
this script, and commit the doc together with the JSON.
tests/test_render_results.py fails when a committed doc differs from a fresh render, or when a
registered source file is missing.

Helpers for renderers: `md_table(header, rows)`, `f3(x)` / `fmt(x, digits)` (fixed decimals, "-" for
None), `num(x)` (integer with thousands separators), `ratio(x)` ("0.93x").
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: Docs searched for markers (relative to ROOT): every docs/*.md and the README.
DOC_GLOBS = ("docs/*.md", "README.md")

# A marker is a line of its own (a marker quoted inside a line of prose is not one).
BLOCK = re.compile(r"^<!-- results:(?P<name>[A-Za-z0-9_.-]+) -->\n(?P<body>.*?)^<!-- /results:(?P=name) -->$", re.S | re.M)
OPEN = re.compile(r"^<!-- (/?)results:([A-Za-z0-9_.-]+) -->$", re.M)


@dataclass(frozen=True)
class Table:
    name: str
    sources: tuple[str, ...]
    fn: Callable[..., str]

    def render(self, root: Path = ROOT) -> str:
        return self.fn(*(load(root / s) for s in self.sources))


REGISTRY: dict[str, Table] = {}


def register(name: str, sources: Iterable[str | Path], fn: Callable[..., str] | None = None):
    """Register `fn(*parsed_sources) -> markdown` as the renderer of the block NAME (see the module doc).
    Without `fn`, returns a decorator. Registering a name twice is an error."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad block name {name!r}: letters, digits, _ . - only")

    def add(f: Callable[..., str]) -> Callable[..., str]:
        if name in REGISTRY:
            raise ValueError(f"results block {name!r} is registered twice")
        REGISTRY[name] = Table(name, tuple(str(s) for s in sources), f)
        return f

    return add if fn is None else add(fn)


def load(path: Path) -> Any:
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


# ---- formatting helpers (renderers use these so that numbers are never typed by hand) ----

def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def f3(x: float | None) -> str:
    return fmt(x, 3)


def num(x: float | None) -> str:
    return "-" if x is None else f"{round(x):,}"


def ratio(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}x"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- rendering docs ----

def doc_paths(root: Path = ROOT) -> list[Path]:
    return sorted({p for g in DOC_GLOBS for p in root.glob(g) if p.is_file()})


def render_text(text: str, where: str = "doc", root: Path = ROOT, registry: dict[str, Table] | None = None) -> str:
    """`text` with every registered block re-rendered. Raises ValueError on an unknown or unbalanced marker."""
    registry = REGISTRY if registry is None else registry
    opened = [m.group(2) for m in OPEN.finditer(text) if not m.group(1)]
    closed = [m.group(2) for m in OPEN.finditer(text) if m.group(1)]
    blocks = [m.group("name") for m in BLOCK.finditer(text)]
    if opened != blocks or closed != blocks:
        raise ValueError(f"{where}: unbalanced results markers (opened {opened}, closed {closed})")
    for name in blocks:
        if name not in registry:
            raise ValueError(f"{where}: no renderer registered for results block {name!r} (bench/render_results.py)")

    def sub(m: re.Match) -> str:
        name = m.group("name")
        body = registry[name].render(root).strip("\n")
        return f"<!-- results:{name} -->\n\n{body}\n\n<!-- /results:{name} -->"

    return BLOCK.sub(sub, text)


def render_docs(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """{doc: (current text, rendered text)} for every doc that has markers."""
    out = {}
    for p in doc_paths(root):
        text = p.read_text(encoding="utf-8")
        if OPEN.search(text):
            out[p] = (text, render_text(text, str(p.relative_to(root)), root))
    return out


def check(root: Path = ROOT) -> list[str]:
    """Unified diffs of the docs that differ from a fresh render (empty: all in sync)."""
    diffs = []
    for p, (old, new) in render_docs(root).items():
        if old != new:
            rel = str(p.relative_to(root))
            diffs.append("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel} (rendered)")))
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="Change nothing; exit 1 with a diff if a doc is out of date.")
    ap.add_argument("--list", action="store_true", help="Print the registered blocks and their source files.")
    ns = ap.parse_args(argv)
    try:
        return _run(ns)
    except ValueError as e:  # a bad marker in a doc: say where, no traceback
        print(f"render_results: {e}", file=sys.stderr)
        return 2


def _run(ns: argparse.Namespace) -> int:
    if ns.list:
        for t in REGISTRY.values():
            print(f"{t.name}: {', '.join(t.sources)}")
        return 0
    if ns.check:
        diffs = check()
        for d in diffs:
            print(d)
        if diffs:
            print("docs differ from bench/results/: run `python bench/render_results.py`", file=sys.stderr)
        return 1 if diffs else 0
    for p, (old, new) in render_docs().items():
        if old != new:
            p.write_text(new, encoding="utf-8")
            print(f"rewrote {p.relative_to(ROOT)}")
    return 0


# =====================================================================================================
# The registered tables. Each renderer reads only its sources.
# =====================================================================================================

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


def render_paper_table_short(r: dict) -> str:
    """The seed-0 table, fewer columns (docs/results.md)."""
    cols = ("run", "HS ↓", "refusal rate", "no content", "FA ↑", "train s", "peak RSS MB")
    return _paper_setup(r) + "\n\n" + md_table(cols, (_paper_row(row, cols) for row in r["rows"]))


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
register("paper_table_short", ["bench/results/paper_table.json"], render_paper_table_short)
register("paper_table_seed1", ["bench/results/paper_table_seed1.json"], render_paper_variant)
register("paper_table_f50", ["bench/results/paper_table_f50.json"], render_paper_variant)
register("paper_seeds", ["bench/results/paper_table.json", "bench/results/paper_table_seed1.json", "bench/results/paper_table_f50.json"],
         render_paper_seeds)


# ---- serving throughput: bench/serve_vs_ort.py ----

@register("serve_vs_ort", ["bench/results/serve_vs_ort.json"])
def render_serve_vs_ort(r: dict) -> str:
    def best(by: dict) -> str:
        return "/".join(by)

    rows = [
        [f"bare ORT, best batch ({r['ort_best_batch']})", fmt(r["ort_prompts_per_s"], 1), num(r["ort_tokens_per_s"])],
        [f"server, unary (best of {best(r['server_unary_by_clients'])} clients)", fmt(r["server_unary_prompts_per_s"], 1),
         num(r["server_unary_tokens_per_s"])],
        [f"server, stream (best of {best(r['server_stream_by_clients'])} clients)", fmt(r["server_stream_prompts_per_s"], 1),
         num(r["server_stream_tokens_per_s"])],
        ["naive transformers, per-prompt full forward", fmt(r["naive_prompts_per_s"], 1), num(r["naive_tokens_per_s"])],
    ]
    unary = r["server_unary_prompts_per_s"] / r["ort_prompts_per_s"]
    return (f"Bundle {r['bundle_id']} (layer {r['layer']}), {num(r['n_prompts'])} dev prompts, {fmt(r['avg_tokens'], 0)} tokens on average, one run.\n\n"
            + md_table(["path", "prompts/s", "tokens/s"], rows)
            + f"\n\nserver / bare ORT = **{ratio(r['server_over_ort'])}** (stream; unary {ratio(unary)}); "
              f"server / naive = **{ratio(r['server_over_naive'], 1)}**.")


@register("serve_int8", ["bench/results/serve_vs_ort.json"])
def render_serve_int8(r: dict) -> str:
    if "int8_ort_prompts_per_s" not in r:
        return "The int8 bundle was not timed in this run (`bench/serve_vs_ort.py --int8 DIR`)."
    return (f"int8 bundle, bare ORT at the fp32 run's best batch ({r['ort_best_batch']}): {fmt(r['int8_ort_prompts_per_s'], 1)} prompts/s "
            f"= **{ratio(r['int8_over_fp32'])}** of fp32 bare ORT in the same run.")


@register("serve_engines", ["bench/results/serve_vs_ort_engines.json"])
def render_serve_engines(r: dict) -> str:
    """Every engine/precision of one `bench/serve_vs_ort.py` run: bare, behind the server, parity, batch invariance, AUROC."""
    def sci(x: float | None) -> str:
        return "-" if x is None else ("0" if x == 0 else f"{x:.1e}")

    fastest = f"{r.get('engine')}/{r.get('precision')}"
    rows = []
    for key, rate in r["engines"].items():
        s = r.get("server_by_engine", {}).get(key, {})
        stream, unary = s.get("stream_by_clients", {}), s.get("unary_by_clients", {})
        rows.append([f"**{key}** (fastest)" if key == fastest else key, fmt(rate, 1), r["engine_batch"].get(key, "-"),
                     fmt(s.get("bare_prompts_per_s"), 1), *(fmt(stream.get(c), 1) for c in ("1", "4", "16")),
                     *(fmt(unary.get(c), 1) for c in ("1", "16")), ratio(s.get("stream_over_bare")),
                     sci(r["parity_vs_fp32"].get(key, {}).get("max_abs_diff")), sci(r["batch_invariance"].get(key)),
                     fmt(r["auroc_by_engine"].get(key), 5)])
    n_dev = next(iter(r["parity_vs_fp32"].values()), {}).get("n")
    out = md_table(["engine/precision", "bare prompts/s", "best batch", "bare, next to server", "stream x1", "stream x4", "stream x16",
                    "unary x1", "unary x16", "stream / bare", "max \\|Δscore\\| vs ort/fp32", "batch invariance", "guard-dev AUROC"], rows)
    load = lambda xs: "/".join(fmt(x, 2) for x in xs)  # noqa: E731
    out += (f"\n\nPrompts/s throughout. Bundle {r['bundle_id']} (layer {r['layer']}), {num(r['n_prompts'])} prompts, "
            f"{fmt(r['avg_tokens'], 0)} tokens on average, {r['cpus']} CPUs, load average (1/5/15 min) {load(r['load_avg_start'])} at the "
            f"start and {load(r['load_avg_end'])} at the end, one run. Stream / bare: the best stream rate over that engine's bare rate "
            f"re-measured right before its server; parity, batch invariance and AUROC on {num(n_dev)} guard-dev prompts.")
    if "server_over_naive" in r:
        out += (f" Server ({fastest}, best of stream and unary) / naive transformers ({fmt(r['naive_prompts_per_s'], 2)} prompts/s) "
                f"= **{ratio(r['server_over_naive'], 1)}**.")
    return out


# ---- teacher training: bench/teacher_vs_zero.py and the shipped teacher's own record ----

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


register("teacher_vs_zero", ["bench/results/table.json"], render_teacher_vs_zero)
register("teacher_vs_zero_handwritten", ["bench/results/table_handwritten.json"], render_teacher_vs_zero)


DEFAULT_TEACHER = ROOT / "reftguard" / "data" / "default_teacher"
STAGE2_INTRO = "Stage 2 (new LoRA on layers l and above, SFT only: the replies; every guard score stays stage 1's):"


def _steps(command: str) -> str:
    m = re.search(r"--steps (\d+)", command)
    return m.group(1) if m else "?"


def _wrap_command(command: str, width: int = 100) -> str:
    """A shell command broken before options into lines of at most ~width characters."""
    parts = re.split(r" (?=--)", command)
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) > width:
            lines[-1] += " \\"
            lines.append("    " + part)
        else:
            lines[-1] += " " + part
    return "\n".join(lines)


@register("default_teacher", ["reftguard/data/default_teacher/teacher.json", "reftguard/data/default_teacher/train_log.jsonl"])
def render_default_teacher(teacher: dict, log: list[dict]) -> str:
    """The shipped teacher's reproducing command and its training log (refreshes and held-back evaluations)."""
    rec = teacher.get("record", {})
    cfg = rec.get("config", {})
    command = re.sub(r"--out \S+", "--out teacher", rec.get("command", ""))
    stage1 = rec.get("stage1")
    command = re.sub(r"--init-teacher \S+", "--init-teacher stage1", command)  # a stage-2 teacher builds on stage 1's --out
    if stage1 and stage1.get("members"):
        return _render_soup_teacher(teacher, stage1, command)
    if stage1:  # a stage-2 teacher: its guard (and the curve worth showing) comes from stage 1
        log = load(DEFAULT_TEACHER / stage1["log"])
        cfg = cfg | {"steps": f"{_steps(stage1['command'])} + {cfg.get('steps')} (stage 2)"}
    rows = []
    for row in log:
        if row.get("final"):
            rows.append([f"{row['step']} (final R_l)", f3(row.get("held_auroc")), f3(row.get("held_recall_at_1pct_fpr")), ""])
        elif "refresh" in row or "held_auroc" in row:
            drift = f3(row["drift"]) if row.get("refresh") else ""  # refresh 0 is the first estimate: no drift
            rows.append([row["step"], f3(row.get("held_auroc")), f3(row.get("held_recall_at_1pct_fpr")), drift])
    held = (stage1 or rec).get("holdout_at_layer", {})
    whose = "stage 1's" if stage1 else "its"
    lines = ["```bash", _wrap_command(command), "```", ""] if command else []
    if stage1:
        lines = (["Stage 1 (layers below l: the guard and its R_l):", "", "```bash",
                  _wrap_command(re.sub(r"--out \S+", "--out stage1", stage1["command"])), "```", "",
                  STAGE2_INTRO, ""] + lines)
    lines += [f"Layer {teacher['layer']} of {teacher['model']}, {cfg.get('steps')} steps, "
              + ("full finetune" if cfg.get("full_finetune") else f"LoRA rank {cfg.get('lora_rank')}")
              + f", R_l refreshed {(stage1 or rec).get('refreshes')} times. From {whose} `train_log.jsonl`: AUROC and recall at 1% FPR on the "
              f"held-back split of the training files ({held.get('n')} prompts), and the drift of R_l (cosine to the previous "
              "estimate) at each refresh:", "",
              md_table(["step", "held-back AUROC", "recall@1%FPR", "R_l drift"], rows)]
    return "\n".join(lines)


def _render_soup_teacher(teacher: dict, stage1: dict, command: str) -> str:
    """A stage-2 teacher (`command`, already portable) whose stage 1 is a weight soup: the members' commands, the soup's, stage 2's, and
    each member's figures on its own held-back split (a soup has no training curve of its own)."""
    members = stage1["members"]
    rows = []
    for i, m in enumerate(members):
        seed = re.search(r"--seed (\d+)", m["command"])
        held = m.get("holdout_at_layer") or {}
        rows.append([i + 1, seed.group(1) if seed else "0", f3(held.get("auroc")), f3(held.get("recall_at_1pct_fpr")), held.get("n"),
                     m.get("refreshes"), f"{m['seconds'] / 60:.0f} min" if m.get("seconds") else "-"])
    member_cmds = [_wrap_command(re.sub(r"--out \S+", f"--out member{i + 1}", m["command"])) for i, m in enumerate(members)]
    soup_cmd = re.sub(r"--members \S+", "--members " + ",".join(f"member{i + 1}" for i in range(len(members))), stage1["command"])
    lines = [f"Stage 1 (layers below l: the guard and its R_l) is a weight soup of {len(members)} runs of one recipe with other seeds:",
             "", "```bash", *member_cmds, _wrap_command(re.sub(r"--out \S+", "--out stage1", soup_cmd)), "```", "",
             STAGE2_INTRO, "",
             "```bash", _wrap_command(command), "```", "",
             f"Layer {teacher['layer']} of {teacher['model']}. Each member on the held-back split of the training files that its own "
             "seed drew (the soup has no split of its own: the members' splits differ), from the members' records:", "",
             md_table(["member", "seed", "held-back AUROC", "recall@1%FPR", "n", "R_l refreshes", "wall time"], rows)]
    return "\n".join(lines)


# ---- detection: old bundle against new (bench/robustness_suite.py, bench/teacher_select.py) ----

DETECTION_ROWS = (  # (label, summary key, goal from issue 13)
    ("contrast-dev: benign flag rate", "contrast_benign_flag_rate", "<= 0.03"),
    ("contrast-dev: harmful recall", "contrast_harmful_recall", ">= 0.90"),
    ("contrast-dev: AUROC", "contrast_auroc", ""),
    ("guard-dev: AUROC", "guard_dev_auroc", ">= 0.995"),
    ("guard-dev: recall@1%FPR", "guard_dev_recall_at_1pct_fpr", ">= 0.90"),
    ("guard-dev: recall / FPR at the served threshold", ("guard_dev_recall", "guard_dev_fpr"), ""),
    ("handwritten-dev: hard-negative flag rate", "handwritten_hard_negative_flag_rate", "<= 0.03"),
    ("handwritten-dev: disguised-harmful recall", "handwritten_disguised_recall", ""),
    ("handwritten-dev: AUROC", "handwritten_auroc", ""),
    ("all three dev sets: AUROC / recall@1%FPR", ("all_auroc", "all_recall_at_1pct_fpr"), ""),
    ("long context (request after 2,000 tokens): recall, `right` truncation", "long_recall_right", ""),
    ("long context: recall, `window` (the new default)", "long_recall_window", ">= 0.90"),
    ("long context: benign flag rate, `window`", "long_fpr_window", ""),
)


def _cell(r: dict, key) -> str:
    if isinstance(key, tuple):
        return " / ".join(f3(r.get(k)) for k in key)
    ci = r.get("ci95", {}).get(key)
    return f3(r.get(key)) + (f" ({f3(ci[0])}-{f3(ci[1])})" if ci else "")


@register("default_bundle", ["bench/results/robustness/summary.json", "bench/results/teacher_select.json"])
def render_default_bundle(summary: dict, select: dict) -> str:
    """Old shipped bundle (and any earlier candidate) against the new default, every figure on data the
    threshold was not chosen on. `shipped` in teacher_select.json names each bundle's teacher."""
    names = sorted((n for n in summary if n in select["shipped"]), key=lambda n: (n == "new", n != "old"))  # old, earlier, new
    rows = [[label, goal] + [_cell(summary[n], key) for n in names] for label, key, goal in DETECTION_ROWS]
    rows.append(["long context: dev half its prompts come from (`all`: both, so partly in-sample)", ""]
                + [f"`{summary[n].get('long_split', 'all')}`" for n in names])
    teachers = select["teachers"]
    for label, key, goal in (("teacher: refusal rate, 50 benign guard-dev prompts", "refusal_rate_guard_dev_benign", "<= 0.05"),
                             ("teacher: refusal rate, 50 benign contrast-dev prompts", "refusal_rate_contrast_dev_benign", ""),
                             ("teacher: refusal rate, benign guard-dev prompts 51-100 (not used to pick; read when writing persona rows)",
                              "refusal_rate_guard_dev_benign_51_100", ""),
                             ("teacher: refusal rate, 50 benign chat prompts of guard-train held back from training (seed 0)",
                              "refusal_rate_train_heldout_chat_benign", ""),
                             ("teacher: refusal rate, 50 harmful guard-dev prompts (higher is better)", "refusal_rate_guard_dev_harmful", "")):
        rows.append([label, goal] + [f3(teachers[select["shipped"][n]].get(key)) for n in names])
    rows.append(["served threshold", ""] + [fmt(summary[n]["threshold"], 4) for n in names])
    return md_table(["figure", "goal", *[f"{n} bundle" for n in names]], rows)


@register("window_tail", ["bench/results/window_tail.json"])
def render_window_tail(r: dict) -> str:
    """Long-context recall / benign flag rate per tail-window size, every bundle side by side, and the
    mean over bundles of recall minus benign flag rate (the figure the served default is chosen by on the
    calib-half set, docs/results.md). `default` marks the served default when the sweep ran."""
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


register("window_tail_calib", ["bench/results/window_tail_calib.json"], render_window_tail)
register("window_tail_report", ["bench/results/window_tail_report.json"], render_window_tail)


@register("teacher_select", ["bench/results/teacher_select.json"])
def render_teacher_select(select: dict) -> str:
    """Candidate teachers on the calib half of each dev file (how the recipe was picked)."""
    files = ("guard-dev.jsonl", "handwritten-dev.jsonl", "contrast-dev.jsonl")
    rows = []
    for name, t in select["teachers"].items():
        cells = [f"{f3(t['files'][f]['auroc'])} / {f3(t['files'][f]['recall_at_1pct_fpr'])}" for f in files]
        mean = sum(t["files"][f]["auroc"] for f in files) / len(files)  # the soup's selection figure (docs/training.md)
        rows.append([name, *cells, fmt(mean, 4), f3(t["files"]["contrast-dev.jsonl"].get("hard_negative_flag_rate_at_recall_0.90")),
                     f3(t["refusal_rate_guard_dev_benign"]), f3(t["refusal_rate_contrast_dev_benign"]),
                     f3(t.get("refusal_rate_guard_dev_benign_51_100")), f3(t.get("refusal_rate_train_heldout_chat_benign")),
                     f3(t["refusal_rate_guard_dev_harmful"])])
    return md_table(["teacher", *[f"{f} AUROC / R@1%" for f in files], "mean AUROC", "contrast benign flagged at recall 0.90",
                     "refusal, guard-dev benign ↓", "refusal, contrast benign ↓", "refusal, guard-dev benign 51-100 ↓",
                     "refusal, held-back training chat ↓", "refusal, guard-dev harmful ↑"], rows)



# ---- safe finetuning over seeds: bench/paper_table.py --seeds (mean ± s.e., paired differences) ----

def _pm(d: dict, digits: int = 3) -> str:
    return "-" if d["mean"] is None else fmt(d["mean"], digits) + ("" if d["se"] is None else f" ± {fmt(d['se'], digits)}")


def render_paper_table_seeds(a: dict) -> str:
    """Every row's mean ± s.e. over seeds, then the paired differences (d)-(c), (d)-(b) with their verdicts."""
    t = a["teacher"]
    head = (f"Seeds {', '.join(map(str, a['seeds']))}, {a['size']['user_steps']} user batches of {a['size']['batch_size']}, alignment fraction "
            f"{a['size']['align_fraction']}{' (quick sizes: smoke-test scale, the numbers are not meaningful)' if a['quick'] else ''}. "
            f"Teacher bundle {t.get('bundle_id') or '-'}, adapter sha256 {(t.get('adapter_sha256') or '-')[:16]}. Mean ± standard error over seeds.")
    rows = [[e["name"], _pm(e["harmful_score"]), _pm(e["finetuning_accuracy"]), _pm(e["benign_refusal_rate"]), _pm(e["benign_ppl"], 2),
             _pm(e["refusal_rate"])] for e in a["rows"]]
    table = md_table(["run", "HS ↓", "FA ↑", "benign refusal ↓", "benign ppl ↓", "harmful refusal"], rows)
    diffs = [[p["pair"], *(f"{_pm(p[m], d)} [{', '.join(fmt(q[m], d) for q in p['per_seed'])}]"
                           for m, d in (("harmful_score", 3), ("finetuning_accuracy", 3), ("benign_refusal_rate", 3), ("benign_ppl", 2)))]
             for p in a["pairs"]]
    verdicts = "\n".join(f"- {p['pair']}: HS: {p['verdict']['harmful_score']}; FA: {p['verdict']['finetuning_accuracy']}; "
                          f"benign refusal: {p['verdict']['benign_refusal_rate']}; benign ppl: {p['verdict']['benign_ppl']}" for p in a["pairs"])
    return (head + "\n\n" + table + "\n\nPaired differences (same seed), mean ± s.e., per seed in brackets:\n\n"
            + md_table(["difference", "ΔHS", "ΔFA", "Δbenign refusal", "Δbenign ppl"], diffs) + "\n\n" + verdicts)


register("paper_table_seeds_quick", ["bench/results/paper_table_seeds_quick.json"], render_paper_table_seeds)
register("paper_table_seeds", ["bench/results/paper_table_seeds.json"], render_paper_table_seeds)
register("paper_table_seeds_tN", ["bench/results/paper_table_seeds_tN.json"], render_paper_table_seeds)


if __name__ == "__main__":
    sys.exit(main())
