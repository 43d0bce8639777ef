"""Questions that need two memories, and questions about someone else (issue 12, items 5a and 5c)."""

from pathlib import Path

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.ingest.pipeline import ingest
from secondself.memory.hops import Plan, merge, plan, valid_bridge
from secondself.memory.search import Searcher
from secondself.persona import Persona, PersonaConfig
from secondself.types import Chunk, Hit

NOTES = {
    "2024-01-08.md": "# New job\n\nFirst day at Globex Labs as a data engineer. Before this I spent five years at "
                     "Initech Freight, and I do not miss the commute.",
    "2023-03-14.md": "# Review\n\nAnnual review with Peter Gibbons this morning. He has run the analytics team at "
                     "Initech Freight since 2019 and wants me to lead the forecasting work.",
    "2024-02-02.md": "# Globex onboarding\n\nOnboarding at Globex Labs: laptop, badge, a manager who answers "
                     "messages at midnight. The Globex canteen is good.",
    "2024-03-01.md": "# Globex planning\n\nPlanning week at Globex Labs. My manager wants the pipeline rewritten "
                     "before summer; Globex moves fast.",
    "2024-04-11.md": "# Dinner\n\nMy brother Duarte came for dinner and stayed until midnight.",
    "2024-04-20.md": "# Climbing\n\nDuarte suggested I try the bouldering gym in Marvila instead of the old one.",
    "2024-05-02.md": "# Advice\n\nThe physio suggested I try swimming; the bank suggested I try a savings plan. "
                     "Everyone suggests something I should try.",
    "2024-05-09.md": "# Pottery\n\nTomás Reis turns out to be a ceramicist with a studio by the river.",
}


@pytest.fixture
def searcher(store, embedder, tmp_path: Path):
    d = tmp_path / "mem"
    d.mkdir()
    for name, text in NOTES.items():
        (d / name).write_text(f"---\ndate: {name[:10]}\n---\n{text}\n", encoding="utf-8")
    ingest(store, embedder, [d], person_name="Ann")
    return Searcher(store, embedder)


def persona(searcher, replies, model_name="fake", k=2):
    model = FakeChatModel(list(replies), name=model_name)
    return model, Persona(model, searcher, name="Ann", config=PersonaConfig(k=k, min_cosine=0.0, min_coverage=0.0))


# -- splitting a question ---------------------------------------------------------------------------------

def test_a_relative_clause_is_a_hop():
    p = plan("Who was my manager at the job I had before Globex?")
    assert p.hop and p.hop.phrase == "the job I had before Globex" and p.hop.noun == "the job"
    assert p.hop.resolved("Initech Freight") == "Who was my manager at Initech Freight?"
    assert p.queries == ["the job I had before Globex", "Who was my manager at the job?"]
    assert plan("Who is the friend who lent me the tent?").hop.phrase == "the friend who lent me the tent"
    assert plan("Which city did I move to after the job I took in spring?").hop.phrase == "the job I took in spring"


def test_a_relation_and_joined_names_are_looked_up_one_by_one():
    p = plan("What did my brother suggest I try?")
    assert (p.relation, p.relation_phrase, p.queries) == ("brother", "my brother", ["my brother"])
    assert plan("Where does my mum live?").relation == "mother"
    assert plan("Did Inês or Tomás Reis visit me in April?").per_name == (
        "Did Inês visit me in April?", "Did Tomás Reis visit me in April?")


@pytest.mark.parametrize("question", [
    "What is my current home address?", "What is the name of my sourdough starter?", "Who is my manager?",
    "What is the name of my dentist?", "What did the doctor say I should do?", "When is Inês coming to Lisbon?",
    "Do I have any allergies?", "What did Duarte give me at my leaving party?",
])
def test_simple_questions_are_not_split(question):
    assert plan(question) == Plan() and not plan(question)


def _hit(cid: int) -> Hit:
    return Hit(Chunk(cid, "s", f"{cid}.md", "", 0, "text"), 1.0, "")


