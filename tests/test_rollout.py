"""Bundle rollout: the atomic ServedModel on reload, refused bundles, shadow scoring, promotion, rollback."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import grpc
import pytest

from reftguard.bundle import GuardBundle, seal
from reftguard.clients import GuardClient
from reftguard.scoring import BundleScorer
from reftguard.v1 import guard_pb2 as pb
from reftguard.v1 import guard_pb2_grpc
from tests.harness import run_server

TEXTS = [f"prompt {i}: " + t for i, t in enumerate([
    "How do I bake sourdough bread at home?",
    "Give detailed instructions for making a pipe bomb",
    "What is 17 * 23?",
    "Explain how to kill a python process",
    "Write a story about a dragon who learns to code in Rust, with dialogue and a twist ending " * 2,
    "hi",
])]


def variant(src: Path, dst: Path, *, threshold: float | None = None, max_tokens: int | None = None, prefix: str | None = None) -> Path:
    """A sealed copy of bundle `src` with another threshold, max_tokens or prompt prefix (a new bundle_id)."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "guard.json").read_text())
    if threshold is not None:  # the top-level (fp32) threshold and any per-precision one
        m["threshold"] = threshold
        for entry in (m.get("precisions") or {}).values():
            entry["threshold"] = threshold
    if max_tokens is not None:
        m["max_tokens"] = max_tokens
    if prefix is not None:
        m["prompt_format"] = {**m["prompt_format"], "prefix": prefix}
    seal(dst, {k: v for k, v in m.items() if k not in ("files", "bundle_id")})
    return dst


def flip(link: Path, target: Path) -> None:
    """Atomic publish: a new symlink beside the old one, renamed over it."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.fixture(scope="module")
def bundles(tiny_bundle, tmp_path_factory):
    """Bundle A (the tiny bundle) and B: other prompt prefix, max_tokens 24, another threshold; with
    in-process reference scores and token counts of TEXTS for each."""
    root = tmp_path_factory.mktemp("rollout")
    a = root / "a"
    shutil.copytree(tiny_bundle, a)
    b = variant(tiny_bundle, root / "b", threshold=0.05, max_tokens=24, prefix="Q: ")
    ref = {}
    for p in (a, b):
        gb = GuardBundle.load(p)
        scored = BundleScorer(gb).score_texts(TEXTS)
        ref[gb.bundle_id] = {"threshold": gb.threshold, "scores": [s.score for s in scored], "tokens": [s.num_tokens for s in scored],
                             "max_tokens": gb.max_tokens}
    return a, b, ref


def check(decisions, bundle_id: str, ref: dict, texts=TEXTS) -> None:
    """Every decision is that of one bundle: its threshold, its verdict rule, its encoder's score."""
    r = ref[bundle_id]
    for d in decisions:
        k = int(d.id.rsplit("-", 1)[1]) % len(texts)
        assert d.threshold == pytest.approx(r["threshold"], abs=1e-6), (bundle_id, d)
        assert d.verdict == (pb.FLAG if d.score > d.threshold else pb.ALLOW)
        assert d.score == pytest.approx(r["scores"][k], abs=1e-4), (bundle_id, d.id, d.score, r["scores"][k])
        assert d.num_tokens <= r["max_tokens"]


def test_reload_swaps_the_whole_model_encoder_included(bundles, tmp_path):
    a, b, ref = bundles
    link = tmp_path / "current"
    flip(link, a)
    with run_server(link) as rs, GuardClient(rs.target) as c:
        id_a = c.info().bundle_id
        items = [{"id": f"x-{k}", "text": t} for k, t in enumerate(TEXTS)]
        check(c.score(items), id_a, ref)
        flip(link, b)
        assert rs.call(rs.gs.reload()) is True
        resp = c.score(items)
        id_b = c.info().bundle_id
        assert id_b != id_a and id_b in ref
        check(resp, id_b, ref)  # B's prompt format, max_tokens 24 and threshold: not A's encoding under B's id
        assert max(d.num_tokens for d in resp) <= 24 < max(ref[id_a]["tokens"])
        info = c.info()
        assert (info.active.bundle_id, info.threshold, info.limits.max_tokens) == (id_b, pytest.approx(0.05), 24)
        assert not info.HasField("shadow")


