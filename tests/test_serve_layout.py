"""The server's modules import one way: routers depend on auth/state/responses, app.py on the routers, and no
import inside secondself/serve/ leads back to a module that imports it (top-level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import secondself.serve

SERVE = Path(secondself.serve.__file__).parent


def _serve_imports(path: Path) -> set[str]:
    """The serve/ modules that `path` imports anywhere in its body, by module name (stem)."""
    found: set[str] = set()
    modules = {p.stem for p in SERVE.glob("*.py")}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module or ""
            elif node.level == 0 and (node.module or "").startswith("secondself.serve"):
                base = (node.module or "").removeprefix("secondself.serve").lstrip(".")
            elif node.level == 2 and (node.module or "").startswith("serve"):
                base = (node.module or "").removeprefix("serve").lstrip(".")
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:  # `from . import a, b`
                found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("secondself.serve."):
                    found.add(alias.name.split(".")[2])
    return (found & modules) - {path.stem}


def _graph() -> dict[str, set[str]]:
    return {p.stem: _serve_imports(p) for p in sorted(SERVE.glob("*.py"))}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (a → b → a), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"app": {"routes"}, "routes": {"auth", "app"}, "auth": set()}) == ["app", "routes", "app"]
    assert _cycle({"app": {"routes"}, "routes": {"auth"}, "auth": set()}) is None


def test_no_import_cycle_in_serve():
    graph = _graph()
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])
    assert graph["app"] >= {"auth", "openai_api", "routes_memory"}  # the walk does see the imports


def test_routers_never_import_the_app():
    graph = _graph()
    routers = [m for m in graph if m.startswith("routes_") or m == "openai_api"]
    assert len(routers) >= 8
    assert [m for m in routers if "app" in graph[m]] == []
