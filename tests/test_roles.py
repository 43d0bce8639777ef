"""Roles: a role scoped to the work notes must not surface the diary by any route — chat (memories and layer 1
in the prompt), /api search/sources/profile/facts/conversations, MCP tools — whether the role is asked for or
forced by a role-bound token. Each leak test first checks that the same route without the role *does* show
the diary, so it can fail."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import httpx2
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from serving import running_server

from secondself.backends.chat import FakeChatModel
from secondself.errors import ConfigError, RoleForbiddenError, RoleNotFoundError
from secondself.memory.scope import (
    Scope,
    ScopedSearcher,
    scoped_profile,
    source_tags,
    tag_source,
    untag_source,
)
from secondself.memory.search import narrow
from secondself.roles import create_role, delete_role, get_role, list_roles, update_role
from secondself.serve import tokens
from secondself.types import Fact, Profile, SearchFilters, Status

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

WORK = {
    "2025-01-10-standup.md": "# Standup\n\nI work at Heronworks as a data engineer. The ingest pipeline for the "
                             "Heronworks warehouse failed twice today.",
    "2025-02-14-review.md": "# Review\n\nI report to Odalys Brandt. The pipeline review went well and the warehouse "
                            "migration is on track.",
    "2025-03-20-planning.md": "# Planning\n\nPlanning the warehouse migration at Heronworks: pipeline owners, data "
                              "contracts and deadlines.",
    "2025-04-11-incident.md": "# Incident\n\nThe warehouse pipeline stalled overnight; I wrote the incident report "
                              "for Odalys.",
    "2025-05-02-offsite.md": "# Offsite\n\nHeronworks offsite: the data team agreed on warehouse contracts and "
                             "pipeline alerts.",
}
DIARY = {
    "2025-01-05-move.md": "# Moving day\n\nI moved to Quokkaville today. The flat smells of marmalade and old books.",
    "2025-02-02-sister.md": "# Zelinda\n\nMy sister Zelinda came to Quokkaville for the weekend; we ate marmalade "
                            "toast by the river.",
    "2025-03-08-river.md": "# River walk\n\nWalked along the Quokkaville river with Zelinda. Marmalade again.",
    "2025-04-19-garden.md": "# Garden\n\nPlanted marmalade oranges in the Quokkaville garden; Zelinda brought the "
                            "seeds.",
    "2025-05-25-birthday.md": "# Birthday\n\nZelinda's birthday in Quokkaville: marmalade cake and river swimming.",
}
SECRETS = ("quokkaville", "zelinda", "marmalade", "diary")  # words only the diary holds, and its name
QUESTION = "Tell me about the Heronworks pipeline, and about Quokkaville, Zelinda and the marmalade"
INSTRUCTIONS = "You are answering a recruiter: keep to work."
ANSWER = "I work at Heronworks [1]."


def leaks(text: str) -> list[str]:
    return [w for w in SECRETS if w in text.lower()]


@pytest.fixture
def srv(tmp_path: Path, backend: str):
    from secondself.memory.build import BuildOptions, build
    from secondself.memory.fakes import slot_teacher

    with running_server(tmp_path / "home", jobs=False) as s:
        s.ingest_text(WORK, source="work")
        s.ingest_text(DIARY, source="diary")
        rt = s.runtime
        with rt.lock:
            build(rt.store, rt.embedder.name, slot_teacher(), "Maya", BuildOptions(slots=False))
            create_role(rt.store, "interviewer", INSTRUCTIONS, Scope(sources=("work",)))
            create_role(rt.store, "diarist", "", Scope(sources=("diary",)))
        s.model = FakeChatModel(respond=lambda messages: ANSWER)
        rt.use_model("fake", s.model)
        yield s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def last_prompt(model: FakeChatModel) -> str:
    """What the model was last sent, without the question itself (which names the secrets)."""
    messages, _ = model.calls[-1]
    return "\n".join(m.content for m in messages).replace(QUESTION, "<question>")


def ask(client: openai.OpenAI, model: str):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])


# -- chat ---------------------------------------------------------------------------------------------
def test_chat_as_a_role_shows_the_model_nothing_outside_its_scope(srv):
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    assert {"secondself", "secondself:interviewer", "secondself:diarist"} <= {m.id for m in c.models.list()}

    ask(c, "secondself")  # the whole person: memories and layer 1 both name the diary's secrets
    whole = last_prompt(srv.model)
    assert "quokkaville" in leaks(whole.split("Memories:")[0])  # layer 1 (biography, facts) ...
    assert leaks(whole.split("Memories:")[1])                   # ... and the retrieved memories

    r = ask(c, "secondself:interviewer")
    prompt = last_prompt(srv.model)
    assert leaks(prompt) == [], prompt
    assert INSTRUCTIONS in prompt and "Heronworks" in prompt
    assert "What you know about yourself:" in prompt and "I work at Heronworks" in prompt  # scoped layer 1
    extra = r.model_extra["secondself"]
    assert extra["citations"] and {x["source"] for x in extra["citations"]} == {"work"}

    streamed = c.chat.completions.create(model="secondself:interviewer", stream=True,
                                         messages=[{"role": "user", "content": QUESTION}])
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices) == ANSWER
    assert leaks(last_prompt(srv.model)) == []

    with pytest.raises(openai.NotFoundError):
        ask(c, "secondself:nobody")


def test_a_role_continues_only_its_own_conversations(srv):
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    whole = ask(c, "secondself").model_extra["secondself"]["conversation_id"]
    with pytest.raises(openai.NotFoundError, match="no conversation"):
        c.chat.completions.create(model="secondself:interviewer", extra_body={"conversation_id": whole},
                                  messages=[{"role": "user", "content": "and then?"}])


# -- /api -----------------------------------------------------------------------------------------------
def test_api_routes_with_a_role_parameter_stay_inside_its_scope(srv):
    url = srv.url + "/api"
    q = {"q": "Quokkaville marmalade Zelinda river", "k": 10}
    assert {h["source"] for h in httpx.get(url + "/search", params=q).json()["results"]} == {"diary", "work"}
    scoped = httpx.get(url + "/search", params={**q, "role": "interviewer"}).json()["results"]
    assert scoped and {h["source"] for h in scoped} == {"work"}
    assert leaks(json.dumps(scoped)) == []
    # a request can narrow the scope, never widen it
    assert httpx.get(url + "/search", params={**q, "role": "interviewer", "source": "diary"}).json()["results"] == []
    assert httpx.get(url + "/search", params={**q, "role": "interviewer", "source": "nope"}).json()["results"] == []
    assert httpx.get(url + "/search", params={**q, "source": "nope"}).status_code == 404  # (no role: an error)

    assert leaks(json.dumps(httpx.get(url + "/profile").json()))
    profile = httpx.get(url + "/profile", params={"role": "interviewer"}).json()["profile"]
    assert leaks(json.dumps(profile)) == [] and profile["biography"] == ""
    assert [f["object"] for f in profile["facts"] if f["predicate"] == "works_at"] == ["Heronworks"]
    assert leaks(json.dumps(httpx.get(url + "/facts").json()))
    assert leaks(json.dumps(httpx.get(url + "/facts", params={"role": "interviewer"}).json())) == []
    assert [s["name"] for s in httpx.get(url + "/sources", params={"role": "interviewer"}).json()["data"]] == ["work"]
    assert httpx.get(url + "/search", params={**q, "role": "nobody"}).json()["error"]["code"] == "role_not_found"


def test_a_role_bound_token_is_confined_on_every_route(srv):
    url = srv.url + "/api"
    with pytest.raises(ConfigError, match="only the chat and read"), srv.runtime.lock:
        tokens.create(srv.runtime.store, "w", ["write"], role="interviewer")
    with pytest.raises(RoleNotFoundError), srv.runtime.lock:
        tokens.create(srv.runtime.store, "x", ["read"], role="nobody")
    admin = srv.token("admin")
    made = httpx.post(url + "/tokens", json={"name": "iv", "scopes": ["chat", "read"], "role": "interviewer"},
                      headers=bearer(admin)).json()
    assert made["role"] == "interviewer"
    h = bearer(made["token"])

    hits = httpx.get(url + "/search", params={"q": "Quokkaville marmalade Zelinda", "k": 10}, headers=h).json()["results"]
    assert hits and leaks(json.dumps(hits)) == []
    refused = httpx.get(url + "/search", params={"q": "x", "role": "diarist"}, headers=h)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "role_forbidden"
    assert [s["name"] for s in httpx.get(url + "/sources", headers=h).json()["data"]] == ["work"]
    assert leaks(json.dumps(httpx.get(url + "/profile", headers=h).json())) == []
    assert leaks(json.dumps(httpx.get(url + "/profile", params={"version": 1}, headers=h).json())) == []
    assert leaks(json.dumps(httpx.get(url + "/facts", headers=h).json())) == []
    assert [r["name"] for r in httpx.get(url + "/roles", headers=h).json()["data"]] == ["interviewer"]
    assert httpx.get(url + "/roles/diarist", headers=h).status_code == 403
    # routes that cannot apply a scope refuse the token (fail closed)
    for path in ("/profile/versions", "/profile/diff?a=1", "/jobs", "/adapters"):
        r = httpx.get(url + path, headers=h)
        assert r.status_code == 403 and "confined to the role" in r.json()["error"]["message"], path
    # the same routes with an admin token: the whole person
    assert leaks(json.dumps(httpx.get(url + "/profile", headers=bearer(admin)).json()))


def test_a_role_bound_token_chats_only_as_its_role(srv):
    with srv.runtime.lock:
        secret = tokens.create(srv.runtime.store, "iv", ["chat"], role="interviewer")[1]
    c = openai.OpenAI(base_url=srv.url + "/v1", api_key=secret, max_retries=0)
    assert [m.id for m in c.models.list()] == ["secondself:interviewer"]
    for other in ("secondself", "secondself:diarist", "secondself:personal", "secondself:nobody", "gpt-4"):
        with pytest.raises(openai.PermissionDeniedError):
            ask(c, other)
    assert srv.model.calls == []  # refused before anything was retrieved or generated
    own = ask(c, "secondself:interviewer").model_extra["secondself"]
    assert leaks(last_prompt(srv.model)) == []

    unbound = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.token("chat"), max_retries=0)
    theirs = ask(unbound, "secondself").model_extra["secondself"]["conversation_id"]
    listed = httpx.get(srv.url + "/api/conversations", headers=bearer(secret)).json()["data"]
    assert [x["id"] for x in listed] == [own["conversation_id"]]
    assert httpx.get(f"{srv.url}/api/conversations/{theirs}", headers=bearer(secret)).status_code == 404
    with pytest.raises(openai.NotFoundError, match="no conversation"):
        c.chat.completions.create(model="secondself:interviewer", extra_body={"conversation_id": theirs},
                                  messages=[{"role": "user", "content": "and then?"}])


# -- MCP ------------------------------------------------------------------------------------------------
async def call(url: str, secret: str | None, name: str, args: dict):
    headers = bearer(secret) if secret else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        return await client.call_tool(name, args)


def dump(result) -> str:
    return json.dumps(result.structured_content) + "".join(getattr(c, "text", "") for c in result.content)


TOOL_CALLS = [("search_memory", {"query": "Quokkaville marmalade Zelinda river", "k": 10}),
              ("search_memory", {"query": "Quokkaville marmalade", "source": "diary"}),
              ("read_profile", {}), ("read_profile", {"section": "people"}), ("list_sources", {}),
              ("ask", {"question": QUESTION})]


def test_mcp_tools_as_a_role_and_with_a_role_bound_token(srv):
    for name, args in TOOL_CALLS:  # no token yet: this machine, the whole person, then as the role
        whole = anyio.run(call, srv.url, None, name, args)
        assert not whole.is_error and (leaks(dump(whole)) or name == "ask"), name
        scoped = anyio.run(call, srv.url, None, name, {**args, "role": "interviewer"})
        assert not scoped.is_error and leaks(dump(scoped)) == [], (name, dump(scoped))
    assert leaks(last_prompt(srv.model)) == []  # what `ask` sent the model
    roles = anyio.run(call, srv.url, None, "list_roles", {}).structured_content["result"]
    assert {r["name"]: r["scope"] for r in roles} == {"diarist": "sources diary", "interviewer": "sources work"}

    with srv.runtime.lock:
        bound = tokens.create(srv.runtime.store, "iv", ["chat", "read"], role="interviewer")[1]
    for name, args in TOOL_CALLS:
        result = anyio.run(call, srv.url, bound, name, args)
        assert not result.is_error and leaks(dump(result)) == [], (name, dump(result))
        other = anyio.run(call, srv.url, bound, name, {**args, "role": "diarist"})
        assert other.is_error and "confined to the role 'interviewer'" in dump(other), name
    assert leaks(last_prompt(srv.model)) == []
    listed = anyio.run(call, srv.url, bound, "list_roles", {}).structured_content["result"]
    assert [r["name"] for r in listed] == ["interviewer"]
    added = anyio.run(call, srv.url, bound, "add_memory", {"text": "Quokkaville is lovely."})
    assert added.is_error


# -- scopes in the library ------------------------------------------------------------------------------
@pytest.fixture
def rt(tmp_path, backend):
    from secondself.ingest.pipeline import ingest
    from secondself.runtime import Runtime

    runtime = Runtime.from_options(overrides={"embedder": "hashing"})
    for name, files in (("work", WORK), ("diary", DIARY)):
        folder = tmp_path / name
        folder.mkdir()
        for f, text in files.items():
            (folder / f).write_text(text)
        ingest(runtime.store, runtime.embedder, [folder], source_name=name)
    (tmp_path / "undated").mkdir()
    (tmp_path / "undated" / "misc.txt").write_text("Heronworks pipeline notes without a date.")
    ingest(runtime.store, runtime.embedder, [tmp_path / "undated"], source_name="undated")
    yield runtime
    runtime.close()


def found(rt, scope: Scope, query: str = "Heronworks pipeline Quokkaville marmalade", **filters) -> set[str]:
    hits = ScopedSearcher(rt.searcher, scope).search(query, k=20, filters=SearchFilters(**filters))
    return {h.chunk.path for h in hits}


def test_tag_scopes_resolve_at_search_time_and_an_empty_scope_finds_nothing(rt):
    everything = found(rt, Scope())
    assert {p for p in everything if "move" in p} and "misc.txt" in everything
    tagged = Scope(tags=("job",))
    assert found(rt, tagged) == set()  # no source carries the tag yet: nothing, not everything
    tag_source(rt.store, "work", "job")
    tag_source(rt.store, "work", "job")  # idempotent
    assert source_tags(rt.store) == {"work": ("job",)}
    assert found(rt, tagged) == set(WORK) & everything and found(rt, tagged)
    assert found(rt, Scope(sources=("undated",), tags=("job",))) == found(rt, tagged) | {"misc.txt"}
    assert untag_source(rt.store, "work", "job") and not untag_source(rt.store, "work", "job")
    assert found(rt, tagged) == set()
    with pytest.raises(ConfigError):
        tag_source(rt.store, "work", "no spaces")


def test_date_scopes_and_intersection_with_request_filters(rt):
    spring = Scope(since="2025-03-01", until="2025-04-30")
    assert found(rt, spring) == {"2025-03-20-planning.md", "2025-04-11-incident.md", "2025-03-08-river.md",
                                 "2025-04-19-garden.md"}  # undated memories are outside any date range
    work = Scope(sources=("work",))
    assert found(rt, work, sources=("diary",)) == set()          # outside the scope: nothing
    assert found(rt, work, sources=("nope",)) == set()           # unknown: nothing either, and no error
    assert found(rt, work, sources=("work", "diary")) == found(rt, work)
    assert found(rt, spring, until="2025-02-01") == set()        # an empty date intersection
    assert found(rt, spring, since="2025-04-01") == {"2025-04-11-incident.md", "2025-04-19-garden.md"}
    assert found(rt, Scope(sources=("work",), until="2025-02-14")) == {"2025-01-10-standup.md",
                                                                        "2025-02-14-review.md"}
    assert narrow(SearchFilters(since="2025-05-01"), SearchFilters(until="2025-04-30")) is None
    both = narrow(SearchFilters(("a", "b"), speaker="Ana"), SearchFilters(("b", "c"), since="2025-01-01"))
    assert both is not None and both.sources == ("b",) and both.speaker == "Ana" and both.since.startswith("2025")


def test_the_scoped_searcher_checks_every_hit_against_the_store(rt):
    """Even a searcher that ignores filters cannot hand a role what is outside its scope."""
    class Leaky:
        store, embedder = rt.store, rt.embedder

        def search(self, query, k=5, filters=None, mode="hybrid", candidates=50):
            return rt.searcher.search(query, k=k)

    hits = ScopedSearcher(Leaky(), Scope(sources=("work",))).search("Quokkaville marmalade Zelinda", k=20)
    assert hits and {h.chunk.source for h in hits} == {"work"}


def test_scoped_profile_keeps_only_what_comes_from_inside_the_scope(rt):
    ids = {c.path: c.id for c in rt.store.all_chunks()}
    work, diary = ids["2025-01-10-standup.md"], ids["2025-01-05-move.md"]
    profile = Profile(version=1, built_at="", person="me", biography="Lives in Quokkaville.", biography_second="",
                      status=Status("2025-05-25", "Quokkaville.", ""),
                      facts=(Fact("me", "works_at", "Heronworks", sources=(work,)),
                             Fact("me", "lives_in", "Quokkaville", sources=(diary,)),
                             Fact("me", "partner", "Zelinda", sources=(work, diary)),  # partly outside
                             Fact("me", "job_title", "engineer", origin="person"),      # from no memory
                             Fact("me", "plays_in", "Heron FC", sources=(999_999,))))    # a deleted memory
    scoped = scoped_profile(profile, Scope(sources=("work",)), rt.store)
    assert [f.object for f in scoped.facts] == ["Heronworks"]
    assert scoped.biography == "" and scoped.status.recent == "" and scoped.status.as_of == "2025-05-02"
    assert scoped_profile(profile, Scope(), rt.store) is profile


def test_roles_crud_and_validation(rt):
    store = rt.store
    role = create_role(store, "interviewer", "Be brief.", Scope(sources=("work",)), model="fake:hi")
    assert role.model_id == "secondself:interviewer" and get_role(store, "interviewer") == role
    with pytest.raises(ConfigError, match="exists"):
        create_role(store, "interviewer")
    for bad in ("personal", "no spaces", "", "-x"):
        with pytest.raises(ConfigError):
            create_role(store, bad)
    with pytest.raises(ConfigError, match="personal model"):
        create_role(store, "x", scope=Scope(sources=("work",)), model="personal")
    assert create_role(store, "everyone", model="personal").model == "personal"  # no scope: allowed
    with pytest.raises(ConfigError, match="unknown model"):
        create_role(store, "x", model="no-such-model")
    with pytest.raises(ConfigError, match="reversed"):
        Scope(since="2025-05-01", until="2025-01-01")
    with pytest.raises(ConfigError, match="cannot read the date"):
        Scope(since="last spring")
    with pytest.raises(ConfigError, match="personal model"):
        update_role(store, "everyone", scope=Scope(tags=("job",)))
    changed = update_role(store, "interviewer", instructions="Be kind.", model="")
    assert changed.instructions == "Be kind." and changed.model is None and changed.scope == role.scope
    tokens.create(store, "iv", ["chat"], role="interviewer")
    with pytest.raises(ConfigError, match="revoke them first"):
        delete_role(store, "interviewer")
    tokens.revoke(store, "iv")
    delete_role(store, "interviewer")
    assert [r.name for r in list_roles(store)] == ["everyone"]
    with pytest.raises(RoleNotFoundError):
        get_role(store, "interviewer")


def test_role_confinement_rules():
    from secondself.roles import confine

    assert confine(None, None) is None and confine(None, "a") == "a"
    assert confine("a", None) == "a" and confine("a", "a") == "a"
    with pytest.raises(RoleForbiddenError):
        confine("a", "b")


# -- CLI ------------------------------------------------------------------------------------------------
def run(capsys, *args: str) -> tuple[int, str, str]:
    from secondself.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--embedder", "hashing", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_roles_tags_and_bound_tokens(capsys, tmp_path, backend):
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.md").write_text("I work at Heronworks.")
    assert run(capsys, "ingest", str(work))[0] == 0
    code, out, err = run(capsys, "role", "create", "interviewer", "--instructions", "Keep to work.",
                         "--sources", "work,cv", "--since", "2025-01-01", "--json")
    made = json.loads(out)
    assert code == 0 and made["scope"]["sources"] == ["work", "cv"] and made["model_id"] == "secondself:interviewer"
    assert "no source named 'cv' yet" in err
    assert "interviewer" in run(capsys, "role", "list")[1]
    code, out, _ = run(capsys, "role", "edit", "interviewer", "--tags", "job", "--since", "", "--model", "fake:hi",
                       "--json")
    edited = json.loads(out)
    assert edited["scope"] == {"sources": ["work", "cv"], "tags": ["job"], "since": None, "until": None}
    assert edited["model"] == "fake:hi" and edited["instructions"] == "Keep to work."
    assert "sources tagged job" in run(capsys, "role", "show", "interviewer")[1]
    assert run(capsys, "role", "create", "personal")[0] == 2

    assert run(capsys, "tag", "add", "work", "job", "cv")[1].strip() == "work: cv, job"
    assert json.loads(run(capsys, "tag", "list", "--json")[1]) == {"work": ["cv", "job"]}
    assert run(capsys, "tag", "remove", "work", "cv")[1].strip() == "work: job"
    assert run(capsys, "tag", "add", "nope", "job")[0] == 2

    code, out, _ = run(capsys, "token", "create", "--scope", "chat", "--role", "interviewer", "--json")
    assert code == 0 and json.loads(out)["role"] == "interviewer"
    assert run(capsys, "token", "create", "--scope", "admin", "--role", "interviewer")[0] == 2
    assert "role interviewer" in run(capsys, "token", "list")[1]
    code, _, err = run(capsys, "role", "delete", "interviewer")
    assert code == 2 and "revoke them first" in err
    assert run(capsys, "token", "revoke", "token-1")[0] == 0
    assert run(capsys, "role", "delete", "interviewer")[0] == 0
    assert "no roles yet" in run(capsys, "role", "list")[1]


def test_cli_ask_as_a_role_reads_only_its_memories(capsys, tmp_path, monkeypatch, backend):
    monkeypatch.setenv("SECONDSELF_PERSONA_MODEL", f"fake:{ANSWER}")
    for source, files in (("work", WORK), ("diary", DIARY)):
        folder = tmp_path / source
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        assert run(capsys, "ingest", str(folder))[0] == 0
    assert run(capsys, "role", "create", "interviewer", "--sources", "work")[0] == 0
    everything = json.loads(run(capsys, "ask", "--json", QUESTION)[1])
    assert any(p["source"] == "diary" for p in everything["passages"])  # without the role the diary is read
    code, out, _ = run(capsys, "ask", "--json", "--role", "interviewer", QUESTION)
    scoped = json.loads(out)
    assert code == 0 and scoped["passages"] and {p["source"] for p in scoped["passages"]} == {"work"}
    assert run(capsys, "ask", "--role", "nobody", QUESTION)[0] == 2
    hits = json.loads(run(capsys, "search", "--json", "--role", "interviewer", "Quokkaville marmalade")[1])["results"]
    assert all(h["source"] == "work" for h in hits)
    assert any(h["source"] == "diary" for h in json.loads(run(capsys, "search", "--json", "Quokkaville")[1])["results"])
