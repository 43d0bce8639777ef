"""The persona's chat guard (issue 14): possessive names are not invented names, and copied memory
headers without a day are stripped."""


import json
from pathlib import Path

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.grounding import unsupported_specifics
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher
from secondself.persona import Persona, PersonaConfig


@pytest.fixture
def searcher(store, embedder, tmp_path: Path):
    d = tmp_path / "mem"
    d.mkdir()
    (d / "2025-07-01.md").write_text("---\ndate: 2025-07-01\n---\n# Moving day\n\nMoved to Lisbon today with "
                                     "Calvin and James, Rua dos Anjos 45.\n")
    (d / "chat.jsonl").write_text(json.dumps({"speaker": "Tomás", "text": "Happy birthday! The blue bowl is yours.",
                                              "timestamp": "2025-08-14T09:00:00Z"}) + "\n")
    ingest(store, embedder, [d])
    return Searcher(store, embedder)


def persona(searcher, replies=(), model=None, **kw):
    model = model or FakeChatModel(list(replies))
    return model, Persona(model, searcher, name="Maya", config=PersonaConfig(min_cosine=0.2, min_coverage=0.5), **kw)


# -- 13: possessives ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["I moved with Calvin's help.", "I moved with James' sister.",
                                    "I moved with Calvin’s help.", "I moved with James’ van."])
def test_a_possessive_of_a_known_name_is_supported(answer):
    assert unsupported_specifics(answer, "Moved to Lisbon with Calvin and James.") == []


def test_a_possessive_of_an_unknown_name_is_still_invented():
    assert unsupported_specifics("I stayed at Berta's flat.", "Moved to Lisbon with Calvin.") == ["Berta's"]


def test_an_answer_with_a_possessive_name_stands(searcher):
    _, p = persona(searcher, ["I kept Tomás's blue bowl from my birthday [2]."])
    ans = p.ask("What did Tomás give me for my birthday?").answer()
    assert not ans.abstained, ans.reason
    _, p = persona(searcher, ["I moved to Lisbon with James' help [1]."])
    assert not p.ask("Who helped me move to Lisbon?").answer().abstained


# -- 16: copied headers without a day ----------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["(2023, chat: Chat: session_9; Tomás, Maya)", "(2023-05, chat: Chat: session_9)",
                                    "[1] (May 2023, note: Moving day)", "(1 July 2025, note: Moving day)"])
def test_copied_headers_without_a_day_are_stripped(searcher, header):
    _, p = persona(searcher, [f"{header} I moved to Lisbon [1]."])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert not ans.abstained and ans.text == "I moved to Lisbon [1].", ans.reason
    _, p = persona(searcher, [header])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.abstained and "header" in ans.reason
