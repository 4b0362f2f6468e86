"""fit -> export -> parity -> calibrate -> eval on tiny random Llama and Qwen2 models."""
import json
import shutil

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.calibration import CalibrateConfig, EvalConfig, calibrate, evaluate_bundle
from reftguard.exporter.export import ExportConfig, export_bundle
from reftguard.training.fit import FitConfig, fit
from reftguard.modeling.teacher import Teacher


def test_roundtrip(tiny_model, data_dir, tmp_path):
    teacher = fit(FitConfig(model=str(tiny_model), data=[str(data_dir / "train.jsonl")], out=str(tmp_path / "t"), max_tokens=96))
    assert len(teacher.record["layer_table"]) == 3
    assert 1 <= teacher.layer <= 3
    loaded = Teacher.load(tmp_path / "t")
    np.testing.assert_array_equal(loaded.refusal_feature, teacher.refusal_feature)

    bundle = export_bundle(ExportConfig(teacher=str(tmp_path / "t"), out=str(tmp_path / "b")))
    ex = bundle.manifest["exporter"]
    assert ex["parity_max_abs_diff"] < 1e-4
    assert ex["batch_invariance_max_abs_diff"] < 1e-5
    assert bundle.layer == teacher.layer
    assert bundle.manifest["padding_side"] == "right"
    np.testing.assert_allclose(bundle.refusal_feature(), teacher.refusal_feature)

    b2 = calibrate(CalibrateConfig(bundle=str(tmp_path / "b"), data=[str(data_dir / "dev.jsonl")], target_recall=0.8))
    assert b2.bundle_id != bundle.bundle_id
    assert b2.manifest["calibration"]["at_threshold"]["recall"] >= 0.8
    report = evaluate_bundle(EvalConfig(bundle=str(tmp_path / "b"), data=[str(data_dir / "dev.jsonl")], json=str(tmp_path / "e.json")))
    on_disk = json.loads((tmp_path / "e.json").read_text())
    assert on_disk["recall"] == pytest.approx(b2.manifest["calibration"]["at_threshold"]["recall"])
    for key in ("auroc", "recall_at_1pct_fpr", "recall_at_5pct_fpr", "precision", "recall", "f1", "fpr", "threshold", "n", "n_harmful", "n_benign", "by_source", "by_kind"):
        assert key in report


def test_export_is_deterministic(tiny_teacher, tmp_path):
    a = export_bundle(ExportConfig(teacher=str(tiny_teacher), out=str(tmp_path / "a")))
    b = export_bundle(ExportConfig(teacher=str(tiny_teacher), out=str(tmp_path / "b")))
    assert a.bundle_id == b.bundle_id
    assert a.manifest["files"] == b.manifest["files"]


def test_layer_out_of_range_is_clear(tiny_teacher, tmp_path):
    t = Teacher.load(tiny_teacher)
    t.layer = 99
    t.save(tmp_path / "bad")
    shutil.copytree(tiny_teacher / "tokenizer", tmp_path / "bad" / "tokenizer")
    with pytest.raises(ValueError, match="layer 99 is out of range"):
        export_bundle(ExportConfig(teacher=str(tmp_path / "bad"), out=str(tmp_path / "x")))


def test_sliding_window_limit_is_enforced(data_dir, tmp_path):
    from tests.conftest import _texts
    from tests.tiny import build_model

    model = build_model(tmp_path / "gemma2", "gemma2", _texts())  # sliding window 128
    fit(FitConfig(model=str(model), data=[str(data_dir / "train.jsonl")], out=str(tmp_path / "t"), max_tokens=128, layer=2))
    with pytest.raises(ValueError, match="exceeds the model's sliding window"):
        export_bundle(ExportConfig(teacher=str(tmp_path / "t"), out=str(tmp_path / "b"), max_tokens=200))


def test_unreachable_hub_id_fails_clearly(monkeypatch):
    from reftguard.modeling.loading import ModelLoadError, load_causal_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not be fetched from the hub"):
        load_causal_lm("reftguard-test/does-not-exist")
