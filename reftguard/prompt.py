"""The prompt format: how a user turn is wrapped before it is scored.

At fit time the model's chat template is rendered once around a sentinel (one user turn, generation
prompt on) and split into a fixed `prefix` and `suffix`. The server then wraps every user turn the same
way with plain string concatenation, so serving needs no Jinja and no transformers, and scoring matches
fitting exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

SENTINEL = "\u2063REFTGUARD_USER_TURN\u2063"
USER_ROLES = ("user", "human")  # OpenAI and ShareGPT spellings


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


def user_turns(messages: Sequence[Any]) -> list[tuple[int, str]]:
    """(index, content) of the user turns of a chat, for objects with .role/.content or dicts.

    ShareGPT records use `from`/`value`; both shapes are accepted.
    """
    out: list[tuple[int, str]] = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role = m.get("role", m.get("from"))
            content = m.get("content", m.get("value"))
        else:
            role, content = m.role, m.content
        if isinstance(role, str) and role.lower() in USER_ROLES:
            out.append((i, content))
    return out


def all_texts(turns: Iterable[tuple[int, str]]) -> list[str]:
    return [t for _, t in turns]
