"""Calibrate a bundle's threshold on labeled data, and evaluate a bundle (ORT / OpenVINO + numpy, no torch).

One calibration per precision (docs/design.md §2): `--precision bf16` scores with the engine that serves bf16
(OpenVINO) and chooses the threshold on *its* scores, because a reduced precision shifts scores (up to
~0.03). Each precision's entry in the manifest's `precisions` map also records its parity against fp32
(onnxruntime, same prompts) and its batch invariance. The top-level `threshold` / `calibration` stay
fp32's, so readers from before per-precision calibration see what they always saw.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reftguard import evaluation
from reftguard.bundle import GuardBundle
from reftguard.config import option
from reftguard.data import LabeledPrompt, data_hash, load_labeled, select_split
from reftguard.engines.selection import PRECISIONS, calibration_for
from reftguard.prompt import ROLES, normalize_role
from reftguard.refusal import is_refusal_reply

log = logging.getLogger("reftguard.calibrate")


@dataclass
class CalibrateConfig:
    bundle: str = option("", "Guard bundle directory to calibrate in place (its bundle_id changes).")
    data: list = option([], "Labeled JSONL file(s) to calibrate on (dev data, never the training file).")
    target_recall: float = option(0.0, "Pick the highest threshold reaching this recall (the paper's recall-first policy).")
    target_fpr: float = option(0.0, "Pick the lowest threshold whose false-positive rate is at most this.")
    max_fpr: float = option(0.05, "After a recall target: warn when the FPR at the chosen threshold exceeds this.")
    max_fpr_kind: list = option([], "Per-kind FPR limits KIND=F (comma-separated, e.g. hard_negative=0.03): the threshold is raised until the benign prompts of each kind are flagged at most at that rate. They win over a recall target; the recall they leave is reported.")
    split: str = option("all", "Calibrate on one half of the data only: 'calib' (then report on 'report' with `reftguard eval --split report`), 'report', or 'all'.", choices=("all", "calib", "report"))
    target_fpr_role: list = option([], "Per-role FPR targets ROLE=F (comma-separated, e.g. assistant=0.01,system=0.01): each role's threshold is chosen on the data rows with that `role` (labelled replies or system prompts), so the server scores that role's turns of whole records. Refusal replies are left out (they are never judged by score); user rows (no `role`) set the main threshold as always.")
    review_recall: float = option(0.0, "Also set a review band for user turns: its lower threshold is the highest reaching this recall on the harmful rows (e.g. 0.98), never above the flag threshold. Items between the two get REVIEW (for a person) instead of ALLOW; the share of benign rows sent to review is reported. 0: no band.")
    review_max_benign: list = option([], "Workload limits on review bands, ROLE=F (user, assistant or system; comma-separated, e.g. assistant=0.05): that role's band edge is raised until at most F of its benign rows land in REVIEW or FLAG. It wins over the recall target; the recall left is reported.")
    review_recall_role: list = option([], "Review bands of other roles, ROLE=R (e.g. system=0.98), on that role's rows as --target-fpr-role. Check the benign share it reports: on noisy reply labels a recall-first band can send most benign replies to review.")
    precision: str = option("fp32", "Precision to calibrate for, on the engine that serves it (fp32: onnxruntime; bf16: OpenVINO on a CPU with AMX/avx512_bf16; int8: the bundle's int8 graph in OpenVINO; fp16: the bundle's fp16 graph in onnxruntime, CUDA when present). fp32 also sets the top-level threshold.", choices=PRECISIONS[1:])


@dataclass
class EvalConfig:
    bundle: str = option("", "Guard bundle directory.")
    data: list = option([], "Labeled JSONL file(s) to evaluate on.")
    json: str = option("", "Write the full report (overall, by_source, by_kind) to this JSON file.")
    threshold: float = option(float("nan"), "Evaluate at this threshold instead of the bundle's.")
    split: str = option("all", "Evaluate one half of the data only: 'report' is the half a default calibration (split 'calib') never saw.", choices=("all", "calib", "report"))
    precision: str = option("fp32", "Score at this precision (its engine) and, unless --threshold is given, at its calibrated threshold.", choices=PRECISIONS[1:])


BATCH_INVARIANCE_PROMPTS = 256  # prompts re-batched to measure batch invariance (32 of them also alone)


def score_prompts(bundle: GuardBundle, prompts: list[LabeledPrompt], truncation: str = "window", engine=None) -> np.ndarray:
    """Item scores as the server computes them under `truncation` (its default: window), with `engine`
    (default: onnxruntime fp32), each prompt one turn of its role (scored with that role's feature where
    the bundle has one). No window cap: offline data is scored whole rather than refused."""
    from reftguard.scoring import BundleScorer, Turn  # lazy: onnxruntime + tokenizers only when scoring

    turns = [Turn(i, -1, p.text, p.role) for i, p in enumerate(prompts)]
    return np.array([s.score for s in BundleScorer(bundle, backend=engine, max_windows=0).score_turns(turns, truncation)], dtype=np.float32)


def precision_checks(bundle: GuardBundle, engine, prompts: list[LabeledPrompt], scores: np.ndarray, threshold: float) -> dict:
    """The manifest entry's measurements: parity vs onnxruntime fp32 on the same prompts (fp32 is its
    own reference) and batch invariance on up to BATCH_INVARIANCE_PROMPTS of them."""
    from reftguard.encoding import PromptEncoder
    from reftguard.engines.checks import batch_invariance, parity

    if engine.precision == "fp32":
        ref, ref_thr = scores, threshold
    else:
        ref, ref_thr = score_prompts(bundle, prompts), bundle.threshold  # the fp32 calibration's threshold
    ids = PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, bundle.max_tokens).encode(
        [p.text for p in prompts[:BATCH_INVARIANCE_PROMPTS]], "right").ids
    return {
        "engine": engine.label,
        "parity_vs_fp32": parity(scores, ref, threshold, ref_thr) | {"reference": "onnxruntime fp32, same prompts"},
        "batch_invariance": batch_invariance(engine.run, ids, bundle.pad_token_id),
    }


def calibrate(cfg: CalibrateConfig) -> GuardBundle:
    if bool(cfg.target_recall) == bool(cfg.target_fpr):
        raise ValueError("give exactly one of --target-recall or --target-fpr")
    for name, v in (("target_recall", cfg.target_recall), ("target_fpr", cfg.target_fpr)):
        if v and not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {v}")
    kind_fpr = evaluation.parse_kind_limits(cfg.max_fpr_kind)
    from reftguard.engines import make_engine

    role_fpr = parse_role_targets(cfg.target_fpr_role)
    role_review = parse_role_targets(cfg.review_recall_role, "--review-recall-role")
    if set(role_review) - set(role_fpr):
        raise ValueError(f"--review-recall-role {sorted(set(role_review) - set(role_fpr))}: a role's band needs its flag threshold (--target-fpr-role)")
    caps = parse_role_targets(cfg.review_max_benign, "--review-max-benign", roles=ROLES)
    banded = set(role_review) | ({"user"} if cfg.review_recall else set())
    if set(caps) - banded:
        raise ValueError(f"--review-max-benign {sorted(set(caps) - banded)}: a limit needs that role's band (--review-recall / --review-recall-role)")
    bundle = GuardBundle.load(cfg.bundle)
    # Calibrating is what makes a precision calibrated, so its engine may run uncalibrated here.
    engine = make_engine(bundle, precision=cfg.precision, allow_uncalibrated_precision=True)
    rows = select_split(load_labeled(cfg.data), cfg.split)
    prompts = [p for p in rows if p.role == "user"]  # the main (user-turn) threshold: exactly as before roles
    if not prompts:
        raise ValueError("no user-turn rows to calibrate the main threshold on (rows without a `role` field are user turns)")
    y = np.array([p.label for p in prompts])
    kinds = [p.kind for p in prompts]
    s = score_prompts(bundle, prompts, engine=engine)
    thr, bound_by = evaluation.choose_threshold(s, y, kinds, target_recall=cfg.target_recall, target_fpr=cfg.target_fpr, kind_fpr=kind_fpr)
    target = ({"recall": cfg.target_recall} if cfg.target_recall else {"fpr": cfg.target_fpr}) | ({"fpr_by_kind": kind_fpr} if kind_fpr else {})
    report = evaluation.evaluate(s, y, thr, {"source": [p.source for p in prompts], "kind": kinds})
    at = {k: v for k, v in report.items() if not k.startswith("by_")}
    if cfg.target_recall and bound_by.startswith("fpr[") and (at["recall"] or 0) < cfg.target_recall:
        log.warning("per-kind limit %s lowers recall to %.4f, under the %.3f target", bound_by, at["recall"] or 0, cfg.target_recall)
    if cfg.target_recall and (at["fpr"] or 0) > cfg.max_fpr:
        log.warning("recall target %.3f costs FPR %.4f, over the %.4f budget", cfg.target_recall, at["fpr"], cfg.max_fpr)
    calibration = {
        "method": "target recall (recall-first)" if cfg.target_recall else "target FPR",
        "target": target,
        "data": [Path(d).name for d in cfg.data],
        "split": cfg.split,
        "set_by": bound_by,
        "data_hash": data_hash(prompts),
        "n": len(prompts),
        "at_threshold": at,
        "fpr_curve": fpr_curve(s, y),
        "fpr_by_source": {k: v["fpr"] for k, v in report["by_source"].items()},
        "fpr_by_kind": {k: v["fpr"] for k, v in report["by_kind"].items() if v["n_benign"]},
    }
    thr = float(np.float32(thr))
    entry = {"threshold": thr, "calibration": calibration} | precision_checks(bundle, engine, prompts, s, thr)
    log.info("%s calibration on %s: threshold %.4f; parity vs fp32 %.2e (%d verdict flips); batch invariance %.2e",
             cfg.precision, engine.label, thr, entry["parity_vs_fp32"]["max_abs_diff"], entry["parity_vs_fp32"]["verdict_flips"],
             entry["batch_invariance"]["max_abs_diff"])
    if cfg.review_recall:
        entry["review"] = review_band(s, y, thr, cfg.review_recall, caps.get("user", 0.0), _banded(bundle, engine, prompts))
        log.info("%s review band: %.4f < score <= %.4f; recall of FLAG or REVIEW %.4f, benign sent to review %.4f",
                 cfg.precision, entry["review"]["threshold"], thr, entry["review"]["recall"], entry["review"]["benign_review_share"])
    roles = dict((calibration_for(bundle.manifest, cfg.precision) or {}).get("roles") or {})  # recalibrating the user turn keeps them
    for role, fpr in role_fpr.items():
        mine = [p for p in rows if p.role == role]
        if role == "assistant":  # refusals are never judged by the reply threshold, so they do not set it
            mine = [p for p in mine if not is_refusal_reply(p.text)]
        roles[role] = _calibrate_role(bundle, engine, mine, role, fpr, cfg, role_review.get(role, 0.0), caps.get(role, 0.0))
    if roles:
        entry["roles"] = roles
    manifest = dict(bundle.manifest)
    manifest["precisions"] = dict(manifest.get("precisions") or {}) | {cfg.precision: entry}
    if cfg.precision == "fp32":  # the top-level pair is fp32's, as before per-precision calibration
        manifest["threshold"], manifest["calibration"] = thr, calibration
        if roles:
            manifest["roles"] = roles
        if "review" in entry:
            manifest["review"] = entry["review"]
        else:
            manifest.pop("review", None)
    return bundle.reseal(manifest)


def _banded(bundle: GuardBundle, engine, prompts: list[LabeledPrompt]) -> np.ndarray | None:
    """Per prompt, whether the flag gate's review edge lets it into the band (None: the bundle's gate has no edge)."""
    gate = bundle.flag_gate()
    if gate is None or not np.isfinite(gate.review_threshold):
        return None
    from reftguard.role_fit import turn_states

    return gate.bands(turn_states(bundle, [p.text for p in prompts], engine=engine, output=gate.input))


CURVE_FPRS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3)


def fpr_curve(scores: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    """(FPR target, the lowest threshold meeting it on these rows): what a policy's `flag_fpr` maps through."""
    return [(f, float(np.float32(evaluation.threshold_for_fpr(scores, y, f)))) for f in CURVE_FPRS]


