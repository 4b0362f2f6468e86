"""The progress bar (rows, rate, ETA, live flagged/error counts) and the end-of-scan summary, via rich."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any


@contextmanager
def scan_progress(total: int | None, done: int, enabled: bool = True):
    """Yields an `on_rows(rows_done, counts)` callback that drives a rich progress bar (stderr)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} rows/s" if task.speed else "-- rows/s")

    progress = Progress(BarColumn(bar_width=24), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn(), TextColumn("{task.fields[counts]}"), console=Console(stderr=True), transient=False)
    task = progress.add_task("scan", total=total, completed=done, counts="")

    def on_rows(rows: int, counts: dict[str, int]) -> None:
        progress.update(task, completed=rows, counts=f"flag {counts['flagged']:,} review {counts['review']:,} err {counts['errors']:,}")

    with progress:
        yield on_rows


def print_summary(report: dict[str, Any], out: str) -> None:
    from rich.console import Console
    from rich.table import Table

    r = report["rows"]
    t = Table(title=f"reftguard scan: {report['input']}", show_header=True)
    for col in ("rows", "allowed", "review", "flagged", "errors", "flag rate", "rows/s"):
        t.add_column(col, justify="right")
    t.add_row(f"{r['input']:,}", f"{r['allowed']:,}", f"{r['review']:,}", f"{r['flagged']:,}", f"{r['errors']:,}", f"{report['flag_rate']:.2%}",
              f"{report['rows_per_s'] or 0:,.0f}")
    c = Console(stderr=True)
    c.print(t)
    ok = "[green]exactly once: OK[/green]" if report["exactly_once"] else "[red]exactly once: FAILED[/red]"
    c.print(f"{ok}  bundle {report['bundle_id']}  threshold {report['threshold']:+.4f}  ({report['mode']})")
    if report["errors_by_kind"]:
        c.print("errors: " + ", ".join(f"{k} ({v})" for k, v in report["errors_by_kind"].items()))
    c.print(f"outputs and report.html in {out}")
