"""Dated subject-predicate-object facts: observations from chunks, resolved into validity intervals.

Two extractors produce `Observation`s, one dated statement from one chunk each:
- `extract_observations` (in `observe.py`): deterministic English patterns for first-person life writing
  (journals, mail, chats). It is the default because the embedded 135M model cannot extract facts.
- `teacher_observations`: a stronger model asked for JSON. Only items whose object is written in the chunk
  are kept, so every teacher fact is grounded in its source by construction.

`resolve` then works like a temporal knowledge graph (Zep/Graphiti style): contradicted facts are closed,
never deleted, so "where did I live in May?" keeps an answer after a move. Entities live in `entities.py`.

Limits: English, first person, a few predicates (`PREDICATES`), capitalized names; what the patterns miss,
only the teacher can add. Precision is preferred over recall throughout.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from ..backends.chat import ChatModel, Message
from ..prompts import render
from ..structured import generate_json
from ..text.dates import annotate_relative_dates, parse_date
from ..text.phrasing import PREDICATES, Predicate
from ..types import Chunk, Entity, Fact
from .entities import extract_entities
from .observe import Observation, extract_observations, norm, person_units

__all__ = ["Observation", "Predicate", "PREDICATES", "extract_observations", "teacher_observations", "resolve",
           "extract_entities", "facts_at", "facts_about", "describe"]

log = logging.getLogger(__name__)

KINDS = ("start", "state", "end")
_SCHEMA = {
    "type": "object",
    "required": ["facts"],
    "properties": {"facts": {"type": "array", "items": {
        "type": "object",
        "required": ["subject", "predicate", "object", "kind"],
        "properties": {
            "subject": {"type": "string"},
            "predicate": {"type": "string", "enum": list(PREDICATES)},
            "object": {"type": "string", "minLength": 1},
            "date": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": list(KINDS)},
        },
    }}},
}


def teacher_observations(model: ChatModel, chunk: Chunk, person: str, *, attempts: int = 2) -> list[Observation]:
    """Observations a stronger model reads in `chunk`, kept only where grounded.

    An item survives if its object (and a subject other than the person) is written in the chunk, ignoring
    case and accents, and its date is empty or parses. Invalid JSON is retried; when every attempt fails,
    `StructuredOutputError` propagates, so a build step fails visibly instead of silently knowing less.
    """
    # relative dates come resolved ("on Monday (25 August 2025)"), each against the day its sentence was written
    mine = "\n".join(annotate_relative_dates(s, day) for s, _, day in person_units(chunk, person))
    if not mine.strip():
        return []
    prompt = render("facts_extract", person=person, date=(chunk.date or "unknown")[:10], text=mine,
                    predicates="\n".join(f"- {p.name}: {person} {p.phrase.format(object='...')}"
                                         for p in PREDICATES.values()))
    value = generate_json(model, [Message("user", prompt)], _SCHEMA, attempts=attempts, what="facts")
    haystack = norm(chunk.heading + "\n" + chunk.text)
    out = []
    for item in value["facts"]:
        obj, subject = " ".join(item["object"].split()), item["subject"].strip()
        if subject.casefold() in ("i", "me", "myself", "", person.casefold()) or norm(subject) == norm(person):
            subject = person
        elif norm(subject) not in haystack:
            continue
        if norm(obj) not in haystack:
            log.debug("teacher fact dropped, object not in chunk %s: %r", chunk.id, obj)
            continue
        when = None
        if item.get("date"):
            parsed = parse_date(item["date"])
            if parsed is None:
                log.debug("teacher fact dropped, date does not parse: %r", item["date"])
                continue
            when = parsed.date().isoformat()
        out.append(Observation(subject, item["predicate"], obj, when, item["kind"], chunk.id,
                               _sentence_with(chunk, obj), origin="teacher",
                               seen=chunk.date[:10] if chunk.date else None, explicit=when is not None))
    return out


def _sentence_with(chunk: Chunk, obj: str) -> str:
    key = norm(obj)
    for s in re.split(r"(?<=[.!?])\s+|\n+", chunk.text):
        if key in norm(s):
            return " ".join(s.split())[:240]
    return chunk.heading[:240]


# -- resolution ----------------------------------------------------------------------------------------

def resolve(observations: Iterable[Observation], *, today: str | None = None) -> list[Fact]:
    """Facts with validity intervals from observations (only those seen on or before `today`, if given).

    Per (subject, predicate), objects are grouped by `norm`, and a name that is the first word(s) of exactly
    one longer name merges into it ("Acme" into "Acme Freight"). For each object:
    - valid_from is its earliest "start" date and valid_to its earliest "end" on or after that (a value that
      restarts after ending keeps its latest interval). Dates written in the text win over chunk dates, so
      "my last day will be 31 August" beats a journal entry dated the 29th; ends may lie in the future.
    - with only "state" observations, valid_from stays None: we know it held when seen, not since when.
    For functional predicates values are ordered by their start, or the day first seen when there is none;
    each value is closed the day before the next one begins, unless it ended earlier. A state-only value
    that follows another starts on the day it was first seen (the latest it can have started).
    A job title stated with an employer ("my position as Analyst at Acme") ends when that job ends, if earlier.
    Observations without a date support a fact (sources) but never move its interval.
    """
    groups: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for o in observations:
        if o.predicate in PREDICATES and o.kind in KINDS and (today is None or o.seen is None or o.seen <= today):
            groups[(norm(o.subject), o.predicate)].append(o)
    values: dict[tuple[str, str], list[_Value]] = {}
    for key, obs in groups.items():
        values[key] = [_Value(c) for c in _clusters(obs)]
        if PREDICATES[key[1]].functional:
            _close_successions(values[key])
    for (subject, predicate), titles in values.items():
        if predicate == "job_title":
            _end_with_job(titles, values.get((subject, "works_at"), []))
    facts = [v.fact() for vs in values.values() for v in vs]
    return sorted(facts, key=lambda f: (f.subject, f.predicate, f.valid_from or "", f.object))


def _clusters(obs: Sequence[Observation]) -> list[list[Observation]]:
    keys = {norm(o.object) for o in obs}
    canonical = {}
    for k in keys:
        longer = sorted((m for m in keys if m.startswith(k + " ")), key=len)
        # merge only along one chain of names ("acme" < "acme freight" < "acme freight sa"), never a fork
        chain = all(longer[-1].startswith(m + " ") for m in longer[:-1])
        canonical[k] = longer[-1] if longer and chain else k
    clusters: dict[str, list[Observation]] = defaultdict(list)
    for o in obs:
        clusters[canonical[norm(o.object)]].append(o)
    return list(clusters.values())


class _Value:
    """One object of a (subject, predicate) group and its interval."""

    def __init__(self, obs: list[Observation]) -> None:
        self.obs = obs
        top = max(len(norm(o.object)) for o in obs)
        forms = Counter(o.object for o in obs if len(norm(o.object)) == top)
        self.object = max(forms, key=lambda f: (forms[f], sum(c.isupper() for c in f)))
        starts, ends = self._dates("start"), self._dates("end")
        self.valid_from = starts[0] if starts else None
        self.valid_to = next((e for e in ends if self.valid_from is None or e >= self.valid_from), None)
        while self.valid_to and any(s > self.valid_to for s in starts):        # it began again later
            self.valid_from = min(s for s in starts if s > self.valid_to)
            self.valid_to = next((e for e in ends if e >= self.valid_from), None)
        seen = sorted(o.date for o in obs if o.date)
        self.anchor = self.valid_from or (seen[0] if seen else None)

    def _dates(self, kind: str) -> list[str]:
        dated = [o for o in self.obs if o.kind == kind and o.date]
        explicit = [o for o in dated if o.explicit]
        return sorted(o.date for o in (explicit or dated))  # type: ignore[misc]

    def fact(self) -> Fact:
        def rank(o: Observation) -> tuple:   # the sentence that dates the fact, best written on that day
            return (o.kind == "start" and o.date == self.valid_from, o.kind == "end" and o.date == self.valid_to,
                    o.kind == "state", o.explicit, o.date is not None, o.seen == o.date, -len(o.evidence))

        best = max(self.obs, key=rank)
        return Fact(subject=best.subject, predicate=best.predicate, object=self.object, valid_from=self.valid_from,
                    valid_to=self.valid_to, sources=tuple(sorted({o.chunk_id for o in self.obs})),
                    origin="teacher" if all(o.origin == "teacher" for o in self.obs) else "rules",
                    evidence=best.evidence)


def _close_successions(values: list[_Value]) -> None:
    ordered = sorted((v for v in values if v.anchor), key=lambda v: v.anchor or "")
    for i, v in enumerate(ordered):
        nxt = next((n for n in ordered[i + 1:] if (n.anchor or "") > (v.anchor or "")), None)
        if nxt is None or nxt.anchor is None:
            continue
        if nxt.valid_from is None:
            nxt.valid_from = nxt.anchor
        day_before = (date.fromisoformat(nxt.anchor) - timedelta(days=1)).isoformat()
        if v.valid_to is None or v.valid_to > day_before:
            v.valid_to = day_before


def _end_with_job(titles: list[_Value], jobs: list[_Value]) -> None:
    job_of = {(o.chunk_id, o.evidence): j for j in jobs for o in j.obs}
    for t in titles:
        ends = [j.valid_to for o in t.obs if (j := job_of.get((o.chunk_id, o.evidence))) and j.valid_to
                and (t.valid_from is None or j.valid_to >= t.valid_from)]
        if ends and (t.valid_to is None or min(ends) < t.valid_to):
            t.valid_to = min(ends)


# -- reading facts -------------------------------------------------------------------------------------

def facts_at(facts: Iterable[Fact], day: str) -> list[Fact]:
    """The facts that held on `day` (ISO date); an unknown start or end counts as open."""
    return [f for f in facts if f.holds_at(day)]


def facts_about(facts: Iterable[Fact], entities: Iterable[Entity], name: str) -> list[Fact]:
    """Facts whose subject or object is `name` or any other name of the same entity."""
    names = {norm(name)}
    for e in entities:
        known = {norm(e.name), *(norm(a) for a in e.aliases)}
        if names & known:
            names |= known
    return [f for f in facts if norm(f.subject) in names or norm(f.object) in names]


def describe(fact: Fact) -> str:
    """A human line: "Maya lives in Lisbon (since 2025-07-01)", "Maya lived in Porto (until 2025-06-30)"."""
    p = PREDICATES.get(fact.predicate)
    if p is None:
        text = f"{fact.subject} {fact.predicate.replace('_', ' ')} {fact.object}"
    else:
        text = f"{fact.subject} {(p.end_phrase if fact.valid_to else p.phrase).format(object=fact.object)}"
    if fact.valid_from and fact.valid_to:
        return f"{text} ({fact.valid_from} to {fact.valid_to})"
    if fact.valid_from:
        return f"{text} (since {fact.valid_from})"
    if fact.valid_to:
        return f"{text} (until {fact.valid_to})"
    return text
