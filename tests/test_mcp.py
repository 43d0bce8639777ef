"""The MCP server through the official `mcp` client: stdio (a real subprocess) and streamable HTTP (uvicorn
in a thread), with the hashing embedder and a scripted persona model."""

import contextlib
import json
import os
import sys
import threading
import time

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from secondself.ingest.pipeline import ingest
from secondself.runtime import Runtime
from secondself.serve import tokens
from secondself.serve.mcp_http import http_app, mcp_asgi_app

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

ANSWER = "I live in Lisbon, on Rua dos Anjos [1]."
TOOLS = {"search_memory", "read_profile", "list_sources", "ask", "add_memory", "list_roles", "bridge_enhance",
         "bridge_critique", "prefill"}


@pytest.fixture
def rt(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("SECONDSELF_EMBEDDER", "hashing")
    monkeypatch.setenv("SECONDSELF_PERSONA_MODEL", f"fake:{ANSWER}")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "move.md").write_text("---\ndate: 2025-07-01\n---\n# Moving\n\nWhere do I live now? In Lisbon, "
                                   "Rua dos Anjos, since the summer.\n")
    (notes / "garden.md").write_text("# Garden\n\nThe tomatoes on the balcony need water every evening.\n")
    runtime = Runtime.from_options()
    ingest(runtime.store, runtime.embedder, [notes], source_name="notes")
    yield runtime
    runtime.close()


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


# -- stdio --------------------------------------------------------------------------------------------

def test_stdio_tools_search_ask_and_add_memory(rt):
    rt.close()  # the server process opens the database itself
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "secondself", "mcp"],  # the real CLI command
        env={k: os.environ[k] for k in ("SECONDSELF_HOME", "SECONDSELF_EMBEDDER", "SECONDSELF_PERSONA_MODEL",
                                        "SECONDSELF_REAL_MODELS", "SECONDSELF_STORE_URL") if k in os.environ})

    async def main():
        async with Client(params, read_timeout_seconds=30) as client:
            listed = (await client.list_tools()).tools
            assert {t.name for t in listed} == TOOLS
            for tool in listed:  # the injected context is not an argument the agent sees
                assert "ctx" not in tool.input_schema.get("properties", {}), tool.name
                assert len(tool.description) > 80, tool.name
            search = next(t for t in listed if t.name == "search_memory")
            assert search.input_schema["required"] == ["query"]

            found = await client.call_tool("search_memory", {"query": "Where do I live? Lisbon", "k": 2})
            assert not found.is_error, text_of(found)
            hits = found.structured_content["result"]
            assert hits[0]["path"] == "move.md" and hits[0]["source"] == "notes"
            assert "Rua dos Anjos" in text_of(found)

            answered = await client.call_tool("ask", {"question": "Where do I live now?"})
            assert answered.structured_content["answer"] == ANSWER
            assert not answered.structured_content["abstained"]
            assert answered.structured_content["citations"][0]["path"] == "move.md"

            added = await client.call_tool("add_memory", {"text": "My bicycle is a green Brompton.",
                                                          "title": "Bike"})
            assert not added.is_error, text_of(added)
            assert added.structured_content["chunks_added"] >= 1
            assert added.structured_content["path"].endswith("-bike.md")
            again = await client.call_tool("search_memory", {"query": "green Brompton bicycle", "k": 1})
            assert again.structured_content["result"][0]["source"] == "mcp"

            sources = await client.call_tool("list_sources", {})
            assert {s["name"]: s["documents"] for s in sources.structured_content["result"]} == \
                {"notes": 2, "mcp": 1}

            profile = await client.call_tool("read_profile", {})
            assert profile.is_error and "secondself build" in text_of(profile)
            unknown = await client.call_tool("search_memory", {"query": "x", "source": "nope"})
            assert unknown.is_error and "nope" in text_of(unknown)

    anyio.run(main)