def review_band(scores: np.ndarray, y: np.ndarray, flag: float, recall: float, max_benign: float = 0.0,
                banded: np.ndarray | None = None) -> dict:
    """The review band under a flag threshold: its lower edge reaches `recall` on the harmful rows (or is the
    flag threshold itself when that already does), raised where needed so that at most `max_benign` of the
    benign rows land in REVIEW or FLAG (a reviewer's workload; 0: no limit), with what it costs on these rows.
    `banded` (per row; the flag gate's review edge): rows under the flag threshold and not banded never reach
    REVIEW, so the edge is lowered until the banded rows alone make up the recall."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"review_recall must be in (0, 1], got {recall}")
    if not 0.0 <= max_benign <= 1.0:
        raise ValueError(f"review_max_benign must be in [0, 1], got {max_benign}")
    if banded is None:
        low = min(evaluation.threshold_for_recall(scores, y, recall), flag)
    else:
        counted = banded | (scores > flag)
        need, have = math.ceil(recall * (y == 1).sum() - 1e-9), int((counted & (y == 1)).sum())
        if need > have:
            raise ValueError(f"no review edge reaches recall {recall}: the gate's review edge lets only {have} of {(y == 1).sum()} "
                             "harmful rows into the band or FLAG (fit the gate with a higher --review-keep)")
        low = min(evaluation.threshold_for_recall(scores[counted], y[counted], need / have), flag)  # that k-th harmful row, among the rows that count
        scores = np.where(counted, scores, min(float(scores.min()), low) - 1.0)  # below every edge: never REVIEW
    set_by = "recall"
    if max_benign and (y == 0).any():
        cap = evaluation.threshold_for_fpr(scores, y, max_benign)
        if cap > low:
            low, set_by = min(cap, flag), "benign limit"
    low = float(np.float32(low))
    benign, harmful = scores[y == 0], scores[y == 1]
    target = {"recall": recall} | ({"max_benign": max_benign} if max_benign else {})
    return {"threshold": low, "target": target, "set_by": set_by, "n": int(len(y)), "gated": banded is not None,
            "recall": float((harmful > low).mean()) if len(harmful) else None,
            "benign_review_share": float(((benign > low) & (benign <= flag)).mean()) if len(benign) else None,
            "benign_flag_share": float((benign > flag).mean()) if len(benign) else None}


def parse_role_targets(specs: list[str], flag: str = "--target-fpr-role", upper: float | None = 1.0,
                       roles: tuple[str, ...] = ("assistant", "system")) -> dict[str, float]:
    """{role: value} from ROLE=F specs, F in (0, upper]; by default only the roles besides user turns (which
    the main target sets)."""
    out: dict[str, float] = {}
    for spec in (x for s in specs for x in str(s).split(",") if x.strip()):
        role, _, value = spec.partition("=")
        role = normalize_role(role)
        if role not in roles:
            raise ValueError(f"{flag} {spec!r}: the role must be {' or '.join(roles)}"
                             + ("" if "user" in roles else " (user turns take the main option)"))
        try:
            fpr = float(value)
        except ValueError:
            raise ValueError(f"{flag} {spec!r}: expected ROLE=F with F a number") from None
        if not 0.0 < fpr <= (upper if upper is not None else float("inf")):
            raise ValueError(f"{flag} {spec!r}: the value must be in (0, {'inf' if upper is None else f'{upper:g}'}]")
        out[role] = fpr
    return out


def _calibrate_role(bundle: GuardBundle, engine, rows: list[LabeledPrompt], role: str, fpr: float, cfg: CalibrateConfig,
                    review_recall: float = 0.0, review_cap: float = 0.0) -> dict:
    """One role's threshold: the lowest whose FPR on that role's benign rows is at most `fpr`."""
    if not any(p.label == 0 for p in rows):
        raise ValueError(f"--target-fpr-role {role}={fpr}: the data has no benign rows with role {role!r} in split {cfg.split!r}")
    s = score_prompts(bundle, rows, engine=engine)
    y = np.array([p.label for p in rows])
    thr, bound_by = evaluation.choose_threshold(s, y, [p.kind for p in rows], target_fpr=fpr)
    report = evaluation.evaluate(s, y, thr, {"kind": [p.kind for p in rows]})
    at = {k: v for k, v in report.items() if not k.startswith("by_")}
    log.info("%s %s turns: threshold %.4f, FPR %.4f, recall %s on %d rows", cfg.precision, role, thr, at["fpr"] or 0, at["recall"], len(rows))
    band = {"review": review_band(s, y, float(np.float32(thr)), review_recall, review_cap)} if review_recall else {}
    return band | {"threshold": float(np.float32(thr)),
            "calibration": {"method": "target FPR", "target": {"fpr": fpr}, "data": [Path(d).name for d in cfg.data], "split": cfg.split,
                            "set_by": bound_by, "data_hash": data_hash(rows), "n": len(rows), "at_threshold": at, "fpr_curve": fpr_curve(s, y),
                            "fpr_by_kind": {k: v["fpr"] for k, v in report["by_kind"].items() if v["n_benign"]}}}


def evaluate_bundle(cfg: EvalConfig) -> dict:
    from reftguard.engines import make_engine

    bundle = GuardBundle.load(cfg.bundle)
    engine = make_engine(bundle, precision=cfg.precision, allow_uncalibrated_precision=not np.isnan(cfg.threshold))
    prompts = select_split(load_labeled(cfg.data), cfg.split)
    s = score_prompts(bundle, prompts, engine=engine)
    thr = engine.threshold if np.isnan(cfg.threshold) else cfg.threshold
    report = evaluation.evaluate(
        s, [p.label for p in prompts], thr, {"source": [p.source for p in prompts], "kind": [p.kind for p in prompts]}
    )
    report["bundle_id"] = bundle.bundle_id
    report["split"] = cfg.split
    report["precision"], report["engine"] = engine.precision, engine.label
    cal = engine.calibration
    # In-sample figures are labelled: the same prompts chose the threshold being evaluated.
    report["in_sample"] = bool(np.isnan(cfg.threshold)) and cal.get("data_hash") == data_hash(prompts)
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict) -> str:
    cols = ("n", "auroc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "precision", "recall", "fpr", "f1")
    rows = [("overall", report)] + [(f"source={k}", v) for k, v in report.get("by_source", {}).items()]
    rows += [(f"kind={k}", v) for k, v in report.get("by_kind", {}).items()]

    def cell(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    width = max(len(r[0]) for r in rows)
    out = [f"{'slice':<{width}}  " + "  ".join(f"{c:>10.10}" for c in cols)]
    out += [f"{name:<{width}}  " + "  ".join(f"{cell(r.get(c)):>10}" for c in cols) for name, r in rows]
    out.append(f"threshold {report['threshold']:.4f}  bundle {report.get('bundle_id', '')}")
    return "\n".join(out)
