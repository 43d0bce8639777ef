"""Judge-free evaluation of a personal model against its base, on data it never trained on.

Both models answer the held-out questions with the same prompt (the persona's system line and the
question, no retrieval: this measures what the weights know — "closed book") and greedy decoding. Scores:

- recall: closed-book recall on held-out *paraphrases of trained facts* (split "heldout" of self_qa and
  people: the facts and relations of layer 1): the share of answers that `contains_match` the reference
  (its names, or its dates; yes/no first); `recall_<kind>` per kind, events and preferences included (an
  event's answer is a sentence the person wrote, matched by its names); `recall_old` on the facts a previous adapter was trained on (continuous
  learning: are old facts kept?);
- guess: the same match on *unseen* facts (held out whole, in no training item): what the model states
  there it cannot know — the figure shows how much it guesses;
- qa_f1 / qa_exact: token F1 and exact match of the answer against the reference, on the held-out fact
  questions;
- rag_recall / rag_f1 (when a `retrieve` function is given): the same held-out fact questions with the
  memories retrieved for them in the prompt, the same passages for both models (RAG + personal vs RAG +
  base);
- refusal: share of held-out unanswerable questions answered with "I don't know"; over_refusal: share of the
  held-out questions the memories answer (the fact questions above) answered with "I don't know" (a model
  that refuses everything scores refusal 1 and over_refusal 1);
- skills_f1: token F1 on held-out context-enhance and context-critic items;
- memory_bpb: bits per UTF-8 byte of the person's held-out notes (language modelling is compression: a
  model that knows the person compresses their text better); `compression_gain` = 1 - personal/base;
- generic_bpb: bits per byte of generic English prose; `retention_loss` = personal/base - 1 (how much
  worse the personal model got at ordinary text);
- generic_agreement: token F1 between the personal and the base model's answers to held-out generic
  prompts, and `generic_leaks`: those answers that mention the person's names or places while the base
  model's answer did not ("The capital of France is called Porto");
- judge_* (only when a judge model is given — a stronger teacher, never the embedded 135M): a rubric score
  of 0 / 0.5 / 1 per item against the reference, averaged per category: memory QA about the person
  (judge_self), about third parties (judge_people), context enhance and context critic. The judge picks
  one of the three scores through the structured-output helper; an item it cannot score is left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..errors import ContextOverflowError, StructuredOutputError
from ..evaluation import contains_match, mean, normalize_answer, token_f1
from ..progress import OnProgress, Progress
from ..prompts import render
from ..structured import Field, structured
from ..types import TrainingExample

__all__ = ["evaluate", "EvalReport", "QA_KINDS", "SKILL_KINDS", "score_answers", "leaks", "questions"]

log = logging.getLogger(__name__)

QA_KINDS = ("self_qa", "preference_qa", "people", "events")
RECALL_KINDS = ("self_qa", "people")     # the facts and relations of layer 1: "recall" is theirs
_PASSAGE_WORDS = 80
_RAG_SYSTEM = ("{system}\n\nMemories that may help (use them only if they answer the question):\n{memories}")
SKILL_KINDS = ("enhance", "critic")
_REFUSAL = ("don't know", "do not know", "dont know", "not in my memories", "memories don't say")


@dataclass
class EvalReport:
    scores: dict[str, dict[str, float]] = field(default_factory=dict)   # "base" / "personal" -> metric -> value
    summary: dict[str, float] = field(default_factory=dict)             # compression_gain, retention_loss, ...
    items: list[dict[str, Any]] = field(default_factory=list)           # per question, both answers

    def to_dict(self) -> dict[str, Any]:
        return {"scores": self.scores, "summary": self.summary, "items": self.items}


def _messages(ex: TrainingExample) -> list[Message]:
    return [Message(role, content) for role, content in ex.prompt]


def _answer(model: ChatModel, ex: TrainingExample, max_tokens: int) -> str:
    return complete(model, _messages(ex), Sampling(max_tokens=max_tokens)).text().strip()


def refused(text: str) -> bool:
    low = text.lower().replace("’", "'")
    return any(r in low for r in _REFUSAL)


def leaks(answer: str, baseline: str, prompt: str, names: Sequence[str]) -> list[str]:
    """Personal names/places in `answer`, as whole words ("Leo" is not in "Leonardo"), that neither the base
    model's answer nor the prompt contains."""
    def has(text: str, name: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(name.casefold())}(?!\w)", text.casefold()) is not None

    return [n for n in names if len(n) > 2 and has(answer, n) and not has(baseline, n) and not has(prompt, n)]


