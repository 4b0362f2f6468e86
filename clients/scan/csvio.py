"""CSV: a header row, then one row per record (all values are strings). A row whose cell count differs
from the header's becomes an errors row with its cells as a JSON list in `reftguard_raw`. Chat fields
are JSON strings in their cells (records.py parses them). Bytes that are not UTF-8 are carried as
lone surrogates (`surrogateescape`): such a cell's row goes to errors, and its bytes are written back
unchanged."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from reftguard.clients.scan.appendfile import AppendFileWriter, replace_bytes
from reftguard.clients.scan.fileformat import FileFormat
from reftguard.clients.scan.rows import DECISION_COLUMNS, ERROR_COLUMNS, OUR_COLUMNS, Row

csv.field_size_limit(1 << 30)  # prompts can be long; the default 128 KiB limit would reject them


class CsvReader:
    def __init__(self, path: Path):
        self.path = path
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            self.header = next(csv.reader(f), [])

    def _records(self) -> Iterator[list[str]]:
        with open(self.path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.reader(f)
            next(reader, None)
            for cells in reader:
                if cells:  # a blank line is not a row
                    yield cells

    def count(self) -> int:
        return sum(1 for _ in self._records())

    def rows(self, start: int = 0) -> Iterator[Row]:
        n = len(self.header)
        for i, cells in enumerate(self._records()):
            if i < start:
                continue
            if len(cells) != n:
                yield Row(i, None, raw=json.dumps(cells, ensure_ascii=False), error=f"bad row: {len(cells)} cells, the header has {n}")
            else:
                yield Row(i, dict(zip(self.header, cells)))


def _columns(header: list[str], name: str) -> list[str]:
    extra = ERROR_COLUMNS if name == "errors" else DECISION_COLUMNS
    return [c for c in header if c not in OUR_COLUMNS] + list(extra)


def _encoder(columns: list[str]):
    def encode(records: list[dict[str, Any]]) -> bytes:
        buf = io.StringIO()
        w = csv.DictWriter(buf, columns, restval="", extrasaction="ignore", lineterminator="\n")
        w.writerows(records)
        return buf.getvalue().encode("utf-8", "surrogateescape")

    return encode


def _header(columns: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(columns)
    return buf.getvalue().encode("utf-8")


class CsvFormat(FileFormat):
    name, suffix, reader_class = "csv", ".csv", CsvReader

    def writer(self, out: Path, name: str, reader: CsvReader) -> AppendFileWriter:
        columns = _columns(reader.header, name)
        return AppendFileWriter(self.output_path(out, name), _encoder(columns), header=_header(columns))

    def read_output(self, path: Path) -> Iterator[dict[str, Any]]:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            yield from csv.DictReader(f)

    def rewrite(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Replace an output atomically with `records`, keeping its columns."""
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            columns = next(csv.reader(f))
        replace_bytes(path, _header(columns) + _encoder(columns)(records))
