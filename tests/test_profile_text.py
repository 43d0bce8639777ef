"""Slot validation and the deterministic templates of layer-1 text."""

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.errors import EndpointError
from secondself.memory.profile import Slots, biography_template, describe_shade, name_topic, status, timeline
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
