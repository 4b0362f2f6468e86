"""recipes/teacher-stage{1,2}.toml reproduce the shipped teacher: read with `reftguard train-teacher --recipe`,
they give exactly the configuration reftguard/data/default_teacher/teacher.json records (stage 2's full
config, stage 1's command). Only where a run writes differs: the recipes use their own run directories,
and their reply cache is generated on first use instead of naming one a fresh checkout does not have.
Nothing is trained here (tests/test_teacher_train.py runs a recipe on a tiny model)."""
from __future__ import annotations

import json
import shlex
from dataclasses import asdict, fields

import pytest

from tests.test_layers import ROOT

RECIPES = ROOT / "recipes"
TEACHER = ROOT / "reftguard" / "data" / "default_teacher" / "teacher.json"
# Where a run writes (its own directories, not what it trains) and how a run is driven.
PATHS = {"out", "init_teacher", "reply_cache"}
RUN_CONTROL = {"progress", "resume", "stop_at"}
# Options removed since the shipped run (kept only for rejected candidates), with the value that run left them at.
REMOVED = {"hard_negative_weight": 1.0}
# Options added since the shipped run, with the value that reproduces it (their default must be that value,
# or the recipes must set it).
ADDED: dict[str, object] = {"reply_data": [], "reply_per_class": 4}  # replies in the regulariser: off


def recipe_config(*argv: str):
    """The TrainConfig that `reftguard train-teacher ARGV` would train (the CLI's own parsing)."""
    from reftguard.cli import parse
    from reftguard.cli.train_commands import quick_config

    name, _, ns = parse(["train-teacher", *argv])
    assert name == "train-teacher"
    return quick_config(ns)


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(TEACHER.read_text())["record"]


def test_stage2_recipe_is_the_shipped_teachers_recorded_config(record):
    from reftguard.training.teacher_train import TrainConfig

    recorded = record["config"]
    cfg = asdict(recipe_config("--recipe", str(RECIPES / "teacher-stage2.toml")))
    new = set(cfg) - set(recorded)
    assert new == set(ADDED), f"options the shipped run did not record (add them to ADDED with the value that reproduces it): {new}"
    assert all(cfg[k] == v for k, v in ADDED.items())
    for key, value in recorded.items():
        if key in REMOVED:
            assert value == REMOVED[key] and key not in cfg, key  # the shipped run did not use it
        elif key not in PATHS | RUN_CONTROL:
            assert cfg[key] == value, (key, cfg[key], value)
    assert {f.name for f in fields(TrainConfig)} == set(cfg)


def test_stage1_recipe_is_the_recorded_stage1_command(record):
    command = shlex.split(record["stage1"]["command"])
    assert command[:2] == ["reftguard", "train-teacher"]
    want = asdict(recipe_config(*command[2:]))
    got = asdict(recipe_config("--recipe", str(RECIPES / "teacher-stage1.toml")))
    assert {k: v for k, v in got.items() if k not in PATHS} == {k: v for k, v in want.items() if k not in PATHS}


def test_the_stages_chain_and_a_fresh_checkout_has_their_inputs():
    s1 = recipe_config("--recipe", str(RECIPES / "teacher-stage1.toml"))
    s2 = recipe_config("--recipe", str(RECIPES / "teacher-stage2.toml"))
    assert s2.init_teacher == s1.out and not s1.init_teacher
    assert s1.reply_cache == s2.reply_cache and s1.reply_cache.startswith(s1.out + "/")  # made by stage 1, reused by stage 2
    for cfg in (s1, s2):
        assert all((ROOT / p).is_file() for p in cfg.data), cfg.data  # tracked files, relative to the repository root
        assert cfg.out.startswith("runs/")  # ignored by git


def test_flags_override_the_recipe():
    cfg = recipe_config("--recipe", str(RECIPES / "teacher-stage1.toml"), "--out", "elsewhere", "--steps", "3", "--no-drop-refused-replies")
    assert (cfg.out, cfg.steps, cfg.drop_refused_replies, cfg.sft_pool) == ("elsewhere", 3, False, 384)


def test_a_recipe_with_an_unknown_option_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("long_per_class = 2\n")  # removed: kept only for a rejected candidate
    with pytest.raises(SystemExit):
        recipe_config("--recipe", str(bad))
    assert "'long_per_class' is not an option" in capsys.readouterr().err
