"""No machine paths in shipped files: the package data, the docs and the committed results name files
relative to the repository (or the user's own paths in examples), never a path of the machine that
produced them (/work/..., /tmp/..., /home/..., /root/..., /Users/...). Such a path means nothing on
another machine and says where a run happened instead of how to reproduce it."""
from __future__ import annotations

import re

from tests.conftest import ROOT

MACHINE_PATH = re.compile(r"(^|[^A-Za-z0-9_./])(/(?:work|tmp|home|root|Users)/[A-Za-z][^\s\"'`),]*)")
TEXT = {".json", ".jsonl", ".md", ".txt"}


def shipped_text_files() -> list:
    files = [p for p in (ROOT / "reftguard" / "data").rglob("*") if p.suffix in TEXT]
    files += list((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    files += [p for p in (ROOT / "bench" / "results").rglob("*") if p.suffix in TEXT | {".log"}]
    return sorted(p for p in files if p.is_file())


def test_the_scan_covers_the_shipped_files():
    names = {p.relative_to(ROOT).as_posix() for p in shipped_text_files()}
    assert {"README.md", "docs/results.md", "reftguard/data/guard-dev.jsonl", "bench/results/paper_table.json"} <= names


def test_pattern_finds_machine_paths_only():
    hits = lambda s: [m.group(2) for m in MACHINE_PATH.finditer(s)]  # noqa: E731
    assert hits('"out": "/work/runs/x"') == ["/work/runs/x"]
    assert hits("reftguard default-bundle --out /tmp/x") == ["/tmp/x"]
    assert hits("/home/ana/data.jsonl at the start of a line") == ["/home/ana/data.jsonl"]
    for fine in ("reftguard/data/guard-dev.jsonl", "~/.cache/reftguard", "s3://datasets/work/x", "runs/work/tmp/x",
                 "file:///opt/pypi", "--bundle /models/guard-bundle", "a/tmp/b"):
        assert hits(fine) == [], fine


def test_no_machine_paths_in_shipped_files():
    found = []
    for path in shipped_text_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in MACHINE_PATH.finditer(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {m.group(2)}")
    assert not found, "machine paths in shipped files (write paths relative to the repository):\n" + "\n".join(found)
