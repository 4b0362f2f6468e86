"""Typed dataclass configs that become CLI flags with `REFTGUARD_*` environment twins.

Each field carries its help line in `metadata["help"]`; `add_dataclass_args` turns a dataclass into
argparse flags whose defaults come from the environment first, so a container can be configured with
env vars alone and a shell user with flags, and `--help` explains both.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from typing import Any, TypeVar

T = TypeVar("T")
ENV_PREFIX = "REFTGUARD_"


def option(default: Any, help: str, *, choices: tuple | None = None, env: bool = True, secret: bool = False) -> Any:
    """A dataclass field with a help line (and optional choices) for the CLI; `secret` values never appear in --help."""
    meta = {"help": help, "choices": choices, "env": env, "secret": secret}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _base_type(tp: Any) -> Any:
    """Unwrap Optional[X] / X | None to X."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args and type(None) in typing.get_args(tp):
        return args[0]
    return tp


def _parse_value(raw: str, tp: Any, name: str) -> Any:
    tp = _base_type(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: expected a boolean (true/false), got {raw!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        return [p.strip() for p in raw.split(",") if p.strip()]
    try:
        return tp(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot parse {raw!r} as {getattr(tp, '__name__', tp)}") from exc


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, group: str | None = None, skip: tuple[str, ...] = ()) -> None:
    """Add one `--flag` per field of `cls` (except `skip`); the default is the env twin if set, else the field default."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        base = _base_type(tp)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        env = env_name(f.name) if f.metadata.get("env", True) else None
        if env and env in os.environ:
            default = _parse_value(os.environ[env], tp, env)
        help_text = f.metadata.get("help", "")
        help_text += f" [env {env}]" if env else ""
        if default not in (None, "", []) and not f.metadata.get("secret"):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) in (list, tuple) or base in (list, tuple):
            kwargs["type"] = lambda s, _tp=tp, _n=flag: _parse_value(s, _tp, _n)
        else:
            kwargs["type"] = base
        target.add_argument(flag, **kwargs)


def from_args(cls: type[T], ns: argparse.Namespace) -> T:
    """Build `cls` from a parsed namespace (fields missing from it keep their defaults)."""
    kwargs = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    return cls(**kwargs)


def from_env(cls: type[T], **overrides: Any) -> T:
    """Build `cls` from `REFTGUARD_*` env vars, then explicit overrides (used by tests and embedding)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        env = env_name(f.name)
        if f.metadata.get("env", True) and env in os.environ:
            kwargs[f.name] = _parse_value(os.environ[env], hints[f.name], env)
    kwargs.update(overrides)
    return cls(**kwargs)


def portable(value):
    """`value` with absolute paths made relative to the working directory (or cut to their last part):
    records and commands that ship inside the package must not carry this machine's paths."""
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        rel = os.path.relpath(value)
        return os.path.basename(value) if rel.startswith("..") else rel
    return value
