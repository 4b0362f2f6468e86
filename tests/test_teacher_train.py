"""ReFT teacher training on a tiny random Llama: the regulariser, R_l refreshes, reply-only loss, export and
resume; plus the shipped default teacher on the real SmolLM2 (slow)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from reftguard.training import sft
from reftguard.modeling.teacher import Teacher
from reftguard.training.teacher_train import (
    TrainConfig,
    class_cosines,
    layer_states,
    regulariser_loss,
    train,
)


def tiny_config(model, data_dir, out, **kw) -> TrainConfig:
    base = dict(
        model=str(model), data=[str(data_dir / "train.jsonl")], out=str(out), layer=2, steps=12, lr=1e-3, warmup=2,
        reg_per_class=6, sft_per_class=2, sft_pool=12, reply_tokens=8, sft_max_tokens=96, max_tokens=96,
        refresh_every=4, probe_size=40, eval_size=40, eval_every=6, log_every=2, final_size=64,
        lora_rank=4, progress=False, resume=False, seed=0,
    )
    return TrainConfig(**(base | kw))


def separation(model_dir_or_teacher, data_dir, layer: int):
    """(regulariser loss, harmful - benign mean cosine) on the training file, R_l re-estimated on it."""
    from reftguard.data import load_labeled
    from reftguard.prompt import PromptFormat
    from reftguard.training.fit import encode_texts
    from reftguard.modeling.loading import load_causal_lm

    if isinstance(model_dir_or_teacher, Teacher):
        lm, tok = model_dir_or_teacher.load_model()
        tok_dir = model_dir_or_teacher.tokenizer_dir
    else:
        lm, tok = load_causal_lm(str(model_dir_or_teacher))
        tok_dir = model_dir_or_teacher
    prompts = load_labeled(data_dir / "train.jsonl")
    y = np.array([p.label for p in prompts])
    ids = encode_texts(tok_dir, PromptFormat.from_hf_tokenizer(tok), 96, [p.text for p in prompts])
    h = layer_states(lm, ids, layer, 16, tok.pad_token_id)
    from reftguard.features import cosine_scores, refusal_feature

    r, c = refusal_feature(h, y, "midpoint")
    mh, mb = class_cosines(h, y, r, c)
    s = torch.from_numpy(cosine_scores(h, r, c))
    loss = float(regulariser_loss(s, torch.from_numpy(y), (mh + mb) / 2.0, 10.0, 0.0))
    return loss, mh - mb


def test_regulariser_lowers_its_loss_and_widens_the_gap(tiny_llama, data_dir, tmp_path):
    loss0, gap0 = separation(tiny_llama, data_dir, 2)
    teacher = train(tiny_config(tiny_llama, data_dir, tmp_path / "t", sft_weight=0.0, steps=30))
    loss1, gap1 = separation(Teacher.load(tmp_path / "t"), data_dir, 2)
    assert teacher.kind == "reft" and teacher.adapter == "adapter"
    assert loss1 < loss0 - 0.05, (loss0, loss1)
    assert gap1 > gap0 + 0.05, (gap0, gap1)


def test_refusal_feature_is_refreshed(tiny_llama, data_dir, tmp_path):
    teacher = train(tiny_config(tiny_llama, data_dir, tmp_path / "t", steps=12, refresh_every=4))
    rows = [json.loads(l) for l in (tmp_path / "t" / "train_log.jsonl").read_text().splitlines()]
    refreshes = [r for r in rows if "refresh" in r]
    assert [r["refresh"] for r in refreshes] == [0, 1, 2, 3]  # the initial estimate, then steps 4, 8, 12
    assert [r["step"] for r in refreshes] == [0, 4, 8, 12]
    assert teacher.record["refreshes"] == 3
    # Each refresh measured a changed R_l (drift = cosine to the previous estimate < 1).
    assert all(r["drift"] < 1.0 - 1e-6 for r in refreshes[1:])
    for key in ("reg_loss", "sft_loss", "batch_harmful_cos", "batch_benign_cos", "held_auroc"):
        assert any(key in r for r in rows), key
    assert (tmp_path / "t" / "train_curves.png").stat().st_size > 1000


def test_prompt_tokens_carry_no_loss(tiny_llama):
    """The gradient of the SFT loss w.r.t. the final hidden state is zero at every position whose next token
    is a prompt token (or padding), and non-zero where the next token is a reply token."""
    from reftguard.encoding import PromptEncoder
    from reftguard.prompt import PromptFormat
    from reftguard.modeling.loading import load_causal_lm

    lm, tok = load_causal_lm(str(tiny_llama))
    enc = PromptEncoder(tiny_llama / "tokenizer.json", PromptFormat.from_hf_tokenizer(tok), 96)
    pairs = sft.encode_pairs(enc, ["How do I bake bread?", "hi"], ["Mix flour and water.", "Hello there, how can I help?"], sft.turn_end(tok), 16)
    ids, mask, labels = (torch.from_numpy(a) for a in sft.collate(pairs, tok.pad_token_id))
    captured = {}

    def keep(_module, _inp, out):
        out.retain_grad()
        captured["h"] = out

    handle = lm.model.norm.register_forward_hook(keep)
    sft.reply_loss(lm, ids, mask, labels).backward()
    handle.remove()
    g = captured["h"].grad.abs().sum(-1)  # [batch, seq]
    for i, p in enumerate(pairs):
        # position j predicts token j+1: reply tokens are n_prompt..len-1, so positions n_prompt-1..len-2
        assert torch.all(g[i, : p.n_prompt - 1] == 0)
        assert torch.all(g[i, len(p.ids) - 1 :] == 0)
        assert torch.all(g[i, p.n_prompt - 1 : len(p.ids) - 1] > 0)


def _kl_to_start(start, teacher_dir, cache, data) -> float:
    """Mean KL(starting model || teacher) per reply token on the cached benign (prompt, greedy reply) pairs."""
    import torch.nn.functional as F

    from reftguard.encoding import PromptEncoder
    from reftguard.modeling.loading import load_causal_lm
    from reftguard.prompt import PromptFormat

    lm0, tok = load_causal_lm(str(start))
    lm1, _ = Teacher.load(teacher_dir).load_model()
    from reftguard.data import load_labeled

    text = {p.id: p.text for p in load_labeled(data)}
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    enc = PromptEncoder(start / "tokenizer.json", PromptFormat.from_hf_tokenizer(tok), 96)
    pairs = sft.encode_pairs(enc, [text[r["id"]] for r in rows], [r["reply"] for r in rows], sft.turn_end(tok), 8)
    ids, mask, labels = (torch.from_numpy(a) for a in sft.collate(pairs, tok.pad_token_id))
    with torch.no_grad():
        ref, _ = sft.reply_logits(lm0, ids, mask, labels)
        cur, _ = sft.reply_logits(lm1, ids, mask, labels)
    return float(F.kl_div(F.log_softmax(cur, -1), F.log_softmax(ref, -1), log_target=True, reduction="batchmean"))


def test_retain_term_keeps_benign_replies_close_to_the_starting_model(tiny_llama, data_dir, tmp_path):
    """--retain-weight: a KL to the adapter-free network on benign pairs. With the same seed and SFT pressure,
    the teacher trained with it (SFT only, so
    the regulariser does not blur the comparison on a random model) stays closer to the starting model on benign replies; without SFT it is refused."""
    kw = dict(steps=24, sft_weight=2.0, reg_weight=0.0, lr=2e-2, lora_all_layers=True)
    train(tiny_config(tiny_llama, data_dir, tmp_path / "plain", **kw))
    train(tiny_config(tiny_llama, data_dir, tmp_path / "kept", retain_weight=50.0, **kw))
    rows = [json.loads(line) for line in (tmp_path / "kept" / "train_log.jsonl").read_text().splitlines()]
    assert any("retain_loss" in r for r in rows)
    cache = tmp_path / "plain" / "benign_replies.jsonl"
    data = data_dir / "train.jsonl"
    plain, kept = (_kl_to_start(tiny_llama, tmp_path / name, cache, data) for name in ("plain", "kept"))
    assert kept < 0.8 * plain, (plain, kept)
    with pytest.raises(ValueError, match="retain-weight"):
        train(tiny_config(tiny_llama, data_dir, tmp_path / "x", retain_weight=1.0, sft_weight=0.0))


def test_teacher_exports_with_parity(tiny_llama, data_dir, tmp_path):
    from reftguard.exporter.export import ExportConfig, export_bundle

    train(tiny_config(tiny_llama, data_dir, tmp_path / "t", steps=6))
    bundle = export_bundle(ExportConfig(teacher=str(tmp_path / "t"), out=str(tmp_path / "b")))
    assert bundle.manifest["exporter"]["parity_max_abs_diff"] < 1e-4
    assert bundle.manifest["teacher"]["kind"] == "reft"
    np.testing.assert_allclose(bundle.refusal_feature(), Teacher.load(tmp_path / "t").refusal_feature)


def test_resume_equals_uninterrupted_run(tiny_llama, data_dir, tmp_path):
    whole = train(tiny_config(tiny_llama, data_dir, tmp_path / "a", steps=10, refresh_every=3))
    assert train(tiny_config(tiny_llama, data_dir, tmp_path / "b", steps=10, refresh_every=3, stop_at=5)) is None
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = train(tiny_config(tiny_llama, data_dir, tmp_path / "b", steps=10, refresh_every=3, resume=True))
    np.testing.assert_array_equal(whole.refusal_feature, resumed.refusal_feature)
    np.testing.assert_array_equal(whole.center, resumed.center)
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_cli_train_teacher_from_a_recipe(tiny_llama, data_dir, tmp_path, capsys):
    """`train-teacher --recipe FILE`: the file's options, flags on the command line win, --quick fills only
    what neither set; the reply cache it names is generated when missing (a fresh checkout has none); the
    recorded command spells every option, so it reproduces the run without the file."""
    from reftguard.cli import main

    out, cache = tmp_path / "t", tmp_path / "fresh" / "replies.jsonl"
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"model = {json.dumps(str(tiny_llama))}\ndata = [{json.dumps(str(data_dir / 'train.jsonl'))}]\nout = {json.dumps(str(out))}\n"
                      f"reply_cache = {json.dumps(str(cache))}\nlayer = 0\nmax_layer = 3\nsteps = 99\nsft_pool = 6\nreply_tokens = 6\n"
                      "probe_size = 40\neval_size = 40\nprogress = false\n")
    rc = main(["train-teacher", "--quick", "--recipe", str(recipe), "--steps", "4"])
    assert rc == 0
    t = Teacher.load(out)
    cfg = t.record["config"]
    assert cfg["steps"] == 4 and cfg["sft_pool"] == 6 and cfg["refresh_every"] == 15  # flag, recipe, --quick default
    assert t.record["command"].startswith("reftguard train-teacher") and "--quick" not in t.record["command"] and "--recipe" not in t.record["command"]
    assert "--sft-pool 6" in t.record["command"] and "--steps 4" in t.record["command"]
    assert len(cache.read_text().splitlines()) >= 1  # generated, in a folder that did not exist
    assert t.layer == t.record["chosen_layer"] and len(t.record["layer_table"]) == 3  # --layer 0: chosen by the table
    assert "teacher written to" in capsys.readouterr().out


@pytest.mark.slow
def test_shipped_default_teacher_beats_zero_training_on_dev(default_bundle_path):
    """The packaged teacher loads, exports with parity (the default bundle is its export), and separates the
    dev prompts better than a zero-training feature at the same layer (fitted here on a balanced slice of the
    training files, to keep this test short). Dev = the calib halves of guard-dev, handwritten-dev and
    contrast-dev: the teacher is trained to hold on hard negatives and disguised requests, not on guard-dev's
    style alone. The teacher's scores are the served ones (onnxruntime), not a second torch forward."""
    from reftguard import evaluation
    from reftguard.bundle import GuardBundle
    from reftguard.data import CALIBRATION_FILES, TRAIN_FILES, load_labeled, packaged, select_split
    from reftguard.default_bundle import shipped_teacher
    from reftguard.features import cosine_scores, refusal_feature
    from reftguard.scoring import BundleScorer
    from reftguard.training.fit import encode_texts
    from reftguard.training.teacher_train import balanced_subset

    root = shipped_teacher()
    assert root is not None, "reftguard/data/default_teacher/teacher.json is missing"
    teacher = Teacher.load(root)
    assert teacher.kind == "reft" and teacher.adapter
    bundle = GuardBundle.load(default_bundle_path)
    assert bundle.manifest["teacher"]["kind"] == "reft" and bundle.layer == teacher.layer
    assert bundle.manifest["exporter"]["parity_max_abs_diff"] < 1e-4

    dev = select_split(load_labeled([packaged(f) for f in CALIBRATION_FILES]), "calib")
    y_dev = np.array([p.label for p in dev])
    enc = lambda ps: encode_texts(teacher.tokenizer_dir, teacher.prompt_format, teacher.max_tokens, [p.text for p in ps])  # noqa: E731
    s_teacher = BundleScorer(bundle, max_windows=0).scores([p.text for p in dev])

    from reftguard.modeling.loading import load_causal_lm

    zero, tok = load_causal_lm(teacher.model)
    train_prompts = load_labeled([packaged(f) for f in TRAIN_FILES])
    y_train = np.array([p.label for p in train_prompts])
    pick = balanced_subset(list(range(len(train_prompts))), y_train, 400, 0)
    h_fit = layer_states(zero, enc([train_prompts[i] for i in pick]), teacher.layer, 32, tok.pad_token_id)
    r, c = refusal_feature(h_fit, y_train[pick], teacher.center_kind)
    s_zero = cosine_scores(layer_states(zero, enc(dev), teacher.layer, 32, tok.pad_token_id), r, c)

    a_t, a_z = evaluation.auroc(s_teacher, y_dev), evaluation.auroc(s_zero, y_dev)
    r_t, r_z = evaluation.recall_at_fpr(s_teacher, y_dev, 0.01), evaluation.recall_at_fpr(s_zero, y_dev, 0.01)
    assert a_t > a_z + 0.02, (a_t, a_z)
    assert r_t > r_z, (r_t, r_z)


