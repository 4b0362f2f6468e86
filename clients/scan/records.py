"""Record shapes: turning one dataset record into the item the guard scores, or a reason it can't be.

Shapes, checked per record in this order unless `text_field` is given:
  - `messages`: OpenAI chat, a list of {role, content};
  - `conversations`: ShareGPT, a list of {from, value} (`human` is the user, `gpt` the assistant);
  - `instruction` (+ optional `input`) and `output`: Alpaca-style, one user turn and its reply;
  - `text` (or `prompt`), with an optional reply field (`reply`, `response`, `output`, `completion`):
    one user turn, and its reply when there is one.
Chat fields may also be JSON strings (CSV cells). A finetuning record teaches its replies, so every
turn is sent with its role (normalised: system, user, assistant) and content; the server scores the
roles its bundle is calibrated for. Rows are checked here against the same rules the server enforces
(reftguard.prompt.text_problem), so a bad row becomes an `errors` row instead of failing a whole batch.
"""
from __future__ import annotations

import json
from typing import Any

from reftguard.clients.scan.rows import Row
from reftguard.prompt import REPLY_FIELDS, message_fields, normalize_role, text_problem

CHAT_FIELDS = ("messages", "conversations")
TEXT_FIELDS = ("text", "prompt")
DEFAULT_MAX_CHARS = 2_000_000


class RecordError(ValueError):
    """A record that cannot be scored; str() is the reason written to the errors output."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")


def _check_text(value: Any, where: str, max_chars: int) -> str:
    problem = text_problem(value, max_chars)
    if problem:
        raise RecordError(problem[0], f"{where} {problem[1]}")
    return value


def _chat(value: Any, field: str, max_chars: int) -> list[dict[str, str]]:
    if isinstance(value, str):  # a chat stored as a JSON string (CSV, some Parquet exports)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RecordError("unparseable JSON", f"field {field!r} is a string but not JSON: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise RecordError("bad chat", f"field {field!r} is {type(value).__name__}, not a list of turns")
    turns, users = [], 0
    for t, m in enumerate(value):
        if not isinstance(m, dict):
            raise RecordError("bad chat", f"{field}[{t}] is {type(m).__name__}, not an object")
        raw_role, content = message_fields(m)
        if not isinstance(raw_role, str):
            raise RecordError("bad chat", f"{field}[{t}] has no string role/from")
        role = normalize_role(raw_role)
        if role is None:
            raise RecordError("bad chat", f"{field}[{t}] has unknown role {raw_role[:64]!r}")
        if role == "user":
            users += 1
        elif content is None or (isinstance(content, str) and not content.strip()):
            content = ""  # an empty reply teaches nothing: sent for its index, not scored
        if content != "" or role == "user":
            content = _check_text(content, f"{field}[{t}] content", max_chars)
        turns.append({"role": role, "content": content})
    if not users:
        raise RecordError("no user turn", f"field {field!r} has no user/human turn to score")
    return turns


def _exchange(prompt: Any, reply: Any, prompt_where: str, reply_where: str, max_chars: int) -> list[dict[str, str]]:
    """A flat prompt-reply record as a two-turn chat (an empty reply is sent, not scored)."""
    turns = [{"role": "user", "content": _check_text(prompt, prompt_where, max_chars)}]
    if reply is not None and not (isinstance(reply, str) and not reply.strip()):
        turns.append({"role": "assistant", "content": _check_text(reply, reply_where, max_chars)})
    return turns


def to_item(record: dict[str, Any], index: int, text_field: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """The item for one record: {"id", "text"} or {"id", "messages"}; raises RecordError."""
    item_id = str(index)  # the row position, so each decision can be matched to its row
    if text_field:
        if text_field not in record:
            raise RecordError("missing field", f"field {text_field!r} is missing")
        return {"id": item_id, "text": _check_text(record[text_field], f"field {text_field!r}", max_chars)}
    for field in CHAT_FIELDS:
        if record.get(field) not in (None, ""):  # "" is an empty CSV cell: the field is absent
            return {"id": item_id, "messages": _chat(record[field], field, max_chars)}
    if isinstance(record.get("instruction"), str) and "output" in record:  # Alpaca: instruction (+ input) -> output
        extra = record.get("input")
        prompt = record["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return {"id": item_id, "messages": _exchange(prompt, record["output"], "field 'instruction'", "field 'output'", max_chars)}
    for field in TEXT_FIELDS:
        if field in record:
            reply = next((f for f in REPLY_FIELDS if f in record), None)
            if reply is None:
                return {"id": item_id, "text": _check_text(record[field], f"field {field!r}", max_chars)}
            return {"id": item_id, "messages": _exchange(record[field], record[reply], f"field {field!r}", f"field {reply!r}", max_chars)}
    raise RecordError("missing field", "no 'messages', 'conversations', 'instruction', 'text' or 'prompt' field (use --text-field)")


def prepare(row: Row, text_field: str | None, max_chars: int) -> Row:
    """Fill `row.item`, or `row.error` when the record cannot be scored."""
    if row.error is None and row.record is not None:
        try:
            row.item = to_item(row.record, row.index, text_field, max_chars)
        except RecordError as exc:
            row.error = str(exc)
    return row


def scored_text(record: dict[str, Any], turn: int, text_field: str | None = None) -> str:
    """The text of the turn that decided an output record (for report previews and review): the turn
    index is into the item `to_item` built, so flat prompt-reply records resolve too."""
    try:
        item = to_item(record, 0, text_field, max_chars=1 << 62)
    except RecordError:
        return ""
    if "messages" in item:
        return item["messages"][turn]["content"] if 0 <= turn < len(item["messages"]) else ""
    return item["text"]
