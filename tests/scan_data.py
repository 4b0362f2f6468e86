"""Datasets for the scan tests: packaged prompts in every record shape, written in every format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reftguard.clients.scan.formats import FORMATS
from reftguard.data import packaged
from tests.harness import run_server

@pytest.fixture(scope="module")
def server(tiny_bundle):
    """A guard server on loopback for the scan tests (import it into a test module to use it)."""
    with run_server(tiny_bundle, max_queue_delay_ms=2.0) as rs:
        yield rs


EXT = {"jsonl": "in.jsonl", "csv": "in.csv", "parquet": "in.parquet", "hf": "in_hf"}


def prompts(n: int, files=("guard-dev.jsonl", "guard-train.jsonl")) -> list[dict]:
    rows = [json.loads(l) for f in files for l in packaged(f).read_text().splitlines()]
    return [rows[i % len(rows)] for i in range(n)]


def text_records(n: int) -> list[dict]:
    return [{"id": f"t{i}", "text": p["text"], "source": p["source"]} for i, p in enumerate(prompts(n))]


def mixed_records(n: int) -> list[dict]:
    """Plain text, OpenAI chats (1-3 user turns) and ShareGPT chats, interleaved; every field present
    in every record (None where unused) so that columnar formats get one schema."""
    ps = prompts(3 * n)
    out = []
    for i in range(n):
        a, b, c = ps[3 * i], ps[3 * i + 1], ps[3 * i + 2]
        rec = {"id": f"m{i}", "source": a["source"], "text": None, "messages": None, "conversations": None}
        shape = i % 3
        if shape == 0:
            rec["text"] = a["text"]
        elif shape == 1:
            msgs = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": a["text"]}]
            for p in (b, c)[: i % 4 // 2 + (i % 2)]:
                msgs += [{"role": "assistant", "content": "Sure."}, {"role": "user", "content": p["text"]}]
            rec["messages"] = msgs
        else:
            rec["conversations"] = [{"from": "human", "value": a["text"]}, {"from": "gpt", "value": "ok"}, {"from": "human", "value": b["text"]}]
        out.append(rec)
    return out


def write(fmt: str, records: list[dict], folder: Path) -> Path:
    path = folder / EXT[fmt]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "csv":
        import csv

        cols = list(records[0])
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in records:
                w.writerow(["" if r[c] is None else json.dumps(r[c]) if isinstance(r[c], (list, dict)) else r[c] for c in cols])
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        import datasets

        datasets.Dataset.from_list(records).save_to_disk(str(path))
    return path


def outputs(out: Path, fmt: str) -> dict[str, list[dict]]:
    report = json.loads((out / "report.json").read_text())
    return {name: list(FORMATS[fmt].read_output(out / rel)) for name, rel in report["outputs"].items()}


def user_turns(rec: dict) -> list[tuple[int, str]]:
    """(turn, text) that the guard scores for a test record (parsed independently of records.py)."""
    chat = rec.get("messages") or rec.get("conversations")
    if isinstance(chat, str) and chat:
        chat = json.loads(chat)
    if chat:
        return [(t, m.get("content", m.get("value"))) for t, m in enumerate(chat) if m.get("role", m.get("from")) in ("user", "human")]
    return [(-1, rec["text"])]
