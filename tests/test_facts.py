"""Layer-1 facts: rule-based observations, temporal resolution, entities, and the teacher's grounding.

The example person is ingested once per module with the hashing embedder, so the whole file runs offline
in a few seconds.
"""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.errors import StructuredOutputError
from secondself.memory.facts import (
    PREDICATES,
    Observation,
    describe,
    extract_entities,
    extract_observations,
    facts_about,
    facts_at,
    resolve,
    teacher_observations,
)
from secondself.types import Chunk, Fact

from .conftest import EXAMPLES


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def maya(tmp_path_factory, request):
    """The example person's facts from chunks read back from each store backend."""
    from secondself.backends.embedders import HashingEmbedder
    from secondself.ingest.pipeline import ingest
    from secondself.store import Store

    if request.param == "postgres":
        from secondself.store.postgres import PgStore

        from .conftest import pg_create, pg_drop

        server = request.getfixturevalue("pg_server")
        name = pg_create(server)
        request.addfinalizer(lambda: pg_drop(server, name))
        store = PgStore(server.get_uri(database=name), "me")
    else:
        store = Store(tmp_path_factory.mktemp("facts") / "m.sqlite3")
    ingest(store, HashingEmbedder(128), [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
    chunks = {c.id: c for c in store.all_chunks()}
    store.close()
    observations = [o for c in chunks.values() for o in extract_observations(c, "Maya")]
    return chunks, observations, resolve(observations)


def one(facts: list[Fact], predicate: str, obj: str) -> Fact:
    found = [f for f in facts if f.predicate == predicate and f.object == obj]
    assert len(found) == 1, [(f.predicate, f.object) for f in facts]
    return found[0]


def note(text: str, day: str = "2025-03-10", kind: str = "note", speakers: tuple[str, ...] = (),
         heading: str = "", cid: int = 1) -> Chunk:
    return Chunk(id=cid, source="t", path="t.md", title="t", position=0, text=text, heading=heading,
                 date=f"{day}T00:00:00+00:00", speakers=speakers, kind=kind)


def obs(pred: str, obj: str, day: str | None, kind: str, cid: int = 1, **kw) -> Observation:
    return Observation("Ann", pred, obj, day, kind, cid, f"sentence {cid}", **kw)


# -- the example person ----------------------------------------------------------------------------------

def test_maya_moved_from_porto_to_lisbon(maya):
    _, _, facts = maya
    porto, lisbon = one(facts, "lives_in", "Porto"), one(facts, "lives_in", "Lisbon")
    assert porto.valid_to == "2025-06-30"
    assert (lisbon.valid_from, lisbon.valid_to) == ("2025-07-01", None)


def test_maya_changed_jobs(maya):
    _, _, facts = maya
    old, new = one(facts, "works_at", "Atlântico Freight"), one(facts, "works_at", "Tidewater Labs")
    assert (old.valid_from, old.valid_to) == ("2021-03-01", "2025-08-31")   # the written date beats the 29th
    assert (new.valid_from, new.valid_to) == ("2025-09-08", None)
    assert one(facts, "job_title", "Data Analyst").valid_to == "2025-08-31"  # ends with its job
    assert one(facts, "job_title", "Data Engineer").holds_at("2025-12-31")
    assert one(facts, "manager", "Catarina Vaz").holds_at("2025-12-31")


def test_maya_relationship_is_closed_not_deleted(maya):
    _, _, facts = maya
    tomas = one(facts, "partner", "Tomás")
    assert "2025-04-05" <= tomas.valid_from <= "2025-04-26"
    assert tomas.valid_to == "2025-10-26"


def test_maya_lessons_and_orchestras(maya):
    _, _, facts = maya
    assert one(facts, "teacher", "Margarida Nunes").valid_to == "2025-06-26"
    assert one(facts, "teacher", "Henrique Sá").valid_from == "2025-10-07"
    assert {f.object for f in facts if f.predicate == "plays_in"} == {
        "Orquestra Amadora do Porto", "Orquestra Filarmónica de Arroios"}


def test_functional_values_never_overlap(maya):
    _, _, facts = maya
    for a, b in combinations(facts, 2):
        if a.predicate == b.predicate and PREDICATES[a.predicate].functional:
            assert (a.valid_to or "9999") < (b.valid_from or "0000") or \
                   (b.valid_to or "9999") < (a.valid_from or "0000"), (a, b)


def test_every_fact_is_sourced_and_its_evidence_quoted(maya):
    chunks, _, facts = maya
    assert facts
    for f in facts:
        assert f.sources and all(c in chunks for c in f.sources)
        assert f.origin == "rules"
        texts = [" ".join((chunks[c].heading + "\n" + chunks[c].text).split()) for c in f.sources]
        assert any(f.evidence.rstrip("…") in t for t in texts), f


def test_no_fact_from_other_speakers_or_web_pages(maya):
    chunks, observations, _ = maya
    for o in observations:
        c = chunks[o.chunk_id]
        assert c.kind != "web"
        if c.kind == "email":
            assert c.speakers[0].startswith("Maya")


def test_facts_as_of_a_day(maya):
    _, observations, facts = maya
    assert {(f.predicate, f.object) for f in facts_at(facts, "2025-05-01") if f.predicate in ("lives_in", "works_at")} \
        == {("lives_in", "Porto"), ("works_at", "Atlântico Freight")}
    assert {(f.predicate, f.object) for f in facts_at(facts, "2025-08-15") if f.predicate in ("lives_in", "works_at")} \
        == {("lives_in", "Lisbon"), ("works_at", "Atlântico Freight")}
    # what was known in mid-June: the last day was already announced (a future end is allowed)
    june = resolve(observations, today="2025-06-15")
    assert one(june, "works_at", "Atlântico Freight").valid_to == "2025-08-31"
    assert not [f for f in june if f.object == "Tidewater Labs"]


def test_entities_of_the_example(maya):
    chunks, _, facts = maya
    people = {e.name: e for e in extract_entities(chunks.values(), "Maya")}
    assert "Tomás" in people["Tomás Reis"].aliases and people["Tomás Reis"].relation == "former partner"
    assert "Inês" in people["Inês Okafor-Lindqvist"].aliases
    assert people["Inês Okafor-Lindqvist"].relation == "sister"
    assert people["Catarina Vaz"].relation == "manager"
    assert people["Lisbon"].kind == "place" and people["Tidewater Labs"].kind == "organization"
    assert not {"Maya", "Today", "The", "I'm", "ChatGPT", "Having"} & set(people)
    assert all(e.sources and set(e.sources) <= set(chunks) for e in people.values())
    about = facts_about(facts, people.values(), "Tomás Reis")
    assert [(f.predicate, f.object) for f in about] == [("partner", "Tomás")]


# -- extraction rules on small texts ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "If I get the job, I will move to Berlin.",
    "I did not move to Berlin in the end.",
    "Should I move to Berlin?",
    'He said: "I moved to Berlin last year."',
    "She would be my manager, Dana Scully, if I took it.",
    "I want to start at Acme Labs.",
])
def test_hedges_questions_and_quotes_give_nothing(text):
    assert extract_observations(note(text), "Ann") == []


