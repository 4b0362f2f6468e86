"""Per-architecture export configs, in the spirit of optimum's `OnnxConfig` classes.

A family config is everything the exporter needs to know about one architecture family:
  - how to reach the decoder stack of a *ForCausalLM (`decoder`);
  - the graph's IO spec: input and output names, dtypes and named dynamic axes (`inputs`, `outputs`,
    `dynamic_axes`; the names come from reftguard.bundle_io, which the torch-free server side reads);
  - a dummy-input generator for tracing and validation: a seeded batch of mixed lengths, right- or
    left-padded (`dummy_inputs`);
  - the tolerance the exported score must meet against the original HF model (`atol`);
  - what limits a cut after layer l (`check`): the layer range, sliding-window attention and attention
    logit soft-capping.

In transformers >= 5 every supported family exposes the same pieces (`embed_tokens`, `rotary_emb`,
`layers`), and embedding scaling (Gemma) lives inside `embed_tokens`, so the configs are small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reftguard import bundle_io
from reftguard.bundle_io import TensorSpec

# Attention implementations that apply Gemma 2's attention-logit soft-capping. SDPA and the flash
# kernels drop it silently, and eager is also the only one the guard exports (plain ops).
SOFTCAP_ATTENTION = ("eager",)


@dataclass(frozen=True)
class FamilyConfig:
    name: str
    model_types: tuple[str, ...]
    sliding_window: bool = False  # some layers use sliding-window attention
    attn_softcapping: bool = False  # attention logits pass through softcap * tanh(x / softcap) (Gemma 2)
    atol: float = 1e-4  # max |exported score - HF score| accepted by the validator
    inputs: tuple[TensorSpec, ...] = bundle_io.INPUTS
    outputs: tuple[TensorSpec, ...] = bundle_io.OUTPUTS

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return bundle_io.dynamic_axes(self.inputs + self.outputs)

    def decoder(self, causal_lm: Any) -> Any:
        """The bare decoder (embed_tokens, rotary_emb, layers) of a *ForCausalLM."""
        base = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
        for attr in ("embed_tokens", "rotary_emb", "layers"):
            if not hasattr(base, attr):
                raise ValueError(f"{type(causal_lm).__name__}: decoder has no `{attr}`; family {self.name} cannot export it")
        return base

    def check(self, causal_lm: Any, layer: int, max_tokens: int) -> None:
        """Refuse a cut the guard graph cannot reproduce, with what to change."""
        config = causal_lm.config
        n = int(config.num_hidden_layers)
        if not 1 <= layer <= n:
            raise ValueError(f"layer {layer} is out of range: the model has {n} decoder layers (use 1..{n})")
        window = getattr(config, "sliding_window", None)
        if self.sliding_window and window and max_tokens > int(window):
            # The guard applies a plain causal mask; that equals sliding-window attention only while the
            # whole prompt fits in the window.
            raise ValueError(
                f"max_tokens={max_tokens} exceeds the model's sliding window ({window}); lower --max-tokens to <= {window}"
            )
        cap = getattr(config, "attn_logit_softcapping", None)
        impl = getattr(config, "_attn_implementation", None)
        if self.attn_softcapping and cap and impl not in SOFTCAP_ATTENTION:
            # The final-logit soft-cap needs no check: the guard graph has no LM head.
            raise ValueError(
                f"{self.name}: attention logits are soft-capped at {cap}, which the {impl!r} attention implementation "
                f"ignores; export with one of {SOFTCAP_ATTENTION} (model.set_attn_implementation('eager'))"
            )

    def dummy_inputs(self, vocab_size: int, padding_side: str = "right", batch: int = 4, max_len: int = 12,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int64 [batch, max_len]: seeded random tokens with mixed lengths (one
        row of length 1, one of max_len), padded on `padding_side` with id 0 (the mask marks real tokens)."""
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        rng = np.random.default_rng([seed, batch, max_len])
        lengths = rng.integers(1, max_len + 1, size=batch)
        lengths[0], lengths[-1] = max_len, 1
        ids = np.zeros((batch, max_len), dtype=np.int64)
        mask = np.zeros((batch, max_len), dtype=np.int64)
        for i, n in enumerate(lengths):
            cols = slice(0, n) if padding_side == "right" else slice(max_len - n, max_len)
            ids[i, cols] = rng.integers(0, vocab_size, size=n)
            mask[i, cols] = 1
        return ids, mask


FAMILIES = (
    FamilyConfig("llama", ("llama",)),
    FamilyConfig("mistral", ("mistral",), sliding_window=True),
    FamilyConfig("qwen2", ("qwen2",), sliding_window=True),
    FamilyConfig("qwen3", ("qwen3",), sliding_window=True),
    FamilyConfig("gemma", ("gemma",)),
    FamilyConfig("gemma2", ("gemma2",), sliding_window=True, attn_softcapping=True),
)


def family_for(config: Any) -> FamilyConfig:
    mt = getattr(config, "model_type", None)
    for fam in FAMILIES:
        if mt in fam.model_types:
            return fam
    supported = sorted(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"model_type {mt!r} is not supported by the exporter; supported: {supported}")