@pytest.mark.slow
def test_shipped_default_teacher_answers_benign_and_refuses_harmful_prompts():
    """The packaged teacher's replies, as docs/training.md measures them (greedy, 48 tokens, the refusal-phrase
    judge): few refusals of the first 50 benign guard-dev prompts (measured 0.06; the stage-1 teacher 0.10)
    and most of the first 50 harmful ones refused (measured 0.90; stage 1 alone 0.70). Floors sit a little
    below the measured values: they catch a teacher that over-refuses or stops refusing, not noise."""
    from reftguard.data import load_labeled, packaged
    from reftguard.default_bundle import shipped_teacher
    from reftguard.encoding import PromptEncoder
    from reftguard.training.generation import greedy_replies
    from reftguard.training.judge import is_refusal

    teacher = Teacher.load(shipped_teacher())
    lm, tok = teacher.load_model()
    enc = PromptEncoder(teacher.tokenizer_dir / "tokenizer.json", teacher.prompt_format, 512)
    dev = load_labeled(packaged("guard-dev.jsonl"))
    rate = {}
    for label in (0, 1):
        texts = [p.text for p in dev if p.label == label][:50]
        rate[label] = float(np.mean([is_refusal(r) for r in greedy_replies(lm, tok, enc.encode(texts, "right").ids, 48)]))
    assert rate[0] <= 0.04, rate  # tN: 0.00 (tJ 0.06, the first teacher 0.28)
    assert rate[1] >= 0.82, rate  # tN: 0.88


