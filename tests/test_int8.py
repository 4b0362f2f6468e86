"""int8 for CPUs (exporter/int8.py): the NNCF-quantized OpenVINO graph in the bundle, sealed, measured and
calibrated on the tiny bundle (real NNCF, real OpenVINO sessions), and the rule `--precision auto` serves it by."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reftguard.bundle import BundleError, GuardBundle
from reftguard.calibration import CalibrateConfig, calibrate
from reftguard.engines import EngineError, Platform, choose, detect_platform, make_engine
from reftguard.engines.selection import INT8_MODEL, int8_pays
from reftguard.scoring import BundleScorer

HERE = detect_platform()
pytestmark = pytest.mark.skipif(not HERE.has_openvino, reason="openvino is not installed")  # a server/train install has it
VNNI = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle, data_dir, tmp_path_factory):
    from reftguard.exporter.int8 import add_int8_graph

    out = tmp_path_factory.mktemp("int8") / "bundle"
    shutil.copytree(tiny_bundle, out)
    add_int8_graph(out, n_calib=64, n_dev=160, n_speed=64)
    calibrate(CalibrateConfig(bundle=str(out), data=[str(data_dir / "dev.jsonl")], target_recall=0.9, precision="int8"))
    return out


def test_int8_graph_is_sealed_measured_and_calibrated(int8_bundle, tiny_bundle):
    b = GuardBundle.load(int8_bundle)
    rec = b.manifest["int8"]
    assert {INT8_MODEL, INT8_MODEL.replace(".xml", ".bin")} <= set(b.manifest["files"])
    assert rec["calibration_rows"]["files"] == ["guard-train.jsonl", "guard-train-extra.jsonl"]  # never dev
    assert rec["batch_invariance_max_abs"] == 0.0 and rec["speed"]["cpu_model"] == HERE.cpu_model and rec["speed"]["int8_prompts_per_s"] > 0
    assert all(0 < rec["auroc"][k] <= 1 for k in ("fp32", "int8")) and rec["n_dev"] == 160
    assert b.manifest["precisions"]["int8"]["threshold"] != b.threshold  # its own calibration
    # int8 really runs quantized MatMuls, the cosine head does not
    from reftguard.engines.openvino import import_openvino

    model = import_openvino().Core().read_model(str(b.root / INT8_MODEL))
    fq = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    assert fq and not any("/head/" in op.get_friendly_name() for op in fq)
    head_inputs = [i.get_source_output().get_node().get_type_name() for op in model.get_ordered_ops()
                   if op.get_friendly_name() == "/head/MatMul" for i in op.inputs()]
    assert head_inputs and "FakeQuantize" not in head_inputs
    # the int8 engine scores differently from fp32 but ranks alike on the tiny bundle's own calibration rows
    i8 = make_engine(b, precision="int8")
    assert i8.label == "openvino/int8/cpu" and i8.threshold == pytest.approx(b.manifest["precisions"]["int8"]["threshold"])


def test_int8_scores_track_fp32_and_are_batch_invariant(int8_bundle, data_dir):
    b = GuardBundle.load(int8_bundle)
    rows = [json.loads(line) for line in (data_dir / "dev.jsonl").read_text().splitlines()]
    fp32 = BundleScorer(b, backend=make_engine(b, engine="ort", precision="fp32")).scores([r["text"] for r in rows])
    int8 = BundleScorer(b, backend=make_engine(b, precision="int8"))
    batched = int8.scores([r["text"] for r in rows])
    int8.max_batch = 1
    assert np.array_equal(int8.scores([r["text"] for r in rows]), batched)
    assert np.corrcoef(fp32, batched)[0, 1] > 0.9 and not np.array_equal(fp32, batched)


def test_a_tampered_int8_graph_is_refused(int8_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(int8_bundle, copy)
    weights = copy / INT8_MODEL.replace(".xml", ".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.int8.bin"):
        GuardBundle.load(copy)


def _manifest(speedup=1.7, cpu="EPYC 9R14", auroc=(0.995, 0.9945), invariance=0.0, reply=(0.94, 0.939)):
    return {"threshold": 0.1, "files": {INT8_MODEL: "x"},
            "precisions": {p: {"threshold": 0.1, "calibration": {}} for p in ("fp32", "bf16", "int8")},
            "int8": {"auroc": {"fp32": auroc[0], "int8": auroc[1]}, "batch_invariance_max_abs": invariance,
                     "auroc_by_role": {"assistant": {"fp32": reply[0], "int8": reply[1]}},
                     "speed": {"cpu_model": "EPYC 9R14", "baseline": "bf16", "int8_speedup": speedup}}}


def test_auto_serves_int8_only_where_its_record_says_it_pays():
    here = Platform(VNNI, has_cuda=False, has_openvino=True, cpu_model="EPYC 9R14")
    assert choose(_manifest(), here).label == "openvino/int8/cpu"
    assert choose(_manifest(), here, engine="openvino").precision == "int8"
    for m, why in ((_manifest(speedup=0.9), "not faster"), (_manifest(auroc=(0.995, 0.992)), "AUROC"),
                   (_manifest(invariance=1e-3), "batch"), (_manifest(reply=(0.938, 0.907)), "assistant turns"),
                   (_manifest(cpu="x"), "timed on")):
        if why == "timed on":
            other = Platform(VNNI, has_cuda=False, has_openvino=True, cpu_model="Xeon 8480")
            assert int8_pays(m, other)[0] is False and why in int8_pays(m, other)[1]
            assert choose(m, other).label == "openvino/bf16/cpu"
            continue
        assert int8_pays(m, here)[0] is False and why in int8_pays(m, here)[1]
        assert choose(m, here).label == "openvino/bf16/cpu"  # falls back to what auto served before
    assert choose(_manifest(), here, precision="int8", engine="openvino").precision == "int8"  # asked for: served
    gpu = Platform(VNNI, has_cuda=True, has_openvino=True, cpu_model="EPYC 9R14")
    assert choose(_manifest(), gpu).device == "cuda"  # a GPU still goes first
    no_graph = _manifest()
    no_graph["files"] = {}
    with pytest.raises(EngineError, match="int8 graph"):
        choose(no_graph, here, precision="int8")


def test_int8_record_measures_every_role_the_bundle_reads(role_bundle, tmp_path):
    """A bundle with per-role features records roles-dev AUROC of fp32 and int8 for those roles: int8_pays
    then holds replies and system prompts to the same tolerance as user turns."""
    from reftguard.exporter.int8 import add_int8_graph

    out = tmp_path / "b"
    shutil.copytree(role_bundle, out)
    rec = add_int8_graph(out, n_calib=32, n_dev=64, n_speed=32).manifest["int8"]
    assert set(rec["auroc_by_role"]) == {"assistant", "system"}
    assert all(0 < v <= 1 for a in rec["auroc_by_role"].values() for v in a.values())
