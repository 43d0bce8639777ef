import json
from pathlib import Path

import pytest

from secondself.backends.chat import FakeChatModel, Message
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher
from secondself.persona import IDK, Persona, PersonaConfig, unsupported_specifics


@pytest.fixture
def searcher(store, embedder, tmp_path: Path):
    d = tmp_path / "mem"
    d.mkdir()
    (d / "2025-03-02.md").write_text("---\ndate: 2025-03-02\n---\n# Home\n\nI live in Porto on Rua de Cedofeita.\n")
    (d / "2025-07-01.md").write_text("---\ndate: 2025-07-01\n---\n# Moving day\n\nMoved to Lisbon today, Rua dos Anjos 45.\n")
    (d / "chat.jsonl").write_text(json.dumps({"speaker": "Tomás", "text": "Happy birthday! The blue bowl is yours.",
                                              "timestamp": "2025-08-14T09:00:00Z"}) + "\n")
    ingest(store, embedder, [d])
    return Searcher(store, embedder)


SMALL = "SmolLM2-135M-Instruct"  # the catalog says it does not take a system prompt


def persona(searcher, replies=(), model_name="fake", **cfg):
    model = FakeChatModel(list(replies), name=model_name)
    return model, Persona(model, searcher, name="Maya", config=PersonaConfig(min_cosine=0.2, min_coverage=0.5, **cfg))


def test_prompt_has_dated_sourced_passages_best_last(searcher):
    model, p = persona(searcher, ["I moved to Lisbon [1]."])
    ans = p.ask("When did I move to Lisbon?").answer()
    system, user = model.calls[0][0]
    assert system.role == "system" and system.content.startswith("You are Maya.") and "[1]" not in system.content
    prompt = user.content
    assert prompt.startswith("Memories:") and "[1] (1 July 2025, note: Moving day)" in prompt
    assert prompt.rindex("[1] (") > prompt.rindex("[2] (")  # best passage nearest the question
    assert prompt.index("Question: When did I move to Lisbon?") > prompt.rindex("[1] (")
    assert ans.citations[0]["path"] == "2025-07-01.md" and ans.citations[0]["cited_by"] == "model"
    assert not ans.abstained and ans.usage["completion_tokens"] > 0
    assert set(ans.timings) >= {"retrieval_s", "assembly_s", "generation_s", "first_token_s"}


def test_unanswerable_question_says_idk_without_calling_the_model(searcher):
    model, p = persona(searcher)
    ans = p.ask("What is my blood type?").answer()
    assert ans.text == IDK and ans.abstained and model.calls == []


def test_invented_specifics_are_withdrawn(searcher):
    model, p = persona(searcher, ["I live in Berlin since 2019 [1]."])
    ans = p.ask("Where do I live, Lisbon or Porto?").answer()
    assert ans.abstained and ans.text == IDK
    assert "Berlin" in ans.reason and "2019" in ans.reason and ans.raw.startswith("I live in Berlin")


def test_model_saying_idk_is_respected(searcher):
    _, p = persona(searcher, ["I don't know — my memories don't say."])
    assert p.ask("Where do I live in Lisbon?").answer().abstained


def test_citation_falls_back_to_overlap(searcher):
    _, p = persona(searcher, ["Tomás gave me the blue bowl for my birthday."])
    ans = p.ask("What did Tomás give me for my birthday?").answer()
    assert not ans.abstained and ans.citations[0]["cited_by"] == "overlap"
    assert ans.citations[0]["path"].startswith("chat.jsonl")


def test_context_budget_drops_weakest_passages(searcher):
    model, p = persona(searcher, ["ok"])
    passages = p.retrieve("Where do I live in Lisbon or Porto?")
    full, _ = p.build_messages("Where do I live?", passages)
    need = sum(model.count_tokens(m.content) + 4 for m in full)
    model.context_window = need + p.config.max_tokens + 64 - 8  # a little too small for every passage
    msgs, kept = p.build_messages("Where do I live?", passages)
    assert 0 < len(kept) < len(passages) and kept[0].number == 1  # the weakest went first
    assert sum(model.count_tokens(m.content) + 4 for m in msgs) <= model.context_window - p.config.max_tokens - 64


