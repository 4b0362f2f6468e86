"""The prompt format: how a user turn is wrapped before it is scored.

At fit time the model's chat template is rendered once around a sentinel (one user turn, generation
prompt on) and split into a fixed `prefix` and `suffix`. The server then wraps every user turn the same
way with plain string concatenation, so serving needs no Jinja and no transformers, and scoring matches
fitting exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SENTINEL = "\u2063REFTGUARD_USER_TURN\u2063"


@dataclass(frozen=True)
class PromptFormat:
    prefix: str
    suffix: str
    source: str = "chat_template"  # or "plain" for models without a template

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: Any) -> "PromptFormat":
        """Render `tokenizer.chat_template` around a sentinel; plain text if the model has no template."""
        if not getattr(tokenizer, "chat_template", None):
            return cls(prefix="", suffix="", source="plain")
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": SENTINEL}], tokenize=False, add_generation_prompt=True
        )
        if rendered.count(SENTINEL) != 1:
            raise ValueError("chat template does not render the user turn exactly once; cannot derive a prompt format")
        prefix, suffix = rendered.split(SENTINEL)
        return cls(prefix=prefix, suffix=suffix)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PromptFormat":
        return cls(prefix=d["prefix"], suffix=d["suffix"], source=d.get("source", "chat_template"))


# Every spelling of a chat role that datasets use, mapped to the three roles the guard scores with their
# own thresholds. A finetuning record teaches its assistant turns, so replies are judged, not skipped;
# tool and function outputs are input the model reads, like a user turn.
ROLE_ALIASES = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user", "prompt": "user", "instruction": "user", "input": "user",
    "tool": "user", "function": "user", "ipython": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "response": "assistant", "output": "assistant", "reply": "assistant", "completion": "assistant",
}
ROLES = ("system", "user", "assistant")
# The reply field of a flat prompt-reply record (`text`/`prompt` + one of these), in lookup order.
REPLY_FIELDS = ("reply", "response", "output", "completion")


def normalize_role(role: Any) -> str | None:
    """`system`, `user` or `assistant` for a known spelling (any case), else None."""
    return ROLE_ALIASES.get(role.strip().lower()) if isinstance(role, str) else None


def message_fields(m: Any) -> tuple[Any, Any]:
    """(role, content) of one chat message: OpenAI {role, content}, ShareGPT {from, value}, or an object
    with .role/.content (a protobuf ChatMessage)."""
    if isinstance(m, dict):
        return m.get("role", m.get("from")), m.get("content", m.get("value"))
    return getattr(m, "role", None), getattr(m, "content", None)


def text_problem(value: Any, max_chars: int) -> tuple[str, str] | None:
    """Why a turn's text cannot be scored, as (kind, detail), or None when it can. The one text check of
    the server (INVALID_ARGUMENT) and the scan (an `errors` row), so both refuse the same things."""
    if value is None:
        return "missing field", "is missing or null"
    if not isinstance(value, str):
        return "non-string content", f"is {type(value).__name__}, not a string"
    if not value.strip():
        return "empty text", "is missing or empty"
    if "\x00" in value:
        return "bad text", "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "bad text", "is not valid Unicode (a lone surrogate or undecodable byte)"
    if len(value) > max_chars:
        return "too long", f"has {len(value)} characters; the limit is {max_chars}"
    return None
