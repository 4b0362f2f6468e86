"""The robustness report's numbers against hand-computed values, and the per-kind calibration limit."""
import json

import numpy as np
import pytest

from reftguard import evaluation
from reftguard.data import LabeledPrompt, load_labeled, select_split, split_of
from reftguard.robustness import build_report, html_page, markdown, plot_png, slice_rows


def _p(i, label, kind, category="", group=""):
    return LabeledPrompt(id=f"p{i}", text=f"prompt {i}", label=label, kind=kind, category=category, group=group)


# 3 hard negatives, 2 instructions (benign); 3 direct (harmful)
PROMPTS = [_p(0, 0, "hard_negative", "homonym"), _p(1, 0, "hard_negative", "homonym"), _p(2, 0, "hard_negative", "history"),
           _p(3, 0, "instruction"), _p(4, 0, "instruction"),
           _p(5, 1, "direct"), _p(6, 1, "direct"), _p(7, 1, "direct")]
SCORES = np.array([0.50, 0.10, -0.20, -0.40, -0.30, 0.60, 0.40, 0.05])


def test_slice_rows_by_hand():
    rows = {(r["slice"], r["label"]): r for r in slice_rows(SCORES, np.array([p.label for p in PROMPTS]), [p.kind for p in PROMPTS], 0.3)}
    hn = rows[("hard_negative", "benign")]
    # flagged at 0.3: only 0.50 of the three
    assert hn["n"] == 3 and hn["flag_rate"] == pytest.approx(1 / 3) and hn["flagged"] == 1
    # Wilson 95% for 1 of 3: centre (1/3 + z²/6) / (1 + z²/3), z = 1.96 -> 0.0615 .. 0.7923 (textbook value)
    assert hn["flag_rate_ci95"] == pytest.approx([0.0615, 0.7923], abs=1e-4)
    # AUROC of hard negatives vs the 3 harmful: pairs (harmful > benign): 0.60 beats all 3, 0.40 beats 0.10 and -0.20,
    # 0.05 beats -0.20 -> 6 of 9
    assert hn["auroc"] == pytest.approx(6 / 9)
    ins = rows[("instruction", "benign")]
    assert ins["flag_rate"] == 0.0 and ins["auroc"] == pytest.approx(1.0)
    assert ins["flag_rate_ci95"] == pytest.approx([0.0, 0.6576], abs=1e-4)  # 0 of 2: upper z²/2 / (1 + z²/2)
    d = rows[("direct", "harmful")]
    # recall at 0.3: 0.60 and 0.40 -> 2/3; AUROC vs the 5 benign: 0.60 beats 5, 0.40 beats 4, 0.05 beats 3 -> 12/15
    assert d["flag_rate"] == pytest.approx(2 / 3) and d["auroc"] == pytest.approx(12 / 15)


def test_report_worst_examples_and_outputs(tmp_path):
    files = ["a.jsonl"] * 5 + ["b.jsonl"] * 3
    r = build_report(SCORES, PROMPTS, files, 0.3, worst=2)
    assert [w["id"] for w in r["worst"]["hard_negative"]] == ["p0", "p1"]  # highest-scored benign first
    assert [w["id"] for w in r["worst"]["direct"]] == ["p7", "p6"]  # lowest-scored harmful first
    assert r["overall"]["fpr"] == pytest.approx(1 / 5) and r["overall"]["recall"] == pytest.approx(2 / 3)
    assert r["files"]["b.jsonl"]["overall"] == {"n": 3}  # one label only: no AUROC to report
    cats = {(x["slice"], x["label"]): x for x in r["files"]["a.jsonl"]["by_category"]}
    assert cats[("hard_negative/homonym", "benign")]["n"] == 2
    h = r["histograms"]["hard_negative (benign)"]
    assert sum(h["counts"]) == 3 and len(h["edges"]) == len(h["counts"]) + 1
    md = markdown(r | {"bundle_id": "x"})
    assert "| hard_negative | benign | 3 | 0.333 | 0.061-0.792 | 0.6667 |" in md
    plot_png(r, tmp_path / "s.png")
    page = html_page(r, tmp_path / "s.png")
    assert page.count("data:image/png;base64,") == 1 and "http" not in page.split("<body>")[1].split("<pre>")[0]
    json.dumps(r)  # serialisable