def test_records_with_written_replies_always_join_the_sft_pool(tiny_llama, data_dir, tmp_path):
    """A benign training record that carries a `reply` is SFT data by intent (the persona set): it joins the
    benign pool on top of the drawn sample, with its written reply as the target, even when the pool is tiny."""
    from reftguard.modeling.loading import load_causal_lm
    from reftguard.training.teacher_train import TeacherData, build_sft_pairs

    written = tmp_path / "written.jsonl"
    written.write_text("".join(json.dumps({"id": f"w{k}", "text": f"Can you walk {k} miles?", "label": "benign",
                                           "reply": "No legs here, but I can plan a route."}) + "\n" for k in range(12)))
    cfg = tiny_config(tiny_llama, data_dir, tmp_path / "t", data=[str(data_dir / "train.jsonl"), str(written)], sft_pool=2)
    lm, tok = load_causal_lm(cfg.model)
    d = TeacherData.load(cfg, tmp_path / "t", tok)
    pairs, labels = build_sft_pairs(cfg, tmp_path / "t", lm, tok, d)
    fit_written = [i for i in d.fit_idx if d.prompts[i].id.startswith("w")]
    targets = [tok.decode(p.ids[p.n_prompt:]) for p, y in zip(pairs, labels) if y == 0]
    assert len(fit_written) >= 8  # the holdout keeps ~15% back
    assert sum("No legs here" in t for t in targets) == len(fit_written)
    assert len(targets) > len(fit_written)  # the drawn sample is still there, with generated replies

    # --sft-written-per-step: the written pairs get a stratum of their own (no retain term, a fixed share a step)
    from reftguard.training.teacher_train import WRITTEN, make_sft_sampler

    pairs2, labels2 = build_sft_pairs(replace(cfg, sft_written_per_step=3, sft_per_class=1, sft_benign_ratio=1), tmp_path / "t", lm, tok, d)
    assert [tok.decode(p.ids) for p in pairs2] == [tok.decode(p.ids) for p in pairs]
    assert [y == WRITTEN for y in labels2] == [y == 0 and "No legs here" in t for y, t in
                                               zip(labels, [tok.decode(p.ids[p.n_prompt:]) for p in pairs])]
    sampler = make_sft_sampler(replace(cfg, sft_written_per_step=3, sft_per_class=1, sft_benign_ratio=1), pairs2, labels2)
    for step in range(5):
        got = [labels2[j] for j in sampler.batch(np.random.default_rng(step))]
        assert sorted(got) == [0, 1, WRITTEN, WRITTEN, WRITTEN]