def test_a_context_too_small_for_the_system_prompt_gets_the_compact_layout(searcher):
    # a model outside the catalog counts as capable; a tiny (or personal) one with a 512-token window could
    # not even hold the system prompt, and every ask was a context overflow
    model, p = persona(searcher, ["I moved to Lisbon [1]."])
    assert p.capable
    passages = p.retrieve("When did I move to Lisbon?")
    [system, *_] = p._render("When did I move to Lisbon?", [], [])
    model.context_window = model.count_tokens(system.content) + p.config.max_tokens + 64  # no room left
    msgs, kept = p.build_messages("When did I move to Lisbon?", passages)
    assert [m.role for m in msgs] == ["user"] and "Notes from Maya's memories" in msgs[0].content


def test_history_is_included(searcher):
    history = [Message("user", "Where did I move?"), Message("assistant", "To Lisbon [1].")]
    for name, roles in (("fake", ["system", "user", "assistant", "user"]), (SMALL, ["user", "assistant", "user"])):
        model, p = persona(searcher, ["Lisbon [1]."], model_name=name)
        p.ask("And which street in Lisbon?", history=history).answer()
        assert [m.role for m in model.calls[0][0]] == roles


def test_a_model_without_system_prompts_gets_one_compact_message(searcher):
    model, p = persona(searcher, ["I moved to Lisbon [1]."], model_name=SMALL)
    assert not p.capable
    assert not p.ask("When did I move to Lisbon?").answer().abstained
    [message] = model.calls[0][0]
    assert message.role == "user" and "Notes from Maya's memories" in message.content
    assert "[1] (1 July 2025, note: Moving day)" in message.content
    assert message.content.index("Question: When did I move to Lisbon?") > message.content.rindex("[1] (")


def test_the_capability_comes_from_the_catalog():
    from secondself.backends.catalog import follows_system_prompt

    assert not follows_system_prompt("SmolLM2-135M-Instruct")           # llama.cpp and transformers name it so
    assert not follows_system_prompt("smollm2-135m") and not follows_system_prompt("embedded")
    assert not follows_system_prompt("SmolLM2-135M-Instruct+maya-v1")   # a personal model on that base
    assert follows_system_prompt("Qwen2.5-Coder-1.5B-Instruct") and follows_system_prompt("qwen2.5-coder-0.5b")
    assert follows_system_prompt("llama3.1:8b") and follows_system_prompt("fake")  # outside the catalog


def test_a_roles_instructions_and_layer_one_go_in_the_system_prompt(searcher):
    model = FakeChatModel(["I live in Lisbon [1]."])
    p = Persona(model, searcher, name="Maya", config=PersonaConfig(min_cosine=0.2, min_coverage=0.5),
                profile="I live in Lisbon.", instructions="Answer as Maya's work self.")
    p.ask("Where do I live, Lisbon or Porto?").answer()
    system, user = model.calls[0][0]
    assert "Answer as Maya's work self." in system.content and "I live in Lisbon." in system.content
    assert "work self" not in user.content


def test_unsupported_specifics():
    ev = "Moved to Lisbon on 1 July 2025, Rua dos Anjos 45. Where do I live?"
    assert unsupported_specifics("I live in Lisbon [1], at Rua dos Anjos 45.", ev) == []
    assert unsupported_specifics("I moved to Madrid in 2024.", ev) == ["Madrid", "2024"]
    assert unsupported_specifics("Yes. My flat is nice.", ev) == []


def test_content_free_or_echo_answers_are_withdrawn(searcher):
    _, p = persona(searcher, ["I'm sorry for any mistakes. I'm sorry for any mistakes."])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.abstained and "does not draw on any memory" in ans.reason
    _, p = persona(searcher, ["When did I move to Lisbon?"])
    assert "repeated the question" in p.ask("When did I move to Lisbon?").answer().reason


def test_repeated_sentences_collapse():
    from secondself.persona import collapse_repeats

    assert collapse_repeats("I moved. I moved. I moved! Then I slept.") == "I moved. Then I slept."


