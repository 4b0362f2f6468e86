"""The fp16 graph for GPU serving: `model.fp16.onnx`, an fp16 decoder body with the fp32 head, in the bundle.

Why exporter-side and not converted at load: the bundle's contract is that what is served is what was
hashed, validated and calibrated. A load-time conversion would make the served graph depend on the
converter version on the serving machine (and put `onnx` into the server image); written here it is
sealed with the bundle, its parity vs fp32 is measured once and recorded, and `reftguard calibrate
--precision fp16` calibrates exactly that graph. The cost is a bundle half again as large, so it is
opt-in (`reftguard export --fp16`, or `add_fp16_graph` on an existing bundle).

What stays fp32: every node outside the decoder (`/decoder/...`): the last-real-token gather and the
cosine head (centre, dot product, norms), as docs/design.md §2 requires; the converter puts casts at the
boundary. Graph inputs and outputs keep their int64 / fp32 types, so the engine feeds both graphs alike.
The conversion is onnxruntime's own float16 converter (onnxruntime.transformers.float16), with its
default block list; blocking the RMSNorm reductions as well was tried and broke parity on SmolLM2, so
the norms run in fp16 like the rest of the body (their input is bounded by fp16's range there).
"""
from __future__ import annotations

import logging
from pathlib import Path

from reftguard.bundle import GuardBundle, seal
from reftguard.engines.selection import FP16_MODEL

log = logging.getLogger("reftguard.export")
BODY_PREFIX = "/decoder/"
FP16_ATOL = 1e-2  # max |Δscore| vs fp32 accepted for the fp16 graph (SmolLM2 layer 16: 1.4e-3)


def convert(model_path: Path, out_path: Path) -> list[str]:
    """Write the fp16-body / fp32-head graph; returns the names of the nodes kept in fp32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(model_path))
    keep = [n.name for n in model.graph.node if not n.name.startswith(BODY_PREFIX)]
    if not any(n.name.startswith(BODY_PREFIX) for n in model.graph.node):
        raise ValueError(f"{model_path} has no {BODY_PREFIX} nodes; it was not written by this exporter")
    onnx.save(convert_float_to_float16(model, keep_io_types=True, node_block_list=keep), str(out_path))
    return keep


def add_fp16_graph(bundle_dir: str | Path, atol: float = FP16_ATOL) -> GuardBundle:
    """Add (or replace) the bundle's fp16 graph, check it against the fp32 graph in onnxruntime (CPU),
    record the check under manifest['fp16'] and re-seal. Any earlier fp16 calibration is dropped: it was
    for another graph. Raises ParityError over `atol`."""
    from reftguard.engines.ort import OrtEngine
    from reftguard.card import render_card
    from reftguard.exporter.validate import PARITY_PROMPTS, ParityError, compare

    bundle = GuardBundle.load(bundle_dir)
    root = bundle.root
    keep = convert(bundle.model_path, root / FP16_MODEL)
    manifest = dict(bundle.manifest)
    manifest.pop("fp16", None)
    manifest["precisions"] = {p: e for p, e in (manifest.get("precisions") or {}).items() if p != "fp16"}
    seal(root, manifest)  # hash the new file so the bundle loads
    fp16 = OrtEngine(GuardBundle.load(root), device="cpu", precision="fp16")
    report = compare(GuardBundle.load(root), OrtEngine(bundle, device="cpu").run, PARITY_PROMPTS, left=False, engine=fp16)
    if report["parity_max_abs_diff"] > atol:
        (root / FP16_MODEL).unlink()
        seal(root, bundle.manifest, card=render_card)
        raise ParityError(f"fp16 graph parity vs fp32 {report['parity_max_abs_diff']:.2e} > atol {atol:.0e}; not added")
    import onnxruntime

    manifest["fp16"] = {
        "file": FP16_MODEL,
        "body": "float16 (every /decoder/ node)",
        "head": "float32 (last-token gather, centre, cosine, norms)",
        "kept_fp32_nodes": len(keep),
        "converter": f"onnxruntime.transformers.float16 (onnxruntime {onnxruntime.__version__}), keep_io_types",
        "atol": atol,
        "checked_on": "onnxruntime CPU",
    } | report
    seal(root, manifest, card=render_card)
    log.info("fp16 graph added to %s: parity vs fp32 %.1e", root, report["parity_max_abs_diff"])
    return GuardBundle.load(root)
