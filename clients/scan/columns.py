"""Decision columns for a batch of records: the shared core of the HF and Ray entry points.

`BatchScorer` is a picklable callable: it carries only the engine settings and opens its client
(or ORT session) on first use, in whatever process or Ray actor runs it.
"""
from __future__ import annotations

from typing import Any

from reftguard.clients.scan.records import prepare
from reftguard.clients.scan.rows import BUNDLE, ERROR, REASON, ROLE, SCORE, TURN, VERDICT, Row

ERROR_MODES = ("raise", "flag")


class BatchScorer:
    def __init__(self, engine: dict[str, Any], text_field: str | None = None, errors: str = "raise"):
        if errors not in ERROR_MODES:
            raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
        self.engine_kw, self.text_field, self.errors = dict(engine), text_field, errors
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from reftguard.clients.scan.runner import scan_engine

            self._engine = scan_engine(**self.engine_kw)
        return self._engine

    def __getstate__(self):  # the engine (threads, sockets, ORT session) is rebuilt where it is used
        return {**self.__dict__, "_engine": None}

    def columns(self, records: list[dict[str, Any]], start: int = 0) -> dict[str, list]:
        """{column: values} to add to `records`; rows that cannot be scored raise, or (errors='flag')
        get verdict 'error' and their reason in `reftguard_error`."""
        e = self.engine
        rows = (prepare(Row(start + i, rec), self.text_field, e.max_chars) for i, rec in enumerate(records))
        out: dict[str, list] = {SCORE: [], VERDICT: [], TURN: [], BUNDLE: [], ROLE: [], REASON: []}
        if self.errors == "flag":
            out[ERROR] = []
        for row, outcome in e.decide(rows):
            if outcome is None and self.errors == "raise":
                raise ValueError(f"row {row.index} cannot be scored: {row.error} (pass errors='flag' to route such rows to flagged)")
            ok = outcome is not None
            out[SCORE].append(outcome.score if ok else None)
            out[VERDICT].append(outcome.verdict if ok else "error")
            out[TURN].append(outcome.turn if ok else -1)
            out[BUNDLE].append(e.bundle_id)
            out[ROLE].append(outcome.role if ok else None)
            out[REASON].append(outcome.reason if ok else None)
            if ERROR in out:
                out[ERROR].append(None if ok else row.error)
        return out

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def engine_settings(*, target=None, bundle=None, client=None, threshold=None, source="", truncation=None, batch_size=32, in_flight=8) -> dict:
    if bool(bundle) == bool(target or client):
        raise ValueError("pass exactly one of target= (the guard service) or bundle= (in-process ORT)")
    return {"target": target, "bundle": str(bundle) if bundle else None, "client": client, "threshold": threshold, "source": source,
            "truncation": truncation, "batch_size": batch_size, "in_flight": in_flight}
