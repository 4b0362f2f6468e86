"""The row contract shared by readers, writers, engines and the report.

A `Row` is one input row: its position, its original fields (or the raw text when it could not be
parsed) and, once checked, either the item to score or the reason it cannot be scored. Outputs keep
every original field and add the `reftguard_*` columns below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTPUTS = ("allowed", "review", "flagged", "errors")  # review: in a bundle's review band (docs/curation.md)
OUTPUT_OF = {"allow": "allowed", "review": "review", "flag": "flagged"}  # verdict -> output

SCORE, VERDICT, TURN, BUNDLE = "reftguard_score", "reftguard_verdict", "reftguard_turn", "reftguard_bundle_id"
ROLE, REASON = "reftguard_role", "reftguard_reason"
ROW, ERROR, RAW = "reftguard_row", "reftguard_error", "reftguard_raw"
DECISION_COLUMNS = (SCORE, VERDICT, TURN, BUNDLE, ROLE, REASON)
ERROR_COLUMNS = (ROW, ERROR, RAW)
OUR_COLUMNS = frozenset(DECISION_COLUMNS + ERROR_COLUMNS)


@dataclass
class Row:
    index: int  # 0-based position in the input; the order outputs are written in
    record: dict[str, Any] | None  # original fields; None when the row could not be parsed
    raw: str | None = None  # the unparsed text of a row whose record is None
    error: str | None = None  # "<kind>: <detail>" when the row cannot be scored
    item: dict[str, Any] | None = None  # what is sent to the scorer (see records.to_item)


@dataclass(frozen=True)
class Outcome:
    score: float
    flagged: bool
    turn: int  # index in the chat's messages of the deciding turn; -1 for text
    truncated: bool
    role: str = "user"  # the deciding turn's role
    reason: str = ""  # reftguard.scoring.REASONS, or "" when no turn is over its threshold
    review: bool = False  # not flagged, but in the review band: a person should see it

    @property
    def verdict(self) -> str:
        return "flag" if self.flagged else "review" if self.review else "allow"

    @property
    def output(self) -> str:
        """The scan output the row goes to."""
        return OUTPUT_OF[self.verdict]


def decided(row: Row, outcome: Outcome, bundle_id: str) -> dict[str, Any]:
    """The output record of a scored row: original fields plus the decision columns."""
    rec = {k: v for k, v in row.record.items() if k not in OUR_COLUMNS}
    rec.update({SCORE: outcome.score, VERDICT: outcome.verdict, TURN: outcome.turn, BUNDLE: bundle_id,
                ROLE: outcome.role, REASON: outcome.reason})
    return rec


def failed(row: Row) -> dict[str, Any]:
    """The output record of a row that could not be scored: original fields (or raw text) plus why."""
    rec = {k: v for k, v in (row.record or {}).items() if k not in OUR_COLUMNS}
    rec.update({ROW: row.index, ERROR: row.error, RAW: row.raw})
    return rec


def error_kind(reason: str) -> str:
    return reason.split(":", 1)[0]
