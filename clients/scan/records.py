"""Record shapes: turning one dataset record into the item the guard scores, or a reason it can't be.

Shapes, checked per record in this order unless `text_field` is given:
  - `messages`: OpenAI chat, a list of {role, content};
  - `conversations`: ShareGPT, a list of {from, value} (`human` is the user);
  - `text` (or `prompt`): one plain prompt.
Chat fields may also be JSON strings (CSV cells). Only user turns are scored, so only their content is
sent; other turns go as content-less `assistant` turns, which keeps each turn's index (the decision's
`turn`) while not shipping replies we never score. Rows are checked here against the same rules the
server enforces, so a bad row becomes an `errors` row instead of failing a whole batch.
"""
from __future__ import annotations

import json
from typing import Any

from reftguard.clients.scan.rows import Row

CHAT_FIELDS = ("messages", "conversations")
TEXT_FIELDS = ("text", "prompt")
USER_ROLES = ("user", "human")
DEFAULT_MAX_CHARS = 2_000_000


class RecordError(ValueError):
    """A record that cannot be scored; str() is the reason written to the errors output."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")


def _check_text(value: Any, where: str, max_chars: int) -> str:
    if value is None:
        raise RecordError("missing field", f"{where} is missing or null")
    if not isinstance(value, str):
        raise RecordError("non-string content", f"{where} is {type(value).__name__}, not a string")
    if not value.strip():
        raise RecordError("empty text", f"{where} is empty")
    if "\x00" in value:
        raise RecordError("bad text", f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError("bad text", f"{where} is not valid Unicode (a lone surrogate or undecodable byte)") from None
    if len(value) > max_chars:
        raise RecordError("too long", f"{where} has {len(value)} characters; the limit is {max_chars}")
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
        role = m.get("role", m.get("from"))
        if not isinstance(role, str):
            raise RecordError("bad chat", f"{field}[{t}] has no string role/from")
        if role.lower() in USER_ROLES:
            content = _check_text(m.get("content", m.get("value")), f"{field}[{t}] content", max_chars)
            turns.append({"role": "user", "content": content})
            users += 1
        else:
            turns.append({"role": "assistant", "content": ""})
    if not users:
        raise RecordError("no user turn", f"field {field!r} has no user/human turn to score")
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
    for field in TEXT_FIELDS:
        if field in record:
            return {"id": item_id, "text": _check_text(record[field], f"field {field!r}", max_chars)}
    raise RecordError("missing field", "no 'messages', 'conversations', 'text' or 'prompt' field (use --text-field)")


def prepare(row: Row, text_field: str | None, max_chars: int) -> Row:
    """Fill `row.item`, or `row.error` when the record cannot be scored."""
    if row.error is None and row.record is not None:
        try:
            row.item = to_item(row.record, row.index, text_field, max_chars)
        except RecordError as exc:
            row.error = str(exc)
    return row


def scored_text(record: dict[str, Any], turn: int, text_field: str | None = None) -> str:
    """The text that was scored for an output record (for report previews and review)."""
    if turn >= 0:
        for field in CHAT_FIELDS:
            chat = record.get(field)
            if isinstance(chat, str):
                chat = json.loads(chat) if chat else None
            if chat and turn < len(chat):
                m = chat[turn]
                return str(m.get("content", m.get("value", "")))
    for field in (text_field,) + TEXT_FIELDS if text_field else TEXT_FIELDS:
        if isinstance(record.get(field), str):
            return record[field]
    return ""
