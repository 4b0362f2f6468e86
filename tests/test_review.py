"""`reftguard review`: the textual UI driven by its pilot, verdicts in reviewed.jsonl and in the
server's feedback metrics, and --apply moving released items into allowed."""
from __future__ import annotations

import asyncio
import json

import pytest

from reftguard.cli import main
from reftguard.clients import GuardClient
from reftguard.clients.review.app import ReviewApp
from reftguard.clients.review.session import ReviewSession, apply_reviews
from reftguard.clients.scan import ScanConfig, run_scan
from tests.scan_data import outputs, server, text_records, write  # noqa: F401 (server is a fixture)


@pytest.fixture
def scanned(server, tmp_path):
    path = write("jsonl", text_records(40), tmp_path)
    out = tmp_path / "out"
    run_scan(ScanConfig(input=str(path), out=str(out), target=server.target))
    return out


def _drive(session: ReviewSession, keys: list[str]):
    async def go():
        app = ReviewApp(session)
        async with app.run_test() as pilot:
            for k in keys:
                await pilot.press(k)
            await pilot.pause()
            shown = str(app.query_one("#meta").render())
            await pilot.press("q")
        return app, shown

    return asyncio.run(go())


def test_review_ui_records_verdicts_and_sends_feedback(server, scanned):
    flagged = sorted(outputs(scanned, "jsonl")["flagged"], key=lambda r: -r["reftguard_score"])
    assert len(flagged) >= 6
    before = {lab: server.value("reftguard_feedback_total", served="flag", reviewed=lab) for lab in ("benign", "harmful")}
    with GuardClient(server.target) as client:
        session = ReviewSession(scanned, feedback=client.feedback, reviewer="ana")
        (app, shown) = _drive(session, ["k", "r", "s", "r", "k"])
    assert f"5/{len(flagged)}" not in shown and f"6/{len(flagged)}" in shown  # five keys handled: on to the sixth item
    lines = [json.loads(l) for l in (scanned / "reviewed.jsonl").read_text().splitlines()]
    # highest score first; the skipped third item has no verdict
    assert [(l["id"], l["verdict"]) for l in lines] == [(flagged[0]["id"], "keep"), (flagged[1]["id"], "release"),
                                                        (flagged[3]["id"], "release"), (flagged[4]["id"], "keep")]
    assert all(l["feedback_sent"] and l["reviewer"] == "ana" for l in lines)
    assert lines[0]["score"] == pytest.approx(flagged[0]["reftguard_score"])
    # the verdicts reached the service's metrics: released = served flag, reviewed benign
    assert server.value("reftguard_feedback_total", served="flag", reviewed="benign") == before["benign"] + 2
    assert server.value("reftguard_feedback_total", served="flag", reviewed="harmful") == before["harmful"] + 2
    # a new session offers only what is left, the skipped item first
    again = ReviewSession(scanned)
    assert len(again.items) == len(flagged) - 4 and again.current.id == flagged[2]["id"]


def test_apply_moves_released_items_into_allowed(scanned):
    before = outputs(scanned, "jsonl")
    session = ReviewSession(scanned, order="lowest")
    assert [it.score for it in session.items] == sorted(r["reftguard_score"] for r in before["flagged"])
    released = [session.current.id]
    session.decide("release")
    session.decide("keep")
    released.append(session.current.id)
    session.decide("release")
    assert apply_reviews(scanned) == {"released": 2, "moved": 2, "kept": 0}
    after = outputs(scanned, "jsonl")
    assert len(after["allowed"]) == len(before["allowed"]) + 2 and len(after["flagged"]) == len(before["flagged"]) - 2
    moved = {r["id"]: r for r in after["allowed"] if r["reftguard_verdict"] == "released"}
    assert sorted(moved) == sorted(released)
    assert not {r["id"] for r in after["flagged"]} & set(released)
    report = json.loads((scanned / "report.json").read_text())
    assert report["exactly_once"] and report["rows"]["allowed"] == len(after["allowed"]) and report["review"] == {"moved": 2, "kept": 0}
    # idempotent, also through the CLI
    assert main(["review", str(scanned), "--no-ui", "--apply"]) == 0
    assert outputs(scanned, "jsonl") == after


def test_review_cli_sends_feedback_with_target(server, scanned, monkeypatch):
    """The CLI wires --target to the Feedback RPC (UI replaced by pressing keys through its pilot)."""
    from reftguard.clients.review import app as app_mod

    def run_with_keys(self):
        async def go():
            async with self.run_test() as pilot:
                await pilot.press("r", "q")
        asyncio.run(go())

    monkeypatch.setattr(app_mod.app_class(), "run", run_with_keys)
    before = server.value("reftguard_feedback_total", served="flag", reviewed="benign")
    assert main(["review", str(scanned), "--target", server.target, "--apply"]) == 0
    assert server.value("reftguard_feedback_total", served="flag", reviewed="benign") == before + 1
    assert sum(r["reftguard_verdict"] == "released" for r in outputs(scanned, "jsonl")["allowed"]) == 1
