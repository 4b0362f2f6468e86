"""The guard graph's IO contract (docs/design.md §2): names, dtypes and axes of `model.onnx`'s inputs and outputs.

One source of truth, torch-free: the exporter declares the graph from it (reftguard.modeling.families),
and whatever feeds a session (the ORT engine, int8 calibration, the parity validator) names its
tensors from it, so the server side reads it without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy / ONNX element type name
    axes: tuple[str, ...]  # dynamic axes are named (batch, seq); "" marks a fixed one (hidden)


INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
SCORE = "score"
FEATURE_NORM = "feature_norm"
# The last real token's layer-l state itself (fp32), from which per-role features are scored in numpy
# (docs/design.md §2). Graphs exported before it have only the first two outputs.
STATE = "state"
# The mean over real tokens of an earlier layer's states (manifest `topic_layer`), which the harm-category head
# reads: topic sits there, not in the last token of layer l (research/category_pooling.py). Graphs exported
# before it end at `state`.
TOPIC = "topic_state"
# The same layer's mean over the turn's last `tail_tokens` real tokens (manifest): the request that ends a turn,
# not a context passage before it. The flag gate reads it (reftguard/gate_fit.py, research/flag_gate_tail.py).
TAIL = "tail_state"

INPUTS = (TensorSpec(INPUT_IDS, "int64", ("batch", "seq")), TensorSpec(ATTENTION_MASK, "int64", ("batch", "seq")))
OUTPUTS = (TensorSpec(SCORE, "float32", ("batch",)), TensorSpec(FEATURE_NORM, "float32", ("batch",)),
           TensorSpec(STATE, "float32", ("batch", "")), TensorSpec(TOPIC, "float32", ("batch", "")),
           TensorSpec(TAIL, "float32", ("batch", "")))
INPUT_NAMES = tuple(t.name for t in INPUTS)
OUTPUT_NAMES = tuple(t.name for t in OUTPUTS)


def output_names(present) -> list[str]:
    """The contract's outputs a graph has (`present`: its output names), in contract order: score and
    feature_norm always, then the longest run of the later ones (graphs grew outputs at the end, so an
    engine's outputs[k] is always OUTPUT_NAMES[k])."""
    present = set(present)
    missing = [n for n in OUTPUT_NAMES[:2] if n not in present]
    if missing:
        raise ValueError(f"the graph lacks the outputs {missing}")
    names = []
    for n in OUTPUT_NAMES:
        if n not in present:
            break
        names.append(n)
    return names


def dynamic_axes(specs: tuple[TensorSpec, ...] = INPUTS + OUTPUTS) -> dict[str, dict[int, str]]:
    """{name: {axis index: axis name}} as torch.onnx.export takes it."""
    return {t.name: {i: a for i, a in enumerate(t.axes) if a} for t in specs}


def feeds(input_ids, attention_mask) -> dict:
    """The session's input dict for padded int64 arrays."""
    return {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
