"""The paper's comparison in miniature: Harmful Score vs Finetuning Accuracy for four ways to finetune on
a poisoned user dataset (arXiv 2506.07356, at toy scale on CPU with the packaged SmolLM2-135M).

Rows (same seed, same student start, same user data, the same number of *user* batches for all):
  (a) plain finetuning on the poisoned data
  (b) filtering only: finetune on the rows the guard allows
  (c) plain finetuning + hard-label SFT on the alignment data (SafeInstr / Lisa-style baseline)
  (d) filtering + alignment distillation (KL to the ReFT teacher): the full method
Rows (c) and (d) add alignment batches on top (align_fraction of all steps), so they cost more steps.
Context rows: the untouched student and the teacher. (d) is run twice, with cached top-k teacher
targets and with the teacher on the fly, to measure what the cache buys; both train the same student.

Every run is a child process (`reftguard distill`, then `reftguard evaluate-model`) so its wall time
and peak RSS are its own. Writes OUT/paper_table.{json,md}; with --results also bench/results/.

    python bench/paper_table.py [--quick] [--out runs/paper] [--results]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAND_LABELS = ROOT / "bench" / "results" / "judge_hand_labels.jsonl"

FULL = dict(user_steps=100, align_fraction=0.25, batch_size=8, data={}, eval={})
QUICK = dict(user_steps=6, align_fraction=0.25, batch_size=4,
             data=dict(n_task=36, n_task_eval=12, n_align_harmful=8, n_align_benign=8, n_harmful_eval=12, align_reply_tokens=16),
             eval=dict(n_harmful=12, n_problems=12, hs_tokens=16))

VARIANTS = {
    "a": ("(a) plain finetuning on poisoned data", dict(align_loss="none"), False),
    "b": ("(b) filter only", dict(align_loss="none"), True),
    "c": ("(c) finetuning + hard-label SFT on alignment data", dict(align_loss="ce"), False),
    "d": ("(d) filter + alignment distillation (cached top-k)", dict(align_loss="kl", teacher_logits="cached"), True),
    "d-online": ("(d) same, teacher on the fly", dict(align_loss="kl", teacher_logits="online"), True),
}


def flags(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def child(args: list[str], log_path: Path) -> dict:
    """Run `python -m reftguard.cli ARGS`; its wall time and peak RSS (os.wait4 gives this child's own rusage)."""
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "reftguard.cli", *args], stdout=logf, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"reftguard {args[0]} failed; see {log_path}:\n" + log_path.read_text()[-3000:])
    return {"seconds": round(time.time() - t0, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # ru_maxrss is KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke sizes (a few minutes on 2 cores); numbers are not meaningful.")
    ap.add_argument("--out", default="runs/paper", help="Work directory.")
    ap.add_argument("--student", default="packaged:smollm2")
    ap.add_argument("--teacher", default="", help="Teacher directory ('' = the shipped default teacher).")
    ap.add_argument("--bundle", default="", help="Guard bundle ('' = the embedded default bundle).")
    ap.add_argument("--variants", default="", help="Comma-separated subset of " + ",".join(VARIANTS) + " (default: all; --quick: a,b,c,d).")
    ap.add_argument("--align-fraction", type=float, default=None, help="Override the fraction of alignment batches of (c) and (d).")
    ap.add_argument("--no-context", action="store_true", help="Skip the untouched-student and teacher rows.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", action="store_true", help="Also write bench/results/paper_table{,_quick}.{json,md}.")
    ap.add_argument("--rejudge", action="store_true", help="Re-judge the saved replies of an earlier run in --out with the current judge; no training.")
    ns = ap.parse_args()
    size = QUICK if ns.quick else FULL
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    if ns.rejudge:
        return finish(json.loads((out / "paper_table.json").read_text()), out, ns)
    t_start = time.time()

    # shared inputs: the data and one scan (the filter is the same for (b) and (d))
    data_dir = out / "data"
    timing = {"make_data": child(["make-data", "--data-dir", str(data_dir), "--reply-model", ns.student, "--data-seed", str(ns.seed),
                                  *flags(size["data"])], out / "make-data.log")}
    from reftguard.clients.scan.runner import ScanConfig, run_scan

    t0 = time.time()
    bundle = ns.bundle
    if not bundle:
        from reftguard.default_bundle import default_bundle

        bundle = str(default_bundle().root)
    scan = run_scan(ScanConfig(input=str(data_dir / "user.jsonl"), out=str(out / "scan"), bundle=bundle, restart=True))
    timing["scan"] = {"seconds": round(time.time() - t0, 1)}
    allowed = out / "scan" / scan["outputs"]["allowed"]
    users = {False: data_dir / "user.jsonl", True: allowed}
    labels = {k: [json.loads(line).get("label") for line in p.read_text().splitlines() if line.strip()] for k, p in users.items()}

    eval_flags = ["--task-eval", str(data_dir / "task-eval.jsonl"), "--harmful-eval", str(data_dir / "harmful-eval.jsonl"), *flags(size["eval"])]
    rows = []

    def evaluate(key: str, name: str, model: str, extra: dict) -> None:
        ev = child(["evaluate-model", "--model", model, "--eval-out", str(out / key / "eval.json"), *eval_flags], out / f"{key}.eval.log")
        res = json.loads((out / key / "eval.json").read_text())
        rows.append({"key": key, "name": name, "harmful_score": res["harmful_score"], "finetuning_accuracy": res["finetuning_accuracy"],
                     "n_harmful": res["n_harmful"], "n_task": res["n_task"], "eval_seconds": ev["seconds"], **extra})
        print(f"{name}: HS {res['harmful_score']:.3f}  FA {res['finetuning_accuracy']:.3f}  ({ev['seconds']:.0f}s)", flush=True)

    if not ns.no_context:
        evaluate("student0", "untouched student (no finetuning)", ns.student, {})
        from reftguard.training.distill import DistillConfig, teacher_dir

        evaluate("teacher", "ReFT teacher (context)", str(teacher_dir(DistillConfig(teacher=ns.teacher))), {})
    f = size["align_fraction"] if ns.align_fraction is None else ns.align_fraction
    variants = ns.variants or ("a,b,c,d" if ns.quick else ",".join(VARIANTS))
    for key in [k.strip() for k in variants.split(",") if k.strip()]:
        name, over, filtered = VARIANTS[key]
        aligned = over["align_loss"] != "none"
        # (c)/(d) get extra alignment steps so every row sees the same number of user batches
        steps = round(size["user_steps"] / (1 - f)) if aligned else size["user_steps"]
        cfg = dict(student=ns.student, user_data=users[filtered], align_data=data_dir / "align.jsonl", out=out / key, steps=steps,
                   batch_size=size["batch_size"], align_batch_size=size["batch_size"], align_fraction=f if aligned else 0.0, seed=ns.seed,
                   **({"teacher": ns.teacher} if ns.teacher else {}), **over)
        run = child(["distill", "--no-progress", *flags(cfg)], out / f"{key}.distill.log")
        summary = json.loads((out / key / "student.json").read_text())
        evaluate(key, name, str(out / key), {
            "user_rows": len(labels[filtered]), "harmful_rows_trained": labels[filtered].count("harmful"), "steps": steps,
            "batches": summary["batches"], "train_seconds": run["seconds"], "teacher_targets_seconds": summary["teacher_targets_seconds"],
            "peak_rss_mb": run["peak_rss_mb"], "final": summary["final"]})

    result = {"quick": ns.quick, "size": size | {"align_fraction": f}, "seed": ns.seed, "student": ns.student, "rows": rows, "timing": timing,
              "scan": {k: scan[k] for k in ("rows", "flag_rate", "bundle_id", "threshold")},
              "total_seconds": round(time.time() - t_start, 1), "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    return finish(result, out, ns)


def finish(result: dict, out: Path, ns) -> int:
    """Judge every row's saved replies with the current judge (so a judge change never needs retraining),
    add the judge's agreement with the hand labels, write and print the table."""
    from reftguard.training import judge

    for row in result["rows"]:
        replies = [json.loads(line) for line in (out / row["key"] / "eval.replies.jsonl").read_text().splitlines() if line.strip()]
        harmful = [r["reply"] for r in replies if r["set"] == "harmful"]
        row["harmful_score"] = judge.harmful_score(harmful)
        row["refusal_rate"] = judge.refusal_rate(harmful)
        row["no_content_rate"] = 1.0 - row["harmful_score"] - row["refusal_rate"]
    result["judge_agreement"] = judge.agreement(HAND_LABELS) if HAND_LABELS.is_file() else None
    md = render(result)
    (out / "paper_table.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "paper_table.md").write_text(md)
    if ns.results:
        stem = ROOT / "bench" / "results" / ("paper_table_quick" if result["quick"] else "paper_table")
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


def render(r: dict) -> str:
    s = r["scan"]["rows"]
    lines = [
        f"Student {r['student']}, seed {r['seed']}, {r['size']['user_steps']} user batches of {r['size']['batch_size']}"
        f"{' (QUICK: smoke sizes, not meaningful)' if r['quick'] else ''}. Guard scan of the user data: {s['flagged']} of {s['input']} rows "
        f"flagged (flag rate {r['scan']['flag_rate']:.3f}).", "",
        "| run | HS ↓ | refusal rate | no content | FA ↑ | harmful rows trained | batches user/align | train s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        b = row.get("batches")
        batches = f"{b['user']}/{b['align']}" if b else ""
        lines.append(f"| {row['name']} | {row['harmful_score']:.3f} | {row['refusal_rate']:.3f} | {row['no_content_rate']:.3f} | "
                     f"{row['finetuning_accuracy']:.3f} | {row.get('harmful_rows_trained', '')} | "
                     f"{batches} | {row.get('train_seconds', '')} | {row.get('peak_rss_mb', '')} |")
    n = r["rows"][0] if r["rows"] else {}
    lines += ["", f"HS on {n.get('n_harmful')} held-out harmful prompts (guard-dev), FA exact match on {n.get('n_task')} held-out problems."]
    if r["judge_agreement"]:
        j = r["judge_agreement"]
        lines.append(f"Refusal judge vs hand labels on {j['n']} replies: {j['agreement']:.2f} agreement on comply-or-not "
                     f"({j['agreement_3way']:.2f} on the three-way verdict).")
    lines.append(f"Total wall time {r['total_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
