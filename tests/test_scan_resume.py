"""Exactly once across SIGKILL: a scan killed at random points and rerun with the same command ends
with the same outputs as an uninterrupted scan, and every input row in exactly one of them."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from reftguard.clients.scan import ScanConfig, run_scan
from tests.scan_data import outputs, server, text_records, write  # noqa: F401 (server is a fixture)

ROWS, CHUNK = 3000, 100


def _input(fmt: str, folder):
    records = text_records(ROWS)
    for i in range(7, ROWS, 401):  # rows that must land in errors, spread over many chunks
        records[i] = {**records[i], "text": None}
    path = write(fmt, records, folder)
    if fmt == "jsonl":  # and lines that are not JSON at all
        lines = path.read_text().splitlines()
        for i in range(150, ROWS, 997):
            lines[i] = '{"id": "broken-%d", "text": ' % i
        path.write_text("\n".join(lines) + "\n")
    return path


def _positions(outs: dict[str, list[dict]]) -> Counter:
    """Input row positions found in the outputs: from the id `t<i>` of scored rows, `reftguard_row` of errors."""
    return Counter(r["reftguard_row"] if n == "errors" else int(r["id"][1:]) for n in outs for r in outs[n])


def _kill_at_random_point(cmd: list[str], out, rng: random.Random) -> int:
    """Start the scan, SIGKILL it somewhere after a random checkpoint; return the rows it had committed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    ck = out / ".reftguard" / "checkpoint.json"
    target = rng.randrange(CHUNK, ROWS // 2)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"scan ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "scan made no progress"
        try:
            if json.loads(ck.read_text())["rows_done"] >= target:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.08))  # somewhere inside a later chunk, not just right after a commit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.loads(ck.read_text())["rows_done"]


@pytest.mark.parametrize("fmt,mode", [("jsonl", "in-process"), ("parquet", "in-process"), ("jsonl", "remote")])
def test_sigkill_and_resume_give_the_uninterrupted_outputs(fmt, mode, tiny_bundle, server, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    path = _input(fmt, tmp_path)
    where = ["--bundle", str(tiny_bundle)] if mode == "in-process" else ["--target", server.target]
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    run_scan(ScanConfig(input=str(path), out=str(ref_out), chunk_rows=CHUNK, **({"bundle": str(tiny_bundle)} if mode == "in-process" else {"target": server.target})))
    cmd = [sys.executable, "-m", "reftguard.cli", "scan", str(path), "--out", str(out), "--chunk-rows", str(CHUNK), "--no-progress", *where]
    killed_at = [_kill_at_random_point(cmd, out, rng) for _ in range(2)]
    assert 0 < killed_at[0] <= killed_at[1] < ROWS, f"seed {seed}: kills at {killed_at}"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    ref_report = json.loads((ref_out / "report.json").read_text())
    assert report["exactly_once"] and report["rows"] == ref_report["rows"]
    assert report["content_hash"] == ref_report["content_hash"]
    got, ref = outputs(out, fmt), outputs(ref_out, fmt)
    # every input row is in exactly one output
    assert _positions(got) == Counter(range(ROWS)), f"seed {seed}"
    assert len(got["errors"]) == len(ref["errors"]) > 0
    if mode == "in-process":
        # the same scores bit for bit: a resume scores exactly the groups an uninterrupted run does
        assert got == ref, f"seed {seed}"
        if fmt == "jsonl":
            for n in ("allowed", "flagged", "errors"):
                assert (out / f"{n}.jsonl").read_bytes() == (ref_out / f"{n}.jsonl").read_bytes()
    else:
        # the server batches dynamically, so scores may differ in the last float bits only
        for n in got:
            assert [r.get("id") for r in got[n]] == [r.get("id") for r in ref[n]]
            for a, b in zip(got[n], ref[n]):
                assert a.get("reftguard_score", 0) == pytest.approx(b.get("reftguard_score", 0), abs=1e-5)
