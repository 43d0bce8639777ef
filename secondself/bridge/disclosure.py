"""What of the person may be told to someone else for one request: a few relevant details, under a policy.

The boundary: this module chooses and phrases personal details; it calls no model and sends nothing
(`run` does that with what it returns). Every detail is an `Item` whose `text` is exactly what would be
disclosed, with the chunks it comes from.

Selection is deterministic and deliberately small (at most `Policy.max_items`, nothing below a relevance bar):
- A table of *needs* (`NEEDS`) says which kinds of personal detail a kind of request calls for: "book a
  restaurant" calls for where the person lives (a current fact) and what they cannot eat (a sentence of their
  own, found by keyword search and a statement pattern) — never their salary or an ex-partner.
- A current fact is also relevant when the request names it ("email Catarina" → "I report to Catarina Vaz");
  a sentence of the person's (at most two) when hybrid search (embeddings + BM25) finds it for the request, it
  shares a specific word with it, its cosine to the request clears `MEMORY_SIMILARITY`, and it is a short
  plain statement: no number or date, no name the request and the current facts do not already hold.
- A sentence is cut to the clause that states the detail, must be in the first person, and must not name
  another person or something that has ended (an old city, a former partner).

The `Policy` is applied to every candidate before the cap, so an excluded detail is replaced by an allowed
one that says the same thing when there is one (and is listed as withheld otherwise). A fact may be disclosed
when at least one chunk it was derived from is allowed; it then cites only those chunks.

Limits: English; the needs table covers everyday requests (food, home, work, music, health, travel, schedule,
relationships), and a request outside it gets only what it names or what search finds for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, SourceNotFoundError
from ..memory.observe import norm, person_units
from ..memory.search import query_terms
from ..store import Store
from ..text.phrasing import past, present
from ..text.words import NAME_STOPWORDS
from ..types import Chunk, Fact, Profile

__all__ = ["Policy", "Item", "Selection", "Need", "NEEDS", "select", "allowed_sources", "present_fact",
           "MEMORY_SIMILARITY", "mentions", "admit", "clause", "current_facts", "provenance"]

MEMORY_SIMILARITY = 0.2      # cosine(request, sentence) a searched sentence needs besides a shared specific word
_MAX_CLAUSE_WORDS = 22


@dataclass(frozen=True)
class Policy:
    """What may be disclosed. `sources` / `tags`: only memories from these sources / from sources carrying one
    of these tags (empty: no such restriction). `never_share`: terms that must not occur in anything disclosed
    (case-insensitive); `source:NAME` excludes a whole source and `tag:NAME` every source with that tag."""

    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    never_share: tuple[str, ...] = ()
    max_items: int = 5

    def __post_init__(self) -> None:
        for name in ("sources", "tags", "never_share"):
            value = getattr(self, name)
            if isinstance(value, str) or any(not isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of strings")
            try:
                "".join(value).encode("utf-8")
            except UnicodeEncodeError as e:
                raise ConfigError(f"{name}: not valid text ({e.reason})") from e
            object.__setattr__(self, name, tuple(dict.fromkeys(v.strip() for v in value if v and v.strip())))
        if not 0 <= self.max_items <= 20:
            raise ConfigError(f"max_items must be between 0 and 20, not {self.max_items}")

    def _prefixed(self, prefix: str) -> tuple[str, ...]:
        return tuple(t[len(prefix):].strip() for t in self.never_share if t.lower().startswith(prefix))

    @property
    def terms(self) -> tuple[str, ...]:
        """The never-share terms that are words, not `source:`/`tag:` exclusions."""
        return tuple(t for t in self.never_share if not t.lower().startswith(("source:", "tag:")))

    @property
    def excluded_sources(self) -> tuple[str, ...]:
        return self._prefixed("source:")

    @property
    def excluded_tags(self) -> tuple[str, ...]:
        return self._prefixed("tag:")

    def to_dict(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "tags": list(self.tags), "never_share": list(self.never_share),
                "max_items": self.max_items}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Policy:
        d = d or {}
        return cls(tuple(d.get("sources") or ()), tuple(d.get("tags") or ()), tuple(d.get("never_share") or ()),
                   int(d.get("max_items", 5)))


@dataclass(frozen=True)
class Item:
    """One personal detail. `text` is exactly what is disclosed; `key` is the word that carries it ("Lisbon",
    "vegetarian"), so a reply without it has missed the detail; `provenance` is (chunk id, source, path)."""

    text: str
    kind: str                                    # fact | memory
    reason: str                                  # why it was chosen: "food: 'restaurant'"
    key: str
    provenance: tuple[tuple[int, str, str], ...] = ()
    fact_id: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for _, s, _ in self.provenance))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "reason": self.reason, "fact_id": self.fact_id,
                "chunks": [{"chunk_id": c, "source": s, "path": p} for c, s, p in self.provenance]}


@dataclass
class Selection:
    """`disclosed`: what may be shared, in order; `withheld`: relevant details the policy excluded, with why;
    `private`: words of what the person's memory holds beyond the disclosure (ended facts, other current facts,
    withheld details, people's names), which a model's rewrite must not bring in."""

    disclosed: list[Item] = field(default_factory=list)
    withheld: list[tuple[Item, str]] = field(default_factory=list)
    private: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Need:
    """A kind of personal detail a kind of request calls for: the facts (`predicates`, valid now) and the
    person's own statements (`statement`, searched with `query`) that give it."""

    name: str
    triggers: re.Pattern[str]
    predicates: tuple[str, ...] = ()
    query: str = ""
    statement: re.Pattern[str] | None = None


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


