"""Chat as the person: retrieve memories, fit them into the model's context, stream a cited answer.

The persona knows nothing about how memories are stored (it gets a `Searcher`) or how a model runs (it
gets a `ChatModel`). Small local models are weak at long contexts and happy to invent, so the design is:

1. Few, well-ordered passages (default 4, the best one last, nearest the question), each with its date,
   source and speakers inline and its relative dates resolved ("yesterday (26 June 2025)"), trimmed to fit
   the budget measured with the model's own tokenizer. A model that takes a system prompt
   (`catalog.follows_system_prompt`) gets one that says who it is and how to answer, and the memories and the
   question in the user message; one that does not (the 135M loops on it) gets one short user message.
   A question that needs two memories is split (memory/hops.py): a relative clause ("the job I had before
   Tidewater") is looked up on its own and, with a capable model, named from its memories and the question
   searched again with that name; a relation ("my brother") is looked up and replaced by the name the
   memories give it; the result lists are merged.
2. A retrieval gate *before* generation: if no passage is close to the question (cosine below
   `min_cosine`) and none covers its key words (`min_coverage`), the answer is "I don't know" and the
   model is not called. Calibrated on the example person's answerable/unanswerable questions.
3. A support check *after* generation: a number or a name in the answer that appears in neither the
   passages nor the question is an invented personal fact, and an answer that repeats the prompt's own
   instructions says nothing; the answer is then withdrawn in favour of "I don't know", and the reason
   recorded. While it streams, a loop (a repeated sentence, or a short run of tokens: "10:10:10…") ends
   the generation early.
4. Citations: the `[n]` markers the model wrote; when it wrote none (small models often do not), the
   passage sharing the most words with the answer, marked `cited_by="overlap"`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .backends.catalog import follows_system_prompt
from .backends.chat import ChatModel, Message, Sampling, complete
from .memory import hops
from .memory.observe import norm
from .memory.search import Searcher, query_terms
from .prompts import literal, render
from .text.dates import annotate_relative_dates
from .text.grounding import echoed_instructions, stem, unattributed_identifiers, unsupported_specifics
from .types import Chunk, Hit, SearchFilters

__all__ = ["Persona", "PersonaConfig", "Passage", "Reply", "Answer", "IDK", "unsupported_specifics",
           "collapse_repeats"]

log = logging.getLogger(__name__)

IDK = "I don't know — my memories don't say."
# Every template whose fixed text reaches the persona's model: its own prompt and a role's frame, and a
# space's context and question (spaces/run.py asks with them as the question).
_INSTRUCTION_PROMPTS = ("persona_user", "persona_system", "persona_question", "persona_role", "space_context",
                        "space_ask")


@dataclass(frozen=True)
class PersonaConfig:
    k: int = field(default=4, metadata={"help": "memories shown to the model"})
    min_cosine: float = field(default=0.25, metadata={"help": "retrieval gate: best passage similarity"})
    min_coverage: float = field(default=0.6, metadata={"help": "retrieval gate: share of question words found"})
    best_last: bool = field(default=True, metadata={"help": "put the best passage nearest the question"})
    max_tokens: int = field(default=160, metadata={"help": "answer length limit"})
    history_turns: int = field(default=4, metadata={"help": "previous turns kept in the prompt"})
    passage_tokens: int = field(default=300, metadata={"help": "upper bound per passage"})
    guard: bool = field(default=True, metadata={"help": "retrieval gate and support check (off only to "
                                                        "measure what the model does alone)"})
    hops: bool = field(default=True, metadata={"help": "split questions that need two memories (memory/hops.py)"})


@dataclass(frozen=True)
class Passage:
    number: int
    chunk: Chunk
    text: str
    cosine: float
    coverage: float

    def citation(self, cited_by: str = "model") -> dict:
        c = self.chunk
        return {"n": self.number, "chunk_id": c.id, "source": c.source, "path": c.path, "title": c.title,
                "date": c.date, "speakers": list(c.speakers), "snippet": self.text[:240], "cited_by": cited_by}


@dataclass
class Answer:
    text: str
    citations: list[dict]
    passages: list[Passage]
    abstained: bool
    reason: str
    timings: dict[str, float]
    usage: dict[str, int]
    raw: str = ""  # what the model actually said, when the support check withdrew it


class Reply:
    """A streamed answer: iterate for text deltas; `.answer()` drains and returns the final Answer."""

    def __init__(self, deltas: Iterator[str], finish) -> None:
        self._deltas, self._finish, self._parts, self._answer = deltas, finish, [], None
        self._cut = False

    def __iter__(self) -> Iterator[str]:
        if self._cut:  # the loop guard ended the generation: nothing more comes
            return
        for d in self._deltas:
            self._parts.append(d)
            yield d
            text = "".join(self._parts)
            cut = _loop_cut(text)
            if cut is not None:
                # drop the repeat, and close the model's stream: no tokens are wasted on repetition, and the
                # reply is finished, so its usage and timing are counted (a stream left open reports none)
                self._parts = [text[:cut].rstrip(" ,;:-")]
                self._cut = True
                close = getattr(self._deltas, "close", None)
                if close is not None:
                    close()
                return

    def answer(self) -> Answer:
        if self._answer is None:
            for _ in self:
                pass
            self._answer = self._finish("".join(self._parts))
        return self._answer

    def partial(self) -> str:
        return "".join(self._parts)


def _when(chunk: Chunk) -> str:
    """'1 July 2025': the form people (and small models) answer "when" questions in."""
    if not chunk.date:
        return "undated"
    try:
        d = datetime.fromisoformat(chunk.date)
    except ValueError:
        return chunk.date[:10]
    return f"{d.day} {d:%B %Y}"


def _resolved(chunk: Chunk) -> str:
    """The chunk's text with its relative dates resolved against the chunk's date ("yesterday (26 June 2025)"):
    a model answering "when" otherwise gives the day the note was written. A chat chunk's date is its first
    turn's, so a later turn written on another day is resolved against that first day."""
    return annotate_relative_dates(chunk.text, chunk.date)


