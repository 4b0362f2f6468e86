"""soup-teacher: the weight soup of LoRA teachers is the mean of their weight updates (exactly, or its best
low-rank approximation), is a teacher that exports with parity and that stage 2 can build on, and refuses
members of different recipes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reftguard.modeling.teacher import Teacher
from reftguard.training.soup import SoupConfig, soup_lora, soup_teacher
from reftguard.training.teacher_train import train
from tests.test_teacher_train import tiny_config

KEY = "base_model.model.model.layers.0.mlp.up_proj.lora_{}.weight"


def _member(seed: int, r: int = 3, d_in: int = 7, d_out: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {KEY.format("A"): torch.randn(r, d_in, generator=g), KEY.format("B"): torch.randn(d_out, r, generator=g)}


def _update(sd: dict) -> torch.Tensor:
    return sd[KEY.format("B")] @ sd[KEY.format("A")]


def test_soup_lora_is_the_mean_update_or_its_best_low_rank_approximation():
    members = [_member(s) for s in range(3)]
    mean = sum(_update(m) for m in members) / 3
    exact = soup_lora(members)
    assert exact[KEY.format("A")].shape == (9, 7)
    torch.testing.assert_close(_update(exact), mean, atol=1e-5, rtol=1e-5)
    low = soup_lora(members, rank=2)
    assert low[KEY.format("A")].shape == (2, 7) and low[KEY.format("B")].shape == (5, 2)
    s = torch.linalg.svdvals(mean.double())
    # Eckart-Young: the error left is exactly the singular values dropped
    assert float(torch.linalg.norm(_update(low).double() - mean.double())) == pytest.approx(float(s[2:].norm()), rel=1e-5)
    with pytest.raises(ValueError, match="different modules"):
        soup_lora([members[0], {KEY.replace("up_proj", "down_proj").format(x): v for x, v in zip("AB", members[1].values())}])


def _merged(teacher_dir) -> dict:
    lm, _ = Teacher.load(teacher_dir).load_model()
    return {k: v.detach().clone() for k, v in lm.state_dict().items()}


def test_soup_teacher_averages_the_members_and_builds_on(tiny_llama, data_dir, tmp_path):
    for seed in (0, 1):
        train(tiny_config(tiny_llama, data_dir, tmp_path / f"m{seed}", steps=6, seed=seed))
    members = [str(tmp_path / "m0"), str(tmp_path / "m1")]
    data = [str(data_dir / "train.jsonl")]
    with pytest.raises(ValueError, match="data hash differs"):
        soup_teacher(SoupConfig(members=members, out=str(tmp_path / "x"), data=[str(data_dir / "dev.jsonl")]))
    assert not (tmp_path / "x").exists()  # refused before anything is written
    soup = soup_teacher(SoupConfig(members=members, out=str(tmp_path / "soup"), data=data), command="reftguard soup-teacher ...")
    meta = json.loads((tmp_path / "soup" / "adapter" / "adapter_config.json").read_text())
    assert (meta["r"], meta["lora_alpha"]) == (8, 32.0)  # two rank-4 members, scaling alpha / r kept
    w0, w1, ws = _merged(tmp_path / "m0"), _merged(tmp_path / "m1"), _merged(tmp_path / "soup")
    moved = [k for k in ws if not torch.equal(w0[k], w1[k])]
    assert moved and all(".layers.0." in k or ".layers.1." in k for k in moved)  # LoRA below layer 2 only
    for k in moved:
        torch.testing.assert_close(ws[k], (w0[k] + w1[k]) / 2, atol=2e-3, rtol=0)  # float16 adapter weights
    assert [m["command"] for m in soup.record["members"]] == [Teacher.load(m).record["command"] for m in members]
    assert np.linalg.norm(soup.refusal_feature) > 0 and len(soup.record["cos_to_members_r_l"]) == 2

    from reftguard.exporter.export import ExportConfig, export_bundle

    bundle = export_bundle(ExportConfig(teacher=str(tmp_path / "soup"), out=str(tmp_path / "b")))
    assert bundle.manifest["exporter"]["parity_max_abs_diff"] < 1e-4
    np.testing.assert_allclose(bundle.refusal_feature(), soup.refusal_feature)
    card = (bundle.root / "CARD.md").read_text()
    assert all(Teacher.load(m).record["command"] in card for m in members) and "reftguard soup-teacher ..." in card

    # a soup at the members' rank is what stage 2 takes (same --lora-rank), and stage 2 keeps its guard
    soup_teacher(SoupConfig(members=members, out=str(tmp_path / "soup4"), rank=4, data=data))
    train(tiny_config(tiny_llama, data_dir, tmp_path / "s2", steps=2, reg_weight=0.0, sft_weight=1.0, init_teacher=str(tmp_path / "soup4")))
    s4, s2 = Teacher.load(tmp_path / "soup4"), Teacher.load(tmp_path / "s2")
    np.testing.assert_array_equal(s4.refusal_feature, s2.refusal_feature)
    assert s2.record["stage1"]["command"] == s4.record["command"]
    assert s2.record["stage1"]["members"] == s4.record["members"] and "log" not in s2.record["stage1"]  # a soup has no training log


def test_soup_refuses_members_of_another_recipe_and_runs_from_the_cli(tiny_llama, tiny_teacher, data_dir, tmp_path, capsys):
    from reftguard.cli import main

    train(tiny_config(tiny_llama, data_dir, tmp_path / "a", steps=2))
    train(tiny_config(tiny_llama, data_dir, tmp_path / "b", steps=2, layer=3))
    with pytest.raises(ValueError, match="differs .* in layer"):
        soup_teacher(SoupConfig(members=[str(tmp_path / "a"), str(tmp_path / "b")], out=str(tmp_path / "s")))
    with pytest.raises(ValueError, match="at least two"):
        soup_teacher(SoupConfig(members=[str(tmp_path / "a")], out=str(tmp_path / "s")))
    # a zero-training teacher has no adapter to average
    with pytest.raises(ValueError, match="stage-1 LoRA teachers"):
        soup_teacher(SoupConfig(members=[str(tmp_path / "a"), str(tiny_teacher)], out=str(tmp_path / "s")))
    assert main(["soup-teacher", "--members", f"{tmp_path / 'a'},{tmp_path / 'a'}", "--out", str(tmp_path / "s"), "--rank", "4",
                 "--data", str(data_dir / "train.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "soup of 2 teachers" in out and "cosine to the members' 1.000, 1.000" in out  # a soup of one run twice is that run
    assert Teacher.load(tmp_path / "s").record["command"].startswith("reftguard soup-teacher --members")
