"""Slot validation and the deterministic templates of layer-1 text."""

import json

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.errors import EndpointError
from secondself.memory.profile import (
    Slots,
    biography,
    biography_template,
    describe_shade,
    name_topic,
    narrate_status,
    status,
    status_parts,
    timeline,
)
from secondself.types import Chunk, Fact, Shade, ShadeEvent, Topic

CELLO = [Chunk(1, "s", "j/2025-05-24.md", "Concert", 0, "Played the Elgar cello concerto with the orchestra. "
               "The concert went well.", date="2025-05-24T00:00:00+00:00"),
         Chunk(2, "s", "j/2025-10-04.md", "Rehearsal", 0, "First rehearsal with the new orchestra in Lisbon; "
               "my cello section is friendly.", date="2025-10-04T00:00:00+00:00")]
KW = ["cello", "orchestra", "concert", "elgar"]


@pytest.mark.parametrize("reply,accepted", [
    ("Cello and orchestra", True),
    ("This is a story about a", False),          # ends mid-phrase, starts with "this"
    ("ChatGPT: I'm sorry about", False),          # punctuation, not a label
    ("Notes from Maya's memories", False),        # copies the instructions, shares no keyword
    ("Quantum chromodynamics", False),            # nothing to do with the notes
])
def test_topic_names_are_validated(reply, accepted):
    slots = Slots()
    name, summary = name_topic(FakeChatModel([reply, "Concerts and rehearsals with the orchestra, playing cello."]),
                               "Maya", KW, CELLO, slots)
    assert (name == reply) is accepted
    if not accepted:
        assert name == "Cello & orchestra"
    assert summary == "Concerts and rehearsals with the orchestra, playing cello."


def test_bad_summaries_and_roles_fall_back():
    slots = Slots()
    name, summary = name_topic(FakeChatModel(["Cello", "This is a recipe for a recipe for a."]), "Maya", KW, CELLO,
                               slots)
    assert summary == "Played the Elgar cello concerto with the orchestra."
    topic = Topic("t1", name, summary, tuple(KW), (1, 2), "2025-05-24", "2025-10-04")
    role, desc = describe_shade(FakeChatModel(["1. Cellist, climber, data", "This is for Maya, in one sentence"]),
                                "Maya", topic, CELLO, slots)
    assert role == "" and desc.startswith("2 memories from 2025-05-24 to 2025-10-04")
    role, desc = describe_shade(FakeChatModel(["cellist", "Maya plays the cello in an orchestra and loves concerts."]),
                                "Maya", topic, CELLO, slots)
    assert role == "cellist" and desc.startswith("Maya plays the cello")
    assert slots.teacher == 3 and slots.fallback == 3


def test_unreachable_teacher_is_an_error_not_a_fallback():
    with pytest.raises(EndpointError):
        name_topic(FakeChatModel([EndpointError("down")]), "Maya", KW, CELLO, Slots())


def test_templates_use_dated_facts():
    facts = [Fact("Maya", "lives_in", "Porto", None, "2025-06-30", (1,)),
             Fact("Maya", "lives_in", "Lisbon", "2025-07-01", None, (2,)),
             Fact("Maya", "works_at", "Tidewater Labs", "2025-09-08", None, (3,)),
             Fact("Inês", "lives_in", "Stockholm", None, None, (4,))]
    shades = [Shade("Cello & orchestra", "cellist", "d", ("t1",), (ShadeEvent("2025-10-04", "First rehearsal", (2,)),))]
    third, second = biography_template("Maya", facts, shades, "I'm Maya. I bake bread. I climb.", "2025-12-31")
    assert third.startswith("Maya lives in Lisbon and works at Tidewater Labs.")
    assert "Before that, Maya lived in Porto until 2025-06-30." in third and "Stockholm" not in third
    assert "Cello & orchestra (as a cellist)" in third and "“I'm Maya. I bake bread.”" in third
    assert second.startswith("You live in Lisbon and work at Tidewater Labs.") and "Your memories" in second
    st = status("Maya", facts, shades, [Topic("t1", "Cello & orchestra", "", (), (1, 2))],
                {1: "2025-05-24", 2: "2025-10-04"}, "2025-11-30")
    assert "Since 2025-09-08, Maya works at Tidewater Labs." in st.recent and "On 2025-10-04: First rehearsal" in st.recent
    assert "Maya lived in Porto until 2025-06-30." in st.earlier


def test_timeline_one_event_per_day_with_sources():
    events = timeline(CELLO + [Chunk(3, "s", "x", "t", 0, "undated cello thoughts")], KW)
    assert [(e.date, e.sources) for e in events] == [("2025-05-24", (1,)), ("2025-10-04", (2,))]
    assert events[0].text == "Played the Elgar cello concerto with the orchestra."


