"""The HTTP API against a real uvicorn server: the official openai client, and the security rules
(tokens and scopes, origins and hosts, path traversal, upload limits, malformed bodies, back-pressure)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from serving import running_server

from secondself.backends.chat import FakeChatModel

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

REPLY = "I moved to Lisbon in July [1]."
NOTES = {"2025-07-02-move.md": "Today I moved to Lisbon. The flat in Arroios is small but bright.",
         "2025-03-01-bread.md": "Baked sourdough again; the starter is finally lively."}


@pytest.fixture
def srv(tmp_path: Path, backend: str):
    with running_server(tmp_path / "home", persona=f"fake:{REPLY}", jobs=False, mcp=False) as s:
        s.ingest_text(NOTES)
        yield s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(srv, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)


# -- the OpenAI wire format ---------------------------------------------------------------------------
def test_openai_client_lists_models_and_chats_with_citations(srv):
    c = client(srv)
    assert [m.id for m in c.models.list()] == ["secondself"]
    r = c.chat.completions.create(model="secondself", messages=[{"role": "user", "content": "Where did I move?"}])
    assert r.choices[0].message.content == REPLY
    extra = r.model_extra["secondself"]
    assert extra["abstained"] is False
    assert extra["citations"][0]["path"] == "2025-07-02-move.md"
    assert r.usage.completion_tokens > 0


def test_streaming_matches_the_final_answer_and_reports_usage(srv):
    stream = client(srv).chat.completions.create(
        model="secondself", messages=[{"role": "user", "content": "Where did I move?"}], stream=True,
        stream_options={"include_usage": True})
    parts, extra, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason:
                extra = chunk.model_extra["secondself"]
    assert "".join(parts) == REPLY == extra["text"]
    assert extra["citations"] and usage.completion_tokens == len(REPLY.split())


def test_conversation_is_logged_and_continued_from_the_server(srv):
    c = client(srv)
    first = c.chat.completions.create(model="secondself", messages=[{"role": "user", "content": "Where did I move?"}])
    cid = first.model_extra["secondself"]["conversation_id"]
    c.chat.completions.create(model="secondself", messages=[{"role": "user", "content": "And the flat?"}],
                              extra_body={"conversation_id": cid})
    model = srv.runtime.chat_model(srv.runtime.settings.persona_model)
    history = [m.content for m in model.calls[-1][0]]
    assert "Where did I move?" in history and REPLY in history  # earlier turns came from the stored log
    turns = httpx.get(f"{srv.url}/api/conversations/{cid}").json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1]["citations"][0]["path"] == "2025-07-02-move.md"


def test_withdrawn_draft_is_flagged_in_stream_and_body(tmp_path):
    with running_server(tmp_path / "h", persona="fake:I moved to Madrid in 2019.", jobs=False, mcp=False) as s:
        s.ingest_text(NOTES)
        r = client(s).chat.completions.create(model="secondself",
                                              messages=[{"role": "user", "content": "Where did I move?"}])
        assert r.model_extra["secondself"]["abstained"] is True
        assert "Madrid" not in r.choices[0].message.content
        parts = [ch.choices[0].delta.content or "" for ch in client(s).chat.completions.create(
            model="secondself", messages=[{"role": "user", "content": "Where did I move?"}], stream=True)
            if ch.choices]
        assert "(withdrawn:" in "".join(parts)


def test_unknown_model_and_malformed_bodies_get_openai_errors(srv):
    with pytest.raises(openai.NotFoundError) as e:
        client(srv).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    for body in ('{"messages": ', '{"messages": []}', '{"messages": [{"role": "wizard", "content": "x"}]}',
                 '{"messages": [{"role": "user", "content": "x"}], "temperature": 7}',
                 '{"messages": [{"role": "assistant", "content": "x"}]}'):
        r = httpx.post(srv.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"]


def test_openapi_spec_is_served_and_valid(srv):
    from openapi_spec_validator import validate

    spec = httpx.get(srv.url + "/openapi.json").json()
    validate(spec)
    assert {"/v1/chat/completions", "/v1/models", "/api/search", "/api/memories", "/api/train"} <= set(spec["paths"])


# -- tokens and scopes --------------------------------------------------------------------------------
def test_tokens_scopes_and_revocation(srv):
    read, chat, admin = srv.token("read"), srv.token("chat"), srv.token("admin", name="boss")
    assert httpx.get(srv.url + "/health").json()["auth"] == "token"
    missing = httpx.get(srv.url + "/api/search", params={"q": "Lisbon"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(srv.url + "/api/search", params={"q": "Lisbon"}, headers=bearer("ss-wrong")).status_code == 401
    found = httpx.get(srv.url + "/api/search", params={"q": "Lisbon"}, headers=bearer(read))
    assert found.status_code == 200 and "Lisbon" in found.json()["results"][0]["text"]
    # scope checks: read cannot delete or chat; chat cannot read memories
    assert httpx.delete(srv.url + "/api/sources/notes", headers=bearer(read)).status_code == 403
    with pytest.raises(openai.PermissionDeniedError):
        client(srv, read).models.list()
    assert [m.id for m in client(srv, chat).models.list()] == ["secondself"]
    assert httpx.get(srv.url + "/api/sources", headers=bearer(chat)).status_code == 403
    # revoke through the API (admin); the revoked token stops working at once
    assert httpx.delete(srv.url + "/api/tokens/t1", headers=bearer(admin)).status_code == 200
    assert httpx.get(srv.url + "/api/search", params={"q": "x"}, headers=bearer(read)).status_code == 401
    settings = httpx.get(srv.url + "/api/settings", headers=bearer(admin)).text
    for secret in (read, chat, admin):
        assert secret not in settings and secret[3:] not in settings


def test_token_secrets_are_stored_hashed_and_shown_once(srv):
    secret = srv.token("chat", name="phone")
    with srv.runtime.lock:
        rows = srv.runtime.store.db.execute("SELECT * FROM api_tokens").fetchall()
    assert rows and not any(secret in str(value) for row in rows for value in row)
    if not srv.runtime.settings.store_url:                     # SQLite: nowhere in the file either
        assert secret.encode() not in Path(srv.runtime.settings.db_path).read_bytes()
    listed = httpx.get(srv.url + "/api/settings", headers=bearer(srv.token("admin"))).json()["tokens"]
    assert {t["name"] for t in listed} >= {"phone"} and all("token" not in t for t in listed)


def test_refuses_to_bind_beyond_loopback_without_tokens(srv):
    from secondself.errors import ConfigError
    from secondself.serve.app import check_bind

    with pytest.raises(ConfigError, match="no API token"):
        check_bind("0.0.0.0", srv.runtime)
    check_bind("127.0.0.1", srv.runtime)
    srv.token("chat")
    check_bind("0.0.0.0", srv.runtime)


def test_cli_serve_refuses_public_bind_and_tokens_roundtrip(tmp_path, backend):
    from click.testing import CliRunner

    from secondself.cli import cli

    home = str(tmp_path / "cli")
    runner = CliRunner()
    r = runner.invoke(cli, ["--home", home, "serve", "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "refusing to listen on 0.0.0.0" in str(r.exception)
    r = runner.invoke(cli, ["--home", home, "token", "create", "--scope", "read", "--name", "laptop"])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[0]
    assert secret.startswith("ss-")
    listed = runner.invoke(cli, ["--home", home, "token", "list"]).output
    assert "laptop" in listed and secret not in listed
    assert runner.invoke(cli, ["--home", home, "token", "revoke", "laptop"]).exit_code == 0
    assert "laptop" not in runner.invoke(cli, ["--home", home, "token", "list"]).output


# -- browsers and hostile input -----------------------------------------------------------------------
def test_cross_site_requests_and_rebinding_hosts_are_refused(srv):
    evil = httpx.post(srv.url + "/api/memories/text", json={"text": "x"}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "bad_origin"
    rebound = httpx.get(srv.url + "/api/sources", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "bad_host"
    assert "access-control-allow-origin" not in httpx.get(srv.url + "/health").headers


def test_configured_cors_origin_is_allowed(tmp_path):
    with running_server(tmp_path / "h", jobs=False, mcp=False, cors_origins=("http://app.local",)) as s:
        r = httpx.get(s.url + "/health", headers={"Origin": "http://app.local"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.local"


def test_upload_names_cannot_escape_and_sizes_are_capped(tmp_path, backend):
    with running_server(tmp_path / "h", jobs=False, mcp=False, max_upload_bytes=1000) as s:
        person = s.runtime.settings.person_dir
        # jobs are off, so the upload is saved and then refused with a clear error about jobs
        r = httpx.post(s.url + "/api/memories", files={"files": ("../../../evil.txt", b"hello")})
        assert (person / "uploads" / "uploads" / "evil.txt").read_bytes() == b"hello"
        assert not (tmp_path / "h" / "evil.txt").exists() and r.status_code == 400
        assert httpx.post(s.url + "/api/memories", files={"files": ("a.txt", b"x")},
                          data={"source": "../up"}).status_code == 400
        big = httpx.post(s.url + "/api/memories", files={"files": ("big.txt", b"x" * 200_000)})
        assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
        assert not any(p.name.startswith(("big", ".upload")) for p in person.rglob("*"))
        assert httpx.get(s.url + "/static/..%2F..%2Fapp.py").status_code == 404


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    with running_server(tmp_path / "h", jobs=False, mcp=False, rate_per_minute=3) as s:
        codes = [httpx.get(s.url + "/api/sources").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = httpx.get(s.url + "/api/sources")
        assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["type"] == "rate_limit_error"


class _SlowModel(FakeChatModel):
    def stream(self, messages, sampling):
        words = super().stream(messages, sampling)

        def slow():
            for w in words:
                time.sleep(0.05)
                yield w
        return slow()


def test_a_busy_model_answers_503_not_a_pile_up(tmp_path):
    with running_server(tmp_path / "h", jobs=False, mcp=False, max_waiting=0, model_concurrency=1) as s:
        s.ingest_text(NOTES)
        s.runtime.use_model("fake", _SlowModel([REPLY] * 10))
        results: list[int] = []

        def ask() -> None:
            r = httpx.post(s.url + "/v1/chat/completions", timeout=30,
                           json={"messages": [{"role": "user", "content": "Where did I move?"}]})
            results.append(r.status_code)
        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results)[0] == 200 and 503 in results
        assert s.state.gates["fake"].snapshot()["active"] == 0  # every turn was given back


# -- profile routes -----------------------------------------------------------------------------------
def test_profile_read_edit_diff_and_fact_corrections(tmp_path, backend):
    from conftest import EXAMPLES

    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.memory.fakes import slot_teacher

    with running_server(tmp_path / "h", jobs=False, mcp=False) as s:
        rt = s.runtime
        assert httpx.get(s.url + "/api/profile").json()["error"]["code"] == "profile_not_found"
        with rt.lock:
            ingest(rt.store, rt.embedder, [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
            build(rt.store, rt.embedder.name, slot_teacher(), "Maya", BuildOptions(slots=False))
        p = httpx.get(s.url + "/api/profile").json()
        assert p["version"] == 1 and p["profile"]["biography"] and p["profile"]["shades"]
        edited = httpx.put(s.url + "/api/profile/sections/biography", json={"text": "Maya, in her own words."})
        assert edited.json()["profile"]["biography"] == "Maya, in her own words."
        assert httpx.put(s.url + "/api/profile/sections/secrets", json={"text": "x"}).status_code == 400
        lines = httpx.get(s.url + "/api/profile/diff", params={"a": 1, "b": 2}).json()["lines"]
        assert any("own words" in line for line in lines)
        assert [v["version"] for v in httpx.get(s.url + "/api/profile/versions").json()["data"]] == [1, 2]
        lisbon = [f for f in httpx.get(s.url + "/api/facts", params={"at": "2025-10-01", "about": "Maya"}).json()["data"]
                  if f["predicate"] == "lives_in"]
        assert [f["object"] for f in lisbon] == ["Lisbon"]
        fid = lisbon[0]["id"]
        assert httpx.post(f"{s.url}/api/facts/{fid}/pin").json()["fact"]["object"] == "Lisbon"
        fixed = httpx.put(f"{s.url}/api/facts/{fid}", json={"object": "Lisboa"}).json()
        assert fixed["fact"]["object"] == "Lisboa" and fixed["fact"]["pinned"]
        assert httpx.put(f"{s.url}/api/facts/{fid}", json={"valid_from": "July"}).status_code == 400
        back = httpx.post(s.url + "/api/profile/rollback", json={"version": 1}).json()
        assert back["profile"]["biography"] == p["profile"]["biography"]


def test_chatting_does_not_invalidate_the_vector_index(srv):
    """Logging a conversation is not a memory change: search must not reload its vectors after each turn."""
    before = srv.runtime.store.generation
    client(srv).chat.completions.create(model="secondself", messages=[{"role": "user", "content": "Where did I move?"}])
    srv.token("chat")
    assert srv.runtime.store.generation == before


def test_a_long_line_of_waiters_does_not_starve_the_server(tmp_path):
    """More waiters than the thread pool has threads (40): they wait on the event loop, so the answer being
    streamed and other routes still get threads (before, the server stood still until the waiters timed out)."""
    with running_server(tmp_path / "h", jobs=False, mcp=False, max_waiting=80, model_concurrency=1, wait_s=4,
                        rate_per_minute=0) as s:
        s.ingest_text(NOTES)
        s.runtime.use_model("fake", _SlowModel([REPLY] * 100))
        results: list[int] = []

        def ask() -> None:
            try:
                r = httpx.post(s.url + "/v1/chat/completions", timeout=30,
                               json={"messages": [{"role": "user", "content": "Where did I move?"}]})
                results.append(r.status_code)
            except httpx.HTTPError:
                results.append(-1)
        threads = [threading.Thread(target=ask) for _ in range(70)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        health = httpx.get(s.url + "/health", timeout=3)  # answered while 40+ requests wait for the model
        for t in threads:
            t.join()
        assert health.status_code == 200
        assert results.count(200) >= 2 and set(results) <= {200, 503}
        assert s.state.gates["fake"].snapshot() == {"concurrency": 1, "active": 0, "waiting": 0,
                                                    "rejected": results.count(503)}


class _BrokenModel(FakeChatModel):
    def stream(self, messages, sampling):
        def broken():
            yield "I moved"
            raise RuntimeError("the backend fell over")
        return broken()


def test_an_unexpected_failure_mid_stream_ends_with_an_error_event(tmp_path):
    with running_server(tmp_path / "h", jobs=False, mcp=False) as s:
        s.ingest_text(NOTES)
        s.runtime.use_model("fake", _BrokenModel())
        with pytest.raises(openai.APIError, match="internal error while answering"):
            for _ in client(s).chat.completions.create(
                    model="secondself", stream=True, messages=[{"role": "user", "content": "Where did I move?"}]):
                pass
        assert s.state.gates["fake"].snapshot()["active"] == 0


def test_jobs_outlive_a_server_restart(tmp_path, backend):
    """A note uploaded through one server is ingested by its background worker; the next server on the same
    home still shows the job, its result, and the memory."""
    home = tmp_path / "h"
    with running_server(home, mcp=False) as s:
        job = httpx.post(s.url + "/api/memories/text", json={"text": "The cello lesson moved to Thursdays.",
                                                             "title": "Cello"}).json()["job"]
        assert job["kind"] == "ingest" and job["status"] in ("queued", "running")
        done = s.state.jobs.wait(job["id"], 30)
        assert done["status"] == "done" and done["result"]["added"] == 1
    with running_server(home, mcp=False) as s:
        again = httpx.get(f"{s.url}/api/jobs/{job['id']}").json()
        assert again["status"] == "done" and again["result"]["chunks_written"] >= 1
        hits = httpx.get(s.url + "/api/search", params={"q": "cello Thursdays"}).json()["results"]
        assert hits and "Thursdays" in hits[0]["text"]
        assert httpx.get(s.url + "/api/jobs/999").json()["error"]["code"] == "not_found"