# -- HTTP ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def serving(app):
    """Run `app` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def call(url: str, secret: str | None, name: str, args: dict, mode: str = "auto"):
    """One tool call over a fresh connection. mode 'legacy': the initialize handshake and a stateful session
    (what most clients speak today); 'auto': the SDK's newest protocol, one stateless POST per call."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        return await client.call_tool(name, args)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_http_scopes_and_tokens(rt, mode):
    with rt.lock:
        _, reader = tokens.create(rt.store, "reader", ["read"])
        _, chatter = tokens.create(rt.store, "chatter", ["chat"])
        _, writer = tokens.create(rt.store, "writer", ["write"])
    with serving(http_app(rt, require_token=None)) as url:
        found = anyio.run(call, url, reader, "search_memory", {"query": "tomatoes balcony"}, mode)
        assert not found.is_error and found.structured_content["result"][0]["path"] == "garden.md"
        refused = anyio.run(call, url, reader, "add_memory", {"text": "a secret plan"}, mode)
        assert refused.is_error and "this token lacks the 'write' scope" in text_of(refused)
        assert not (rt.settings.person_dir / "uploads" / "mcp").exists()

        answered = anyio.run(call, url, chatter, "ask", {"question": "Where do I live now?"}, mode)
        assert answered.structured_content["answer"] == ANSWER
        no_read = anyio.run(call, url, chatter, "list_sources", {}, mode)
        assert no_read.is_error and "lacks the 'read' scope" in text_of(no_read)

        added = anyio.run(call, url, writer, "add_memory", {"text": "Dentist on Friday at nine."}, mode)
        assert not added.is_error and added.structured_content["chunks_added"] >= 1

        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        missing = httpx.post(f"{url}/mcp", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["type"] == "authentication_error"
        assert missing.json()["error"]["code"] == "invalid_token"
        bogus = httpx.post(f"{url}/mcp", json=body, headers={"Authorization": "Bearer ss-nope"})
        assert bogus.status_code == 401 and "not valid" in bogus.json()["error"]["message"]
        with rt.lock:
            tokens.revoke(rt.store, "reader")
        revoked = httpx.post(f"{url}/mcp", json=body, headers={"Authorization": f"Bearer {reader}"})
        assert revoked.status_code == 401
        assert reader not in revoked.text


def test_http_open_policy_without_tokens(rt):
    """No token exists: loopback clients get every scope under the default policy, none with require_token."""
    with serving(http_app(rt, require_token=None)) as url:
        added = anyio.run(call, url, None, "add_memory", {"text": "Open house on Sunday."})
        assert not added.is_error, text_of(added)
    with serving(http_app(rt, require_token=True)) as url:
        assert httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401


def test_http_rejects_foreign_host_and_origin(rt):
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    with serving(http_app(rt, require_token=False)) as url:
        ok = httpx.post(f"{url}/mcp", json=body, headers=accept)
        assert ok.status_code == 200
        evil_host = httpx.post(f"{url}/mcp", json=body, headers={**accept, "Host": "evil.example"})
        assert evil_host.status_code == 421
        evil_origin = httpx.post(f"{url}/mcp", json=body, headers={**accept, "Origin": "http://evil.example"})
        assert evil_origin.status_code == 403


def test_mounted_under_a_prefix_with_the_lifespan(rt):
    """What the main app does: mount the gate at /mcp and enter the returned lifespan in its own."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    app, lifespan = mcp_asgi_app(rt, require_token=False)
    outer = Starlette(routes=[Route("/mcp", endpoint=app), Mount("/mcp", app=app)], lifespan=lifespan)
    with serving(outer) as url:
        found = anyio.run(call, url, None, "list_sources", {})
        assert found.structured_content["result"][0]["name"] == "notes"


def test_http_server_refuses_calls_that_bypass_the_gate(rt):
    """A server built for HTTP grants nothing to a call without the gate's scopes (fails closed)."""
    from secondself.serve.mcp import build_mcp

    async def main():
        async with Client(build_mcp(rt)) as client:
            result = await client.call_tool("search_memory", {"query": "Lisbon"})
            assert result.is_error and "lacks the 'read' scope" in text_of(result)
        async with Client(build_mcp(rt, stdio=True)) as client:
            assert not (await client.call_tool("search_memory", {"query": "Lisbon"})).is_error

    anyio.run(main)


def test_read_profile_whole_and_one_section(rt):
    from secondself.memory.versions import save_version
    from secondself.serve.mcp import build_mcp
    from secondself.types import Entity, Fact, Profile, Shade, ShadeEvent, Status

    profile = Profile(version=0, built_at="2025-07-02T10:00:00Z", person="me", biography="I moved to Lisbon.",
                      biography_second="You moved to Lisbon.",
                      status=Status("2025-07-01", "Settling in Lisbon.", "Lived in Porto."),
                      shades=(Shade("Gardening", "grower", "Balcony tomatoes.", ("t1",),
                                    (ShadeEvent("2025-06", "Planted tomatoes", (2,)),)),),
                      facts=(Fact("me", "lives_in", "Lisbon", valid_from="2025-07-01", sources=(1,)),),
                      entities=(Entity("Ana", relation="sister", mentions=3),))
    with rt.lock:
        save_version(rt.store, profile, kind="build")

    async def main():
        async with Client(build_mcp(rt, stdio=True)) as client:
            whole = (await client.call_tool("read_profile", {})).structured_content
            assert whole["biography"] == "I moved to Lisbon." and whole["version"] == 1
            assert whole["status"]["recent"] == "Settling in Lisbon."
            assert whole["shades"][0]["timeline"][0]["text"] == "Planted tomatoes"
            assert "topics" not in whole["shades"][0]
            assert whole["facts"][0]["object"] == "Lisbon" and whole["facts"][0]["id"]
            assert whole["people"][0]["relation"] == "sister"
            only = (await client.call_tool("read_profile", {"section": "shades"})).structured_content
            assert set(only) == {"person", "version", "built_at", "shades"}
            bad = await client.call_tool("read_profile", {"section": "diary"})
            assert bad.is_error

    anyio.run(main)


def test_http_session_belongs_to_the_token_that_opened_it(rt):
    with rt.lock:
        _, first = tokens.create(rt.store, "first", ["read"])
        _, second = tokens.create(rt.store, "second", ["admin"])
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    with serving(http_app(rt)) as url:
        opened = httpx.post(f"{url}/mcp", json=init, headers={**accept, "Authorization": f"Bearer {first}"})
        session = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        same = httpx.post(f"{url}/mcp", json=listing, headers={**accept, "Authorization": f"Bearer {first}",
                                                               "Mcp-Session-Id": session})
        assert same.status_code == 200 and "search_memory" in same.text
        other = httpx.post(f"{url}/mcp", json=listing, headers={**accept, "Authorization": f"Bearer {second}",
                                                                "Mcp-Session-Id": session})
        assert other.status_code == 404


def test_the_main_server_exposes_mcp_at_slash_mcp_behind_its_tokens(tmp_path, backend):
    """`secondself serve` mounts MCP in the same process as the HTTP API, with the same tokens."""
    from serving import running_server

    with running_server(tmp_path / "home", persona=f"fake:{ANSWER}", jobs=False) as srv:
        srv.ingest_text({"move.md": "Where do I live now? In Lisbon, Rua dos Anjos, since the summer."})
        reader = srv.token("read")
        found = anyio.run(call, srv.url, reader, "search_memory", {"query": "Lisbon"})
        assert not found.is_error and found.structured_content["result"][0]["path"] == "move.md"
        refused = anyio.run(call, srv.url, reader, "ask", {"question": "Where do I live?"})
        assert refused.is_error and "lacks the 'chat' scope" in text_of(refused)
        assert httpx.post(f"{srv.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401


def test_bridge_tools_disclose_only_what_the_policy_allows(tmp_path, backend):
    from serving import running_server

    with running_server(tmp_path / "home", persona=f"fake:{ANSWER}", jobs=False) as srv:
        srv.ingest_text({"move.md": "Where do I live now? In Lisbon, Rua dos Anjos. I am vegetarian."})
        with srv.runtime.lock:
            srv.runtime.build_profile("fake")
        chat = srv.token("chat")
        full = anyio.run(call, srv.url, chat, "bridge_enhance", {"request": "book a restaurant for Friday"})
        assert not full.is_error and "vegetarian" in full.structured_content["enhanced"]
        held = anyio.run(call, srv.url, chat, "bridge_enhance", {"request": "book a restaurant for Friday",
                                                                  "never_share": ["vegetarian"]})
        text = json.dumps(held.structured_content)
        assert "vegetarian" not in held.structured_content["enhanced"]
        assert all("vegetarian" not in d["text"] for d in held.structured_content["disclosed"]), text
        judged = anyio.run(call, srv.url, chat, "bridge_critique",
                           {"request": "book a restaurant", "answer": "Try the steakhouse by the river."})
        assert "steakhouse" in judged.structured_content["critique"]
        reader = anyio.run(call, srv.url, srv.token("read"), "bridge_enhance", {"request": "book a table"})
        assert reader.is_error and "lacks the 'chat' scope" in text_of(reader)


def test_prefill_tool_fills_what_memory_supports_and_leaves_the_rest_empty(tmp_path):
    from serving import running_server

    with running_server(tmp_path / "home", persona=f"fake:{ANSWER}", jobs=False, person_name="Rosa Quill") as srv:
        srv.ingest_text({"2025-05-02-contact.md": "My email is rosa.quill@example.org and my mobile is "
                                                  "+44 7700 900123."})
        form = "Email\nMobile phone\nBlood type"
        result = anyio.run(call, srv.url, srv.token("read"), "prefill", {"form": form})
        assert not result.is_error, text_of(result)
        fields = {f["field"]: f for f in result.structured_content["fields"]}
        assert fields["Email"]["value"] == "rosa.quill@example.org" and fields["Email"]["sources"]
        assert fields["Blood type"]["value"] is None and fields["Blood type"]["reason"]


def test_add_memory_never_repoints_a_folder_source_named_mcp(rt, tmp_path):
    """A folder the person ingested as 'mcp' keeps its source; the note goes into 'mcp-2' (issue 14, finding 9:
    re-pointing it made the next ingest report the folder's files missing, and --prune delete them)."""
    from secondself.serve.mcp import build_mcp

    folder = tmp_path / "mcp"
    folder.mkdir()
    (folder / "plan.md").write_text("# Plan\n\nThe model context protocol talk is on Friday.\n")
    with rt.lock:
        ingest(rt.store, rt.embedder, [folder], source_name="mcp")
        before = rt.store.source_roots()["mcp"]

    async def main():
        async with Client(build_mcp(rt, stdio=True)) as client:
            added = await client.call_tool("add_memory", {"text": "My bicycle is a green Brompton."})
            assert not added.is_error, text_of(added)
            assert added.structured_content["source"] == "mcp-2"

    anyio.run(main)
    with rt.lock:
        roots = rt.store.source_roots()
    assert roots["mcp"] == before and roots["mcp-2"].endswith("uploads/mcp-2")