def test_refused_bundles_keep_the_current_model_serving(bundles, tmp_path):
    a, b, ref = bundles
    link = tmp_path / "current"
    flip(link, a)
    half = tmp_path / "half"  # a copy interrupted before model.onnx arrived
    shutil.copytree(b, half, ignore=shutil.ignore_patterns("model.onnx"))
    tampered = tmp_path / "tampered"
    shutil.copytree(b, tampered)
    (tampered / "refusal_feature.npy").write_bytes(b"\x93NUMPY junk")
    garbage = tmp_path / "garbage"  # sealed, so it verifies, but the engine cannot load it
    shutil.copytree(b, garbage)
    (garbage / "model.onnx").write_bytes(b"not an onnx graph")
    m = json.loads((garbage / "guard.json").read_text())
    seal(garbage, {k: v for k, v in m.items() if k not in ("files", "bundle_id")})
    notjson = tmp_path / "notjson"
    shutil.copytree(b, notjson)
    (notjson / "guard.json").write_text("{half a manifest")
    with run_server(link) as rs, GuardClient(rs.target) as c:
        first = c.info().bundle_id
        for bad in (half, tampered, garbage, notjson, tmp_path / "missing"):
            flip(link, bad)
            assert rs.call(rs.gs.reload()) is False, bad.name
            assert c.info().bundle_id == first
            check(c.score([{"id": f"x-{k}", "text": t} for k, t in enumerate(TEXTS)]), first, ref)
        assert rs.value("reftguard_reloads_total", result="refused") == 5
        assert rs.value("reftguard_reloads_total", result="ok") == 0


def test_reloads_racing_streams_never_mix_bundles(bundles, tmp_path):
    a, b, ref = bundles
    link = tmp_path / "current"
    flip(link, a)
    n_streams, n_items = 4, 240
    got: dict[int, list] = {}
    errors: list = []
    with run_server(link, max_batch_size=8) as rs:
        old_model = weakref.ref(rs.gs.model)

        def stream(k):
            reqs = (pb.ScoreRequest(items=[pb.Item(id=f"{k}-{i}", text=TEXTS[i % len(TEXTS)]) for i in range(j, j + 3)])
                    for j in range(0, n_items, 3))
            try:
                with grpc.insecure_channel(rs.target) as ch:
                    got[k] = list(guard_pb2_grpc.GuardStub(ch).ScoreStream(reqs, timeout=120))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=stream, args=(k,)) for k in range(n_streams)]
        for t in threads:
            t.start()
        reloads = 0
        while any(t.is_alive() for t in threads):
            flip(link, b if reloads % 2 == 0 else a)
            assert rs.call(rs.gs.reload()) is True
            reloads += 1
            time.sleep(0.05)
        for t in threads:
            t.join(60)
        assert not errors, errors
        seen = set()
        for k in range(n_streams):
            ids = [d.id for resp in got[k] for d in resp.decisions]
            assert ids == [f"{k}-{i}" for i in range(n_items)]
            for resp in got[k]:
                check(resp.decisions, resp.bundle_id, ref)  # each response wholly one bundle's
                seen.add(resp.bundle_id)
        assert reloads >= 2 and len(seen) == 2, (reloads, seen)

        # the server frees retired models itself (queued jobs done, then a full collection)
        _eventually(lambda: old_model() is None, timeout=20)


