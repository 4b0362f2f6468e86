import argparse
from dataclasses import dataclass

import pytest

from reftguard.config import add_dataclass_args, from_args, from_env, option


@dataclass
class Demo:
    port: int = option(50051, "gRPC port.")
    sources: list = option(["a"], "Allowed source tags.")
    tls: bool = option(False, "Use TLS.")
    mode: str = option("x", "Mode.", choices=("x", "y"))


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
