"""Handlers of the model-side subcommands (fit, export, calibrate, eval, robustness, default-bundle), and
`serve` (the server's own command, after the default bundle is built when no --bundle is given)."""
from __future__ import annotations

import argparse

from reftguard.config import add_dataclass_args, from_args


def fit_args(p: argparse.ArgumentParser) -> None:
    from reftguard.training.fit import FitConfig

    add_dataclass_args(p, FitConfig, group="fit")


def fit(ns) -> int:
    from reftguard.training.fit import FitConfig, fit as run_fit

    cfg = from_args(FitConfig, ns)
    if not cfg.data:
        raise ValueError("--data is required (one or more labeled JSONL files)")
    t = run_fit(cfg)
    print(f"{'layer':>5} {'auroc':>8} {'r@1%fpr':>8} {'gap':>8}")
    for row in t.record["layer_table"]:
        mark = " <" if row["layer"] == t.layer else ""
        print(f"{row['layer']:>5} {row['auroc']:>8.4f} {row['recall_at_1pct_fpr']:>8.4f} {row['gap']:>8.4f}{mark}")
    print(f"teacher written to {cfg.out} (layer {t.layer}, centre {t.center_kind})")
    return 0


def export_args(p: argparse.ArgumentParser) -> None:
    from reftguard.exporter.export import ExportConfig

    add_dataclass_args(p, ExportConfig, group="export")


def export(ns) -> int:
    from reftguard.exporter.export import ExportConfig, export_bundle

    b = export_bundle(from_args(ExportConfig, ns))
    ex = b.manifest["exporter"]
    print(f"bundle {b.bundle_id} at {b.root}: parity {ex['parity_max_abs_diff']:.2e}, batch invariance {ex['batch_invariance_max_abs_diff']:.2e}")
    return 0


def calibrate_args(p: argparse.ArgumentParser) -> None:
    from reftguard.calibration import CalibrateConfig

    add_dataclass_args(p, CalibrateConfig, group="calibrate")


def calibrate(ns) -> int:
    from reftguard.calibration import CalibrateConfig, calibrate as run

    from reftguard.card import review_bands_of
    from reftguard.engines import calibration_for

    cfg = from_args(CalibrateConfig, ns)
    b = run(cfg)
    entry = calibration_for(b.manifest, cfg.precision)
    at = entry["calibration"]["at_threshold"]
    print(f"bundle {b.bundle_id}: {cfg.precision} threshold {entry['threshold']:.4f} -> recall {at['recall']:.4f}, FPR {at['fpr']:.4f}, "
          f"AUROC {at['auroc']:.4f}; vs fp32 max |Δ| {entry['parity_vs_fp32']['max_abs_diff']:.2e}, batch invariance {entry['batch_invariance']['max_abs_diff']:.2e}")
    for role, band in review_bands_of(entry).items():
        gated = " (user turns the flag gate's review edge lets in)" if band.get("gated") else ""
        print(f"  {role} review band{gated}: {band['threshold']:.4f} < score <= flag threshold; recall of FLAG or REVIEW {band['recall']:.4f}, "
              f"benign sent to review {band['benign_review_share']:.4f}, flagged {band['benign_flag_share']:.4f}")
    return 0


def fit_roles_args(p: argparse.ArgumentParser) -> None:
    from reftguard.role_fit import FitRolesConfig

    add_dataclass_args(p, FitRolesConfig, group="fit-roles")


def fit_roles(ns) -> int:
    from reftguard.role_fit import FitRolesConfig, fit_roles as run

    b = run(from_args(FitRolesConfig, ns))
    fit = b.manifest["role_features"]["fit"]
    print(f"bundle {b.bundle_id}: " + "; ".join(f"{r} feature from {f['n_harmful']} harmful / {f['n_benign']} benign turns "
                                               f"(cosine with R_l {f['cos_with_r_l']:.3f})" for r, f in fit.items())
          + "; calibrate its role thresholds next (reftguard calibrate --target-fpr-role ...)")
    return 0


def fit_gate_args(p: argparse.ArgumentParser) -> None:
    from reftguard.gate_fit import FitGateConfig

    add_dataclass_args(p, FitGateConfig, group="fit-gate")