_FOOD = (r"restaurants?|dinner|lunch|breakfast|brunch|meals?|eat|eating|food|cook\w*|recipes?|menu|caf[eé]s?|"
         r"cater\w*|grocer\w*|snacks?|bak(?:e|ing)|picnic|barbecue|bbq|dish(?:es)?|cuisine|takeaway|dining|"
         r"party|flights?|trip|travel\w*|holiday|vacation|hotel")
_ALLERGEN = r"peanuts?|(?:tree )?nuts|\w+nuts|shellfish|eggs?|dairy|milk|soy|gluten|wheat|fish|sesame|lactose"

NEEDS: tuple[Need, ...] = (
    Need("home", _re(r"\b(?:restaurants?|dinner|lunch|brunch|caf[eé]s?|book (?:a|an|the|me|us|tickets?|tables?)|"
                     r"reserv\w*|near(?:by)?|local|flats?|apartments?|rent\w*|hous(?:e|ing)|gym|commute|"
                     r"neighbou?rhoods?|deliver\w*|weekend|trip|hotel|doctor|dentist|physio\w*|classes|club|tutors?|"
                     r"lessons?|teachers?|"
                     r"shops?|tickets?|concerts?|visit\w*|move|moving)\b"), ("lives_in",)),
    Need("food", _re(rf"\b(?:{_FOOD})\b"), (), "vegetarian vegan pescatarian gluten coeliac celiac lactose halal "
         "kosher allergic allergy",
         _re(rf"\b(?P<k>vegetarian|vegan|pescatarian|coeliac|celiac|halal|kosher|gluten[- ]free|lactose[- ]intolerant)"
             rf"\b|\ballergic to (?P<a>{_ALLERGEN})\b|\b(?P<b>{_ALLERGEN}) allergy\b")),
    Need("health", _re(r"\b(?:doctors?|gp|medic\w*|pharmac\w*|health\w*|hospital|clinic|physio\w*|prescri\w*|"
                       r"symptoms?|injur\w*|sick|illness|dentist|vaccin\w*|insurance|antibiotics?|surgery|travel\w*|"
                       r"trip|abroad)\b"), (), "allergic allergy asthma diabetes diabetic epilepsy",
         _re(r"\ballergic to (?P<a>[a-zà-ÿ]+)|\b(?P<k>asthma|diabetes|diabetic|epilepsy|epileptic)\b")),
    Need("work", _re(r"\b(?:work(?!s\b| out)\w*|jobs?|career|cv|cover letter|resume|résumé|bio|linkedin|"
                     r"interview\w*|colleagues?|office|meetings?|salary|raise|promotion|conference|onboarding|team|"
                     r"courses?|skills?|professional)\b"),
         ("works_at", "job_title")),
    Need("manager", _re(r"\b(?:manager|boss|day off|time off|leave|report(?:s|ing)? to|one-on-one|appraisal|"
                        r"performance review)\b"), ("manager",)),
    Need("education", _re(r"\b(?:cv|resume|résumé|bio|degree|university|studies|academic|alumni|masters?|phd|"
                          r"applications?)\b"), ("studied_at",)),
    Need("music", _re(r"\b(?:music\w*|cello|violin|viola|piano|guitar|instruments?|concerts?|orchestras?|"
                      r"rehears\w*|conservatory|audition|(?:music|cello|piano|violin|guitar) (?:lessons?|teachers?))\b"),
         ("plays_in", "teacher"),
         "play cello violin viola piano guitar flute clarinet",
         _re(r"\bI (?:play|have played|'ve played|’ve played) (?:the )?(?P<k>cello|violin|viola|piano|guitar|flute|"
             r"clarinet|drums|saxophone|trumpet|double bass)\b")),
    Need("schedule", _re(r"\b(?:plan (?:my|our|the) (?:week|days?|month)|my (?:week|weekly|schedule|calendar|"
                         r"agenda|routine|timetable)|schedule|calendar|agenda|timetable)\b"),
         ("works_at", "job_title", "plays_in", "teacher")),
    Need("relationship", _re(r"\b(?:romantic|date night|anniversary|valentine\w*|partner|boyfriend|girlfriend|wife|"
                             r"husband|couple)\b"), ("partner",)),
)

