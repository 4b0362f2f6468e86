"""`reftguard scan`: every format and record shape, remote vs in-process, errors routing, the report."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from reftguard.bundle import GuardBundle
from reftguard.clients.client import ClientConfig
from reftguard.clients.scan import ScanConfig, run_scan
from reftguard.clients.scan.digest import MultisetHash, output_digest, row_digest
from reftguard.clients.scan.formats import FORMATS
from reftguard.clients.scan.report import summarize
from reftguard.scoring import BundleScorer
from tests.scan_data import mixed_records, outputs, server, text_records, user_turns, write  # noqa: F401 (server is a fixture)

OURS = ("reftguard_score", "reftguard_verdict", "reftguard_turn", "reftguard_bundle_id")


@pytest.fixture(scope="module")
def scorer(tiny_bundle):
    return BundleScorer(GuardBundle.load(tiny_bundle))


def _by_id(outs: dict) -> dict[str, dict]:
    return {r["id"]: r for name in ("allowed", "flagged") for r in outs[name]}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "hf"])
def test_every_format_and_record_shape(fmt, tiny_bundle, scorer, tmp_path):
    records = mixed_records(45)
    path = write(fmt, records, tmp_path)
    # reference: every user turn scored on its own by the bundle scorer; the record takes the max
    turns = [(r["id"], t, text) for r in records for t, text in user_turns(r)]
    ref = scorer.scores([x[2] for x in turns])
    best: dict[str, tuple[float, int]] = {}
    for (rid, t, _), s in zip(turns, ref):
        if rid not in best or s > best[rid][0]:
            best[rid] = (float(s), t)
    median = sorted(s for s, _ in best.values())[len(best) // 2]  # a threshold that splits the data
    report = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "out"), bundle=str(tiny_bundle), threshold=median))
    outs = outputs(tmp_path / "out", fmt)
    assert report["format"] == fmt and report["exactly_once"]
    assert sorted(report["outputs"].values()) == sorted(FORMATS[fmt].output_path(tmp_path / "out", n).name for n in ("allowed", "review", "flagged", "errors"))
    assert outs["review"] == []  # the tiny bundle has no review band
    assert outs["errors"] == [] and outs["allowed"] and outs["flagged"]
    got = _by_id(outs)
    assert Counter(r["id"] for n in ("allowed", "flagged") for r in outs[n]) == Counter(r["id"] for r in records)
    bundle = GuardBundle.load(tiny_bundle)
    shapes = Counter()
    for src in records:
        out = got[src["id"]]
        # every original field is kept, unchanged (CSV stores cells as strings, chats as JSON)
        for k, v in src.items():
            if fmt == "csv":
                assert out[k] == ("" if v is None else json.dumps(v) if isinstance(v, list) else v)
            else:
                assert out[k] == v
        score, turn = float(out["reftguard_score"]), int(out["reftguard_turn"])
        assert score == pytest.approx(best[src["id"]][0], abs=1e-5)
        assert turn == best[src["id"]][1]
        assert out["reftguard_verdict"] == ("flag" if score > report["threshold"] else "allow")
        assert out["reftguard_bundle_id"] == bundle.bundle_id
        shapes["text" if turn < 0 else "chat"] += 1
        shapes["multi-turn"] += len(user_turns(src)) > 1
    assert shapes["text"] and shapes["chat"] and shapes["multi-turn"]
    assert {r["reftguard_verdict"] for r in outs["allowed"]} == {"allow"} and {r["reftguard_verdict"] for r in outs["flagged"]} == {"flag"}


def test_text_field_option(tiny_bundle, tmp_path):
    records = [{"id": f"p{i}", "prompt_body": r["text"], "text": "ignored"} for i, r in enumerate(text_records(12))]
    path = write("jsonl", records, tmp_path)
    run_scan(ScanConfig(input=str(path), out=str(tmp_path / "a"), bundle=str(tiny_bundle), text_field="prompt_body"))
    run_scan(ScanConfig(input=str(path), out=str(tmp_path / "b"), bundle=str(tiny_bundle)))
    a, b = _by_id(outputs(tmp_path / "a", "jsonl")), _by_id(outputs(tmp_path / "b", "jsonl"))
    assert len({a[k]["reftguard_score"] for k in a}) > 1  # different prompts, different scores
    assert len({b[k]["reftguard_score"] for k in b}) == 1  # every record scored its `text` field


def test_remote_and_in_process_give_equal_scores(server, tiny_bundle, tmp_path):
    path = write("jsonl", mixed_records(90), tmp_path)
    local = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "local"), bundle=str(tiny_bundle)))
    remote = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "remote"), target=server.target, batch_size=7, in_flight=3))
    assert local["bundle_id"] == remote["bundle_id"] and local["threshold"] == pytest.approx(remote["threshold"])
    assert (local["mode"], remote["mode"]) == ("in-process", "remote")
    a, b = _by_id(outputs(tmp_path / "local", "jsonl")), _by_id(outputs(tmp_path / "remote", "jsonl"))
    assert a.keys() == b.keys() and len(a) == 90
    for k in a:
        assert a[k]["reftguard_score"] == pytest.approx(b[k]["reftguard_score"], abs=1e-5)
        assert a[k]["reftguard_turn"] == b[k]["reftguard_turn"]
        if abs(a[k]["reftguard_score"] - local["threshold"]) > 1e-5:
            assert a[k]["reftguard_verdict"] == b[k]["reftguard_verdict"]
    # a threshold override is applied the same way by both
    lo = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "lo"), bundle=str(tiny_bundle), threshold=0.3))
    ro = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "ro"), target=server.target, threshold=0.3))
    assert lo["rows"] == ro["rows"] and lo["threshold"] == pytest.approx(0.3) and lo["rows"]["flagged"] != local["rows"]["flagged"]


BAD_LINES = [
    ('{"id": "ok1", "text": "How do I bake bread?"}', None),
    ('{"id": "j1", "text": "unterminated', "unparseable JSON"),
    ('["a", "list"]', "not an object"),
    ('{"id": "m1", "body": "no text field here"}', "missing field"),
    ('{"id": "n1", "text": 42}', "non-string content"),
    ('{"id": "e1", "text": "   "}', "empty text"),
    ('{"id": "c1", "messages": [{"role": "assistant", "content": "hi"}]}', "no user turn"),
    ('{"id": "c2", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}', "non-string content"),
    ('{"id": "c3", "messages": [{"role": "user", "content": null}]}', "missing field"),
    ('{"id": "c4", "messages": "not a list"}', "unparseable JSON"),
    ('{"id": "c5", "conversations": [{"value": "no role"}]}', "bad chat"),
    ('{"id": "long", "text": "%s"}' % ("word " * 400), "rejected"),
    ('{"id": "ok2", "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": null}]}', None),
]


@pytest.mark.parametrize("mode", ["in-process", "remote"])
def test_bad_rows_go_to_errors_with_their_reason(mode, server, tiny_bundle, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(line for line, _ in BAD_LINES) + "\n\n")  # the trailing blank line is not a row
    where = {"bundle": str(tiny_bundle)} if mode == "in-process" else {"target": server.target}
    report = run_scan(ScanConfig(input=str(path), out=str(tmp_path / "out"), truncation="error", **where))
    outs = outputs(tmp_path / "out", "jsonl")
    errors = {r["reftguard_row"]: r for r in outs["errors"]}
    expected = {i: kind for i, (_, kind) in enumerate(BAD_LINES) if kind}
    assert {i: errors[i]["reftguard_error"].split(":")[0] for i in errors} == expected
    assert "too long" in errors[11]["reftguard_error"]
    assert errors[1]["reftguard_raw"] == BAD_LINES[1][0] and errors[2]["reftguard_raw"] == BAD_LINES[2][0]
    assert errors[4]["text"] == 42 and errors[4]["id"] == "n1"  # parsed fields are kept
    assert sorted(r["id"] for r in outs["allowed"] + outs["flagged"]) == ["ok1", "ok2"]
    assert report["rows"] == {"input": 13, "allowed": len(outs["allowed"]), "review": 0, "flagged": len(outs["flagged"]), "errors": 11, "output": 13}
    assert report["exactly_once"]
    assert report["errors_by_kind"] == dict(Counter(expected.values()))


def test_report_matches_outputs(tiny_bundle, tmp_path):
    path = write("jsonl", text_records(150) + [{"id": "x", "text": 1, "source": "s"}], tmp_path)
    out = tmp_path / "out"
    report = run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle)))
    assert json.loads((out / "report.json").read_text()) == report
    outs = outputs(out, "jsonl")
    scored = outs["allowed"] + outs["flagged"]
    assert report["rows"] == {"input": 151, "allowed": len(outs["allowed"]), "review": 0, "flagged": len(outs["flagged"]), "errors": 1, "output": 151}
    assert report["flag_rate"] == pytest.approx(len(outs["flagged"]) / len(scored))
    for src in {r["source"] for r in scored}:
        rows = [r for r in scored if r["source"] == src]
        flagged = sum(r["reftguard_verdict"] == "flag" for r in rows)
        assert report["by_source"][src] == {"rows": len(rows), "review": 0, "flagged": flagged, "flag_rate": pytest.approx(flagged / len(rows)),
                                            "review_rate": 0.0}
    hist = report["histogram"]
    assert sum(hist["allowed"]) == len(outs["allowed"]) and sum(hist["flagged"]) == len(outs["flagged"])
    top = sorted((r["reftguard_score"] for r in outs["flagged"]), reverse=True)[:20]
    assert [e["score"] for e in report["top_flagged"]] == top
    # the content hash is that of the input rows, and it notices a row gone missing
    inputs = [json.loads(l) for l in path.read_text().splitlines()]
    assert report["content_hash"]["input"] == MultisetHash().update(row_digest(r) for r in inputs).hex
    assert report["content_hash"]["output"] == MultisetHash().update(output_digest(r) for n in outs for r in outs[n]).hex
    lines = (out / "allowed.jsonl").read_text().splitlines()
    (out / "allowed.jsonl").write_text("\n".join(lines[1:]) + "\n")
    tampered = summarize(FORMATS["jsonl"], {n: out / f"{n}.jsonl" for n in outs})
    assert tampered["output_hash"] != report["content_hash"]["input"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and "threshold" in html and report["bundle_id"] in html
    assert (tiny_bundle / "CARD.md").read_text().splitlines()[0] in html
    assert "<script" not in html and "src=" not in html and "href=" not in html  # self-contained
    for src in report["by_source"]:
        assert src in html


def test_rerun_resumes_or_refuses(tiny_bundle, tmp_path):
    path = write("jsonl", text_records(40), tmp_path)
    out = tmp_path / "out"
    first = run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle)))
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle))) == first  # done: nothing redone
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before
    with pytest.raises(ValueError, match="different input, bundle or settings"):
        run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle), threshold=0.5))
    again = run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle), threshold=0.5, restart=True))
    assert again["threshold"] == pytest.approx(0.5) and again["rows"]["output"] == 40
    with pytest.raises(ValueError, match="not both"):
        run_scan(ScanConfig(input=str(path), out=str(tmp_path / "o2"), bundle=str(tiny_bundle), client=ClientConfig()))


def test_in_process_engine_options_keep_decisions_and_guard_the_checkpoint(tiny_bundle, tmp_path):
    """--threads and --score-cache-entries change speed, never a decision; a resume on another engine is refused
    (its scores differ by float noise, so one output would mix two sets); remote scans refuse the options."""
    path = write("jsonl", text_records(30) + text_records(30), tmp_path)  # every row twice: the cache answers half
    runs = {}
    for name, kw in (("default", {}), ("one-thread-no-cache", {"threads": 1, "score_cache_entries": 0})):
        out = tmp_path / name
        runs[name] = run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle), engine="ort", **kw))
        runs[name + "-rows"] = sorted((out / "allowed.jsonl").read_text().splitlines() + (out / "flagged.jsonl").read_text().splitlines())
    assert runs["default-rows"] == runs["one-thread-no-cache-rows"] and len(runs["default-rows"]) == 60
    with pytest.raises(ValueError, match="different input, bundle or settings"):
        run_scan(ScanConfig(input=str(path), out=str(tmp_path / "default"), bundle=str(tiny_bundle), engine="openvino"))
    with pytest.raises(ValueError, match="--threads, --score-cache-entries apply to in-process scans"):
        run_scan(ScanConfig(input=str(path), out=str(tmp_path / "remote"), target="127.0.0.1:1", threads=1, score_cache_entries=0))


def test_cli_passes_the_token_and_reports_service_errors(tiny_bundle, tmp_path, capsys):
    from reftguard.cli import main
    from tests.harness import run_server

    path = write("jsonl", text_records(20), tmp_path)
    with run_server(tiny_bundle, auth_token="s3cret") as rs:
        args = ["scan", str(path), "--target", rs.target, "--no-progress", "--batch-size", "4"]
        assert main(args + ["--out", str(tmp_path / "denied"), "--token", "wrong"]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert main(args + ["--out", str(tmp_path / "ok"), "--token", "s3cret"]) == 0
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert report["rows"]["output"] == 20 and report["exactly_once"] and report["mode"] == "remote"


def test_undecodable_text_is_an_error_row_kept_byte_for_byte(tiny_bundle, tmp_path):
    csv_in = tmp_path / "latin1.csv"
    csv_in.write_bytes(b"id,text\nb1,caf\xe9 au lait\nb2,fine\n")
    jsonl_in = tmp_path / "surrogate.jsonl"
    jsonl_in.write_text('{"id": "s1", "text": "bad \\ud800 half"}\n{"id": "s2", "text": "fine"}\n')
    for path, fmt in ((csv_in, "csv"), (jsonl_in, "jsonl")):
        out = tmp_path / f"out-{fmt}"
        report = run_scan(ScanConfig(input=str(path), out=str(out), bundle=str(tiny_bundle)))
        assert report["exactly_once"] and report["errors_by_kind"] == {"bad text": 1}
        assert report["rows"]["allowed"] + report["rows"]["flagged"] == 1
    assert (tmp_path / "out-csv" / "errors.csv").read_bytes().splitlines()[1].startswith(b"b1,caf\xe9 au lait,0,bad text")
    assert json.loads((tmp_path / "out-jsonl" / "errors.jsonl").read_text())["text"] == "bad \ud800 half"


def test_scan_modules_import_only_the_light_client():
    """docs/design.md §8: optional integrations are imported inside the functions that need them."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import reftguard.clients.scan, reftguard.clients.scan.cli, reftguard.clients.scan.engines, reftguard.clients.hf\n"
        "import reftguard.clients.ray, reftguard.clients.review.app, reftguard.clients.review.cli\n"
        "heavy = ('pyarrow', 'pandas', 'datasets', 'ray', 'rich', 'textual', 'numpy', 'onnxruntime', 'tokenizers', 'torch')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_compare_bundle_writes_the_disagreement_table_and_the_rows_that_flip(tiny_bundle, scorer, tmp_path, capsys):
    import shutil

    from reftguard.cli import main
    from tests.test_rollout import variant

    other = variant(tiny_bundle, tmp_path / "b", threshold=0.0)  # same model, another threshold
    records = [dict(r, label="benign" if i % 2 else "harmful") for i, r in enumerate(text_records(30))]
    path = write("jsonl", records, tmp_path)
    assert main(["scan", str(path), "--out", str(tmp_path / "cmp"), "--bundle", str(tiny_bundle), "--compare-bundle", str(other)]) == 0
    assert "allow->flag" in capsys.readouterr().out
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    scores = scorer.scores([r["text"] for r in records])
    ta, tb = GuardBundle.load(tiny_bundle).threshold, 0.0
    want = Counter((("flag" if s > ta else "allow"), ("flag" if s > tb else "allow")) for s in scores)
    verdicts = ("allow", "review", "flag")  # the tiny bundles have no band: nothing in review
    assert report["table"] == {f"{a}->{b}": want[(a, b)] for a in verdicts for b in verdicts}
    assert report["rows"] == 30 and report["bundles"]["b"]["threshold"] == 0.0
    assert sum(s["rows"] for s in report["per_source"].values()) == 30
    benign = [s for s, r in zip(scores, records) if r["label"] == "benign"]
    assert report["fpr_a"] == pytest.approx(sum(s > ta for s in benign) / len(benign))
    flips = [json.loads(l) for l in (tmp_path / "cmp" / "flips.jsonl").read_text().splitlines()]
    assert len(flips) == want[("flag", "allow")] + want[("allow", "flag")]
    assert all(f["reftguard_verdict_a"] != f["reftguard_verdict_b"] and f["id"] == records[f["reftguard_row"]]["id"] for f in flips)
    shutil.rmtree(other)
