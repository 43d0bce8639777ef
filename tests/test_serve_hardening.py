"""What outside probes of the server found (issue 14, findings 7-11 and 17), one test each: inputs that gave a
500, a locality check that was a string prefix, an upload that re-pointed a folder source, health and shedding
that waited behind a loading model, a body read before the token was checked, and two shapes for one search."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest
from serving import running_server

from secondself.backends.chat import FakeChatModel

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

REPLY = "I moved to Lisbon in July [1]."
NOTES = {"2025-07-02-move.md": "Today I moved to Lisbon. The flat in Arroios is small but bright.",
         "2025-03-01-bread.md": "Baked sourdough again; the starter is finally lively."}
HANG_GUARD = 30  # seconds; only so a regression fails instead of hanging, never a timing assertion


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def srv(tmp_path: Path, backend: str):
    with running_server(tmp_path / "home", persona=f"fake:{REPLY}", jobs=False, mcp=False) as s:
        s.ingest_text(NOTES)
        yield s


# -- 7: two inputs that gave a 500 --------------------------------------------------------------------
def test_a_date_at_the_edge_of_the_range_is_a_400_not_a_500(srv):
    read = srv.token("read")
    for bound in ("since", "until"):
        r = httpx.get(srv.url + "/api/search", params={"q": "x", bound: "9999-12-31T23:59:59-14:00"},
                      headers=bearer(read))
        assert r.status_code == 400, r.text
        assert "9999-12-31T23:59:59-14:00" in r.json()["error"]["message"]


def test_a_null_byte_in_a_static_name_is_a_404_not_a_500(srv):
    for name in ("%00", "a%00.js", "app.js%00"):
        r = httpx.get(f"{srv.url}/static/{name}")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    assert httpx.get(srv.url + "/static/app.js").status_code == 200


# -- 8: "is this host this machine?" ------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.evil.example/v1", "http://127.0.0.1.evil.example:8000/v1",
                                 "http://localhost.evil.example/v1", "http://evil.example/v1", "http://127.1/v1",
                                 "http://0x7f000001/v1", "http://2130706433/v1", "http://[::ffff:8.8.8.8]/v1",
                                 "http://evil.example\\@127.0.0.1/v1", "not a url", ""])
def test_names_that_only_look_local_are_remote(url):
    from secondself.backends.openai_compat import is_remote_url
    from secondself.backends.registry import parse_spec

    assert is_remote_url(url)
    if url.startswith("http"):
        assert parse_spec(f"openai:m@{url}").remote


@pytest.mark.parametrize("url", ["http://localhost:11434/v1", "http://LOCALHOST/v1", "http://127.0.0.1:8000/v1",
                                 "http://127.255.0.9/v1", "http://[::1]:8000/v1", "https://[::ffff:127.0.0.1]/v1"])
def test_loopback_addresses_and_localhost_are_local(url):
    from secondself.backends.openai_compat import is_remote_url

    assert not is_remote_url(url)


def test_a_write_token_cannot_add_a_participant_that_only_looks_local(srv):
    writer = srv.token("write")
    for url in ("http://127.evil.example/v1", "http://evil.example/v1"):
        r = httpx.post(srv.url + "/api/spaces", headers=bearer(writer),
                       json={"topic": "dinner", "participants": ["self", url]})
        assert r.status_code == 403, r.text


def test_a_chat_token_cannot_send_to_an_expert_that_only_looks_local(srv):
    chat = srv.token("chat")
    r = httpx.post(srv.url + "/api/bridge/ask", headers=bearer(chat), timeout=HANG_GUARD,
                   json={"request": "Where should I eat tonight?", "expert": "http://127.evil.example/v1"})
    assert r.status_code == 403, r.text
    assert "admin" in r.json()["error"]["message"]


# -- 9: an upload never re-points a folder source -----------------------------------------------------
def test_an_upload_into_a_folder_source_is_refused_and_the_folder_is_kept(tmp_path, backend):
    with running_server(tmp_path / "h", mcp=False) as s:
        s.ingest_text(NOTES, source="journal")
        rt = s.runtime
        before = rt.store.source_roots()["journal"]
        r = httpx.post(s.url + "/api/memories", files={"files": ("a.txt", b"a new memory")},
                       data={"source": "journal"})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "source_conflict" and "journal" in error["message"]
        with rt.lock:
            assert rt.store.source_roots()["journal"] == before
        assert not (rt.settings.person_dir / "uploads" / "journal").exists()
        assert s.state.jobs.list(10) == []
        # the server's own upload source takes more files as before
        ok = httpx.post(s.url + "/api/memories", files={"files": ("a.txt", b"a new memory")},
                        data={"source": "phone"})
        assert ok.status_code == 202 and s.state.jobs.wait(ok.json()["job"]["id"], HANG_GUARD)["status"] == "done"
        again = httpx.post(s.url + "/api/memories", files={"files": ("b.txt", b"another")}, data={"source": "phone"})
        assert again.status_code == 202


def test_a_note_or_default_upload_moves_past_a_folder_source_of_that_name(tmp_path, backend):
    """The server picks 'notes' and 'uploads' itself, so it moves on to a free name instead of refusing."""
    with running_server(tmp_path / "h", mcp=False) as s:
        s.ingest_text(NOTES, source="notes")
        s.ingest_text({"x.md": "A file of my own uploads folder."}, source="uploads")
        rt = s.runtime
        before = rt.store.source_roots()
        note = httpx.post(s.url + "/api/memories/text", json={"text": "The cello lesson moved to Thursdays."})
        upload = httpx.post(s.url + "/api/memories", files={"files": ("c.txt", b"Chess club on Mondays.")})
        for r in (note, upload):
            assert r.status_code == 202, r.text
            assert s.state.jobs.wait(r.json()["job"]["id"], HANG_GUARD)["status"] == "done"
        with rt.lock:
            after = rt.store.source_roots()
        assert {k: after[k] for k in before} == before
        uploads = rt.settings.person_dir / "uploads"
        assert Path(after["notes-2"]) == (uploads / "notes-2").resolve()
        assert Path(after["uploads-2"]) == (uploads / "uploads-2").resolve()
        files = {src["name"]: src["files"] for src in httpx.get(s.url + "/api/sources").json()["data"]}
        assert files == {"notes": 2, "uploads": 1, "notes-2": 1, "uploads-2": 1}


# -- 10: health and shedding do not wait for a model --------------------------------------------------
class _ColdModel(FakeChatModel):
    """A model whose first use blocks (as a cold load does) until the test lets it go."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loading, self.release = threading.Event(), threading.Event()

    def count_tokens(self, text: str) -> int:
        if not self.release.is_set():
            self.loading.set()
            assert self.release.wait(3 * HANG_GUARD), "the test never released the model"
        return super().count_tokens(text)


