"""The answer benchmark's scorer (secondself/answer_scoring.py) and the example question sets it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secondself.answer_scoring import KINDS, contains_answer, is_abstention, load_answer_questions, normalize
from secondself.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(("text", "expected"), [
    ("Fiona MacLeod [2].", "fiona macleod"),
    ("Þorsteinn from Ísafjörður", "thorsteinn from isafjordur"),
    ("Mamma is eighty-six", "mamma is 86"),
    ("the fourth floor", "the 4 floor"),
    ("£58,500 gross", "58500 gross"),
    ("$740.00 per week", "740 per week"),
    ("It is 2.1 kg", "it is 2.1 kg"),
    ("07700 900417", "07700900417"),
])
def test_normalize_case_accents_numbers_citations(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize("written", [
    "14 March 2025", "2025-03-14", "Friday, March 14th, 2025", "14/03/2025", "14.03.2025", "14th of March 2025",
    "Fri 14 Mar 2025",
])
def test_normalize_dates_to_one_form(written: str) -> None:
    assert normalize(written) == "14 march 2025"


def test_numeric_dates_are_read_day_first() -> None:
    assert normalize("03/04/1967") == "3 april 1967"


@pytest.mark.parametrize(("answer", "golds", "expected"), [
    ("I started on Monday 2 February 2026 [1].", ["2 February 2026"], True),
    ("It was 2026-02-02.", ["2 February 2026"], True),
    ("On 2 February.", ["2 February 2026"], True),            # the year left out: still the day
    ("On 2 February 2025.", ["2 February 2026"], False),      # another year: wrong
    ("12 February 2026", ["2 February 2026"], False),         # not inside another number
    ("I'm allergic to wasp stings.", ["wasp"], True),
    ("Wasps, mostly.", ["wasp"], True),                       # plural
    ("A wasplike insect.", ["wasp"], False),                  # word boundary
    ("She lives at 14 Dalmeny Street, Edinburgh.", ["Dalmeny Street"], True),
    ("I was born in Isafjordur.", ["Ísafjörður"], True),
    ("My salary is NZD 168,000 a year.", ["168000"], True),
    ("It is 1,680 a month.", ["168000"], False),
    ("$740.00 per week", ["740"], True),
    ("7400", ["740"], False),
    ("Call 021-483-2297.", ["021 483 2297", "+64 21 483 2297"], True),
    ("+64 21 483 2297", ["021 483 2297", "+64 21 483 2297"], True),
    ("She is eighty-six.", ["86"], True),
    ("On the 4th floor of the building.", ["fourth floor", "level 4"], True),
    ("She is a med student in Dunedin.", ["medicine", "med student"], True),
    ("", ["Fiona"], False),
])
def test_contains_answer(answer: str, golds: list[str], expected: bool) -> None:
    assert contains_answer(answer, golds) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("I don't know — my memories don't say.", True),
    ("I don’t know.", True),
    ("I do not have that information.", True),
    ("I'm not sure.", True),
    ("My memories do not mention it.", True),
    ("That is not mentioned in my notes.", True),
    ("I can't find it in my memories.", True),
    ("Fiona MacLeod, Head of Coastal Risk.", False),
    ("I know Fiona well.", False),
    ("I don't like early meetings.", False),
])
def test_is_abstention_from_text(text: str, expected: bool) -> None:
    assert is_abstention(text) is expected


def test_is_abstention_trusts_the_persona_flag() -> None:
    assert is_abstention("Something withdrawn", abstained=True)


def test_load_rejects_a_bad_question_set(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"id": "x", "kind": "fact", "question": "Q?", "answers": []}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="questions.jsonl:1"):
        load_answer_questions(path)
    path.write_text(json.dumps({"id": "x", "kind": "trivia", "question": "Q?", "answers": ["a"]}) + "\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown kind"):
        load_answer_questions(path)


@pytest.mark.parametrize("person", ["maya", "heldout", "blind"])
def test_example_question_sets_are_grounded_in_their_corpus(person: str) -> None:
    """Every answerable question cites corpus files that exist and hold its evidence; every gold except a resolved
    relative date is written there; every kind is present; ids are unique."""
    from secondself.ingest.readers import read_file

    folder = EXAMPLES / person
    questions = load_answer_questions(folder / "questions.jsonl")
    assert {q.kind for q in questions} == set(KINDS)
    assert len({q.id for q in questions}) == len(questions)
    texts: dict[str, str] = {}
    for q in questions:
        if not q.answerable:
            continue
        for source in q.sources:
            if source not in texts:
                docs = read_file(folder / "corpus" / source)
                texts[source] = "\n".join(d.title + "\n" + "\n".join(b.text for b in d.blocks) for d in docs)
        corpus = "\n".join(texts[s] for s in q.sources)
        assert q.sources and normalize(q.evidence) in normalize(corpus), q.id
        if q.kind != "relative-date":
            assert contains_answer(corpus, q.answers), q.id
        if q.kind == "multi-hop":
            assert len(q.sources) >= 2, q.id
