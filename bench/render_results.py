"""Render the measured-results tables in the docs from the JSON files in bench/results/.

    python -m bench.render_results            # rewrite every marked block in docs/*.md and README.md
    python -m bench.render_results --check    # exit 1 and print a diff if a doc differs from a fresh render
    python -m bench.render_results --list     # the registered blocks and the files they read

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
registered source file is missing. research/render_notebook.py renders the lab notebook (research/*.md)
with these functions and a registry of its own (`register(..., registry=...)`).

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


def register(name: str, sources: Iterable[str | Path], fn: Callable[..., str] | None = None, registry: dict[str, Table] | None = None):
    """Register `fn(*parsed_sources) -> markdown` as the renderer of the block NAME (see the module doc), in
    `registry` (default: this module's REGISTRY, the product docs'; research/render_notebook.py keeps its own).
    Without `fn`, returns a decorator. Registering a name twice is an error."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad block name {name!r}: letters, digits, _ . - only")

    def add(f: Callable[..., str]) -> Callable[..., str]:
        reg = REGISTRY if registry is None else registry
        if name in reg:
            raise ValueError(f"results block {name!r} is registered twice")
        reg[name] = Table(name, tuple(str(s) for s in sources), f)
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

def doc_paths(root: Path = ROOT, globs: Sequence[str] = DOC_GLOBS) -> list[Path]:
    return sorted({p for g in globs for p in root.glob(g) if p.is_file()})


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
            raise ValueError(f"{where}: no renderer registered for results block {name!r}")

    def sub(m: re.Match) -> str:
        name = m.group("name")
        body = registry[name].render(root).strip("\n")
        return f"<!-- results:{name} -->\n\n{body}\n\n<!-- /results:{name} -->"

    return BLOCK.sub(sub, text)


def render_docs(root: Path = ROOT, globs: Sequence[str] = DOC_GLOBS, registry: dict[str, Table] | None = None) -> dict[Path, tuple[str, str]]:
    """{doc: (current text, rendered text)} for every doc that has markers."""
    out = {}
    for p in doc_paths(root, globs):
        text = p.read_text(encoding="utf-8")
        if OPEN.search(text):
            out[p] = (text, render_text(text, str(p.relative_to(root)), root, registry))
    return out


def check(root: Path = ROOT, globs: Sequence[str] = DOC_GLOBS, registry: dict[str, Table] | None = None) -> list[str]:
    """Unified diffs of the docs that differ from a fresh render (empty: all in sync)."""
    diffs = []
    for p, (old, new) in render_docs(root, globs, registry).items():
        if old != new:
            rel = str(p.relative_to(root))
            diffs.append("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel} (rendered)")))
    return diffs


def main(argv: list[str] | None = None, globs: Sequence[str] = DOC_GLOBS, registry: dict[str, Table] | None = None,
         command: str = "python -m bench.render_results", doc: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=command, description=doc or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="Change nothing; exit 1 with a diff if a doc is out of date.")
    ap.add_argument("--list", action="store_true", help="Print the registered blocks and their source files.")
    ns = ap.parse_args(argv)
    try:
        return _run(ns, globs, REGISTRY if registry is None else registry, command)
    except ValueError as e:  # a bad marker in a doc: say where, no traceback
        print(f"render_results: {e}", file=sys.stderr)
        return 2


def _run(ns: argparse.Namespace, globs: Sequence[str], registry: dict[str, Table], command: str) -> int:
    if ns.list:
        for t in registry.values():
            print(f"{t.name}: {', '.join(t.sources)}")
        return 0
    if ns.check:
        diffs = check(ROOT, globs, registry)
        for d in diffs:
            print(d)
        if diffs:
            print(f"docs differ from their results files: run `{command}`", file=sys.stderr)
        return 1 if diffs else 0
    for p, (old, new) in render_docs(ROOT, globs, registry).items():
        if old != new:
            p.write_text(new, encoding="utf-8")
            print(f"rewrote {p.relative_to(ROOT)}")
    return 0


# =====================================================================================================
# The registered tables. Each renderer reads only its sources.
# =====================================================================================================


# ---- serving throughput: bench/serve_vs_ort.py ----

