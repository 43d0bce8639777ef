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


def test_ask_against_an_openai_compatible_server(capsys, monkeypatch, notes):
    from secondself.backends.fake_openai_server import FakeOpenAIServer

    run(capsys, monkeypatch, "ingest", str(notes))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    with FakeOpenAIServer(["I live in Lisbon, Rua dos Anjos [1]."], api_key="sk-test-key", fail_first=1) as srv:
        code, out, err = run(capsys, monkeypatch, "ask", "Where do I live now?", "--json",
                             "--model", f"openai:fake-model@{srv.base_url}")
        assert code == 0, err
        data = json.loads(out)
        assert data["answer"] == "I live in Lisbon, Rua dos Anjos [1]." and data["citations"][0]["path"] == "move.md"
        sent = srv.requests[-1]
        assert sent["model"] == "fake-model" and sent["stream"] is True
        assert "Rua dos Anjos" in sent["messages"][-1]["content"]  # the memories went into the prompt
        assert len(srv.requests) == 2  # one 503, retried
        assert "remote" not in err  # loopback is this machine: no remote warning


def test_wrong_key_gives_a_clear_error_without_the_key(capsys, monkeypatch, notes):
    from secondself.backends.fake_openai_server import FakeOpenAIServer

    run(capsys, monkeypatch, "ingest", str(notes))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-secret")
    with FakeOpenAIServer(api_key="sk-right") as srv:
        code, out, err = run(capsys, monkeypatch, "ask", "Where do I live now?",
                             "--model", f"openai:fake-model@{srv.base_url}")
    assert code == 2 and "OPENAI_API_KEY" in err and "sk-wrong-secret" not in err + out


def test_ctrl_c_mid_answer_keeps_the_log_consistent(store, embedder, notes):
    from types import SimpleNamespace

    from secondself.backends.chat import FakeChatModel
    from secondself.cli.chat import _turn
    from secondself.conversations import ConversationLog
    from secondself.ingest.pipeline import ingest
    from secondself.memory.search import Searcher
    from secondself.persona import Persona

    class Interrupting(FakeChatModel):
        def stream(self, messages, sampling):
            yield "I live in"
            raise KeyboardInterrupt

    ingest(store, embedder, [notes])
    persona = Persona(Interrupting(), Searcher(store, embedder), name="Maya")
    log = ConversationLog(store)
    cid = log.start("q", "fake")
    with pytest.raises(KeyboardInterrupt):
        _turn(SimpleNamespace(store=store), persona, "Where do I live now?", [], cid, False, "fake")
    turns = log.turns(cid)
    assert [(t.role, t.status) for t in turns] == [("user", "complete"), ("assistant", "interrupted")]
    assert turns[1].content == "I live in"