def _label(chunk: Chunk) -> str:
    where = chunk.title or chunk.path
    who = f"; {', '.join(chunk.speakers)}" if chunk.speakers else ""
    return f"{_when(chunk)}, {chunk.kind}: {where}{who}"


class Persona:
    def __init__(self, model: ChatModel, searcher: Searcher, name: str = "", profile: str = "",
                 config: PersonaConfig | None = None, instructions: str = "") -> None:
        """`searcher`: anything with Searcher's `search` and `embedder` (a role passes a ScopedSearcher);
        `instructions`: a role's own, put before everything else in the prompt."""
        self.model, self.searcher = model, searcher
        self.name = name or "the person"
        self.profile = profile
        self.config = config or PersonaConfig()
        self.instructions = instructions.strip()
        # a capable model gets a system prompt and names a relative clause's referent (a hop); from the catalog
        self.capable = follows_system_prompt(model.name)

    # -- retrieval and prompt ----------------------------------------------------------------------
    def retrieve(self, question: str, filters: SearchFilters | None = None) -> list[Passage]:
        return self._retrieve(question, filters)[0]

    def _retrieve(self, question: str, filters: SearchFilters | None
                  ) -> tuple[list[Passage], list[tuple[str, str]]]:
        """The passages, and what the sub-questions named: ("the job I had before X", "Y"), ("my brother", "Z")."""
        hits, hints = self._search(question, filters)
        if not hits:
            return [], []
        qvec = self.searcher.embedder.embed([question])[0]
        cvecs = self.searcher.embedder.embed([h.chunk.text for h in hits])
        terms = set(query_terms(question))
        out = []
        for i, (h, v) in enumerate(zip(hits, cvecs, strict=True), 1):
            text = h.chunk.text.lower()
            cov = sum(1 for t in terms if t in text) / max(1, len(terms))
            out.append(Passage(i, h.chunk, _resolved(h.chunk), float(v @ qvec), cov))
        return out, hints

    def _search(self, question: str, filters: SearchFilters | None) -> tuple[list[Hit], list[tuple[str, str]]]:
        """The question's hits, merged with those of its sub-questions when it has some (memory/hops.py), and
        what the sub-questions named."""
        k = self.config.k
        hits: list[Hit] = self.searcher.search(question, k=k, filters=filters)
        plan = hops.plan(question) if self.config.hops else hops.Plan()
        if not plan or not hits:
            return hits, []
        search = lambda q, n=k: self.searcher.search(q, k=n, filters=filters)  # noqa: E731
        lists: list[list[Hit]] = []
        hints: list[tuple[str, str]] = []
        if plan.hop:
            inner = search(plan.hop.phrase)
            name = self._bridge(plan.hop, inner) if self.capable else ""
            log.debug("hop %r names %r", plan.hop.phrase, name)
            # the clause's memory that names it says which thing is meant: it goes first
            named = sorted(inner, key=lambda h: norm(name) not in norm(h.chunk.text)) if name else inner
            lists = [search(plan.hop.resolved(name)), named, hits] if name else \
                [hits, inner, search(plan.hop.resolved(plan.hop.noun))]
            hints = [(plan.hop.phrase, name)] if name else []
        elif plan.relation:
            about = search(plan.relation_phrase, 2 * k)
            names = hops.names_for_relation([h.chunk for h in about], self.name, plan.relation)
            log.debug("%r is %s", plan.relation_phrase, names)
            named = [h for h in about if names and names[0].split()[0] in h.chunk.text]
            lists = [search(question.replace(plan.relation_phrase, names[0], 1)), named, hits] if names else \
                [hits, about]
            hints = [(plan.relation_phrase, names[0])] if names else []
        else:
            lists = [hits, *(search(q) for q in plan.per_name)]
        return hops.merge(lists, k), hints

    def _bridge(self, hop: hops.Hop, hits: Sequence[Hit]) -> str:
        """What a relative clause names ("the job I had before Tidewater" → "Atlântico Freight"), read by the
        model from the clause's own memories; "" when it cannot say or names nothing written there."""
        shown = hits[:3]
        if not shown:
            return ""
        texts = [" ".join(_resolved(h.chunk).split()[:200]) for h in shown]
        memories = "\n".join(f"[{i}] ({_label(h.chunk)}) {t}" for i, (h, t) in enumerate(zip(shown, texts, strict=True), 1))
        prompt = render("persona_hop", name=self.name, memories=memories, phrase=hop.phrase)
        reply = complete(self.model, [Message("user", prompt)],
                         Sampling(temperature=0.0, max_tokens=24, stop=("\n",))).text()
        return hops.valid_bridge(reply, hop.question, " ".join(texts))

    def gate(self, passages: Sequence[Passage]) -> str | None:
        """Why the memories cannot answer (None when they might)."""
        if not self.config.guard:
            return None
        if not passages:
            return "no memories match the question"
        if max(p.cosine for p in passages) < self.config.min_cosine and \
                max(p.coverage for p in passages) < self.config.min_coverage:
            return "no memory is close enough to the question"
        return None

    def build_messages(self, question: str, passages: Sequence[Passage], history: Sequence[Message] = (),
                       hints: Sequence[tuple[str, str]] = ()) -> tuple[list[Message], list[Passage]]:
        """Messages that fit the model's context window, and the passages actually included. `hints`: what
        retrieval found the question's parts name, (phrase, name): the model is asked about the name."""
        budget = self.model.context_window - self.config.max_tokens - 64
        count = self.model.count_tokens
        history = list(history)[-2 * self.config.history_turns:]
        kept: list[Passage] = []
        for p in passages:  # best first: drop the weakest when the budget runs out
            words = p.text.split()
            while count(" ".join(words)) > self.config.passage_tokens and len(words) > 20:
                words = words[: int(len(words) * 0.8)]
            kept.append(Passage(p.number, p.chunk, " ".join(words), p.cosine, p.coverage))
        capable, all_kept, all_history = self.capable, list(kept), history
        while True:
            msgs = self._render(question, kept, history, hints, capable=capable)
            fits = sum(count(m.content) + 4 for m in msgs) <= budget
            if not fits and capable and not kept and not history:
                # a small context (a tiny or personal model outside the catalog) cannot hold the system
                # prompt even without memories: the compact layout, with everything offered again
                capable, kept, history = False, list(all_kept), all_history
                continue
            if fits or (not kept and not history):
                return msgs, kept
            if history:
                history = history[2:]
            else:
                kept = kept[:-1]

    def _render(self, question: str, passages: list[Passage], history: list[Message],
                hints: Sequence[tuple[str, str]] = (), *, capable: bool | None = None) -> list[Message]:
        """A system prompt, then the memories and the question, for a capable model. For one that is not, one
        compact user message: SmolLM2-135M looped on a long system prompt, and on an 8-question probe of the
        example person scored token F1 0.20 this way vs 0.16 with a short system prompt."""
        ordered = list(reversed(passages)) if self.config.best_last else passages
        memories = "\n".join(f"[{p.number}] ({_label(p.chunk)}) {p.text}" for p in ordered) or "(none)"
        about = self.profile(question) if callable(self.profile) else self.profile
        role = render("persona_role", instructions=self.instructions) if self.instructions else ""
        # asked about what a sub-question named: a small model answers "Who conducts X?" better than "Who conducts
        # the orchestra I joined after moving?", even with X among the memories (and a line '"the orchestra ..."
        # is X' after the question was copied into the answer by the 1.5B)
        for phrase, name in hints:
            question = question.replace(phrase, name, 1)
        if self.capable if capable is None else capable:
            system = render("persona_system", name=self.name, instructions=f"{role}\n" if role else "",
                            profile=f"What you know about yourself:\n{about}\n" if about else "")
            return [Message("system", system), *history,
                    Message("user", render("persona_question", memories=memories, question=question))]
        profile = f"About {self.name}: {about}\n\n" if about else ""
        prompt = render("persona_user", name=self.name, instructions=f"{role}\n\n" if role else "",
                        profile=profile, memories=memories, question=question)
        return [*history, Message("user", prompt)]

    # -- answering ---------------------------------------------------------------------------------
    def ask(self, question: str, history: Sequence[Message] = (), filters: SearchFilters | None = None,
            sampling: Sampling | None = None, query: str | None = None) -> Reply:
        """`query`: what to search the memories for and gate on, when it is not the question itself (a space
        asks with the whole transcript in the question, but searches for its topic)."""
        t0 = time.perf_counter()
        passages, hints = self._retrieve(query or question, filters)
        t1 = time.perf_counter()
        timings = {"retrieval_s": t1 - t0}
        reason = self.gate(passages)
        if reason:
            timings["assembly_s"] = timings["generation_s"] = 0.0
            return Reply(iter([IDK]), lambda text: Answer(IDK, [], passages, True, reason, timings, {}))
        messages, shown = self.build_messages(question, passages, history, hints)
        timings["assembly_s"] = time.perf_counter() - t1
        sampling = sampling or Sampling(temperature=0.0, max_tokens=self.config.max_tokens)
        response = complete(self.model, messages, sampling)

        def finish(text: str) -> Answer:
            timings["generation_s"] = response.seconds or 0.0
            timings["first_token_s"] = response.ttft_s or 0.0
            u = response.usage
            usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens} if u else {}
            return self._finish(question, text, shown, timings, usage)

        return Reply(iter(response), finish)

    def _finish(self, question: str, text: str, shown: list[Passage], timings: dict, usage: dict) -> Answer:
        raw = text.strip()
        text = _LABEL_COPY.sub("", raw).lstrip(" \n-:.").rstrip()
        if not text:
            return Answer(IDK, [], shown, True, "the draft answer only copied a memory's header", timings,
                          usage, raw=raw)
        if re.search(r"\bi don['’]t know\b", text, re.IGNORECASE):  # also 'The answer is: "I don't know."'
            return Answer(IDK, [], shown, True, "the model found no answer in the memories", timings, usage)
        text = collapse_repeats(text)
        echo = echoed_instructions(text, self._instruction_text()) if self.config.guard else ""
        if echo:
            return Answer(IDK, [], shown, True, f'the draft answer repeated the prompt\'s instructions ("{echo}")',
                          timings, usage, raw=text)
        # layer 1 (biography, dated facts) was in the prompt too; it is derived from cited memories, so what
        # the answer takes from it counts as supported (without this, "since 2025-07-01" was withdrawn)
        about = self.profile(question) if callable(self.profile) else self.profile
        evidence = " ".join([question, self.name, about, *(p.text for p in shown),
                             *(_label(p.chunk) for p in shown)])
        problem = self._unsupported(question, text, evidence) if self.config.guard else ""
        if not problem and self.config.guard and (ids := unattributed_identifiers(question, text, [
                about, *(p.text for p in shown)])):
            problem = f"the draft answer gave {', '.join(ids)}, which no memory writes as what was asked"
        if problem:
            return Answer(IDK, [], shown, True, problem, timings, usage, raw=text)
        by_number = {p.number: p for p in shown}
        cited = [by_number[n] for n in dict.fromkeys(int(x) for x in re.findall(r"\[(\d+)\]", text))
                 if n in by_number]
        if cited:
            citations = [p.citation("model") for p in cited]
        else:
            words = set(query_terms(text))
            best = max(shown, key=lambda p: len(words & set(query_terms(p.text))), default=None)
            citations = [best.citation("overlap")] if best else []
        return Answer(text, citations, shown, False, "", timings, usage)

    def _instruction_text(self) -> str:
        """The instructions the model was given, one fragment per line; not the memories, the profile or the
        question (an answer may quote those)."""
        return "\n".join([*(literal(name) for name in _INSTRUCTION_PROMPTS), *self.instructions.splitlines()])


    @staticmethod
    def _unsupported(question: str, text: str, evidence: str) -> str:
        """Why the draft cannot stand ("" when it can): invented specifics, or no word from any memory."""
        invented = unsupported_specifics(text.replace(IDK, ""), evidence)
        if invented:
            return f"the draft answer mentioned {', '.join(invented)}, which no memory supports"
        new_terms = {t for t in set(query_terms(text)) - set(query_terms(question)) if len(t) > 2}
        if not new_terms:
            return "the draft answer only repeated the question"
        known = {stem(w) for w in re.findall(r"\w+", evidence)}
        if not any(stem(t) in known for t in new_terms):
            return "the draft answer does not draw on any memory"
        return ""


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# The header we put before each passage, "(8 June 2025, chat: Title; Speakers)", which small models copy; the
# date is "2023" or "2023-05" when the memory's date is that coarse (`_when`), and models shorten it too.
_LABEL_COPY = re.compile(r"(?:\[\d+\]|\d+\.)?\s*\(?\b(?:\d{1,2} [A-Z][a-z]+ \d{4}|[A-Z][a-z]+ \d{4}|"
                         r"\d{4}(?:-\d{2}){0,2}|undated), (?:note|document|email|chat|web): [^)\n]*\)?")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_UNIT_MAX, _LOOP_MIN_TOKENS, _LOOP_MIN_REPEATS = 10, 12, 3