def test_stage2_changes_the_replies_and_keeps_the_guard(tiny_llama, data_dir, tmp_path):
    """--init-teacher: new LoRA on layers l.. trained with SFT only. The teacher's output logits move, its
    layer-l states (what the guard reads) and R_l are exactly the stage-1 teacher's; the regulariser and a
    mismatched reading of the prompt are refused."""
    from reftguard.data import load_labeled
    from reftguard.training.fit import encode_texts

    train(tiny_config(tiny_llama, data_dir, tmp_path / "s1", steps=6))
    kw = dict(steps=8, reg_weight=0.0, sft_weight=2.0, lr=2e-2, init_teacher=str(tmp_path / "s1"))
    train(tiny_config(tiny_llama, data_dir, tmp_path / "s2", **kw))
    s1, s2 = Teacher.load(tmp_path / "s1"), Teacher.load(tmp_path / "s2")
    np.testing.assert_array_equal(s1.refusal_feature, s2.refusal_feature)
    np.testing.assert_array_equal(s1.center, s2.center)
    assert s2.record["stage1"]["command"] == s1.record["command"]
    assert (tmp_path / "s2" / "stage1_train_log.jsonl").read_text() == (tmp_path / "s1" / "train_log.jsonl").read_text()
    texts = [p.text for p in load_labeled(data_dir / "train.jsonl")[:24]]
    ids = encode_texts(s1.tokenizer_dir, s1.prompt_format, 96, texts)
    (lm1, tok), (lm2, _) = s1.load_model(), s2.load_model()
    h1, h2 = (layer_states(lm, ids, s1.layer, 8, tok.pad_token_id) for lm in (lm1, lm2))
    assert np.abs(h1 - h2).max() < 1e-5
    x = torch.tensor([ids[0]])
    with torch.no_grad():
        assert (lm1(x).logits - lm2(x).logits).abs().max() > 1e-2  # the upper layers were trained
    meta = json.loads((tmp_path / "s2" / "adapter" / "adapter_config.json").read_text())
    assert meta["layers_to_transform"] is None  # one adapter: stage 1 below l, stage 2 above
    from reftguard.exporter.export import ExportConfig, export_bundle

    card = (export_bundle(ExportConfig(teacher=str(tmp_path / "s2"), out=str(tmp_path / "b2"))).root / "CARD.md").read_text()
    assert s1.record["command"] in card and s2.record["command"] in card  # both stages reproduce it
    with pytest.raises(ValueError, match="reg-weight 0"):
        train(tiny_config(tiny_llama, data_dir, tmp_path / "x", **(kw | {"reg_weight": 1.0})))
    with pytest.raises(ValueError, match="--max-tokens"):
        train(tiny_config(tiny_llama, data_dir, tmp_path / "y", **(kw | {"max_tokens": 64})))


