"""No work twice: a bounded cache of scored rows, keyed by what decides a row's score.

A row's score depends only on the model (bundle id and the engine/precision serving it), the role whose
feature reads it, and its token ids: scores are batch-invariant (padding never reaches a real token; measured
max |Δ| 0 for onnxruntime fp32 and OpenVINO bf16, docs/design.md). So a repeated turn (the system prompt of
every row of a chat dataset, a duplicated record) is scored once and then looked up. Least recently used
entries go first; each costs ~200 bytes (a 16-byte digest and the cached result), so 100,000 entries are
~20 MB. Not thread-safe: one owner (the server's event loop, or one scan).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np


class ScoreCache:
    def __init__(self, max_entries: int):
        if max_entries < 0:
            raise ValueError(f"score cache size must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._rows: OrderedDict[bytes, Any] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(model: str, role: str, ids: Sequence[int]) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{model}\0{role}\0".encode())
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        return h.digest()

    def get(self, key: bytes) -> Any | None:
        value = self._rows.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._rows.move_to_end(key)
        return value

    def put(self, key: bytes, value: Any) -> None:
        if not self.max_entries:
            return
        self._rows[key] = value
        self._rows.move_to_end(key)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)

    def lookup(self, model: str, roles: Sequence[str], ids: Sequence[Sequence[int]]) -> tuple[list[bytes], dict[bytes, Any], dict[bytes, list[int]]]:
        """Per row its key; the results of the keys scored before; and for each key still to score, its rows
        (the first is the one to run, the others are copies in the same batch)."""
        keys = [self.key(model, role, row) for role, row in zip(roles, ids)]
        found: dict[bytes, Any] = {}
        todo: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            if k in todo:
                todo[k].append(i)
            elif k not in found:
                hit = self.get(k)
                if hit is None:
                    todo[k] = [i]
                else:
                    found[k] = hit
        return keys, found, todo

    def __len__(self) -> int:
        return len(self._rows)
