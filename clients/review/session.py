"""Review state: the items of a scan folder a person should see, and what a verdict does.

The session starts from the review band (review.*: items between a bundle's review and flag
thresholds, the uncertain ones), then the flagged items (flagged.*), each part in score order.
Each verdict is appended to `reviewed.jsonl` (fsynced, so a crash loses at most the key being
pressed). For a flagged item, with a guard service, it is also sent to the Feedback RPC: the item was
served FLAG, and the reviewer says BENIGN (released) or HARMFUL (kept). A band item was never served
FLAG or ALLOW, so it moves no FP or miss rate and no Feedback is sent for it. Items are keyed by the
content hash of their original record, so a reopened session skips what was already reviewed, and
`apply` moves released items into allowed.* and kept band items into flagged.*, however often it is run.
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
from reftguard.clients.scan.rows import REASON, ROLE, SCORE, TURN, VERDICT

REVIEWED = "reviewed.jsonl"
VERDICTS = {"keep": "harmful", "release": "benign"}  # reviewer verdict -> Feedback label
RELEASED = "released"  # reftguard_verdict of an item moved into allowed.* by review
KEPT = "kept"  # reftguard_verdict of a band item moved into flagged.* by review
PARTS = ("review", "flagged")  # scan outputs a session walks, in this order
MOVES = {("flagged", "release"): ("allowed", RELEASED), ("review", "release"): ("allowed", RELEASED), ("review", "keep"): ("flagged", KEPT)}


@dataclass
class ReviewItem:
    key: str  # content hash of the original record
    id: str
    score: float
    turn: int
    text: str
    record: dict[str, Any] = field(repr=False)
    part: str = "flagged"  # the scan output it comes from (PARTS)
    role: str = "user"  # the deciding turn's role
    reason: str = ""  # why it was flagged or reviewed (reftguard.scoring.REASONS)


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
                 source: str = "", reviewer: str = "", parts: tuple[str, ...] = PARTS):
        if order not in ("highest", "lowest"):
            raise ValueError(f"order must be 'highest' or 'lowest', got {order!r}")
        if not parts or set(parts) - set(PARTS):
            raise ValueError(f"parts must be some of {PARTS}, got {parts!r}")
        self.out = Path(out)
        report_path = self.out / "report.json"
        if not report_path.is_file():
            raise FileNotFoundError(f"{self.out} has no report.json; run `reftguard scan ... --out {self.out}` to completion first")
        self.report = json.loads(report_path.read_text())
        self.fmt = FORMATS[self.report["format"]]
        self.feedback, self.source, self.reviewer = feedback, source, reviewer
        done = load_reviewed(self.out)
        self.items = []
        for part in (p for p in PARTS if p in parts and p in self.report["outputs"]):  # scans before the band have no review.*
            items = []
            for rec in self.fmt.read_output(self.out / self.report["outputs"][part]):
                key = item_key(rec)
                if key in done:
                    continue
                turn = int(rec[TURN])
                items.append(ReviewItem(key, str(rec.get("id", key)), float(rec[SCORE]), turn, scored_text(rec, turn), rec, part,
                                        str(rec.get(ROLE) or "user"), str(rec.get(REASON) or "")))
            self.items += sorted(items, key=lambda it: it.score, reverse=order == "highest")
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
        line = {"key": item.key, "id": item.id, "score": item.score, "turn": item.turn, "verdict": verdict, "part": item.part,
                "reviewer": self.reviewer, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.feedback is not None and item.part == "flagged":
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
    """Move released items into allowed.* (marked `released`) and kept band items from review.* into
    flagged.* (marked `kept`); idempotent.

    Every target output is rewritten first, then every source, each atomically; an item already in its
    target with its mark is not added twice, so a rerun after an interruption completes the move.
    report.json and report.html are recomputed from the new outputs, including the exactly-once check.
    """
    out = Path(out)
    report = json.loads((out / "report.json").read_text())
    fmt = FORMATS[report["format"]]
    verdicts = {k: r["verdict"] for k, r in load_reviewed(out).items()}
    paths = {n: out / p for n, p in report["outputs"].items()}
    records = {n: list(fmt.read_output(paths[n])) for n in ("allowed", *PARTS) if n in paths}
    marked = {n: {item_key(r) for r in records[n] if r.get(VERDICT) in (RELEASED, KEPT)} for n in records}
    added: dict[str, list] = {n: [] for n in records}
    kept: dict[str, list] = {n: [] for n in records}
    n_moved = {"released": 0, "kept": 0}
    for part in (p for p in PARTS if p in records):
        for rec in records[part]:
            key = item_key(rec)
            move = MOVES.get((part, verdicts.get(key, "")))
            if move is None:
                kept[part].append(rec)
                continue
            target, mark = move
            n_moved[mark] += 1
            if key not in marked[target]:
                added[target].append({**rec, VERDICT: mark})
    if any(n_moved.values()):
        for n in ("allowed", "flagged"):
            if added[n]:
                fmt.rewrite(paths[n], records[n] + added[n])
        for part in (p for p in PARTS if p in records):
            if len(kept[part]) != len(records[part]):
                fmt.rewrite(paths[part], kept[part] + (added[part] if part == "flagged" else []))
        s = summarize(fmt, paths)
        rows = {"input": report["rows"]["input"], **s.pop("rows")}
        report["content_hash"]["output"] = s.pop("output_hash")
        report["exactly_once"] = rows["input"] == rows["output"] and report["content_hash"]["input"] == report["content_hash"]["output"]
        before = report.get("review", {})
        report.update(s, rows=rows, review={"moved": before.get("moved", 0) + n_moved["released"], "kept": before.get("kept", 0) + n_moved["kept"]})
        write_report(out, report)
    return {"released": sum(v == "release" for v in verdicts.values()), "moved": n_moved["released"], "kept": n_moved["kept"]}
