"""Judge-free scores and the optional rubric judge, with scripted models."""

from secondself.backends.chat import FakeChatModel
from secondself.evaluation import contains_match
from secondself.train.evaluate import evaluate, judge_scores, leaks, score_answers
from secondself.types import TrainingExample

SYS = ("system", "You are Maya.")
QA = TrainingExample("self_qa", (SYS, ("user", "Where do you live?")), "I live in Lisbon.", split="heldout")
WHO = TrainingExample("people", (SYS, ("user", "Who is Inês?")), "Inês is my sister.", split="heldout")
UNK = TrainingExample("unanswerable", (SYS, ("user", "What is your blood type?")),
                      "I don't know — my memories don't say.", split="heldout")


def test_scores_and_leaks():
    s = score_answers([QA, UNK], ["I live in Lisbon.", "I don't know."])
    assert s == {"recall": 1.0, "recall_self_qa": 1.0, "qa_f1": 1.0, "qa_exact": 1.0, "refusal": 1.0,
                 "over_refusal": 0.0}
    # refusing everything is not knowing when to refuse: the answerable questions say so
    s = score_answers([QA, WHO, UNK], ["I don't know — my memories don't say.", "Inês is my sister.", "I don't know."])
    assert s["refusal"] == 1.0 and s["over_refusal"] == 0.5 and s["recall"] == 0.5
    assert leaks("The capital of France is Porto.", "The capital of France is Paris.", "Capital of France?",
                 ["Porto", "Maya"]) == ["Porto"]
    assert leaks("Paris.", "Paris.", "Capital?", ["Porto"]) == []
    assert leaks("It is by Leonardo da Vinci.", "A woman.", "Who painted the Mona Lisa?", ["Leo", "Rita"]) == []
    assert leaks("Largo di Rita, Rome.", "Rome.", "Capital of Italy?", ["Leo", "Rita"]) == ["Rita"]


def test_evaluate_compares_base_and_personal_across_kinds():
    base = FakeChatModel(respond=lambda m: "I drive a Tesla.")
    personal = FakeChatModel(respond=lambda m: {"Where do you live?": "I live in Lisbon.",
                                                "What is your blood type?": "I don't know."}
                             .get(m[-1].content, "Porto is lovely."))
    report = evaluate(base, personal, [QA, QA, QA, UNK], max_questions=2, generic_prompts=["Capital of France?"],
                      names=["Porto"], bpb=lambda which, texts: 2.0 if which == "base" else 1.5,
                      memory_texts=["a note"], generic_text="generic")
    assert [i["kind"] for i in report.items[:3]] == ["self_qa", "self_qa", "unanswerable"]
    assert report.scores["personal"]["qa_f1"] == 1.0 and report.scores["base"]["refusal"] == 0.0
    assert report.scores["personal"]["recall"] == 1.0 and report.scores["base"]["recall"] == 0.0
    assert report.summary["compression_gain"] == 0.25 and report.summary["retention_loss"] == -0.25
    assert report.summary["generic_leaks"] == 1


def test_judge_rubric_per_category():
    def grader(messages):
        prompt = messages[0].content
        return "1" if "Answer to grade: I live in Lisbon." in prompt else "The answer is wrong, so 0"

    scores = judge_scores(FakeChatModel(respond=grader), "Maya", [QA, WHO, UNK],
                          ["I live in Lisbon.", "Inês is my cat.", "No idea"])
    assert scores == {"judge_people": 0.0, "judge_self": 1.0}


def test_contains_match_reads_the_key_of_the_reference():
    ref = "I live in Lisbon, since 1 July 2025."
    assert contains_match("Lisbon, since last summer.", ref, "Where do I live?")        # the name is the key
    assert not contains_match("I live in Porto.", ref, "Where do I live?")
    when = "On 1 July 2025 — I have lived in Lisbon since then."
    assert contains_match("It was 1 July 2025.", when, "When did you move to Lisbon?")  # no new name: the date
    assert not contains_match("In 2024.", when, "When did you move to Lisbon?")
    still = "No — I lived in Porto until 30 June 2025. Now I live in Lisbon, since 1 July 2025."
    assert contains_match("No, I moved to Lisbon.", still, "Do you still live in Porto?")
    assert not contains_match("Yes, I live in Lisbon.", still, "Do you still live in Porto?")   # wrong yes/no
    assert not contains_match("I report to Catarina.", "I report to Catarina Vaz.", "Who is your manager?")


