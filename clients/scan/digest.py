"""Content hashes for the exactly-once check.

Every input row gets a sha256 of its original content (its fields minus `reftguard_*` columns, as
canonical JSON, or its raw text when it could not be parsed). The dataset hash is the sum of the row
hashes mod 2**256: order-free, so the multiset of rows across allowed/flagged/errors can be compared
with the input's without sorting, and it can be accumulated chunk by chunk across a resume.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from reftguard.clients.scan.rows import OUR_COLUMNS, RAW

MOD = 1 << 256


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k not in OUR_COLUMNS}
    # surrogatepass: CSV cells keep undecodable bytes as lone surrogates; they must hash, not crash
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def row_digest(record: dict[str, Any] | None, raw: str | None = None) -> int:
    data = b"raw\0" + raw.encode("utf-8", "surrogatepass") if raw is not None else b"rec\0" + _canonical(record or {})
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def output_digest(record: dict[str, Any]) -> int:
    """The digest of the input row an output record came from."""
    return row_digest(record, record.get(RAW) or None)


class MultisetHash:
    def __init__(self, value: int = 0, count: int = 0):
        self.value, self.count = value, count

    def add(self, digest: int) -> None:
        self.value = (self.value + digest) % MOD
        self.count += 1

    def update(self, digests: Iterable[int]) -> "MultisetHash":
        for d in digests:
            self.add(d)
        return self

    @property
    def hex(self) -> str:
        return f"{self.value:064x}"

    @classmethod
    def from_hex(cls, hex_: str, count: int) -> "MultisetHash":
        return cls(int(hex_, 16), count)
