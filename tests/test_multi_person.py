"""Many persons on one server (`serve --all-persons`): tokens bound to persons, the admin token, isolation of
every route and MCP tool in both directions, removing a person, the shared models and the fair job queue.
Fast: the hashing embedder and a scripted persona model, a real uvicorn server in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from secondself.config import load_settings
from secondself.errors import ConfigError
from secondself.ingest.pipeline import ingest
from secondself.serve import admin_tokens, tokens
from secondself.serve.app_persons import create_persons_app
from secondself.serve.persons import Persons
from secondself.serve.server import ServerThread
from secondself.serve.state import ServeOptions

REPLY = "I remember it well [1]."
NOTES = {"ann": "Ann's secret: the blue door code is 4711. Ann moved to Porto in 2024.",
         "bob": "Bob's secret: the red bike lock is 9052. Bob bakes rye bread on Sundays."}


@dataclass
class Multi:
    url: str
    home: Path
    persons: Persons
    app: Any
    secrets: dict[str, str]      # person → an admin-scope token of theirs
    admin: str                   # the server's admin token

    def h(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[person]}"}


def make_person(home: Path, person: str, text: str, build: bool = False, store_url: str = "") -> str:
    """A person with one ingested note (and a built profile) and an admin-scope token; returns the token."""
    from secondself.runtime import Runtime

    rt = Runtime(load_settings(home, {"person": person, "embedder": "hashing", "teacher_model": "fake",
                                      "store_url": store_url}))
    try:
        folder = home / "corpus" / person
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{person}-note.md").write_text(f"# {person}\n\n{text}\n", encoding="utf-8")
        ingest(rt.store, rt.embedder, [folder], source_name=f"notes-{person}")
        if build:
            rt.build_profile("fake")
        return tokens.create(rt.store, "owner", ["admin"])[1]
    finally:
        rt.close()


@contextmanager
def multi_server(home: Path, runners: dict | None = None, build: bool = False, store_url: str = "",
                 **options: Any) -> Iterator[Multi]:
    secrets_ = {p: make_person(home, p, NOTES[p], build, store_url) for p in ("ann", "bob")}
    settings = load_settings(home, {"embedder": "hashing", "persona_model": f"fake:{REPLY}",
                                    "teacher_model": "fake", "store_url": store_url})
    persons = Persons(settings, ServeOptions(**options), runners=runners, refresh_s=0.0)
    app = create_persons_app(persons)
    _, admin = admin_tokens.create(home, "root")
    with ServerThread(app) as thread:
        yield Multi(thread.url, home, persons, app, secrets_, admin)


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[Multi]:
    with multi_server(tmp_path / "home") as m:
        yield m


# -- tokens pick the person -------------------------------------------------------------------------------
def test_each_token_reaches_its_own_person_only(multi):
    for me, other in (("ann", "bob"), ("bob", "ann")):
        found = httpx.get(f"{multi.url}/api/search", params={"q": "secret code lock"}, headers=multi.h(me))
        assert found.status_code == 200, found.text
        text = found.text
        assert NOTES[me].split(":")[1].split(".")[0].strip() in text
        assert NOTES[other].split(":")[1].split(".")[0].strip() not in text
        sources = httpx.get(f"{multi.url}/api/sources", headers=multi.h(me)).json()
        assert [s["name"] for s in sources["data"]] == [f"notes-{me}"]


def test_no_token_and_unknown_tokens_are_refused_even_from_this_machine(multi):
    assert httpx.get(f"{multi.url}/api/sources").status_code == 401
    assert httpx.get(f"{multi.url}/api/sources", headers={"Authorization": "Bearer ss-nope"}).status_code == 401
    assert httpx.get(f"{multi.url}/health").json()["auth"] == "token"


# -- one worker, fair across persons ------------------------------------------------------------------------
def test_the_shared_worker_takes_persons_in_turn(tmp_path):
    """Ann queues ten jobs behind a running one, then Bob queues one: Bob's runs next, not eleventh."""
    from secondself.serve.jobs import Jobs
    from secondself.serve.jobs_fair import FairWorker

    home = tmp_path / "home"
    release, order = threading.Event(), []

    def block(rt, params, progress, should_stop):
        assert release.wait(10)
        order.append((rt.settings.person, "block"))

    def record(rt, params, progress, should_stop):
        order.append((rt.settings.person, params["n"]))

    worker = FairWorker()
    queues = {}
    for person in ("ann", "bob"):
        settings = load_settings(home, {"person": person, "embedder": "hashing"})
        queues[person] = Jobs(settings, {"block": block, "record": record}, wake=worker.wake)
        worker.add(person, queues[person])
    worker.start()
    try:
        first = queues["ann"].submit("block")
        deadline = time.monotonic() + 5
        while queues["ann"].get(first["id"])["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ann = [queues["ann"].submit("record", {"n": i}) for i in range(10)]
        bob = queues["bob"].submit("record", {"n": 0})
        release.set()
        for job in (*ann, bob):
            person = "bob" if job is bob else "ann"
            assert queues[person].wait(job["id"], 10)["status"] == "done"
    finally:
        worker.stop(timeout=5)
    assert order[:3] == [("ann", "block"), ("bob", 0), ("ann", 0)]
    assert [n for p, n in order if p == "ann"][1:] == list(range(10))


# -- the admin token --------------------------------------------------------------------------------------
def test_admin_creates_and_removes_persons_and_nothing_else(multi):
    admin = {"Authorization": f"Bearer {multi.admin}"}
    made = httpx.post(f"{multi.url}/admin/persons", json={"name": "cy"}, headers=admin)
    assert made.status_code == 201, made.text
    cy = made.json()["token"]["token"]
    assert sorted(httpx.get(f"{multi.url}/admin/persons", headers=admin).json()["data"]) == ["ann", "bob", "cy"]
    assert httpx.post(f"{multi.url}/admin/persons", json={"name": "cy"}, headers=admin).status_code == 400
    assert httpx.post(f"{multi.url}/admin/persons", json={"name": "../x"}, headers=admin).status_code == 400
    # the new person's first token works at once, on their own (empty) memory
    assert httpx.get(f"{multi.url}/api/sources", headers={"Authorization": f"Bearer {cy}"}).json()["data"] == []
    # the admin token is no person's token; a person's token (even with the admin scope) is no admin token
    for path in ("/api/sources", "/api/settings", "/v1/models", "/api/jobs"):
        assert httpx.get(multi.url + path, headers=admin).status_code == 401
    for who in ("ann", "bob"):
        assert httpx.get(f"{multi.url}/admin/persons", headers=multi.h(who)).status_code == 401
        assert httpx.delete(f"{multi.url}/admin/persons/cy", headers=multi.h(who)).status_code == 401
    assert httpx.delete(f"{multi.url}/admin/persons/zed", headers=admin).status_code == 404
    # a revoked admin token stops at once
    admin_tokens.revoke(multi.home, "root")
    assert httpx.get(f"{multi.url}/admin/persons", headers=admin).status_code == 401


def test_removing_a_person_deletes_their_data_and_their_tokens_stop(multi):
    admin = {"Authorization": f"Bearer {multi.admin}"}
    ann_dir = multi.home / "persons" / "ann"
    bob_files = sorted(p.name for p in (multi.home / "persons" / "bob").iterdir())
    assert httpx.get(f"{multi.url}/api/sources", headers=multi.h("ann")).status_code == 200
    gone = httpx.delete(f"{multi.url}/admin/persons/ann", headers=admin)
    assert gone.status_code == 200, gone.text
    assert not ann_dir.exists()
    assert httpx.get(f"{multi.url}/api/sources", headers=multi.h("ann")).status_code == 401
    assert httpx.get(f"{multi.url}/admin/persons", headers=admin).json()["data"] == ["bob"]
    # Bob is untouched: his files, his memories, his token
    assert sorted(p.name for p in (multi.home / "persons" / "bob").iterdir()) == bob_files
    found = httpx.get(f"{multi.url}/api/search", params={"q": "rye bread"}, headers=multi.h("bob")).json()
    assert "rye bread" in found["results"][0]["text"]


# -- MCP --------------------------------------------------------------------------------------------------
async def mcp_call(url: str, secret: str, name: str, args: dict, mode: str = "auto"):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http, \
            Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        return await client.call_tool(name, args)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_mcp_tools_act_for_the_tokens_person(multi, mode):
    for me in ("ann", "bob"):
        found = anyio.run(mcp_call, multi.url, multi.secrets[me], "search_memory", {"query": "secret"}, mode)
        assert not found.is_error
        paths = {h["path"] for h in found.structured_content["result"]}
        assert paths == {f"{me}-note.md"}
        listed = anyio.run(mcp_call, multi.url, multi.secrets[me], "list_sources", {}, mode)
        assert [s["name"] for s in listed.structured_content["result"]] == [f"notes-{me}"]
    refused = httpx.post(f"{multi.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                         headers={"Authorization": f"Bearer {multi.admin}"})
    assert refused.status_code == 401


def test_an_mcp_session_belongs_to_its_person(multi):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    opened = httpx.post(f"{multi.url}/mcp", json=init, headers={**accept, **multi.h("ann")})
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    same = httpx.post(f"{multi.url}/mcp", json=listing, headers={**accept, **multi.h("ann"), "Mcp-Session-Id": session})
    assert same.status_code == 200 and "search_memory" in same.text
    other = httpx.post(f"{multi.url}/mcp", json=listing, headers={**accept, **multi.h("bob"), "Mcp-Session-Id": session})
    assert other.status_code == 404


# -- isolation: every route, both directions ------------------------------------------------------------------
def _owner_objects(m: Multi, owner: str) -> dict[str, Any]:
    """One of everything a person can own, made over HTTP with their token (ids a fresh intruder lacks)."""
    h, url, mark = m.h(owner), m.url, f"zq{owner}zq"

    def ok(r: httpx.Response) -> dict:
        assert r.status_code < 300, (r.request.url, r.text)
        return r.json()

    chat = ok(httpx.post(f"{url}/v1/chat/completions", headers=h, json={
        "model": "secondself", "messages": [{"role": "user", "content": f"{mark} what is the door code?"}]}))
    ok(httpx.post(f"{url}/api/roles", headers=h, json={"name": f"{owner}-role", "instructions": mark}))
    ok(httpx.put(f"{url}/api/sources/notes-{owner}/tags/{owner}-tag", headers=h))
    space = ok(httpx.post(f"{url}/api/spaces", headers=h, json={"topic": mark, "participants": ["self"]}))
    ok(httpx.post(f"{url}/api/tokens", headers=h, json={"name": f"{owner}-tok", "scopes": ["read"]}))
    job = ok(httpx.post(f"{url}/api/memories/text", headers=h, json={"text": f"{mark} a note", "title": mark}))["job"]
    assert m.persons.state(owner).jobs.wait(job["id"], 20)["status"] == "done"
    run = ok(httpx.post(f"{url}/api/bridge/enhance", headers=h, json={"request": f"{mark} book a table"}))
    runs = ok(httpx.get(f"{url}/api/bridge/runs", headers=h))["data"]
    facts = ok(httpx.get(f"{url}/api/facts", headers=h))
    fact = next(iter(facts.get("data") or facts.get("facts") or []), {"id": "f-none"})
    return {"conversation": chat["secondself"]["conversation_id"], "space": space["id"], "job": job["id"],
            "run": runs[0]["id"] if runs else 1, "fact": fact["id"], "owner": owner, "run_body": run}


def _calls(o: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """How an intruder calls each route: with the owner's ids in the path where it takes one (`owned`: the
    answer must be 404), else with a body of their own. A route missing here fails the test."""
    n = o["owner"]
    ask = {"model": "secondself", "messages": [{"role": "user", "content": "What is the door code?"}]}
    return {
        ("GET", "/v1/models"): {},
        ("POST", "/v1/chat/completions"): {"json": ask},
        ("POST", "/api/bridge/enhance"): {"json": {"request": "what is the door code"}},
        ("POST", "/api/bridge/critique"): {"json": {"request": "the door code?", "answer": "1234"}},
        ("POST", "/api/bridge/ask"): {"json": {"request": "the door code?", "expert": "fake", "dry_run": True}},
        ("GET", "/api/bridge/runs"): {},
        ("GET", "/api/bridge/runs/{run_id}"): {"path": {"run_id": o["run"]}, "owned": True},
        ("GET", "/api/conversations"): {},
        ("GET", "/api/conversations/{conversation_id}"): {"path": {"conversation_id": o["conversation"]},
                                                          "owned": True},
        ("GET", "/api/jobs"): {},
        ("GET", "/api/jobs/{job_id}"): {"path": {"job_id": o["job"]}, "owned": True},
        ("POST", "/api/jobs/{job_id}/cancel"): {"path": {"job_id": o["job"]}, "owned": True},
        ("GET", "/api/jobs/{job_id}/events"): {"path": {"job_id": o["job"]}, "owned": True},
        ("GET", "/api/sources"): {},
        ("DELETE", "/api/sources/{name}"): {"path": {"name": f"notes-{n}"}, "owned": True},
        ("POST", "/api/memories"): {"files": {"files": ("mine.md", b"# mine\n\nmy own upload\n")}},
        ("POST", "/api/memories/text"): {"json": {"text": "my own note"}},
        ("GET", "/api/search"): {"params": {"q": "door code lock secret note"}},
        ("POST", "/api/prefill"): {"json": {"form": "door code\nbike lock"}},
        ("GET", "/api/profile"): {},
        ("GET", "/api/profile/versions"): {},
        ("GET", "/api/profile/diff"): {"params": {"a": 1}},
        ("PUT", "/api/profile/sections/{section}"): {"path": {"section": "biography"}, "json": {"text": "mine"}},
        ("POST", "/api/profile/rollback"): {"json": {"version": 1}},
        ("GET", "/api/facts"): {},
        ("PUT", "/api/facts/{fact_id}"): {"path": {"fact_id": o["fact"]}, "json": {"object": "x"}, "owned": True},
        ("POST", "/api/facts/{fact_id}/{action}"): {"path": {"fact_id": o["fact"], "action": "forget"},
                                                    "owned": True},
        ("POST", "/api/build"): {"json": {}},
        ("GET", "/api/roles"): {},
        ("GET", "/api/roles/{name}"): {"path": {"name": f"{n}-role"}, "owned": True},
        ("POST", "/api/roles"): {"json": {"name": "mine"}},
        ("PUT", "/api/roles/{name}"): {"path": {"name": f"{n}-role"}, "json": {"instructions": "x"}, "owned": True},
        ("DELETE", "/api/roles/{name}"): {"path": {"name": f"{n}-role"}, "owned": True},
        ("PUT", "/api/sources/{source}/tags/{tag}"): {"path": {"source": f"notes-{n}", "tag": "x"}, "owned": True},
        ("DELETE", "/api/sources/{source}/tags/{tag}"): {"path": {"source": f"notes-{n}", "tag": f"{n}-tag"},
                                                         "owned": True},
        ("GET", "/api/settings"): {},
        ("POST", "/api/tokens"): {"json": {"name": "mine", "scopes": ["read"]}},
        ("DELETE", "/api/tokens/{name}"): {"path": {"name": f"{n}-tok"}, "owned": True},
        ("GET", "/api/spaces"): {},
        ("POST", "/api/spaces"): {"json": {"topic": "mine", "participants": ["self"]}},
        ("GET", "/api/spaces/{space_id}"): {"path": {"space_id": o["space"]}, "owned": True},
        ("POST", "/api/spaces/{space_id}/run"): {"path": {"space_id": o["space"]}, "owned": True},
        ("DELETE", "/api/spaces/{space_id}"): {"path": {"space_id": o["space"]}, "owned": True},
        ("POST", "/api/train"): {"json": {"steps": 1}},
        ("GET", "/api/adapters"): {},
        ("POST", "/api/adapters/{version}/use"): {"path": {"version": "v1"}, "owned": True},
        ("GET", "/admin/persons"): {"refused": True},
        ("POST", "/admin/persons"): {"json": {"name": "x"}, "refused": True},
        ("DELETE", "/admin/persons/{name}"): {"path": {"name": n}, "refused": True},
        ("GET", "/health"): {}, ("GET", "/"): {}, ("GET", "/openapi.json"): {},
        ("GET", "/static/{name}"): {"path": {"name": "app.js"}},
    }


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves but MCP (tested through the MCP client below), routers included
    (FastAPI keeps an included router as one entry that holds its routes)."""
    found = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
                continue
            path = prefix + getattr(route, "path", "")
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD" and not path.startswith("/mcp"):
                    found.append((method, path))
    walk(app.routes, "")
    assert len(found) > 40, found  # the routers' routes were found, not only the app's own
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    """'' (an SQLite file per person) or a fresh Postgres database (skipped without the postgres extra)."""
    return request.getfixturevalue("pg_url") if request.param == "postgres" else ""


@pytest.mark.parametrize("owner,intruder", [("ann", "bob"), ("bob", "ann")])
def test_no_route_reaches_another_persons_data(tmp_path, owner, intruder, store_url):
    with multi_server(tmp_path / "home", build=True, store_url=store_url) as m:
        objects = _owner_objects(m, owner)
        calls = _calls(objects)
        routes = _routes(m.app)
        unknown = [r for r in routes if r not in calls]
        assert not unknown, f"routes this test does not know how to call: {unknown}"
        code = NOTES[owner].split(" is ")[1].split(".")[0]
        markers = [code, f"zq{owner}zq", f"{owner}-role", f"{owner}-tag", f"{owner}-tok", f"{owner}-note.md",
                   f"notes-{owner}"]
        # routes that take the owner's ids first: nothing the intruder makes later can collide with them
        for method, path in sorted(routes, key=lambda r: "{" not in r[1]):
            call = calls[(method, path)]
            url = m.url + path.format(**call.get("path", {}))
            r = httpx.request(method, url, headers=m.h(intruder), params=call.get("params"), json=call.get("json"),
                              files=call.get("files"), timeout=60)
            where = f"{method} {path} as {intruder}: {r.status_code} {r.text[:300]}"
            if call.get("refused"):
                assert r.status_code == 401, where
            elif call.get("owned"):
                assert r.status_code == 404, where
            else:
                assert r.status_code < 500, where
                if r.status_code < 300:
                    leaked = [k for k in markers if k in r.text and k not in url]
                    assert not leaked, f"{where}: leaked {leaked}"
        _assert_intact(m, owner, objects, code)


def _assert_intact(m: Multi, owner: str, o: dict[str, Any], code: str) -> None:
    """Everything the owner made is still there, unchanged."""
    h, url, mark = m.h(owner), m.url, f"zq{owner}zq"

    def get(path: str, **params: Any) -> str:
        r = httpx.get(url + path, headers=h, params=params)
        assert r.status_code == 200, (path, r.text)
        return r.text

    assert mark in get(f"/api/conversations/{o['conversation']}")
    assert mark in get(f"/api/roles/{owner}-role")
    assert f"{owner}-tag" in get("/api/sources")
    assert mark in get(f"/api/spaces/{o['space']}")
    assert f"{owner}-tok" in get("/api/settings")
    assert get(f"/api/jobs/{o['job']}")
    assert mark in get(f"/api/bridge/runs/{o['run']}")
    assert code in get("/api/search", q="door code lock secret")


def _tool_args(owner: str) -> dict[str, dict[str, Any]]:
    """How an intruder calls each MCP tool, reaching for the owner's things by name where a tool takes one.
    A tool missing here fails the test."""
    return {
        "search_memory": {"query": "door code bike lock secret", "source": f"notes-{owner}"},
        "read_profile": {"role": f"{owner}-role"},
        "list_sources": {},
        "ask": {"question": "What is the door code?"},
        "add_memory": {"text": "my own note"},
        "list_roles": {},
        "prefill": {"form": "door code\nbike lock"},
        "bridge_enhance": {"request": "what is my door code", "sources": [f"notes-{owner}"]},
        "bridge_critique": {"request": "the door code?", "answer": "1234"},
    }


@pytest.mark.parametrize("owner,intruder", [("ann", "bob"), ("bob", "ann")])
def test_no_mcp_tool_reaches_another_persons_data(tmp_path, owner, intruder, store_url):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    with multi_server(tmp_path / "home", build=True, store_url=store_url) as m:
        objects = _owner_objects(m, owner)
        code = NOTES[owner].split(" is ")[1].split(".")[0]
        markers = [code, f"zq{owner}zq", f"{owner}-tag", f"{owner}-note.md"]
        args = _tool_args(owner)

        async def sweep() -> None:
            import httpx2

            async with httpx2.AsyncClient(headers=m.h(intruder), timeout=60) as http, \
                    Client(streamable_http_client(f"{m.url}/mcp", http_client=http)) as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                unknown = [t for t in tools if t not in args]
                assert not unknown, f"MCP tools this test does not know how to call: {unknown}"
                for tool in tools:
                    result = await client.call_tool(tool, args[tool])
                    text = "\n".join(getattr(c, "text", "") for c in result.content) + str(result.structured_content)
                    leaked = [k for k in markers if k in text and k not in str(args[tool])]
                    assert not leaked, f"{tool} as {intruder} leaked {leaked}: {text[:300]}"
                    if tool in ("search_memory", "read_profile"):  # the owner's source and role are unknown here
                        assert result.is_error, (tool, text[:300])
        anyio.run(sweep)
        _assert_intact(m, owner, objects, code)


def test_a_model_path_into_another_persons_folder_is_refused(multi):
    """Exported models and adapters are made from a person's memories: another person may not name their path
    as a role's model or a training base, and is answered the same whether it exists, is not a model, or does
    not exist (existence does not leak); a role stored with such a path (from the command line) cannot load it."""
    ann = multi.home / "persons" / "ann"
    exported = ann / "exports" / "ann.gguf"
    exported.parent.mkdir(parents=True)
    exported.write_bytes(b"GGUF" + bytes(64))
    (ann / "diary.txt").write_text("not a model")
    answers = set()
    for path in (exported, exported.parent, ann / "diary.txt", ann / "no-such.gguf", ann / "exports" / ".."):
        r = httpx.post(f"{multi.url}/api/roles", headers=multi.h("bob"), json={"name": "spy", "model": str(path)})
        assert r.status_code == 400, r.text
        answers.add(r.json()["error"]["message"].replace(str(path), "PATH"))
    assert len(answers) == 1 and "another person's folder" in answers.pop()
    from secondself import roles

    bob = multi.persons.state("bob").runtime
    with bob.lock:
        roles.create_role(bob.store, "spy", model=str(exported))
    chat = httpx.post(f"{multi.url}/v1/chat/completions", headers=multi.h("bob"), json={
        "model": "secondself:spy", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "another person's folder" in chat.text, chat.text
    for base in (str(exported.parent), str(ann / "nothing-here")):
        job = httpx.post(f"{multi.url}/api/train", headers=multi.h("bob"), json={"base": base}).json()["job"]
        done = multi.persons.state("bob").jobs.wait(job["id"], 20)
        assert done["status"] == "failed" and "another person's folder" in done["error"], done
    own = multi.home / "persons" / "bob" / "mine.gguf"   # a person's own folder stays theirs to name
    own.write_bytes(b"GGUF" + bytes(64))
    assert httpx.post(f"{multi.url}/api/roles", headers=multi.h("bob"),
                      json={"name": "mine", "model": str(own)}).status_code == 201


def test_the_shared_model_cache_loads_once_and_closing_never_loads(tmp_path):
    """Two persons asking for one spec at once get one model (one load); closing the cache closes what was
    loaded and does not build a deferred model that never was."""
    from secondself.backends.cache import ModelCache
    from secondself.backends.registry import DeferredChatModel

    cache, loads, built = ModelCache(), [], []

    class Engine:
        closed = False

        def close(self):
            self.closed = True

    def load():
        loads.append(1)
        time.sleep(0.05)
        return Engine()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("base", load))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(m) for m in got}) == 1
    cache.get("lazy", lambda: DeferredChatModel("lazy", lambda: built.append(1) or Engine()))
    cache.close()
    assert got[0].closed and built == []


# -- the command line -------------------------------------------------------------------------------------------
def test_admin_tokens_from_the_command_line(capsys, tmp_path):
    from secondself.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main([*args])
            raise SystemExit(0)
        out = capsys.readouterr()
        return int(e.value.code or 0), out.out, out.err

    home = Path(tmp_path / "home")
    code, out, _ = run("token", "create", "--admin", "--name", "ops")
    secret = out.strip()
    assert code == 0 and secret.startswith("ssa-")
    assert admin_tokens.verify(home, secret).name == "ops"
    assert secret not in (home / admin_tokens.FILE_NAME).read_text()        # only its hash is stored
    assert (home / admin_tokens.FILE_NAME).stat().st_mode & 0o077 == 0      # and only its owner reads it
    assert not (home / "persons").exists()                                  # no person was made for it
    code, _, err = run("token", "create", "--admin", "--scope", "chat")
    assert code == 2 and "no scopes" in err
    code, _, err = run("token", "create")
    assert code == 2 and "--scope" in err
    code, out, _ = run("token", "list", "--admin", "--json")
    assert [t["name"] for t in json.loads(out)] == ["ops"]
    assert run("token", "revoke", "--admin", "ops")[0] == 0
    assert admin_tokens.verify(home, secret) is None
    code, out, _ = run("serve", "--help")
    assert "--all-persons" in out


# -- the Postgres store -----------------------------------------------------------------------------------
def test_all_persons_of_a_postgres_store(tmp_path, pg_url):
    from secondself.store import list_persons, open_store

    home = tmp_path / "home"
    settings = load_settings(home, {"embedder": "hashing", "persona_model": f"fake:{REPLY}", "store_url": pg_url})
    secrets_ = {}
    for person in ("ann", "bob"):
        store = open_store(load_settings(home, {"person": person, "store_url": pg_url}))
        try:
            secrets_[person] = tokens.create(store, "owner", ["read"])[1]
        finally:
            store.close()
    persons = Persons(settings, ServeOptions(jobs=False, mcp=False), refresh_s=0.0)
    with ServerThread(create_persons_app(persons)) as thread:
        for person in ("ann", "bob"):
            r = httpx.get(f"{thread.url}/api/settings", headers={"Authorization": f"Bearer {secrets_[person]}"})
            assert r.status_code == 403  # a read token: the person's own tokens answered, and refused the scope
            assert httpx.get(f"{thread.url}/api/sources",
                             headers={"Authorization": f"Bearer {secrets_[person]}"}).json()["data"] == []
        persons.remove("ann")
        assert list_persons(settings) == ["bob"]
        persons.create("cy")
        assert list_persons(settings) == ["bob", "cy"]
        assert httpx.get(f"{thread.url}/api/sources",
                         headers={"Authorization": f"Bearer {secrets_['ann']}"}).status_code == 401
        assert httpx.get(f"{thread.url}/api/sources",
                         headers={"Authorization": f"Bearer {secrets_['bob']}"}).status_code == 200


def test_unknown_tokens_rebuild_the_index_at_most_once_per_interval(tmp_path):
    """A stream of unknown tokens costs a dictionary lookup each, not a scan of every person's database; a
    token made since the last rebuild is found once the interval has passed, reading only the person whose
    database changed."""
    home = tmp_path / "home"
    ann = make_person(home, "ann", NOTES["ann"])
    persons = Persons(load_settings(home, {"embedder": "hashing"}), ServeOptions(jobs=False, mcp=False),
                      refresh_s=60)
    try:
        persons.refresh()
        assert persons.resolve(ann)[0].runtime.settings.person == "ann"   # opens ann's database (a WAL appears)
        persons.refresh()
        assert all(persons.resolve(f"ss-guess{i}") is None for i in range(50))
        assert (persons.index.rebuilds, persons.index.reads) == (2, 2)
        bob = make_person(home, "bob", NOTES["bob"])
        assert persons.resolve(bob) is None            # made after the last rebuild, within the interval
        persons.index.refresh_s = 0
        time.sleep(0.1)                                # past ten times the last rebuild's duration too
        assert persons.resolve(bob)[0].runtime.settings.person == "bob"
        assert (persons.index.rebuilds, persons.index.reads) == (3, 3)   # ann's unchanged database not read
    finally:
        persons.close()


def test_removing_a_person_stops_their_running_job_first(tmp_path):
    started, stopped = threading.Event(), threading.Event()

    def block(rt, params, progress, should_stop):
        started.set()
        deadline = time.monotonic() + 10
        while not should_stop():
            assert time.monotonic() < deadline, "never asked to stop"
            time.sleep(0.01)
        stopped.set()
        from secondself.errors import JobCancelled

        raise JobCancelled("stopped")

    with multi_server(tmp_path / "home", runners={"block": block}) as m:
        m.persons.state("ann").jobs.submit("block")
        assert started.wait(10)
        bob_job = m.persons.state("bob").jobs.submit("ingest", {"paths": []})
        r = httpx.delete(f"{m.url}/admin/persons/ann", headers={"Authorization": f"Bearer {m.admin}"}, timeout=60)
        assert r.status_code == 200 and stopped.is_set()
        assert not (m.home / "persons" / "ann").exists()
        assert m.persons.state("bob").jobs.wait(bob_job["id"], 20)["status"] == "done"  # the worker goes on


def test_persons_share_one_loaded_model(multi):
    ask = {"model": "secondself", "messages": [{"role": "user", "content": "Where do I live?"}]}
    for person in ("ann", "bob"):
        r = httpx.post(f"{multi.url}/v1/chat/completions", headers=multi.h(person), json=ask)
        assert r.status_code == 200, r.text
    spec = f"fake:{REPLY}"
    models = {id(multi.persons.state(p).runtime.chat_model(spec)) for p in ("ann", "bob")}
    assert len(models) == 1 and spec in multi.persons.shared


def test_the_shared_worker_keeps_few_job_runtimes_open(tmp_path):
    """Jobs of many persons: the worker keeps only the `keep` most recent persons' runtimes (connections) open."""
    from secondself.serve.jobs import Jobs
    from secondself.serve.jobs_fair import FairWorker

    seen = []

    def record(rt, params, progress, should_stop):
        seen.append(rt)
        with rt.lock:
            _ = rt.store

    worker = FairWorker(keep=2)
    queues = {}
    for person in ("ann", "bob", "cy", "dee"):
        queues[person] = Jobs(load_settings(tmp_path / "home", {"person": person}), {"record": record},
                              wake=worker.wake)
        worker.add(person, queues[person])
    worker.start()
    try:
        for jobs in queues.values():
            assert jobs.wait(jobs.submit("record")["id"], 10)["status"] == "done"
        assert [rt.settings.person for rt in seen] == ["ann", "bob", "cy", "dee"]
        assert [rt._store is None for rt in seen] == [True, True, False, False]  # only the two last kept open
    finally:
        worker.stop(timeout=5)


def test_a_persons_admin_token_cannot_use_the_servers_reach(multi):
    """A person's token holds the admin scope of their own data, not the server's: no endpoint the operator did
    not configure (the server would send it its API key), no space participant off this machine or reading the
    server's environment, no remote bridge expert."""
    evil = "openai:m@https://collector.example/v1"
    h = multi.h("bob")
    r = httpx.post(f"{multi.url}/api/roles", headers=h, json={"name": "leaky", "model": evil})
    assert r.status_code == 400 and "chosen by its operator" in r.text, r.text
    job = httpx.post(f"{multi.url}/api/build", headers=h, json={"teacher": evil}).json()["job"]
    done = multi.persons.state("bob").jobs.wait(job["id"], 20)
    assert done["status"] == "failed" and "chosen by its operator" in done["error"], done
    for ref in ("https://collector.example/v1", "http://127.0.0.1:9/v1#env:OPENAI_API_KEY"):
        r = httpx.post(f"{multi.url}/api/spaces", headers=h, json={"topic": "t", "participants": ["self", ref]})
        assert r.status_code == 403, r.text
    r = httpx.post(f"{multi.url}/api/bridge/ask", headers=h, json={"request": "x", "expert": evil})
    assert r.status_code == 400 and "chosen by its operator" in r.text, r.text
    r = httpx.post(f"{multi.url}/api/bridge/ask", headers=h,
                   json={"request": "x", "expert": "https://collector.example/v1", "expert_model": "m"})
    assert r.status_code == 403, r.text


def test_the_operators_endpoints_stay_usable(tmp_path):
    from secondself.serve.persons import spec_check

    settings = load_settings(tmp_path / "home", {"person": "ann", "persona_model": "openai:m@http://10.0.0.5/v1"})
    check = spec_check(settings)
    check("openai:m@http://10.0.0.5/v1", None)          # configured by the operator: allowed
    with pytest.raises(ConfigError, match="chosen by its operator"):
        check("openai:m@http://10.0.0.6/v1", None)
    check("x.gguf", settings.person_dir / "x.gguf")       # the person's own folder
    with pytest.raises(ConfigError, match="another person's folder"):
        check("x.gguf", settings.home / "persons" / "bob" / "x.gguf")
