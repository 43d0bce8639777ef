import json

import pytest

from secondself.cli import main


def run(capsys, monkeypatch, *args, stdin: str | None = None):
    monkeypatch.setenv("SECONDSELF_PERSONA_MODEL", "fake:I live in Lisbon, on Rua dos Anjos [1].")
    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as e:
        main(["--embedder", "hashing", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.fixture
def notes(tmp_path):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "move.md").write_text("---\ndate: 2025-07-01\n---\n# Moving\n\nWhere do I live now? In Lisbon, Rua dos Anjos.\n")
    return d


def test_ask_json_logs_the_conversation(capsys, monkeypatch, notes):
    run(capsys, monkeypatch, "ingest", str(notes))
    code, out, err = run(capsys, monkeypatch, "ask", "Where do I live now?", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"] == "I live in Lisbon, on Rua dos Anjos [1]." and not data["abstained"]
    assert data["citations"][0]["path"] == "move.md" and data["citations"][0]["cited_by"] == "model"
    assert data["model"].startswith("fake:")
    assert set(data["timings"]) >= {"retrieval_s", "assembly_s", "generation_s"}
    code, out, _ = run(capsys, monkeypatch, "chat", "--list")
    assert "Where do I live now?" in out and "2 turns" in out


def test_ask_streams_and_prints_sources(capsys, monkeypatch, notes):
    run(capsys, monkeypatch, "ingest", str(notes))
    code, out, _ = run(capsys, monkeypatch, "ask", "Where do I live now?")
    assert code == 0 and "I live in Lisbon, on Rua dos Anjos [1]." in out and "[1] notes/move.md" in out


def test_ask_without_memories_says_idk(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "ask", "What is my blood type?", "--json")
    assert json.loads(out)["abstained"] and "don't know" in json.loads(out)["answer"]


def test_chat_repl_commands_and_continue(capsys, monkeypatch, notes):
    run(capsys, monkeypatch, "ingest", str(notes))
    code, out, _ = run(capsys, monkeypatch, "chat", stdin="Where do I live now?\n/sources\n/quit\n")
    assert code == 0 and "me> I live in Lisbon" in out and "[1] notes/move.md" in out
    code, out, _ = run(capsys, monkeypatch, "chat", "--continue", "1", stdin="/quit\n")
    assert "continuing conversation 1 (2 turns)" in out
    code, _, err = run(capsys, monkeypatch, "chat", "--continue", "99", stdin="/quit\n")
    assert code == 2 and "no conversation 99" in err


def test_models_lists_roles_and_flags_remote(capsys, monkeypatch, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "models", "--json")
    data = json.loads(out)
    assert data["persona"]["spec"].startswith("fake:") and "SmolLM2" in data["teacher"]["where"]
    monkeypatch.setenv("SECONDSELF_TEACHER_MODEL", "openai:gpt-x@https://api.example.com/v1")
    code, out, _ = run(capsys, monkeypatch, "models")
    assert "REMOTE" in out and "OPENAI_API_KEY" in out


def test_remote_persona_is_announced(capsys, monkeypatch):
    # No memories, so the retrieval gate answers without calling the model: no request is ever made.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    code, out, err = run(capsys, monkeypatch, "ask", "hi", "--json", "--model", "openai:m@https://api.remote.invalid/v1")
    assert code == 0 and "remote (https://api.remote.invalid/v1)" in err
    assert "sk-secret-value" not in err + out and json.loads(out)["abstained"]


def test_bad_model_spec_is_a_clear_error(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "ask", "hi", "--model", "openai:nourl")
    assert code == 2 and "openai:MODEL@" in err
