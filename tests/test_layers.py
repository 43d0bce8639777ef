"""Layering: `secondself/text/` is the ground floor — it imports the standard library and, from this package, only
`types`, `errors` and itself, so every layer above may use it and it never pulls a layer in (STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import secondself

PACKAGE = Path(secondself.__file__).parent
TEXT = PACKAGE / "text"
ALLOWED = ("secondself.types", "secondself.errors", "secondself.text")
HIGHER = ("memory", "ingest", "prefill", "train", "bridge", "serve", "cli", "persona", "backends", "store",
          "spaces", "runtime")


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against `package`), including
    imports inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            if not node.module:         # "from . import dates": the names are modules
                out |= {f"{name}.{alias.name}" for alias in node.names}
    return out


def _violations(path: Path, package: str) -> list[str]:
    bad = []
    for name in sorted(imported_modules(path, package)):
        top = name.split(".")[0]
        if top == "__future__" or (top in sys.stdlib_module_names and top != "secondself"):
            continue
        if name == "secondself.text" or name.startswith(ALLOWED):
            continue
        bad.append(name)
    return bad


def test_text_imports_only_the_standard_library_types_and_errors():
    files = sorted(TEXT.glob("*.py"))
    assert {f.stem for f in files} >= {"__init__", "dates", "words", "phrasing", "patterns", "grounding"}
    problems = {f.name: bad for f in files if (bad := _violations(f, "secondself.text"))}
    assert not problems, f"text/ must not import these: {problems}"


def test_nothing_in_text_imports_a_higher_layer():
    for f in sorted(TEXT.glob("*.py")):
        names = imported_modules(f, "secondself.text")
        higher = sorted(n for n in names if n.split(".")[:2] in [["secondself", h] for h in HIGHER])
        assert not higher, f"{f.name} imports {higher}"


def test_the_walker_sees_relative_and_nested_imports(tmp_path):
    # phrasing.py uses Fact through a relative import: the walker must resolve it, or the checks above prove nothing
    assert "secondself.types" in imported_modules(TEXT / "phrasing.py", "secondself.text")
    probe = tmp_path / "probe.py"
    probe.write_text("import re\nfrom ..types import Fact\nfrom . import dates\n\n"
                     "def f():\n    from ..memory.search import query_terms\n    import numpy\n", "utf-8")
    assert _violations(probe, "secondself.text") == ["numpy", "secondself.memory.search"]
    assert "secondself.text.dates" in imported_modules(probe, "secondself.text")
