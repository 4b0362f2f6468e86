"""The contract every input/output format implements (JSONL, CSV, Parquet, HF folders).

A format gives a reader over the input (`count()`, `rows(start)`), a chunked writer per output
(`restore(state)`, `write(records)`, `commit() -> state`, `finalize()`), a reader over finished
outputs (`read_output`) and an atomic `rewrite` of one output (used by `review --apply`).
"""
from __future__ import annotations

from pathlib import Path


class FileFormat:
    name: str
    suffix: str  # of output paths: allowed<suffix>, flagged<suffix>, errors<suffix>
    reader_class: type

    def reader(self, path: Path, split: str | None = None):
        return self.reader_class(path)

    def output_path(self, out: Path, name: str) -> Path:
        return out / f"{name}{self.suffix}"
