"""Can the flag gate's reading also narrow the review band?

The band's lower edge is recall-first on R_l alone: at recall 0.98 on the calib half it sends 9.3% of the report
half's benign prompts to REVIEW or FLAG (goal <= 8%). The flag gate (research/flag_gate_tail.py, in the default)
reads the request's last 32 tokens at layer 8 with its own probe, CV AUROC 0.978 on the training files. A
request in the band that the gate reads as clearly benign could be ALLOWed; requests over the flag threshold keep
at least REVIEW as now, so only the band changes.

The band becomes two edges chosen together on the calib half: REVIEW needs R_l over a (lower) review edge *and*
the gate's cosine over a review-gate edge. For each review-gate edge at a quantile of the calib half's harmful
gate cosines (keep 100%, 99.5%, 99%, 98%, 97%, 95%), the review edge is the highest that keeps FLAG-or-REVIEW
recall >= 0.98 on the calib half (none where it cannot); the pair with the fewest calib benign prompts in
REVIEW-or-FLAG is taken.

Rule, written before the numbers: adopt iff the calib half's benign REVIEW-or-FLAG share falls by >= 1.0 point
against R_l's band alone at the same recall target (0.98). The report half is only reported.

Result (research/results/review_gate.json, bundle rg-0798afb3e4fb21a92f0f): adopted, keep 0.98 (keep 0.95 cannot reach
the recall on calib). Calib half: benign in REVIEW or FLAG 7.5% -> 4.7% at recall 0.981 (hard negatives 7.3% -> 5.5%);
report half, only reported: 9.3% -> 7.0%, recall 0.987 -> 0.981. FLAG does not change. In the default as
`fit-gate --review-keep 0.98` with the band recalibrated (reftguard/gate_fit.py).

    OMP_NUM_THREADS=2 python -m research.review_gate [--bundle DIR] [--out research/results/review_gate.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reftguard.calibration import review_band, score_prompts
from reftguard.data import CALIBRATION_FILES, load_labeled, packaged, select_split
from reftguard.features import cosine_scores
from bench.curation import verdict_rates
from research.cli import bundle_of, parser
from research.role_features import cached

TARGET = 0.98
KEEPS = (1.0, 0.995, 0.99, 0.98, 0.97, 0.95)


def _saved(path: Path, n: int, compute) -> np.ndarray:
    if (hit := cached(path, n)) is not None:
        return hit
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(compute(), dtype=np.float32))
    return np.load(path)


def rates(s, g, y, kinds, flag, gate_t, review, review_gate) -> dict:
    """`decide` for one user turn (bench.curation.verdict_rates), the band also needing the gate's cosine over `review_gate`."""
    return verdict_rates(s, y, kinds, flag, review, g > gate_t, g > review_gate)


def main(argv=None) -> int:
    args = parser(__doc__, "research/results/review_gate.json", "runs/rg").parse_args(argv)
    bundle, cache = bundle_of(args), Path(args.cache)
    gate = bundle.flag_gate()
    from reftguard.role_fit import turn_states

    rows = load_labeled([str(packaged(f)) for f in CALIBRATION_FILES])
    s = _saved(cache / f"{bundle.bundle_id}-scores.npy", len(rows), lambda: score_prompts(bundle, rows))
    st = _saved(cache / f"{bundle.bundle_id}-{gate.input}.npy", len(rows), lambda: turn_states(bundle, [p.text for p in rows], output=gate.input))
    g = cosine_scores(st, gate.direction, gate.centre)
    y, kinds = np.array([p.label for p in rows]), [p.kind for p in rows]
    ids = np.array([p.id for p in rows])
    half = {h: np.isin(ids, [p.id for p in select_split(rows, h)]) for h in ("calib", "report")}
    c, r = half["calib"], half["report"]
    flag = bundle.threshold
    kc = [k for k, m in zip(kinds, c) if m]
    kr = [k for k, m in zip(kinds, r) if m]
    base_edge = review_band(s[c], y[c], flag, TARGET)["threshold"]
    out = {"bundle_id": bundle.bundle_id, "rule": __doc__.split("Rule, written before the numbers: ")[1].split("\n\n")[0],
           "target_recall": TARGET, "flag_threshold": flag, "gate_threshold": gate.threshold,
           "R_l band": {"review": base_edge, "calib": rates(s[c], g[c], y[c], kc, flag, gate.threshold, base_edge, -np.inf),
                        "report": rates(s[r], g[r], y[r], kr, flag, gate.threshold, base_edge, -np.inf)}, "pairs": []}
    for keep in KEEPS:
        rg = float(np.quantile(g[c & (y == 1)], 1 - keep)) - 1e-6 if keep < 1 else -np.inf
        try:  # the edge as `calibrate` sets it under a review edge (written after this script's first run)
            edge = review_band(s[c], y[c], flag, TARGET, banded=g[c] > rg)["threshold"]
        except ValueError:  # this review edge keeps too few harmful prompts to reach the recall
            continue
        out["pairs"].append({"keep": keep, "review_gate": rg, "review": edge,
                             "calib": rates(s[c], g[c], y[c], kc, flag, gate.threshold, edge, rg),
                             "report": rates(s[r], g[r], y[r], kr, flag, gate.threshold, edge, rg)})
    best = min(out["pairs"], key=lambda p: p["calib"]["benign_review_or_flag"])
    out["chosen"] = best["keep"]
    out["adopt"] = bool(out["R_l band"]["calib"]["benign_review_or_flag"] - best["calib"]["benign_review_or_flag"] >= 0.01)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")
    for p in [{"keep": "R_l", **out["R_l band"]}] + out["pairs"]:
        print(p["keep"], {h: {k: round(v, 4) for k, v in p[h].items()} for h in ("calib", "report")})
    print("chosen", out["chosen"], "adopt", out["adopt"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