def test_wilson_interval_by_hand():
    assert evaluation.wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert evaluation.wilson_interval(5, 5) == pytest.approx((0.5655, 1.0), abs=1e-4)
    lo, hi = evaluation.wilson_interval(2, 32)  # the hard-negative slice of handwritten-dev's report half
    assert lo == pytest.approx(0.0173, abs=1e-4) and hi == pytest.approx(0.2015, abs=1e-4)
    assert evaluation.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        evaluation.wilson_interval(4, 3)


def test_suite_headline_gives_the_goal_rates_with_their_intervals():
    """bench/robustness_suite.py's summary entry from hand-built reports: the goal rates and the Wilson
    interval of each, from the counts (not from the rounded rates)."""
    from bench import robustness_suite as suite

    # guard-dev: p3, p5; handwritten: hard negatives p0 (flagged at 0.3), p1, harmful p6; contrast: p2, p4, harmful p7
    files = {3: "guard-dev.jsonl", 5: "guard-dev.jsonl", 0: "handwritten-dev.jsonl", 1: "handwritten-dev.jsonl",
             6: "handwritten-dev.jsonl", 2: "contrast-dev.jsonl", 4: "contrast-dev.jsonl", 7: "contrast-dev.jsonl"}
    dev = build_report(SCORES, PROMPTS, [files[i] for i in range(8)], 0.3, worst=1) | {"bundle_id": "b"}
    long = {"window": {"overall": {"recall": 0.5, "fpr": 0.0, "tp": 1, "fn": 1}}}
    h = suite.headline(dev, long)
    assert h["handwritten_hard_negative_flag_rate"] == 0.5 and h["contrast_benign_flag_rate"] == 0.0
    assert h["contrast_harmful_recall"] == 0.0 and h["long_recall_window"] == 0.5
    ci = h["ci95"]
    assert ci["handwritten_hard_negative_flag_rate"] == pytest.approx([0.0945, 0.9055], abs=1e-4)  # 1 of 2
    assert ci["contrast_benign_flag_rate"] == pytest.approx([0.0, 0.6576], abs=1e-4)  # 0 of 2
    assert ci["contrast_harmful_recall"] == pytest.approx([0.0, 0.7935], abs=1e-4)  # 0 of 1: z² / (1 + z²)
    assert ci["long_recall_window"] == ci["handwritten_hard_negative_flag_rate"]
    assert h["long_split"] == "all"  # a set named without its half predates the split: both halves
    long["window"]["data"] = ["long-context-report-50x2000.jsonl"]
    assert suite.headline(dev, long)["long_split"] == "report"


def test_choose_threshold_honours_per_kind_limit():
    kinds = [p.kind for p in PROMPTS]
    y = [p.label for p in PROMPTS]
    thr, by = evaluation.choose_threshold(SCORES, y, kinds, target_recall=1.0)
    assert by == "recall>=1.0" and thr < 0.05  # all harmful flagged, and so are hard negatives 0.50 and 0.10
    thr, by = evaluation.choose_threshold(SCORES, y, kinds, target_recall=1.0, kind_fpr={"hard_negative": 0.0})
    assert by == "fpr[hard_negative]<=0.0" and thr == pytest.approx(0.50)
    flagged_hn = [s > thr for s, k, l in zip(SCORES, kinds, y) if k == "hard_negative"]
    assert not any(flagged_hn)
    # a limit of one in three lets exactly one hard negative through
    thr, _ = evaluation.choose_threshold(SCORES, y, kinds, target_recall=1.0, kind_fpr={"hard_negative": 0.34})
    assert thr == pytest.approx(0.10) and sum(s > thr for s, k in zip(SCORES, kinds) if k == "hard_negative") == 1
    with pytest.raises(ValueError, match="no benign prompts of that kind"):
        evaluation.choose_threshold(SCORES, y, kinds, target_fpr=0.1, kind_fpr={"chat": 0.01})


@pytest.mark.parametrize("spec", ["hard_negative", "hard_negative=2", "=0.1", "x=abc"])
def test_kind_limit_specs_are_checked(spec):
    with pytest.raises(ValueError, match="KIND=F"):
        evaluation.parse_kind_limits([spec])