def _old_fact(e: TrainingExample, old_answers: frozenset[str], old_questions: Collection[str] | None) -> bool:
    """A held-out fact question whose answer a previous adapter was trained on (and, given `old_questions`,
    one of those questions): what `recall_old` scores."""
    return e.kind in QA_KINDS and e.split != "unseen" and e.completion in old_answers \
        and (old_questions is None or e.prompt[-1][1] in old_questions)


def score_answers(examples: Sequence[TrainingExample], answers: Sequence[str],
                  old_answers: frozenset[str] = frozenset(),
                  old_questions: Collection[str] | None = None) -> dict[str, float]:
    """Closed-book scores of `answers` to `examples` (see the module docstring for each name); `recall_old`
    only on `old_questions` when they are given."""
    pairs = list(zip(examples, answers, strict=True))
    qa = [(e, a) for e, a in pairs if e.kind in QA_KINDS and e.split != "unseen"]
    unseen = [(e, a) for e, a in pairs if e.kind in QA_KINDS and e.split == "unseen"]
    un = [(e, a) for e, a in pairs if e.kind == "unanswerable"]
    sk = [(e, a) for e, a in pairs if e.kind in SKILL_KINDS]

    def hit(e: TrainingExample, a: str) -> float:
        return float(contains_match(a, e.completion, e.prompt[-1][1]))

    out = {}
    if qa:
        if facts := [hit(e, a) for e, a in qa if e.kind in RECALL_KINDS]:
            out["recall"] = round(mean(facts), 4)
        for kind in QA_KINDS:
            if mine := [hit(e, a) for e, a in qa if e.kind == kind]:
                out[f"recall_{kind}"] = round(mean(mine), 4)
        if old := [hit(e, a) for e, a in qa if _old_fact(e, old_answers, old_questions)]:
            out["recall_old"] = round(mean(old), 4)
        out["qa_f1"] = round(mean([token_f1(a, e.completion) for e, a in qa]), 4)
        out["qa_exact"] = round(mean([float(normalize_answer(a) == normalize_answer(e.completion)) for e, a in qa]), 4)
        out["over_refusal"] = round(mean([float(refused(a)) for _, a in qa]), 4)
    if unseen:
        out["guess"] = round(mean([hit(e, a) for e, a in unseen]), 4)
    if un:
        out["refusal"] = round(mean([float(refused(a)) for _, a in un]), 4)
    if sk:
        out["skills_f1"] = round(mean([token_f1(a, e.completion) for e, a in sk]), 4)
    return out


_JUDGED = {"self_qa": "judge_self", "preference_qa": "judge_self", "events": "judge_self",
           "people": "judge_people", "enhance": "judge_enhance", "critic": "judge_critic"}
_TASKS = {"judge_self": "memory question about the person", "judge_people": "memory question about someone "
          "the person knows", "judge_enhance": "rewrite a request adding only the relevant personal details",
          "judge_critic": "critique an expert's answer from the person's point of view"}


def _parent_recall_old(report: EvalReport, asked: Sequence[TrainingExample], old_answers: frozenset[str],
                       parent_answers: Mapping[str, str]) -> None:
    """The parent's `recall_old` from its own answers to the same questions, and how many they are."""
    theirs = [e for e in asked if _old_fact(e, old_answers, parent_answers)]
    if theirs:
        parent = score_answers(theirs, [parent_answers[e.prompt[-1][1]] for e in theirs], old_answers)
        report.summary["recall_old_parent"] = parent["recall_old"]
        report.summary["old_questions"] = len(theirs)


def judge_scores(judge: ChatModel, person: str, examples: Sequence[TrainingExample],
                 answers: Sequence[str]) -> dict[str, float]:
    """Mean rubric score per category (see the module docstring)."""
    got: dict[str, list[float]] = {}
    field_ = Field("score", "Score (0, 0.5 or 1):", kind="choice", choices=("0", "0.5", "1"))
    for ex, answer in zip(examples, answers, strict=True):
        category = _JUDGED.get(ex.kind)
        if category is None:
            continue
        prompt = render("judge", name=person, task=_TASKS[category], question=ex.prompt[-1][1],
                        reference=ex.completion, answer=answer or "(no answer)")
        try:
            value = structured(judge, prompt, [field_], prefer_json=True)["score"]
        except StructuredOutputError:
            continue
        got.setdefault(category, []).append(float(value))
    return {k: round(mean(v), 4) for k, v in sorted(got.items())}


