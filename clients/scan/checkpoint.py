"""The resume state of a scan, committed atomically after each chunk.

`<out>/.reftguard/checkpoint.json` says how many input rows are done, the state of each output (byte
size for JSONL/CSV, part count for Parquet/HF) and the running input row count and content hash.
It is written to a temp file, fsynced and renamed over the old one, after the outputs it describes
are fsynced: so after a SIGKILL at any instant, the checkpoint on disk never claims more than the
outputs hold, and a resume cuts the outputs back to exactly what it claims.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = ".reftguard"


@dataclass
class Checkpoint:
    fingerprint: str  # what was scanned and how; a resume must match it
    rows_done: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)  # output name -> writer state
    counts: dict[str, int] = field(default_factory=dict)  # output name -> rows written
    input_hash: str = "0" * 64  # digest.MultisetHash over the rows done
    scanned: bool = False  # every input row is in an output; only finalizing is left
    done: bool = False  # outputs merged and report written
    elapsed_s: float = 0.0  # scanning time summed over runs

    @staticmethod
    def path(out: Path) -> Path:
        return out / STATE_DIR / "checkpoint.json"

    @classmethod
    def load(cls, out: Path) -> "Checkpoint | None":
        p = cls.path(out)
        if not p.is_file():
            return None
        return cls(**json.loads(p.read_text()))

    def commit(self, out: Path) -> None:
        p = self.path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        dir_fd = os.open(p.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def fingerprint(**what: Any) -> str:
    """A hash of everything that changes which rows go where (not speed knobs like batch size)."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def input_identity(path: Path) -> dict[str, Any]:
    """Path, size and mtime of the input (every file of it, for a folder): a changed input is a new scan."""
    p = path.resolve()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return {"path": str(p), "files": [(str(q.relative_to(p)) if p.is_dir() else q.name, q.stat().st_size, q.stat().st_mtime_ns) for q in files]}
