"""The review UI (textual): one item at a time, the review band first, then the flagged items, each
highest or lowest score first; each shows its deciding turn's role and the reason.

Keys: k keep (flag it), r release the item, s skip for now, q quit. Everything a key does goes
through `ReviewSession`, so the UI holds no state of its own.
"""
from __future__ import annotations

import functools

from reftguard.clients.review.session import ReviewSession


def ReviewApp(session: ReviewSession):  # noqa: N802 - builds the app class below; named like it
    """The textual App over `session` (textual and rich are imported only when a UI is made)."""
    return app_class()(session)


@functools.cache
def app_class():
    from rich.markup import escape
    from textual.app import App, ComposeResult
    from textual.containers import VerticalScroll
    from textual.widgets import Footer, Header, Static

    class _ReviewApp(App):
        TITLE = "reftguard review"
        CSS = "#meta { padding: 0 1; background: $boost; } #text { padding: 1 2; } #status { padding: 0 1; color: $warning; }"
        BINDINGS = [("k", "keep", "Keep flag"), ("r", "release", "Release"), ("s", "skip", "Skip"), ("q", "quit", "Quit")]

        def __init__(self, session: ReviewSession):
            super().__init__()
            self.session = session
            self.counts = {"keep": 0, "release": 0}

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static(id="meta")
            with VerticalScroll():
                yield Static(id="text")
            yield Static(id="status")
            yield Footer()

        def on_mount(self) -> None:
            self._show()

        def _show(self) -> None:
            s, item = self.session, self.session.current
            meta, text = self.query_one("#meta", Static), self.query_one("#text", Static)
            tally = f"kept {self.counts['keep']}  released {self.counts['release']}"
            if item is None:
                meta.update(f"All {len(s.items)} items reviewed ({s.reviewed_before} earlier).  {tally}")
                text.update("Press q to quit. Run `reftguard review DIR --apply` to move released items into allowed "
                            "and kept band items into flagged.")
                return
            where = "text" if item.turn < 0 else f"{item.role} turn {item.turn}"
            part = "[yellow]review band[/yellow]" if item.part == "review" else "[red]flagged[/red]"
            why = f"  {escape(item.reason)}" if item.reason else ""
            meta.update(f"[b]{s.pos + 1}/{len(s.items)}[/b]  {part}{why}  id {escape(item.id)}  score {item.score:+.4f} "
                        f"(threshold {s.report['threshold']:+.4f})  {where}  |  {tally}")
            text.update(escape(item.text))

        def _decide(self, verdict: str) -> None:
            if self.session.current is None:
                return
            try:
                self.session.decide(verdict)
            except Exception as exc:  # e.g. the service is unreachable: say so, keep the item
                self.query_one("#status", Static).update(f"not recorded: {type(exc).__name__}: {escape(str(exc))}")
                return
            self.counts[verdict] += 1
            self.query_one("#status", Static).update("")
            self._show()

        def action_keep(self) -> None:
            self._decide("keep")

        def action_release(self) -> None:
            self._decide("release")

        def action_skip(self) -> None:
            if self.session.current is not None:
                self.session.skip()
                self._show()

    return _ReviewApp
