"""Training data synthesis on the example person (hashing embedder, no real models)."""

import re
from dataclasses import replace

import pytest

from secondself.backends.chat import FakeChatModel
from secondself.backends.embedders import HashingEmbedder
from secondself.ingest.pipeline import ingest
from secondself.memory.build import BuildOptions, build
from secondself.memory.versions import load_version
from secondself.persona import IDK
from secondself.store import Store
from secondself.text.grounding import unsupported_specifics
from secondself.train.generic import GENERIC_PROMPTS, GENERIC_TEXT, RETENTION_HELDOUT, retention_examples
from secondself.train.paraphrase import as_self
from secondself.train.split import FACT_KINDS
from secondself.train.synthesis import KINDS, synthesize

from .conftest import EXAMPLES

EMBEDDER = HashingEmbedder(128)


@pytest.fixture(scope="module")
def maya(tmp_path_factory):
    """(profile, chunks) of the example person, ingested and built once for the module."""
    path = tmp_path_factory.mktemp("syn") / "m.sqlite3"
    with Store(path) as s:
        ingest(s, EMBEDDER, [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
        build(s, EMBEDDER.name, FakeChatModel(), "Maya", BuildOptions(slots=False))
        return load_version(s), {c.id: c for c in s.all_chunks()}


@pytest.fixture(scope="module")
def report(maya):
    return synthesize(maya[0], maya[1], "Maya")


def _user(e):
    return next((c for r, c in e.prompt if r == "user"), "")


def test_every_kind_is_made_and_counted(report):
    for kind in KINDS:
        assert report.counts[kind]["train"] > 0, kind
        assert sum(1 for e in report.examples if e.kind == kind) == sum(report.counts[kind].values())
    assert set(report.dropped) <= {"unsupported", "duplicate", "too_long", "empty", "uncited", "answerable",
                                   "no_details", "quarantined", "notes_capped"}


def test_every_completion_is_supported_by_its_cited_chunks(report, maya):
    chunks = maya[1]
    for e in report.examples:
        if e.kind == "unanswerable":
            assert e.sources == ()
            continue
        assert e.sources and set(e.sources) <= set(chunks)
        evidence = "\n".join(f"{chunks[i].title}\n{chunks[i].heading}\n{chunks[i].text}" for i in e.sources)
        evidence += "\n" + "\n".join(c for r, c in e.prompt if r == "user")
        # months and rendered dates come from the fact fields, so only names are checked here
        names = [w for w in unsupported_specifics(e.completion, evidence)
                 if not re.fullmatch(r"\d+|January|February|March|April|May|June|July|August|September|"
                                     r"October|November|December", w)]
        assert not names, (e.kind, e.completion, names)


def test_an_unseen_fact_group_appears_in_no_training_item_or_note(report, maya):
    unseen = [(e, k) for e, k in zip(report.examples, report.keys, strict=True) if e.split == "unseen"]
    assert unseen and all(e.kind in FACT_KINDS for e, _ in unseen)
    keys = {k for _, ks in unseen for k in ks}
    chunks = {i for e, _ in unseen for i in e.sources}
    names = {w for e, _ in unseen for w in re.findall(r"(?<=[a-z,] )[A-Z][a-zà-ÿ]{3,}", e.completion)} \
        - {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December", "Maya"}
    for e, ks in zip(report.examples, report.keys, strict=True):
        if e.split == "unseen":
            continue
        assert not keys & set(ks), (e.kind, e.split, ks)               # every wording of the group held out
        if e.split == "train":
            assert not chunks & set(e.sources), (e.kind, e.completion[:60])    # nor its notes
            text = " ".join([*(t for _, t in e.prompt), e.completion])
            assert not any(re.search(rf"\b{n}\b", text) for n in names), (e.kind, e.completion[:60], names)


def test_trained_facts_keep_some_wordings_out_for_the_recall_test(report):
    by_answer: dict[tuple[str, str], set[str]] = {}
    for e in report.examples:
        if e.kind in FACT_KINDS and e.split != "unseen":
            by_answer.setdefault((e.kind, e.completion), set()).add(e.split)
    several = [sides for (kind, answer), sides in by_answer.items() if len(sides) > 1]
    assert len(several) >= 10
    assert all("train" in sides for sides in by_answer.values())      # a trained fact: some wording trained
    assert any("heldout" in s for s in several) and any("valid" in s for s in several)   # recall vs early stop
    other = {}
    for e, g in zip(report.examples, report.groups, strict=True):   # other kinds: whole groups on one side
        if e.kind not in FACT_KINDS:
            other.setdefault(g, set()).add(e.split)
    assert all(len(s) == 1 for s in other.values())


def test_each_fact_is_asked_in_several_wordings_and_persons(report):
    lisbon = {_user(e): e.split for e in report.examples if e.completion == "I live in Lisbon, since 1 July 2025."
              and e.kind == "self_qa"}
    assert {"Where do you live?", "Where do I live?", "Which city do I live in now?"} <= set(lisbon)
    assert "train" in lisbon.values() and {"heldout", "valid"} & set(lisbon.values())
    assert as_self("Where were you living before you moved to Lisbon?") == "Where was I living before I moved to Lisbon?" \
        or as_self("Where were you living before you moved to Lisbon?") is None
    assert as_self("Are you still seeing Tomás?") == "Am I still seeing Tomás?"
    assert as_self("Who is your manager?") == "Who is my manager?" and as_self("Who is Inês?") is None


def test_raw_notes_are_a_minority_of_training(report):
    train = [e for e in report.examples if e.split == "train"]
    words = [len(e.completion.split()) for e in train if e.kind == "notes"]
    assert words and sum(words) <= 0.25 * sum(len(e.completion.split()) for e in train)
    assert report.dropped["notes_capped"] > 0


def test_the_notes_share_holds_over_a_run_that_trains_notes_once(maya, report):
    """`epochs`: the other items are trained that many times per pass over the notes, so more notes fit in
    the same share of the run's trained words."""
    six = synthesize(maya[0], maya[1], "Maya", epochs=6)
    train = [e for e in six.examples if e.split == "train"]
    notes = sum(len(e.completion.split()) for e in train if e.kind == "notes")
    others = sum(len(e.completion.split()) for e in train if e.kind != "notes")
    assert notes <= 0.25 * (notes + 6 * others)
    assert six.counts["notes"]["train"] > report.counts["notes"]["train"]
    assert [e for e in six.examples if e.kind != "notes"] == [e for e in report.examples if e.kind != "notes"]


def test_no_duplicates(report):
    seen = {(e.prompt, e.completion) for e in report.examples}
    assert len(seen) == len(report.examples)


def test_self_qa_is_first_person_and_time_scoped(report):
    qa = {_user(e): e for e in report.examples if e.kind == "self_qa"}
    assert qa["Where did you live in April 2025?"].completion == "In April 2025, I lived in Porto."
    assert "Now I live in Lisbon" in qa["Do you still live in Porto?"].completion
    assert qa["Where do you live?"].prompt[0] == ("system", "You are Maya. Answer as Maya, in the first person, "
                                                            "from your own memories.")


def test_people_and_events(report):
    people = {_user(e): e.completion for e in report.examples if e.kind == "people"}
    assert people["Who is Inês?"] == "Inês Okafor-Lindqvist is my sister."
    events = {_user(e): e.completion for e in report.examples if e.kind == "events"}
    assert "Took Otto out of the case this afternoon." in events["What happened on 20 September 2025?"]
    # only the person's own sentences: no other speaker's chat turn
    assert not any(re.match(r"(Tomás|Mamma|Pappa|Inês|ChatGPT):", c) for c in events.values())


def test_unanswerable_says_idk(report, maya):
    un = [e for e in report.examples if e.kind == "unanswerable"]
    assert un and all(e.completion == IDK for e in un)
    corpus = " ".join(c.text for c in maya[1].values()).casefold()
    assert "blood" not in corpus and any("blood type" in _user(e) for e in un)


def test_enhance_discloses_only_related_facts(report):
    enh = {_user(e): e.completion for e in report.examples if e.kind == "enhance"}
    teacher = enh["Suggest a music teacher."]
    assert teacher.startswith("Suggest a music teacher.") and "Henrique Sá" in teacher
    assert "Tidewater" not in teacher and "Data Engineer" not in teacher
    assert "Lisbon" in enh["Find me a flat."] and "Catarina" not in enh["Find me a flat."]
    sys = next(e.prompt[0][1] for e in report.examples if e.kind == "enhance")
    assert sys.startswith("Rewrite the user's request for an expert")


def test_critic_names_the_current_fact(report):
    critic = [e for e in report.examples if e.kind == "critic"]
    flat = next(e for e in critic if "stay in Porto" in _user(e))
    assert "Porto" in flat.completion and "Lisbon" in flat.completion and "July 2025" in flat.completion


def test_notes_are_the_persons_own_words(maya):
    chunks = maya[1]
    uncapped = synthesize(maya[0], chunks, "Maya", notes_share=1.0)
    notes = [e for e in uncapped.examples if e.kind == "notes"]
    assert notes and all(e.prompt == () and len(e.sources) == 1 for e in notes)
    assert all(len(e.completion.split()) <= 120 for e in notes)
    for e in notes:
        c = chunks[e.sources[0]]
        assert c.kind != "web" and c.kind != "document"
        assert not re.search(r"^(Tomás|Mamma|Pappa|Inês|ChatGPT):", e.completion, re.M)
        if c.kind == "email":
            assert c.speakers[0].startswith("Maya")
    chat_texts = [e.completion for e in notes if chunks[e.sources[0]].kind == "chat"]
    assert any("Picking you up" in t for t in chat_texts)
    assert not any("Calling you in 5 min" in t for t in chat_texts)    # Tomás's turn in the same chunk


def test_split_is_deterministic_and_depends_on_seed(maya, report):
    again = synthesize(maya[0], maya[1], "Maya")
    assert again.examples == report.examples
    other = synthesize(maya[0], maya[1], "Maya", seed=7)
    assert sorted(map(repr, other.examples)) != sorted(map(repr, report.examples))
    # the same candidates on other sides (the notes sample and what the unseen facts quarantine differ too)
    def of(r, kind):
        return {(e.prompt, e.completion) for e in r.examples if e.kind == kind}
    assert of(other, "unanswerable") == of(report, "unanswerable")
    assert [e.split for e in other.examples if e.kind == "unanswerable"] != \
        [e.split for e in report.examples if e.kind == "unanswerable"]


def test_max_words_and_no_heldout(maya):
    r = synthesize(maya[0], maya[1], "Maya", heldout=0.0, unseen=0.0, max_words=40)
    assert all(e.split == "train" for e in r.examples)
    assert all(len(e.completion.split()) <= 40 for e in r.examples)


def test_profile_without_facts_still_works(maya):
    profile, chunks = maya
    bare = replace(profile, facts=(), entities=())
    r = synthesize(bare, chunks, "Maya")
    assert sum(r.counts["self_qa"].values()) == 0 and r.counts["critic"]["train"] == 0
    assert r.counts["notes"]["train"] > 0 and r.counts["unanswerable"]["train"] > 0
    empty = replace(bare, shades=(), topics=())
    r = synthesize(empty, {}, "Maya")
    assert all(e.kind == "unanswerable" for e in r.examples)


def test_retention_examples_use_the_base_models_own_answers():
    model = FakeChatModel()
    ex = retention_examples(model, ["What is 2 plus 2?", "Name a colour."], max_tokens=16)
    assert [e.completion for e in ex] == ["fake: What is 2 plus 2?", "fake: Name a colour."]
    assert all(e.kind == "retention" and e.prompt == (("user", e.prompt[0][1]),) for e in ex)
    assert all(s.temperature == 0.0 and s.max_tokens == 16 for _, s in model.calls)
    assert len(GENERIC_PROMPTS) >= 20 and not set(GENERIC_PROMPTS) & set(RETENTION_HELDOUT)
    assert 3000 <= len(GENERIC_TEXT.encode()) <= 4500 and "Maya" not in GENERIC_TEXT
