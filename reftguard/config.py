"""Typed dataclass configs that become CLI flags, and the rule for environment variables.

Each field carries its help line in `metadata["help"]`; `add_dataclass_args` turns a dataclass into
argparse flags and `--help` explains them.

Environment variables. An option has an environment twin (`REFTGUARD_<OPTION>`, e.g. REFTGUARD_PORT for
--port) only where a deployment sets it, so that a variable exported for one command never changes
another:
  - `reftguard serve`: every option. ServerConfig declares `ENV_TWINS = True`, so a container is
    configured with environment variables alone (Dockerfile, deploy/).
  - the client commands (score, health, info, scan, review): the service address and credential only,
    REFTGUARD_TARGET and REFTGUARD_TOKEN (clients/cli.py).
  - every other command (fit, export, calibrate, eval, robustness, default-bundle,
    train-teacher, soup-teacher, make-data, distill, evaluate-model, pipeline) runs once, offline, and
    reads flags only (train-teacher also a --recipe file), never the environment.
A flag given on the command line wins over its twin; the defaults are the same either way.
REFTGUARD_CACHE (where the default bundle is cached) is a location, not an option twin.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ENV_PREFIX = "REFTGUARD_"


def option(default: Any, help: str, *, choices: tuple | None = None, secret: bool = False) -> Any:
    """A dataclass field with a help line (and optional choices) for the CLI; `secret` values never appear in --help."""
    meta = {"help": help, "choices": choices, "secret": secret}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def has_env_twins(cls: type) -> bool:
    """Whether the options of `cls` read REFTGUARD_* variables (a deployed command's config declares
    `ENV_TWINS: ClassVar[bool] = True`; see the module docstring)."""
    return bool(getattr(cls, "ENV_TWINS", False))


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
    """Add one `--flag` per field of `cls` (except `skip`); the default is the field default, or its env
    twin's value when `cls` has env twins and the variable is set."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        base = _base_type(tp)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        env = env_name(f.name) if has_env_twins(cls) else None
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
    """Build `cls` from `REFTGUARD_*` env vars, then explicit overrides (used by tests and embedding);
    only for a config with env twins."""
    if not has_env_twins(cls):
        raise TypeError(f"{cls.__name__} has no environment twins (reftguard.config: only deployed commands read the environment)")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        env = env_name(f.name)
        if env in os.environ:
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


def recipe_defaults(parser: argparse.ArgumentParser, path: str | Path) -> dict[str, Any]:
    """The option values of a recipe file (TOML, option names as keys: `steps = 200`, `data = ["a.jsonl"]`)
    for `parser.set_defaults`: they replace the defaults, so flags on the command line still win.
    Unknown names and values of the wrong type are errors that name the file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    with open(path, "rb") as f:
        try:
            values = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"recipe {path}: {exc}") from exc
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "verbose", "recipe")}
    out: dict[str, Any] = {}
    for key, v in values.items():
        name = key.replace("-", "_")
        a = actions.get(name)
        if a is None:
            raise ValueError(f"recipe {path}: {key!r} is not an option of this command")
        if isinstance(a, argparse.BooleanOptionalAction) or a.nargs == 0:
            ok = isinstance(v, bool)
        elif a.type in (int, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (a.type is float or isinstance(v, int))
            v = a.type(v) if ok else v
        elif a.type is str or a.type is None:
            ok = isinstance(v, str)
        else:  # a list option (its type parses "a,b"): a TOML array of strings or numbers
            ok = isinstance(v, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v)
            v = [str(x) for x in v] if ok else v
        if not ok:
            raise ValueError(f"recipe {path}: {key} = {v!r} is not a valid value for --{name.replace('_', '-')}")
        if a.choices and v not in a.choices:
            raise ValueError(f"recipe {path}: {key} = {v!r} is not one of {list(a.choices)}")
        out[name] = v
    return out
