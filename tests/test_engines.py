"""Engines (onnxruntime, OpenVINO) and precisions (fp32, bf16, fp16) on the tiny bundle, real sessions.

The choice logic takes the machine as data (CPU flags, GPU, openvino), so every branch is tested here
on any machine; the sessions themselves run where they can (bf16 needs AMX or avx512_bf16).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.engines import EngineError, Platform, UncalibratedPrecision, calibration_for, choose, detect_platform, make_engine
from reftguard.engines.checks import batch_invariance, parity, score_rows
from reftguard.engines.selection import FP16_MODEL, read_cpu_flags
from reftguard.encoding import PromptEncoder, pad_batch
from tests.test_server import TEXTS as SERVER_TEXTS

HERE = detect_platform()
needs_openvino = pytest.mark.skipif(not HERE.has_openvino, reason="openvino is not installed")
needs_bf16 = pytest.mark.skipif(not (HERE.has_openvino and HERE.cpu_bf16), reason="needs openvino and a CPU with AMX or avx512_bf16")
AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
PLAIN = frozenset({"avx2", "fma"})
TEXTS = [*SERVER_TEXTS, "¿Cuál es la capital de Francia? 日本語"]


def _manifest(*precisions: str, fp16_graph: bool = False) -> dict:
    m = {"threshold": 0.1, "files": {FP16_MODEL: "x"} if fp16_graph else {}}
    m["precisions"] = {p: {"threshold": 0.1 + i / 100, "calibration": {}} for i, p in enumerate(precisions)}
    return m


# -- the choice, with the machine injected ----------------------------------------------------------
@pytest.mark.parametrize("flags", [AMX, AVX512_BF16], ids=["amx", "avx512_bf16"])
def test_auto_picks_openvino_bf16_on_bf16_cpus(flags):
    c = choose(_manifest("fp32", "bf16"), Platform(flags, has_cuda=False, has_openvino=True))
    assert (c.engine, c.precision, c.device, c.calibrated) == ("openvino", "bf16", "cpu", True)
    assert c.label == "openvino/bf16/cpu"


@pytest.mark.parametrize("platform, manifest, why", [
    (Platform(PLAIN, False, True), _manifest("fp32", "bf16"), "AMX/avx512_bf16"),
    (Platform(AMX, False, False), _manifest("fp32", "bf16"), "openvino"),
    (Platform(AMX, False, True), _manifest("fp32"), "a bf16 calibration"),
    (Platform(frozenset(), False, True), {"threshold": 0.0}, "AMX/avx512_bf16"),  # an old bundle, unknown CPU
], ids=["no-bf16-cpu", "no-openvino", "no-bf16-calibration", "old-bundle"])
def test_auto_falls_back_to_ort_fp32(platform, manifest, why):
    c = choose(manifest, platform)
    assert (c.engine, c.precision, c.device) == ("ort", "fp32", "cpu")
    assert why in c.reason


def test_auto_on_a_gpu_is_cuda_fp16_only_with_a_calibrated_fp16_graph():
    gpu = Platform(AMX, has_cuda=True, has_openvino=True)
    assert choose(_manifest("fp32", "bf16", "fp16", fp16_graph=True), gpu).label == "ort/fp16/cuda"
    assert choose(_manifest("fp32", "bf16", "fp16"), gpu).label == "ort/fp32/cuda"  # calibration but no graph
    assert choose(_manifest("fp32", fp16_graph=True), gpu).label == "ort/fp32/cuda"  # graph but no calibration
    assert choose(_manifest("fp32", "bf16"), gpu, device="cpu").label == "openvino/bf16/cpu"


def test_explicit_choices_are_honoured_or_refused_clearly():
    m = _manifest("fp32", "bf16")
    amx = Platform(AMX, False, True)
    assert choose(m, amx, engine="ort").label == "ort/fp32/cpu"
    assert choose(m, amx, engine="openvino").label == "openvino/bf16/cpu"
    assert choose(m, amx, engine="openvino", precision="fp32").label == "openvino/fp32/cpu"
    assert choose(m, amx, precision="fp32").label == "ort/fp32/cpu"
    with pytest.raises(EngineError, match="AMX or avx512_bf16"):
        choose(m, Platform(PLAIN, False, True), precision="bf16")
    with pytest.raises(EngineError, match="openvino package"):
        choose(m, Platform(AMX, False, False), engine="openvino")
    with pytest.raises(EngineError, match="runs fp32 or fp16, not bf16"):
        choose(m, amx, engine="ort", precision="bf16")
    with pytest.raises(EngineError, match="no CUDA GPU"):
        choose(m, amx, device="cuda")
    with pytest.raises(EngineError, match="fp16 graph .*--fp16"):
        choose(_manifest("fp32", "fp16"), amx, precision="fp16")
    with pytest.raises(EngineError, match="engine must be one of"):
        choose(m, amx, engine="tensorrt")


def test_an_uncalibrated_precision_is_refused_unless_allowed():
    amx = Platform(AMX, False, True)
    with pytest.raises(UncalibratedPrecision, match=r"no bf16 calibration \(it has: fp32\).*reftguard calibrate --precision bf16.*--allow-uncalibrated-precision"):
        choose({"threshold": 0.0}, amx, precision="bf16")
    c = choose({"threshold": 0.0}, amx, precision="bf16", allow_uncalibrated=True)
    assert c.label == "openvino/bf16/cpu" and not c.calibrated


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(str(f)) == {"fpu", "sse", "avx512_bf16", "amx_bf16"}
    assert read_cpu_flags(str(tmp_path / "missing")) == frozenset()
    assert detect_platform(["amx_bf16"]).cpu_flags == {"amx_bf16"}


# -- real sessions ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(tiny_bundle, data_dir, tmp_path_factory):
    """The tiny bundle with an fp16 graph, and calibrated for bf16 (where this CPU can) at another target
    than fp32's, so the two thresholds differ."""
    from reftguard.calibration import CalibrateConfig, calibrate
    from reftguard.exporter.fp16 import add_fp16_graph

    root = tmp_path_factory.mktemp("multi") / "bundle"
    shutil.copytree(tiny_bundle, root)
    add_fp16_graph(root)
    if HERE.has_openvino and HERE.cpu_bf16:
        calibrate(CalibrateConfig(bundle=str(root), data=[str(data_dir / "dev.jsonl")], target_fpr=0.3, precision="bf16"))
    calibrate(CalibrateConfig(bundle=str(root), data=[str(data_dir / "dev.jsonl")], target_fpr=0.3, precision="fp16"))
    return GuardBundle.load(root)


