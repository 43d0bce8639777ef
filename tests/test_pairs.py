"""Preference pairs from the project's own checks: every rejected sample fails the check that produced it, and
a draft that passes its check is never used as a rejected sample."""

import pytest

from secondself.backends.chat import FakeChatModel, Message
from secondself.backends.embedders import HashingEmbedder
from secondself.bridge.disclosure import current_facts, mentions
from secondself.ingest.pipeline import ingest
from secondself.memory.build import BuildOptions, build
from secondself.memory.versions import load_version
from secondself.persona import IDK
from secondself.store import Store
from secondself.text.grounding import unsupported_specifics
from secondself.train.evaluate import refused
from secondself.train.pairs import (
    NO_CORRECTION,
    SOURCES,
    Pair,
    build_pairs,
    grounding_problem,
    load_pairs,
    refusal_problem,
    sample_drafts,
    save_pairs,
)
from secondself.train.synthesis import synthesize

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def maya(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    with Store(root / "memory.sqlite3") as s:
        ingest(s, HashingEmbedder(128), [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
        build(s, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
        profile = load_version(s)
        chunks = {c.id: c for c in s.all_chunks()}
    return profile, chunks, synthesize(profile, chunks, "Maya").examples


def _user(prompt):
    return prompt[-1][1]


def _drafter(messages):
    """Per prompt kind: one draft that fails its check, one that passes it."""
    system, question = messages[0].content, messages[-1].content
    if "Rewrite the user's request" in system:                           # enhance
        return f"{question} For context: I live in Barcelona."
    if question.startswith("My request:"):                               # critic
        return "I would rather you asked me first."
    if "blood" in question or "football" in question or "car" in question:
        return "My answer is 42, as Doctor Zhivago told me."
    return "I live in Barcelona with Felix since 1999."


def _passer(examples):
    """Per prompt kind: a draft that passes its check (a reworded reference, or a refusal)."""
    reference = {e.prompt[-1][1]: e.completion for e in examples if e.prompt}

    def respond(messages):
        question = messages[-1].content
        if "Rewrite the user's request" in messages[0].content:
            return reference[question].replace("For context:", "Context:")
        if question.startswith("My request:"):
            return reference[question] + " Please fix that."
        return "Sorry, I don't know that."      # a refusal (not the chosen one word for word) invents nothing
    return respond


def test_each_rejected_sample_fails_the_check_that_produced_it(maya):
    profile, chunks, examples = maya
    calls = {"n": 0}
    passing = _passer(examples)

    def respond(messages):
        calls["n"] += 1
        return (_drafter if calls["n"] % 2 else passing)(messages)

    report = build_pairs(examples, sample_drafts(FakeChatModel(respond=respond)), chunks=chunks, profile=profile,
                         person="Maya", prompts_per_source=6)
    by = {s: [p for p in report.pairs if p.source == s] for s in SOURCES}
    assert all(by.values()), {s: len(v) for s, v in by.items()}
    train_prompts = {e.prompt for e in examples if e.split == "train"}
    assert all(p.prompt in train_prompts for p in report.pairs)          # held-out items stay for evaluation
    for p in report.pairs:
        assert p.why and p.rejected != p.chosen
    for p in by["grounding"]:
        assert unsupported_specifics(p.rejected, p.chosen + _user(p.prompt)), p
        assert not grounding_problem(p.chosen, p.chosen)
    for p in by["refusal"]:
        assert p.chosen == IDK and not refused(p.rejected)
    now, ended = current_facts(profile, "Maya")
    for p in by["disclosure"]:
        if p.origin == "constructed":        # the chosen text plus one of Maya's details it does not need
            leaked = [f.object for f in [*now, *ended] if mentions(p.rejected, f.object) and not
                      mentions(p.chosen, f.object)]
            assert leaked and p.rejected.startswith(p.chosen), p
        else:
            assert "Barcelona" in p.rejected and "not selected for disclosure" in p.why
    constructed = [p for p in by["critique"] if p.origin == "constructed"]
    assert constructed and all(p.rejected == NO_CORRECTION and "leaves out the correction" in p.why
                               for p in constructed)
    for p in by["critique"]:
        old = [f.object for f in ended if mentions(p.chosen, f.object)]
        assert old and not any(mentions(p.rejected, o) for o in old)     # the rejected critique misses it
    # an answerable question's grounded answer over "I don't know"
    assert {p.prompt for p in by["answerable"]} == {p.prompt for p in by["grounding"]}
    assert all(p.rejected == IDK and refused(p.rejected) and not refused(p.chosen) for p in by["answerable"])
    # the drafts that passed their checks were counted and never used
    assert all(report.counts[s]["passed"] > 0 for s in SOURCES[:-1]), report.counts
    for p in report.pairs:
        assert p.rejected != passing([Message(r, t) for r, t in p.prompt]).strip()

def test_a_draft_that_passes_is_not_used(maya):
    profile, chunks, examples = maya
    report = build_pairs(examples, sample_drafts(FakeChatModel(respond=_passer(examples))), chunks=chunks, profile=profile,
                         person="Maya", prompts_per_source=4)
    assert {p.origin for p in report.pairs} == {"constructed"}            # every draft passed its check
    assert {p.source for p in report.pairs} == {"disclosure", "critique", "answerable"}
    assert report.counts["grounding"]["passed"] == report.counts["grounding"]["prompts"] > 0  # 2 drafts, 1 distinct


def test_the_checks():
    evidence = "I moved to Lisbon on 1 July 2025. My sister Rita lives in Porto."
    assert grounding_problem("I live in Lisbon since 1 July 2025.", evidence) == ""
    assert "Barcelona" in grounding_problem("I live in Barcelona.", evidence)
    assert "2019" in grounding_problem("I moved in 2019.", evidence)
    assert grounding_problem(IDK, evidence) == ""
    assert refusal_problem(IDK) == "" and refusal_problem("") == ""
    assert refusal_problem("My blood type is A positive.")


def test_drafts_are_sampled_and_pairs_round_trip(tmp_path):
    model = FakeChatModel(["one", "two"])
    draw = sample_drafts(model, temperature=0.8, seed=3)
    assert draw((("user", "hi"),), 2) == ["one", "two"]
    assert all(s.temperature == 0.8 for _, s in model.calls) and len({s.seed for _, s in model.calls}) == 2
    with pytest.raises(ValueError):
        sample_drafts(model, temperature=0)
    pairs = [Pair("refusal", (("system", "s"), ("user", "q")), IDK, "A+", "it answers", "draft")]
    save_pairs(tmp_path / "pairs.jsonl", pairs)
    assert load_pairs(tmp_path / "pairs.jsonl") == pairs


def test_naming_the_person_is_no_invention(maya):
    """A draft may name its own speaker ("Maya's journal"); a cited memory in the first person never does."""
    profile, chunks, examples = maya
    from secondself.train.pairs import check_for

    item = next(e for e in examples if e.split == "train" and e.kind == "self_qa"
                and check_for("grounding", e, chunks=chunks, profile=profile, person="Maya") is not None
                and "Maya" not in " ".join(chunks[i].text for i in e.sources))
    check = check_for("grounding", item, chunks=chunks, profile=profile, person="Maya")
    assert check("It is in Maya's journal.") == "" and "Rome" in check("It is in Rome.")
