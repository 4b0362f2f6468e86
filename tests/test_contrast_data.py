"""Contrast data (scripts/build_contrast_data.py) and the long-context set builder (bench/long_context.py)."""
from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from reftguard.data import CALIBRATION_FILES, DEV_FILES, PACKAGED_TRAIN_FILES, RECORD_DEV_FILES, TRAIN_FILES, load_labeled
from tests.conftest import ROOT
from tests.conftest import load_file_module as _module

DATA = ROOT / "reftguard" / "data"


@pytest.fixture(scope="module")
def builder():
    return _module("build_contrast_data", ROOT / "scripts" / "build_contrast_data.py")


@pytest.fixture(scope="module")
def lc():
    from bench import long_context

    return long_context


def _read(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def split():
    return _read("contrast-train.jsonl") + _read("contrast-train-extra.jsonl"), _read("contrast-dev.jsonl")


def test_committed_files_match_rebuild(builder, split):
    train, dev = builder.build()
    files = builder.split_train_files(train)
    assert list(files) == ["contrast-train.jsonl", "contrast-train-extra.jsonl"]
    for name, text in files.items():
        assert text == (DATA / name).read_text(encoding="utf-8")
    assert builder.dumps(train) == "".join(files.values())
    assert builder.dumps(dev) == (DATA / "contrast-dev.jsonl").read_text(encoding="utf-8")
    assert builder.main(["--check"]) == 0
    assert builder.validate(train, dev) == []


def test_schema_and_loader(builder, split):
    train, dev = split
    for r in train + dev:
        assert tuple(r) == builder.KEYS
        assert r["label"] in ("benign", "harmful")
        assert r["source"] == "contrast"
        assert r["kind"] == {"benign": "hard_negative", "harmful": "contrast_harmful"}[r["label"]]
        assert r["category"] in builder.CATEGORIES
        assert r["parent_id"] is None
        assert r["id"].startswith(f"contrast-{r['group']}-")
        assert r["text"].strip()
    ids = [r["id"] for r in train + dev]
    assert len(ids) == len(set(ids))
    loaded = load_labeled([DATA / "contrast-train.jsonl", DATA / "contrast-train-extra.jsonl", DATA / "contrast-dev.jsonl"])
    assert len(loaded) == len(ids)
    assert {p.kind for p in loaded} == {"hard_negative", "contrast_harmful"}


def test_counts_and_split(split):
    train, dev = split
    lab = Counter(r["label"] for r in train + dev)
    assert lab["benign"] >= 1600 and lab["harmful"] >= 550
    dlab = Counter(r["label"] for r in dev)
    assert dlab["benign"] >= 400 and dlab["harmful"] >= 130
    assert not ({r["group"] for r in train} & {r["group"] for r in dev})
    cats = {r["category"] for r in train + dev}
    assert cats == {r["category"] for r in train} == {r["category"] for r in dev}
    required = {"homonym", "figurative", "safe_target", "safe_context", "definition", "nonsense_group", "history",
                "privacy_public", "medicine", "security_education", "law_crime", "fiction_games",
                "chemistry_school", "self_defence"}
    assert required <= cats
    for g in {r["group"] for r in train + dev}:
        assert {r["label"] for r in train + dev if r["group"] == g} == {"benign", "harmful"}
    n_groups = len({r["group"] for r in train + dev})
    assert 0.15 <= len({r["group"] for r in dev}) / n_groups <= 0.35


def test_train_only_groups_stay_in_train_and_move_nothing(builder, split, monkeypatch):
    train, dev = split
    extra = builder.train_only_ids()
    assert extra and extra <= {r["group"] for r in train}
    assert not extra & {r["group"] for r in dev}
    # without them the build gives the same dev file and the same train rows minus theirs, in the same order
    monkeypatch.setattr(builder, "TRAIN_ONLY_GROUPS", "")
    base_train, base_dev = builder.build()
    assert base_dev == dev
    assert base_train == [r for r in train if r["group"] not in extra]


def test_no_near_duplicates(builder, split):
    train, dev = split
    other = builder.NearDupIndex(min_words=5)
    for _, text in builder.load_other_texts():
        other.add(text)
    own = builder.NearDupIndex()
    for r in train + dev:
        assert other.find(r["text"]) is None, r["text"]
        assert own.find(r["text"]) is None, r["text"]
        own.add(r["text"])


def test_near_dup_index_is_exact(builder):
    idx = builder.NearDupIndex()
    idx.add("How do I kill a frozen process on Linux?")
    assert idx.find("how do i kill a frozen process on linux") == 0
    assert idx.find("How do I kill a frozen process on Linux quickly?") == 0  # 8/9
    assert idx.find("How do I kill a frozen process on macOS?") == 0  # 8/10 = 0.8
    assert idx.find("Explain how to stop a hung program on Windows.") is None


@pytest.mark.parametrize("min_tokens", [300, 2000])
def test_long_context(lc, min_tokens):
    n = 7
    rows = lc.build_long_context(n=n, min_tokens=min_tokens, seed=3)
    assert Counter(r["label"] for r in rows) == {"harmful": n, "benign": n}
    dev = {}
    for name in DEV_FILES:
        for r in _read(name):
            dev[r["id"]] = r
    train_ids = {r["id"] for name in TRAIN_FILES for r in _read(name)}
    for r in rows:
        assert set(r) == {"id", "text", "label", "source", "kind", "category", "parent_id"}
        assert r["source"] == r["kind"] == "long_context"
        parent = dev[r["parent_id"]]
        assert r["parent_id"] not in train_ids
        assert parent["label"] == r["label"] and r["category"] == parent["kind"]
        final = parent["text"].strip()
        assert r["text"].endswith(final)
        head = r["text"][: -len(final)]
        closer = next(c for c in lc.CLOSERS if head.endswith(c))
        context = head[: -len(closer)]
        assert math.ceil(len(context) / 3.5) >= min_tokens
    assert len({r["text"] for r in rows}) == len(rows)
    assert rows == lc.build_long_context(n=n, min_tokens=min_tokens, seed=3)
    assert rows != lc.build_long_context(n=n, min_tokens=min_tokens, seed=4)


def test_long_context_split_keeps_requests_and_context_in_one_half(lc):
    """A report-half long set holds no calib-half text anywhere (request or context), and the reverse."""
    from reftguard.data import select_split

    halves = {s: select_split(load_labeled([DATA / f for f in DEV_FILES]), s) for s in ("calib", "report")}
    for split, other in (("report", "calib"), ("calib", "report")):
        rows = lc.build_long_context(n=6, min_tokens=300, seed=1, split=split)
        assert {lc.record_split({"id": r["parent_id"]}) for r in rows} == {split}
        assert {r["parent_id"] for r in rows} <= {p.id for p in halves[split]}
        blob = "\n".join(r["text"] for r in rows)
        own = "\n".join(p.text for p in halves[split])
        # every longer text of the other half that is not also inside this half's texts is absent
        foreign = [p.text.strip() for p in halves[other] if len(p.text.strip()) >= 40 and p.text.strip() not in own]
        assert len(foreign) > 50 and not [t for t in foreign if t in blob]
        assert sum(p.text.strip() in blob for p in halves[split] if p.label == 0) > 10  # the context is from `split`
    with pytest.raises(ValueError):
        lc.build_long_context(n=2, split="half")


def test_long_context_tokenizer_and_dev_only(lc):
    class Enc:
        def __init__(self, ids):
            self.ids = ids

    class WordTok:  # one token per whitespace word
        def encode(self, text):
            return Enc(text.split())

    rows = lc.build_long_context(n=2, min_tokens=500, tokenizer=WordTok())
    for r in rows:
        assert len(r["text"].split()) >= 500
    with pytest.raises(ValueError):
        lc.build_long_context(n=2, harmful_files=["guard-train.jsonl"])
    with pytest.raises(ValueError):
        lc.build_long_context(n=2, benign_files=["contrast-train.jsonl"])
    with pytest.raises(ValueError):
        lc.build_long_context(n=2, benign_files=["contrast-train-extra.jsonl"])
    # every packaged data file is either a training file (refused above) or a calibration (dev) file
    packaged_files = {p.name for p in DATA.glob("*.jsonl")}
    assert packaged_files == set(PACKAGED_TRAIN_FILES) | set(CALIBRATION_FILES) | set(RECORD_DEV_FILES)


def test_persona_set_is_fresh_and_keeps_its_rules():
    """The committed persona SFT file equals a rebuild; every row is benign with a written reply that the
    judge does not read as a refusal, and no question copies or near-duplicates a row of another file."""
    from reftguard.training.judge import is_refusal

    persona = _module("build_persona_data", ROOT / "scripts" / "build_persona_data.py")
    rows = persona.build()
    assert persona.dumps(rows) == (DATA / persona.OUT_NAME).read_text(encoding="utf-8")
    assert persona.main(["--check"]) == 0 and persona.validate(rows) == []
    assert len(rows) >= 100 and all(r["label"] == "benign" and r["reply"] and not is_refusal(r["reply"]) for r in rows)
    bad = rows + [dict(rows[0], id="x-1", text="What is your shoe size", reply="I'm sorry, I can't help with that.")]
    errors = persona.validate(bad)
    assert any("reads as a refusal" in e for e in errors) and any("guard-dev.jsonl" in e for e in errors)
