"""Questions that need more than one memory: what to look up besides the question, and how to merge the results.

One search for a whole question finds the memories that share its words, which is often only one side of it:
"Who conducts the orchestra I joined after moving to Lisbon?" needs the memory of joining (which orchestra) and
a memory about that orchestra's conductor, which may never mention Lisbon. `plan` splits a question by rules
(English):

- a noun phrase with a relative clause ("the job I had before Tidewater", "the city I moved to in July",
  "the friend who lent me the tent"): the clause is looked up on its own, and the question is asked again about
  what it names once that is known (the persona asks its model to name it from the clause's memories:
  `Hop.resolved`);
- a person named by their relation ("my brother", "my sister's"): the relation is looked up on its own, so that
  the memory that names them is found, and the question is asked again with their name
  (`names_for_relation` reads it from those memories);
- names joined by and/or ("Did Inês or Tomás ...?"): the question once per name.

`merge` interleaves the result lists, best first, without duplicates, so every sub-question is represented.
Nothing here calls a model or a store; the persona does (persona.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..types import Chunk, Hit
from .entities import RELATION_WORDS, canonical_relation, extract_entities
from .observe import NAME, norm

__all__ = ["Hop", "Plan", "plan", "merge", "names_for_relation", "valid_bridge"]

_SUBJECT = r"(?:I|we|he|she|they)"   # not "my X": "the name of my sourdough starter" is no clause
_MODAL = r"(?:should|would|could|can|will|must|might|shall|ought)"  # "the doctor say I should": no clause
_PREPOSITION = r"(?:of|in|at|on|for|to|with|from|by|about|after|before)"
_CLAUSE = re.compile(
    rf"\b(?P<np>(?:the|a|an)\s+(?:[a-z'-]+\s+){{0,2}}?(?!{_PREPOSITION}\b)[a-z'-]+)\s+"
    rf"(?:(?:that|which|where|whom|who)\s+)?{_SUBJECT}\s+(?!{_MODAL}\b)[a-z'’]+\b.*$"
    rf"|\b(?P<np2>(?:the|a|an)\s+(?:[a-z'-]+\s+){{0,2}}?(?!{_PREPOSITION}\b)[a-z'-]+)\s+(?:who|that|which)\s+"
    rf"(?!{_SUBJECT}\b)[a-z'’]+\b.*$", re.I)
_MY_RELATION = re.compile(rf"\bmy\s+(?P<rel>{RELATION_WORDS})(?=['’]s\b|[^\w'’-]|$)", re.I)
_ASKS_WHO = re.compile(r"^\s*(?:who|what)(?:['’]s|\s+(?:is|was|are|were))\s+(?:the\s+(?:full\s+)?name\s+of\s+)?$", re.I)
_JOINED = re.compile(rf"(?<![\w'’-])(?P<names>{NAME}(?:,\s*{NAME})*,?\s+(?:and|or|&)\s+{NAME})")
_QUESTION_WORDS = frozenset("what which who whom whose when where why how did do does is are was were can could "
                            "would should have has had i my me".split())


@dataclass(frozen=True)
class Hop:
    """A relative clause that names the thing the question is about: `phrase` ("the job I had before Tidewater")
    is looked up on its own; `question` is asked again with `phrase` replaced by what it names (`resolved`)."""

    phrase: str
    noun: str        # "the job"
    question: str

    def resolved(self, name: str) -> str:
        return self.question.replace(self.phrase, name, 1)


@dataclass(frozen=True)
class Plan:
    """What to look up for one question besides the question itself."""

    hop: Hop | None = None
    relation: str = ""                   # "brother", from "my brother" (its canonical form)
    relation_phrase: str = ""            # "my brother", as written
    per_name: tuple[str, ...] = ()       # "Did Inês or Tomás ...?" asked once per name

    @property
    def queries(self) -> list[str]:
        """The extra searches that need nothing from a model: the clause, the relation, each name."""
        out = []
        if self.hop:
            out += [self.hop.phrase, self.hop.resolved(self.hop.noun)]
        if self.relation_phrase:
            out.append(self.relation_phrase)
        out += self.per_name
        return list(dict.fromkeys(out))

    def __bool__(self) -> bool:
        return bool(self.hop or self.relation or self.per_name)


def plan(question: str) -> Plan:
    """The sub-questions of `question` (an empty Plan when it is one simple question)."""
    q = question.strip()
    body = q.rstrip("?!. ")
    hop = None
    m = _CLAUSE.search(body)
    if m and m.start() > 0 and len(body[m.start():].split()) >= 4:
        hop = Hop(body[m.start():], m.group("np") or m.group("np2"), q)
    relation = relation_phrase = ""
    r = _MY_RELATION.search(body)
    # one split per question (the clause's first); and "Who is my manager?" asks for the name itself
    if r and not hop and not _ASKS_WHO.match(body[:r.start()]):
        relation, relation_phrase = canonical_relation(r.group("rel")), f"my {r.group('rel')}"
    return Plan(hop, relation, relation_phrase, _one_per_name(q))


def _one_per_name(question: str) -> tuple[str, ...]:
    """"Did Inês or Tomás visit me?" → ("Did Inês visit me?", "Did Tomás visit me?"): the question once per
    name of a list joined by and/or (each name's memories may be separate)."""
    for m in _JOINED.finditer(question):
        names = [n for n in re.split(r",\s*|\s+(?:and|or|&)\s+", m.group("names")) if n]
        while names and names[0].split()[0].casefold() in _QUESTION_WORDS:  # "Did Inês": the name is "Inês"
            first = names[0].split(maxsplit=1)
            if len(first) == 1:
                names = names[1:]
                break
            names[0] = first[1]
        if len(names) >= 2:
            start = m.start("names") + m.group("names").index(names[0])
            return tuple(question[:start] + n + question[m.end("names"):] for n in names)
    return ()


def merge(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """At most `k` hits taken from each list in turn (the first list's best, the second's best, ...), each chunk
    once."""
    out: list[Hit] = []
    seen: set[int] = set()
    for depth in range(max((len(x) for x in lists), default=0)):
        for hits in lists:
            if depth < len(hits) and hits[depth].chunk.id not in seen and len(out) < k:
                seen.add(hits[depth].chunk.id)
                out.append(hits[depth])
    return out


def names_for_relation(chunks: Iterable[Chunk], person: str, relation: str) -> list[str]:
    """The people `chunks` name as the person's `relation` ("my brother Duarte", "Inês, my sister", a chat
    speaker "Mamma"), as layer 1 reads them; most mentioned first."""
    return [e.name for e in extract_entities(chunks, person) if e.kind == "person" and e.relation == relation]


def valid_bridge(name: str, question: str, evidence: str) -> str:
    """`name`, cleaned, when it can stand for a hop's phrase: a few words, written in `evidence` (the memories
    it was read from), not already in the question and not a refusal; "" otherwise."""
    name = re.sub(r"\[\d+\]", "", name).strip().strip("\"'“”‘’.,;:!()").strip()
    if not name or len(name.split()) > 6 or re.search(r"\b(?:unknown|don['’]?t know|not say|none)\b", name, re.I):
        return ""
    if norm(name) not in norm(evidence) or norm(name) in norm(question):
        return ""
    return name
