"""Per-architecture export configs, in the spirit of optimum's `OnnxConfig` classes.

A family says how to reach the decoder stack of a causal LM and what limits apply when the stack is cut
after layer l. In transformers >= 5 every supported family exposes the same pieces (`embed_tokens`,
`rotary_emb`, `layers`), and embedding scaling (Gemma) lives inside `embed_tokens`, so the configs are
small; what differs is validation (sliding-window attention, soft-capping).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FamilyConfig:
    name: str
    model_types: tuple[str, ...]
    sliding_window: bool = False  # some layers use sliding-window attention

    def decoder(self, causal_lm: Any) -> Any:
        """The bare decoder (embed_tokens, rotary_emb, layers) of a *ForCausalLM."""
        base = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
        for attr in ("embed_tokens", "rotary_emb", "layers"):
            if not hasattr(base, attr):
                raise ValueError(f"{type(causal_lm).__name__}: decoder has no `{attr}`; family {self.name} cannot export it")
        return base

    def validate(self, config: Any, layer: int, max_tokens: int) -> None:
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


FAMILIES = (
    FamilyConfig("llama", ("llama",)),
    FamilyConfig("mistral", ("mistral",), sliding_window=True),
    FamilyConfig("qwen2", ("qwen2",), sliding_window=True),
    FamilyConfig("qwen3", ("qwen3",), sliding_window=True),
    FamilyConfig("gemma", ("gemma",)),
    FamilyConfig("gemma2", ("gemma2",), sliding_window=True),
)


def family_for(config: Any) -> FamilyConfig:
    mt = getattr(config, "model_type", None)
    for fam in FAMILIES:
        if mt in fam.model_types:
            return fam
    supported = sorted(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"model_type {mt!r} is not supported by the exporter; supported: {supported}")