@register("serve_int8", ["bench/results/serve_vs_ort_engines.json"])
def render_serve_int8(r: dict) -> str:
    """int8 against bf16 in the same run, and every engine's share of this CPU's GEMM limit."""
    e, lim = r["engines"], r.get("cpu_limit")
    if "openvino/int8" not in e or "openvino/bf16" not in e:
        return "int8 and bf16 were not both timed in this run (the bundle needs its int8 graph: `reftguard export --int8`)."
    out = (f"OpenVINO int8 (NNCF, SmoothQuant, fp32 head), bare: {fmt(e['openvino/int8'], 1)} prompts/s = "
           f"**{ratio(e['openvino/int8'] / e['openvino/bf16'], 2)}** of bf16 ({fmt(e['openvino/bf16'], 1)}) in the same run; guard-dev AUROC "
           f"{fmt(r['auroc_by_engine']['openvino/int8'], 4)} vs fp32 {fmt(r['auroc_by_engine']['ort/fp32'], 4)}, batch invariance "
           f"{r['batch_invariance']['openvino/int8']:.1e}.")
    if lim:
        shares = ", ".join(f"{k} {fmt(v['gflops'], 0)} GFLOP/s = {fmt(100 * v['share_of_limit'], 0)}% of the {k.split('/')[1]} limit "
                           f"({fmt(lim['limit_gflops'][k.split('/')[1]], 0)})" for k, v in lim["engines"].items() if v["share_of_limit"] is not None)
        out += (f" Share of this CPU's GEMM limit (bench/results/cpu_limit.json; {fmt(lim['flops_per_token'] / 1e6, 1)} MFLOP per token "
                f"in the decoder's linear layers, {fmt(r['avg_tokens'], 0)} tokens per prompt): {shares}.")
    return out


@register("scan_throughput", ["bench/results/scan_throughput.json"])
def render_scan_throughput(r: dict) -> str:
    """One `bench/scan_throughput.py` run: scans in-process and through the server, cache off and on, the server's stream."""
    rows = []
    for key, label in (("in_process", "scan, in-process (`--bundle`)"), ("remote", "scan through the server"), ("server_stream", "server stream (client, 4 streams)")):
        off, on = r[f"{key}_no_cache"], r[f"{key}_cache"]
        rows.append([label, fmt(off["records_per_s"], 1), fmt(on["records_per_s"], 1), ratio(on["records_per_s"] / off["records_per_s"]),
                     f"{fmt(100 * off['share_outside_inference'], 0)}% / {fmt(100 * on['share_outside_inference'], 0)}%"])
    a = r["remote_cache"]["agreement"]
    out = md_table(["path", "records/s, cache off", "records/s, cache on", "cache on / off", "time outside inference, off / on"], rows)
    out += (f"\n\n{r['timed_rows']} chat records ({r['turns']} turns, {r['distinct_turns']} distinct; {fmt(100 * r['shared_system'], 0)}% open with one "
            f"long system prompt), bundle {r['bundle_id']} served as auto picks it, {r['cpus']} CPUs, one run. In-process without cache: "
            f"{fmt(r['in_process_no_cache']['tokens_per_s'], 0)} tokens/s. Scan through the server / the server's stream: "
            f"**{fmt(r['remote_over_server_stream_cache'], 2)}** (cache on), {fmt(r['remote_over_server_stream_no_cache'], 2)} (off). "
            f"Decisions: cache on vs off {r['in_process_cache']['agreement']['same_output_and_reason']}/{r['timed_rows']} the same verdict and "
            f"reason; through the server vs in-process {a['same_output_and_reason']}/{a['rows']} (max score difference {a['max_abs_score_diff']:.1e}).")
    beside = {}
    for k, v in r.items():
        if k.startswith("beside_"):
            beside.setdefault(v["engine"], {})["1" if k.endswith("_1") else "all"] = v
    if beside:
        def both(v: dict) -> str:
            return f"{fmt(v['records_per_s'] + v['server_records_per_s'], 1)} ({fmt(v['records_per_s'], 1)} + {fmt(v['server_records_per_s'], 1)})"
        out += ("\n\nAn in-process scan beside a busy server on the same engine, records/s of scan + server while both ran: " +
                "; ".join(f"{e}: every core {both(v['all'])}, `--threads 1` {both(v['1'])}" for e, v in beside.items()) + ".")
    return out


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



# ---- soak: bench/soak.py ----

