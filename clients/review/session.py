"""Review state: the flagged items of a scan folder in score order, and what a verdict does.

Each verdict is appended to `reviewed.jsonl` (fsynced, so a crash loses at most the key being
pressed) and, with a guard service, sent to its Feedback RPC: the item was served FLAG, and the
reviewer says BENIGN (released) or HARMFUL (kept). Items are keyed by the content hash of their
original record, so a reopened session skips what was already reviewed, and `apply` can move
released items from flagged.* into allowed.* however often it is run.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reftguard.clients.scan.digest import output_digest
from reftguard.clients.scan.formats import FORMATS
from reftguard.clients.scan.records import scored_text
from reftguard.clients.scan.report import summarize, write_report
from reftguard.clients.scan.rows import SCORE, TURN, VERDICT

REVIEWED = "reviewed.jsonl"
VERDICTS = {"keep": "harmful", "release": "benign"}  # reviewer verdict -> Feedback label
RELEASED = "released"  # reftguard_verdict of an item moved into allowed.* by review


@dataclass
class ReviewItem:
    key: str  # content hash of the original record
    id: str
    score: float
    turn: int
    text: str
    record: dict[str, Any] = field(repr=False)


def item_key(record: dict[str, Any]) -> str:
    return f"{output_digest(record):064x}"[:32]


def load_reviewed(out: Path) -> dict[str, dict[str, Any]]:
    """key -> the last verdict line for it (a later line overrides an earlier one)."""
    p = Path(out) / REVIEWED
    if not p.is_file():
        return {}
    lines = [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    return {r["key"]: r for r in lines}


class ReviewSession:
    def __init__(self, out: str | Path, *, order: str = "highest", feedback: Callable[..., None] | None = None,
                 source: str = "", reviewer: str = ""):
        if order not in ("highest", "lowest"):
            raise ValueError(f"order must be 'highest' or 'lowest', got {order!r}")
        self.out = Path(out)
        report_path = self.out / "report.json"
        if not report_path.is_file():
            raise FileNotFoundError(f"{self.out} has no report.json; run `reftguard scan ... --out {self.out}` to completion first")
        self.report = json.loads(report_path.read_text())
        self.fmt = FORMATS[self.report["format"]]
        self.feedback, self.source, self.reviewer = feedback, source, reviewer
        done = load_reviewed(self.out)
        items = []
        for pos, rec in enumerate(self.fmt.read_output(self.out / self.report["outputs"]["flagged"])):
            key = item_key(rec)
            if key in done:
                continue
            turn = int(rec[TURN])
            items.append(ReviewItem(key, str(rec.get("id", key)), float(rec[SCORE]), turn, scored_text(rec, turn), rec))
        items.sort(key=lambda it: it.score, reverse=order == "highest")
        self.items = items
        self.reviewed_before = len(done)
        self.pos = 0

    @property
    def current(self) -> ReviewItem | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def decide(self, verdict: str) -> None:
        """Record `verdict` ('keep' or 'release') for the current item and move to the next one."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be 'keep' or 'release', got {verdict!r}")
        item = self.current
        if item is None:
            raise IndexError("no item left to review")
        line = {"key": item.key, "id": item.id, "score": item.score, "turn": item.turn, "verdict": verdict,
                "reviewer": self.reviewer, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.feedback is not None:
            # before the line is written: a verdict on disk has always reached the service
            self.feedback(item.id, served="flag", reviewed=VERDICTS[verdict], score=item.score, source=self.source, reviewer=self.reviewer)
            line["feedback_sent"] = True
        with open(self.out / REVIEWED, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.pos += 1

    def skip(self) -> None:
        self.pos += 1


def apply_reviews(out: str | Path) -> dict[str, int]:
    """Move released items from flagged.* into allowed.* (marked `released`); idempotent.

    allowed.* is rewritten first, then flagged.*, each atomically; an item already in allowed.* as
    released is not added twice, so a rerun after an interruption completes the move. report.json
    and report.html are recomputed from the new outputs, including the exactly-once check.
    """
    out = Path(out)
    report = json.loads((out / "report.json").read_text())
    fmt = FORMATS[report["format"]]
    released = {k for k, r in load_reviewed(out).items() if r["verdict"] == "release"}
    allowed_p, flagged_p = out / report["outputs"]["allowed"], out / report["outputs"]["flagged"]
    allowed = list(fmt.read_output(allowed_p))
    already = {item_key(r) for r in allowed if r.get(VERDICT) == RELEASED}
    keep, moved, n_moved = [], [], 0
    for rec in fmt.read_output(flagged_p):
        key = item_key(rec)
        if key not in released:
            keep.append(rec)
            continue
        n_moved += 1
        if key not in already:
            moved.append({**rec, VERDICT: RELEASED})
    if n_moved:
        fmt.rewrite(allowed_p, allowed + moved)
        fmt.rewrite(flagged_p, keep)
        s = summarize(fmt, {n: out / p for n, p in report["outputs"].items()})
        rows = {"input": report["rows"]["input"], **s.pop("rows")}
        report["content_hash"]["output"] = s.pop("output_hash")
        report["exactly_once"] = rows["input"] == rows["output"] and report["content_hash"]["input"] == report["content_hash"]["output"]
        released_total = report.get("review", {}).get("moved", 0) + n_moved
        report.update(s, rows=rows, review={"moved": released_total})
        write_report(out, report)
    return {"released": len(released), "moved": n_moved}