def test_dates_written_relative_vague_and_planned():
    got = {(o.predicate, o.object, o.kind): (o.date, o.explicit) for text in [
        "I moved from Oslo to Bergen on 3 May 2024.",
        "Yesterday was my last day at Acme Freight.",
        "In March I started at Initech.",
        "I live in Bergen.",
        "I'm starting at Globex soon.",
    ] for o in extract_observations(note(text, day="2024-06-10"), "Ann")}
    assert got == {
        ("lives_in", "Oslo", "end"): ("2024-05-02", True),
        ("lives_in", "Bergen", "start"): ("2024-05-03", True),
        ("works_at", "Acme Freight", "end"): ("2024-06-09", True),
        ("works_at", "Initech", "start"): (None, False),          # "In March": no day, no guess
        ("lives_in", "Bergen", "state"): ("2024-06-10", False),   # the chunk's day
        ("works_at", "Globex", "start"): (None, False),           # a plan needs a written date
    }


def test_the_month_may_is_not_a_hedge():
    assert [(o.object, o.date) for o in extract_observations(note("On 3 May 2024 I moved to Oslo."), "Ann")] == \
        [("Oslo", "2024-05-03")]
    assert extract_observations(note("I may move to Oslo."), "Ann") == []


def test_a_list_items_date_label_applies_to_its_sentence():
    o = extract_observations(note("- 8 September: started at Acme Labs as a data engineer.", day="2025-12-31"),
                             "Ann")
    assert {(x.predicate, x.object, x.date) for x in o} == {("works_at", "Acme Labs", "2025-09-08"),
                                                            ("job_title", "data engineer", "2025-09-08")}