def _soak_shadow(m: dict) -> str:
    scored = m.get("reftguard_shadow_score_delta_count", 0)
    dis = {k: v for k, v in m.items() if k.startswith("reftguard_shadow_disagreements_total")}
    a2f = sum(v for k, v in dis.items() if "'active': 'allow'" in k)
    f2a = sum(v for k, v in dis.items() if "'active': 'flag'" in k)
    return f"{num(scored)} scored, {num(a2f + f2a)} disagreements ({num(a2f)} allow→flag, {num(f2a)} flag→allow), {num(m.get('reftguard_shadow_dropped_total', 0))} dropped"


def _soak_rss(r: dict) -> str:
    """Server RSS range once warm: from 120 s (or half the time to the reload, if shorter) to the reload, and from
    120 s after the reload to the streams' end."""
    reload, done, rss = r["events"]["reload"], r["events"]["streams_done"], r["rss_mb"]
    warm = min(120.0, reload / 2)

    def span(a: float, b: float) -> str:
        xs = [mb for t, mb in rss if a <= t < b]
        return f"{num(min(xs))}-{num(max(xs))} MB" if xs else "-"

    return f"{span(warm, reload)}; {span(reload + 120.0, done)}"


def render_soak(*runs: dict) -> str:
    """One column per soak run of bench/soak.py (each with the halfway reload and a shadow bundle)."""
    def col(r: dict) -> str:
        c = r["config"]
        extra = " " + " ".join(c["server_args"]) if c.get("server_args") else ""
        return f"{c['streams']} streams × {num(c['prompts'] / c['streams'])}{extra}"

    def lat(r: dict) -> str:
        u = r["unary_latency_ms"]
        return f"{fmt(u['p50'] / 1000, 2)} / {fmt(u['p95'] / 1000, 2)} / {fmt(u['p99'] / 1000, 2)} s; p95 = {ratio(r['unary_p95_over_batch_infer'], 1)}"

    def tput(r: dict) -> str:
        s = r["stream_throughput_per_s"]
        return f"{fmt(s['streams_only'], 1)} / {fmt(s['with_unary'], 1)} (−{fmt(100 * s['drop_with_unary'], 1)}%) / {fmt(s['after_reload'], 1)}"

    rows = [
        ["decisions; lost / duplicated / misordered", *(f"{num(r['decisions'])}; {r['lost']} / {r['duplicated']} / {r['misordered']}" for r in runs)],
        ["retries; failed callers", *(f"{r['retries']}; {r['unary_failed'] + r['stream_failed']}" for r in runs)],
        ["unary latency p50 / p95 / p99; p95 over the mean batch inference time", *(lat(r) for r in runs)],
        ["stream prompts/s: streams only / with the unary callers / after the reload (shadow on)", *(tput(r) for r in runs)],
        ["reloads ok", *(num(r["reloads_ok"]) for r in runs)],
        ["shadow items", *(_soak_shadow(r["metrics"]) for r in runs)],
        ["server RSS: warm, before the reload; after it (active + shadow)", *(_soak_rss(r) for r in runs)],
    ]
    return md_table(["figure", *(col(r) for r in runs)], rows)


register("soak", ["bench/results/soak_rollout_16x10k.json", "bench/results/soak_rollout_16x2500.json", "bench/results/soak_rollout_16x300.json"],
         render_soak)


# ---- teacher training: the shipped teacher's own record ----

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
    if stage1:  # the recipe files hold both stages' options (tests/test_recipes.py: they match this record)
        lines = ["```bash", "reftguard train-teacher --recipe recipes/teacher-stage1.toml   # the guard and its R_l (layers below l)",
                 "reftguard train-teacher --recipe recipes/teacher-stage2.toml   # new LoRA on layers l and above: the replies",
                 "reftguard export --teacher runs/teacher --out BUNDLE", "```", ""]
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


# ---- detection: the shipped bundle against the previous release (bench/robustness_suite.py) ----

DETECTION_ROWS = (  # (label, summary key, goal)
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
    ("long context: recall, `window` (the default)", "long_recall_window", ">= 0.90"),
    ("long context: benign flag rate, `window`", "long_fpr_window", ""),
)
TEACHER_ROWS = (  # (label, teacher_select.json key, goal): the teacher each bundle was exported from
    ("teacher: refusal rate, 50 benign guard-dev prompts", "refusal_rate_guard_dev_benign", "<= 0.05"),
    ("teacher: refusal rate, 50 benign contrast-dev prompts", "refusal_rate_contrast_dev_benign", ""),
    ("teacher: refusal rate, benign guard-dev prompts 51-100", "refusal_rate_guard_dev_benign_51_100", ""),
    ("teacher: refusal rate, 50 benign chat prompts of guard-train held back from training (seed 0)",
     "refusal_rate_train_heldout_chat_benign", ""),
    ("teacher: refusal rate, 50 harmful guard-dev prompts (higher is better)", "refusal_rate_guard_dev_harmful", ""),
)
#: The results page's columns: (name in summary.json and teacher_select.json's `shipped`, header).
RELEASES = (("tB", "previous release"), ("new", "shipped"))