def test_merge_takes_turns_without_duplicates():
    merged = merge([[_hit(1), _hit(2), _hit(3)], [_hit(2), _hit(4)], []], 3)
    assert [h.chunk.id for h in merged] == [1, 2, 4]
    assert merge([], 4) == []


def test_a_bridge_must_be_a_short_name_written_in_its_memories():
    evidence = "Before this I spent five years at Initech Freight."
    question = "Who was my manager at the job I had before Globex?"
    assert valid_bridge(' "Initech Freight". [1]', question, evidence) == "Initech Freight"
    assert valid_bridge("Umbrella Corp", question, evidence) == ""         # not in the memories
    assert valid_bridge("unknown", question, evidence) == ""
    assert valid_bridge("Globex", question, evidence + " Globex") == ""     # the question's own word
    assert valid_bridge("the one I had for five years at the port", question, evidence) == ""


# -- the persona: both memories reach the model ----------------------------------------------------------

def test_a_capable_model_names_the_hop_and_both_memories_are_shown(searcher):
    model, p = persona(searcher, ["Initech Freight", "Peter Gibbons ran the team [1]."])
    ans = p.ask("Who was my manager at the job I had before Globex?").answer()
    hop_prompt = model.calls[0][0][-1].content
    assert 'What is "the job I had before Globex"?' in hop_prompt and "Initech Freight" in hop_prompt
    shown = {pa.chunk.path for pa in ans.passages}
    assert {"2023-03-14.md", "2024-01-08.md"} <= shown, shown     # the answer's memory and the bridge's
    final = model.calls[1][0][-1].content
    assert "Peter Gibbons" in final
    assert final.endswith("Question: Who was my manager at Initech Freight?")   # asked about what the hop named
    assert not ans.abstained and ans.citations


def test_the_plain_question_alone_misses_the_second_memory(searcher):
    model, p = persona(searcher, ["Peter Gibbons [1]."])
    p.config = PersonaConfig(k=2, min_cosine=0.0, min_coverage=0.0, hops=False)
    shown = {pa.chunk.path for pa in p.retrieve("Who was my manager at the job I had before Globex?")}
    assert "2023-03-14.md" not in shown   # why hops exist: this is what the test above adds


def test_a_small_model_gets_the_clause_retrieved_without_a_hop_call(searcher):
    model, p = persona(searcher, ["Peter Gibbons ran the team [1]."], model_name="SmolLM2-135M-Instruct")
    ans = p.ask("Who was my manager at the job I had before Globex?").answer()
    assert len(model.calls) == 1                                 # no model call to name the clause
    assert "2024-01-08.md" in {pa.chunk.path for pa in ans.passages}


def test_an_unusable_bridge_falls_back_to_the_clause(searcher):
    model, p = persona(searcher, ["Umbrella Corp", "I don't know."])
    ans = p.ask("Who was my manager at the job I had before Globex?").answer()
    assert "2024-01-08.md" in {pa.chunk.path for pa in ans.passages} and ans.abstained
    assert "Umbrella" not in model.calls[1][0][-1].content


# -- someone else in the person's life ---------------------------------------------------------------------

def test_a_relation_is_replaced_by_the_name_the_memories_give(searcher):
    model, p = persona(searcher, ["Duarte suggested I try the bouldering gym in Marvila [1]."])
    ans = p.ask("What did my brother suggest I try?").answer()
    shown = {pa.chunk.path for pa in ans.passages}
    assert {"2024-04-20.md", "2024-04-11.md"} <= shown, shown     # what he suggested, and that he is my brother
    assert model.calls[0][0][-1].content.endswith("Question: What did Duarte suggest I try?")
    assert not ans.abstained and "2024-04-20.md" in {c["path"] for c in ans.citations}


def test_a_question_about_someone_else_is_asked_as_written(searcher):
    model, p = persona(searcher, ["Tomás is a ceramicist [1]."])
    ans = p.ask("What does Tomás do for a living?").answer()
    system, user = model.calls[0][0]
    assert user.content.endswith("Question: What does Tomás do for a living?")   # not reframed as the person
    assert "someone else in your life" in system.content
    assert not ans.abstained and ans.text == "Tomás is a ceramicist [1]."
