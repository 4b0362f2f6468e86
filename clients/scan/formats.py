"""Which file format an input is, and the reader/writer set for it."""
from __future__ import annotations

from pathlib import Path

from reftguard.clients.scan.arrowio import HfFormat, ParquetFormat
from reftguard.clients.scan.csvio import CsvFormat
from reftguard.clients.scan.jsonl import JsonlFormat

FORMATS = {f.name: f for f in (JsonlFormat(), CsvFormat(), ParquetFormat(), HfFormat())}
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def detect_format(path: str | Path, given: str | None = None):
    """The format object for `path`: `given` if set, else from the suffix or an HF folder's marker files."""
    if given:
        if given not in FORMATS:
            raise ValueError(f"unknown format {given!r}; use one of {sorted(FORMATS)}")
        return FORMATS[given]
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {p} does not exist")
    if p.is_dir():
        if any((p / m).exists() for m in HF_MARKERS):
            return FORMATS["hf"]
        raise ValueError(f"{p} is a folder but not an HF save_to_disk dataset (no {' / '.join(HF_MARKERS)}); pass --format")
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {p.name} from its suffix; pass --format {{{','.join(FORMATS)}}}")
    return FORMATS[fmt]
