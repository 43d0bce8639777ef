import json
import subprocess
import sys
from pathlib import Path

import pytest

from secondself.cli import main


def run(capsys, *args: str, embedder: str = "hashing") -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["--embedder", embedder, *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "a.md").write_text("# Plans\n\nI accepted the Lisbon job at Tidewater Labs.\n")
    (d / "b.txt").write_text("Sourdough: 75% hydration, bake at 250C.")
    return d


def test_ingest_search_sources_forget_status(capsys, notes):
    code, out, _ = run(capsys, "ingest", str(notes), "--json")
    assert code == 0 and json.loads(out)["summary"]["added"] == 2
    code, out, _ = run(capsys, "search", "Lisbon job", "--json", "--k", "1")
    res = json.loads(out)["results"]
    assert res[0]["path"] == "a.md" and res[0]["source"] == "notes"
    code, out, _ = run(capsys, "search", "Lisbon job")
    assert "[1] notes/a.md" in out
    code, out, _ = run(capsys, "sources", "--json")
    assert json.loads(out)[0]["chunks"] == 2
    code, out, _ = run(capsys, "status", "--json")
    st = json.loads(out)
    assert st["chunks"] == 2 and st["stale"]["missing_vectors"] == 0 and not st["stale"]["changed_files"]
    (notes / "c.txt").write_text("new")
    (notes / "b.txt").write_text("changed")
    code, out, _ = run(capsys, "status", "--json")
    stale = json.loads(out)["stale"]
    assert stale["new_files"] == ["notes/c.txt"] and stale["changed_files"] == ["notes/b.txt"]
    code, out, _ = run(capsys, "forget", "notes", "--yes")
    assert code == 0 and "2 chunks" in out
    code, out, _ = run(capsys, "sources", "--json")
    assert json.loads(out) == []


def test_failed_files_give_exit_code_1_and_are_named(capsys, notes):
    (notes / "bad.docx").write_bytes(b"not a zip")
    code, out, err = run(capsys, "ingest", str(notes))
    assert code == 1 and "bad.docx" in err and "2 added, 1 failed" in out


def test_core_errors_become_messages_with_exit_2(capsys):
    code, _, err = run(capsys, "forget", "nope", "--yes")
    assert code == 2 and err.startswith("error: no source named 'nope'")
    code, _, err = run(capsys, "search", "x", "--source", "nope")
    assert code == 2 and "secondself sources" in err


def test_bad_settings_file_is_reported(capsys, tmp_path, monkeypatch):
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.toml").write_text("embeder = 'minilm'\n")
    monkeypatch.setenv("SECONDSELF_HOME", str(home))
    code, _, err = run(capsys, "sources")
    assert code == 2 and "unknown setting 'embeder'" in err


def test_embedder_switch_reembeds_on_search(capsys, notes):
    run(capsys, "ingest", str(notes))
    code, out, _ = run(capsys, "search", "Lisbon", "--json", embedder="hashing-64")
    assert code == 0 and json.loads(out)["results"][0]["path"] == "a.md"
    code, out, _ = run(capsys, "status", "--json", embedder="hashing-64")
    assert json.loads(out)["vectors"] == {"hashing-384": 2, "hashing-64": 2}


def test_help_is_instant_no_heavy_imports():
    code = ("import sys, secondself.cli; "
            "heavy = [m for m in ('numpy', 'torch', 'transformers', 'sentence_transformers', 'pypdf') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "secondself", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "ingest" in r.stdout


def test_public_api_is_explicit():
    import secondself

    assert sorted(secondself.__all__) == sorted(
        ["SecondSelfError", "Block", "Chunk", "ChunkDraft", "Hit", "ParsedDocument", "SearchFilters",
         "SourceInfo", "Fact", "Entity", "Topic", "Shade", "Profile", "__version__"])
    for name in secondself.__all__:
        assert hasattr(secondself, name)
