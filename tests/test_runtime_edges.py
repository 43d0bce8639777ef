"""`Runtime` stays at the edges: library code declares the narrow services it uses, and a Runtime provides them."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import secondself
from secondself.bridge import BridgeServices
from secondself.config import load_settings
from secondself.prefill import PersonMemory
from secondself.runtime import Runtime
from secondself.spaces.run import SpaceServices

PACKAGE = Path(secondself.__file__).parent
EDGES = ("cli/", "serve/", "runtime.py")    # where a Runtime is built and held


def _library_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(EDGES):
            yield rel, ast.parse(path.read_text(encoding="utf-8"))


def test_library_code_neither_imports_the_runtime_nor_takes_one():
    found = []
    for rel, tree in _library_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported = [(node.module or "").split(".")[-1], *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            else:
                imported = []
            if {"runtime", "secondself.runtime"} & set(imported):
                found.append(f"{rel}:{node.lineno} imports the runtime")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                found += [f"{rel}:{node.lineno} {node.name}({a.arg})" for a in args if a.arg in ("runtime", "rt")]
    assert found == []


def _members(protocol: type) -> list[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n in vars(protocol) if not n.startswith("_")}
    return sorted(names)


@pytest.mark.parametrize("protocol", [BridgeServices, SpaceServices, PersonMemory])
def test_a_runtime_provides_what_the_library_asks_for(tmp_path, protocol):
    rt = Runtime(load_settings(str(tmp_path), {"embedder": "hashing"}))
    try:
        for name in _members(protocol):
            got = inspect.getattr_static(rt, name)          # without opening anything
            wanted = vars(protocol)[name]
            if isinstance(wanted, property) or not callable(wanted):
                continue
            params = list(inspect.signature(wanted).parameters.values())[1:]
            have = inspect.signature(getattr(rt, name)).parameters
            assert all(p.name in have for p in params), f"Runtime.{name} lacks a parameter of {protocol.__name__}"
            assert got is not None
    finally:
        rt.close()
