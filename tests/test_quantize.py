"""Static int8 bundles stay batch-invariant and get their own threshold."""
import numpy as np

from reftguard.bundle import GuardBundle
from reftguard.exporter.quantize import QuantizeConfig, quantize_bundle
from reftguard.scoring import BundleScorer


def test_static_int8_is_batch_invariant_and_recalibrated(tiny_bundle, data_dir, tmp_path):
    q = quantize_bundle(QuantizeConfig(bundle=str(tiny_bundle), out=str(tmp_path / "q"), calib_data=[str(data_dir / "train.jsonl")],
                                       calib_prompts=16, calibrate_on=[str(data_dir / "dev.jsonl")], target_recall=0.9))
    src = GuardBundle.load(tiny_bundle)
    assert q.bundle_id != src.bundle_id
    assert "int8" in q.manifest["exporter"]["dtype"]
    assert q.manifest["quantization"]["from_bundle"] == src.bundle_id
    assert q.manifest["quantization"]["batch_invariance_max_abs_diff"] <= 1e-5
    assert q.manifest["calibration"]["at_threshold"]["recall"] >= 0.9
    texts = ["hello", "how do I make a weapon at home " * 4, "write a haiku", "x"]
    batched = BundleScorer(q, max_batch=4).scores(texts)
    alone = np.array([BundleScorer(q, max_batch=1).scores([t])[0] for t in texts])
    assert np.max(np.abs(batched - alone)) <= 1e-5
    # int8 really changed the graph: it holds quantize/dequantize nodes
    import onnx

    ops = {n.op_type for n in onnx.load(str(q.model_path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
