"""Per-role refusal features: fitted on a bundle's own states, served for reply and system turns, R_l for the rest."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reftguard.bundle import BundleError, GuardBundle, seal
from reftguard.data import load_labeled
from reftguard.engines.ort import OrtEngine
from reftguard.features import cosine_scores, refusal_feature, shrinkage_feature
from reftguard.role_fit import FitRolesConfig, fit_roles, turn_states
from reftguard.scoring import BundleScorer


def _copy(src, tmp_path, name="b"):
    out = tmp_path / name
    shutil.copytree(src, out)
    return out


def test_fit_roles_fits_each_roles_feature_on_the_bundles_own_states(role_bundle, role_train, tiny_bundle, tmp_path):
    b = GuardBundle.load(role_bundle)
    spec = b.manifest["role_features"]
    assert spec["roles"] == ["assistant", "system"] and spec["file"] in b.manifest["files"]
    rows = load_labeled([str(role_train)])
    feats = b.role_features()
    for role in ("assistant", "system"):
        mine = [p for p in rows if p.role == role]
        r, c = refusal_feature(turn_states(b, [p.text for p in mine]), np.array([p.label for p in mine]), "midpoint")
        np.testing.assert_allclose(feats[role][0], r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(feats[role][1], c, rtol=1e-5, atol=1e-6)
        assert spec["fit"][role]["n_harmful"] == 20 and spec["fit"][role]["n_benign"] == 20
        assert f"{role} turns are read with their own refusal feature, fitted on 20 harmful" in (b.root / "CARD.md").read_text()
    # a reply is scored against the assistant feature: cos(state - c, R) on the graph's own state
    texts = ["Here is how you do it, step by step.", "Sure! The capital of France is Paris."]
    scorer = BundleScorer(b)
    state = turn_states(b, texts)
    np.testing.assert_allclose(scorer.scores(texts, "right", role="assistant"), cosine_scores(state, *feats["assistant"]), atol=1e-6)
    assert not np.allclose(scorer.scores(texts, "right", role="assistant"), scorer.scores(texts, "right", role="system"))
    # user turns keep R_l: exactly the scores of the bundle before the fit
    assert np.array_equal(scorer.scores(texts), BundleScorer(GuardBundle.load(tiny_bundle)).scores(texts))
    # the features are sealed like every other file
    t = _copy(role_bundle, tmp_path)
    arr = np.load(t / spec["file"])
    np.save(t / spec["file"], arr * 1.01)
    with pytest.raises(BundleError, match="role_features.npy was modified"):
        GuardBundle.load(t)


def test_fitting_drops_role_thresholds_chosen_on_other_scores(role_bundle, role_train, tmp_path):
    again = GuardBundle.load(fit_roles(FitRolesConfig(bundle=str(_copy(role_bundle, tmp_path)), data=[str(role_train)])).root)
    assert GuardBundle.load(role_bundle).role_thresholds and not again.role_thresholds
    assert all("roles" not in e for e in (again.manifest.get("precisions") or {}).values())
    with pytest.raises(ValueError, match="harmful and benign assistant turns"):
        only_benign = tmp_path / "benign.jsonl"
        only_benign.write_text("".join(json.dumps({"id": str(i), "text": f"hello {i}", "label": "benign", "role": "assistant"}) + "\n" for i in range(4)))
        fit_roles(FitRolesConfig(bundle=str(again.root), data=[str(only_benign)], roles=["assistant"]))
    with pytest.raises(ValueError, match="only .* take a feature"):
        fit_roles(FitRolesConfig(bundle=str(again.root), data=[str(role_train)], roles=["user"]))


def test_a_graph_without_the_state_output_scores_every_role_with_r_l(role_bundle, role_train, tmp_path):
    """Bundles exported before the `state` output still serve; their role features cannot be used or fitted."""
    import onnx

    old = _copy(role_bundle, tmp_path)
    model = onnx.load(str(old / "model.onnx"))
    kept = [o for o in model.graph.output if o.name not in ("state", "topic_state", "tail_state")]  # what such graphs had
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(old / "model.onnx"))
    manifest = json.loads((old / "guard.json").read_text())
    b = GuardBundle.load(old, verify=False)
    seal(old, manifest)
    b = GuardBundle.load(old)
    assert OrtEngine(b).outputs == ["score", "feature_norm"]
    texts = ["Here is how you do it, step by step."]
    scorer = BundleScorer(b)
    assert np.array_equal(scorer.scores(texts, role="assistant"), scorer.scores(texts, role="user"))
    with pytest.raises(ValueError, match="no `state` output"):
        fit_roles(FitRolesConfig(bundle=str(old), data=[str(role_train)]))


def test_export_checks_the_state_against_the_hf_model(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    ex = b.manifest["exporter"]
    assert 0 <= ex["state_max_rel_diff"] < 1e-4
    # the topic and tail states (layer l/2's mean over all real tokens, and over the last 32) too, both padding sides
    assert b.manifest["topic_layer"] == b.layer // 2 >= 1 and b.manifest["tail_tokens"] == 32
    assert 0 <= ex["topic_state_max_rel_diff"] < 1e-4
    assert OrtEngine(b).outputs == ["score", "feature_norm", "state", "topic_state", "tail_state"]


def test_shrink_and_hand_labels_fit_a_whitened_feature_on_the_hand_read_labels(role_bundle, role_train, tmp_path):
    rows = load_labeled([str(role_train)])
    replies = [p for p in rows if p.role == "assistant"]
    flip_to_benign = [p.id for p in replies if p.label == 1][:3]
    labels = tmp_path / "hand.json"
    labels.write_text(json.dumps({"harmful": [p.id for p in replies if p.label == 1][3:5], "evasive": flip_to_benign}))
    b = GuardBundle.load(fit_roles(FitRolesConfig(bundle=str(_copy(role_bundle, tmp_path)), data=[str(role_train)],
                                                  shrink=["assistant=0.5"], hand_labels=[str(labels)])).root)
    y = np.array([0 if p.id in flip_to_benign else p.label for p in replies])
    r, c = shrinkage_feature(turn_states(b, [p.text for p in replies]), y, 0.5)
    feats = b.role_features()
    np.testing.assert_allclose(feats["assistant"][0], r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["assistant"][1], c, rtol=1e-5, atol=1e-6)
    spec = b.manifest["role_features"]
    assert spec["fit"]["assistant"]["method"] == "shrinkage 0.5" and spec["fit"]["assistant"]["n_harmful"] == 17
    assert spec["fit"]["system"]["method"] == "mean difference"  # not listed: the plain difference of means
    assert spec["hand_labels"] == {"files": ["hand.json"], "relabelled": 3}
    assert "assistant turns are read with their own refusal feature, fitted on 17 harmful" in (b.root / "CARD.md").read_text()
    assert "; shrinkage 0.5; cosine with R_l" in (b.root / "CARD.md").read_text()


@pytest.mark.parametrize("labels, shrink, center, match", [
    ({"harmful": ["no-such-reply"]}, [], "midpoint", "1 ids name no assistant turn"),
    ({"harmful": ["assistant-t0"], "evasive": ["assistant-t0"]}, [], "midpoint", "both harmful and evasive"),
    (None, ["user=1"], "midpoint", "--shrink 'user=1': the role must be assistant or system"),
    (None, ["assistant=0"], "midpoint", "must be in \\(0, inf\\]"),
    (None, ["assistant=1"], "none", "comes with the midpoint centre"),
])
def test_bad_shrink_or_hand_labels_are_refused_with_what_is_wrong(role_bundle, role_train, tmp_path, labels, shrink, center, match):
    hand = []
    if labels is not None:
        (tmp_path / "hand.json").write_text(json.dumps(labels))
        hand = [str(tmp_path / "hand.json")]
    with pytest.raises(ValueError, match=match):
        fit_roles(FitRolesConfig(bundle=str(_copy(role_bundle, tmp_path)), data=[str(role_train)], shrink=shrink, hand_labels=hand, center=center))
