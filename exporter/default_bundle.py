"""Building the embedded default bundle: export the shipped teacher, fit its per-role features, then calibrate it (reftguard/default_bundle.py
holds the recipe, the cache and the loader; this is the half that needs torch)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from reftguard.bundle import GuardBundle
from reftguard.default_bundle import RECIPE, default_bundle, serves_bf16, shipped_teacher

log = logging.getLogger("reftguard.default")


def build(out: Path, teacher: Path | None = None) -> GuardBundle:
    """Export the shipped teacher (or `teacher`, a candidate judged by the same recipe) to `out` and calibrate
    it (fp32, and bf16 where this machine serves bf16)."""
    from reftguard.calibration import CalibrateConfig, calibrate
    from reftguard.data import packaged
    from reftguard.exporter.export import ExportConfig, export_bundle
    from reftguard.category_fit import FitCategoriesConfig, fit_categories
    from reftguard.gate_fit import FitGateConfig, fit_gate
    from reftguard.role_fit import FitRolesConfig, fit_roles

    def files(step: dict, *keys: str) -> dict:  # the recipe's packaged file names as paths
        return step | {k: [str(packaged(d)) for d in step[k]] for k in keys}

    t0 = time.time()
    teacher_dir = teacher or shipped_teacher()
    if teacher_dir is None:
        raise FileNotFoundError("this install carries no default teacher (reftguard/data/default_teacher); "
                                "train one with `reftguard train-teacher --recipe recipes/teacher-stage1.toml` and export it")
    export_bundle(ExportConfig(teacher=str(teacher_dir), out=str(out), **RECIPE["export"]))
    fit_roles(FitRolesConfig(bundle=str(out), **files(RECIPE["role_features"], "data", "hand_labels")))
    fit_categories(FitCategoriesConfig(bundle=str(out), **files(RECIPE["categories"], "data", "hand_labels")))
    cal = files(RECIPE["calibration"], "data")
    calibrate(CalibrateConfig(bundle=str(out), **cal))
    bundle = fit_gate(FitGateConfig(bundle=str(out), **files(RECIPE["flag_gate"], "data", "calib_data")))
    if RECIPE["flag_gate"].get("review_keep"):  # the band's edge under the gate's review edge (same flag threshold)
        bundle = calibrate(CalibrateConfig(bundle=str(out), **cal))
    if serves_bf16():
        # Served as bf16 on CPUs with AMX/avx512_bf16 (`--engine auto`), which needs its own threshold: bf16
        # shifts scores by up to ~0.04. Elsewhere the bundle stays fp32-only and auto serves ORT fp32.
        bundle = calibrate(CalibrateConfig(bundle=str(out), **cal, precision="bf16"))
    log.info("default bundle %s built in %.0fs at %s", bundle.bundle_id, time.time() - t0, out)
    return bundle


def ensure_default_bundle(out: str | Path | None = None, rebuild: bool = False) -> GuardBundle:
    """The default bundle at `out` (or the cache), built first when it is missing."""
    return default_bundle(out, build=build, rebuild=rebuild)
