"""DESIGN 8 for the torch side: exporter/ and training/ share reftguard/modeling/ and never import each
other, at module level or lazily inside a function; modeling imports neither (nor server/ or clients/).

Lazy imports count here (unlike tests/test_layers.py, which checks the core's module-level imports
only): a function-level `from reftguard.training ...` in the exporter is still a dependency, it only
fails later. The files are parsed, nothing is imported.
"""
from __future__ import annotations

import ast
from importlib.util import resolve_name
from pathlib import Path

import pytest

from tests.test_layers import ROOT, module_name  # the folder -> module mapping of the core's layering test

RULES = {
    "exporter": ("reftguard.training",),
    "training": ("reftguard.exporter",),
    "reftguard/modeling": ("reftguard.training", "reftguard.exporter", "reftguard.server", "reftguard.clients"),
}


def all_imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import anywhere in the file: module level, class and function
    bodies, TYPE_CHECKING blocks, and importlib.import_module / __import__ calls with a literal name."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            out.extend((node.lineno, base if node.module else f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


def crossings(folder: str) -> list[str]:
    """`file:line imports module` for every import under `folder` that its rule bans."""
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in sorted((ROOT / folder).rglob("*.py")) for line, mod in all_imports(p)
            if any(mod == b or mod.startswith(b + ".") for b in RULES[folder])]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_exporter_and_training_meet_only_in_modeling(folder):
    assert list((ROOT / folder).rglob("*.py")), f"no sources under {folder}/"
    bad = crossings(folder)
    assert not bad, "imports across the exporter/training split (shared torch code belongs in reftguard/modeling/):\n" + "\n".join(bad)


def test_modeling_is_a_packaged_subpackage():
    tomllib = pytest.importorskip("tomllib")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "reftguard.modeling" in packages


def test_the_scan_sees_lazy_relative_and_dynamic_imports(tmp_path):
    src = tmp_path / "exporter" / "m.py"
    src.parent.mkdir()
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import reftguard.training.teacher\n"
        "def f():\n    from reftguard.training.models import load_causal_lm\n"
        "class C:\n    def g(self):\n        from ..training import fit\n"
        "import importlib\nx = importlib.import_module('reftguard.training.distill')\n"
        "from . import card\n"
    )
    found = {m for _, m in all_imports(src, tmp_path)}
    assert found == {"typing", "reftguard.training.teacher", "reftguard.training.models", "reftguard.training", "importlib",
                     "reftguard.training.distill", "reftguard.exporter.card"}
