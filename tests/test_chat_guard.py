"""The persona's chat guard (issue 14, findings 13-16): possessive names are not invented names, an answer
that repeats the prompt's instructions is withdrawn, loops of numbers and tokens are cut early with usage and
timings still reported, and copied memory headers without a day are stripped."""

import json
from pathlib import Path

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher
from secondself.persona import IDK, Persona, PersonaConfig
from secondself.prompts import render
from secondself.text.grounding import unsupported_specifics


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


# -- 14: prompt echo ------------------------------------------------------------------------------------------

def test_an_answer_that_repeats_the_instructions_is_withdrawn(searcher):
    _, p = persona(searcher, ['Maya ("I", "my") in one short sentence, using only the notes.'])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.abstained and ans.text == IDK and "instructions" in ans.reason
    assert ans.raw.startswith("Maya (")


def test_an_answer_that_repeats_a_roles_instructions_is_withdrawn(searcher):
    _, p = persona(searcher, ["I talk about my move to Lisbon and the flat on Rua dos Anjos [1]."],
                   instructions="Talk about my move to Lisbon and nothing else.")
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.abstained and "instructions" in ans.reason


def test_an_answer_that_repeats_a_spaces_instructions_is_withdrawn(searcher):
    context = render("space_context", topic="moving", transcript="Host: Welcome.", speaker="Maya")
    question = f"{context}\n\n{render('space_ask', topic='moving')}"
    instruction = context.split(". ")[1]  # a sentence of the prompt as it is now, not a copy that can drift
    _, p = persona(searcher, [f"{instruction}: I moved to Rua dos Anjos [1]."])
    ans = p.ask(question, query="moving to Lisbon").answer()
    assert ans.abstained and "instructions" in ans.reason


def test_quoting_the_memories_is_not_an_echo(searcher):
    _, p = persona(searcher, ["I moved to Lisbon today with Calvin and James [1]."])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert not ans.abstained, ans.reason


def test_echoed_instructions():
    from secondself.text.grounding import echoed_instructions

    instructions = 'Answer as Tim ("I", "my") in one short sentence, using only the notes.'
    assert echoed_instructions("Tim in one short sentence, using only the notes.", instructions)
    assert echoed_instructions("I moved to Lisbon in July.", instructions) == ""
    assert echoed_instructions("I use only the notes app.", instructions) == ""     # three words: not an echo


# -- 15: loops of numbers and tokens; usage when the guard cuts ------------------------------------------------

class _PiecesModel(FakeChatModel):
    """Streams digits, punctuation and words as separate deltas, as a real tokenizer does."""

    @staticmethod
    def _words(reply, limit):
        import re

        for i, m in enumerate(re.finditer(r"\s*(?:\d+|\w+|[^\w\s])", reply)):
            if i >= limit:
                return
            yield m.group()


@pytest.mark.parametrize("loop", [" 10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10",
                                  " 1" * 60, " the cello" * 30, " on 1 July, 1 July, 1 July" * 12])
def test_a_token_loop_is_cut_early(searcher, loop):
    model, p = persona(searcher, model=_PiecesModel([f"I moved to Lisbon at{loop}"]))
    reply = p.ask("When did I move to Lisbon?")
    streamed = "".join(reply)
    assert len(streamed) < len(f"I moved to Lisbon at{loop}") / 2       # cut well before the end
    ans = reply.answer()
    assert ans.text.startswith("I moved to Lisbon at") or ans.abstained
    assert 0 < ans.usage["completion_tokens"] < 40 and ans.timings["generation_s"] > 0.0


@pytest.mark.parametrize("text", ["I practise scales, then arpeggios, then the Bach suite.",
                                  "We counted 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14.",
                                  "It was very, very, very good.", "The code is 1 1 2 3 5 8 13 21."])
def test_ordinary_text_is_not_a_loop(text):
    from secondself.persona import _looping

    assert not _looping(text + " And more")


def test_usage_and_timings_are_reported_when_the_loop_guard_cuts(searcher):
    model, p = persona(searcher, ["I moved to Lisbon. " * 50])
    ans = p.ask("When did I move to Lisbon?").answer()
    assert ans.text == "I moved to Lisbon."
    assert ans.usage["completion_tokens"] > 0 and ans.usage["prompt_tokens"] > 0
    assert ans.timings["generation_s"] > 0.0


def test_a_cut_stream_is_not_resumed_by_answer(searcher):
    model, p = persona(searcher, ["I moved to Lisbon. " * 50])
    reply = p.ask("When did I move to Lisbon?")
    streamed = "".join(reply)
    ans = reply.answer()
    assert ans.text == "I moved to Lisbon." and streamed.count("Lisbon") == 2
    assert ans.usage["completion_tokens"] == len(streamed.split())          # nothing generated after the cut


def test_the_api_reports_usage_when_the_loop_guard_cuts(tmp_path):
    import openai
    from serving import running_server

    with running_server(tmp_path / "home", persona="fake:" + "I moved to Lisbon. " * 40, jobs=False,
                        mcp=False) as srv:
        srv.ingest_text({"2025-07-02-move.md": "Today I moved to Lisbon."})
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        ask = {"model": "secondself", "messages": [{"role": "user", "content": "Where did I move?"}]}
        r = c.chat.completions.create(**ask)
        assert r.choices[0].message.content == "I moved to Lisbon." and 0 < r.usage.completion_tokens < 40
        usage = [ch.usage for ch in c.chat.completions.create(**ask, stream=True,
                                                              stream_options={"include_usage": True}) if ch.usage]
        assert 0 < usage[-1].completion_tokens < 40 and usage[-1].prompt_tokens > 0


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