# Words of a request that say what to do, not what it is about: never enough to make a memory relevant.
_GENERIC = frozenset("""book find plan help write make suggest recommend need want get give show tell some good best
please week weekend today tomorrow next time day days new list ideas idea short long draft email message create
prepare update look looking thing things something anything kind ask asking could would should let lets know
monday tuesday wednesday thursday friday saturday sunday morning evening night tonight""".split())
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I’m|I've|I’ve|I'd|me|my|myself)\b")
_STATE = r"\bI(?:'m|’m| am| have been|'ve been|’ve been| was| play| have| eat)\b"
_PARENS = re.compile(r"\([^()]*\)")
_BOUNDARY = re.compile(r"\s*(?:[;:]|,\s|\s[—–-]\s|\s(?:but|because|although|though|which|while|whereas|so)\s|"
                       r"\sand\s(?=[A-Z]|(?:he|she|they|we|it|the|that)\b))\s*")
_REPORTED = re.compile(r"^(?:and |so |then |also )?(?:I (?:told|said to|mentioned to|explained to|reminded) "
                       r"\w+(?: that)? )(?=I\b)")


def present_fact(f: Fact) -> str:
    """"I live in Lisbon." — the phrasing the personal model was trained on (train/templates.enhance)."""
    return f"I {(past if f.predicate == 'studied_at' else present)(f)}."


def mentions(text: str, key: str) -> bool:
    """Whether `text` names `key`: case- and accent-insensitive, whole words, singular or plural ("Lisbon" in
    "Lisbon's", "vegetarian" in "vegetarians", "peanuts" in "peanut-free")."""
    key = norm(key)
    if not key:
        return False
    stem = key[:-1] if len(key) > 4 and key.endswith("s") and not key.endswith("ss") else key
    return re.search(rf"(?<!\w){re.escape(stem)}(?:s|es|'s)?(?!\w)", norm(text)) is not None


def allowed_sources(store: Store, policy: Policy) -> set[str]:
    """The source names whose memories may be disclosed. Unknown sources or tags named in the policy are
    errors, so a typo never silently discloses what the person meant to exclude."""
    names = {s.name for s in store.sources()}
    tags: dict[str, set[str]] = {}
    for name, tag in store.db.execute("SELECT s.name, t.tag FROM source_tags t JOIN sources s ON s.id = t.source_id"):
        tags.setdefault(tag.casefold(), set()).add(name)
    for s in (*policy.sources, *policy.excluded_sources):
        if s not in names:
            raise SourceNotFoundError(s)
    for t in (*policy.tags, *policy.excluded_tags):
        if t.casefold() not in tags:
            raise ConfigError(f"no source is tagged {t!r}; tag sources first (or check the spelling)")
    allowed = set(names)
    if policy.sources:
        allowed &= set(policy.sources)
    if policy.tags:
        allowed &= set().union(*(tags[t.casefold()] for t in policy.tags))
    allowed -= set(policy.excluded_sources)
    for t in policy.excluded_tags:
        allowed -= tags[t.casefold()]
    return allowed


def admit(item: Item, policy: Policy, allowed: set[str]) -> tuple[Item | None, str]:
    """The item as it may be disclosed (citing allowed chunks only), or None and why it may not."""
    for term in policy.terms:
        if term.casefold() in item.text.casefold() or norm(term) in norm(item.text):
            return None, f"never-share term {term!r}"
    kept = tuple(p for p in item.provenance if p[1] in allowed)
    if item.provenance and not kept:
        return None, "from " + ", ".join(repr(s) for s in item.sources) + ", which the policy excludes"
    return Item(item.text, item.kind, item.reason, item.key, kept, item.fact_id), ""