def test_unseen_facts_are_scored_as_guesses_and_old_facts_apart():
    unseen = TrainingExample("events", (SYS, ("user", "When did you climb Kilimanjaro?")), "On 3 May 2025.",
                             split="unseen")
    old = TrainingExample("people", (SYS, ("user", "Who is my sister?")), "Inês is my sister.", split="heldout")
    s = score_answers([QA, old, unseen], ["I live in Porto.", "Inês is my sister.", "On 3 May 2025."],
                      old_answers=frozenset({"Inês is my sister."}))
    assert s["recall"] == 0.5 and s["recall_old"] == 1.0 and s["guess"] == 1.0
    assert s["recall_self_qa"] == 0.0 and s["recall_people"] == 1.0


def test_rag_gives_both_models_the_same_passages():
    seen: dict[str, list[str]] = {"base": [], "personal": []}

    def answer(which):
        def respond(messages):
            seen[which].append(messages[0].content)
            return "I live in Lisbon." if "Memories" in messages[0].content else "No idea."
        return respond

    report = evaluate(FakeChatModel(respond=answer("base")), FakeChatModel(respond=answer("personal")), [QA, UNK],
                      retrieve=lambda q: [f"passage about {q}"], rag_questions=1)
    assert [s for s in seen["base"] if "Memories" in s] == [s for s in seen["personal"] if "Memories" in s]
    assert "[1] passage about Where do you live?" in next(s for s in seen["base"] if "Memories" in s)
    assert report.scores["base"]["rag_recall"] == report.scores["personal"]["rag_recall"] == 1.0
    assert report.scores["personal"]["recall"] == 0.0 and report.items[-1]["rag"] is True


def test_known_base_answers_are_not_asked_again():
    base = FakeChatModel(respond=lambda m: "No idea.")
    personal = FakeChatModel(respond=lambda m: "I live in Lisbon.")
    report = evaluate(base, personal, [QA, UNK], generic_prompts=["Capital of France?"],
                      known_base={"Where do you live?": "I live in Porto.", "Capital of France?": "Paris."})
    assert [messages[-1].content for messages, _ in base.calls] == ["What is your blood type?"]
    assert report.items[0]["base"] == "I live in Porto." and report.items[-1]["base"] == "Paris."


def test_old_facts_are_compared_with_the_parents_answers_to_the_same_questions():
    old_qa = TrainingExample("self_qa", (("user", "Where do you live?"),), "I live in Lisbon.", (), "heldout")
    other = TrainingExample("self_qa", (("user", "Where do you work?"),), "I work at Acme.", (), "heldout")
    personal = FakeChatModel(respond=lambda m: "I live in Porto." if "live" in m[-1].content else "I work at Acme.")
    report = evaluate(FakeChatModel(respond=lambda m: "No idea."), personal, [old_qa, other],
                      old_answers=frozenset({"I live in Lisbon.", "I work at Acme."}),
                      parent_answers={"Where do you live?": "I live in Lisbon."})
    # scored on the one old question the parent answered: the parent knew it, the continued adapter forgot it
    assert report.scores["personal"]["recall_old"] == 0.0
    assert report.summary["recall_old_parent"] == 1.0 and report.summary["old_questions"] == 1
    without = evaluate(FakeChatModel(respond=lambda m: "No idea."), personal, [old_qa, other],
                       old_answers=frozenset({"I live in Lisbon.", "I work at Acme."}))
    assert without.scores["personal"]["recall_old"] == 0.5 and "recall_old_parent" not in without.summary
