"""The guard as a torch module: decoder layers 0..l-1, last-real-token gather and an fp32 cosine head.

`layer = l` means the hidden state after the first l decoder layers (transformers'
`hidden_states[l]`), taken *before* any final norm. Inputs are right-padded; real tokens keep positions
0..n-1 and, under the causal mask, never attend to padding, so a prompt's score does not depend on the
batch it is in.

`cosine` here is the one torch implementation of the score: the exported head, the teacher's
regulariser and the exporter's validator all call it, so what training optimises is exactly what the
bundle computes.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reftguard.modeling.families import family_for


def causal_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive [b, 1, t, t] mask: query i sees key j iff j <= i and key j is a real token."""
    t = attention_mask.shape[1]
    idx = torch.arange(t, device=attention_mask.device)
    causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # [t(query), t(key)]
    allowed = causal.unsqueeze(0) & attention_mask.bool().unsqueeze(1)  # [b, t, t]
    neg = torch.finfo(dtype).min
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.full((), neg, dtype=dtype)).unsqueeze(1)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row, from the mask (never from pad ids: the pad id can occur in the template)."""
    t = attention_mask.shape[1]
    pos = torch.arange(t, device=attention_mask.device).unsqueeze(0) * attention_mask
    return pos.argmax(dim=1)


def gather_last(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[b, hidden] states of the last real token of each row of h [b, t, hidden]."""
    return h[torch.arange(h.shape[0], device=h.device), last_token_index(attention_mask)]


def cosine(h: torch.Tensor, r: torch.Tensor, c: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """cos(h - c, r) per row, in fp32: the guard's score. r and c are constants (no gradient flows into them).

    Written as the teacher's regulariser has always computed it, so teacher runs stay bit-identical
    (resumes of older checkpoints included); the exported head is the same expression.
    """
    hc = h.float() if c is None else h.float() - c
    return (hc @ r) / (hc.norm(dim=-1) * r.norm()).clamp_min(eps)


class TruncatedDecoder(nn.Module):
    """The first `num_layers` decoder layers of a causal LM, no final norm, no LM head, no cache."""

    def __init__(self, causal_lm: Any, num_layers: int):
        super().__init__()
        fam = family_for(causal_lm.config)
        base = fam.decoder(causal_lm)
        self.embed_tokens = base.embed_tokens
        self.rotary_emb = base.rotary_emb
        self.layers = nn.ModuleList(list(base.layers)[:num_layers])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, collect: bool = False):
        x = self.embed_tokens(input_ids)
        b, t = input_ids.shape
        position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0).expand(b, t)
        pos_emb = self.rotary_emb(x, position_ids)
        mask = causal_padding_mask(attention_mask, x.dtype)
        states = []
        for layer in self.layers:
            out = layer(x, attention_mask=mask, position_ids=position_ids, position_embeddings=pos_emb, use_cache=False)
            x = out[0] if isinstance(out, tuple) else out
            if collect:
                states.append(x)
        return states if collect else x


class CosineHead(nn.Module):
    """fp32 cos(h - c, R), ||h|| and h itself (the state per-role features are scored on); R and c are
    graph initializers."""

    def __init__(self, refusal_feature, center=None, eps: float = 1e-8):
        super().__init__()
        r = torch.as_tensor(refusal_feature, dtype=torch.float32)
        c = torch.zeros_like(r) if center is None else torch.as_tensor(center, dtype=torch.float32)
        self.register_buffer("refusal_feature", r)
        self.register_buffer("center", c)
        self.eps = eps

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return cosine(h, self.refusal_feature, self.center, self.eps), torch.linalg.vector_norm(h.float(), dim=-1), h.float()


class GuardModule(nn.Module):
    """(input_ids, attention_mask) -> (score [b], feature_norm [b], state [b, hidden]) and, with a
    `topic_layer`, topic_state and tail_state [b, hidden]: that layer's states averaged over every real token,
    and over the last `tail_tokens` of them. All fp32."""

    def __init__(self, causal_lm: Any, layer: int, refusal_feature, center=None, topic_layer: int = 0, tail_tokens: int = 32):
        super().__init__()
        if not 0 <= topic_layer <= layer:
            raise ValueError(f"topic_layer {topic_layer} must be within the guard's layers (1..{layer}, or 0 for none)")
        if tail_tokens < 1:
            raise ValueError(f"tail_tokens must be >= 1, got {tail_tokens}")
        self.decoder = TruncatedDecoder(causal_lm, layer)
        self.head = CosineHead(refusal_feature, center)
        self.topic_layer, self.tail_tokens = topic_layer, tail_tokens

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if not self.topic_layer:
            return self.head(gather_last(self.decoder(input_ids, attention_mask), attention_mask))
        states = self.decoder(input_ids, attention_mask, collect=True)
        topic = states[self.topic_layer - 1]
        return (*self.head(gather_last(states[-1], attention_mask)), masked_mean(topic, attention_mask),
                masked_mean(topic, tail_mask(attention_mask, self.tail_tokens)))


def tail_mask(attention_mask: torch.Tensor, k: int) -> torch.Tensor:
    """The mask of each row's last `k` real tokens (either padding side)."""
    from_end = attention_mask.flip(1).cumsum(1).flip(1)  # real tokens from here to the row's end
    return attention_mask * (from_end <= k).to(attention_mask.dtype)


def masked_mean(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """fp32 mean of each row's states over its real tokens (either padding side)."""
    w = attention_mask.unsqueeze(-1).float()
    return (h.float() * w).sum(1) / w.sum(1).clamp(min=1.0)


@torch.no_grad()
def last_token_states(causal_lm: Any, batches, num_layers: int | None = None) -> "torch.Tensor":
    """Last-real-token states after each of the first `num_layers` layers: [n, num_layers, hidden] fp32.

    `batches` yields (input_ids, attention_mask) LongTensors (right-padded); rows come back in order.
    """
    n_layers = num_layers or causal_lm.config.num_hidden_layers
    dec = TruncatedDecoder(causal_lm, n_layers).eval()
    out = []
    for input_ids, mask in batches:
        states = dec(input_ids, mask, collect=True)
        out.append(torch.stack([gather_last(s, mask).float() for s in states], dim=1))
    return torch.cat(out, dim=0)
