"""Judge-free scores and the optional rubric judge, with scripted models."""

from secondself.backends.chat import FakeChatModel
from secondself.train.evaluate import evaluate, judge_scores, leaks, score_answers
from secondself.types import TrainingExample

SYS = ("system", "You are Maya.")
QA = TrainingExample("self_qa", (SYS, ("user", "Where do you live?")), "I live in Lisbon.", split="heldout")
WHO = TrainingExample("people", (SYS, ("user", "Who is Inês?")), "Inês is my sister.", split="heldout")
UNK = TrainingExample("unanswerable", (SYS, ("user", "What is your blood type?")),
                      "I don't know — my memories don't say.", split="heldout")


def test_scores_and_leaks():
    s = score_answers([QA, UNK], ["I live in Lisbon.", "I don't know."])
    assert s == {"qa_f1": 1.0, "qa_exact": 1.0, "refusal": 1.0}
    assert leaks("The capital of France is Porto.", "The capital of France is Paris.", "Capital of France?",
                 ["Porto", "Maya"]) == ["Porto"]
    assert leaks("Paris.", "Paris.", "Capital?", ["Porto"]) == []


def test_evaluate_compares_base_and_personal_across_kinds():
    base = FakeChatModel(respond=lambda m: "I drive a Tesla.")
    personal = FakeChatModel(respond=lambda m: {"Where do you live?": "I live in Lisbon.",
                                                "What is your blood type?": "I don't know."}
                             .get(m[-1].content, "Porto is lovely."))
    report = evaluate(base, personal, [QA, QA, QA, UNK], max_questions=2, generic_prompts=["Capital of France?"],
                      names=["Porto"], bpb=lambda which, texts: 2.0 if which == "base" else 1.5,
                      memory_texts=["a note"], generic_text="generic")
    assert [i["kind"] for i in report.items[:2]] == ["self_qa", "unanswerable"]      # round-robin over kinds
    assert report.scores["personal"]["qa_f1"] == 1.0 and report.scores["base"]["refusal"] == 0.0
    assert report.summary["compression_gain"] == 0.25 and report.summary["retention_loss"] == -0.25
    assert report.summary["generic_leaks"] == 1


def test_judge_rubric_per_category():
    def grader(messages):
        prompt = messages[0].content
        return "1" if "Answer to grade: I live in Lisbon." in prompt else "The answer is wrong, so 0"

    scores = judge_scores(FakeChatModel(respond=grader), "Maya", [QA, WHO, UNK],
                          ["I live in Lisbon.", "Inês is my cat.", "No idea"])
    assert scores == {"judge_people": 0.0, "judge_self": 1.0}
