"""scripts/bootstrap.sh: the demo's setup installs no test tools and no browser; the full setup (test.sh, CI)
installs both. The script runs for real against stand-ins for pip, apt-get and sudo that record their calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
"""


@pytest.fixture
def checkout(tmp_path):
    """A copy of the scripts with a stand-in .venv/bin/python (logs `-m pip ...`) and apt-get/sudo on PATH."""
    (tmp_path / "scripts").mkdir()
    for name in ("bootstrap.sh", "demo.sh", "test.sh"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    bins = tmp_path / "bin"
    venv = tmp_path / ".venv" / "bin"
    for folder in (bins, venv):
        folder.mkdir(parents=True)
    for path in (bins / "apt-get", bins / "sudo", venv / "python", venv / "secondself"):
        path.write_text(_RECORDER)
        path.chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "CALLS": str(calls), "PATH": f"{bins}:{os.environ['PATH']}", "PYTHON": sys.executable}
    env.pop("SKIP_BROWSER", None)

    def run(*args: str) -> list[str]:
        calls.write_text("")
        done = subprocess.run(["bash", str(tmp_path / "scripts" / "bootstrap.sh"), *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines()
    return run


def _installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip") and " install -e " in c]


def test_demo_setup_installs_no_browser_and_no_test_tools(checkout):
    calls = checkout("--demo")
    assert not any(c.startswith(("apt-get", "sudo")) for c in calls), calls
    assert [c.split()[-1] for c in _installs(calls)] == [".[embed,demo,qwen-1.5b]"]   # the openai client and the chat model, not dev


def test_full_setup_installs_the_test_tools_and_the_browser_when_missing(checkout):
    calls = checkout()
    assert [c.split()[-1] for c in _installs(calls)] == [".[embed,dev,qwen-1.5b,postgres]"]  # postgres: store tests
    if not os.access("/usr/bin/chromium", os.X_OK):
        assert any(c.startswith(("apt-get", "sudo")) and "install" in c and "chromium" in c for c in calls), calls


def test_demo_and_test_scripts_ask_for_their_setup():
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    assert "bash scripts/bootstrap.sh --demo" in demo
    assert "bash scripts/bootstrap.sh\n" in (ROOT / "scripts" / "test.sh").read_text()


def test_the_demo_extra_holds_what_the_demo_imports_beyond_the_package():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("openai") for d in extras["demo"])
    assert not any(d.startswith(("playwright", "pytest", "schemathesis")) for d in extras["demo"])
