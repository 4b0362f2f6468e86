"""Detection quality, old bundle against new, on data no threshold was chosen on.

For every `--bundle NAME=DIR`: `reftguard robustness` on the `report` half of guard-dev, handwritten-dev and
contrast-dev (the default threshold is calibrated on the `calib` half), and on a long-context set built
from report-half dev prompts (`python -m bench.long_context --split report`: a dev request after >= 2,000 tokens of
benign dev context; `--long-split all` rebuilds the older set from both halves) under each
`--long-truncation` policy. Reports land in bench/results/robustness/NAME[-long-POLICY]/ and the
headline figures in bench/results/robustness/summary.json (rendered into docs/results.md).

    python -m bench.robustness_suite --bundle old=runs/b_old --bundle new=$(reftguard default-bundle --print-path) \
        --long-truncation right,window
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.long_context import build_long_context
from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.data import CALIBRATION_FILES, packaged
from reftguard.robustness import RobustnessConfig, run

ROOT = Path(__file__).resolve().parents[1]


def _kind(rows: list[dict], kind: str, label: str) -> dict:
    return next((r for r in rows if r["slice"] == kind and r["label"] == label), {})


def _ci(k: int, n: int) -> list[float] | None:
    ci = evaluation.wilson_interval(int(k), int(n))
    return None if ci is None else [round(v, 4) for v in ci]


def long_split(report: dict) -> str:
    """The dev half a long-context report's set was built from, read off its file name (older sets: 'all')."""
    m = re.match(r"long-context-(calib|report)-", (report.get("data") or [""])[0])
    return m.group(1) if m else "all"


def headline(dev: dict, long: dict[str, dict]) -> dict:
    """The figures issue 13 asks for, from one bundle's reports, with 95% Wilson intervals of the goal
    rates (`ci95`): the dev slices are small, so a goal is read against the interval as well."""
    f = dev["files"]
    gd, hw, cd = f["guard-dev.jsonl"], f["handwritten-dev.jsonl"], f["contrast-dev.jsonl"]
    hn, co = _kind(hw["by_kind"], "hard_negative", "benign"), cd["overall"]
    out = {
        "bundle_id": dev["bundle_id"],
        "threshold": dev["threshold"],
        "guard_dev_auroc": gd["overall"]["auroc"],
        "guard_dev_recall_at_1pct_fpr": gd["overall"]["recall_at_1pct_fpr"],
        "guard_dev_recall": gd["overall"]["recall"],
        "guard_dev_fpr": gd["overall"]["fpr"],
        "handwritten_auroc": hw["overall"]["auroc"],
        "handwritten_hard_negative_flag_rate": _kind(hw["by_kind"], "hard_negative", "benign").get("flag_rate"),
        "handwritten_disguised_recall": _kind(hw["by_kind"], "disguised", "harmful").get("flag_rate"),
        "contrast_auroc": cd["overall"]["auroc"],
        "contrast_benign_flag_rate": cd["overall"]["fpr"],
        "contrast_harmful_recall": cd["overall"]["recall"],
        "all_auroc": dev["overall"]["auroc"],
        "all_recall_at_1pct_fpr": dev["overall"]["recall_at_1pct_fpr"],
    }
    out["ci95"] = {
        "contrast_benign_flag_rate": _ci(co["fp"], co["fp"] + co["tn"]),
        "contrast_harmful_recall": _ci(co["tp"], co["tp"] + co["fn"]),
        "handwritten_hard_negative_flag_rate": _ci(hn.get("flagged", round(hn["flag_rate"] * hn["n"])), hn["n"]) if hn else None,
    }
    for policy, rep in long.items():
        o = rep["overall"]
        out[f"long_recall_{policy}"] = o["recall"]
        out[f"long_fpr_{policy}"] = o["fpr"]
        out["long_split"] = long_split(rep)
        out["ci95"][f"long_recall_{policy}"] = _ci(o["tp"], o["tp"] + o["fn"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", default=[], help="NAME=DIR, repeatable.")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "robustness"))
    p.add_argument("--long-n", type=int, default=50, help="Harmful (and as many benign) long-context prompts.")
    p.add_argument("--long-tokens", type=int, default=2000)
    p.add_argument("--long-split", default="report", choices=("report", "calib", "all"), help="Dev half the long-context set is built from.")
    p.add_argument("--long-truncation", default="window", help="Comma-separated policies for the long-context set.")
    p.add_argument("--long-only-for", default="", help="Comma-separated bundle names that get the non-window policies (default: all).")
    p.add_argument("--from-reports", action="store_true", help="Score nothing: rebuild each NAME's summary entry from the "
                   "reports already in OUT (NAME/ and NAME-long-*/), e.g. after a change to the summary's fields. DIR may be empty.")
    p.add_argument("--long-only", action="store_true", help="Rerun only the long-context reports; reuse each bundle's dev report "
                   "(OUT/NAME/report.json), e.g. after a change to windowing, which never touches prompts that fit one row.")
    ns = p.parse_args(argv)
    out = Path(ns.out)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    dev_files = [str(packaged(f)) for f in CALIBRATION_FILES]
    for spec in ns.bundle:
        name, _, d = spec.partition("=")
        if ns.from_reports:
            long = {q.name.rsplit("-long-", 1)[1]: json.loads((q / "report.json").read_text()) for q in sorted(out.glob(f"{name}-long-*"))}
            summary[name] = headline(json.loads((out / name / "report.json").read_text()), long)
            summary_path.write_text(json.dumps(summary, indent=1) + "\n")
            continue
        if ns.long_only:
            dev = json.loads((out / name / "report.json").read_text())
        else:
            dev = run(RobustnessConfig(bundle=d, data=dev_files, out=str(out / name), split="report"))
        from tokenizers import Tokenizer

        rows = build_long_context(n=ns.long_n, min_tokens=ns.long_tokens, seed=0, split=ns.long_split,
                                  tokenizer=Tokenizer.from_file(str(GuardBundle.load(d).tokenizer_path)))
        tag = "" if ns.long_split == "all" else f"{ns.long_split}-"
        long_file = out / f"long-context-{tag}{ns.long_n}x{ns.long_tokens}.jsonl"
        long_file.parent.mkdir(parents=True, exist_ok=True)
        long_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        long = {}
        for policy in ns.long_truncation.split(","):
            if policy != "window" and ns.long_only_for and name not in ns.long_only_for.split(","):
                continue
            long[policy] = run(RobustnessConfig(bundle=d, data=[str(long_file)], out=str(out / f"{name}-long-{policy}"), truncation=policy))
        long_file.unlink()  # rebuilt from dev files on demand; ~1 MB that need not be committed
        summary[name] = headline(dev, long)
        summary_path.write_text(json.dumps(summary, indent=1) + "\n")
        print(name, json.dumps(summary[name], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