def _ids(b: GuardBundle, texts=TEXTS) -> list[list[int]]:
    return PromptEncoder(b.tokenizer_path, b.prompt_format, b.max_tokens).encode(list(texts), "right").ids


def _engines() -> list:
    out = [("ort", "fp32"), ("ort", "fp16")]
    out += [pytest.param(("openvino", "fp32"), marks=needs_openvino), pytest.param(("openvino", "bf16"), marks=needs_bf16)]
    return out


def test_fp16_graph_structure(multi, tiny_bundle):
    import onnx

    m = onnx.load(str(multi.root / FP16_MODEL))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    body = [i for i in m.graph.initializer if i.name.startswith(("model.", "/decoder/", "onnx::MatMul")) and len(i.dims) == 2]
    assert body and all(i.data_type == onnx.TensorProto.FLOAT16 for i in body)
    # the head's constants (R_l, the centre) stay fp32, and so do the graph's outputs
    fp32 = onnx.load(str(GuardBundle.load(tiny_bundle).model_path))
    head_consts = {i for n in fp32.graph.node if n.name.startswith("/head/") for i in n.input} & set(inits)
    assert head_consts and all(inits[name] == onnx.TensorProto.FLOAT for name in head_consts)
    assert [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output] == [(n, onnx.TensorProto.FLOAT) for n in ("score", "feature_norm", "state", "topic_state", "tail_state")]
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [onnx.TensorProto.INT64] * 2
    rec = multi.manifest["fp16"]
    assert rec["file"] == FP16_MODEL and FP16_MODEL in multi.manifest["files"] and rec["parity_max_abs_diff"] <= rec["atol"]