def test_calib_report_split_is_disjoint_and_keeps_groups(tmp_path):
    rows = [{"id": f"g{g}-{k}", "text": f"t {g} {k}", "label": "benign", "group": f"g{g}"} for g in range(40) for k in range(3)]
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ps = load_labeled(f)
    calib, report = select_split(ps, "calib"), select_split(ps, "report")
    assert len(calib) + len(report) == len(ps) and calib and report
    assert not {p.group for p in calib} & {p.group for p in report}
    assert all(split_of(p) == "calib" for p in calib)


def test_calibrate_and_robustness_on_tiny_bundle(tiny_bundle, tmp_path):
    """calibrate --max-fpr-kind on a real bundle keeps that kind's FPR under its limit on the calibration
    data; `reftguard robustness` writes all four report files and its numbers match `eval`."""
    import shutil
    import subprocess
    import sys

    from reftguard.bundle import GuardBundle
    from reftguard.calibration import CalibrateConfig, EvalConfig, calibrate, evaluate_bundle, score_prompts
    from reftguard.data import packaged

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    data = tmp_path / "d.jsonl"
    rows = [json.loads(l) for l in packaged("handwritten-dev.jsonl").read_text().splitlines()]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cal = calibrate(CalibrateConfig(bundle=str(b), data=[str(data)], target_recall=0.9, max_fpr_kind=["hard_negative=0.05"]))
    prompts = load_labeled(data)
    s = score_prompts(GuardBundle.load(b), prompts)
    hn = [x for x, p in zip(s, prompts) if p.kind == "hard_negative"]
    assert np.mean(np.asarray(hn) > cal.threshold) <= 0.05
    assert cal.manifest["calibration"]["target"]["fpr_by_kind"] == {"hard_negative": 0.05}
    assert cal.manifest["calibration"]["fpr_by_kind"]["hard_negative"] <= 0.05
    out = tmp_path / "rob"
    r = subprocess.run([sys.executable, "-m", "reftguard.cli", "robustness", "--bundle", str(b), "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "scores.png", "report.html"}
    rep = json.loads((out / "report.json").read_text())
    ev = evaluate_bundle(EvalConfig(bundle=str(b), data=[str(data)]))
    assert ev["in_sample"] is True  # eval on the calibration data itself says so
    assert rep["overall"]["auroc"] == pytest.approx(ev["auroc"]) and rep["overall"]["fpr"] == pytest.approx(ev["fpr"])
    kinds = {(k["slice"], k["label"]): k for k in rep["by_kind"]}
    assert kinds[("hard_negative", "benign")]["flag_rate"] == pytest.approx(ev["by_kind"]["hard_negative"]["fpr"])


def test_robustness_tables_roles_at_their_thresholds_and_records_per_reason(role_bundle, role_data, tmp_path):
    """Role rows are flagged at their role's threshold in a per-role table; --records adds whole records per
    kind and reason, decided as eval-records decides them."""
    from reftguard.bundle import GuardBundle
    from reftguard.calibration import score_prompts
    from reftguard.record_eval import evaluate_records, load_records
    from reftguard.robustness import RobustnessConfig, run
    from reftguard.scoring import BundleScorer
    from tests.test_records import CHATS

    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"id": f"r{k}", "messages": [{"role": r, "content": c} for r, c in chat], "label": "benign",
                                           "kind": f"kind{k % 2}", "group": f"g{k}"}) + "\n" for k, chat in enumerate(CHATS)))
    rep = run(RobustnessConfig(bundle=str(role_bundle), data=[str(role_data)], records=[str(records)], out=str(tmp_path / "rob")))
    b = GuardBundle.load(role_bundle)
    prompts = load_labeled(role_data)
    s = score_prompts(b, prompts)
    for row in rep["by_role"]:
        mine = [x for x, p in zip(s, prompts) if p.role == row["slice"] and p.label == (row["label"] == "harmful")]
        thr = b.role_thresholds.get(row["slice"], b.threshold)
        assert row["n"] == len(mine) and row["flagged"] == int(np.sum(np.asarray(mine) > thr))
    assert {r["slice"] for r in rep["by_role"]} == {"user", "assistant", "system"}
    assert rep["role_thresholds"] == pytest.approx(b.role_thresholds) and b.role_thresholds["assistant"] != b.threshold
    want = evaluate_records(BundleScorer(b, max_windows=0), load_records([str(records)]))
    assert rep["records"]["by_kind"] == want["by_kind"]
    md = (tmp_path / "rob" / "report.md").read_text()
    assert "by role (each at its role's threshold)" in md and "Whole records, by kind and reason" in md