def test_health_shedding_and_other_routes_answer_while_a_model_loads(tmp_path):
    with running_server(tmp_path / "h", jobs=False, mcp=False, max_waiting=0, model_concurrency=1,
                        rate_per_minute=0) as s:
        s.ingest_text(NOTES)
        chat, read = s.token("chat"), s.token("read")
        model = _ColdModel([REPLY])
        s.runtime.use_model("fake", model)
        ask = {"messages": [{"role": "user", "content": "Where did I move?"}]}
        first: list[httpx.Response] = []
        loader = threading.Thread(target=lambda: first.append(
            httpx.post(s.url + "/v1/chat/completions", json=ask, headers=bearer(chat), timeout=4 * HANG_GUARD)))
        loader.start()
        try:
            assert model.loading.wait(HANG_GUARD)
            health = httpx.get(s.url + "/health", timeout=HANG_GUARD)
            shed = httpx.post(s.url + "/v1/chat/completions", json=ask, headers=bearer(chat), timeout=HANG_GUARD)
            sources = httpx.get(s.url + "/api/sources", headers=bearer(read), timeout=HANG_GUARD)
        finally:
            model.release.set()
            loader.join(4 * HANG_GUARD)
        assert health.status_code == 200 and health.json()["auth"] == "token"
        assert shed.status_code == 503 and shed.json()["error"]["code"] == "model_busy"
        assert sources.status_code == 200 and sources.json()["data"][0]["name"] == "notes"
        assert first[0].status_code == 200


