"""Layer-1 slots: how the teacher is asked (system prompt, constrained JSON) and what its answers must pass."""

import json

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.memory import slots as slotlib
from secondself.memory.slots import Slots, ask, label_problem, names_not_in, sentence_case, text_problem
from secondself.structured import Field

EVIDENCE = ("I'm 32, a cellist.\n- (2025-08-03) Sprained my left wrist bouldering at Calhau Bloc. Sara Matos, the physio, says three "
            "weeks in a splint.\n- (2025-09-20) Wrist rehab again: 15 minutes a day, no vibrato yet. Henrique "
            "is patient. Cello lessons start in October.")


class ConstrainedFake(FakeChatModel):
    """A fake whose engine (like llama.cpp) enforces Sampling.json_schema."""

    constrains_output = True


FIELDS = [Field("name", "Topic:", max_words=5), Field("summary", "Summary:", max_words=30, required=False)]


def test_a_constrained_model_gets_a_system_prompt_and_a_bounded_schema():
    model = ConstrainedFake([json.dumps({"name": "Wrist rehab", "summary": "Maya's wrist heals slowly."})])
    got = ask(model, "You keep a record.", "Name these notes.", FIELDS, as_json=False)
    assert got == {"name": "Wrist rehab", "summary": "Maya's wrist heals slowly."}
    (messages, sampling), = model.calls
    assert [m.role for m in messages] == ["system", "user"] and messages[0].content == "You keep a record."
    schema = sampling.json_schema
    assert schema["required"] == ["name", "summary"] and schema["properties"]["name"]["maxLength"] == 40
    assert sampling.temperature == 0.0


def test_a_value_cut_off_at_its_length_limit_keeps_only_whole_sentences():
    long = "Maya sprained her wrist. She rests it for three weeks. Then she " + "x" * 300
    model = ConstrainedFake([json.dumps({"name": "Wrist rehab", "summary": long[:240]})])
    assert ask(model, "", "u", FIELDS, as_json=True)["summary"] == "Maya sprained her wrist. She rests it for three weeks."


def test_malformed_output_is_no_answer_and_an_unconstrained_model_gets_fields_next():
    assert ask(ConstrainedFake(["{{{ not json"]), "s", "u", FIELDS, as_json=True) == {}
    plain = FakeChatModel(["{{{ nope", "{{{ nope", "Wrist rehab", "The wrist heals."])  # 2 JSON tries, then fields
    assert ask(plain, "s", "u", FIELDS, as_json=True) == {"name": "Wrist rehab", "summary": "The wrist heals."}
    assert ask(None, "s", "u", FIELDS, as_json=True) == {}


@pytest.mark.parametrize("label,problem", [
    ("Wrist rehab", ""),
    ("Wrist Rehab", ""),                      # Title Case: the words are still the notes' own
    ("Cellist", ""),                          # a role from the same stem as "Cello"
    ("Sara Matos", ""),
    ("Berlin trip", "names or numbers not in its evidence: Berlin"),
    ("Wrist rehab 2019", "names or numbers not in its evidence: 2019"),
    ("Maya's memories", "generic"),
    ("Notes", "generic"),
    ("Quantum chromodynamics", "names or numbers not in its evidence: Quantum"),
    ("Kitchen renovation", "names or numbers not in its evidence: Kitchen"),   # the prompt's example
    ("Splint and quantum chromodynamics", "only 1 of its 3 words"),
    ("Wrist Rehabilitation", ""),             # Title Case: "rehab" is written in the notes
    ("Wrist Renovation", "names or numbers not in its evidence: Renovation"),
    ("Wrist rehab in Quantumville", "names or numbers not in its evidence: Quantumville"),
    ("splint in london", "only 1 of its 2 words"),            # a name in lower case is still no word of the notes
    ("Wrist rehab at calhau bloc", "names written in lower case: bloc, calhau"),
    ("Physio: wrist", "not a label"),
    ("Wrist rehab and the", "not a label (ends mid-phrase)"),
])
def test_labels_are_grounded_and_specific(label, problem):
    got = label_problem(label, EVIDENCE, person="Maya", max_words=5,
                        boiler='for example "Kitchen renovation", "Visa application"')
    assert got.startswith(problem) if problem else got == ""


def test_an_invented_name_at_the_start_of_a_sentence_is_caught():
    assert names_not_in("Berlin is where she heals. She sees Sara Matos.", EVIDENCE) == ["Berlin"]
    assert names_not_in("Recently she rests the wrist. Henrique is patient.", EVIDENCE) == []


