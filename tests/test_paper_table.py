"""CI smoke of bench/paper_table.py --quick on the packaged SmolLM2 (slow: a few minutes on 2 cores).

The quick sizes are too small for the numbers to mean anything; this checks that the four runs and the two
context rows go through the real CLI end to end and that the table is consistent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_paper_table_quick(tmp_path):
    out = tmp_path / "paper"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_table.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "paper_table.json").read_text())
    rows = {row["key"]: row for row in r["rows"]}
    assert set(rows) == {"student0", "teacher", "a", "b", "c", "d"}
    for row in rows.values():
        assert row["harmful_score"] + row["refusal_rate"] + row["no_content_rate"] == pytest.approx(1.0)
        assert 0.0 <= row["finetuning_accuracy"] <= 1.0 and row["n_harmful"] == 12 and row["n_task"] == 12
    assert rows["teacher"]["refusal_rate"] >= 0.5  # the shipped teacher refuses held-out harmful prompts
    assert rows["a"]["harmful_rows_trained"] == 4 and rows["b"]["harmful_rows_trained"] <= 1  # the guard removed the poison
    assert rows["c"]["batches"] == {"user": 6, "align": 2} and rows["a"]["batches"] == {"user": 6, "align": 0}
    assert rows["d"]["peak_rss_mb"] > 100 and rows["d"]["teacher_targets_seconds"] > 0
    assert r["judge_agreement"]["n"] >= 50
    assert "(d) filter + alignment distillation" in (out / "paper_table.md").read_text()