def test_authentication_never_waits_for_the_runtime_lock(tmp_path, backend):
    """HTTP API and MCP alike: while something holds the store lock, a caller still learns who it is."""
    with running_server(tmp_path / "h", jobs=False, rate_per_minute=0) as s:
        read = s.token("read")
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with s.runtime.lock:
                held.set()
                release.wait(3 * HANG_GUARD)  # longer than a request's guard: a waiting request times out
        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(HANG_GUARD)
            health = httpx.get(s.url + "/health", timeout=HANG_GUARD)
            api = httpx.get(s.url + "/api/sources", headers=bearer("ss-unknown"), timeout=HANG_GUARD)
            mcp = httpx.post(s.url + "/mcp", headers=bearer("ss-unknown"), json={}, timeout=HANG_GUARD)
        finally:
            release.set()
            holder.join(HANG_GUARD)
        assert health.json()["auth"] == "token" and api.status_code == 401 and mcp.status_code == 401
        assert httpx.get(s.url + "/api/sources", headers=bearer(read)).status_code == 200


# -- 11: the token before the body; Host; unknown tokens ----------------------------------------------
def _asgi_call(app, method: str, path: str, headers: list[tuple[bytes, bytes]], body_chunks: int = 0,
               chunk: bytes = b"") -> tuple[int, dict, int]:
    """Call the app as a server would; returns (status, JSON body, how many body chunks it read)."""
    read = 0
    sent: dict = {"status": 0, "body": b""}

    async def receive() -> dict:
        nonlocal read
        if read < body_chunks:
            read += 1
            return {"type": "http.request", "body": chunk, "more_body": read < body_chunks}
        await asyncio.sleep(HANG_GUARD)  # a client that has sent everything and waits for the answer
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), HANG_GUARD))
    return sent["status"], json.loads(sent["body"] or b"{}"), read


@pytest.fixture
def app_and_runtime(tmp_path, backend):
    from secondself.config import load_settings
    from secondself.runtime import Runtime
    from secondself.serve.app import ServeOptions, create_app

    rt = Runtime(load_settings(tmp_path / "h", {"embedder": "hashing", "persona_model": "fake"}))
    yield create_app(rt, ServeOptions(jobs=False, mcp=False)), rt
    rt.close()


def test_an_unauthenticated_body_is_refused_before_it_is_read(app_and_runtime):
    from secondself.serve import tokens

    app, rt = app_and_runtime
    with rt.lock:
        tokens.create(rt.store, "phone", ["write"])
    chunk, n = b"x" * 65536, 64
    host = [(b"host", b"127.0.0.1:8765"), (b"content-length", str(len(chunk) * n).encode())]
    for path, kind in (("/api/memories/text", b"application/json"), ("/v1/chat/completions", b"application/json"),
                       ("/api/memories", b"multipart/form-data; boundary=x")):
        for auth in ([], [(b"authorization", b"Bearer ss-not-a-token")]):
            status, body, read = _asgi_call(app, "POST", path, host + [(b"content-type", kind)] + auth, n, chunk)
            assert status == 401 and body["error"]["code"] == "invalid_api_key", (path, body)
            assert read == 0, f"{path}: {read} body chunks read before the 401"


def test_a_request_without_a_host_header_is_refused(app_and_runtime):
    app, _ = app_and_runtime
    for path in ("/health", "/api/sources"):
        status, body, _ = _asgi_call(app, "GET", path, [])
        assert status == 400 and body["error"]["code"] == "missing_host", (path, body)
        status, _, _ = _asgi_call(app, "GET", path, [(b"host", b"127.0.0.1:8765")])
        assert status == 200


def test_revoking_a_token_that_does_not_exist_is_404(srv):
    admin = srv.token("admin", name="boss")
    r = httpx.delete(srv.url + "/api/tokens/nobody", headers=bearer(admin))
    assert r.status_code == 404, r.text
    assert "nobody" in r.json()["error"]["message"]
    assert httpx.delete(srv.url + "/api/tokens/boss", headers=bearer(admin)).status_code == 200


# -- 17: one search shape -----------------------------------------------------------------------------
def test_api_search_has_the_shape_of_search_json(srv):
    from click.testing import CliRunner

    from secondself.cli import cli

    api = httpx.get(srv.url + "/api/search", params={"q": "Lisbon flat", "k": 2}).json()
    out = CliRunner().invoke(cli, ["--home", str(srv.home), "--embedder", "hashing", "search", "Lisbon flat",
                                   "-k", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert api == json.loads(out.stdout)
    assert api["results"] and "data" not in api
    assert "data" in httpx.get(srv.url + "/v1/models").json()  # OpenAI-style lists stay on /v1
