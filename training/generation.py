"""Greedy replies of a causal LM and a file cache for them.

The teacher's benign SFT targets are the *starting* model's own greedy replies (so SFT keeps what the
model already does on benign prompts); they are generated once and cached as JSONL keyed by prompt
id and text hash, so reruns and resumes reuse them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def greedy_replies(causal_lm, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy continuations of already-templated prompts, decoded without special tokens.

    Prompts are batched by length and left-padded (generation appends on the right).
    """
    import torch

    pad = tokenizer.pad_token_id
    out: list[str] = [""] * len(prompt_ids)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(prompt_ids[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(rows):
            ids[r, width - len(prompt_ids[i]) :] = torch.tensor(prompt_ids[i])
            mask[r, width - len(prompt_ids[i]) :] = 1
        with torch.no_grad():
            gen = causal_lm.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
            )
        for r, i in enumerate(rows):
            out[i] = tokenizer.decode(gen[r, width:], skip_special_tokens=True).strip()
    return out


class ReplyCache:
    """JSONL file of {"key", "reply"}; the key binds a reply to the prompt id, its text and the generator."""

    def __init__(self, path: str | Path, generator: str):
        self.path = Path(path)
        self.generator = generator
        self.replies: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.replies[rec["key"]] = rec["reply"]

    def key(self, prompt_id: str, text: str) -> str:
        return hashlib.sha256(json.dumps([self.generator, prompt_id, text]).encode()).hexdigest()[:24]

    def missing(self, items: list[tuple[str, str]]) -> list[int]:
        return [i for i, (pid, text) in enumerate(items) if self.key(pid, text) not in self.replies]

    def get(self, prompt_id: str, text: str) -> str:
        return self.replies[self.key(prompt_id, text)]

    def add(self, items: list[tuple[str, str]], replies: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for (pid, text), reply in zip(items, replies):
                k = self.key(pid, text)
                self.replies[k] = reply
                f.write(json.dumps({"key": k, "id": pid, "reply": reply}, ensure_ascii=False) + "\n")


def record_replies(paths) -> dict[str, str]:
    """Replies carried by the data itself (see sft.record_exchange: a `reply`/`response`/`output` field,
    or the assistant turn after the first user turn), keyed by record id as load_labeled names it.
    Records without one get the model's own greedy reply."""
    from reftguard.data import iter_jsonl
    from reftguard.training.sft import record_exchange

    out: dict[str, str] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        for where, rec in iter_jsonl(path):
            reply = record_exchange(rec)[1]
            if isinstance(reply, str) and reply.strip():
                out[str(rec.get("id", f"{Path(path).name}:{where.rsplit(':', 1)[1]}"))] = reply
    return out


def prompt_encoder(tokenizer, max_tokens: int):
    """The serving PromptEncoder for an in-memory HF tokenizer (written to a temporary tokenizer.json)."""
    import tempfile

    from reftguard.encoding import PromptEncoder
    from reftguard.prompt import PromptFormat

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return PromptEncoder(Path(tmp) / "tokenizer.json", PromptFormat.from_hf_tokenizer(tokenizer), max_tokens)
