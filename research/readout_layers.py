"""Is the layer a lever? The shipped teacher read at other layers, and at several layers at once.

research/readout_variants.py found that re-weighting the class means at layer l moves nothing (every variant's
R_l is within cosine 0.998 of the shipped one). This asks the other readout question: the same trained
teacher, R_L estimated at each layer L from the training files (difference of class means, midpoint
centre, as the exporter does), and the mean of the cosines over a few layers (each against its own R_L).
A multi-layer score would change the bundle contract (one cosine head per layer), so it is measured here
first.

Rule, written before any figure was computed: a readout other than the shipped layer is worth building
only if, on the calib halves, its mean AUROC over the three dev files beats the shipped readout's by at
least 0.002 and its recall at the served calibration (target FPR 0.02, hard negatives <= 0.02 on the pooled
calib halves) is no lower. Only then is it scored on the report halves (`--report NAME`).

    python -m research.readout_layers [--teacher reftguard/data/default_teacher] [--report NAME]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from research.readout_variants import TRAIN, served_calibration
from research.teacher_select import DEV, file_metrics, portable_command
from research.teacher_vs_zero import slug

from reftguard.data import load_labeled, packaged, split_of
from reftguard.features import cosine_scores, refusal_feature

LAYERS = tuple(range(8, 21, 2))
COMBOS = {"mean14-18": (14, 16, 18), "mean12-20": (12, 14, 16, 18, 20), "mean16-20": (16, 18, 20)}


def states(teacher_dir: Path, files: tuple[str, ...], top: int, cache: Path) -> dict[str, np.ndarray]:
    """{file: [n, top, hidden]} last-token states after layers 1..top, wrapped and cut as the guard reads them."""
    if cache.is_file():
        z = np.load(cache)
        if all(f in z.files for f in files) and z[files[0]].shape[1] >= top:
            return {f: z[f] for f in files}
    from reftguard.modeling.teacher import Teacher
    from reftguard.training.fit import collect_states, encode_texts

    t = Teacher.load(teacher_dir)
    lm, tok = t.load_model()
    lm.eval()
    out = {}
    for f in files:
        ids = encode_texts(t.tokenizer_dir, t.prompt_format, t.max_tokens, [p.text for p in load_labeled(packaged(f))])
        out[f] = collect_states(lm, ids, top, 32, tok.pad_token_id).astype(np.float16)
        print(f"states {f}: {out[f].shape}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def readouts(train_h: np.ndarray, y: np.ndarray) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """name -> [(layer, R_L, centre)]; the score is the mean of the cosines over the list."""
    per = {L: refusal_feature(train_h[:, L - 1].astype(np.float32), y, "midpoint") for L in LAYERS}
    out = {f"layer{L}": [(L, *per[L])] for L in LAYERS}
    out.update({name: [(L, *per[L]) for L in ls] for name, ls in COMBOS.items()})
    return out


def score(h: np.ndarray, parts: list[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.mean([cosine_scores(h[:, L - 1].astype(np.float32), r, c) for L, r, c in parts], axis=0)


def evaluate(parts, dev: dict, half: str) -> dict:
    row, pooled = {"files": {}}, []
    for f, (h, y, kinds, halves) in dev.items():
        m = halves == half
        s = score(h[m], parts)
        k = [kd for kd, keep in zip(kinds, m) if keep]
        row["files"][f] = file_metrics(s, y[m], k)
        pooled.append((s, y[m], k))
    row["mean_auroc"] = float(np.mean([v["auroc"] for v in row["files"].values()]))
    row["served_calibration_recall"], row["served_calibration_fpr"] = served_calibration(pooled)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="reftguard/data/default_teacher")
    p.add_argument("--cache", default="runs/readout_layers")
    p.add_argument("--out", default="research/results/readout_layers.json")
    p.add_argument("--report", action="append", default=[], help="Also score this readout on the report halves (after the rule).")
    ns = p.parse_args(argv)
    from reftguard.modeling.teacher import Teacher

    t = Teacher.load(Path(ns.teacher))
    hs = states(Path(ns.teacher), TRAIN + DEV, max(LAYERS), Path(ns.cache) / f"{slug(ns.teacher)}.npz")
    y = np.concatenate([[q.label for q in load_labeled(packaged(f))] for f in TRAIN])
    train_h = np.concatenate([hs[f] for f in TRAIN])
    dev = {}
    for f in DEV:
        ps = load_labeled(packaged(f))
        dev[f] = (hs[f], np.array([q.label for q in ps]), [q.kind for q in ps], np.array([split_of(q) for q in ps]))
    rows, shipped = {}, f"layer{t.layer}"
    for name, parts in readouts(train_h, y).items():
        rows[name] = {"layers": [L for L, _, _ in parts], "calib": evaluate(parts, dev, "calib")}
        if name in ns.report or name == shipped:
            rows[name]["report"] = evaluate(parts, dev, "report")
        c = rows[name]["calib"]
        print(f"{name:10s} calib mean AUROC {c['mean_auroc']:.4f}  served recall {c['served_calibration_recall']:.3f}  " + "  ".join(
            f"{f.split('.')[0]} {m['auroc']:.4f}/{m['recall_at_1pct_fpr']:.3f}" for f, m in c["files"].items()))
    base = rows[shipped]["calib"]
    for r in rows.values():
        c = r["calib"]
        r["passes_rule"] = bool(c["mean_auroc"] >= base["mean_auroc"] + 0.002 and c["served_calibration_recall"] >= base["served_calibration_recall"])
    Path(ns.out).write_text(json.dumps({"teacher": portable_command(t), "shipped_layer": t.layer, "train_files": list(TRAIN),
                                        "rule": "calib mean AUROC >= shipped + 0.002 and served recall >= shipped",
                                        "readouts": rows}, indent=1) + "\n")
    print("passes the rule:", [n for n, r in rows.items() if r["passes_rule"]] or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