def test_persona_context_gives_current_dated_facts_for_the_question():
    from secondself.memory.context import persona_context
    from secondself.types import Profile, Status

    p = Profile(1, "", "Maya", "Maya lives in Lisbon. She plays the cello. She bakes.", "", Status("2025-12-31", "", ""),
                facts=(Fact("Maya", "lives_in", "Porto", None, "2025-06-30", (1,)),
                       Fact("Maya", "lives_in", "Lisbon", "2025-07-01", None, (2,)),
                       Fact("Maya", "job_title", "Data Engineer", "2025-09-08", None, (3,))))
    ctx = persona_context(p, "Where do I live now?")
    assert ctx.startswith("Maya lives in Lisbon. She plays the cello.") and "bakes" not in ctx
    assert "- I live in Lisbon (since 2025-07-01)" in ctx and "Porto" not in ctx and "Engineer" not in ctx
    assert "- I work as a Data Engineer (since 2025-09-08)" in persona_context(p, "What is my job? Do I work?")


# -- what a capable teacher writes, through constrained JSON ------------------------------------------------

class ConstrainedFake(FakeChatModel):
    constrains_output = True


def test_a_grounded_topic_name_is_taken_an_invented_one_falls_back():
    slots = Slots()
    good = ConstrainedFake([json.dumps({"name": "Orchestra Concerts",
                                        "summary": "Maya plays the Elgar cello concerto with the orchestra."})])
    name, summary = name_topic(good, "Maya", KW, CELLO, slots)
    assert (name, summary) == ("Orchestra concerts", "Maya plays the Elgar cello concerto with the orchestra.")
    messages, sampling = good.calls[0]
    assert messages[0].role == "system" and "Maya" in messages[0].content and sampling.json_schema
    invented = ConstrainedFake([json.dumps({"name": "Berlin Philharmonic tour",
                                            "summary": "Maya tours Berlin with the Philharmonic in 2019."})])
    assert name_topic(invented, "Maya", KW, CELLO, slots) == (
        "Cello & orchestra", "Played the Elgar cello concerto with the orchestra.")
    assert name_topic(ConstrainedFake(["{{{ not json"]), "Maya", KW, CELLO, slots)[0] == "Cello & orchestra"
    assert slots.report()["by_kind"] == {"topic name": {"teacher": 1, "fallback": 2},
                                         "topic summary": {"teacher": 1, "fallback": 2}}


def test_a_shade_description_copied_from_a_note_in_the_first_person_falls_back():
    topic = Topic("t1", "Orchestra", "Concerts.", tuple(KW), (1, 2), "2025-05-24", "2025-10-04")
    # the schema makes it start with her name (as the engine would); the rest is a note copied
    copied = json.dumps({"role": "cellist", "description": "Maya first rehearsal with the new orchestra in Lisbon; "
                                                           "my cello section is friendly."})
    slots = Slots()
    role, desc = describe_shade(ConstrainedFake([copied]), "Maya", topic, CELLO, slots)
    assert role == "cellist" and desc.startswith("2 memories from 2025-05-24")
    assert slots.report()["by_kind"]["shade description"] == {"teacher": 0, "fallback": 1}


FACTS = [Fact("Maya", "lives_in", "Porto", None, "2025-06-30", (1,)),
         Fact("Maya", "lives_in", "Lisbon", "2025-07-01", None, (2,)),
         Fact("Maya", "works_at", "Tidewater Labs", "2025-09-08", None, (3,))]
SHADES = [Shade("Cello & orchestra", "cellist", "Maya plays cello in an orchestra.", ("t1",),
                (ShadeEvent("2025-10-04", "First rehearsal with the new orchestra", (2,)),))]


def test_the_biography_is_written_then_told_to_you_and_checked_each_time():
    bio = ("Maya lives in Lisbon, where she moved from Porto in July 2025, and works at Tidewater Labs. "
           "She plays the cello in an orchestra.")
    to_you = "You live in Lisbon, where you moved from Porto in July 2025, and work at Tidewater Labs. You play the cello."
    teacher = ConstrainedFake([json.dumps({"biography": bio}), json.dumps({"to_you": to_you})])
    slots = Slots()
    assert biography(teacher, "Maya", FACTS, SHADES, "I'm Maya.", "2025-12-31", slots, prose=True) == (bio, to_you)
    first, second = (c[0][-1].content for c in teacher.calls)
    assert "- Maya lives in Lisbon (since 1 July 2025)" in first and "- Maya lived in Porto until 30 June 2025" in first
    assert second.startswith("Rewrite this biography in the second person") and bio in second
    # an invented place: the template speaks (both), and the second request is never made
    teacher = ConstrainedFake([json.dumps({"biography": bio.replace("Porto", "Madrid")})])
    third, you = biography(teacher, "Maya", FACTS, SHADES, "", "2025-12-31", slots, prose=True)
    assert third.startswith("Maya lives in Lisbon and works at Tidewater Labs.") and you.startswith("You live")
    assert len(teacher.calls) == 1
    # the person's own words in the first person are not a biography
    own = "I'm Maya and I live in Lisbon since July 2025. I work at Tidewater Labs and play the cello in an orchestra."
    teacher = ConstrainedFake([json.dumps({"biography": own})])
    assert biography(teacher, "Maya", FACTS, SHADES, own, "2025-12-31", slots, prose=True)[0] != own
    assert slots.report()["by_kind"] == {"biography": {"teacher": 1, "fallback": 2},
                                         "biography to you": {"teacher": 1, "fallback": 2}}


