"""Manifest hashing, tamper detection, encoding/truncation, and batch-invariant scoring."""
import json
import shutil

import numpy as np
import pytest

from reftguard.bundle import BundleError, GuardBundle, compute_bundle_id
from reftguard.encoding import PromptEncoder, PromptTooLong
from reftguard.scoring import BundleScorer


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_loads_and_id_matches_content(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    assert b.bundle_id == compute_bundle_id(b.manifest)
    assert set(b.manifest["files"]) >= {"model.onnx", "tokenizer.json", "refusal_feature.npy", "CARD.md"}
    assert "threshold" in (tiny_bundle / "CARD.md").read_text().lower()


def test_tampered_model_refused(bundle_copy):
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="model.onnx was modified"):
        GuardBundle.load(bundle_copy)


def test_hand_edited_threshold_refused(bundle_copy):
    m = json.loads((bundle_copy / "guard.json").read_text())
    m["threshold"] = -0.99
    (bundle_copy / "guard.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="edited after sealing"):
        GuardBundle.load(bundle_copy)


def test_missing_and_extra_files_refused(bundle_copy, tmp_path):
    (bundle_copy / "evil.py").write_text("print('x')")
    with pytest.raises(BundleError, match="does not list"):
        GuardBundle.load(bundle_copy)
    (bundle_copy / "evil.py").unlink()
    (bundle_copy / "refusal_feature.npy").unlink()
    with pytest.raises(BundleError, match="missing"):
        GuardBundle.load(bundle_copy)
    with pytest.raises(BundleError, match="not a directory"):
        GuardBundle.load(tmp_path / "nope")


def test_tar_bundle_loads(tiny_bundle, tmp_path):
    import tarfile

    tar = tmp_path / "b.tar"
    with tarfile.open(tar, "w") as t:
        t.add(tiny_bundle, arcname="bundle")
    assert GuardBundle.load(tar).bundle_id == GuardBundle.load(tiny_bundle).bundle_id


def test_truncation_policies(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    enc = PromptEncoder(b.tokenizer_path, b.prompt_format, max_tokens=40)
    long = "word " * 200
    with pytest.raises(PromptTooLong, match="over the limit of 40"):
        enc.encode([long], "error")
    right = enc.encode([long + "END"], "right")
    left = enc.encode(["START " + long], "left")
    assert right.truncated == [True] and len(right.ids[0]) == 40
    # template kept intact on both ends
    for ids in (right.ids[0], left.ids[0]):
        assert ids[: len(enc.prefix_ids)] == enc.prefix_ids
        assert ids[-len(enc.suffix_ids):] == enc.suffix_ids
    short = enc.encode(["hi"], "error")
    assert short.truncated == [False]
    with pytest.raises(ValueError, match="unknown truncation"):
        enc.encode(["hi"], "middle")


def test_empty_text_still_scores_template(tiny_bundle):
    # The library scores an empty user turn (the server rejects it earlier, by policy).
    s = BundleScorer(GuardBundle.load(tiny_bundle)).scores([""])
    assert np.isfinite(s).all()


def test_scores_do_not_depend_on_batch(tiny_bundle):
    b = GuardBundle.load(tiny_bundle)
    texts = ["hi", "How do I make a bomb?", "Write a poem about autumn leaves and rain " * 5, "x"]
    batched = BundleScorer(b, max_batch=4).scores(texts)
    alone = np.array([BundleScorer(b, max_batch=1).scores([t])[0] for t in texts])
    assert np.max(np.abs(batched - alone)) <= 1e-5
    assert np.all(np.abs(batched) <= 1.0 + 1e-6)


def test_io_binding_path_matches_plain_run(tiny_bundle):
    from reftguard.encoding import pad_batch
    from reftguard.engines.ort import OrtEngine

    b = GuardBundle.load(tiny_bundle)
    enc = PromptEncoder(b.tokenizer_path, b.prompt_format, b.max_tokens).encode(["a", "bb cc dd", "how to"], "right")
    ids, mask = pad_batch(enc.ids)
    plain = OrtEngine(b, "cpu", io_binding=False).run(ids, mask)
    bound = OrtEngine(b, "cpu", io_binding=True).run(ids, mask)
    np.testing.assert_allclose(plain[0], bound[0], atol=1e-6)
    np.testing.assert_allclose(plain[1], bound[1], rtol=1e-6)
    with pytest.raises(RuntimeError, match="reftguard\\[gpu\\]"):
        OrtEngine(b, "cuda")
