"""An output file that grows by appended chunks and can be cut back to a committed byte offset.

JSONL and CSV outputs use it: `commit()` flushes and fsyncs and returns the byte size, which the
checkpoint records; `restore(size)` truncates a file a killed run left longer than that.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


class AppendFileWriter:
    def __init__(self, path: Path, encode: Callable[[list[dict[str, Any]]], bytes], header: bytes = b""):
        self.path, self.encode, self.header = path, encode, header
        self.f = None
        self.rows = 0

    def restore(self, state: int | None) -> None:
        """Cut the file back to `state` bytes (None: start empty) and reopen it for appending."""
        size = int(state or 0)
        with open(self.path, "ab") as f:  # creates it if missing
            f.truncate(size)
            if size == 0 and self.header:
                f.write(self.header)
        self.f = open(self.path, "ab")

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self.f.write(self.encode(records))

    def commit(self) -> int:
        self.f.flush()
        os.fsync(self.f.fileno())
        return self.f.tell()

    def finalize(self) -> Path:
        self.close()
        return self.path

    def close(self) -> None:
        if self.f is not None and not self.f.closed:
            self.f.close()


def replace_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
