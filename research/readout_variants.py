"""Is the readout a lever? The same trained teacher, its R_l (and centre) estimated in other ways from the
training files, each scored on the calibration half of every dev file.

The issue behind #13 asks to "estimate R_l with the contrast set". Every variant is a difference of class
means (the method's R_l), so the bundle contract (cosine against R_l) is unchanged; they differ only in
which training prompts the means are taken over and how they are weighted:

  shipped        the teacher's own R_l (800 balanced fit-split prompts, half of the benign ones hard negatives)
  all            every training prompt, unweighted
  kind_bal       mean of per-`kind` means on each side (rare kinds such as hard negatives weigh as much as chat)
  file_bal       mean of per-file means on each side
  contrast_only  contrast-train.jsonl alone (harmful vs benign prompts that share surface words)
  mixA           unit(all) * (1 - A) + unit(contrast_only) * A

Columns as in research/teacher_select.py (threshold-free, calib halves only), plus the recall left at the
served calibration (target FPR 0.02, hard negatives <= 0.02 on the pooled calib halves). Layer states are
cached per teacher, so a rerun only redoes the numpy.

    python -m research.readout_variants --teacher reftguard/data/default_teacher --out research/results/readout_variants.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from research.teacher_select import DEV, file_metrics, portable_command, teacher_states
from research.teacher_vs_zero import slug

from reftguard import evaluation
from reftguard.data import TEACHER_TRAIN_FILES, load_labeled, packaged, split_of
from reftguard.default_bundle import RECIPE
from reftguard.features import cosine_scores, refusal_feature

TRAIN = tuple(TEACHER_TRAIN_FILES) + ("persona-train.jsonl",)


def states(teacher_dir: Path, files: tuple[str, ...], cache: Path) -> dict[str, np.ndarray]:
    if cache.is_file():
        z = np.load(cache)
        if all(f in z.files for f in files):
            return {f: z[f] for f in files}
    from reftguard.modeling.teacher import Teacher

    t = Teacher.load(teacher_dir)
    lm, tok = t.load_model()
    out = {f: teacher_states(t, lm, tok, [p.text for p in load_labeled(packaged(f))]) for f in files}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def balanced_feature(h: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Difference of the class means, each the mean of its groups' means; midpoint centre."""
    def side(lab):
        return np.mean([h[(y == lab) & (groups == g)].mean(0) for g in sorted(set(groups[y == lab]))], axis=0)

    mh, mb = side(1), side(0)
    return mh - mb, (mh + mb) / 2.0


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def variants(h, y, kinds, files, shipped) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    v = {"shipped": shipped, "all": refusal_feature(h, y, "midpoint"), "kind_bal": balanced_feature(h, y, kinds),
         "file_bal": balanced_feature(h, y, files)}
    ct = files == "contrast-train.jsonl"
    v["contrast_only"] = refusal_feature(h[ct], y[ct], "midpoint")
    for a in (0.25, 0.5):
        (r1, c1), (r2, c2) = v["all"], v["contrast_only"]
        v[f"mix{a}"] = ((1 - a) * unit(r1) + a * unit(r2), (1 - a) * c1 + a * c2)
    return v


def served_calibration(pooled: list[tuple[np.ndarray, np.ndarray, list[str]]]) -> tuple[float, float]:
    """(recall, FPR) at the default bundle's calibration rule applied to pooled (scores, labels, kinds)."""
    s, y, kinds = np.concatenate([x[0] for x in pooled]), np.concatenate([x[1] for x in pooled]), sum((x[2] for x in pooled), [])
    cal = RECIPE["calibration"]
    thr, _ = evaluation.choose_threshold(s, y, kinds, target_fpr=cal["target_fpr"], kind_fpr=evaluation.parse_kind_limits(cal["max_fpr_kind"]))
    return float(np.mean(s[y == 1] > thr)), float(np.mean(s[y == 0] > thr))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="reftguard/data/default_teacher")
    p.add_argument("--cache", default="runs/readout_variants")
    p.add_argument("--out", default="research/results/readout_variants.json")
    ns = p.parse_args(argv)
    from reftguard.modeling.teacher import Teacher

    t = Teacher.load(Path(ns.teacher))
    hs = states(Path(ns.teacher), TRAIN + DEV, Path(ns.cache) / f"{slug(ns.teacher)}.npz")
    train = {f: load_labeled(packaged(f)) for f in TRAIN}
    h = np.concatenate([hs[f] for f in TRAIN])
    y = np.array([p.label for f in TRAIN for p in train[f]])
    kinds = np.array([p.kind for f in TRAIN for p in train[f]])
    files = np.array([f for f in TRAIN for _ in train[f]])
    calib = {}
    for f in DEV:
        ps = load_labeled(packaged(f))
        m = np.array([split_of(q) == "calib" for q in ps])
        calib[f] = (hs[f][m], np.array([q.label for q in ps])[m], [q.kind for q, k in zip(ps, m) if k])
    rows = {}
    for name, (r, c) in variants(h, y, kinds, files, (t.refusal_feature, t.center)).items():
        row = {"cos_to_shipped": float(unit(r) @ unit(t.refusal_feature)), "files": {}}
        pooled = []
        for f, (hf, yf, kf) in calib.items():
            s = cosine_scores(hf, r, c)
            row["files"][f] = file_metrics(s, yf, kf)
            pooled.append((s, yf, kf))
        row["served_calibration_recall"] = served_calibration(pooled)[0]
        rows[name] = row
        print(f"{name:14s} cos {row['cos_to_shipped']:.3f} recall@served {row['served_calibration_recall']:.3f}  " + "  ".join(
            f"{f.split('.')[0]} {m['auroc']:.4f}/{m['recall_at_1pct_fpr']:.3f}" for f, m in row["files"].items()))
    Path(ns.out).write_text(json.dumps({"teacher": portable_command(t),
                                        "split": "calib", "train_files": list(TRAIN), "variants": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