def test_wrapped_idk_and_copied_headers_count_as_abstentions(searcher):
    _, p = persona(searcher, ['The answer is: "I don\'t know."'])
    assert p.ask("When did I move to Lisbon?").answer().abstained
    _, p = persona(searcher, ["1. 1 July 2025, note: Moving day"])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.abstained and "header" in ans.reason
    _, p = persona(searcher, ["[1] (1 July 2025, note: Moving day) I moved to Lisbon on 1 July."])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert not ans.abstained and ans.text == "I moved to Lisbon on 1 July."


def test_generation_stops_when_the_model_loops(searcher):
    model, p = persona(searcher, ["I moved to Lisbon. " * 50])
    reply = p.ask("When did I move to Lisbon?")
    assert "".join(reply).count("I moved to Lisbon.") == 2  # stopped right after the first repeat
    assert reply.answer().text == "I moved to Lisbon."


def test_facts_from_layer_one_count_as_support(searcher):
    model = FakeChatModel(["I live in Lisbon, since 2025-07-01, and work at Tidewater Labs [1]."])
    p = Persona(model, searcher, name="Maya", config=PersonaConfig(min_cosine=0.2, min_coverage=0.5),
                profile=lambda q: "Maya lives in Lisbon.\n- I work at Tidewater Labs (since 2025-09-08)\n"
                                  "- I live in Lisbon (since 2025-07-01)")
    ans = p.ask("Where do I live, Lisbon or Porto?").answer()
    assert not ans.abstained, ans.reason
    assert "What you know about yourself:\nMaya lives in Lisbon." in model.calls[0][0][0].content
    bare = Persona(FakeChatModel(["I live in Lisbon, since 2025-07-01, and work at Tidewater Labs [1]."]), searcher,
                   name="Maya", config=PersonaConfig(min_cosine=0.2, min_coverage=0.5))
    assert bare.ask("Where do I live, Lisbon or Porto?").answer().abstained      # without layer 1: unsupported


def test_contraction_pieces_are_no_query_terms():
    from secondself.memory.search import query_terms

    # "s" is in nearly every memory: it made any note about Tomás cover two thirds of this question (retrieval gate)
    assert query_terms("When is Tomás's birthday?") == ["tomás", "birthday"]
    assert query_terms("What's my diet? I don't know.") == ["diet"]


def test_an_identifier_not_written_by_the_asked_label_is_withdrawn(store, embedder, tmp_path):
    """Asked for a passport number it does not have, the 1.5B gave the phone number it had (heldout, blind)."""
    d = tmp_path / "ids"
    d.mkdir()
    (d / "2026-01-20.md").write_text("---\ndate: 2026-01-20\n---\n# Admin\n\nRenewed my passport. Got a UK "
                                     "SIM at last: my new number is 07700 900417.\n")
    ingest(store, embedder, [d])
    s = Searcher(store, embedder)
    _, p = persona(s, ["My passport number is 07700 900417 [1]."])
    ans = p.ask("What is my passport number?").answer()
    assert ans.abstained and "07700 900417" in ans.reason
    _, p = persona(s, ["My UK mobile number is 07700 900417 [1]."])
    ans = p.ask("What is my UK mobile number?").answer()
    assert not ans.abstained and "07700 900417" in ans.text


def test_unattributed_identifiers():
    from secondself.text.grounding import unattributed_identifiers as unattributed

    notes = ["Energy: Octopus, account A-3F2C91D7", "New work number for me btw, they moved me to the Wairakei "
             "office: 07 376 4432", "Mobile: 021 483 2297"]
    assert unattributed("What is my bank sort code?", "The sort code is A-3F2C91D7.", notes) == ["A-3F2C91D7"]
    flat = ["- [x] Bank: Monzo - [x] GP: Leith Mount Surgery - [x] Energy: Octopus, account A-3F2C91D7"]
    assert unattributed("What is my bank sort code?", "A-3F2C91D7", flat) == ["A-3F2C91D7"]   # list items end
    assert unattributed("What is Wiremu's new work number?", "It is 07 376 4432.", notes) == []
    assert unattributed("What is my home landline number?", "021 483 2297", notes) == ["021 483 2297"]
    assert unattributed("What is my mobile number?", "021 483 2297", notes) == []
    assert unattributed("How much is the rent?", "A-3F2C91D7", notes) == []        # no labelled identifier asked
    assert unattributed("What is my account number?", "A-3F2C91D7 since 2025", notes) == []
