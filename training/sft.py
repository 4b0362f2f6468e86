"""Supervised reply data for the ReFT teacher: (prompt, reply) pairs, their batches and the reply-only loss.

A pair is encoded exactly as serving wraps a prompt (PromptEncoder: template prefix + text + suffix),
followed by the reply and the template's end-of-turn marker. Labels are -100 on the prompt and on
padding, so only reply tokens (and the end-of-turn that teaches the model to stop) carry loss.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

IGNORE = -100

# Varied refusals: one fixed string would teach the model a token pattern, not a decision.
REFUSALS = (
    "I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I won't help with this. It could cause real harm to people.",
    "Sorry, I can't provide that. If you're dealing with something difficult, I'm happy to talk about safer options.",
    "I'm not able to help with that request.",
    "I can't do that. Providing this could put people at risk.",
    "That's not something I can help with. Is there something else I can do for you?",
    "I must decline. This request asks for something harmful or illegal.",
    "I'm sorry, I can't give instructions or content like that.",
    "No, I can't help with this one. I'd be glad to help with a different question.",
    "I can't assist with creating or spreading harmful content.",
    "I'm unable to help with that, as it could be used to hurt someone.",
    "I won't provide that information, but I can point you to legitimate resources if that helps.",
    "Sorry, that's a request I have to refuse.",
    "I can't support that. Let me know if there's something safe I can help with instead.",
    "I'm not going to help with that because it could lead to harm.",
)


def refusal_for(prompt_id: str, seed: int) -> str:
    """A refusal picked by hashing the prompt id: stable across runs and resumes, varied across prompts."""
    h = int(hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()[:8], 16)
    return REFUSALS[h % len(REFUSALS)]


def turn_end(tokenizer) -> str:
    """What the chat template writes after an assistant reply (e.g. `<|im_end|>`), so SFT teaches the
    model to stop the way its template does. Falls back to the EOS token for template-less models."""
    if getattr(tokenizer, "chat_template", None):
        marker = "\u2063REPLY\u2063"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        if text.count(marker) == 1:
            tail = text.split(marker)[1].rstrip()
            if tail:
                return tail
    return tokenizer.eos_token or ""


def record_exchange(rec) -> tuple:
    """(prompt, reply) of one data record, each None when missing: the first user turn of its chat
    (`messages`, OpenAI style, or `conversations`, ShareGPT style) and the assistant turn right after
    it; or, for a flat record, `text`|`prompt` and `reply`|`response`|`output`.

    The one chat-record reader of training (distillation pairs, replies carried by teacher data);
    clients/ has its own, torch-free, for scanning.
    """
    if not isinstance(rec, dict):
        return None, None
    turns = rec.get("messages") or rec.get("conversations")
    if isinstance(turns, list):
        roles = [(t.get("role") or t.get("from"), t.get("content") or t.get("value")) for t in turns if isinstance(t, dict)]
        for i, (role, text) in enumerate(roles):
            if role in ("user", "human"):
                nxt = roles[i + 1] if i + 1 < len(roles) else (None, None)
                return text, nxt[1] if nxt[0] in ("assistant", "gpt") else None
        return None, None
    return rec.get("text") or rec.get("prompt"), rec.get("reply") or rec.get("response") or rec.get("output")


@dataclass
class SftPair:
    ids: list[int]  # prompt (template included) + reply + end of turn
    n_prompt: int  # the first n_prompt tokens carry no loss


def encode_pairs(encoder, prompts: list[str], replies: list[str], end: str, max_reply_tokens: int) -> list[SftPair]:
    """Encode (prompt, reply) pairs with the serving PromptEncoder; replies are cut to max_reply_tokens
    but always end with the end-of-turn marker."""
    prompt_ids = encoder.encode(prompts, truncation="right").ids
    tail = encoder.tokenizer.encode(end, add_special_tokens=False).ids if end else []
    out = []
    for p, r in zip(prompt_ids, replies):
        body = encoder.tokenizer.encode(r, add_special_tokens=False).ids[:max_reply_tokens]
        out.append(SftPair(ids=p + body + tail, n_prompt=len(p)))
    return out


def collate(pairs: list[SftPair], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (input_ids, attention_mask, labels); labels are IGNORE on prompt and pad tokens."""
    width = max(len(p.ids) for p in pairs)
    ids = np.full((len(pairs), width), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    labels = np.full_like(ids, IGNORE)
    for i, p in enumerate(pairs):
        ids[i, : len(p.ids)] = p.ids
        mask[i, : len(p.ids)] = 1
        labels[i, p.n_prompt : len(p.ids)] = p.ids[p.n_prompt :]
    return ids, mask, labels


def reply_logits(causal_lm, input_ids, attention_mask, labels):
    """(logits, targets) at the positions whose next token is a reply token, in row-major order.

    The LM head runs only there: with a 49k vocabulary the head over every prompt position would cost
    more than the decoder layers we train. Distillation relies on the row-major order to line the
    student's positions up with cached teacher targets.
    """
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    target = labels[:, 1:]
    keep = target != IGNORE
    return causal_lm.lm_head(hidden[:, :-1][keep]).float(), target[keep]


def reply_loss(causal_lm, input_ids, attention_mask, labels, reduction: str = "mean"):
    """Next-token cross-entropy on labelled (reply) positions only."""
    import torch.nn.functional as F

    logits, target = reply_logits(causal_lm, input_ids, attention_mask, labels)
    return F.cross_entropy(logits, target, reduction=reduction)


def perplexity(causal_lm, pairs: list[SftPair], pad_id: int, batch_size: int = 8) -> float:
    """Token-weighted perplexity of the replies given their prompts."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            ids, mask, labels = (torch.from_numpy(a) for a in collate(pairs[i : i + batch_size], pad_id))
            total += float(reply_loss(causal_lm, ids, mask, labels, reduction="sum"))
            count += int((labels[:, 1:] != IGNORE).sum())
    return math.exp(total / max(count, 1))