def test_chat_counts_only_the_persons_turns_and_dates_only_the_first():
    chat = note("Sam: I moved to Rome today.\nAnn: Today I moved to Oslo.\nAnn: My manager, Dana Scully, says hi.",
                kind="chat", speakers=("Sam", "Ann"))
    got = {(o.predicate, o.object, o.date) for o in extract_observations(chat, "Ann")}
    assert got == {("lives_in", "Oslo", None), ("manager", "Dana Scully", None)}
    first = note("Ann: Today I started at Acme Labs.\nSam: congrats!", kind="chat", speakers=("Ann", "Sam"))
    assert [o.date for o in extract_observations(first, "Ann")] == ["2025-03-10"]


def test_email_counts_only_when_the_person_sent_it():
    body = "I moved to Oslo today."
    assert extract_observations(note(body, kind="email", speakers=("Sam Vimes",)), "Ann") == []
    assert extract_observations(note(body, kind="email", speakers=("Ann Perkins",)), "Ann")


def test_relations_and_names():
    text = ("My manager, Dana Scully, approved it. Lunch with Fox Mulder, my boss. First date with Walter. "
            "Lesson with Irene Adler. Walter and I broke up today.")
    got = {(o.predicate, o.object, o.kind) for o in extract_observations(note(text), "Ann")}
    assert got == {("manager", "Dana Scully", "state"), ("manager", "Fox Mulder", "state"),
                   ("partner", "Walter", "start"), ("teacher", "Irene Adler", "state"), ("partner", "Walter", "end")}


def test_a_heading_line_is_not_part_of_the_next_lines_name_but_wrapped_prose_is_one_sentence():
    text = "People\nMereana Tawhai - Head of Geothermal, my manager. 1:1 every second Tuesday.\nPriya Nair - HR."
    got = {(o.predicate, o.object) for o in extract_observations(note(text), "Ann")}
    assert got == {("manager", "Mereana Tawhai")}
    wrapped = "Yesterday after a long week at the lake I finally moved to\nWellington with Helen and the cat."
    assert {(o.predicate, o.object) for o in extract_observations(note(wrapped), "Ann")} == {("lives_in", "Wellington")}
    dated = "Monday 3 March\nI moved to Oslo."
    assert {(o.predicate, o.object) for o in extract_observations(note(dated), "Ann")} == {("lives_in", "Oslo")}


def test_a_company_form_with_dots_is_part_of_the_name():
    text = "Today I started at Waterkant Ingenieurs B.V. With two months' notice. Then I moved to Leith."
    got = {(o.predicate, o.object) for o in extract_observations(note(text), "Ann")}
    assert got == {("works_at", "Waterkant Ingenieurs B.V."), ("lives_in", "Leith")}


# -- resolution ------------------------------------------------------------------------------------------

def test_a_new_value_closes_the_previous_one_the_day_before():
    facts = resolve([obs("lives_in", "Oslo", "2020-01-01", "state", 1),
                     obs("lives_in", "Bergen", "2023-04-01", "start", 2, explicit=True),
                     obs("lives_in", "Oslo", None, "state", 3)])
    oslo, bergen = one(facts, "lives_in", "Oslo"), one(facts, "lives_in", "Bergen")
    assert (oslo.valid_from, oslo.valid_to, oslo.sources) == (None, "2023-03-31", (1, 3))
    assert (bergen.valid_from, bergen.valid_to) == ("2023-04-01", None)


def test_an_earlier_end_is_kept_and_a_state_only_successor_starts_when_first_seen():
    facts = resolve([obs("works_at", "Acme", "2020-01-01", "start", 1), obs("works_at", "Acme", "2021-06-30", "end", 2),
                     obs("works_at", "Globex", "2022-02-01", "state", 3)])
    assert one(facts, "works_at", "Acme").valid_to == "2021-06-30"
    assert one(facts, "works_at", "Globex").valid_from == "2022-02-01"