@pytest.mark.parametrize("text,problem", [
    ("Maya sprained her left wrist and spent three weeks in a splint with Sara Matos.", ""),
    ("Maya sprained her wrist in August 2025 and rests it.", ""),           # a date written out in words
    ("Maya sprained her wrist in Berlin and rests it now.", "names or numbers not in its evidence: Berlin"),
    ("Maya sprained her wrist 4 times and rests it now.", "names or numbers not in its evidence: 4"),
    ("Maya, a 20-year-old cellist, spends 15 minutes a day on wrist rehab.", "names or numbers not in its evidence: 20-year-old"),
    ("Maya wears a 3-week splint and does 15-minute wrist rehab.", ""),     # "three weeks", "15 minutes"
    ("Maya is a 32-year-old cellist with a sprained wrist.", ""),           # "I'm 32," in her own words
    ("I sprained my left wrist bouldering at Calhau Bloc.", "in the first person"),
    ("Maya sprained her wrist bouldering at calhau bloc.", "names written in lower case: bloc, calhau"),
    ("Sara Matos says the wrist needs the splint, the wrist needs the splint.", "repeats itself"),
    ("Maya sprained her wrist and spent three weeks in the", "cut off"),
    ("Maya sprained her wrist and had a physio check-in.", ""),
    ("Maya enjoys quantum physics lectures about theoretical mathematics.", "only"),
    ("Wrist 腕 rehab for Maya is slow.", "a script its evidence is not written in"),
    ('{"summary": "Maya sprained her wrist"}', "not prose"),
])
def test_prose_is_grounded(text, problem):
    got = text_problem(text, EVIDENCE + "\nMaya\n2025-08-03", min_overlap=0.6, max_words=40)
    assert got.startswith(problem) if problem else got == ""


def test_a_loop_is_cut_at_its_first_repeat():
    looped = ("Maya plays the cello in an amateur orchestra. She bakes bread. Maya plays the cello in an amateur "
              "orchestra. She bakes bread.")
    assert slotlib.until_loop(looped) == "Maya plays the cello in an amateur orchestra. She bakes bread."
    told_twice = "Maya is a data engineer at Tidewater Labs. She likes being a data engineer at Tidewater Labs."
    assert slotlib.until_loop(told_twice) == told_twice
    model = ConstrainedFake([json.dumps({"name": "Cello", "summary": looped})])
    assert ask(model, "", "u", FIELDS, as_json=True)["summary"] == looped[:62]


def test_helpers():
    assert "3 August 2025" in slotlib.with_date_words("on 2025-08-03")
    assert "August 2025" in slotlib.with_date_words("2025-08")
    assert sentence_case("Wrist Rehab With Sara", EVIDENCE) == "Wrist rehab with Sara"
    assert sentence_case("Data Engineer", "data engineer", first=False) == "data engineer"
    assert slotlib.copied_share("a b c d e f g h", "x a b c d e f g h y", 6) == 1.0
    slots = Slots()
    slots.take(True, "topic name")
    slots.take(False, "topic name")
    slots.take(True, "biography")
    assert slots.report() == {"teacher": 2, "fallback": 1, "total": 3, "teacher_share": 0.667,
                              "by_kind": {"topic name": {"teacher": 1, "fallback": 1},
                                          "biography": {"teacher": 1, "fallback": 0}}}


def test_a_value_that_must_start_with_the_name_is_a_pattern_the_engine_enforces():
    import re

    field = Field("summary", "Summary:", max_words=10, starts="Anne-Marie")
    model = ConstrainedFake([json.dumps({"summary": "Anne-Marie bakes bread on Sundays."})])
    assert ask(model, "", "Sum it up.", [field], as_json=False) == {"summary": "Anne-Marie bakes bread on Sundays."}
    prop = model.calls[0][1].json_schema["properties"]["summary"]
    assert re.fullmatch(prop["pattern"], "Anne-Marie’s oven broke.")
    assert not re.fullmatch(prop["pattern"], "Baked my first loaf.")            # a copied note in the first person
    assert not re.fullmatch(prop["pattern"], "Anne-Marie " + "x" * 80)           # past the length limit
    assert not re.fullmatch(prop["pattern"], 'Anne-Marie says "hi"\nbye')
    copied = ConstrainedFake([json.dumps({"summary": "Baked my first loaf."})])     # an engine would not write it
    assert ask(copied, "", "Sum it up.", [field], as_json=False) == {}


def test_another_form_of_a_word_in_the_notes_grounds_a_label():
    evidence = "Baked my first sourdough loaf. Second bake went better."
    assert label_problem("Sourdough Baking", evidence, person="Maya", max_words=4) == ""
    assert label_problem("sourdough baker", evidence, person="Maya", max_words=4) == ""
    assert label_problem("Sourdough Brewing", evidence, person="Maya", max_words=4) != ""