def _cell(r: dict, key) -> str:
    if isinstance(key, tuple):
        return " / ".join(f3(r.get(k)) for k in key)
    ci = r.get("ci95", {}).get(key)
    return f3(r.get(key)) + (f" ({f3(ci[0])}-{f3(ci[1])})" if ci else "")


def detection_table(summary: dict, select: dict, columns: Sequence[tuple[str, str]]) -> str:
    """One column per bundle (`columns`: (name, header)), every figure on data the threshold was not chosen on;
    `shipped` in teacher_select.json names each bundle's teacher. A row no bundle has a figure for is left out."""
    names = [n for n, _ in columns]
    rows = [[label, goal] + [_cell(summary[n], key) for n in names] for label, key, goal in DETECTION_ROWS]
    rows.append(["long context: dev half its prompts come from (`all`: both, so partly in-sample)", ""]
                + [f"`{summary[n].get('long_split', 'all')}`" for n in names])
    teachers = select["teachers"]
    rows += [[label, goal] + [f3(teachers[select["shipped"][n]].get(key)) for n in names] for label, key, goal in TEACHER_ROWS]
    rows.append(["served threshold", ""] + [fmt(summary[n]["threshold"], 4) for n in names])
    rows = [r for r in rows if any(c not in ("-", "- / -") for c in r[2:])]
    return md_table(["figure", "goal", *[h for _, h in columns]], rows)


@register("default_bundle", ["bench/results/robustness/summary.json", "bench/results/teacher_select.json"])
def render_default_bundle(summary: dict, select: dict) -> str:
    """The shipped default bundle against the previous release (docs/results.md)."""
    return detection_table(summary, select, RELEASES)


# ---- safe finetuning with the shipped teacher: bench/paper_table.py --seeds (mean ± s.e., paired differences) ----

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


register("distill_shipped", ["bench/results/paper_table_seeds_tN.json"], render_paper_table_seeds)


# ---- whole records: python -m bench.records ----

@register("records", ["bench/results/records.json"])
def render_records(r: dict) -> str:
    """Per record kind on the report half of records-dev: what the guard did against the whole-record goal."""
    q = r["quality"]
    rows = []
    for kind, k in q["by_kind"].items():
        g = k.get("goal")
        goal = f"{g['measure']} {g['op']} {g['target']}" if g else "-"
        value = fmt(g["value"], 3) if g else fmt(k["flag_rate"], 3)
        met = ("met" if g["met"] else "**not met**") if g else "-"
        reasons = ", ".join(f"{name} {n}" for name, n in sorted(k["reasons"].items(), key=lambda x: -x[1]))
        rows.append([kind, k["n"], fmt(k["flag_rate"], 3), fmt(k.get("review", 0) / k["n"], 3), goal, value, met, reasons])
    hand = [f"{h['flag_rate']:.2f} of {h['n']} ({h['flag_or_review_rate']:.2f} with the review band)"
            for h in (q[f"hand_labelled_{n}"] for n in ("harmful", "not_harmful"))]
    t, tp = q["thresholds"], r["throughput"]
    return (md_table(["kind", "n", "flagged", "review", "goal", "value", "", "reasons"], rows)
            + f"\n\nThresholds: user {fmt(t['user'], 4)}, assistant {fmt(t['assistant'], 4)}, system {fmt(t['system'], 4)}; bundle "
            f"{r['bundle_id']}, {q['n']} report-half records. Innocent prompt + a model reply that a person read as harmful: flagged "
            f"{hand[0]}; read as evasive or harmless: {hand[1]} (both dev halves). Throughput through `reftguard serve` on this machine, "
            f"one run: {fmt(tp['records_per_s']['whole_records'], 1)} records/s whole against {fmt(tp['records_per_s']['prompt_only'], 1)} "
            f"for the same {tp['records']} records' user turns alone (**{ratio(tp['whole_vs_prompt_only'])}**)."
            + _written(q.get("written")))


