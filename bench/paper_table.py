"""The paper's comparison in miniature: Harmful Score vs Finetuning Accuracy for four ways to finetune on
a poisoned user dataset (arXiv 2506.07356, at toy scale on CPU with the packaged SmolLM2-135M), over seeds.

Rows (same seed, same student start, same user data, the same number of *user* batches for all):
  (a) plain finetuning on the poisoned data
  (b) filtering only: finetune on the rows the guard allows
  (c) plain finetuning + hard-label SFT on the alignment data (SafeInstr / Lisa-style baseline)
  (d) filtering + alignment distillation (KL to the ReFT teacher): the full method
Rows (c) and (d) add alignment batches on top (align_fraction of all steps), so they cost more steps.
Context rows: the untouched student and the teacher. (d) can also run with the teacher on the fly
(`d-online`), to measure what the top-k cache buys; both train the same student.

The user data is arithmetic problems mixed with general instructions (benign training-pool prompts with
the starting model's own replies) and 10% poisoned rows. Every row reports HS, FA, the benign refusal
rate (64 held-out benign prompts, half contrast-dev hard negatives, same judge as HS) and the perplexity
on the starting model's replies to those prompts.

Seeds: `--seeds 0,1,2` runs every row for each seed; a seed is a new draw of the data, the poison, the
held-out prompts, the LoRA init and the batch order. Every (seed, row) leaves OUT/seed{S}/{row}/result.json,
bound to a fingerprint of what it read (file hashes, sizes, the teacher's hash where it is used): a rerun
reuses every finished row whose inputs are unchanged and runs only the rest (a changed teacher reruns
the rows that use it, and the filtered rows when the guard's bundle changes with it). The teacher is
read from its directory at run time (default: the shipped one); its bundle id (the default bundle is
exported from it), adapter sha256 and content hash are recorded in every result file.

Every run is a child process (`reftguard distill`, then `reftguard evaluate-model`) so its wall time
and peak RSS are its own. Writes OUT/seed{S}/paper_table.{json,md} per seed and
OUT/paper_table_seeds.{json,md,png} (mean ± standard error over seeds, paired differences (d)-(c) and
(d)-(b)); with --results also bench/results/paper_table_seeds{,_quick}.* (one seed: also the per-seed
bench/results/paper_table{,_quick}.{json,md}, as before).

    python -m bench.paper_table [--quick] [--seeds 0,1,2] [--out runs/paper] [--results]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAND_LABELS = ROOT / "bench" / "results" / "judge_hand_labels.jsonl"
FORMAT = 3  # bump when a result file's meaning changes: older results are then rerun, not reused

FULL = dict(user_steps=100, align_fraction=0.25, batch_size=8, data={}, eval={})
QUICK = dict(user_steps=6, align_fraction=0.25, batch_size=4,
             data=dict(n_task=36, n_general=12, n_task_eval=12, n_align_harmful=8, n_align_benign=8, n_harmful_eval=12, n_benign_eval=12,
                       align_reply_tokens=16),
             eval=dict(n_harmful=12, n_problems=12, n_benign=12, hs_tokens=16))

VARIANTS = {
    "a": ("(a) plain finetuning on poisoned data", dict(align_loss="none"), False),
    "b": ("(b) filter only", dict(align_loss="none"), True),
    "c": ("(c) finetuning + hard-label SFT on alignment data", dict(align_loss="ce"), False),
    "d": ("(d) filter + alignment distillation (cached top-k)", dict(align_loss="kl", teacher_logits="cached"), True),
    "d-online": ("(d) same, teacher on the fly", dict(align_loss="kl", teacher_logits="online"), True),
    # #37's sweep, one knob each, chosen by research/distill_diagnosis.py (T=2 flattens the teacher's refusal:
    # first-token p 0.63 at T=1, 0.10 at T=2): the temperature first, then the KL weight. Rule, written before
    # their numbers: a variant becomes the default distill recipe iff over 3 seeds its HS <= (c)'s and its
    # FA >= (c)'s, each beyond one s.e. of the paired difference.
    "d-T1": ("(d) with KL temperature 1", dict(align_loss="kl", teacher_logits="cached", temperature=1.0), True),
    "d-kd4": ("(d) with KL weight 4", dict(align_loss="kl", teacher_logits="cached", kd_weight=4.0), True),
}
CONTEXT = {"student0": "untouched student (no finetuning)", "teacher": "ReFT teacher (context)"}
METRICS = ("harmful_score", "finetuning_accuracy", "benign_refusal_rate", "benign_ppl", "refusal_rate", "no_content_rate")
# paired differences (x) - (y), and the direction in which each metric is better
PAIRS = (("d", "c"), ("d", "b"), ("d-T1", "c"), ("d-T1", "d"), ("d-kd4", "c"), ("d-kd4", "d"))  # a pair is shown where both rows ran
BETTER = {"harmful_score": -1, "finetuning_accuracy": 1, "benign_refusal_rate": -1, "benign_ppl": -1}


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


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def labels_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_json(path: Path, obj) -> None:
    """Write atomically: a result file is either complete or absent (an interrupted run is redone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- inputs


def teacher_info(ns) -> dict:
    """The teacher as used: its directory (read at run time, never copied), its adapter's sha256, the hash
    of its whole directory and, for the shipped teacher with the default guard, the id of the bundle
    exported from it (the bundle that filters the user data)."""
    from reftguard.training.distill import DistillConfig, teacher_dir, teacher_record

    root = teacher_dir(DistillConfig(teacher=ns.teacher))
    rec = teacher_record(root)
    rec["bundle_id"] = None
    if not ns.teacher and not ns.bundle:
        from reftguard.exporter.default_bundle import ensure_default_bundle as default_bundle

        rec["bundle_id"] = default_bundle().bundle_id
    elif ns.bundle and (Path(ns.bundle) / "refusal_feature.npy").is_file() and (root / "refusal_feature.npy").is_file():
        from reftguard.bundle import GuardBundle

        # a bundle exported from this teacher carries its refusal feature byte for byte
        if (Path(ns.bundle) / "refusal_feature.npy").read_bytes() == (root / "refusal_feature.npy").read_bytes():
            rec["bundle_id"] = GuardBundle.load(ns.bundle).bundle_id
    return rec


def teacher_path(ns) -> str:
    """The teacher directory to run (a record's `dir` is made portable, so it may not resolve from here)."""
    from reftguard.training.distill import DistillConfig, teacher_dir

    return str(teacher_dir(DistillConfig(teacher=ns.teacher)))


def current_teacher(ns) -> dict:
    from reftguard.training.distill import DistillConfig, teacher_dir, teacher_record

    return teacher_record(teacher_dir(DistillConfig(teacher=ns.teacher)))


def guard_bundle(ns) -> tuple[str, str]:
    """(path, bundle id) of the bundle that filters the user data."""
    if ns.bundle:
        from reftguard.bundle import GuardBundle

        return ns.bundle, GuardBundle.load(ns.bundle).bundle_id
    from reftguard.exporter.default_bundle import ensure_default_bundle as default_bundle

    b = default_bundle()
    return str(b.root), b.bundle_id


def scan_user_data(user: Path, out: Path, bundle: tuple[str, str]) -> dict:
    """Scan the user data with the guard, once per (user data, bundle): {rows, flag_rate, bundle_id,
    threshold, allowed}; a rerun with the same inputs reuses the earlier scan."""
    key = {"user_sha256": sha256(user), "bundle": list(bundle)}
    done = out / "summary.json"
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("key") == key and Path(prev["allowed"]).is_file():
            return prev
    from reftguard.clients.scan.runner import ScanConfig, run_scan

    t0 = time.time()
    scan = run_scan(ScanConfig(input=str(user), out=str(out), bundle=bundle[0], restart=True))
    summary = {"key": key, **{k: scan[k] for k in ("rows", "flag_rate", "bundle_id", "threshold")}, "allowed": str(out / scan["outputs"]["allowed"]),
               "seconds": round(time.time() - t0, 1)}
    write_json(done, summary)
    return summary


def make_data(seed: int, ns, size: dict, out: Path, run=None) -> dict:
    """The seed's data (make-data), once per (arguments): a rerun reuses it."""
    run = run or child
    data_dir = out / "data"
    args = ["make-data", "--data-dir", str(data_dir), "--reply-model", ns.student, "--data-seed", str(seed), *flags(size["data"])]
    done = data_dir / "make-data.done.json"
    names = ("user.jsonl", "task-eval.jsonl", "align.jsonl", "harmful-eval.jsonl", "benign-eval.jsonl")
    if done.is_file() and json.loads(done.read_text()).get("args") == args and all((data_dir / n).is_file() for n in names):
        return {"seconds": 0.0, "reused": True}
    timing = run(args, out / "make-data.log")
    write_json(done, {"args": args, "files": {n: sha256(data_dir / n) for n in names}})
    return timing


# ------------------------------------------------------------------------------------------ one seed


def run_seed(seed: int, ns, size: dict, out: Path, teacher: dict, bundle: tuple[str, str], run=None, scan=None) -> dict:
    """Every row of one seed; rows whose result file matches their fingerprint are reused, not rerun.
    `run`/`scan` replace the child process and the guard scan in tests."""
    run, scan = run or child, scan or scan_user_data
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timing = {"make_data": make_data(seed, ns, size, out, run)}
    data_dir = out / "data"
    sc = scan(data_dir / "user.jsonl", out / "scan", bundle)
    timing["scan"] = {"seconds": sc.get("seconds", 0.0)}
    users = {False: data_dir / "user.jsonl", True: Path(sc["allowed"])}
    records = {k: labels_of(p) for k, p in users.items()}
    f = size["align_fraction"]
    evals = {"task_eval": data_dir / "task-eval.jsonl", "harmful_eval": data_dir / "harmful-eval.jsonl", "benign_eval": data_dir / "benign-eval.jsonl"}
    eval_flags = [x for k, p in evals.items() for x in ("--" + k.replace("_", "-"), str(p))] + flags(size["eval"])
    eval_hashes = {k: sha256(p) for k, p in evals.items()}

    plan = [] if ns.no_context else [(k, CONTEXT[k]) for k in CONTEXT]
    plan += [(k, VARIANTS[k][0]) for k in ns.variant_keys]
    rows, ran = [], []
    for key, name in plan:
        variant = VARIANTS.get(key)
        uses_teacher = key == "teacher" or (variant and variant[1]["align_loss"] == "kl")
        fp = {"format": FORMAT, "key": key, "seed": seed, "student": ns.student, "eval": size["eval"], "inputs": dict(eval_hashes),
              "teacher": teacher["content_sha256"] if uses_teacher else None}
        cfg = None
        if variant:
            _, over, filtered = variant
            aligned = over["align_loss"] != "none"
            # (c)/(d) get extra alignment steps so every row sees the same number of user batches
            steps = round(size["user_steps"] / (1 - f)) if aligned else size["user_steps"]
            cfg = dict(student=ns.student, user_data=users[filtered], align_data=data_dir / "align.jsonl", out=out / key, steps=steps,
                       batch_size=size["batch_size"], align_batch_size=size["batch_size"], align_fraction=f if aligned else 0.0, seed=seed,
                       **({"teacher": ns.teacher} if ns.teacher else {}), **over)
            fp["distill"] = {k: str(v) for k, v in cfg.items() if k not in ("user_data", "align_data", "out", "teacher")}  # the teacher: by hash
            fp["inputs"] |= {"user": sha256(users[filtered]), **({"align": sha256(data_dir / "align.jsonl")} if aligned else {})}
        done = out / key / "result.json"
        if done.is_file():
            prev = json.loads(done.read_text())
            if prev.get("fingerprint") == fp:
                rows.append(prev["row"])
                print(f"seed {seed} {name}: finished earlier, reused ({done})", flush=True)
                continue
            print(f"seed {seed} {name}: {done} was made from other inputs; rerunning", flush=True)
        row = {"key": key, "name": name}
        if cfg:
            # a finished distill with the same inputs is reused too (an evaluation change does not retrain)
            trained_fp = {k: fp[k] for k in ("seed", "student", "distill", "inputs", "teacher")}
            marker = out / key / "distill.done.json"
            if marker.is_file() and (out / key / "student.json").is_file() and json.loads(marker.read_text()).get("fingerprint") == trained_fp:
                train = json.loads(marker.read_text())["run"]
                print(f"seed {seed} {name}: trained earlier, evaluating again", flush=True)
            else:
                marker.unlink(missing_ok=True)
                (out / key / "student.json").unlink(missing_ok=True)
                train = run(["distill", "--no-progress", *flags(cfg)], out / f"{key}.distill.log")
                write_json(marker, {"fingerprint": trained_fp, "run": train})
            summary = json.loads((out / key / "student.json").read_text())
            trained = records[cfg["user_data"] == users[True]]
            row |= {"user_rows": len(trained), "harmful_rows_trained": sum(r.get("label") == "harmful" for r in trained),
                    "general_rows_trained": sum(r.get("kind") == "general" for r in trained), "steps": cfg["steps"],
                    "batches": summary["batches"], "train_seconds": train["seconds"], "teacher_targets_seconds": summary["teacher_targets_seconds"],
                    "peak_rss_mb": train["peak_rss_mb"], "final": summary["final"]}
        model = str(out / key) if cfg else (teacher_path(ns) if key == "teacher" else ns.student)
        ev = run(["evaluate-model", "--model", model, "--eval-out", str(out / key / "eval.json"), *eval_flags], out / f"{key}.eval.log")
        res = json.loads((out / key / "eval.json").read_text())
        row |= {k: res.get(k) for k in ("harmful_score", "finetuning_accuracy", "refusal_rate", "no_content_rate", "benign_refusal_rate",
                                        "benign_refusal_rate_hard_negative", "benign_refusal_rate_other", "benign_ppl", "n_harmful", "n_task",
                                        "n_benign", "n_benign_hard_negative")}
        row["eval_seconds"] = ev["seconds"]
        if uses_teacher:
            now = ns.teacher_now()
            if now["content_sha256"] != teacher["content_sha256"]:
                raise RuntimeError(f"the teacher in {teacher['dir']} changed while seed {seed} {name} ran; rerun: finished rows are reused and "
                                   "every row that uses the teacher (or its bundle) is redone")
        rows.append(row)
        ran.append(key)
        write_json(done, {"fingerprint": fp, "row": row, "seed": seed, "teacher": teacher, "guard_bundle_id": bundle[1],
                          "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        print(f"seed {seed} {name}: HS {row['harmful_score']:.3f}  FA {row['finetuning_accuracy']:.3f}  benign refusal "
              f"{fmt(row['benign_refusal_rate'])}  benign ppl {fmt(row['benign_ppl'], 2)}  ({ev['seconds']:.0f}s)", flush=True)

    user = records[False]
    return {"quick": ns.quick, "size": size, "seed": seed, "student": ns.student, "rows": rows, "ran": ran, "timing": timing,
            "teacher": teacher, "user_data": {"rows": len(user), "task": sum(r.get("kind") == "task" for r in user),
                                              "general": sum(r.get("kind") == "general" for r in user),
                                              "harmful": sum(r.get("label") == "harmful" for r in user),
                                              "benign_removed": sum(r.get("label") == "benign" for r in user) - sum(r.get("label") == "benign" for r in records[True])},
            "scan": {k: sc[k] for k in ("rows", "flag_rate", "bundle_id", "threshold")},
            "total_seconds": round(time.time() - t_start, 1), "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def rejudge(result: dict, out: Path) -> dict:
    """Judge every row's saved replies with the current judge (so a judge change never needs retraining)."""
    from reftguard.training import judge
    from reftguard.training.model_eval import benign_metrics

    for row in result["rows"]:
        replies = labels_of(out / row["key"] / "eval.replies.jsonl")
        harmful = [r["reply"] for r in replies if r["set"] == "harmful"]
        row["harmful_score"] = judge.harmful_score(harmful)
        row["refusal_rate"] = judge.refusal_rate(harmful)
        row["no_content_rate"] = 1.0 - row["harmful_score"] - row["refusal_rate"]
        benign = [r for r in replies if r["set"] == "benign"]
        if benign:
            row |= benign_metrics(benign, [judge.verdict(r["reply"]) for r in benign])
    result["judge_agreement"] = judge.agreement(HAND_LABELS) if HAND_LABELS.is_file() else None
    return result


# --------------------------------------------------------------------------------------- aggregation


def mean_se(xs: list) -> dict:
    """Mean and standard error (sample standard deviation / sqrt(n)) of the values that are not None;
    the s.e. is None below two values."""
    v = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    n = len(v)
    if not n:
        return {"mean": None, "se": None, "n": 0}
    m = sum(v) / n
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1) / n) if n > 1 else None
    return {"mean": m, "se": se, "n": n}


def verdict(metric: str, d: dict, x: str, y: str) -> str:
    """Plain words for a paired difference x - y: better / worse beyond one s.e., or not."""
    if d["mean"] is None:
        return "no paired seeds"
    if d["se"] is None:
        return "one seed: no standard error"
    good = BETTER.get(metric, 0) * d["mean"] > 0
    if abs(d["mean"]) > d["se"]:
        return f"({x}) {'better' if good else 'worse'} than ({y}) beyond one s.e."
    return f"({x}) not different from ({y}) beyond one s.e."


def aggregate(per_seed: list[dict]) -> dict:
    """Per row: the per-seed values and mean ± s.e. of every metric; per pair (d)-(c), (d)-(b): the
    per-seed differences (seeds where both rows ran) with their mean ± s.e. and a verdict."""
    rows: dict[str, dict] = {}
    for r in per_seed:
        for row in r["rows"]:
            e = rows.setdefault(row["key"], {"key": row["key"], "name": row["name"], "per_seed": []})
            e["per_seed"].append({"seed": r["seed"], **{m: row.get(m) for m in METRICS}})
    for e in rows.values():
        e["seeds"] = [p["seed"] for p in e["per_seed"]]
        for m in METRICS:
            e[m] = mean_se([p[m] for p in e["per_seed"]])
    pairs = []
    for x, y in PAIRS:
        if x not in rows or y not in rows:
            continue
        a, b = ({p["seed"]: p for p in rows[k]["per_seed"]} for k in (x, y))
        seeds = sorted(set(a) & set(b))
        pair = {"pair": f"({x})-({y})", "x": x, "y": y, "seeds": seeds, "per_seed": [], "verdict": {}}
        for s in seeds:
            pair["per_seed"].append({"seed": s, **{m: (a[s][m] - b[s][m]) if a[s][m] is not None and b[s][m] is not None else None for m in BETTER}})
        for m in BETTER:
            pair[m] = mean_se([p[m] for p in pair["per_seed"]])
            pair["verdict"][m] = verdict(m, pair[m], x, y)
        pairs.append(pair)
    return {"rows": list(rows.values()), "pairs": pairs}


def prior_seeds(path: Path, size: dict, ns, teacher: dict) -> dict[int, dict]:
    """{seed: that seed's result} from an earlier seeds file, refused unless it measured the same thing."""
    a = json.loads(Path(path).read_text())
    theirs = {"teacher": a["teacher"]["content_sha256"], "student": a["student"], "size": a["size"], "quick": a["quick"]}
    ours = {"teacher": teacher["content_sha256"], "student": ns.student, "size": size, "quick": ns.quick}
    bad = [k for k in ours if theirs[k] != ours[k]]
    if bad:
        raise SystemExit(f"--prior {path}: its {', '.join(bad)} differ from this run's; rerun those seeds instead")
    by_seed = lambda key: {e["seed"]: {k: v for k, v in e.items() if k != "seed"} for e in a[key]}  # noqa: E731
    scan, users = by_seed("scan"), by_seed("user_data")
    return {e["seed"]: {"seed": e["seed"], "quick": a["quick"], "size": a["size"], "student": a["student"], "teacher": a["teacher"],
                        "scan": scan[e["seed"]], "user_data": users[e["seed"]], "rows": e["rows"], "ran": [],
                        "judge_agreement": a.get("judge_agreement"), "prior": str(path)}
            for e in a["per_seed_rows"]}


def summarize(per_seed: list[dict], ns, started: dict) -> dict:
    first = per_seed[0]
    teachers = {r["teacher"]["content_sha256"] for r in per_seed}
    return {"quick": first["quick"], "size": first["size"], "student": first["student"], "seeds": [r["seed"] for r in per_seed],
            "teacher": first["teacher"], "teacher_consistent": len(teachers) == 1,
            "scan": [{"seed": r["seed"], **r["scan"]} for r in per_seed], "user_data": [{"seed": r["seed"], **r["user_data"]} for r in per_seed],
            "judge_agreement": first.get("judge_agreement"), **aggregate(per_seed),
            "per_seed_rows": [{"seed": r["seed"], "rows": r["rows"]} for r in per_seed],
            "ran_now": {str(r["seed"]): r["ran"] for r in per_seed}, "prior": {str(r["seed"]): r["prior"] for r in per_seed if "prior" in r},
            "total_seconds": round(time.time() - started["t"], 1)}


# ------------------------------------------------------------------------------------------ rendering


def fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def short(h) -> str:
    return f"{h[:16]}…" if h else "-"


def pm(d: dict, digits: int = 3) -> str:
    if d["mean"] is None:
        return "-"
    return fmt(d["mean"], digits) + ("" if d["se"] is None else f" ± {fmt(d['se'], digits)}")


def render_seed(r: dict) -> str:
    """One seed's table (as before, plus the benign columns)."""
    s = r["scan"]["rows"]
    lines = [
        f"Student {r['student']}, seed {r['seed']}, {r['size']['user_steps']} user batches of {r['size']['batch_size']}"
        f"{' (QUICK: smoke sizes, not meaningful)' if r['quick'] else ''}. User data: {r['user_data']['task']} problems, "
        f"{r['user_data']['general']} general instructions, {r['user_data']['harmful']} poisoned rows. Guard scan: {s['flagged']} of {s['input']} "
        f"rows flagged (flag rate {r['scan']['flag_rate']:.3f}), {r['user_data']['benign_removed']} benign rows among them.", "",
        "| run | HS ↓ | refusal rate | no content | FA ↑ | benign refusal ↓ | benign ppl ↓ | harmful rows trained | batches user/align | train s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        b = row.get("batches")
        batches = f"{b['user']}/{b['align']}" if b else ""
        lines.append(f"| {row['name']} | {row['harmful_score']:.3f} | {row['refusal_rate']:.3f} | {row['no_content_rate']:.3f} | "
                     f"{row['finetuning_accuracy']:.3f} | {fmt(row.get('benign_refusal_rate'))} | {fmt(row.get('benign_ppl'), 2)} | "
                     f"{row.get('harmful_rows_trained', '')} | {batches} | "
                     f"{row.get('train_seconds', '')} | {row.get('peak_rss_mb', '')} |")
    n = r["rows"][0] if r["rows"] else {}
    lines += ["", f"HS on {n.get('n_harmful')} held-out harmful prompts (guard-dev), FA exact match on {n.get('n_task')} held-out problems, "
                  f"benign refusal on {n.get('n_benign')} held-out benign prompts ({n.get('n_benign_hard_negative')} contrast-dev hard negatives)."]
    t = r["teacher"]
    lines.append(f"Teacher: {t['dir']}, bundle {t.get('bundle_id') or '-'}, adapter sha256 {short(t['adapter_sha256'])}")
    if r.get("judge_agreement"):
        j = r["judge_agreement"]
        lines.append(f"Refusal judge vs hand labels on {j['n']} replies: {j['agreement']:.2f} agreement on comply-or-not "
                     f"({j['agreement_3way']:.2f} on the three-way verdict).")
    lines.append(f"Total wall time {r['total_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def render_seeds(a: dict) -> str:
    """The seeds table: mean ± s.e. per row, then the paired differences with a verdict each."""
    t, n = a["teacher"], len(a["seeds"])
    lines = [
        f"Student {a['student']}, seeds {', '.join(map(str, a['seeds']))} ({n}), {a['size']['user_steps']} user batches of "
        f"{a['size']['batch_size']}, alignment fraction {a['size']['align_fraction']}"
        f"{' (QUICK: smoke sizes, the numbers are not meaningful)' if a['quick'] else ''}. Mean ± standard error over seeds; "
        f"every seed draws new data, poison, held-out prompts, LoRA init and batch order.",
        f"Teacher: bundle {t.get('bundle_id') or '-'}, adapter sha256 {short(t['adapter_sha256'])}, directory hash "
        f"{short(t['content_sha256'])}{'' if a['teacher_consistent'] else ' (WARNING: not the same teacher in every seed)'}.",
    ]
    guards = {(e["bundle_id"], e["threshold"]) for e in a.get("scan", [])}
    if len(guards) > 1:  # e.g. the same teacher exported on two machines: ORT's float sums differ in the last digits
        lines[-1] += " Guard per seed: " + "; ".join(f"seed {e['seed']}: {e['bundle_id']} (threshold {e['threshold']:.7f})" for e in a["scan"]) + "."
    if a.get("prior"):
        lines[-1] += f" Seeds {', '.join(a['prior'])} are taken from {sorted(set(a['prior'].values()))[0]} (run earlier), not rerun."
    lines += ["", "| run | HS ↓ | FA ↑ | benign refusal ↓ | benign ppl ↓ | harmful refusal | seeds |", "|---|---|---|---|---|---|---|"]
    for e in a["rows"]:
        lines.append(f"| {e['name']} | {pm(e['harmful_score'])} | {pm(e['finetuning_accuracy'])} | {pm(e['benign_refusal_rate'])} | "
                     f"{pm(e['benign_ppl'], 2)} | {pm(e['refusal_rate'])} | {len(e['seeds'])} |")
    if a["pairs"]:
        lines += ["", "Paired differences (same seed), mean ± s.e.; per seed in brackets.", "",
                  "| difference | ΔHS | ΔFA | Δbenign refusal | Δbenign ppl |", "|---|---|---|---|---|"]
        for p in a["pairs"]:
            cells = []
            for m, digits in (("harmful_score", 3), ("finetuning_accuracy", 3), ("benign_refusal_rate", 3), ("benign_ppl", 2)):
                per = ", ".join(fmt(q[m], digits) for q in p["per_seed"])
                cells.append(f"{pm(p[m], digits)} [{per}]")
            lines.append(f"| {p['pair']} | " + " | ".join(cells) + " |")
        lines.append("")
        for p in a["pairs"]:
            v = p["verdict"]
            lines.append(f"- {p['pair']}: HS: {v['harmful_score']}; FA: {v['finetuning_accuracy']}; "
                         f"benign refusal: {v['benign_refusal_rate']}; benign ppl: {v['benign_ppl']}")
    lines.append(f"\nWall time {a['total_seconds']:.0f} s (rows finished earlier are reused, not rerun).")
    return "\n".join(lines) + "\n"


def plot_seeds(a: dict, path: Path) -> None:
    """HS against FA per row: mean with ± s.e. error bars, each seed as a faint dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, e in enumerate(a["rows"]):
        color = f"C{i}"
        pts = [(p["finetuning_accuracy"], p["harmful_score"]) for p in e["per_seed"] if p["finetuning_accuracy"] is not None]
        if pts:
            ax.scatter(*zip(*pts), color=color, alpha=0.3, s=14)
        fa, hs = e["finetuning_accuracy"], e["harmful_score"]
        if fa["mean"] is None or hs["mean"] is None:
            continue
        ax.errorbar(fa["mean"], hs["mean"], xerr=fa["se"] or 0, yerr=hs["se"] or 0, fmt="o", color=color, capsize=4, label=e["name"])
    ax.set_xlabel("Finetuning Accuracy (FA) ↑")
    ax.set_ylabel("Harmful Score (HS) ↓")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"HS vs FA, mean ± s.e. over {len(a['seeds'])} seeds{' (quick sizes)' if a['quick'] else ''}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ main


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke sizes (a few minutes on 2 cores per seed); numbers are not meaningful.")
    ap.add_argument("--out", default="runs/paper", help="Work directory (OUT/seed{S}/ per seed; reruns reuse finished rows).")
    ap.add_argument("--student", default="packaged:smollm2")
    ap.add_argument("--teacher", default="", help="Teacher directory ('' = the shipped default teacher, read at run time).")
    ap.add_argument("--bundle", default="", help="Guard bundle ('' = the embedded default bundle, exported from the shipped teacher).")
    ap.add_argument("--variants", default="", help="Comma-separated subset of " + ",".join(VARIANTS) + " (default: a,b,c,d).")
    ap.add_argument("--align-fraction", type=float, default=None, help="Override the fraction of alignment batches of (c) and (d).")
    ap.add_argument("--no-context", action="store_true", help="Skip the untouched-student and teacher rows.")
    ap.add_argument("--seeds", default="", help="Comma-separated seeds, e.g. 0,1,2 (default: --seed).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", action="store_true", help="Also write bench/results/paper_table_seeds{,_quick}.{json,md,png} "
                    "(one seed: also bench/results/paper_table{,_quick}.{json,md}).")
    ap.add_argument("--rejudge", action="store_true", help="Re-judge the saved replies of the seeds in --out with the current judge; no training.")
    ap.add_argument("--prior", default="", help="A paper_table_seeds*.json from an earlier run (another machine): its seeds are taken "
                    "from it instead of rerun, if its teacher (directory hash), student and sizes match this run's.")
    ns = ap.parse_args(argv)
    ns.seed_list = [int(x) for x in ns.seeds.split(",") if x.strip()] if ns.seeds else [ns.seed]
    ns.variant_keys = [k.strip() for k in (ns.variants or "a,b,c,d").split(",") if k.strip()]
    unknown = [k for k in ns.variant_keys if k not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {','.join(VARIANTS)}")
    ns.teacher_now = lambda: current_teacher(ns)
    return ns


def main(argv=None) -> int:
    ns = parse(argv)
    size = dict(QUICK if ns.quick else FULL)
    size["align_fraction"] = size["align_fraction"] if ns.align_fraction is None else ns.align_fraction
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    started = {"t": time.time()}
    per_seed = []
    if ns.rejudge:
        per_seed = [rejudge(json.loads((out / f"seed{s}" / "paper_table.json").read_text()), out / f"seed{s}") for s in ns.seed_list]
    else:
        teacher, bundle = teacher_info(ns), guard_bundle(ns)
        prior = prior_seeds(Path(ns.prior), size, ns, teacher) if ns.prior else {}
        for s in ns.seed_list:
            per_seed.append(prior[s] if s in prior else rejudge(run_seed(s, ns, size, out / f"seed{s}", teacher, bundle), out / f"seed{s}"))
    ran = [r for r in per_seed if "prior" not in r]  # seeds from --prior keep their own files where they ran
    for r in ran:
        write_json(out / f"seed{r['seed']}" / "paper_table.json", r)
        (out / f"seed{r['seed']}" / "paper_table.md").write_text(render_seed(r))
    agg = summarize(per_seed, ns, started)
    md = render_seeds(agg)
    write_json(out / "paper_table_seeds.json", agg)
    (out / "paper_table_seeds.md").write_text(md)
    plot_seeds(agg, out / "paper_table_seeds.png")
    if ns.results:
        res = ROOT / "bench" / "results"
        stem = res / ("paper_table_seeds_quick" if ns.quick else "paper_table_seeds")
        write_json(stem.with_suffix(".json"), agg)
        stem.with_suffix(".md").write_text(md)
        plot_seeds(agg, stem.with_suffix(".png"))
        if len(per_seed) == 1:
            one = res / ("paper_table_quick" if ns.quick else "paper_table")
            write_json(one.with_suffix(".json"), per_seed[0])
            one.with_suffix(".md").write_text(render_seed(per_seed[0]))
    for r in ran:
        print(render_seed(r))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
