"""DESIGN 8, checked on the source: module-level imports only point down the layers.

The top-level folders server/, exporter/, clients/ and training/ are installed as reftguard.server etc.;
the core (the reftguard/ folder) must import none of them at module level, so the scoring core, bundle
reader and encoder load without a transport or torch. Imports inside functions are allowed: that is
how optional layers are reached lazily. Nothing is imported here; the files are parsed.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"server": "reftguard.server", "exporter": "reftguard.exporter", "clients": "reftguard.clients", "training": "reftguard.training"}
UPPER = ("reftguard.server", "reftguard.clients", "reftguard.exporter", "reftguard.training")
RULES = {
    "reftguard": UPPER,
    "clients": ("reftguard.server", "reftguard.exporter", "reftguard.training"),
    "server": ("reftguard.exporter", "reftguard.training", "torch", "transformers"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in MAPPED:
        parts[0:1] = MAPPED[parts[0]].split(".")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def module_level_imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) of every import that runs when the module is imported: top level and
    class bodies, inside if/try/with, but not function bodies or `if TYPE_CHECKING:` blocks."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                out.extend((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                out.extend((node.lineno, f"{base}.{a.name}" if not node.module else base) for a in node.names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []) or [])

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)).body)
    return out


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "v1" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("folder", sorted(RULES))
def test_module_level_imports_point_down(folder):
    banned = RULES[folder]
    files = _sources(folder)
    assert files, f"no sources under {folder}/"
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {mod}"
        for p in files
        for line, mod in module_level_imports(p)
        if any(mod == b or mod.startswith(b + ".") for b in banned)
    ]
    assert not bad, "module-level imports across layers (import lazily inside the function instead):\n" + "\n".join(bad)


def test_the_scan_sees_relative_and_nested_imports(tmp_path):
    """The checker itself: relative imports resolve, function bodies and TYPE_CHECKING are skipped."""
    pkg = ROOT / "clients" / "scan" / "engines.py"
    assert module_name(pkg) == "reftguard.clients.scan.engines"
    assert module_name(ROOT / "reftguard" / "__init__.py") == "reftguard"
    src = tmp_path / "clients" / "m.py"
    src.parent.mkdir()
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "try:\n    import reftguard.server.app\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import reftguard.training\n"
        "class C:\n    from reftguard.exporter import card\n"
        "def f():\n    import reftguard.clients\n"
        "from .scan import rows\nfrom . import requests\nfrom .. import scoring\n"
    )
    found = {m for _, m in module_level_imports(src, tmp_path)}
    assert found == {"typing", "reftguard.server.app", "reftguard.exporter", "reftguard.clients.scan", "reftguard.clients.requests", "reftguard.scoring"}