def _terms(text: str) -> set[str]:
    return {t for t in query_terms(text) if len(t) >= 3 and t not in _GENERIC}


def _shares(terms: set[str], text: str) -> str | None:
    words = {w.casefold() for w in re.findall(r"\w+", text)}
    for t in sorted(terms):
        if t in words or (len(t) >= 5 and any(w[:5] == t[:5] for w in words if len(w) >= 5)):
            return t
    return None


def _plain(text: str, known: str) -> bool:
    """A short statement about the person (first person within its first words), with no number or date and
    no name beyond `known` (the request and the current facts): search finds anecdotes, not only details."""
    words = text.split()
    if len(words) > 16 or re.search(r"\d", text) or not _FIRST_PERSON.search(" ".join(words[:4])):
        return False
    names = re.findall(r"(?<!^)(?<![.!?] )\b[A-ZÀ-Þ][\w'’-]+", text)
    return all(n in ("I", "I'm", "I’m", "I've", "I’ve", "I'd") or mentions(known, n) for n in names)


# a sentence that hedges is a thought, not a detail about me: "I could live here, I think."
_HEDGED = re.compile(r"\b(?:I think|I guess|I wonder|maybe|perhaps|probably|might|could|would|not sure)\b", re.I)


def _specific(text: str, request: str) -> str:
    """The longest word of `text` that the request does not contain: what a reply would have to mention to
    reflect it ("" when the request already says everything the text says)."""
    asked = {w.casefold() for w in re.findall(r"\w+", request)}
    words = [w for w in re.findall(r"[^\W\d_]{4,}", text) if w.casefold() not in asked | _GENERIC
             and w.casefold() not in NAME_STOPWORDS]
    return max(words, key=len, default="")


def clause(sentence: str, start: int, end: int) -> str:
    """The clause of `sentence` around [start, end), first person and capitalized, or "" when there is none."""
    masked = _PARENS.sub(lambda m: "(" + "x" * (len(m.group()) - 2) + ")", sentence)  # keep "(no meat, no fish)"
    left, right = 0, len(sentence)
    for b in _BOUNDARY.finditer(masked):
        if b.end() <= start:
            left = b.end()
        elif b.start() >= end:
            right = b.start()
            break
    text = _REPORTED.sub("", sentence[left:right].strip().rstrip(".!?,;")).strip()
    if not _FIRST_PERSON.search(text) or len(text.split()) > _MAX_CLAUSE_WORDS:
        return ""
    return text[:1].upper() + text[1:] + "."


def current_facts(profile: Profile | None, person: str) -> tuple[list[Fact], list[Fact]]:
    """The person's facts valid now (as of the newest memory), and those that ended."""
    if profile is None:
        return [], []
    as_of = profile.status.as_of
    mine = [f for f in profile.facts if norm(f.subject) == norm(profile.person or person)]
    now = [f for f in mine if f.valid_to is None or (as_of is not None and f.valid_to >= as_of)]
    return now, [f for f in mine if f not in now]


def provenance(store: Store, ids: Iterable[int]) -> tuple[tuple[int, str, str], ...]:
    chunks = store.chunks(sorted(set(ids)))
    return tuple((c.id, c.source, c.path) for c in sorted(chunks.values(), key=lambda c: c.id))


class _Memories:
    """The person's own sentences, found by search and cut to clauses; shared by the candidate passes."""

    def __init__(self, store: Store, searcher: Any, person: str, avoid: Sequence[str]) -> None:
        self.store, self.searcher, self.person = store, searcher, person
        self.avoid = [a for a in avoid if a.strip()]

    def sentences(self, query: str, k: int, mode: str) -> Iterable[tuple[Chunk, str]]:
        if not query_terms(query):
            return
        for hit in self.searcher.search(query, k=k, mode=mode):
            for sentence, _, _ in person_units(hit.chunk, self.person):
                yield hit.chunk, sentence

    def usable(self, text: str) -> bool:
        """No other person and nothing that has ended (an old city, a former partner) in the clause."""
        return bool(text) and not any(mentions(text, a) for a in self.avoid)

    def item(self, chunk: Chunk, text: str, reason: str, key: str) -> Item:
        return Item(text, "memory", reason, key, ((chunk.id, chunk.source, chunk.path),))


