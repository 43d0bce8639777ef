"""Bridge mode on the example person: minimal disclosure under a policy, the critique, the expert round trip
(a real local OpenAI-compatible server), the run log, the CLI and the HTTP routes."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES

from secondself import bridge
from secondself.backends.chat import FakeChatModel
from secondself.backends.fake_openai_server import FakeOpenAIServer
from secondself.backends.openai_compat import OpenAIChatModel
from secondself.bridge import Policy
from secondself.errors import ConfigError, EndpointError, SourceNotFoundError
from secondself.prompts import render
from secondself.runtime import Runtime

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

RESTAURANT = "Book a restaurant for Friday."
SETTINGS = {"embedder": "hashing", "person_name": "Maya", "persona_model": "fake", "teacher_model": "fake"}
# What a restaurant booking has no business knowing (all of it is in Maya's memories).
SECRETS = ("48000", "48,000", "salary", "Tomás", "Porto", "Atlântico", "penicillin", "Rua dos Anjos", "cello")
STEAKHOUSE = "Book Churrasqueira Gaúcha, a steakhouse in Porto, for Friday at 20:00."
VEGGIE = "Book Ao 26, a vegetarian restaurant in Lisbon, for Friday at 20:00; ask for the peanut-free menu."


def _build_into(tmp_path_factory, settings: dict) -> Path:
    """Maya's corpus ('maya') plus a private note ('private', tagged 'secret'), layer 1 built; the home."""
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.memory.fakes import slot_teacher

    home = tmp_path_factory.mktemp("bridge-home")
    notes = tmp_path_factory.mktemp("private")
    (notes / "2025-11-30-food.md").write_text("# Food\n\nI am allergic to peanuts, badly.\n", encoding="utf-8")
    rt = Runtime.from_options(str(home), {**SETTINGS, **settings})
    ingest(rt.store, rt.embedder, [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
    ingest(rt.store, rt.embedder, [notes], source_name="private", person_name="Maya")
    build(rt.store, rt.embedder.name, slot_teacher(), "Maya", BuildOptions(slots=False))
    with rt.store.transaction(memory=False) as db:
        db.execute("INSERT INTO source_tags (source_id, tag) VALUES (?, 'secret')", (rt.store.source_id("private"),))
        db.execute("INSERT INTO source_tags (source_id, tag) VALUES (?, 'everyday')", (rt.store.source_id("maya"),))
    rt.close()
    return home


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The built person's SQLite database, once per module."""
    return _build_into(tmp_path_factory, {"store_url": ""}) / "persons" / "me" / "memory.sqlite3"


@pytest.fixture(scope="module")
def built_pg(pg_server, tmp_path_factory):
    """`built` as a Postgres database (each test gets a copy of it)."""
    from conftest import pg_create, pg_drop

    name = pg_create(pg_server)
    _build_into(tmp_path_factory, {"store_url": pg_server.get_uri(database=name)})
    yield name
    pg_drop(pg_server, name)


@pytest.fixture
def home(built, tmp_path, backend_kind, request, monkeypatch) -> Path:
    """A fresh copy of the built person for each test (runs are logged into it), on the test's backend."""
    h = tmp_path / "home"
    (h / "persons" / "me").mkdir(parents=True)
    if backend_kind == "sqlite":
        shutil.copy(built, h / "persons" / "me" / "memory.sqlite3")
        return h
    from conftest import pg_create, pg_drop

    server = request.getfixturevalue("pg_server")
    name = pg_create(server, request.getfixturevalue("built_pg"))
    request.addfinalizer(lambda: pg_drop(server, name))
    monkeypatch.setenv("SECONDSELF_STORE_URL", server.get_uri(database=name))
    return h


@pytest.fixture
def rt(home):
    notices: list[str] = []
    runtime = Runtime.from_options(str(home), SETTINGS, notify=notices.append)
    runtime.notices = notices
    yield runtime
    runtime.close()


def keys(items) -> set[str]:
    return {i.key for i in items}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- enhance: what is disclosed ------------------------------------------------------------------------------
def test_a_restaurant_request_discloses_diet_and_city_and_nothing_else(rt):
    e = bridge.enhance(rt, RESTAURANT)
    assert keys(e.disclosed) == {"Lisbon", "vegetarian", "peanuts"}
    texts = [i.text for i in e.disclosed]
    assert "I live in Lisbon." in texts and any("vegetarian" in t for t in texts)
    assert e.text == RESTAURANT + " For context: " + " ".join(texts)   # the personal model's training format
    for secret in SECRETS:
        assert secret.casefold() not in e.text.casefold()
    for item in e.disclosed:       # each disclosure names the chunks it comes from
        assert item.provenance and all(isinstance(c, int) and s in ("maya", "private") for c, s, _ in item.provenance)
    logged = bridge.get_run(rt.store, e.run_id).to_dict()
    assert logged["kind"] == "enhance" and logged["status"] == "done"
    step = logged["steps"][0]
    assert step["output"] == e.text and step["model"] == "template"
    assert [d["text"] for d in step["disclosed"]] == texts and step["disclosed"][0]["chunks"][0]["chunk_id"]


def test_a_request_that_needs_nothing_personal_discloses_nothing(rt):
    e = bridge.enhance(rt, "Explain how a binary search works.")
    assert e.disclosed == [] and e.text == "Explain how a binary search works."


def test_search_adds_a_short_statement_of_mine_but_no_anecdote_about_others(rt):
    sourdough = bridge.enhance(rt, "Suggest sourdough recipes.")
    found = [i for i in sourdough.disclosed if i.reason.startswith("found for")]
    assert [i.text for i in found] == ["Since I moved to Lisbon my sourdough keeps overproofing."]
    gym = bridge.enhance(rt, "Find me a bouldering gym.")     # the memories tell of Inês, Ikebukuro, a sprain
    assert [i.text for i in gym.disclosed] == ["I live in Lisbon."]


def test_a_hedged_sentence_is_not_disclosed_as_a_detail(rt):
    e = bridge.enhance(rt, "Find me a climbing gym near where I live.")
    assert "Lisbon" in " ".join(i.text for i in e.disclosed)
    assert not [i.text for i in e.disclosed if "I think" in i.text or "could" in i.text]


def test_details_the_request_already_states_are_not_repeated(rt):
    e = bridge.enhance(rt, "Book a vegetarian restaurant in Lisbon for Friday.")
    assert keys(e.disclosed) == {"peanuts"}


@pytest.mark.parametrize("policy, removed", [
    (Policy(never_share=("source:private",)), {"peanuts"}),
    (Policy(never_share=("tag:secret",)), {"peanuts"}),
    (Policy(sources=("maya",)), {"peanuts"}),
    (Policy(tags=("everyday",)), {"peanuts"}),
    (Policy(never_share=("lisbon",)), {"Lisbon"}),                       # case-insensitive, a fact
    (Policy(never_share=("VEGETARIAN",)), {"vegetarian"}),               # a memory, in every source it is in
    (Policy(never_share=("source:maya",)), {"Lisbon", "vegetarian"}),    # facts derived only from that source
])
def test_excluding_a_source_tag_or_term_removes_exactly_those_details(rt, policy, removed):
    baseline = bridge.enhance(rt, RESTAURANT)
    e = bridge.enhance(rt, RESTAURANT, policy)
    assert keys(e.disclosed) == keys(baseline.disclosed) - removed
    for key in removed:
        assert key.casefold() not in e.text.casefold()
    assert removed <= {i.key for i, _ in e.withheld}
    assert [i.text for i in e.disclosed] == [i.text for i in baseline.disclosed if i.key not in removed]


@pytest.mark.parametrize("request_", [RESTAURANT, "Plan my week.", "What should I pack for a trip to Japan?",
                                      "Find me a gym nearby.", "Draft an email asking my manager for a day off."])
def test_enhance_never_discloses_a_memory_from_an_excluded_source(rt, request_):
    open_ = bridge.enhance(rt, request_)
    assert any("maya" in i.sources for i in open_.disclosed)        # so the exclusion below has work to do
    e = bridge.enhance(rt, request_, Policy(never_share=("source:maya",)))
    assert all(src != "maya" for i in e.disclosed for _, src, _ in i.provenance)
    for item in open_.disclosed:
        if item.sources == ("maya",):
            assert item.key.casefold() not in e.text.casefold()


def test_a_policy_naming_an_unknown_source_or_tag_is_an_error(rt):
    with pytest.raises(SourceNotFoundError):
        bridge.enhance(rt, RESTAURANT, Policy(never_share=("source:jornal",)))
    with pytest.raises(ConfigError, match="no source is tagged"):
        bridge.enhance(rt, RESTAURANT, Policy(tags=("secrt",)))


# -- enhance: a model's rewrite is checked ---------------------------------------------------------------------
@pytest.mark.parametrize("rewrite, problem", [
    ("Please book a restaurant for Friday in Lisbon: I'm vegetarian and allergic to peanuts.", None),
    ("Please book a restaurant for Friday in Lisbon for me and Tomás: I'm vegetarian and allergic to peanuts.",
     "Tomás"),                                                   # a name that was not selected
    ("Please book a restaurant for Friday in Lisbon for a data engineer who is vegetarian and allergic to peanuts.",
     "engineer"),                                                # a current fact that was not selected
    ("Please book a restaurant for Friday in Lisbon: I'm vegetarian, allergic to peanuts and to penicillin.",
     "penicillin"),                                              # something else the person wrote
    ("Please book a restaurant for Friday in Lisbon.", "leaves out"),           # drops disclosed details
])
def test_a_strong_models_rewrite_is_kept_only_if_it_adds_nothing_unselected(rt, rewrite, problem):
    e = bridge.enhance(rt, RESTAURANT, model=f"fake:{rewrite}")
    if problem is None:
        assert e.text == rewrite and e.model == f"fake:{rewrite}" and not e.note
    else:
        assert e.text == bridge.compose(RESTAURANT, e.disclosed) and e.model == "template"
        assert problem in e.note


def test_a_prompted_model_gets_instructions_as_a_system_prompt_and_its_wrapping_is_removed(rt):
    rewrite = "Please book a restaurant for Friday in Lisbon: I'm vegetarian and allergic to peanuts."
    writer = FakeChatModel([f'Here is the rewritten request:\n"{rewrite}"'])
    rt.use_model("fake:writer", writer)
    e = bridge.enhance(rt, RESTAURANT, model="fake:writer")
    assert e.text == rewrite and e.model == "fake:writer" and not e.note
    (system, user), _ = writer.calls[0]
    assert (system.role, user.role) == ("system", "user")
    assert system.content == render("bridge_enhance_system", person="Maya")
    assert RESTAURANT in user.content and all(i.text in user.content for i in e.disclosed)


def test_a_model_that_does_not_follow_a_system_prompt_gets_one_user_message(rt):
    writer = FakeChatModel(["Book a restaurant for Friday."], name="SmolLM2-135M-Instruct")
    rt.use_model("fake:small", writer)
    e = bridge.enhance(rt, RESTAURANT, model="fake:small")
    assert [m.role for m in writer.calls[0][0]] == ["user"]
    assert render("bridge_enhance_system", person="Maya") in writer.calls[0][0][0].content
    assert e.model == "template" and "leaves out" in e.note        # its text was checked, and fell back


@pytest.mark.parametrize("feedback, problem", [
    ("You suggest a steakhouse in Porto, but I live in Lisbon now and I am vegetarian; I am also allergic to "
     "peanuts. Please suggest a vegetarian place in Lisbon.", None),
    ("The answer is wrong about the city and the food.", "first-person"),         # not in my voice
    ("I am vegetarian and allergic to peanuts, and I went to Porto with Tomás.", "Tomás"),  # adds a name
    ("I am vegetarian and allergic to peanuts.", "leaves out"),    # drops the correction about the move
    ("1. I live in Lisbon now, not in Porto.\n2. I am vegetarian, so no steakhouse.\n3. I am allergic to peanuts.",
     None),                                                      # a list: its numbers are not new numbers
])
def test_a_models_feedback_is_kept_only_if_it_keeps_every_correction_and_adds_nothing(rt, feedback, problem):
    rt.use_model("fake:writer", FakeChatModel([feedback]))
    c = bridge.critique(rt, RESTAURANT, STEAKHOUSE, model="fake:writer")
    if problem is None:
        assert c.text == " ".join(re.sub(r"^\d\. ", "", line) for line in feedback.splitlines())
        assert c.model == "fake:writer" and not c.note
    else:
        assert c.model == "template" and c.text.startswith("This assumes I live in Porto") and problem in c.note


def test_a_rewrite_with_a_never_share_term_is_rejected(rt):
    e = bridge.enhance(rt, RESTAURANT, Policy(never_share=("peanut",)),
                       model="fake:Please book a restaurant for Friday in Lisbon; I'm vegetarian, no peanuts.")
    assert e.model == "template" and "peanut" not in e.text


def _personal_adapter(rt, model: FakeChatModel):
    """A registered adapter whose model is a fake, injected through the runtime's real lookup."""
    path = rt.settings.person_dir / "adapters" / "v001"
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "secondself.json").write_text(json.dumps({"base_dir": str(path)}))
    rt.store.set_meta("adapter_current", "v001")
    rt.use_model(f"personal:{path}", model)


def test_the_personal_model_is_asked_in_its_training_format_and_checked(rt):
    from secondself.train.templates import enhance as training_examples
    from secondself.types import Fact

    personal = FakeChatModel(["Book a restaurant for Friday. For context: I live in Lisbon and I am vegetarian, "
                              "allergic to peanuts.",
                              "Book a restaurant for Friday. For context: I live in Lisbon. I am vegetarian, allergic "
                              "to peanuts and to penicillin."])
    _personal_adapter(rt, personal)
    e = bridge.enhance(rt, RESTAURANT)
    assert e.model == "personal" and "I live in Lisbon and I am vegetarian" in e.text
    system, user = personal.calls[0][0]
    sample = training_examples([Fact("Maya", "lives_in", "Lisbon")], "Maya", {})[0]
    assert (system.role, system.content) == sample.prompt[0] == ("system", render("enhance_system", person="Maya"))
    assert (user.role, user.content) == ("user", RESTAURANT)
    second = bridge.enhance(rt, RESTAURANT)            # what it learned but was not selected: rejected
    assert second.model == "template" and "penicillin" in second.note and "penicillin" not in second.text


# -- critique ---------------------------------------------------------------------------------------------------
def test_the_critique_flags_what_contradicts_the_person(rt):
    c = bridge.critique(rt, RESTAURANT, STEAKHOUSE)
    wrong = [p.text for p in c.points if p.kind == "wrong"]
    assert any("Porto" in t and "Now I live in Lisbon" in t for t in wrong)
    assert any("steakhouse" in t and "vegetarian" in t for t in wrong)
    assert any(p.kind == "missed" and p.item.key == "peanuts" for p in c.points)
    assert c.text.startswith("This assumes I live in Porto") and "Tomás" not in c.text
    assert bridge.get_run(rt.store, c.run_id).steps[0]["points"]


def test_the_critique_of_a_fitting_answer_is_empty(rt):
    c = bridge.critique(rt, RESTAURANT, VEGGIE)
    assert c.points == [] and "nothing to correct" in c.text


@pytest.mark.parametrize("answer", ["Book a vegetarian alternative to a steakhouse, in Lisbon; peanut-free.",
                                    "In Lisbon, pick a place with no meat or fish on the menu and no peanuts."])
def test_negated_mentions_are_not_contradictions(rt, answer):
    c = bridge.critique(rt, RESTAURANT, answer)
    assert [p for p in c.points if p.kind == "wrong"] == []


def test_critique_points_obey_the_policy(rt):
    c = bridge.critique(rt, RESTAURANT, STEAKHOUSE, Policy(never_share=("vegetarian",)))
    assert "vegetarian" not in c.text and any("vegetarian" in i.text for i, _ in c.withheld)


# -- ask: the round trip ----------------------------------------------------------------------------------------
def test_ask_logs_every_step_and_the_critique_catches_a_planted_contradiction(rt):
    with FakeOpenAIServer([STEAKHOUSE, VEGGIE]) as srv:
        run = bridge.ask(rt, RESTAURANT, srv.base_url, rounds=2)
    assert [s["step"] for s in run.steps] == ["enhance", "expert", "critique", "expert_2", "critique_2", "final"]
    assert run.status == "done" and run.final == VEGGIE
    assert run.steps[1]["model"] == f"openai:fake-model@{srv.base_url}"      # the first model the endpoint lists
    sent = [r["messages"] for r in srv.requests]
    assert sent[0] == [{"role": "user", "content": run.steps[0]["output"]}]
    critique = run.steps[2]
    assert any(p["kind"] == "wrong" and "steakhouse" in p["text"] for p in critique["points"])
    assert critique["output"] in sent[1][-1]["content"] and sent[1][1]["content"] == STEAKHOUSE
    assert run.steps[4]["points"] == []
    for step in run.steps[:5]:
        assert {"step", "model", "input", "output"} <= set(step)
    assert bridge.get_run(rt.store, run.id).to_dict() == json.loads(json.dumps(run.to_dict()))


def test_an_excluded_detail_never_reaches_the_expert_in_any_round(rt):
    with FakeOpenAIServer([STEAKHOUSE, STEAKHOUSE]) as srv:
        bridge.ask(rt, RESTAURANT, srv.base_url, Policy(never_share=("source:private",)), rounds=2)
    assert len(srv.requests) == 2 and "peanut" not in json.dumps(srv.requests).casefold()


def test_an_expert_that_is_down_fails_clearly_and_the_run_is_logged(rt):
    spec = f"openai:m@http://127.0.0.1:{free_port()}/v1"
    rt.use_model(spec, OpenAIChatModel(spec.split("@", 1)[1], "m", max_retries=0))
    with pytest.raises(EndpointError, match=r"cannot reach .* failed at the expert step") as e:
        bridge.ask(rt, RESTAURANT, spec)
    run = bridge.get_run(rt.store, e.value.run_id)
    assert run.status == "failed" and [s["step"] for s in run.steps] == ["enhance", "expert"]
    assert "cannot reach" in run.steps[1]["error"] and run.final is None


def test_a_remote_expert_is_announced_with_exactly_what_is_sent_before_sending(rt):
    spec = "openai:gpt@https://expert.example/v1"
    seen: list[int] = []
    expert = FakeChatModel([STEAKHOUSE])
    rt.notify = lambda message: (rt.notices.append(message), seen.append(len(expert.calls)))
    rt.use_model(spec, expert)
    run = bridge.ask(rt, RESTAURANT, spec)
    notice = run.steps[1]["notice"]
    assert notice in rt.notices and seen == [0] and len(expert.calls) == 1
    assert "expert.example" in notice and "3 personal detail(s)" in notice
    for d in run.steps[0]["disclosed"]:
        assert d["text"] in notice


def test_dry_run_sends_nothing(rt):
    with FakeOpenAIServer([STEAKHOUSE]) as srv:
        run = bridge.ask(rt, RESTAURANT, srv.base_url, dry_run=True)
    assert srv.requests == [] and run.status == "dry_run" and run.final is None
    assert [s["step"] for s in run.steps] == ["enhance", "expert"] and run.steps[1]["skipped"]


def test_bad_arguments(rt):
    with pytest.raises(ConfigError, match="rounds"):
        bridge.ask(rt, RESTAURANT, "fake", rounds=3)
    with pytest.raises(ConfigError, match="empty"):
        bridge.enhance(rt, "   ")
    with pytest.raises(ConfigError, match="not valid text"):
        bridge.enhance(rt, "a lone surrogate from JSON: \ud800")
    with pytest.raises(ConfigError, match="unknown model"):
        bridge.resolve_expert("gpt-4o")


# -- the CLI ------------------------------------------------------------------------------------------------------
def cli(capsys, monkeypatch, home, *args):
    from secondself.cli import main

    monkeypatch.setenv("SECONDSELF_HOME", str(home))
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    monkeypatch.setenv("SECONDSELF_PERSONA_MODEL", "fake")
    with pytest.raises(SystemExit) as e:
        main(["--embedder", "hashing", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_enhance_json_and_text(capsys, monkeypatch, home):
    code, out, err = cli(capsys, monkeypatch, home, "bridge", "enhance", RESTAURANT, "--json",
                         "--never-share", "source:private")
    assert code == 0, err
    data = json.loads(out)
    assert {d["text"] for d in data["disclosed"]} >= {"I live in Lisbon."} and "peanut" not in data["enhanced"]
    assert data["withheld"][0]["why"].startswith("from 'private'") and data["run_id"] == 1
    code, out, _ = cli(capsys, monkeypatch, home, "bridge", "enhance", RESTAURANT)
    assert code == 0 and "For context: I live in Lisbon." in out and "disclosed (3):" in out


def test_cli_ask_dry_run_then_for_real_then_the_log(capsys, monkeypatch, home):
    with FakeOpenAIServer([STEAKHOUSE]) as srv:
        code, out, err = cli(capsys, monkeypatch, home, "bridge", "ask", "--expert", srv.base_url, "--dry-run",
                             RESTAURANT)
        assert code == 0, err
        assert "For context: I live in Lisbon." in out and "nothing was sent" in out and srv.requests == []
        code, out, err = cli(capsys, monkeypatch, home, "bridge", "ask", "--expert", srv.base_url, "--json",
                             RESTAURANT)
    assert code == 0, err
    run = json.loads(out)
    assert run["final"] == STEAKHOUSE and "steakhouse" in run["steps"][2]["output"]
    code, out, _ = cli(capsys, monkeypatch, home, "bridge", "log")
    assert code == 0 and "dry_run" in out and "done" in out
    code, out, _ = cli(capsys, monkeypatch, home, "bridge", "log", str(run["id"]))
    assert "── critique" in out and "This assumes I live in Porto" in out


def test_cli_critique_and_errors(capsys, monkeypatch, home, tmp_path):
    answer = tmp_path / "answer.txt"
    answer.write_text(STEAKHOUSE, encoding="utf-8")
    code, out, _ = cli(capsys, monkeypatch, home, "bridge", "critique", RESTAURANT, "--answer-file", str(answer))
    assert code == 0 and "steakhouse" in out and "[wrong]" in out
    code, _, err = cli(capsys, monkeypatch, home, "bridge", "critique", RESTAURANT)
    assert code == 2 and "--answer" in err
    code, _, err = cli(capsys, monkeypatch, home, "bridge", "ask", "--expert",
                       f"http://127.0.0.1:{free_port()}/v1", RESTAURANT)
    assert code == 2 and "cannot list the models" in err
    code, _, err = cli(capsys, monkeypatch, home, "bridge", "log", "99")
    assert code == 2 and "no bridge run with id 99" in err


# -- HTTP -----------------------------------------------------------------------------------------------------------
def test_http_routes(home):
    from serving import running_server

    with running_server(home, jobs=False, mcp=False) as s, FakeOpenAIServer([STEAKHOUSE]) as srv:
        e = httpx.post(s.url + "/api/bridge/enhance", json={"request": RESTAURANT, "never_share": ["vegetarian"]})
        assert e.status_code == 200 and "vegetarian" not in e.json()["enhanced"]
        c = httpx.post(s.url + "/api/bridge/critique", json={"request": RESTAURANT, "answer": STEAKHOUSE}).json()
        assert any(p["kind"] == "wrong" for p in c["points"])
        run = httpx.post(s.url + "/api/bridge/ask", json={"request": RESTAURANT, "expert": srv.base_url}).json()
        assert run["status"] == "done" and run["final"] == STEAKHOUSE
        assert httpx.get(f"{s.url}/api/bridge/runs/{run['id']}").json()["steps"] == run["steps"]
        assert [r["kind"] for r in httpx.get(s.url + "/api/bridge/runs").json()["data"]] == ["ask", "critique",
                                                                                             "enhance"]
        assert httpx.get(s.url + "/api/bridge/runs/999").status_code == 404
        bad = httpx.post(s.url + "/api/bridge/ask", json={"request": RESTAURANT, "expert": srv.base_url,
                                                          "model": "/some/local/model"})
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("model must be")
        url = f"http://127.0.0.1:{free_port()}/v1"
        s.runtime.use_model(f"openai:m@{url}", OpenAIChatModel(url, "m", max_retries=0))
        down = httpx.post(s.url + "/api/bridge/ask", json={"request": RESTAURANT, "expert_model": "m", "expert": url})
        assert down.status_code == 502 and "failed at the expert step" in down.json()["error"]["message"]
        chat = s.token("chat")
        remote = httpx.post(s.url + "/api/bridge/ask", headers={"Authorization": f"Bearer {chat}"},
                            json={"request": RESTAURANT, "expert": "https://expert.example/v1"})
        assert remote.status_code == 403 and "admin" in remote.json()["error"]["message"]
        reader = s.token("read")
        assert httpx.post(s.url + "/api/bridge/enhance", headers={"Authorization": f"Bearer {reader}"},
                          json={"request": RESTAURANT}).status_code == 403