def test_the_status_is_told_from_its_parts_and_a_copied_list_is_no_telling():
    dates = {1: "2025-05-24", 2: "2025-10-04"}
    topics = [Topic("t1", "Cello & orchestra", "", (), (1, 2))]
    parts = status_parts("Maya", FACTS, SHADES, topics, dates, "2025-11-30")
    template = status("Maya", FACTS, SHADES, topics, dates, "2025-11-30")
    told = {"recent": "Maya has worked at Tidewater Labs since September 2025 and had her first rehearsal with "
                      "the new orchestra on 4 October 2025.",
            "earlier": "Until June 2025 Maya lived in Porto."}
    teacher = ConstrainedFake([json.dumps({"recent": told["recent"]}), json.dumps({"earlier": told["earlier"]})])
    slots = Slots()
    st = narrate_status(teacher, "Maya", parts, template, slots, prose=True)
    assert (st.as_of, st.recent, st.earlier) == ("2025-11-30", told["recent"], told["earlier"])
    recent, earlier = (call[0][-1].content for call in teacher.calls)
    assert "- started: Maya works at Tidewater Labs (since 8 September 2025)" in recent and "Porto" not in recent
    assert "- ended: Maya lived in Porto until 30 June 2025" in earlier and "Tidewater" not in earlier
    bad = [{"recent": "Maya moved to Berlin in 2024 and works at Tidewater Labs now."},
           {"earlier": "- ended: Maya lived in Porto until 30 June 2025"}]
    st = narrate_status(ConstrainedFake([json.dumps(b) for b in bad]), "Maya", parts, template, slots, prose=True)
    assert st == template
    moved = [{"recent": "Maya lives in Porto and works at Tidewater Labs."}, {"earlier": told["earlier"]}]
    st = narrate_status(ConstrainedFake([json.dumps(b) for b in moved]), "Maya", parts, template, slots, prose=True)
    assert st.recent == template.recent                                  # an ended fact told as the present
    assert narrate_status(teacher, "Maya", parts, template, slots) == template      # no prose: no request
    assert slots.report()["by_kind"] == {"status recent": {"teacher": 1, "fallback": 3},
                                         "status earlier": {"teacher": 2, "fallback": 2}}


# -- a real ladder model (slow) -------------------------------------------------------------------------------

BREAD = [Chunk(i, "s", f"j/{d}.md", "Bread", 0, text, date=f"{d}T00:00:00+00:00") for i, (d, text) in enumerate([
    ("2025-03-02", "Baked my first sourdough loaf with Gertrud, the starter I made in January. The crumb was dense "
                   "but the crust was good."),
    ("2025-03-16", "Second sourdough bake: longer bulk fermentation, 78% hydration. Gertrud is lively now and the "
                   "loaf rose well."),
    ("2025-04-06", "Rye and spelt sourdough today. Gave half the loaf to Rita next door, who wants the recipe."),
    ("2025-05-11", "Sourdough class at the bakery on Rua da Graça: shaping, scoring, and a better oven spring."),
], start=1)]


@pytest.mark.slow
def test_a_ladder_model_writes_most_slots_of_a_small_topic(tmp_path):
    """qwen2.5-coder-1.5b (the ladder's capable model) names and describes one clear topic: at least three of
    its four slots pass validation. (The 0.5B passes two: it copies a note, "the starter I made in January",
    into the summary and the description even when the engine makes them start with "Maya".)"""
    import os
    from pathlib import Path

    from secondself.backends import catalog
    from secondself.backends.registry import make_chat_model

    entry = catalog.get("qwen2.5-coder-1.5b")
    models_dir = Path.home() / ".secondself" / "models"
    if not catalog.status(entry, models_dir).verified:
        models_dir = tmp_path / "models"
        if not catalog.status(entry, models_dir).installed:
            pytest.skip(f"qwen2.5-coder-1.5b is not installed: {entry.install_hint}")
    os.environ.pop("SECONDSELF_REAL_MODELS", None)
    model = make_chat_model("qwen2.5-coder-1.5b", models_dir)
    try:
        slots = Slots()
        keywords = ["sourdough", "Gertrud", "loaf", "bake"]
        name, summary = name_topic(model, "Maya", keywords, BREAD, slots, prose=True)
        topic = Topic("t1", name, summary, tuple(keywords), tuple(c.id for c in BREAD), "2025-03-02", "2025-05-11")
        role, desc = describe_shade(model, "Maya", topic, BREAD, slots, prose=True)
        print(slots.report(), repr(name), repr(summary), repr(role), repr(desc), sep="\n")
        assert slots.teacher >= 3, slots.report()
    finally:
        model.close()
