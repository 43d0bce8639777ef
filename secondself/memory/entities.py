"""People (and the places and organizations of facts) that the memories mention, with their other names.

A capitalized word is a person only with evidence, never because it starts a sentence:
- a chat speaker or an e-mail sender (kinship speakers such as "Mamma" get a relation);
- a relation phrase in the person's own words: "my sister Inês", "my manager, Catarina Vaz",
  "Catarina Vaz, my manager";
- a cue around the name anywhere: "a man called Tomás Reis", "Dr. Paulo Teixeira", "Duarte and I",
  "Helena said", "Leo messaged me";
- a full name ("Tomás Reis") whose first name is already known to be a person by one of the above.
A first name merges into the one full name that starts with it, as an alias ("Tomás" → "Tomás Reis").
Objects of `lives_in`/`works_at`/... observations become places and organizations; people met through
`manager`, `partner` and `teacher` observations get that relation ("former ..." once it ended).

Limits: English cues, capitalized names; two people sharing a first name and no surname are one entity.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..text.phrasing import PREDICATES
from ..text.words import NAME_STOPWORDS
from ..types import Chunk, Entity
from .observe import NAME, PROPER, extract_observations, is_person, norm, person_units

__all__ = ["extract_entities"]

_ASSISTANTS = {"chatgpt", "assistant", "claude", "gemini", "copilot", "bard", "bot", "system", "ai"}
_KIN = {"mamma": "mother", "mama": "mother", "mom": "mother", "mum": "mother", "mother": "mother",
        "mummy": "mother", "pappa": "father", "papa": "father", "dad": "father", "daddy": "father",
        "father": "father", "grandma": "grandmother", "granny": "grandmother", "grandpa": "grandfather"}
_RELATIONS = ("sister|brother|mother|mom|mum|father|dad|son|daughter|wife|husband|partner|boyfriend|girlfriend|"
              "fianc[ée]e?|cousin|aunt|uncle|niece|nephew|grandmother|grandfather|grandma|grandpa|manager|boss|"
              "colleague|coworker|friend|flatmate|roommate|housemate|neighbou?r|landlord|landlady|teacher|tutor|"
              "coach|doctor|physio|physiotherapist|therapist|dentist|mentor")
_ORG_WORDS = re.compile(r"\b(?:bookings?|clinic|cl[íi]nica|hospital|support|team|labs?|inc|ltd|lda|gmbh|ab|s\.?a|"
                        r"bank|airlines?|services|newsletter|noreply|no-reply|recursos|resources|department)\b", re.I)
_REL_BEFORE = re.compile(rf"\b[Mm]y[ \t]+(?:[a-z]+[ \t]+)?(?P<rel>{_RELATIONS})(?:[ \t]+is)?,?[ \t]+(?P<name>{NAME})")
_REL_AFTER = re.compile(rf"(?P<name>{NAME})(?:(?:[ \t]+[-–—]|,)[ \t]+(?:the[ \t]+)?{PROPER})?,[ \t]+my[ \t]+"
                        rf"(?:[a-z]+[ \t]+)?(?P<rel>{_RELATIONS})\b")
_CUES = [
    re.compile(rf"\b(?:man|woman|guy|girl|boy|person|someone|friend|colleague)[ \t]+(?:called|named)[ \t]+(?P<name>{NAME})"),
    re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Sr|Sra|Prof)\.?[ \t]+(?P<name>{NAME})"),
    re.compile(rf"(?P<name>{NAME})[ \t]+and[ \t]+I[ \t]+(?:were|are|have|had|went|met|broke|split|got|spent|did|"
               r"made|drank|ate|sat|left|came|took|\w+ed)\b"),
    re.compile(rf"(?P<name>{NAME}),?[ \t]+(?:said|says|told|tells|asked|asks|replied|answered|texted|messaged|"
               r"called|emailed|laughed|cried|smiled|nodded|promised|suggested|explained|insisted)\b"),
]
# "the gallery in Aveiro asked", "Filipa from Acme Labs called": a name after these words is a place or firm
_PLACE_BEFORE = re.compile(r"\b(?:in|at|from|to|of|for|near|by|on|into|the|a|an|via|around|towards)[ \t]+$", re.I)
_FULL = re.compile(rf"(?<![\w'’-]){NAME}")


@dataclass
class _Person:
    name: str
    relations: Counter = field(default_factory=Counter)
    kind: str = "person"


def extract_entities(chunks: Iterable[Chunk], person: str) -> list[Entity]:
    """People and the places/organizations of the person's facts, most mentioned first."""
    chunks = list(chunks)
    found: dict[str, _Person] = {}

    def add(name: str, relation: str = "", kind: str = "person") -> None:
        name = re.sub(r"['’]s$", "", name.strip())
        words = name.split()
        while words and words[0].casefold() in NAME_STOPWORDS:
            words = words[1:]
        if not words or is_person(" ".join(words), person) or words[0].casefold() in _ASSISTANTS \
                or (kind == "person" and _ORG_WORDS.search(name)):
            return
        p = found.setdefault(norm(" ".join(words)), _Person(" ".join(words), kind=kind))
        if relation:
            p.relations[relation] += 1

    for c in chunks:
        for s in c.speakers:
            if c.kind == "chat" and not is_person(s, person) and len(s.split()) <= 3:
                add(s, _KIN.get(s.casefold(), ""))
            elif c.kind == "email" and not is_person(s, person):
                sender = s.split(" - ")[0].strip()
                if re.fullmatch(NAME, sender) and not _ORG_WORDS.search(sender):
                    add(sender)
        for sentence, _, _ in person_units(c, person):
            for rx in (_REL_BEFORE, _REL_AFTER):
                for m in rx.finditer(sentence):
                    add(m.group("name"), _relation(m.group("rel")))
        for rx in _CUES:
            for m in rx.finditer(c.text):
                if not _PLACE_BEFORE.search(c.text[max(0, m.start() - 12):m.start()]):
                    add(m.group("name"))
    _add_full_names(chunks, found, person)
    relations = _fact_relations(chunks, person, found)
    return _merge_and_count(chunks, found, relations)