def _looping(text: str) -> bool:
    """True once the text ends in a loop (see `_loop_cut`)."""
    return _loop_cut(text) is not None


def _loop_cut(text: str) -> int | None:
    """Where to cut `text` when it ends in a loop (None when it does not): after the first of repeated
    sentences, or after the first unit of a short run of tokens repeated back to back ("10:10:10:…",
    "1 1 1 1 …", "the cello the cello …": at least 3 repeats and 12 tokens, so "very, very, very" and
    counting "1, 2, 3" are not loops)."""
    parts = [re.sub(r"\W+", " ", p.lower()).strip() for p in _SENTENCE.split(text)]
    done = parts[:-1]  # the last part may still be growing
    if len(done) >= 2 and done[-1] and done[-1] in done[:-1]:
        return max(m.end() for m in re.finditer(r"[.!?]", text))
    tokens = list(_TOKEN.finditer(text))[:-1]  # the last token may still be growing
    words = [t.group().lower() for t in tokens]
    n = len(words)
    for unit in range(1, _UNIT_MAX + 1):
        repeats = 1
        while (repeats + 1) * unit <= n and words[n - (repeats + 1) * unit:n - repeats * unit] == words[n - unit:]:
            repeats += 1
        if repeats >= _LOOP_MIN_REPEATS and repeats * unit >= _LOOP_MIN_TOKENS:
            start = n - repeats * unit
            while start > 0 and words[start - 1] == words[start - 1 + unit]:  # the loop may begin mid-unit
                start -= 1
            return tokens[start + unit - 1].end()
    return None


def collapse_repeats(text: str) -> str:
    """Drop sentences that repeat an earlier one (small models loop under greedy decoding)."""
    seen: set[str] = set()
    kept = []
    for sentence in _SENTENCE.split(text.strip()):
        key = re.sub(r"\W+", " ", sentence.lower()).strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    return " ".join(kept)