def _reason(need: Need, trigger: str) -> str:
    return f"{need.name}: {trigger!r}" if trigger else f"{need.name} (always checked)"


def _statement_candidates(mem: _Memories, need: Need, trigger: str) -> list[tuple[tuple, Item]]:
    out = []
    assert need.statement is not None
    for chunk, sentence in mem.sentences(need.query, 50, "keyword"):
        for m in need.statement.finditer(sentence):
            text = clause(sentence, m.start(), m.end())
            key = next(g for g in m.groups() if g)
            if not mem.usable(text):
                continue
            state = re.search(_STATE + r"\W+(?:\w+\W+){0,3}?" + re.escape(m.group(0).split()[0]), text) is not None
            rank = (state, chunk.date or "", -len(text))
            out.append((rank, mem.item(chunk, text, _reason(need, trigger), key)))
    out.sort(key=lambda x: x[0], reverse=True)
    return out


def select(store: Store, searcher: Any, embedder: Any, profile: Profile | None, person: str, request: str,
           policy: Policy, *, needs: Sequence[Need] | None = None, related: bool = True) -> Selection:
    """The personal details `request` needs, under `policy` (see the module docstring). `needs` overrides the
    table's triggers (the critique checks the food and health needs whatever was asked); `related=False`
    leaves out what the request names or search finds for it, keeping the needs' details only."""
    allowed = allowed_sources(store, policy)
    now, ended = current_facts(profile, person)
    others = [n for e in (profile.entities if profile else ()) if e.kind == "person"
              and norm(e.name) != norm(profile.person if profile else person) for n in (e.name, *e.aliases)]
    mem = _Memories(store, searcher, person, [f.object for f in ended] + others)
    active = [(n, m.group(0)) for n in NEEDS if (m := n.triggers.search(request))] if needs is None else \
        [(n, "") for n in needs]
    candidates: list[list[Item]] = []      # groups: one detail each, best candidate first

    for need, trigger in active:
        for pred in need.predicates:
            for f in now:
                if f.predicate == pred:
                    candidates.append([Item(present_fact(f), "fact", _reason(need, trigger), f.object,
                                            provenance(store, f.sources), f.id)])
        if need.statement is not None:
            found = _statement_candidates(mem, need, trigger)
            by_key: dict[str, list[Item]] = {}
            for _, item in found:
                by_key.setdefault(norm(item.key), []).append(item)
            candidates += list(by_key.values())

    terms = _terms(request) if related else set()
    for f in now:                      # facts the request names
        if (t := _shares(terms, f.object)) is not None:
            candidates.append([Item(present_fact(f), "fact", f"named in the request: {t!r}", f.object,
                                    provenance(store, f.sources), f.id)])
    searched = [(c, clause(s, 0, len(s))) for c, s in mem.sentences(request, 30, "hybrid")] if terms else []
    known = " ".join([request] + [f.object for f in now])
    searched = [(c, s, t) for c, s in searched if mem.usable(s) and _plain(s, known) and not _HEDGED.search(s)
                and (t := _shares(terms, s)) is not None]
    if searched:
        vectors = embedder.embed([request] + [s for _, s, _ in searched])
        cosines = vectors[1:] @ vectors[0]
        for i in np.argsort(-cosines, kind="stable")[:2]:
            c, s, t = searched[int(i)]
            if cosines[i] >= MEMORY_SIMILARITY and (key := _specific(s, request)):
                candidates.append([mem.item(c, s, f"found for {t!r}", key)])

    sel = Selection()
    seen: set[str] = set()
    for group in candidates:
        if any(norm(g.text) in seen for g in group) or any(mentions(request, g.key) for g in group):
            continue   # said already, or the request itself states it
        for g in group:
            seen.add(norm(g.text))
            ok, why = admit(g, policy, allowed)
            if ok is not None:
                if len(sel.disclosed) < policy.max_items:
                    sel.disclosed.append(ok)
                break
            sel.withheld.append((g, why))
    shown = " ".join([request] + [i.text for i in sel.disclosed]).casefold()
    unasked = [item.key for n in NEEDS if n.statement is not None and n not in [a for a, _ in active]
               for _, item in _statement_candidates(mem, n, "")]      # what else the person's words say
    private = ([f.object for f in [*now, *ended]] + others + [g.key for group in candidates for g in group]
               + unasked + list(policy.terms))
    sel.private = {w for p in private for w in re.findall(r"\w{4,}", p.casefold()) if w not in shown}
    return sel