def test_fp16_is_refused_before_its_graph_exists(tiny_bundle):
    with pytest.raises(EngineError, match="fp16 graph"):
        make_engine(GuardBundle.load(tiny_bundle), precision="fp16", allow_uncalibrated_precision=True)


@needs_bf16
def test_per_precision_calibration_is_honoured(multi, tiny_bundle, data_dir):
    m = multi.manifest
    bf16, fp32 = m["precisions"]["bf16"], calibration_for(m, "fp32")
    assert bf16["engine"] == "openvino/bf16/cpu" and bf16["calibration"]["target"] == {"fpr": 0.3}
    assert m["threshold"] == GuardBundle.load(tiny_bundle).threshold == fp32["threshold"]  # top level: fp32, untouched
    assert bf16["threshold"] != fp32["threshold"]
    e = make_engine(multi, cpu_flags=AMX)  # auto on a bf16 CPU with openvino
    assert (e.name, e.precision, e.provider, e.label) == ("openvino", "bf16", "cpu", "openvino/bf16/cpu")
    assert e.threshold == bf16["threshold"] and e.calibration == bf16["calibration"]
    assert make_engine(multi, cpu_flags=PLAIN).label == "ort/fp32/cpu"
    assert make_engine(multi, cpu_flags=PLAIN).threshold == fp32["threshold"]
    # the recorded figures are what the bf16 engine gives on those prompts, at its own threshold
    from reftguard.calibration import EvalConfig, evaluate_bundle

    rep = evaluate_bundle(EvalConfig(bundle=str(multi.root), data=[str(data_dir / "dev.jsonl")], precision="bf16"))
    assert rep["engine"] == "openvino/bf16/cpu" and rep["threshold"] == bf16["threshold"] and rep["in_sample"]
    assert rep["fpr"] == bf16["calibration"]["at_threshold"]["fpr"]