def fit_gate(ns) -> int:
    from reftguard.gate_fit import FitGateConfig, fit_gate as run

    g = run(from_args(FitGateConfig, ns)).manifest["flag_gate"]
    print(f"flag gate threshold {g['threshold']:.4f}: keeps {g['kept']:.3f} of the {g['n_flagged_harmful']} FLAGged harmful prompts; "
          f"fitted on {g['n_harmful']} harmful / {g['n_benign']} benign")
    if g.get("review_keep"):
        print(f"review edge {g['review_threshold']:.4f}: keeps {g['review_keep']:.3f} of the {g['n_harmful_calib']} harmful calibration prompts "
              "in the band; run `reftguard calibrate` again to set the band's lower edge under it")
    return 0


def fit_categories_args(p: argparse.ArgumentParser) -> None:
    from reftguard.category_fit import FitCategoriesConfig

    add_dataclass_args(p, FitCategoriesConfig, group="fit-categories")


def fit_categories(ns) -> int:
    from reftguard.category_fit import FitCategoriesConfig, fit_categories as run

    b = run(from_args(FitCategoriesConfig, ns))
    n = b.manifest["categories"]["n"]
    print(f"bundle {b.bundle_id}: category head on {sum(n.values())} harmful rows (" + ", ".join(f"{k} {v}" for k, v in n.items()) + ")")
    return 0


def eval_args(p: argparse.ArgumentParser) -> None:
    from reftguard.calibration import EvalConfig

    add_dataclass_args(p, EvalConfig, group="eval")


def eval(ns) -> int:  # noqa: A001 - the subcommand is called eval
    from reftguard.calibration import EvalConfig, evaluate_bundle, format_table

    print(format_table(evaluate_bundle(from_args(EvalConfig, ns))))
    return 0


def eval_records_args(p: argparse.ArgumentParser) -> None:
    from reftguard.record_eval import RecordEvalConfig

    add_dataclass_args(p, RecordEvalConfig, group="eval-records")


def eval_records(ns) -> int:
    from reftguard.record_eval import RecordEvalConfig, format_table, run

    print(format_table(run(from_args(RecordEvalConfig, ns))))
    return 0


def robustness_args(p: argparse.ArgumentParser) -> None:
    from reftguard.robustness import RobustnessConfig

    add_dataclass_args(p, RobustnessConfig, group="robustness")


def robustness(ns) -> int:
    from reftguard.robustness import RobustnessConfig, run

    cfg = from_args(RobustnessConfig, ns)
    r = run(cfg)
    o = r["overall"]
    print(f"bundle {r['bundle_id']}: n={o['n']} AUROC {o['auroc'] or float('nan'):.4f}, FPR {o['fpr'] or 0:.4f}, recall {o['recall'] or 0:.4f} "
          f"at threshold {r['threshold']:.4f}; report in {cfg.out}/report.md and report.html")
    return 0


def default_bundle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="Build the default bundle here instead of the cache ($REFTGUARD_CACHE or ~/.cache/reftguard).")
    p.add_argument("--print-path", action="store_true", help="Print only the bundle path (for scripts).")
    p.add_argument("--rebuild", action="store_true", help="Rebuild even if a valid cached bundle exists.")


def default_bundle(ns) -> int:
    from reftguard.exporter.default_bundle import ensure_default_bundle

    b = ensure_default_bundle(ns.out, rebuild=ns.rebuild)
    print(b.root if ns.print_path else f"default bundle {b.bundle_id} at {b.root} (threshold {b.threshold:.4f})")
    return 0


def serve_args(p: argparse.ArgumentParser) -> None:
    from reftguard.server.cli import serve_args as server_args

    server_args(p)


def serve(ns) -> int:
    """`reftguard serve`: without --bundle, the default bundle (built here on first use; the server itself
    only loads bundles)."""
    import logging

    from reftguard.server.cli import serve as run

    if not ns.bundle:
        from reftguard.exporter.default_bundle import ensure_default_bundle

        if not ns.verbose:
            logging.getLogger("reftguard").setLevel(logging.INFO)
        ns.bundle = str(ensure_default_bundle().root)
    return run(ns)
