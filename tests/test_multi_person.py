"""Many persons on one server (`serve --all-persons`): tokens bound to persons, the admin token, isolation of
every route and MCP tool in both directions, removing a person, the shared models and the fair job queue.
Fast: the hashing embedder and a scripted persona model, a real uvicorn server in a thread."""

from __future__ import annotations

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


def make_person(home: Path, person: str, text: str, **settings: str) -> str:
    """A person with one ingested note and an admin-scope token of theirs; returns the token."""
    from secondself.runtime import Runtime

    rt = Runtime(load_settings(home, {"person": person, "embedder": "hashing", **settings}))
    try:
        folder = home / "corpus" / person
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{person}-note.md").write_text(f"# {person}\n\n{text}\n", encoding="utf-8")
        ingest(rt.store, rt.embedder, [folder], source_name=f"notes-{person}")
        return tokens.create(rt.store, "owner", ["admin"])[1]
    finally:
        rt.close()


@contextmanager
def multi_server(home: Path, runners: dict | None = None, **options: Any) -> Iterator[Multi]:
    secrets_ = {p: make_person(home, p, NOTES[p]) for p in ("ann", "bob")}
    settings = load_settings(home, {"embedder": "hashing", "persona_model": f"fake:{REPLY}",
                                    "teacher_model": "fake"})
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
