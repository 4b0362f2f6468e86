"""JSONL: one JSON object per line. Blank lines are not rows; anything else is a row, and a line that
is not a JSON object becomes an errors row that keeps the line verbatim in `reftguard_raw`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from reftguard.clients.scan.appendfile import AppendFileWriter, replace_bytes
from reftguard.clients.scan.fileformat import FileFormat
from reftguard.clients.scan.rows import Row


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield line


def parse_line(index: int, line: bytes) -> Row:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Row(index, None, raw=line.decode("utf-8", "replace").rstrip("\r\n"), error=f"bad encoding: not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(index, None, raw=text.rstrip("\r\n"), error=f"unparseable JSON: {exc}")
    if not isinstance(record, dict):
        return Row(index, None, raw=text.rstrip("\r\n"), error=f"not an object: the line is a JSON {type(record).__name__}")
    return Row(index, record)


class JsonlReader:
    def __init__(self, path: Path):
        self.path = path

    def count(self) -> int:
        return sum(1 for _ in _lines(self.path))

    def rows(self, start: int = 0) -> Iterator[Row]:
        for i, line in enumerate(_lines(self.path)):
            if i >= start:
                yield parse_line(i, line)


def _line(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, ensure_ascii=False, default=str)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (from a "\ud800" escape) stays an escape, so the file stays UTF-8
        return json.dumps(record, ensure_ascii=True, default=str).encode("ascii") + b"\n"


def _encode(records: list[dict[str, Any]]) -> bytes:
    return b"".join(_line(r) for r in records)


class JsonlFormat(FileFormat):
    name, suffix, reader_class = "jsonl", ".jsonl", JsonlReader

    def writer(self, out: Path, name: str, reader: JsonlReader) -> AppendFileWriter:
        return AppendFileWriter(self.output_path(out, name), _encode)

    def read_output(self, path: Path) -> Iterator[dict[str, Any]]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def rewrite(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Replace an output atomically with `records`."""
        replace_bytes(path, _encode(records))