def _reply_rows(path, per_kind: int = 16) -> list[dict]:
    """The first `per_kind` assistant turns of each reply kind of the packaged roles-train (shortened)."""
    from reftguard.data import packaged

    rows, seen = [], {}
    for line in packaged("roles-train.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["role"] == "assistant" and seen.get(r["kind"], 0) < per_kind:
            seen[r["kind"]] = seen.get(r["kind"], 0) + 1
            rows.append(r | {"text": r["text"][:300]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _reply_gap(teacher_dir, rows) -> float:
    """Harmful - benign mean guard score of the reply turns (read as a user turn) against the teacher's R_l."""
    from reftguard.features import cosine_scores
    from reftguard.prompt import PromptFormat
    from reftguard.training.fit import encode_texts

    t = Teacher.load(teacher_dir)
    lm, tok = t.load_model()
    ids = encode_texts(t.tokenizer_dir, PromptFormat.from_hf_tokenizer(tok), 96, [r["text"] for r in rows])
    s = cosine_scores(layer_states(lm, ids, t.layer, 16, tok.pad_token_id), t.refusal_feature, t.center)
    y = np.array([r["label"] == "harmful" for r in rows])
    return float(s[y].mean() - s[~y].mean())


def test_reply_data_joins_the_regulariser(tiny_llama, data_dir, tmp_path):
    """--reply-data adds assistant turns to every regulariser batch: harmful replies end up further above
    benign replies and refusals on R_l than in the same run without them, and the record names the data."""
    rows = _reply_rows(tmp_path / "roles.jsonl")
    kw = dict(sft_weight=0.0, steps=30)
    train(tiny_config(tiny_llama, data_dir, tmp_path / "plain", **kw))
    with_replies = train(tiny_config(tiny_llama, data_dir, tmp_path / "replies", reply_data=[str(tmp_path / "roles.jsonl")], **kw))
    assert with_replies.record["reply_data_hash"] and with_replies.record["config"]["reply_per_class"] == 4
    plain, trained = _reply_gap(tmp_path / "plain", rows), _reply_gap(tmp_path / "replies", rows)
    assert trained > plain + 0.2, (plain, trained)  # measured 0.20 -> 0.64
    only_benign = tmp_path / "benign.jsonl"
    only_benign.write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"] == "benign"))
    with pytest.raises(ValueError, match="harmful and benign assistant turns"):
        train(tiny_config(tiny_llama, data_dir, tmp_path / "x", reply_data=[str(only_benign)], **kw))
