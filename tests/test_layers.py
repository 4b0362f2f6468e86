"""docs/design.md §8, checked on the source: imports only point down the layers, at module level and inside
functions alike (a lazy `from reftguard.training ...` in the core is still a dependency, it only fails
later). Only `if TYPE_CHECKING:` blocks are exempt: they never run.

The top-level folders server/, exporter/, clients/ and training/ are installed as reftguard.server etc.
The core (the reftguard/ folder) imports none of them, so the scoring core, bundle reader and encoder
load without a transport or torch; the CLI package reftguard/cli/ is the one top layer, allowed to import
everything. exporter/ and training/ meet only in reftguard/modeling/. Nothing is imported here: the files
are parsed, and `importlib.import_module("...")` / `__import__("...")` calls with a literal name count.
"""
from __future__ import annotations

import ast
from importlib.util import resolve_name
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"server": "reftguard.server", "exporter": "reftguard.exporter", "clients": "reftguard.clients", "training": "reftguard.training"}
UPPER = ("reftguard.server", "reftguard.clients", "reftguard.exporter", "reftguard.training", "reftguard.cli")
CLI = "reftguard/cli"  # the top layer: exempt from the core's rule
RULES = {
    "reftguard": UPPER,
    "reftguard/modeling": UPPER,
    "clients": ("reftguard.server", "reftguard.exporter", "reftguard.training", "reftguard.cli"),
    "server": ("reftguard.exporter", "reftguard.training", "reftguard.cli", "torch", "transformers"),
    "exporter": ("reftguard.training", "reftguard.cli"),
    "training": ("reftguard.exporter", "reftguard.cli"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in MAPPED:
        parts[0:1] = MAPPED[parts[0]].split(".")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return isinstance(node, ast.If) and ((isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"))


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import that can run: module level, class and function bodies,
    inside if/try/with, and import_module / __import__ calls with a literal name; not `if TYPE_CHECKING:`
    blocks (their `else:` does count)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            out.extend((node.lineno, base if node.module else f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            fn = node.func
            if (fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")) in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
        if _is_type_checking(node):
            children = node.orelse
        else:
            children = list(ast.iter_child_nodes(node))
        for child in children:
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


def _sources(folder: str, root: Path = ROOT) -> list[Path]:
    """The folder's Python files; the core's exclude the CLI package (its own rule: none) and the
    generated protobuf stubs."""
    files = []
    for p in sorted((root / folder).rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if "/v1/" in rel or rel.startswith(CLI + "/"):
            continue
        files.append(p)
    return files


def crossings(folder: str, root: Path = ROOT) -> list[str]:
    banned = RULES[folder]
    return [f"{p.relative_to(root)}:{line} imports {mod}" for p in _sources(folder, root) for line, mod in imports(p, root)
            if any(mod == b or mod.startswith(b + ".") for b in banned)]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_imports_point_down(folder):
    assert _sources(folder), f"no sources under {folder}/"
    bad = crossings(folder)
    assert not bad, ("imports across layers (the CLI, reftguard/cli/, is the one module that may import everything; torch code "
                     "shared by exporter and training belongs in reftguard/modeling/):\n" + "\n".join(bad))


def test_the_cli_is_one_package_and_the_console_script_points_at_it():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["reftguard"] == "reftguard.cli:main"
    packages = project["tool"]["setuptools"]["packages"]
    assert {"reftguard.cli", "reftguard.modeling"} <= set(packages)
    assert (ROOT / CLI / "__main__.py").is_file()  # python -m reftguard.cli / accelerate launch -m reftguard.cli


def test_the_checker_sees_function_bodies_and_skips_only_type_checking(tmp_path):
    """The checker itself, on synthetic files: relative imports resolve; imports in functions, methods,
    class bodies, try/with blocks and literal import_module calls all count; TYPE_CHECKING does not."""
    assert module_name(ROOT / "clients" / "scan" / "engines.py") == "reftguard.clients.scan.engines"
    assert module_name(ROOT / "reftguard" / "__init__.py") == "reftguard"
    src = tmp_path / "clients" / "m.py"
    src.parent.mkdir()
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "try:\n    import reftguard.server.app\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import reftguard.training.teacher\nelse:\n    import json\n"
        "class C:\n    from reftguard.exporter import card\n"
        "    def g(self):\n        with open('x'):\n            from ..training import fit\n"
        "def f():\n    import reftguard.clients\n"
        "async def h():\n    from reftguard.server import batcher\n"
        "import importlib\nx = importlib.import_module('reftguard.training.distill')\n"
        "from .scan import rows\nfrom . import requests\nfrom .. import scoring\n"
    )
    found = {m for _, m in imports(src, tmp_path)}
    assert "reftguard.training.teacher" not in found
    assert found == {"typing", "reftguard.server.app", "json", "reftguard.exporter", "reftguard.training", "reftguard.clients",
                     "reftguard.server", "importlib", "reftguard.training.distill", "reftguard.clients.scan",
                     "reftguard.clients.requests", "reftguard.scoring"}


def test_an_upward_import_inside_a_function_of_the_core_fails_the_rule(tmp_path):
    """What the rule would say about a core module that imports the exporter lazily, and about the same
    import in the CLI package (allowed) or under TYPE_CHECKING (allowed)."""
    core = tmp_path / "reftguard"
    (core / "cli").mkdir(parents=True)
    (core / "lazy.py").write_text("def build():\n    from reftguard.exporter.export import export_bundle\n    return export_bundle\n")
    (core / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from reftguard.training.fit import FitConfig\n")
    (core / "cli" / "commands.py").write_text("def export(ns):\n    from reftguard.exporter.export import export_bundle\n")
    assert crossings("reftguard", tmp_path) == ["reftguard/lazy.py:2 imports reftguard.exporter.export"]