def test_short_names_merge_into_the_long_one_and_written_dates_win():
    facts = resolve([obs("works_at", "acme", "2019-05-01", "start", 1),
                     obs("works_at", "Acme Freight", "2019-04-01", "start", 2, explicit=True),
                     obs("works_at", "Acme Freight", "2019-04-03", "start", 3)])
    assert [(f.object, f.valid_from, f.sources) for f in facts] == [("Acme Freight", "2019-04-01", (1, 2, 3))]
    assert facts[0].evidence == "sentence 2"


def test_a_restarted_value_keeps_its_latest_interval_and_non_functional_values_coexist():
    facts = resolve([obs("plays_in", "City Band", "2018-01-01", "start", 1),
                     obs("plays_in", "City Band", "2019-01-01", "end", 2),
                     obs("plays_in", "City Band", "2021-01-01", "start", 3),
                     obs("plays_in", "Town Choir", "2020-01-01", "start", 4)])
    assert [(f.object, f.valid_from, f.valid_to) for f in facts] == [
        ("Town Choir", "2020-01-01", None), ("City Band", "2021-01-01", None)]


def test_origin_teacher_only_when_every_observation_is_the_teachers():
    facts = resolve([obs("lives_in", "Oslo", None, "state", 1, origin="teacher"),
                     obs("works_at", "Acme", None, "state", 1, origin="teacher"),
                     obs("works_at", "Acme", None, "state", 2)])
    assert {f.object: f.origin for f in facts} == {"Oslo": "teacher", "Acme": "rules"}


def test_describe():
    assert describe(Fact("Ann", "lives_in", "Oslo", valid_from="2025-07-01")) == "Ann lives in Oslo (since 2025-07-01)"
    assert describe(Fact("Ann", "lives_in", "Oslo", valid_to="2025-06-30")) == "Ann lived in Oslo (until 2025-06-30)"
    assert describe(Fact("Ann", "partner", "Bo", "2024-01-01", "2024-02-01")) == \
        "Ann was in a relationship with Bo (2024-01-01 to 2024-02-01)"
    assert describe(Fact("Ann", "likes", "tea")) == "Ann likes tea"


# -- the teacher -----------------------------------------------------------------------------------------

def _reply(*items: dict) -> str:
    return json.dumps({"facts": list(items)})


def test_teacher_keeps_only_grounded_items_with_parseable_dates():
    chunk = note("Moved to Lisbon today. Started at Tidewater Labs.", day="2025-07-01", cid=7)
    model = FakeChatModel([_reply(
        {"subject": "I", "predicate": "lives_in", "object": "lisbon", "date": "2025-07-01", "kind": "start"},
        {"subject": "Ann", "predicate": "works_at", "object": "Tidewater Labs", "date": None, "kind": "start"},
        {"subject": "Ann", "predicate": "works_at", "object": "Initech", "date": None, "kind": "state"},
        {"subject": "Ann", "predicate": "lives_in", "object": "Lisbon", "date": "someday", "kind": "state"},
    )])
    got = teacher_observations(model, chunk, "Ann")
    assert [(o.subject, o.predicate, o.object, o.date, o.origin, o.chunk_id) for o in got] == [
        ("Ann", "lives_in", "lisbon", "2025-07-01", "teacher", 7),
        ("Ann", "works_at", "Tidewater Labs", None, "teacher", 7)]
    assert got[1].evidence == "Started at Tidewater Labs."
    prompt = model.calls[0][0][-1].content
    assert "Moved to Lisbon today (1 July 2025)." in prompt and "2025-07-01" in prompt and "works_at" in prompt


def test_teacher_retries_malformed_json_then_fails_visibly():
    chunk = note("Moved to Lisbon today.")
    ok = _reply({"subject": "Ann", "predicate": "lives_in", "object": "Lisbon", "date": None, "kind": "state"})
    model = FakeChatModel(["not json at all", ok])
    assert [o.object for o in teacher_observations(model, chunk, "Ann")] == ["Lisbon"]
    assert len(model.calls) == 2
    with pytest.raises(StructuredOutputError):
        teacher_observations(FakeChatModel(["nope", '{"facts": [{"predicate": "owns"}]}']), chunk, "Ann")


def test_teacher_is_not_asked_about_other_peoples_words():
    model = FakeChatModel([])
    assert teacher_observations(model, note("I moved to Rome.", kind="email", speakers=("Sam",)), "Ann") == []
    assert model.calls == []
