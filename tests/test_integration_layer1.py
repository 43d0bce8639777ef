"""Layer 1 on the example person with the real embedder and the embedded 135M teacher (slow)."""

import json
import sqlite3
from dataclasses import replace

import pytest

from secondself.backends.local import LocalChatModel
from secondself.memory import versions as v
from secondself.memory.build import BuildOptions, build
from secondself.memory.context import persona_context
from secondself.memory.search import Searcher
from secondself.persona import Persona
from secondself.store import Store

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(maya_memory, tmp_path_factory):
    """A copy of the session's example memory, with layer 1 built by the embedded model."""
    shared, embedder, _ = maya_memory
    path = tmp_path_factory.mktemp("layer1") / "memory.sqlite3"
    with sqlite3.connect(path) as dst:
        shared.db.backup(dst)
    store = Store(path)
    teacher = LocalChatModel(None, cache_dir=tmp_path_factory.mktemp("models"))
    about = (EXAMPLES / "maya" / "about_me.md").read_text(encoding="utf-8")
    # as `secondself build` does for the embedded model: no slot calls (see test_the_embedded_model_...)
    report = build(store, embedder.name, teacher, "Maya", BuildOptions(slots=False), about=about)
    print(json.dumps({k: report.to_dict()[k] for k in ("teacher", "slots", "steps")}, indent=1))
    yield store, embedder, teacher, report
    store.close()


def test_build_with_the_embedded_teacher_is_complete_and_cited(built):
    store, _, _, report = built
    p = v.load_version(store)
    existing = {c.id for c in store.all_chunks()}
    assert report.version == p.version == 1
    assert sorted([c for t in p.topics for c in t.chunks] + list(p.unclustered)) == sorted(existing)
    assert len(p.shades) >= 5 and all(e.sources and set(e.sources) <= existing for s in p.shades for e in s.timeline)
    assert all(f.sources and set(f.sources) <= existing for f in p.facts)
    assert all(t.name and t.summary for t in p.topics)
    assert p.biography.startswith("Maya lives in Lisbon") and p.biography_second.startswith("You live in Lisbon")
    print(p.biography, *(f"{t.name}: {t.summary}" for t in p.topics), sep="\n")


def test_changing_facts_have_their_validity_intervals(built):
    store = built[0]
    p = v.load_version(store)
    truth = json.loads((EXAMPLES / "maya" / "facts.json").read_text())["timeline"]
    for pred, obj in (("lives_in", "Porto"), ("lives_in", "Lisbon"), ("works_at", "Tidewater Labs")):
        want = next(t for t in truth if t["predicate"] == pred and t["object"] == obj)
        got = next(f for f in p.facts if f.predicate == pred and f.object == obj)
        assert got.valid_to == want["valid_to"], got
        if want["valid_from"]:
            assert got.valid_from == want["valid_from"], got
    atlantico = next(f for f in p.facts if f.predicate == "works_at" and f.object.startswith("Atlântico"))
    assert atlantico.valid_to == "2025-08-31"
    from secondself.memory.facts import facts_at

    assert {f.object for f in facts_at(p.facts, "2025-03-01") if f.predicate == "lives_in"} == {"Porto"}
    assert {f.object for f in facts_at(p.facts, "2025-10-01") if f.predicate == "works_at"} == {"Tidewater Labs"}


def test_edit_survives_a_rebuild_and_rollback_is_exact(built):
    store, embedder, teacher, _ = built
    v.edit_section(store, "biography", "Maya, written by Maya.")
    again = build(store, embedder.name, teacher, "Maya", BuildOptions(seed=1, slots=False))   # a real rebuild
    p = v.load_version(store)
    assert again.version == p.version and p.biography == "Maya, written by Maya."
    back = v.rollback(store, 1)
    assert replace(back, version=0) == replace(v.load_version(store, 1), version=0)


def test_the_persona_is_told_about_layer_one(built):
    store, embedder, teacher, _ = built
    p = v.load_version(store, 1)
    context = persona_context(p, "Where do I live now?")
    assert "Lisbon" in context and "since 2025-07-01" in context
    persona = Persona(teacher, Searcher(store, embedder), name="Maya", profile=lambda q: persona_context(p, q))
    question = "Where do I live now?"
    messages, _ = persona.build_messages(question, persona.retrieve(question))
    assert "About Maya:" in messages[-1].content and "since 2025-07-01" in messages[-1].content
    print(persona.ask(question).answer().text)


def test_the_embedded_model_fills_slots_only_through_validation(built):
    """The real 135M asked for topic names and shade roles: whatever it says, each slot ends up either
    validated teacher text or a deterministic fallback — never an error, never unvalidated text."""
    from secondself.memory.profile import Slots, describe_shade, name_topic

    store, _, teacher, _ = built
    p = v.load_version(store, 1)
    chunks = store.chunks([c for t in p.topics[:2] for c in t.chunks[:3]])
    slots = Slots()
    for t in p.topics[:2]:
        central = [chunks[c] for c in t.chunks[:3]]
        name, summary = name_topic(teacher, "Maya", list(t.keywords), central, slots)
        role, desc = describe_shade(teacher, "Maya", t, central, slots)
        print(repr(name), repr(summary), repr(role), repr(desc))
        assert name and summary and desc
    assert slots.teacher + slots.fallback == 8
