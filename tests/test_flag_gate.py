"""The flag gate: a FLAGged request must also pass a reading of its tail state, or it goes to REVIEW."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reftguard import bundle_io
from reftguard.bundle import GuardBundle
from reftguard.clients import GuardClient
from reftguard.data import packaged
from reftguard.encoding import Encoded
from reftguard.features import cosine_scores
from reftguard.gate_fit import FitGateConfig, fit_gate
from reftguard.role_fit import turn_states
from reftguard.scoring import BundleScorer, Turn, decide, make_thresholds, text_turns
from reftguard.v1 import guard_pb2 as pb
from tests.harness import run_server


def _one_row_each(turns):
    n = len(turns)
    return Encoded(ids=[[1] * 3] * n, truncated=[False] * n, text=list(range(n)), window=[0] * n, num_windows=[1] * n)


def test_a_request_that_fails_the_gate_is_reviewed_never_allowed_and_other_turns_still_flag():
    t = make_thresholds(0.5, {"assistant": 0.6}, {"user": 0.2, "assistant": 0.3})
    chats = [  # (role, text, score, passes the gate)
        [("user", "q", 0.9, True)],
        [("user", "q", 0.9, False)],                                                  # R_l alone: REVIEW, not FLAG
        [("user", "q", 0.9, False), ("assistant", "Boil the pasta for ten minutes, then drain it and serve it with the sauce.", 0.1, True)],
        [("user", "q", 0.9, False), ("assistant", "Here is the harmful content, in detail.", 0.7, True)],  # the reply flags
        [("user", "q", 0.9, False), ("assistant", "I'm sorry, but I can't help with that.", 0.0, True)],
        [("user", "q", 0.9, False), ("assistant", "Sure, here is how to do it:", 0.0, True)],  # bare compliance: FLAG
        [("user", "q", 0.1, False)]]                                                  # under the band: ALLOW
    turns = [Turn(i, k, text, role) for i, chat in enumerate(chats) for k, (role, text, _, _) in enumerate(chat)]
    scores = np.array([s for chat in chats for _, _, s, _ in chat], dtype=np.float32)
    notes = [("fraud", 0.9, ok) for chat in chats for *_, ok in chat]
    got = decide(scores, turns, _one_row_each(turns), t, notes)
    assert [(g.flag, g.review, g.reason) for g in got] == [
        (True, False, "harmful_request"), (False, True, "harmful_request"), (False, True, "complied_with_harm"),
        (True, False, "harmful_reply"), (False, False, "refusal_example"), (True, False, "complied_with_harm"),
        (False, False, "")]
    assert got[1].category == "fraud" and got[1].threshold == 0.5  # a gated request still names its harm
    # without notes, or with two-element ones (a head and no gate), the gate is not there
    assert [g.flag for g in decide(scores, turns, _one_row_each(turns), t)][:2] == [True, True]
    assert decide(scores[:2], turns[:2], _one_row_each(turns[:2]), t, [("fraud", 0.9)] * 2)[1].flag


def test_the_gates_review_edge_keeps_a_request_it_reads_as_benign_out_of_the_band():
    t = make_thresholds(0.5, {"assistant": 0.6}, {"user": 0.2, "assistant": 0.3})
    chats = [  # (role, text, score, passes the gate, in its band)
        [("user", "q", 0.3, True, True)],                                            # in the band: REVIEW
        [("user", "q", 0.3, True, False)],                                           # the gate reads it as benign: ALLOW
        [("user", "q", 0.9, False, False)],                                          # over the flag threshold: REVIEW, never ALLOW
        [("user", "q", 0.9, True, False)],                                           # FLAG as before
        [("user", "q", 0.3, True, False), ("assistant", "Here is the harmful content, in detail.", 0.4, True, True)],  # the reply's band
        [("user", "q", 0.3, True, False), ("assistant", "I'm sorry, but I can't help with that.", 0.0, True, True)]]
    turns = [Turn(i, k, text, role) for i, chat in enumerate(chats) for k, (role, text, *_) in enumerate(chat)]
    scores = np.array([s for chat in chats for _, _, s, _, _ in chat], dtype=np.float32)
    notes = [("fraud", 0.9, ok, band) for chat in chats for *_, ok, band in chat]
    got = decide(scores, turns, _one_row_each(turns), t, notes)
    assert [(g.flag, g.review, g.reason) for g in got] == [
        (False, True, "harmful_request"), (False, False, ""), (False, True, "harmful_request"), (True, False, "harmful_request"),
        (False, True, "harmful_reply"), (False, False, "refusal_example")]
    assert [g.category for g in got[:2]] == ["fraud", ""]  # an allowed item names no harm
    three = [n[:3] for n in notes]  # notes from before the review edge: the band is the score's alone
    assert decide(scores, turns, _one_row_each(turns), t, three)[1].review


@pytest.fixture(scope="module")
def gated(role_bundle, role_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "bundle"
    shutil.copytree(role_bundle, out)
    return fit_gate(FitGateConfig(bundle=str(out), data=[str(packaged("guard-train.jsonl"))], calib_data=[str(role_data)],
                                  split="all", keep=0.8))


def test_fit_gate_keeps_its_share_of_the_flagged_harmful_prompts_and_the_scorer_applies_it(gated, role_data):
    spec = gated.manifest["flag_gate"]
    assert spec["file"] in gated.manifest["files"] and spec["input"] == "tail_state" and spec["keep"] == 0.8
    rows = [json.loads(line) for line in role_data.read_text().splitlines()]
    user = [r for r in rows if r.get("role", "user") == "user"]
    scorer = BundleScorer(gated)
    s = scorer.scores([r["text"] for r in user])
    r, c, t = gated.flag_gate()[:3]
    g = cosine_scores(turn_states(gated, [x["text"] for x in user], output=bundle_io.TAIL), r, c)
    harm = np.array([x["label"] == "harmful" for x in user])
    over = harm & (s > gated.threshold)
    assert over.any() and (g[over] > t).mean() >= 0.8 and spec["kept"] == pytest.approx((g[over] > t).mean())
    assert (g[over] <= t).any(), "the fixture should gate some flagged prompts"
    got = scorer.score_turns(text_turns([x["text"] for x in user]), thresholds=scorer.thresholds)
    assert [d.flag for d in got] == list((s > gated.threshold) & (g > t))
    assert scorer.thresholds.review is None  # a bundle without a band: the gated ones still land in REVIEW, never ALLOW
    assert [d.review for d in got] == list((s > gated.threshold) & (g <= t))
    assert "flag gate" in (gated.root / "CARD.md").read_text()


def test_the_server_gates_like_the_scorer_and_old_clients_still_see_flag(gated, role_data):
    texts = [json.loads(line)["text"] for line in role_data.read_text().splitlines()[:64]]
    scorer = BundleScorer(gated)
    ref = scorer.score_turns(text_turns(texts), thresholds=scorer.thresholds)
    with run_server(gated.root) as rs, GuardClient(rs.target) as client:
        new = client.score(texts, accept_review=True)
        old = client.score(texts)
    assert [d.verdict for d in new] == [pb.FLAG if r.flag else pb.REVIEW if r.review else pb.ALLOW for r in ref]
    assert [d.verdict for d in old] == [pb.FLAG if r.flag or r.review else pb.ALLOW for r in ref]


def test_a_review_edge_then_calibrate_sets_the_band_under_the_gate_and_the_scorer_applies_it(role_bundle, role_data, tmp_path):
    from reftguard.calibration import CalibrateConfig, calibrate

    out = tmp_path / "b"
    shutil.copytree(role_bundle, out)
    fit_gate(FitGateConfig(bundle=str(out), data=[str(packaged("guard-train.jsonl"))], calib_data=[str(role_data)], split="all",
                           keep=0.8, review_keep=0.9))
    cal = dict(bundle=str(out), data=[str(role_data)], target_recall=0.9, target_fpr_role=["assistant=0.1,system=0.2"])
    b = calibrate(CalibrateConfig(**cal, review_recall=0.95))
    gate, spec = b.flag_gate(), b.manifest["flag_gate"]
    assert spec["review_keep"] == 0.9 and gate.review_threshold == spec["review_threshold"] and b.manifest["review"]["gated"]
    user = [x for x in map(json.loads, role_data.read_text().splitlines()) if x.get("role", "user") == "user"]
    texts, harm = [x["text"] for x in user], np.array([x["label"] == "harmful" for x in user])
    scorer = BundleScorer(b)
    s, band = scorer.scores(texts), gate.bands(turn_states(b, texts, output=gate.input))
    low, flag = b.review_thresholds["user"], b.threshold
    kept = (s > flag) | ((s > low) & band)
    assert kept[harm].mean() >= 0.95 and b.manifest["review"]["recall"] == pytest.approx(kept[harm].mean())
    assert ((s > low) & (s <= flag) & ~band).any(), "the fixture should keep some prompts in the score's band out of it"
    got = scorer.score_turns(text_turns(texts), thresholds=scorer.thresholds)
    assert [d.flag or d.review for d in got] == list(kept)
    with run_server(b.root) as rs, GuardClient(rs.target) as client:  # the server reads the edge from the bundle too
        assert [d.verdict != pb.ALLOW for d in client.score(texts, accept_review=True)] == list(kept)
    with pytest.raises(ValueError, match="no review edge reaches recall"):  # too few harmful rows let into the band
        fit_gate(FitGateConfig(bundle=str(out), data=[str(packaged("guard-train.jsonl"))], calib_data=[str(role_data)], split="all",
                               keep=0.8, review_keep=0.05))
        calibrate(CalibrateConfig(**cal, review_recall=1.0))


def test_fit_gate_refuses_what_it_cannot_use(gated, tiny_bundle, role_data, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "guard.json").read_text())
    manifest.pop("tail_tokens")
    from reftguard.bundle import seal

    seal(old, manifest)
    cfg = dict(data=[str(packaged("guard-train.jsonl"))], calib_data=[str(role_data)], split="all")
    with pytest.raises(ValueError, match="no `tail_state` output"):
        fit_gate(FitGateConfig(bundle=str(old), **cfg))
    with pytest.raises(ValueError, match="--keep"):
        fit_gate(FitGateConfig(bundle=str(gated.root), keep=0.0, **cfg))
    with pytest.raises(ValueError, match="--review-keep"):
        fit_gate(FitGateConfig(bundle=str(gated.root), review_keep=1.5, **cfg))
    assert GuardBundle.load(tiny_bundle).flag_gate() is None  # no gate: FLAG as before


def test_fit_gate_command_line(role_bundle, role_data, tmp_path, capsys):
    from reftguard.cli import main

    out = tmp_path / "b"
    shutil.copytree(role_bundle, out)
    assert main(["fit-gate", "--bundle", str(out), "--data", str(packaged("guard-train.jsonl")), "--calib-data", str(role_data),
                 "--split", "all", "--keep", "0.9"]) == 0
    g = GuardBundle.load(out).manifest["flag_gate"]
    assert f"flag gate threshold {g['threshold']:.4f}" in capsys.readouterr().out and g["kept"] >= 0.9 and "review_keep" not in g
    assert main(["fit-gate", "--bundle", str(out), "--data", str(packaged("guard-train.jsonl")), "--calib-data", str(role_data),
                 "--split", "all", "--review-keep", "0.9"]) == 0
    g = GuardBundle.load(out).manifest["flag_gate"]
    assert f"review edge {g['review_threshold']:.4f}: keeps 0.900" in capsys.readouterr().out
    assert main(["calibrate", "--bundle", str(out), "--data", str(role_data), "--target-recall", "0.9", "--review-recall", "0.9"]) == 0
    assert "user review band (user turns the flag gate's review edge lets in)" in capsys.readouterr().out


def test_the_tail_mask_keeps_each_rows_last_real_tokens_on_either_padding_side():
    import torch

    from reftguard.modeling.guard import masked_mean, tail_mask

    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert tail_mask(mask, 2).tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 1, 1], [1, 0, 0, 0, 0]]  # a short row keeps all
    h = torch.arange(5.0).repeat(3, 1).unsqueeze(-1)  # each token's state is its position
    assert masked_mean(h, tail_mask(mask, 2)).squeeze(-1).tolist() == [2.5, 3.5, 0.0]
