import argparse
import importlib
from dataclasses import dataclass
from typing import ClassVar

import pytest

from reftguard.config import add_dataclass_args, from_args, from_env, option, recipe_defaults


@dataclass
class Demo:
    ENV_TWINS: ClassVar[bool] = True  # a deployed command's config

    port: int = option(50051, "gRPC port.")
    sources: list = option(["a"], "Allowed source tags.")
    tls: bool = option(False, "Use TLS.")
    mode: str = option("x", "Mode.", choices=("x", "y"))


@dataclass
class Offline:
    out: str = option("out", "Output directory.")
    steps: int = option(10, "Steps.")
    lr: float = option(1e-3, "Learning rate.")
    data: list = option([], "Data files.")
    quick: bool = option(False, "Quick.")


def test_flags_help_and_env_twin(monkeypatch):
    monkeypatch.setenv("REFTGUARD_PORT", "6000")
    monkeypatch.setenv("REFTGUARD_SOURCES", "a, b,c")
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Demo)
    help_text = p.format_help()
    assert "gRPC port." in help_text and "REFTGUARD_PORT" in help_text
    cfg = from_args(Demo, p.parse_args([]))
    assert cfg.port == 6000 and cfg.sources == ["a", "b", "c"] and cfg.tls is False
    cfg = from_args(Demo, p.parse_args(["--port", "7", "--tls", "--mode", "y"]))
    assert (cfg.port, cfg.tls, cfg.mode) == (7, True, "y")
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "z"])


def test_offline_configs_read_no_environment(monkeypatch):
    """An exported REFTGUARD_OUT (or any other) does not reach a config without env twins: no help mention,
    same defaults, and from_env refuses it."""
    monkeypatch.setenv("REFTGUARD_OUT", "elsewhere")
    monkeypatch.setenv("REFTGUARD_STEPS", "99")
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Offline)
    assert "REFTGUARD_" not in p.format_help()
    assert from_args(Offline, p.parse_args([])) == Offline()
    with pytest.raises(TypeError, match="no environment twins"):
        from_env(Offline)


def test_from_env_bad_value(monkeypatch):
    monkeypatch.setenv("REFTGUARD_TLS", "maybe")
    with pytest.raises(ValueError, match="REFTGUARD_TLS"):
        from_env(Demo)


def test_skipped_fields_get_no_flag_and_keep_their_default():
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Demo, skip=("port",))
    assert "--port" not in p.format_help() and "--tls" in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--port", "7"])
    assert from_args(Demo, p.parse_args(["--tls"])).port == 50051


def test_recipe_values_become_defaults_and_flags_win(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('steps = 200\nlr = 1\ndata = ["a.jsonl", "b.jsonl"]\nquick = true\n')
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Offline)
    p.set_defaults(**recipe_defaults(p, recipe))
    cfg = from_args(Offline, p.parse_args([]))
    assert (cfg.steps, cfg.lr, cfg.data, cfg.quick, cfg.out) == (200, 1.0, ["a.jsonl", "b.jsonl"], True, "out")
    assert isinstance(cfg.lr, float)
    cfg = from_args(Offline, p.parse_args(["--steps", "5", "--no-quick", "--data", "c.jsonl"]))
    assert (cfg.steps, cfg.quick, cfg.data) == (5, False, ["c.jsonl"])


@pytest.mark.parametrize("text, match", [("stepz = 1\n", "'stepz' is not an option"), ("steps = 1.5\n", "not a valid value"),
                                         ("quick = 1\n", "not a valid value"), ("steps = \n", "recipe")])
def test_recipe_errors_name_the_file(tmp_path, text, match):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Offline)
    with pytest.raises(ValueError, match=match):
        recipe_defaults(p, recipe)


# Commands a deployment configures through the environment, and the twins each may read.
DEPLOYED = {"serve": None, "score": {"REFTGUARD_TARGET", "REFTGUARD_TOKEN"}, "health": {"REFTGUARD_TARGET", "REFTGUARD_TOKEN"},
            "info": {"REFTGUARD_TARGET", "REFTGUARD_TOKEN"}, "scan": {"REFTGUARD_TARGET", "REFTGUARD_TOKEN"},
            "review": {"REFTGUARD_TARGET", "REFTGUARD_TOKEN"}}


def test_only_deployed_commands_name_environment_twins():
    """The rule of reftguard.config, on the real CLI: every offline command's --help names no REFTGUARD_*
    variable but the cache location; serve's names one per option; the client commands name the target
    and token only."""
    import re

    from reftguard.cli import COMMANDS

    for name, (module, handler, _) in COMMANDS.items():
        p = argparse.ArgumentParser(prog=name)
        getattr(importlib.import_module(module), f"{handler}_args")(p)
        named = set(re.findall(r"REFTGUARD_[A-Z_]+", p.format_help().replace("\n", " "))) - {"REFTGUARD_CACHE"}
        if name not in DEPLOYED:
            assert not named, (name, named)
        elif DEPLOYED[name] is not None:
            assert named == DEPLOYED[name], (name, named)
        else:
            assert {"REFTGUARD_BUNDLE", "REFTGUARD_PORT", "REFTGUARD_AUTH_TOKEN"} <= named, named