def _written(w: dict | None) -> str:
    """One sentence on the records whose replies were written by hand (written-records-dev)."""
    if not w:
        return ""
    k = w["by_kind"]
    return (f" Replies written by hand, not by the packaged model ({w['n']} records, written-records-dev): innocent prompt + harmful reply "
            f"flagged {fmt(k['innocent_harmful_reply']['flag_rate'], 3)} (n={k['innocent_harmful_reply']['n']}), harmful request + its "
            f"reply {fmt(k['harmful_exchange']['flag_rate'], 3)}, benign exchanges flagged {fmt(k['benign_exchange']['flag_rate'], 3)} "
            f"(n={k['benign_exchange']['n']}).")


@register("curation_band", ["bench/results/curation.json"])
def render_curation_band(r: dict) -> str:
    """The review band on the report half: the goals, and what other recall targets would cost."""
    b, g = r["band"]["report"], r["goals"]
    met = lambda k: "met" if g[k]["met"] else "**not met**"  # noqa: E731
    rows = [[f"harmful prompts in FLAG or REVIEW (n={b['n_harmful']})", fmt(b["recall_flag_or_review"]), f"FLAG alone {fmt(b['recall_flag'])}", ">= 0.98", met("recall_flag_or_review")],
            [f"benign prompts in REVIEW or FLAG (n={b['n_benign']})", fmt(b["benign_review_or_flag"]), f"REVIEW {fmt(b['benign_review'])}, FLAG {fmt(b['benign_flag'])}", "<= 0.08", met("benign_review_or_flag")],
            [f"hard negatives FLAGged (n={b['n_hard_negative']})", fmt(b["hard_negative_flag"]), f"in REVIEW or FLAG {fmt(b['hard_negative_review_or_flag'])}", "<= 0.01", met("hard_negative_flag")]]
    curve = ", ".join(f"{p['target_recall']:.2f}: {fmt(p['recall_flag_or_review'])} / {fmt(p['benign_review_or_flag'])}" for p in r["band"]["curve"])
    return (md_table(["on the report half", "value", "split", "goal", ""], rows)
            + f"\n\nBand {fmt(r['band']['review_threshold'], 4)} < score <= {fmt(r['band']['flag_threshold'], 4)} (user turns"
            + (f"; a request in it is REVIEWed if its gate reading is over {fmt(r['band']['review_gate'], 4)}, else ALLOWed" if r["band"].get("review_gate") is not None else "")
            + f"), bundle {r['bundle_id']}. "
            f"Other review-recall targets, chosen on the calib half (target: recall / benign in REVIEW or FLAG on the report half): {curve}."
            " Tighter hard-negative limits on the flag threshold (calib limit: hard negatives FLAGged / harmful FLAGged on the report half, "
            "the rest going to REVIEW): " + ", ".join(
                f"{p['hard_negative_budget']:g}: {fmt(p['hard_negative_flag'])} / {fmt(p['recall_flag'])}" for p in r["band"]["flag_curve"]) + ".")


@register("curation_categories", ["bench/results/curation.json"])
def render_curation_categories(r: dict) -> str:
    """Top-1 accuracy of the category head on dev harmful prompts, per class with n."""
    from reftguard.taxonomy import COVERS

    c = r["categories"]
    rows = [[f"`{k}`", cover, c["per_class"].get(k, {}).get("n", 0), fmt(c["per_class"].get(k, {}).get("top1"), 2), c["fitted_on"].get(k, 0)]
            for k, cover in COVERS.items()]
    confused = ", ".join(f"{k} {n}" for k, n in c["most_confused"].items())
    return (md_table(["class", "covers", "dev n", "top-1", "training rows"], rows)
            + f"\n\nTop-1 over all {c['n']} dev prompts, against classes read by hand: **{fmt(c['top1'], 3)}** (goal 0.80: "
            f"{'met' if r['goals']['category_top1']['met'] else 'not met'}); against the data's own categories mapped onto the taxonomy: "
            f"{fmt(c['top1_vs_data_categories']['top1'], 3)} (they name a kind of harm more often than a domain). The head reads "
            f"`{c['input']}`. Most confused (truth->guess): {confused}. Classes with n < 10 are too thin to read.")


if __name__ == "__main__":
    sys.exit(main())

