"""Export configs per family (reftguard/modeling/families.py) and the exporter's validator
(exporter/validate.py): IO spec, dummy inputs, soft-capping, and parity of the ONNX graph against the
original HF model's hidden_states[l] on tiny random Llama, Qwen2 and Gemma2 models."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.exporter.export import ExportConfig, export_bundle
from reftguard.exporter.validate import ParityError, hf_reference, left_padded, validate_model_outputs
from reftguard.modeling.families import FAMILIES, family_for
from reftguard.modeling.teacher import Teacher
from reftguard.training.fit import FitConfig, fit

CASES = {"prompts_right", "prompts_left", "dummy_right", "dummy_left"}


def _export(model, data_dir, tmp_path, layer: int):
    fit(FitConfig(model=str(model), data=[str(data_dir / "train.jsonl")], out=str(tmp_path / "t"), max_tokens=96, layer=layer))
    return export_bundle(ExportConfig(teacher=str(tmp_path / "t"), out=str(tmp_path / "b")))


@pytest.mark.parametrize("layer", [2, 3])  # 3 = every layer: HF's hidden_states[3] has the final norm, the guard does not
def test_graph_matches_the_hf_model_on_both_padding_sides(tiny_model, data_dir, tmp_path, layer):
    bundle = _export(tiny_model, data_dir, tmp_path, layer)
    ex = bundle.manifest["exporter"]
    assert set(ex["parity_cases"]) == CASES
    assert ex["parity_max_abs_diff"] == max(ex["parity_cases"].values()) < 1e-4, ex["parity_cases"]
    assert ex["parity_reference"].startswith("HF model, output_hidden_states=True")
    assert ex["feature_norm_max_rel_diff"] < 1e-4 and ex["batch_invariance_max_abs_diff"] < 1e-5
    print(f"{bundle.manifest['source_model']['model_type']} layer {layer}: {ex['parity_cases']}")  # measured max |Δ| (pytest -s)


def test_graph_io_is_the_declared_spec(tiny_bundle):
    import onnx

    g = onnx.load(str(GuardBundle.load(tiny_bundle).model_path)).graph
    fam = family_for(SimpleNamespace(model_type="llama"))
    elem = {"int64": onnx.TensorProto.INT64, "float32": onnx.TensorProto.FLOAT}
    for declared, actual in ((fam.inputs, g.input), (fam.outputs, g.output)):
        assert [t.name for t in actual] == [t.name for t in declared]
        for spec, t in zip(declared, actual):
            assert t.type.tensor_type.elem_type == elem[spec.dtype]
            assert tuple(d.dim_param for d in t.type.tensor_type.shape.dim) == spec.axes  # every axis dynamic and named
    assert fam.input_names == list(bundle_io.INPUT_NAMES) and fam.output_names == list(bundle_io.OUTPUT_NAMES)


def test_gemma2_soft_capping_is_in_the_graph(data_dir, tmp_path):
    """Gemma 2 caps attention logits (cap * tanh(x / cap)). With a cap low enough to matter (q/k scaled up
    so the logits reach it), the graph matches HF with the cap and not HF without it."""
    import torch
    from transformers import AutoModelForCausalLM

    from reftguard.engines.ort import OrtEngine
    from tests.conftest import _texts
    from tests.tiny import build_model

    path = build_model(tmp_path / "g", "gemma2", _texts(), attn_logit_softcapping=2.0)
    lm = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for layer in lm.model.layers:
            layer.self_attn.q_proj.weight.mul_(40)
            layer.self_attn.k_proj.weight.mul_(40)
    lm.save_pretrained(path)
    bundle = _export(path, data_dir, tmp_path, 2)
    assert bundle.manifest["exporter"]["parity_max_abs_diff"] < 1e-4

    teacher = Teacher.load(tmp_path / "t")
    model, _ = teacher.load_model()
    model.set_attn_implementation("eager")
    ids, mask = family_for(model.config).dummy_inputs(int(model.config.vocab_size), batch=6, max_len=24)
    graph = OrtEngine(bundle, device="cpu").run(ids, mask)[0]
    capped = hf_reference(model, 2, teacher.refusal_feature, teacher.center)(ids, mask)[0]
    for layer in model.model.layers:
        layer.self_attn.attn_logit_softcapping = None
    uncapped = hf_reference(model, 2, teacher.refusal_feature, teacher.center)(ids, mask)[0]
    assert np.max(np.abs(graph - capped)) < 1e-4
    assert np.max(np.abs(graph - uncapped)) > 1e-2, np.max(np.abs(graph - uncapped))


def test_soft_capping_refuses_an_attention_that_drops_it():
    fam = family_for(SimpleNamespace(model_type="gemma2"))
    cfg = SimpleNamespace(num_hidden_layers=3, sliding_window=128, attn_logit_softcapping=50.0, _attn_implementation="sdpa")
    with pytest.raises(ValueError, match="soft-capped at 50.0.*'sdpa'.*set_attn_implementation"):
        fam.check(SimpleNamespace(config=cfg), 2, 64)
    fam.check(SimpleNamespace(config=SimpleNamespace(**(vars(cfg) | {"_attn_implementation": "eager"}))), 2, 64)
    # families without soft-capping do not care which attention runs
    family_for(SimpleNamespace(model_type="llama")).check(SimpleNamespace(config=cfg), 2, 64)


def test_dummy_inputs_are_seeded_mixed_and_padded_on_either_side():
    fam = FAMILIES[0]
    ids, mask = fam.dummy_inputs(100, batch=5, max_len=9, seed=3)
    again = fam.dummy_inputs(100, batch=5, max_len=9, seed=3)
    assert np.array_equal(ids, again[0]) and np.array_equal(mask, again[1])
    assert not np.array_equal(ids, fam.dummy_inputs(100, batch=5, max_len=9, seed=4)[0])
    lengths = mask.sum(1)
    assert lengths.max() == 9 and lengths.min() == 1 and ids.dtype == mask.dtype == np.int64
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(lengths))  # right-padded
    lids, lmask = fam.dummy_inputs(100, "left", batch=5, max_len=9, seed=3)
    assert np.array_equal(lmask.sum(1), lengths) and all(lmask[i, 9 - n :].all() for i, n in enumerate(lengths))
    moved = left_padded(ids, mask)
    assert np.array_equal(moved[1], lmask)
    with pytest.raises(ValueError, match="padding_side"):
        fam.dummy_inputs(100, "middle")


def test_validation_fails_clearly_when_the_graph_is_not_the_model(tiny_bundle, tiny_teacher):
    import torch

    teacher = Teacher.load(tiny_teacher)
    model, _ = teacher.load_model()
    model.set_attn_implementation("eager")
    bundle = GuardBundle.load(tiny_bundle)
    report = validate_model_outputs(bundle, model, teacher.layer, teacher.refusal_feature, teacher.center, atol=1e-4)
    assert report["parity_max_abs_diff"] < 1e-4
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(1.5)  # the graph no longer matches these weights
    with pytest.raises(ParityError, match=r"export parity failed \(llama, layer \d\): max \|ORT score - HF hidden_states\[\d\] score\| = .* > atol 1e-04"):
        validate_model_outputs(bundle, model, teacher.layer, teacher.refusal_feature, teacher.center, atol=1e-4)


def test_hf_reference_does_not_depend_on_padding_side(tiny_teacher):
    teacher = Teacher.load(tiny_teacher)
    model, _ = teacher.load_model()
    model.set_attn_implementation("eager")
    ref = hf_reference(model, teacher.layer, teacher.refusal_feature, teacher.center)
    ids, mask = family_for(model.config).dummy_inputs(int(model.config.vocab_size))
    right = ref(ids, mask)[0]
    left = ref(*left_padded(ids, mask))[0]
    np.testing.assert_allclose(right, left, atol=1e-5)