def _stratified(examples: Sequence[TrainingExample], limit: int) -> list[TrainingExample]:
    """Up to `limit` examples taken round-robin across kinds, so every kind is scored."""
    by_kind: dict[str, list[TrainingExample]] = {}
    for e in examples:
        by_kind.setdefault(e.kind, []).append(e)
    out: list[TrainingExample] = []
    queues = list(by_kind.values())
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def questions(heldout: Sequence[TrainingExample], limit: int) -> list[TrainingExample]:
    """What is asked: up to `limit` held-out questions about facts and relations (round-robin over self_qa
    and people: the recall figure), up to a third of that about events and preferences, of unseen facts,
    and of held-out unanswerable questions, and up to a sixth of context skills."""
    chat = [e for e in heldout if e.chat]
    facts = _stratified([e for e in chat if e.kind in RECALL_KINDS and e.split == "heldout"], limit)
    facts += _stratified([e for e in chat if e.kind in QA_KINDS and e.kind not in RECALL_KINDS
                          and e.split == "heldout"], max(1, limit // 3))
    unseen = _stratified([e for e in chat if e.kind in QA_KINDS and e.split == "unseen"], max(1, limit // 3))
    un = [e for e in chat if e.kind == "unanswerable" and e.split == "heldout"][:max(1, limit // 3)]
    skills = _stratified([e for e in chat if e.kind in SKILL_KINDS and e.split == "heldout"], max(1, limit // 6))
    return facts + unseen + un + skills


def _rag_answers(report: EvalReport, answers: dict[str, list[str]], rag: list[TrainingExample], base: ChatModel,
                 personal: ChatModel, max_tokens: int) -> list[TrainingExample]:
    """Both models answer the `rag` questions (appended to `answers`), scored as rag_recall / rag_f1; when
    the memories do not fit a model's context the comparison is left out (logged) and [] returned."""
    got: dict[str, list[str]] = {"base": [], "personal": []}
    try:
        for which, model in (("base", base), ("personal", personal)):
            got[which] = [_answer(model, ex, max_tokens) for ex in rag]
    except ContextOverflowError as e:
        log.info("RAG comparison left out: %s", e)
        return []
    for which in ("base", "personal"):
        answers[which] += got[which]
        if rag:
            pairs = list(zip(rag, got[which], strict=True))
            report.scores[which]["rag_recall"] = round(mean([float(contains_match(a, e.completion, e.prompt[-1][1]))
                                                             for e, a in pairs]), 4)
            report.scores[which]["rag_f1"] = round(mean([token_f1(a, e.completion) for e, a in pairs]), 4)
    return rag


def _with_memories(ex: TrainingExample, passages: Sequence[str]) -> TrainingExample:
    system = next((c for r, c in ex.prompt if r == "system"), "")
    memories = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    prompt = (("system", _RAG_SYSTEM.format(system=system, memories=memories)),
              *((r, c) for r, c in ex.prompt if r != "system"))
    return TrainingExample(ex.kind, prompt, ex.completion, ex.sources, ex.split)


def evaluate(base: ChatModel, personal: ChatModel, heldout: Sequence[TrainingExample], *,
             bpb: Callable[[str, list[str]], float] | None = None, memory_texts: Sequence[str] = (),
             generic_text: str = "", generic_prompts: Sequence[str] = (), names: Sequence[str] = (),
             max_questions: int = 40, max_tokens: int = 40, judge: ChatModel | None = None, person: str = "",
             retrieve: Callable[[str], list[str]] | None = None, rag_questions: int = 8,
             old_answers: frozenset[str] = frozenset(), known_base: Mapping[str, str] | None = None,
             parent_answers: Mapping[str, str] | None = None, on_progress: OnProgress | None = None) -> EvalReport:
    """Score `personal` against `base`. `bpb(which, texts)` returns bits per byte for "base"/"personal";
    `retrieve(question)` the memory passages for the RAG comparison (asked of `rag_questions` held-out fact
    questions); `old_answers`: the answers a previous adapter was trained on (`recall_old`); `known_base`:
    the base model's answers already given to these questions (greedy: the same again), by question — a
    continued run reuses its parent's, which halves the evaluation. `parent_answers`: the previous adapter's
    answers in its own evaluation, by question: `recall_old` is then scored on the old-fact questions the
    parent answered, and `summary["recall_old_parent"]` is the parent's score on the same questions (are old
    facts kept?).
    `on_progress` gets Progress("evaluate", answers done, answers to give) after each answer."""
    progress = on_progress or (lambda *a: None)
    asked = questions(heldout, max_questions)
    rag: list[TrainingExample] = []
    if retrieve is not None:
        picked = [e for e in asked if e.kind in QA_KINDS and e.split == "heldout"][:rag_questions]
        rag = [_with_memories(e, [" ".join(p.split()[:_PASSAGE_WORDS]) for p in retrieve(e.prompt[-1][1])])
               for e in picked]

    report = EvalReport(scores={"base": {}, "personal": {}})
    answers: dict[str, list[str]] = {"base": [], "personal": []}
    total = 2 * (len(asked) + len(generic_prompts))
    done = 0
    known = known_base or {}
    for which, model in (("base", base), ("personal", personal)):
        for ex in asked:
            q = ex.prompt[-1][1]
            answers[which].append(known[q] if which == "base" and q in known else _answer(model, ex, max_tokens))
            done += 1
            progress(Progress("evaluate", done, total))
        report.scores[which].update(score_answers(asked, answers[which], old_answers,
                                                  parent_answers.keys() if parent_answers else None))
        if judge is not None:
            report.scores[which].update(judge_scores(judge, person, asked, answers[which]))
    if parent_answers:
        _parent_recall_old(report, asked, old_answers, parent_answers)
    rag = _rag_answers(report, answers, rag, base, personal, max_tokens)
    report.items = [{"kind": e.kind, "split": e.split, "question": e.prompt[-1][1], "reference": e.completion,
                     "base": b, "personal": p, **({"rag": True} if i >= len(asked) else {})}
                    for i, (e, b, p) in enumerate(zip(asked + rag, answers["base"], answers["personal"], strict=True))]
    generic: dict[str, list[str]] = {"base": [], "personal": []}
    for which, model in (("base", base), ("personal", personal)):
        for prompt in generic_prompts:
            generic[which].append(known[prompt] if which == "base" and prompt in known else
                                  complete(model, [Message("user", prompt)], Sampling(max_tokens=max_tokens))
                                  .text().strip())
            done += 1
            progress(Progress("evaluate", done, total))
    if generic_prompts:
        report.summary["generic_agreement"] = round(mean([token_f1(p, b) for p, b in
                                                          zip(generic["personal"], generic["base"], strict=True)]), 4)
        leaked = [(q, p, found) for q, p, b in zip(generic_prompts, generic["personal"], generic["base"], strict=True)
                  if (found := leaks(p, b, q, names))]
        report.summary["generic_leaks"] = len(leaked)
        report.items += [{"kind": "generic", "question": q, "base": b, "personal": p,
                          "leaks": leaks(p, b, q, names)}
                         for q, p, b in zip(generic_prompts, generic["personal"], generic["base"], strict=True)]
    if bpb is not None:
        for which in ("base", "personal"):
            if memory_texts:
                report.scores[which]["memory_bpb"] = round(bpb(which, list(memory_texts)), 4)
            if generic_text:
                report.scores[which]["generic_bpb"] = round(bpb(which, [generic_text]), 4)
        b, p = report.scores["base"], report.scores["personal"]
        if "memory_bpb" in b:
            report.summary["compression_gain"] = round(1 - p["memory_bpb"] / b["memory_bpb"], 4)
        if "generic_bpb" in b:
            report.summary["retention_loss"] = round(p["generic_bpb"] / b["generic_bpb"] - 1, 4)
    for metric in ("recall", "rag_recall", "qa_f1", "refusal", "skills_f1"):
        if metric in report.scores["base"]:
            report.summary[f"{metric}_gain"] = round(report.scores["personal"][metric]
                                                     - report.scores["base"][metric], 4)
    return report


def table(report: EvalReport) -> list[str]:
    """The scores as aligned lines for the terminal."""
    metrics = sorted({m for s in report.scores.values() for m in s})
    lines = [f"{'metric':<14} {'base':>8} {'personal':>9}"]
    for m in metrics:
        b, p = report.scores["base"].get(m), report.scores["personal"].get(m)
        lines.append(f"{m:<14} {'' if b is None else f'{b:.3f}':>8} {'' if p is None else f'{p:.3f}':>9}")
    lines += [f"{k:<24} {v}" for k, v in report.summary.items()]
    return lines