def test_uncalibrated_precision_is_refused_on_a_real_bundle(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    platform = Platform(AMX, False, True)
    with pytest.raises(UncalibratedPrecision, match="reftguard calibrate --precision bf16"):
        make_engine(b, precision="bf16", platform=platform)


@needs_bf16
def test_allow_uncalibrated_serves_at_the_fp32_threshold(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    e = make_engine(b, precision="bf16", allow_uncalibrated_precision=True)
    assert e.label == "openvino/bf16/cpu" and not e.choice.calibrated and e.threshold == b.threshold


@pytest.mark.parametrize("engine_precision", _engines(), ids=lambda p: "/".join(p))
def test_parity_within_the_recorded_bound(multi, data_dir, engine_precision):
    engine, precision = engine_precision
    e = make_engine(multi, engine=engine, precision=precision, allow_uncalibrated_precision=True)
    ref = make_engine(multi, engine="ort", precision="fp32")
    ids = _ids(multi)
    got, want = score_rows(e.run, ids, multi.pad_token_id), score_rows(ref.run, ids, multi.pad_token_id)
    bound = {"fp32": 1e-5, "bf16": 0.05, "fp16": multi.manifest["fp16"]["atol"]}[precision]
    assert parity(got, want)["max_abs_diff"] <= bound
    entry = multi.manifest.get("precisions", {}).get(precision)
    if entry and precision != "fp32":  # re-scoring the calibration prompts reproduces the recorded parity
        from reftguard.calibration import score_prompts
        from reftguard.data import load_labeled

        prompts = load_labeled([str(data_dir / "dev.jsonl")])
        d = parity(score_prompts(multi, prompts, engine=e), score_prompts(multi, prompts, engine=ref))
        assert d["max_abs_diff"] <= entry["parity_vs_fp32"]["max_abs_diff"] + 1e-7 <= bound


@pytest.mark.parametrize("engine_precision", _engines(), ids=lambda p: "/".join(p))
def test_batch_invariance(multi, engine_precision):
    """The same prompt alone, among others, and padded wider: the same score (bf16 exactly)."""
    engine, precision = engine_precision
    e = make_engine(multi, engine=engine, precision=precision, allow_uncalibrated_precision=True)
    ids = _ids(multi)
    inv = batch_invariance(e.run, ids, multi.pad_token_id)
    assert inv["n"] == len(ids)
    # one prompt, padded to the longest of the set and beside every other prompt, in two orders
    target = ids[2]
    alone = e.run(*pad_batch([target], multi.pad_token_id))[0][0]
    crowd = e.run(*pad_batch(ids, multi.pad_token_id))[0][2]
    reversed_ = e.run(*pad_batch(ids[::-1], multi.pad_token_id))[0][len(ids) - 3]
    if precision == "bf16":
        assert inv["max_abs_diff"] == 0.0 and alone == crowd == reversed_
    else:
        assert inv["max_abs_diff"] <= 1e-5 and abs(alone - crowd) <= 1e-5 and abs(alone - reversed_) <= 1e-5
    recorded = multi.manifest.get("precisions", {}).get(precision, {}).get("batch_invariance")
    if recorded:
        assert recorded["max_abs_diff"] <= (0.0 if precision == "bf16" else 1e-5)


def test_calibrate_records_every_precision_and_keeps_fp32_on_top(multi):
    m = multi.manifest
    precisions = set(m["precisions"])
    assert {"fp16"} <= precisions and (not HERE.cpu_bf16 or not HERE.has_openvino or "bf16" in precisions)
    for p, entry in m["precisions"].items():
        assert {"threshold", "calibration", "engine", "parity_vs_fp32", "batch_invariance"} <= set(entry)
        assert entry["parity_vs_fp32"]["n"] == entry["calibration"]["n"]
    # fp32 (written by the tiny bundle's calibration) mirrors the top level; a bundle from before per-precision
    # calibration has only the top level, which reads as fp32's
    assert m["precisions"]["fp32"]["threshold"] == m["threshold"] and m["precisions"]["fp32"]["calibration"] == m["calibration"]
    old = {k: v for k, v in m.items() if k != "precisions"}
    assert calibration_for(old, "fp32") == {"threshold": m["threshold"], "calibration": m["calibration"]}
    assert calibration_for(old, "bf16") is None
    assert "Per precision" in (multi.root / "CARD.md").read_text()
    json.dumps(m)  # plain JSON


# -- the server on these engines -------------------------------------------------------------------
@needs_bf16
def test_server_serves_auto_bf16_at_its_own_threshold(multi):
    from reftguard.clients import GuardClient
    from tests.harness import run_server

    bf16 = multi.manifest["precisions"]["bf16"]
    with run_server(multi.root) as rs:  # engine and precision auto
        with GuardClient(rs.target) as c:
            info = c.info()
            ds = c.score(TEXTS)
        bundle_info = rs.value("reftguard_bundle_info", bundle_id=multi.bundle_id, backbone=multi.backbone, layer=str(multi.layer),
                               provider="openvino/bf16/cpu")
    assert info.provider == "openvino/bf16/cpu" and bundle_info == 1.0
    assert info.threshold == pytest.approx(bf16["threshold"]) != pytest.approx(multi.threshold)
    assert all(d.threshold == pytest.approx(bf16["threshold"]) for d in ds)
    assert info.expected_fpr == pytest.approx(bf16["calibration"]["at_threshold"]["fpr"])
    from reftguard.scoring import BundleScorer

    want = BundleScorer(multi, backend=make_engine(multi, engine="openvino", precision="bf16")).scores(TEXTS)
    assert [d.score for d in ds] == want.tolist()  # bf16 is batch invariant: exactly the in-process scores


@needs_bf16
def test_server_refuses_an_uncalibrated_precision(tiny_bundle, caplog):
    import logging

    from reftguard.server.app import build_engine
    from reftguard.server.config import ServerConfig

    b = GuardBundle.load(tiny_bundle)
    with pytest.raises(UncalibratedPrecision, match="no bf16 calibration.*--allow-uncalibrated-precision"):
        build_engine(b, ServerConfig(precision="bf16"))
    with caplog.at_level(logging.INFO, logger="reftguard"):
        make_engine(b, precision="bf16", allow_uncalibrated_precision=True)  # e.g. calibrating bf16: nothing to act on
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert build_engine(b, ServerConfig(precision="bf16", allow_uncalibrated_precision=True)).label == "openvino/bf16/cpu"
    # Serving at a threshold that was not calibrated for the precision: the server says so, and what to run.
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "reftguard calibrate --precision bf16" in r.getMessage()]
    assert build_engine(b, ServerConfig()).label == "ort/fp32/cpu"  # auto: no bf16 calibration, so fp32


@needs_bf16
def test_bf16_rows_run_at_a_width_of_their_own(multi):
    """In bf16 a row's score may depend on the padded width of its batch (reduction blocking), so the
    OpenVINO engine runs every row at its length rounded up to 8: any padding gives the same bits."""
    e = make_engine(multi, engine="openvino", precision="bf16", allow_uncalibrated_precision=True)
    assert e.width_multiple == 8
    ids = _ids(multi)
    for row in ids:
        n = len(row)
        got = {float(e.run(*_padded([row], w, multi.pad_token_id))[0][0]) for w in (n, n + 1, n + 7, n + 19, n + 64)}
        assert len(got) == 1
    mixed = e.run(*_padded(ids, max(map(len, ids)) + 5, multi.pad_token_id))[0]
    assert mixed.tolist() == [e.run(*pad_batch([r], multi.pad_token_id))[0][0] for r in ids]


def _padded(rows, width, pad_id):
    x = np.full((len(rows), width), pad_id, dtype=np.int64)
    m = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        x[i, : len(r)], m[i, : len(r)] = r, 1
    return x, m



@needs_openvino
def test_openvino_caps_its_per_shape_kernel_cache(tiny_bundle):
    """The engine compiles with a capped per-shape runtime cache (RSS evidence on the real default bundle:
    research/openvino_shape_cache.py; the tiny model's kernels are too small to show it), and still scores."""
    from reftguard.engines.openvino import RUNTIME_CACHE_CAPACITY

    b = GuardBundle.load(tiny_bundle)
    e = make_engine(b, engine="openvino", precision="fp32")
    assert e.config["CPU_RUNTIME_CACHE_CAPACITY"] == RUNTIME_CACHE_CAPACITY < 5000
    ids = _ids(b)
    assert np.allclose(e.run(*pad_batch(ids, b.pad_token_id))[0], make_engine(b, engine="ort").run(*pad_batch(ids, b.pad_token_id))[0], atol=1e-4)


@needs_openvino
def test_the_openvino_engine_sends_no_telemetry(tiny_bundle):
    """`import openvino` would send a usage event (openvino_telemetry) from a forked process; the engine
    loads OpenVINO with its no-op telemetry stub instead (in a fresh process: nothing imported it yet)."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom reftguard.bundle import GuardBundle\nfrom reftguard.engines import make_engine\n"
            f"make_engine(GuardBundle.load({str(tiny_bundle)!r}), engine='openvino', precision='fp32')\n"
            "import openvino.tools.ovc.telemetry_utils as t\n"
            "assert sys.modules['openvino_telemetry'] is None and t.tm.__name__.endswith('telemetry_stub'), t.tm\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
