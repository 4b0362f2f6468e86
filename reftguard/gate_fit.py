"""`reftguard fit-gate`: a second reading that a request must also pass to be FLAGged.

R_l's score ranks some prompts that only sound unsafe above most harmful ones ("How do I find a therapist I
can afford?"); no threshold separates them. The gate reads the graph's `tail_state` (layer l/2's mean over the
turn's last 32 tokens: what the request at the end of a turn is about, not a context passage before it;
research/flag_gate_tail.py) with a shrinkage-LDA direction fitted on labeled training prompts, harmful against
benign (reftguard.features.shrinkage_feature). A user turn over its flag threshold whose gate score is not
over the gate threshold is not FLAGged: it goes to REVIEW (never ALLOW), so FLAG-or-REVIEW recall, the band and
an old client's outcome (REVIEW reaches it as FLAG) do not change. research/flag_gate_tail.py: on the calib half,
hard negatives FLAGged 1.7% -> 0.7% at 97% of R_l's FLAG kept.

The gate threshold keeps `keep` of the harmful calibration prompts that the bundle's flag threshold FLAGs, so
fit the gate after `calibrate`. With `review_keep` the gate also gets a review edge: a request in the review band
whose gate score is not over it is ALLOWed (research/review_gate.py: on the calib half, benign prompts sent to
REVIEW or FLAG 7.5% -> 4.7% at the same recall); `calibrate` run again then lowers the band's edge until FLAG or
REVIEW reaches its recall target under that rule. It is written to `flag_gate.npy` ([2, hidden]: direction, centre) and the
manifest's `flag_gate`; the bundle is re-sealed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.config import option
from reftguard.data import data_hash, load_labeled, select_split
from reftguard.features import cosine_scores, shrinkage_feature
from reftguard.role_fit import turn_states

log = logging.getLogger("reftguard.gate")

FLAG_GATE = "flag_gate.npy"


@dataclass
class FitGateConfig:
    bundle: str = option("bundle", "Calibrated guard bundle whose graph has a `tail_state` output (re-sealed in place with the gate).")
    data: list = option([], "Labeled training prompts (harmful/benign) the gate's direction is fitted on. Never pass dev data here.")
    calib_data: list = option([], "Labeled prompts the gate threshold is set on (e.g. the calibration files).")
    split: str = option("calib", "Half of --calib-data to set the threshold on ('report' stays held out).", choices=("all", "calib", "report"))
    shrink: float = option(0.03, "Covariance shrinkage of the direction (0.03 won 5-fold CV AUROC on the teacher's training files, research/flag_gate.py).")
    keep: float = option(0.97, "Share of the harmful calibration prompts over the flag threshold that stay FLAGged; the rest go to REVIEW.")
    review_keep: float = option(0.0, "Also gate the review band: a request in the band is REVIEWed only if its gate score is over the edge that keeps this share of all harmful calibration prompts (e.g. 0.98), else ALLOWed. Run `calibrate` again after: it sets the band's lower edge under this rule. 0: the band is the score's alone.")


def gate_scores(bundle: GuardBundle, texts: list[str], gate: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """cos(tail_state - centre, direction) of each text read as a user turn."""
    return cosine_scores(turn_states(bundle, texts, output=bundle_io.TAIL), *gate)


def keeping(scores: np.ndarray, keep: float) -> float:
    """The highest threshold under which at least `keep` of `scores` still pass (strict >, as every threshold)."""
    return float(np.sort(scores)[int(np.floor((1 - keep) * len(scores)))] - 1e-6)


def fit_gate(cfg: FitGateConfig) -> GuardBundle:
    from reftguard.calibration import score_prompts

    if not 0 < cfg.keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], got {cfg.keep}")
    if not 0 <= cfg.review_keep <= 1:
        raise ValueError(f"--review-keep must be in [0, 1] (0: no review edge), got {cfg.review_keep}")
    bundle = GuardBundle.load(cfg.bundle)
    if not bundle.manifest.get("tail_tokens"):
        raise ValueError(f"bundle {bundle.bundle_id} has no `tail_state` output (exported before it, or with --topic-layer 0); re-export it")
    train = load_labeled(cfg.data)
    y = np.array([p.label for p in train])
    gate = shrinkage_feature(turn_states(bundle, [p.text for p in train], output=bundle_io.TAIL), y, cfg.shrink)
    cal = [p for p in select_split(load_labeled(cfg.calib_data), cfg.split) if p.label == 1 and p.role == "user"]  # requests only
    over = np.asarray(score_prompts(bundle, cal)) > bundle.threshold
    if not over.any():
        raise ValueError(f"no harmful prompt of --calib-data ({cfg.split} half) is over the flag threshold: calibrate first")
    every = gate_scores(bundle, [p.text for p in cal], gate)
    threshold = keeping(every[over], cfg.keep)
    kept = float(np.mean(every[over] > threshold))
    np.save(bundle.root / FLAG_GATE, np.stack(gate).astype(np.float32), allow_pickle=False)
    manifest = dict(bundle.manifest)
    manifest["flag_gate"] = {"file": FLAG_GATE, "input": bundle_io.TAIL, "threshold": threshold, "shrink": cfg.shrink, "keep": cfg.keep,
                             "data": [Path(d).name for d in cfg.data], "data_hash": data_hash(train), "n_harmful": int(y.sum()),
                             "n_benign": int(len(y) - y.sum()), "calib_data": [Path(d).name for d in cfg.calib_data], "split": cfg.split,
                             "n_flagged_harmful": int(over.sum()), "kept": kept}
    if cfg.review_keep:
        manifest["flag_gate"] |= {"review_keep": cfg.review_keep, "review_threshold": keeping(every, cfg.review_keep), "n_harmful_calib": len(cal)}
        log.info("review edge %.4f keeps %.3f of %d harmful calib prompts in the band; recalibrate to set the band's lower edge",
                 manifest["flag_gate"]["review_threshold"], cfg.review_keep, len(cal))
    log.info("flag gate from %d harmful / %d benign prompts; threshold %.4f keeps %.3f of %d FLAGged harmful calib prompts",
             y.sum(), len(y) - y.sum(), threshold, kept, over.sum())
    return bundle.reseal(manifest)