# the relation words and their canonical names, for questions too ("What did my brother suggest?": memory/hops.py)
RELATION_WORDS = _RELATIONS


def canonical_relation(word: str) -> str:
    return _relation(word)


def _relation(word: str) -> str:
    word = word.casefold()
    return {"mom": "mother", "mum": "mother", "dad": "father", "boss": "manager", "physiotherapist": "physio",
            "neighbor": "neighbour", "coworker": "colleague"}.get(word, word)


def _add_full_names(chunks: list[Chunk], found: dict[str, _Person], person: str) -> None:
    """Full names whose first word is a known first name ("Tomás" known → "Tomás Reis")."""
    firsts = {k for k in found if " " not in k}
    for c in chunks:
        for m in _FULL.finditer(c.text):
            words = m.group(0).split()
            if len(words) >= 2 and norm(words[0]) in firsts and not any(w.casefold() in NAME_STOPWORDS for w in words[1:]) \
                    and not is_person(m.group(0), person):
                found.setdefault(norm(m.group(0)), _Person(m.group(0)))


def _fact_relations(chunks: list[Chunk], person: str, found: dict[str, _Person]) -> dict[str, str]:
    """Relations and places/organizations read from the person's observations."""
    latest: dict[tuple[str, str], tuple[str, str]] = {}
    for c in chunks:
        for o in extract_observations(c, person):
            kind = PREDICATES[o.predicate].object_kind
            if kind in ("place", "organization"):
                found.setdefault(norm(o.object), _Person(o.object, kind=kind))
            elif kind == "person":
                found.setdefault(norm(o.object), _Person(o.object))
                key = (norm(o.object), o.predicate)
                if o.date and (key not in latest or o.date >= latest[key][0]):
                    latest[key] = (o.date, o.kind)
                latest.setdefault(key, ("", o.kind))
    out = {}
    for (name, predicate), (_, kind) in latest.items():
        relation = PREDICATES[predicate].relation
        out[name] = f"former {relation}" if kind == "end" else relation
    return out


def _merge_and_count(chunks: list[Chunk], found: dict[str, _Person], fact_rel: dict[str, str]) -> list[Entity]:
    # a first name (or short name) joins the one longer name that starts with it; a surname ("Dr. Teixeira")
    # the one person's name that ends with it
    into: dict[str, str] = {}
    for k, p in found.items():
        longer = [m for m, q in found.items() if m.startswith(k + " ") and q.kind == p.kind]
        if len(longer) != 1 and p.kind == "person" and " " not in k:
            longer = [m for m, q in found.items() if m.endswith(" " + k) and q.kind == "person"]
        if len(longer) == 1:
            into[k] = longer[0]
    members: dict[str, list[str]] = defaultdict(list)
    for k in found:
        members[into.get(k, k)].append(k)
    # a full name also goes by its first name, when no other person shares it
    firsts = Counter(norm(found[h].name).split()[0] for h in members if found[h].kind == "person")
    entities = []
    for head, keys in members.items():
        names = sorted({found[k].name for k in keys}, key=len, reverse=True)
        first = found[head].name.split()[0]
        if found[head].kind == "person" and len(names[0].split()) > 1 and firsts[norm(first)] == 1 \
                and all(" " in n for n in names) and first.casefold() not in NAME_STOPWORDS:
            names.append(first)
        relations = sum((found[k].relations for k in keys), Counter())
        relation = relations.most_common(1)[0][0] if relations else next(
            (fact_rel[k] for k in [head, *keys] if k in fact_rel), "")
        pattern = re.compile(r"(?<![\w'’-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w’-])")
        hits = {c.id: len(pattern.findall(c.text)) + any(s in names for s in c.speakers) for c in chunks}
        sources = tuple(sorted(i for i, n in hits.items() if n))
        if not sources and found[head].kind == "person":
            continue
        entities.append(Entity(name=found[head].name, kind=found[head].kind, aliases=tuple(n for n in names
                               if n != found[head].name), relation=relation, mentions=sum(hits.values()),
                               sources=sources))
    return sorted(entities, key=lambda e: (-e.mentions, e.name))
