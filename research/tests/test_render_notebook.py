"""research/render_notebook.py: the lab notebook's tables equal a fresh render of their results files, and every
registered block has its sources and is used on a notebook page."""
from __future__ import annotations

from bench import render_results as rr
from research import render_notebook as nb
from tests.conftest import ROOT


def test_notebook_equals_a_fresh_render():
    diffs = nb.check()
    assert not diffs, "research/*.md is out of date with its results files; run `python -m research.render_notebook`:\n" + "\n".join(diffs)


def test_every_registered_source_exists_and_every_block_is_used():
    used = {m.group("name") for p in rr.doc_paths(ROOT, nb.GLOBS) for m in rr.BLOCK.finditer(p.read_text(encoding="utf-8"))}
    assert set(nb.REGISTRY) <= used, f"registered but on no notebook page: {sorted(set(nb.REGISTRY) - used)}"
    for table in nb.REGISTRY.values():
        for src in table.sources:
            assert (ROOT / src).is_file(), f"{table.name}: missing source {src}"

