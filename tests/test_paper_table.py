"""bench/paper_table.py: the seeds aggregation and the resumable per-(seed, row) results (fast, with fake
child processes), and the CI smoke of --quick on the packaged SmolLM2 (slow: a few minutes on 2 cores).

The quick sizes are too small for the numbers to mean anything; the smoke checks that the four runs and the
two context rows go through the real CLI end to end and that the tables are consistent."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import paper_table as pt
from tests.conftest import ROOT


# ------------------------------------------------------------------------------------------ aggregation


def _seed(seed, **rows):
    """A per-seed result with rows key -> (HS, FA, benign refusal, benign ppl)."""
    return {"seed": seed, "rows": [{"key": k, "name": f"({k})", "harmful_score": v[0], "finetuning_accuracy": v[1], "benign_refusal_rate": v[2],
                                    "benign_ppl": v[3], "refusal_rate": 1 - v[0], "no_content_rate": 0.0} for k, v in rows.items()]}


def test_mean_and_standard_error_by_hand():
    assert pt.mean_se([0.2, 0.4, 0.3]) == pytest.approx({"mean": 0.3, "se": 0.1 / math.sqrt(3), "n": 3})
    assert pt.mean_se([0.5, None, 0.7]) == pytest.approx({"mean": 0.6, "se": 0.1, "n": 2})  # sd 0.1414 / sqrt 2
    assert pt.mean_se([0.25]) == {"mean": 0.25, "se": None, "n": 1}
    assert pt.mean_se([]) == {"mean": None, "se": None, "n": 0}


def test_paired_differences_by_hand():
    per_seed = [
        _seed(0, b=(0.0, 0.30, 0.10, 9.0), c=(0.50, 0.20, 0.20, 5.0), d=(0.20, 0.30, 0.10, 4.0), teacher=(0.05, 0.0, 0.3, 2.0)),
        _seed(1, b=(0.0, 0.40, 0.10, 9.0), c=(0.50, 0.20, 0.20, 5.0), d=(0.40, 0.20, 0.30, 4.0), teacher=(0.05, 0.0, 0.3, 2.0)),
        _seed(2, b=(0.0, 0.20, 0.10, 9.0), c=(0.80, 0.20, 0.20, 5.0), d=(0.30, 0.25, 0.20, 4.0), teacher=(0.05, 0.0, 0.3, 2.0)),
    ]
    a = pt.aggregate(per_seed)
    rows = {e["key"]: e for e in a["rows"]}
    assert [e["key"] for e in a["rows"]] == ["b", "c", "d", "teacher"] and rows["d"]["seeds"] == [0, 1, 2]
    assert rows["d"]["harmful_score"] == pytest.approx({"mean": 0.3, "se": 0.1 / math.sqrt(3), "n": 3})
    assert rows["teacher"]["harmful_score"]["se"] == pytest.approx(0.0)
    pairs = {p["pair"]: p for p in a["pairs"]}
    dc, db = pairs["(d)-(c)"], pairs["(d)-(b)"]
    # HS (d)-(c) per seed: -0.3, -0.1, -0.5 -> mean -0.3, sd 0.2, s.e. 0.2/sqrt(3) = 0.115: lower HS beyond one s.e.
    assert [p["harmful_score"] for p in dc["per_seed"]] == pytest.approx([-0.3, -0.1, -0.5])
    assert dc["harmful_score"] == pytest.approx({"mean": -0.3, "se": 0.2 / math.sqrt(3), "n": 3})
    assert dc["verdict"]["harmful_score"] == "(d) better than (c) beyond one s.e."
    # FA (d)-(c): 0.1, 0.0, 0.05 -> mean 0.05, s.e. 0.05/sqrt(3) = 0.029: higher FA beyond one s.e.
    assert dc["finetuning_accuracy"]["mean"] == pytest.approx(0.05) and dc["verdict"]["finetuning_accuracy"].endswith("better than (c) beyond one s.e.")
    # FA (d)-(b): 0.0, -0.2, 0.05 -> mean -0.05, sd 0.1323, s.e. 0.0764: not beyond one s.e.
    assert db["finetuning_accuracy"] == pytest.approx({"mean": -0.05, "se": math.sqrt(0.0525 / 3) / math.sqrt(3), "n": 3})
    assert db["verdict"]["finetuning_accuracy"] == "(d) not different from (b) beyond one s.e."
    # HS (d)-(b): 0.2, 0.4, 0.3: worse; benign ppl (d)-(b) = -5 in every seed: s.e. 0, better
    assert db["verdict"]["harmful_score"] == "(d) worse than (b) beyond one s.e."
    assert db["benign_ppl"]["mean"] == pytest.approx(-5.0) and db["verdict"]["benign_ppl"].startswith("(d) better")
    # a pair is only taken over seeds where both rows ran
    partial = pt.aggregate([_seed(0, c=(0.5, 0.2, 0.2, 5.0), d=(0.2, 0.3, 0.1, 4.0)), _seed(1, d=(0.4, 0.2, 0.3, 4.0))])
    p = partial["pairs"][0]
    assert p["seeds"] == [0] and p["harmful_score"]["se"] is None and p["verdict"]["harmful_score"] == "one seed: no standard error"
    md = pt.render_seeds({"quick": True, "size": {"user_steps": 6, "batch_size": 4, "align_fraction": 0.25}, "student": "s", "seeds": [0, 1, 2],
                          "teacher": {"bundle_id": "bid", "adapter_sha256": "ab" * 32, "content_sha256": "cd" * 32}, "teacher_consistent": True,
                          "total_seconds": 1.0, **a})
    assert "0.300 ± 0.058" in md and "(d)-(c)" in md and "[-0.300, -0.100, -0.500]" in md


# ------------------------------------------------------------------------------------------ resumability


class FakeRuns:
    """Stands in for the child processes: writes what make-data / distill / evaluate-model would, and logs calls."""

    def __init__(self, fail_on: str = ""):
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, args, log_path):
        opt = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
        if args[0] == "make-data":
            self.calls.append("make-data")
            d = Path(opt["--data-dir"])
            d.mkdir(parents=True, exist_ok=True)
            rows = [{"id": f"t{i}", "label": "benign", "kind": "task"} for i in range(8)] + [{"id": "g", "label": "benign", "kind": "general"},
                                                                                            {"id": "h", "label": "harmful", "kind": "poison"}]
            (d / "user.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            for n in ("task-eval", "align", "harmful-eval", "benign-eval"):
                (d / f"{n}.jsonl").write_text(json.dumps({"seed": opt["--data-seed"], "n": n}) + "\n")
        elif args[0] == "distill":
            key = Path(opt["--out"]).name
            self.calls.append(f"distill:{key}")
            if key == self.fail_on:
                raise RuntimeError("interrupted")
            Path(opt["--out"]).mkdir(parents=True, exist_ok=True)
            (Path(opt["--out"]) / "student.json").write_text(json.dumps({"batches": {"user": 6, "align": 2}, "teacher_targets_seconds": 0, "final": {}}))
        else:
            out = Path(opt["--eval-out"])
            self.calls.append(f"eval:{out.parent.name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"harmful_score": 0.5, "finetuning_accuracy": 0.25, "refusal_rate": 0.5, "no_content_rate": 0.0,
                                       "benign_refusal_rate": 0.125, "benign_ppl": 3.0, "n_harmful": 8, "n_task": 4, "n_benign": 8}))
        return {"seconds": 0.1, "peak_rss_mb": 1.0}


def _fake_scan(user, out, bundle):
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in user.read_text().splitlines()]
    (out / "allowed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"] != "harmful"))
    return {"rows": {"input": len(rows), "flagged": 1}, "flag_rate": 0.1, "bundle_id": bundle[1], "threshold": 0.5, "allowed": str(out / "allowed.jsonl")}


def test_a_finished_seed_and_row_is_not_rerun(tmp_path):
    teacher = {"dir": "/t", "adapter_sha256": "a" * 64, "content_sha256": "c" * 64, "cache_id": "x", "bundle_id": "b1"}
    ns = SimpleNamespace(student="s", teacher="", quick=True, no_context=False, variant_keys=["a", "b", "c", "d"], teacher_now=lambda: teacher)
    size = dict(pt.QUICK, align_fraction=0.25)
    every = ["make-data", "eval:student0", "eval:teacher"] + [x for k in "abcd" for x in (f"distill:{k}", f"eval:{k}")]

    # interrupted in (c): (a) and (b) are finished and kept
    runs = FakeRuns(fail_on="c")
    with pytest.raises(RuntimeError, match="interrupted"):
        pt.run_seed(0, ns, size, tmp_path / "seed0", teacher, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == every[:8]
    runs = FakeRuns()
    r = pt.run_seed(0, ns, size, tmp_path / "seed0", teacher, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == ["distill:c", "eval:c", "distill:d", "eval:d"] and r["ran"] == ["c", "d"]
    assert [row["key"] for row in r["rows"]] == ["student0", "teacher", "a", "b", "c", "d"]
    assert {row["key"]: row["harmful_rows_trained"] for row in r["rows"] if "harmful_rows_trained" in row} == {"a": 1, "b": 0, "c": 1, "d": 0}
    # every result file records the teacher as used and the guard's bundle
    res = json.loads((tmp_path / "seed0" / "d" / "result.json").read_text())
    assert res["teacher"]["adapter_sha256"] == "a" * 64 and res["teacher"]["bundle_id"] == "b1" and res["guard_bundle_id"] == "b1"

    # a finished seed: nothing runs, not even make-data; the rows are the same
    runs = FakeRuns()
    again = pt.run_seed(0, ns, size, tmp_path / "seed0", teacher, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == [] and again["rows"] == r["rows"] and again["ran"] == []

    # another seed is its own draw: everything runs there
    runs = FakeRuns()
    pt.run_seed(1, ns, size, tmp_path / "seed1", teacher, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == every

    # a new teacher: only the rows that read it are redone
    new = teacher | {"adapter_sha256": "e" * 64, "content_sha256": "f" * 64}
    ns.teacher_now = lambda: new
    runs = FakeRuns()
    pt.run_seed(0, ns, size, tmp_path / "seed0", new, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == ["eval:teacher", "distill:d", "eval:d"]

    # the teacher replaced while a row that reads it runs: refused, and that row is not marked finished
    ns.teacher_now = lambda: teacher
    (tmp_path / "seed0" / "d" / "result.json").unlink()
    with pytest.raises(RuntimeError, match="changed while"):
        pt.run_seed(0, ns, size, tmp_path / "seed0", new, ("bundle", "b1"), run=FakeRuns(), scan=_fake_scan)
    assert not (tmp_path / "seed0" / "d" / "result.json").exists()

    # an evaluation change (here its sizes) re-evaluates every row but retrains none: finished distills are reused
    runs = FakeRuns()
    pt.run_seed(1, ns, dict(size, eval=dict(size["eval"], n_benign=99)), tmp_path / "seed1", teacher, ("bundle", "b1"), run=runs, scan=_fake_scan)
    assert runs.calls == ["eval:student0", "eval:teacher", "eval:a", "eval:b", "eval:c", "eval:d"]


def test_prior_seeds_merge_only_the_same_measurement(tmp_path):
    """Seeds from an earlier seeds file join a new run's seeds as if run now; a file that measured another
    teacher, student or size is refused. A guard that differs per seed is named in the table."""
    teacher = {"dir": "/t", "adapter_sha256": "a" * 64, "content_sha256": "c" * 64, "bundle_id": "b1"}
    size = dict(pt.QUICK, align_fraction=0.25)
    ns = SimpleNamespace(student="s", quick=True, prior="")

    def full(seed, bundle_id, threshold, **rows):
        return {**_seed(seed, **rows), "quick": True, "size": size, "student": "s", "teacher": teacher, "ran": [], "judge_agreement": None,
                "scan": {"rows": {"input": 10, "flagged": 1}, "flag_rate": 0.1, "bundle_id": bundle_id, "threshold": threshold},
                "user_data": {"rows": 10, "task": 8, "general": 1, "harmful": 1, "benign_removed": 0}}

    earlier = [full(0, "b1", -0.3419550, c=(0.5, 0.2, 0.2, 5.0), d=(0.2, 0.3, 0.1, 4.0)),
               full(1, "b1", -0.3419550, c=(0.5, 0.2, 0.2, 5.0), d=(0.4, 0.2, 0.3, 4.0))]
    f = tmp_path / "earlier.json"
    f.write_text(json.dumps(pt.summarize(earlier, ns, {"t": 0.0})))
    prior = pt.prior_seeds(f, size, ns, teacher)
    assert sorted(prior) == [0, 1] and prior[1]["rows"] == earlier[1]["rows"] and prior[1]["scan"] == earlier[1]["scan"]
    merged = pt.summarize([prior[0], prior[1], full(2, "b2", -0.3419552, c=(0.8, 0.2, 0.2, 5.0), d=(0.3, 0.25, 0.2, 4.0))], ns, {"t": 0.0})
    d = {e["key"]: e for e in merged["rows"]}["d"]
    assert d["harmful_score"] == pytest.approx({"mean": 0.3, "se": 0.1 / math.sqrt(3), "n": 3}) and merged["prior"] == {"0": str(f), "1": str(f)}
    md = pt.render_seeds(merged)
    assert "seed 2: b2 (threshold -0.3419552)" in md and f"Seeds 0, 1 are taken from {f}" in md
    with pytest.raises(SystemExit, match="teacher differ"):
        pt.prior_seeds(f, size, ns, teacher | {"content_sha256": "e" * 64})
    with pytest.raises(SystemExit, match="size differ"):
        pt.prior_seeds(f, dict(size, user_steps=7), ns, teacher)
    with pytest.raises(SystemExit, match="student differ"):
        pt.prior_seeds(f, size, SimpleNamespace(student="other", quick=True), teacher)


# ------------------------------------------------------------------------------------------------ smoke


@pytest.mark.slow
def test_paper_table_quick(tiny_llama, tiny_teacher, tiny_bundle, tmp_path):
    """The whole bench through the real CLI (make-data, scan, four distill runs, six evaluations, the tables), on the
    tiny student, teacher and bundle: the shipped SmolLM2 run took 7 of the suite's 10 minutes on 2 cores, and
    what the shipped teacher does is tested in tests/test_teacher_train.py and measured by the bench itself."""
    out = tmp_path / "paper"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_table.py"), "--quick", "--out", str(out), "--student", str(tiny_llama),
                           "--teacher", str(tiny_teacher), "--bundle", str(tiny_bundle)], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "seed0" / "paper_table.json").read_text())
    rows = {row["key"]: row for row in r["rows"]}
    assert set(rows) == {"student0", "teacher", "a", "b", "c", "d"}
    for row in rows.values():
        assert row["harmful_score"] + row["refusal_rate"] + row["no_content_rate"] == pytest.approx(1.0)
        assert 0.0 <= row["finetuning_accuracy"] <= 1.0 and row["n_harmful"] == 12 and row["n_task"] == 12
        assert 0.0 <= row["benign_refusal_rate"] <= 1.0 and row["n_benign"] == 12 and row["n_benign_hard_negative"] == 6
        assert row["benign_ppl"] >= 1.0
    # (a) trains on every row, poison included; (b) on what the guard allowed
    assert rows["a"]["harmful_rows_trained"] == 5 and rows["b"]["harmful_rows_trained"] <= 5
    assert rows["b"]["user_rows"] == r["scan"]["rows"]["allowed"] < rows["a"]["user_rows"] == r["scan"]["rows"]["input"]
    assert rows["a"]["general_rows_trained"] == 12  # the user task mixes in general instructions
    assert rows["c"]["batches"] == {"user": 6, "align": 2} and rows["a"]["batches"] == {"user": 6, "align": 0}
    assert rows["d"]["peak_rss_mb"] > 100 and rows["d"]["teacher_targets_seconds"] > 0
    assert r["judge_agreement"]["n"] >= 50
    assert r["teacher"]["bundle_id"] == r["scan"]["bundle_id"]  # the bundle exported from this teacher
    assert "(d) filter + alignment distillation" in (out / "seed0" / "paper_table.md").read_text()
    agg = json.loads((out / "paper_table_seeds.json").read_text())
    assert agg["seeds"] == [0] and [p["pair"] for p in agg["pairs"]] == ["(d)-(c)", "(d)-(b)"]
    assert (out / "paper_table_seeds.png").stat().st_size > 0 and "(d)-(b)" in (out / "paper_table_seeds.md").read_text()
    assert json.loads((out / "seed0" / "d" / "result.json").read_text())["teacher"]["adapter_sha256"] == r["teacher"]["adapter_sha256"]
