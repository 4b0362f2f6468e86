"""bench/render_results.py: the committed docs equal a fresh render of bench/results/, every registered
source exists, and the rendering itself (markers, registry, formatting) does what its docstring says."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import render_results as rr
from tests.conftest import ROOT


def test_committed_docs_equal_a_fresh_render():
    diffs = rr.check()
    assert not diffs, "docs are out of date with bench/results/; run `python bench/render_results.py`:\n" + "\n".join(diffs)


def test_check_command_exits_zero_on_the_committed_docs():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "render_results.py"), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_registered_source_exists_and_renders():
    assert rr.REGISTRY
    for table in rr.REGISTRY.values():
        for src in table.sources:
            assert (ROOT / src).is_file(), f"{table.name}: missing source {src}"
        assert table.render().strip(), table.name


def test_every_registered_block_is_used_in_a_doc():
    used = {m.group("name") for p in rr.doc_paths() for m in rr.BLOCK.finditer(p.read_text(encoding="utf-8"))}
    assert set(rr.REGISTRY) <= used, f"registered but in no doc: {sorted(set(rr.REGISTRY) - used)}"


def _fake_registry(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "fake.json").write_text(json.dumps(
        {"sets": {"guard-dev": {"n": 1234, "auroc": 0.99651, "recall": 0.9}, "hard": {"n": 7, "auroc": 0.5, "recall": None}}}))
    (tmp_path / "bench" / "results" / "log.jsonl").write_text('{"step": 0, "x": 0.25}\n\n{"step": 10, "x": 1.5}\n')

    def fake(r):
        return rr.md_table(["set", "n", "AUROC", "recall"], [[k, rr.num(v["n"]), rr.f3(v["auroc"]), rr.f3(v["recall"])] for k, v in r["sets"].items()])

    def both(r, log):
        return f"{len(r['sets'])} sets, last step {log[-1]['step']} at {rr.ratio(log[-1]['x'])}"

    return {"fake": rr.Table("fake", ("bench/results/fake.json",), fake),
            "both": rr.Table("both", ("bench/results/fake.json", "bench/results/log.jsonl"), both)}


def test_renderer_on_a_fake_json_gives_the_expected_block(tmp_path):
    reg = _fake_registry(tmp_path)
    doc = ("# Title\n\nProse stays.\n\n<!-- results:fake -->\nstale | table\n<!-- /results:fake -->\n\n"
           "Between.\n<!-- results:both -->\n<!-- /results:both -->\nEnd, and a quoted `<!-- results:NAME -->` is not a marker.\n")
    expected = (
        "# Title\n\nProse stays.\n\n"
        "<!-- results:fake -->\n\n"
        "| set | n | AUROC | recall |\n"
        "|---|---|---|---|\n"
        "| guard-dev | 1,234 | 0.997 | 0.900 |\n"
        "| hard | 7 | 0.500 | - |\n\n"
        "<!-- /results:fake -->\n\n"
        "Between.\n"
        "<!-- results:both -->\n\n"
        "2 sets, last step 10 at 1.50x\n\n"
        "<!-- /results:both -->\n"
        "End, and a quoted `<!-- results:NAME -->` is not a marker.\n"
    )
    out = rr.render_text(doc, root=tmp_path, registry=reg)
    assert out == expected
    assert rr.render_text(out, root=tmp_path, registry=reg) == out  # idempotent


def test_marker_errors(tmp_path):
    reg = _fake_registry(tmp_path)
    with pytest.raises(ValueError, match="no renderer registered for results block 'nope'"):
        rr.render_text("<!-- results:nope -->\n<!-- /results:nope -->\n", registry=reg)
    with pytest.raises(ValueError, match="unbalanced"):
        rr.render_text("<!-- results:fake -->\nno end\n", root=tmp_path, registry=reg)


def test_register_api():
    before = dict(rr.REGISTRY)
    try:
        @rr.register("test_only_block", ["bench/results/serve_vs_ort.json"])
        def render(r):
            return f"{rr.num(r['n_prompts'])} prompts"

        assert rr.REGISTRY["test_only_block"].render().endswith(" prompts")
        with pytest.raises(ValueError, match="registered twice"):
            rr.register("test_only_block", [], render)
        with pytest.raises(ValueError, match="bad block name"):
            rr.register("no spaces", [], render)
    finally:
        rr.REGISTRY.clear()
        rr.REGISTRY.update(before)


def test_check_reports_a_stale_doc(tmp_path, monkeypatch):
    reg = _fake_registry(tmp_path)
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "x.md"
    doc.write_text("<!-- results:fake -->\n| old |\n<!-- /results:fake -->\n")
    monkeypatch.setattr(rr, "REGISTRY", reg)
    diffs = rr.check(tmp_path)
    assert len(diffs) == 1 and "docs/x.md" in diffs[0] and "+| guard-dev | 1,234 | 0.997 | 0.900 |" in diffs[0]
    doc.write_text(rr.render_text(doc.read_text(), root=tmp_path))
    assert rr.check(tmp_path) == []


def test_a_soup_stage1_renders_each_member_the_soup_and_stage2():
    member = "reftguard train-teacher --data d.jsonl --out runs/tC --steps 200"
    teacher = {"layer": 16, "model": "packaged:smollm2", "record": {
        "command": "reftguard train-teacher --out runs/s2 --reg-weight 0.0 --init-teacher runs/soup",
        "stage1": {"command": "reftguard soup-teacher --members runs/tC,runs/tH --out runs/soup --rank 8", "members": [
            {"command": member, "seconds": 1920, "refreshes": 10, "holdout_at_layer": {"auroc": 0.9956, "recall_at_1pct_fpr": 0.97, "n": 200}},
            {"command": member.replace("runs/tC", "runs/tH") + " --seed 1", "seconds": 1860, "refreshes": 10, "holdout_at_layer": None}]}}}
    out = rr.render_default_teacher(teacher, [])
    assert "--out member1 --steps 200" in out and "--out member2 --steps 200 --seed 1" in out
    assert "reftguard soup-teacher --members member1,member2 --out stage1 --rank 8" in out
    assert "--init-teacher stage1" in out and "runs/" not in out  # no run directories of this machine
    assert "| 1 | 0 | 0.996 | 0.970 | 200 | 10 | 32 min |" in out and "| 2 | 1 | - | - |" in out