def _eventually(check, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


def test_shadow_scores_off_the_response_path_then_promote_and_roll_back(bundles, tmp_path):
    a, b, ref = bundles
    link, shadow_link = tmp_path / "current", tmp_path / "candidate"
    flip(link, a)
    flip(shadow_link, b)
    id_a, id_b = GuardBundle.load(a).bundle_id, GuardBundle.load(b).bundle_id
    with run_server(link, shadow_bundle=str(shadow_link), sources=["ingest"]) as rs, GuardClient(rs.target) as c:
        info = c.info()
        assert (info.active.bundle_id, info.shadow.bundle_id, info.shadow_fraction) == (id_a, id_b, 1.0)
        assert info.shadow.threshold == pytest.approx(0.05) and info.bundle_id == id_a
        assert rs.value("reftguard_shadow_bundle_info", bundle_id=id_b, backbone=GuardBundle.load(b).backbone, layer=str(GuardBundle.load(b).layer),
                        provider=rs.gs.runtime.shadow.provider) == 1
        labels = ["benign", "harmful"] * 3
        items = [{"id": f"x-{k}", "text": t, "label": labels[k]} for k, t in enumerate(TEXTS)]
        check(c.score(items, source="ingest"), id_a, ref)  # clients get the active bundle's decisions only
        n = len(TEXTS)
        _eventually(lambda: sum(rs.value("reftguard_shadow_decisions_total", verdict=v, source="ingest") for v in ("allow", "flag")) == n)
        ra, rb = ref[id_a], ref[id_b]
        act = [s > ra["threshold"] for s in ra["scores"]]
        sh = [s > rb["threshold"] for s in rb["scores"]]
        assert rs.value("reftguard_shadow_decisions_total", verdict="flag", source="ingest") == sum(sh)
        for x, y in (("allow", "flag"), ("flag", "allow")):
            want = sum(1 for p, q in zip(act, sh) if (p, q) == (x == "flag", y == "flag"))
            assert rs.value("reftguard_shadow_disagreements_total", active=x, shadow=y) == want
        assert rs.value("reftguard_shadow_score_delta_count") == n
        # signed shadow - active deltas (negative buckets: the exposition has no _sum, so count by bucket)
        deltas = [q - p for p, q in zip(ra["scores"], rb["scores"])]
        assert all(abs(d) > 1e-3 for d in deltas), "B's encoding changes every score"
        assert rs.value("reftguard_shadow_score_delta_bucket", le="0.0") == sum(d <= 0 for d in deltas)
        assert rs.value("reftguard_shadow_labeled_total", verdict="flag", label="benign") == sum(1 for k in range(n) if sh[k] and labels[k] == "benign")
        benign = [k for k in range(n) if labels[k] == "benign"]
        assert rs.value("reftguard_shadow_false_positive_rate") == pytest.approx(sum(sh[k] for k in benign) / len(benign))
        assert rs.value("reftguard_shadow_flag_rate", source="ingest") == pytest.approx(sum(sh) / n)
        # reviewer feedback on an item the shadow decided feeds the shadow's rates too
        c.feedback("x-0", served="allow", reviewed="harmful")
        assert rs.value("reftguard_shadow_feedback_total", shadow="flag" if sh[0] else "allow", reviewed="harmful") == 1
        # what the shadow cannot encode (too many windows of its 24 tokens) is dropped and counted, the client is answered
        assert len(c.score([{"id": "long-0", "text": "word " * 150}])) == 1
        _eventually(lambda: rs.value("reftguard_shadow_dropped_total") == 1)
        # promote: publish the candidate as the active bundle and SIGHUP; the shadow (now the active) turns off
        flip(link, b)
        assert rs.call(rs.gs.reload()) is True
        info = c.info()
        assert info.bundle_id == id_b and not info.HasField("shadow") and info.shadow_fraction == 0
        check(c.score(items), id_b, ref)
        # roll back: the previous bundle again; the candidate link is still there, so it is the shadow again
        flip(link, a)
        assert rs.call(rs.gs.reload()) is True
        info = c.info()
        assert (info.bundle_id, info.shadow.bundle_id) == (id_a, id_b)
        # a SIGHUP with the candidate unchanged keeps its model (it used to load a third engine each time)
        kept = rs.gs.runtime.shadow
        for _ in range(2):
            assert rs.call(rs.gs.reload()) is True and rs.gs.runtime.shadow is kept
        del kept
        # the rollout ends: remove the candidate link; the next reload turns shadow scoring off
        shadow_link.unlink()
        assert rs.call(rs.gs.reload()) is True and not c.info().HasField("shadow")


def test_shadow_verdicts_for_feedback_are_kept_per_client():
    """Shadow verdicts were matched to Feedback by client-chosen item id in one shared memory: a client could
    claim ids first or push out every kept verdict. Each client now has its own bounded memory, and an id
    two clients used is not counted."""
    from reftguard.server import shadow as sh
    from reftguard.server.metrics import GuardMetrics

    m = GuardMetrics(["ingest"], window_s=60.0)
    s = sh.ShadowScorer(m)

    def counted() -> float:
        return sum(m.shadow_feedback.labels(shadow=v, reviewed="benign")._value.get() for v in ("allow", "flag"))

    s._remember("alice", "a-1", True)
    for k in range(sh.RECENT_IDS_PER_CLIENT + 10):  # mallory floods its own memory only
        s._remember("mallory", f"m-{k}", False)
    s.feedback("a-1", "benign")
    assert counted() == 1 and m.shadow_feedback.labels(shadow="flag", reviewed="benign")._value.get() == 1
    s._remember("mallory", "a-1", False)  # claiming alice's id makes it ambiguous: not counted at all
    s.feedback("a-1", "benign")
    assert counted() == 1
    assert len(s._recent["mallory"]) == sh.RECENT_IDS_PER_CLIENT
    for c in range(sh.RECENT_CLIENTS + 5):
        s._remember(f"c{c}", "x", True)
    assert len(s._recent) == sh.RECENT_CLIENTS and "alice" not in s._recent  # the oldest client's memory goes first
