"""Terminal escape sequences planted in data never reach the terminal raw (issue 14, finding 5).

One home holds the sequences everywhere data can carry them: a file name, a source name, memory text, the
profile, a fact, a role's instructions, a space's topic, a bridge request, the persona model's answer, an
adapter's metadata, a form's field names, a remote model's address. Every command that prints such data runs
through click's CliRunner and must print the sequences as visible escapes ("\\x1b"), never as ESC or BEL, nor
the 8-bit CSI or a bidi override; --json output writes them as JSON escapes. A warning logged while a command
runs (Python shows it on stderr) is escaped too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from secondself.cli import cli

BAD = "\x1b]0;pwned\x07\x1b[2J"            # set the window title; clear the screen
C1 = "\x9b2J \u202eevil"                    # the 8-bit CSI; a right-to-left override
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
ANSWER = f"I live in Lisbon {BAD} [1]."


def _env(**extra: str | None) -> dict[str, str | None]:
    return {"SECONDSELF_PERSON": None, "SECONDSELF_EMBEDDER": None, "SECONDSELF_PERSON_NAME": "Maya",
            "SECONDSELF_PERSONA_MODEL": f"fake:{ANSWER}", "SECONDSELF_TEACHER_MODEL": "fake",
            "SECONDSELF_REAL_MODELS": "deny", **extra}


class Home:
    def __init__(self, root: Path) -> None:
        self.root, self.home = root, root / "home"

    def invoke(self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None,
               codes: tuple[int, ...] = (0,)):
        result = CliRunner().invoke(cli, ["--home", str(self.home), "--embedder", "hashing", *args], input=input,
                                    env=_env(**(env or {})))
        if result.exit_code not in codes:
            raise AssertionError(f"{args}: exit {result.exit_code}\n{result.output}") from result.exception
        return result


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    h = Home(tmp_path_factory.mktemp("escape"))
    notes = h.root / "notes"
    notes.mkdir()
    (notes / f"2025-07-01 {BAD}.md").write_text(
        f"# Moving {BAD}\n\nToday I moved from Porto to Lisbon. {BAD} I work at Heronworks as a data analyst.\n")
    (notes / "2025-07-02.md").write_text("# Where\n\nWhere do I live now? In Lisbon, Rua dos Anjos.\n")
    (notes / "2025-08-01.md").write_text(f"# Bread\n\nSourdough bake in Lisbon: the loaf rose well. {C1}\n")
    (notes / f"{BAD}.txt").symlink_to("/nonexistent")                      # a failed file, listed by name
    (h.root / "form.txt").write_text(f"City {BAD}\nEmployer\n")
    h.invoke("ingest", str(notes), "--source-name", f"notes{BAD}", codes=(1,))
    h.invoke("build", "--topics", "1")
    h.invoke("profile", "edit", "biography", "--text", f"Maya's own words {BAD}")
    fact = json.loads(h.invoke("facts", "--json").output)[0]["id"]
    h.invoke("profile", "edit", fact, "--object", f"Lisbon {BAD}")
    h.invoke("role", "create", "buddy", "--instructions", f"Be kind {BAD}", "--model", f"fake:Hi {BAD}")
    h.invoke("tag", "add", f"notes{BAD}", "home")
    h.invoke("ask", f"Where do I live {BAD}?")
    h.invoke("space", "create", f"Weekend plans {BAD}", "--participant", "role:buddy", "--rounds", "1")
    h.invoke("space", "run", "1")
    h.invoke("bridge", "enhance", f"Find me a restaurant nearby {BAD}")
    adapter = h.home / "persons" / "me" / "adapters" / "v001"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "secondself.json").write_text(json.dumps({
        "base": f"base {BAD}", "created_at": f"2025-09-01 {BAD}", "train": {"rank": 8, "rank_reason": f"why {BAD}"},
        "eval": {"scores": {"base": {f"f1 {BAD}": 0.1}, "personal": {f"f1 {BAD}": 0.2}},
                 "summary": {"qa_f1_gain": f"0.1 {BAD}"}}}))
    h.invoke("model", "use", "v001")
    return h


REMOTE = {"SECONDSELF_TEACHER_MODEL": f"openai:m@http://models.example.invalid/v1{BAD}"}  # never contacted
CASES = {
    "ingest": (("ingest",), None, {}, (1,)),
    "search": (("search", "Lisbon"), None, {}, (0,)),
    "search --json": (("search", "sourdough loaf", "--json"), None, {}, (0,)),
    "facts --json": (("facts", "--json"), None, {}, (0,)),
    "sources": (("sources",), None, {}, (0,)),
    "status": (("status",), None, {}, (0,)),
    "ask": (("ask", "Where do I live now?"), None, {}, (0,)),
    "chat": (("chat",), "Where do I live now?\n/sources\n/list\n/continue 1\n/quit\n", {}, (0,)),
    "chat --list": (("chat", "--list"), None, {}, (0,)),
    "profile": (("profile",), None, {}, (0,)),
    "profile versions": (("profile", "versions"), None, {}, (0,)),
    "profile diff": (("profile", "diff", "1"), None, {}, (0,)),
    "facts": (("facts",), None, {}, (0,)),
    "build": (("build", "--full", "--topics", "1"), None, {}, (0,)),
    "role list": (("role", "list"), None, {}, (0,)),
    "role show": (("role", "show", "buddy"), None, {}, (0,)),
    "tag list": (("tag", "list"), None, {}, (0,)),
    "space list": (("space", "list"), None, {}, (0,)),
    "space show": (("space", "show", "1"), None, {}, (0,)),
    "space run": (("space", "run", "1", "--restart"), None, {}, (0,)),
    "bridge enhance": (("bridge", "enhance", f"A restaurant in Lisbon {BAD}"), None, {}, (0,)),
    "bridge critique": (("bridge", "critique", "Where should I eat?", "--answer", f"Try Porto {BAD}"), None, {},
                        (0,)),
    "bridge log": (("bridge", "log"), None, {}, (0,)),
    "bridge log 1": (("bridge", "log", "1"), None, {}, (0,)),
    "models": (("models",), None, REMOTE, (0,)),
    "model list": (("model", "list"), None, {}, (0,)),
    "eval": (("eval",), None, {}, (0,)),
    "prefill": (("prefill", "FORM"), None, {}, (0,)),
    "serve": (("serve",), None, REMOTE, (0,)),
}

UNSHOWN = {"bridge critique", "profile versions"}  # print what was written about the data, not the data


@pytest.mark.parametrize("case", list(CASES))
def test_no_escape_sequence_from_data_reaches_the_terminal(home, case, monkeypatch):
    args, stdin, env, codes = CASES[case]
    args = tuple(str(home.root / "form.txt") if a == "FORM" else a for a in args)
    monkeypatch.setattr("secondself.serve.server.run", lambda *a, **k: None)    # serve: print, then stop
    output = home.invoke(*args, input=stdin, env=env, codes=codes).output
    assert not [c for c in RAW if c in output], output
    if case.endswith("--json"):
        assert "\\u001b]0;pwned\\u0007" in output or "\\u009b2J \\u202eevil" in output, output
        json.loads(output)
    else:
        assert "\\x1b]0;pwned\\x07" in output or case in UNSHOWN, output   # the data is shown, escaped


def test_a_logged_warning_with_data_in_it_is_escaped(tmp_path):
    """A reader that fails unexpectedly is logged with the file's name; without a logging setup Python prints
    that record on stderr as it is, so the CLI shows log records through the same escaping."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / f"{BAD}.md").write_text("text")
    script = textwrap.dedent(f"""
        import secondself.ingest.pipeline as pipeline
        from secondself.cli import main

        def boom(*args, **kwargs):
            raise RuntimeError({BAD!r})

        pipeline._parse = boom
        main(["--home", {str(tmp_path / "home")!r}, "--embedder", "hashing", "ingest", {str(notes)!r}])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1 and "unexpected error while reading" in err, err
    assert "\\x1b]0;pwned\\x07" in err and not [c for c in RAW if c in err], err


def test_commands_print_only_through_the_escaping_chokepoint():
    """New commands keep the guarantee: they print with cli.output's out/styled, never click.echo or print.
    (__init__.py escapes its error messages itself; progress.py prints only our own labels and figures.)"""
    cli_dir = Path(__file__).resolve().parent.parent / "secondself" / "cli"
    exempt = ("output.py", "__init__.py", "progress.py")
    raw = [f"{p.name}:{n}" for p in sorted(cli_dir.glob("*.py")) if p.name not in exempt
           for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if "click.echo(" in line or "click.style(" in line or line.lstrip().startswith("print(")]
    assert raw == [], f"print through secondself.cli.output (out, styled) instead: {raw}"


@pytest.mark.parametrize("debug", [False, True])
def test_library_deprecation_notices_are_not_shown_unless_debugging(tmp_path, debug):
    """transformers printed "`past_key_values` is deprecated" once per generated answer during `train`/`eval`,
    and its own progress bar while converting a GGUF (`train` on a fresh home)."""
    script = textwrap.dedent(f"""
        import warnings
        import secondself.ingest.pipeline as pipeline
        from secondself.cli import main

        parse = pipeline._parse
        def noisy(*args, **kwargs):
            warnings.warn("`past_key_values` is deprecated", FutureWarning)
            from transformers.utils.logging import tqdm  # its bar while a GGUF is converted
            for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors"):
                pass
            return parse(*args, **kwargs)

        pipeline._parse = noisy
        main(["--home", {str(tmp_path / "home")!r}, "--embedder", "hashing", "ingest", {str(tmp_path / "n")!r}])
    """)
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "a.md").write_text("text")
    mine = ("SECONDSELF_DEBUG", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")  # an in-process main() set them
    env = {k: v for k, v in os.environ.items() if k not in mine} | ({"SECONDSELF_DEBUG": "1"} if debug else {})
    done = subprocess.run([sys.executable, "-W", "default", "-c", script], capture_output=True, timeout=120, env=env)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err
    assert ("is deprecated" in err) is debug, err
    assert ("de-quantizing" in err) is debug, err
