"""The layer-1 build on the example person, with the hashing embedder and scripted fake teachers."""

import json
import shutil
from dataclasses import replace

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.backends.embedders import HashingEmbedder
from secondself.errors import BuildError, EndpointError
from secondself.ingest.pipeline import ingest
from secondself.memory import versions as v
from secondself.memory.build import BuildOptions, build, runs
from secondself.memory.fakes import answer_slot, slot_teacher
from secondself.store import Store

from .conftest import EXAMPLES

# its Postgres half runs with --slow (CI): the fast run keeps only the store-level suites on both backends
pytestmark = pytest.mark.slow_on_postgres

CORPUS = EXAMPLES / "maya" / "corpus"
HELD_BACK = ["journal/2025-12-06.md", "journal/2025-12-13.md", "journal/2025-12-24.md", "journal/2025-12-31.md",
             "notes/2025-12-26-gift-ideas.txt"]
EMBEDDER = HashingEmbedder(128)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two databases ingested once: the example person without 5 documents, and all of her."""
    root = tmp_path_factory.mktemp("maya")
    partial = root / "partial"
    shutil.copytree(CORPUS, partial)
    for rel in HELD_BACK:
        (partial / rel).unlink()
    out = {}
    for name, folder in (("partial", partial), ("full", CORPUS)):
        with Store(root / f"{name}.sqlite3") as s:
            ingest(s, EMBEDDER, [folder], source_name="maya", person_name="Maya")
        out[name] = root / f"{name}.sqlite3"
    out["partial_folder"] = partial
    return out


@pytest.fixture(scope="module")
def pg_corpora(corpora, pg_server):
    """The same two corpora as Postgres databases (each test gets a copy: CREATE DATABASE ... TEMPLATE)."""
    from secondself.store.postgres import PgStore

    from .conftest import pg_create, pg_drop

    out = {}
    for name in corpora:
        out[name] = pg_create(pg_server)
        with PgStore(pg_server.get_uri(database=out[name]), "me") as s:
            ingest(s, EMBEDDER, [CORPUS if name == "full" else corpora["partial_folder"]], source_name="maya",
                   person_name="Maya")
    yield out
    for db in out.values():
        pg_drop(pg_server, db)


@pytest.fixture
def open_copy(backend, corpora, tmp_path, request):
    """open_copy("full" | "partial"): a fresh copy of that ingested corpus on the test's backend;
    open_copy(None): an empty store beside it (Postgres: another person in the same database)."""
    from .conftest import pg_create, pg_drop

    opened, databases = [], []

    def open_(name):
        if backend == "sqlite":
            path = tmp_path / f"{name or 'fresh'}.sqlite3"
            if name:
                shutil.copy(corpora[name], path)
            s = Store(path)
        else:
            from secondself.store.postgres import PgStore

            server = request.getfixturevalue("pg_server")
            if name:
                databases.append(pg_create(server, request.getfixturevalue("pg_corpora")[name]))
            s = PgStore(server.get_uri(database=databases[0]), "me" if name else "fresh")
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
    for db in databases:
        pg_drop(request.getfixturevalue("pg_server"), db)


@pytest.fixture
def maya(open_copy):
    return open_copy("full")


def _build(store, teacher=None, **options):
    teacher = teacher or slot_teacher()
    return build(store, EMBEDDER.name, teacher, "Maya", BuildOptions(**options))


def test_build_end_to_end_cites_existing_chunks(maya):
    report = _build(maya)
    assert report.version == 1 and [s.name for s in report.steps] == ["load", "topics", "facts", "shades",
                                                                      "biography", "status", "save"]
    p = v.load_version(maya)
    existing = {c.id for c in maya.all_chunks()}
    # every chunk is in exactly one topic or reported as fitting none: nothing silently dropped
    placed = [c for t in p.topics for c in t.chunks] + list(p.unclustered)
    assert sorted(placed) == sorted(existing)
    assert p.shades and all(e.sources and set(e.sources) <= existing for s in p.shades for e in s.timeline)
    assert p.facts and all(f.sources and set(f.sources) <= existing for f in p.facts)
    assert all(e.date <= p.status.as_of for s in p.shades for e in s.timeline)
    # the scripted teacher's grounded names were accepted
    assert report.slots["teacher"] > 0 and any(" and " in t.name for t in p.topics)
    assert "Maya" in p.biography and p.biography_second.startswith("You ")
    assert p.status.as_of == "2025-12-31"
    facts = {(f.predicate, f.object): f for f in p.facts}
    assert facts[("lives_in", "Lisbon")].valid_from == "2025-07-01"
    assert facts[("lives_in", "Porto")].valid_to == "2025-06-30"


def test_unchanged_memory_is_up_to_date_and_costs_nothing(maya):
    _build(maya)
    teacher = slot_teacher()
    again = _build(maya, teacher)
    assert again.up_to_date and again.version == 1 and teacher.calls == []
    assert len(v.list_versions(maya)) == 1
    full = _build(maya, teacher, full=True)        # same memories + seed: same topics, names from the cache
    assert full.version == 2 and teacher.calls == []
    assert v.diff(v.load_version(maya, 1), v.load_version(maya, 2)) == []


def test_incremental_build_calls_the_teacher_for_what_changed(open_copy):
    s = open_copy("partial")
    first = _build(s)
    ingest(s, EMBEDDER, [CORPUS], source_name="maya", person_name="Maya")
    second = _build(s)
    assert second.new_chunks > 0 and second.version == 2
    assert first.teacher["calls"] > 0 and second.teacher["calls"] <= 0.25 * first.teacher["calls"]
    assert second.changes                                              # the diff is reported


def test_failed_build_names_its_step_and_resumes(maya, open_copy):
    calls = {"n": 0}

    def flaky(messages):
        calls["n"] += 1
        if calls["n"] > 7:
            raise EndpointError("cannot reach http://127.0.0.1:9/v1: connection refused")
        return answer_slot(messages)

    with pytest.raises(BuildError, match="step 'topics'.*connection refused"):
        _build(maya, FakeChatModel(name="scripted-teacher", respond=flaky))
    failed = runs(maya, 1)[0]
    assert failed["status"] == "failed" and failed["step"] == "topics"
    assert v.current_version(maya) is None                            # no half-written profile
    teacher = slot_teacher()
    resumed = _build(maya, teacher)
    assert resumed.resumed and "topics" in resumed.resumed and resumed.version == 1
    scratch = slot_teacher()
    fresh = open_copy(None)
    ingest(fresh, EMBEDDER, [CORPUS], source_name="maya", person_name="Maya")
    _build(fresh, scratch)
    assert len(teacher.calls) < len(scratch.calls)                     # finished names were kept


def test_malformed_teacher_output_falls_back_and_is_counted(maya):
    report = _build(maya, FakeChatModel(respond=lambda m: "{{{ not json, not a name at all, just noise"))
    p = v.load_version(maya)
    assert report.version == 1 and report.slots["fallback"] > 0 and report.slots["teacher"] == 0
    assert all(t.name and t.summary for t in p.topics)                 # fallbacks filled every slot


def test_edits_and_pins_survive_rebuilds_and_rollback_restores(maya):
    _build(maya)
    v.edit_section(maya, "biography", "Maya, in her own words.")
    p = v.load_version(maya)
    lisbon = next(f for f in p.facts if f.object == "Lisbon")
    v.set_override(maya, "pin", lisbon.id, v.fact_dict(lisbon))
    v.refresh(maya, "pin")
    maya.delete_source("maya")                                           # every memory gone
    ingest(maya, EMBEDDER, [CORPUS / "notes"], source_name="notes", person_name="Maya")
    rebuilt = _build(maya)
    p2 = v.load_version(maya)
    assert p2.biography == "Maya, in her own words." and "biography" in p2.edited
    kept = next(f for f in p2.facts if f.id == lisbon.id)
    assert kept.pinned and kept.object == "Lisbon"
    back = v.rollback(maya, 1)
    assert replace(back, version=0) == replace(v.load_version(maya, 1), version=0)
    assert rebuilt.version == 4 and back.version == 5


def test_prose_biography_and_status_are_kept_only_when_grounded(maya):
    bio = ("Maya lives in Lisbon and works at Tidewater Labs as a Data Engineer. Before that she lived in Porto "
           "and worked at Atlântico Freight.")
    rewritten = ("You live in Lisbon and work at Tidewater Labs as a Data Engineer. Before that you lived in Porto "
                 "and worked at Atlântico Freight.")
    told = {"recent": "Maya still lives in Lisbon and works at Tidewater Labs, as a Data Engineer.",
            "earlier": "Maya lived in Porto until 30 June 2025 and worked at Atlântico Freight."}

    def writer(messages, bio=bio):
        asked = messages[-1].content
        if "Rewrite this biography" in asked:
            return json.dumps({"to_you": rewritten})
        if "Write Maya's biography" in asked:
            return json.dumps({"biography": bio})
        if "what is going on in Maya's life now" in asked:
            return json.dumps({"recent": told["recent"]})
        if "what came before in Maya's life" in asked:
            return json.dumps({"earlier": told["earlier"]})
        return answer_slot(messages)

    report = _build(maya, FakeChatModel(respond=writer), prose=True)
    p = v.load_version(maya)
    assert (p.biography, p.biography_second) == (bio, rewritten)
    assert (p.status.recent, p.status.earlier) == (told["recent"], told["earlier"])
    kinds = report.slots["by_kind"]
    assert all(kinds[k] == {"teacher": 1, "fallback": 0}
               for k in ("biography", "biography to you", "status recent", "status earlier"))

    def inventor(messages):
        return writer(messages, bio="Maya lives in Madrid since 2019 and owns three horses named after Beethoven "
                                    "symphonies.")

    report = _build(maya, FakeChatModel(respond=inventor), prose=True, full=True, seed=1)
    p = v.load_version(maya)
    assert "Madrid" not in p.biography and p.biography.startswith("Maya lives in Lisbon and works at")  # the template
    assert report.slots["by_kind"]["biography"] == {"teacher": 0, "fallback": 1}


def test_the_report_counts_every_slot_by_kind(maya):
    report = _build(maya, prose=True)
    p = v.load_version(maya)
    s = report.slots
    assert s["total"] == s["teacher"] + s["fallback"] == 2 * len(p.topics) + 2 * len(p.shades) + 4
    assert s["by_kind"]["topic name"]["teacher"] == len(p.topics)        # the scripted teacher names every topic
    assert s["by_kind"]["biography"] == {"teacher": 0, "fallback": 1}   # and writes no prose
    off = _build(maya, slots=False, full=True, seed=3)                  # the embedded model's default
    assert off.slots["teacher"] == 0 and off.slots["total"] > 0 and off.teacher["calls"] == 0


def test_teacher_facts_are_kept_only_when_grounded(maya):
    def extractor(messages):
        prompt = messages[0].content
        if "Answer with JSON only" not in prompt or "Igreja da Lapa" not in prompt:
            return json.dumps({"facts": []})
        return json.dumps({"facts": [
            {"subject": "Maya", "predicate": "plays_in", "object": "Igreja da Lapa", "date": None, "kind": "state"},
            {"subject": "Maya", "predicate": "plays_in", "object": "Berlin Philharmonic", "date": None,
             "kind": "state"}]})

    teacher = FakeChatModel(respond=extractor)
    report = _build(maya, teacher, teacher_facts=True, slots=False)
    p = v.load_version(maya)
    lapa = [f for f in p.facts if f.object == "Igreja da Lapa"]
    assert lapa and lapa[0].origin == "teacher" and lapa[0].sources
    assert all("Lapa" in c.text for c in maya.chunks(lapa[0].sources).values())
    assert not any("Berlin" in f.object for f in p.facts)
    assert report.steps[2].teacher_calls == len(teacher.calls) > 10       # one call per chunk the person wrote
    again = _build(maya, FakeChatModel(respond=extractor), teacher_facts=True, slots=False, seed=2)
    assert again.steps[2].teacher_calls == 0                              # per-chunk results are cached


def test_the_build_command_says_how_much_the_model_wrote(capsys, journal_dir, monkeypatch):
    from .test_cli import run

    monkeypatch.setenv("SECONDSELF_TEACHER_MODEL", "fake")      # echoes its prompt: every slot falls back
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    run(capsys, "ingest", str(journal_dir))
    code, out, _ = run(capsys, "build", "--topics", "2")
    assert code == 0 and "layer-1 slots written in this build: 0 of 8 by the model (0%), 8 by fallbacks" in out
    assert "by the model, per kind: topic name 0/2, topic summary 0/2" in out and "biography 0/1" in out
    run(capsys, "--person", "again", "ingest", str(journal_dir))
    code, out, _ = run(capsys, "--person", "again", "build", "--topics", "2", "--json")
    slots = json.loads(out)["slots"]
    assert (slots["teacher"], slots["total"], slots["teacher_share"]) == (0, 8, 0.0)
    assert slots["by_kind"]["status recent"] == {"teacher": 0, "fallback": 1}


def test_what_a_teacher_is_asked_follows_its_measured_capability():
    from secondself.backends.registry import parse_spec

    assert {s: parse_spec(s).layer1 for s in ("embedded", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "fake",
                                              "openai:m@http://127.0.0.1:1/v1")} == {
        "embedded": "templates", "qwen2.5-coder-0.5b": "slots", "qwen2.5-coder-1.5b": "prose", "fake": "slots",
        "openai:m@http://127.0.0.1:1/v1": "prose"}
