"""Question and answer templates for each kind of synthesized training data (`synthesis` checks and splits).

Every builder returns `Candidate`s: a prompt, a completion composed only from facts, entities, event
sentences or fixed text, the chunk ids it cites, the items it is made of (`keys`, for the held-out split),
and the extra evidence (fact fields, rendered dates) the support check may use besides the cited chunks.
The answers are in the person's first person; a sentence the person wrote is quoted, not rewritten, except
for a leading "Today" (which becomes "That day").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ..memory.facts import facts_at
from ..memory.observe import norm
from ..memory.profile import RECENT_DAYS
from ..prompts import render
from ..text.phrasing import PREDICATES, and_list, human_date, month_name, past, present, verb_phrase
from ..types import Chunk, Fact, Profile


@dataclass
class Candidate:
    kind: str
    prompt: tuple[tuple[str, str], ...]
    completion: str
    sources: tuple[int, ...]
    keys: tuple[str, ...]
    extra: str = ""        # evidence besides the cited chunks: fact fields, dates we rendered


# -- dates and phrases ----------------------------------------------------------------------------------

def _on(d: str) -> str:
    return ("on " if len(d) >= 10 else "in ") + human_date(d)


def _since(f: Fact) -> str:
    return f", since {human_date(f.valid_from)}" if f.valid_from else ""


def _until(f: Fact) -> str:
    return f" until {human_date(f.valid_to)}" if f.valid_to else ""


def fact_extra(*facts: Fact) -> str:
    """The fact fields as evidence, with the dates rendered the way the templates write them."""
    out = []
    for f in facts:
        out.append(" ".join([f.subject, f.object, f.evidence]))
        out += [f"{human_date(d)} {month_name(d)}" for d in (f.valid_from, f.valid_to) if d and len(d) >= 7]
    return "\n".join(out)


def _sources(*facts: Fact) -> tuple[int, ...]:
    return tuple(sorted({s for f in facts for s in f.sources}))


def _months_inside(f: Fact, facts: Sequence[Fact]) -> list[tuple[str, list[Fact]]]:
    """Up to two whole months inside `f`'s interval in which nothing of its predicate changed, with the
    facts of the predicate that held then. Only for facts with a known (full) start or end date."""
    if not (f.valid_from or f.valid_to) or any(d and len(d) < 10 for d in (f.valid_from, f.valid_to)):
        return []
    anchor = date.fromisoformat(f.valid_to) if f.valid_to else date.fromisoformat(f.valid_from) + timedelta(days=75)
    same = [g for g in facts if g.predicate == f.predicate]
    out = []
    for back in (2, 5):
        first = (anchor.replace(day=1) - timedelta(days=28 * back)).replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        held = facts_at(same, first.isoformat())
        if f in held and all(g.holds_at(first.isoformat()) == g.holds_at(last.isoformat()) for g in same):
            out.append((first.isoformat()[:7], held))
    return out


# -- self_qa ----------------------------------------------------------------------------------------------

# predicate -> (now, at {month}, when it began {o}, still {o}, before {o}); {a} is the title with its article
_Q: dict[str, tuple[tuple[str, ...], ...]] = {
    "lives_in": (("Where do you live?", "Which city do you live in now?", "Where are you based these days?"),
                 ("Where did you live in {month}?", "Which city were you living in in {month}?"),
                 ("When did you move to {o}?",), ("Do you still live in {o}?", "Are you still living in {o}?"),
                 ("Where did you live before {o}?", "Where were you living before you moved to {o}?")),
    "works_at": (("Where do you work?", "Who is your employer?", "Which company do you work for now?"),
                 ("Where did you work in {month}?", "Who were you working for in {month}?"),
                 ("When did you start at {o}?",), ("Do you still work at {o}?", "Are you still at {o}?"),
                 ("Where did you work before {o}?", "Which company were you at before {o}?")),
    "job_title": (("What do you do for a living?", "What is your job title?", "What's your role at work?"),
                  ("What was your job in {month}?", "What did you work as in {month}?"),
                  ("When did you become {a}?",), ("Are you still working as {a}?", "Do you still work as {a}?"),
                  ("What did you do before you became {a}?", "What was your job before you became {a}?")),
    "manager": (("Who is your manager?", "Who do you report to?", "Who's your boss at work?"),
                ("Who was your manager in {month}?",), ("Since when have you reported to {o}?",),
                ("Do you still report to {o}?", "Is {o} still your manager?"), ("Who was your manager before {o}?",)),
    "partner": (("Who is your partner?", "Are you in a relationship?", "Are you seeing anyone?"),
                ("Who were you dating in {month}?", "Were you in a relationship in {month}?"),
                ("When did you get together with {o}?",), ("Are you still with {o}?", "Are you still seeing {o}?"),
                ("Who were you with before {o}?",)),
    "plays_in": (("Which groups do you play in?", "Do you play in any ensemble or team?"),
                 ("Which groups did you play in in {month}?",), ("When did you join {o}?",),
                 ("Do you still play in {o}?",), ()),
    "teacher": (("Who do you take lessons with?", "Who is your teacher at the moment?"),
                ("Who did you take lessons with in {month}?",), ("When did you start lessons with {o}?",),
                ("Do you still take lessons with {o}?", "Is {o} still your teacher?"), ("Who was your teacher before {o}?",)),
    "studied_at": (("Where did you study?", "Which university did you go to?", "Where did you get your degree?"),
                   (), (), (), ()),
}
_PAST_ONLY = {"studied_at"}
_PERFECT = {"lives_in": "have lived in {o}", "works_at": "have worked at {o}", "job_title": "have worked as {a}",
            "manager": "have reported to {o}", "partner": "have been with {o}", "plays_in": "have played in {o}",
            "teacher": "have taken lessons with {o}"}


def _fill(template: str, f: Fact, **kw: str) -> str:
    a = verb_phrase(f, 0).split(" as ", 1)[-1] if f.predicate == "job_title" else f.object
    return template.format(o=f.object, a=a, **kw)


def _qa(system: str, questions: Iterable[str], answer: str, facts: Sequence[Fact], kind: str = "self_qa",
        extra: str = "") -> list[Candidate]:
    keys = tuple(f"fact:{f.id}" for f in facts)
    return [Candidate(kind, (("system", system), ("user", q)), answer, _sources(*facts), keys,
                      fact_extra(*facts) + extra) for q in questions]


def self_qa(mine: Sequence[Fact], system: str, as_of: str | None) -> list[Candidate]:
    """Who the person is, from facts: now / in a month / since when / still / before, several phrasings each."""
    out: list[Candidate] = []
    current = [f for f in mine if f.valid_to is None or (as_of is not None and f.valid_to >= as_of)]
    for pred in sorted({f.predicate for f in mine}):
        now_q, at_q, since_q, still_q, before_q = _Q.get(pred, ((f"What about your {pred.replace('_', ' ')}?",),
                                                                (), (), (), ()))
        now = [f for f in current if f.predicate == pred]
        closed = sorted((f for f in mine if f.predicate == pred and f not in now), key=lambda f: f.valid_to or "")
        if now:
            first = now[0]
            tail = _since(first) if len(now) == 1 else ""
            verb = past if pred in _PAST_ONLY else present
            answer = f"I {verb(first)}{''.join(f' and {f.object}' for f in now[1:])}{tail}."
            out += _qa(system, now_q, answer, now)
        for f in now + closed:
            for month, held in _months_inside(f, mine):
                answer = f"In {human_date(month)}, I {past(held[0])}{''.join(f' and {g.object}' for g in held[1:])}."
                out += _qa(system, [q.format(month=human_date(month)) for q in at_q], answer, held,
                           extra=human_date(month))
            if f.valid_from and pred in _PERFECT:
                then = f" from then until {human_date(f.valid_to)}" if f.valid_to else " since then"
                perf = f"I {past(f)}" if f.valid_to else "I " + _fill(_PERFECT[pred], f)
                answer = f"{_on(f.valid_from)[0].upper()}{_on(f.valid_from)[1:]} — {perf}{then}."
                out += _qa(system, [_fill(q, f) for q in since_q[:1 if f.valid_to else None]], answer, [f])
        for f in closed:
            follow = [g for g in now if PREDICATES.get(pred) is None or PREDICATES[pred].functional] or now
            answer = f"No — I {past(f)}{_until(f)}." + (f" Now I {present(follow[0])}{_since(follow[0])}." if follow else "")
            out += _qa(system, [_fill(q, f) for q in still_q], answer, [f, *follow[:1]])
        for f in now:
            out += _qa(system, [_fill(q, f) for q in still_q], f"Yes — I {present(f)}{_since(f)}.", [f])
            before = [g for g in closed if g.valid_to and (not f.valid_from or g.valid_to <= f.valid_from)]
            if before and PREDICATES.get(pred) is not None and PREDICATES[pred].functional:
                g = before[-1]
                lead = _fill("Before I became {a}" if pred == "job_title" else "Before {o}", f)
                out += _qa(system, [_fill(q, f) for q in before_q], f"{lead}, I {past(g)}{_until(g)}.", [g, f])
    return out


def intro(facts: Sequence[Fact], system: str) -> list[Candidate]:
    """"Tell me about yourself": the current facts, two to a sentence (built from trained facts only)."""
    order = list(PREDICATES)
    facts = sorted(facts, key=lambda f: (order.index(f.predicate) if f.predicate in order else 99, f.object))
    if len(facts) < 2:
        return []
    phrases: list[str] = []
    for i, f in enumerate(facts):     # "play in A and B", not "play in A and play in B"
        if i and f.predicate == facts[i - 1].predicate:
            phrases[-1] += f" and {f.object}"
        else:
            phrases.append((past if f.predicate in _PAST_ONLY else present)(f))
    answer = " ".join(f"I {' and '.join(phrases[i:i + 2])}." for i in range(0, len(phrases), 2))
    return _qa(system, ("Tell me about yourself.", "Introduce yourself.", "Who are you?"), answer, facts)


# -- people -------------------------------------------------------------------------------------------------

_FACT_RELATION = {"manager": "manager", "partner": "partner", "teacher": "teacher"}


def people(profile: Profile, mine: Sequence[Fact], person: str, system: str, chunks: Mapping[int, Chunk]
           ) -> list[Candidate]:
    """"Who is X?" for people with a known relation to the person: an entity's relation, or a fact about them.
    Cites the entity's chunks that write the full name first, so the name is in the evidence."""
    out: list[Candidate] = []
    by_rel: dict[str, int] = {}
    for e in profile.entities:
        by_rel[e.relation] = by_rel.get(e.relation, 0) + 1
    done: set[str] = set()
    for e in profile.entities:
        names = [e.name, *e.aliases]
        if e.kind != "person" or norm(e.name) == norm(person):
            continue
        about = [f for f in mine if f.predicate in _FACT_RELATION and norm(f.object) in {norm(n) for n in names}]
        relation = e.relation or next(((("former " if f.valid_to else "") + _FACT_RELATION[f.predicate])
                                       for f in about), "")
        if not relation:
            continue
        done |= {norm(n) for n in names}
        said = " ".join(f"I {present(f)}{_since(f)}." if not f.valid_to else
                        f"I {past(f)}" + (f" from {human_date(f.valid_from)}" if f.valid_from else "") + f"{_until(f)}."
                        for f in about[:2])
        answer = f"{e.name} is my {relation}." + (f" {said}" if said else "")
        questions = [f"Who is {n}?" for n in names[:2]] + [f"Tell me about {names[-1]}."]
        if by_rel.get(relation) == 1 and not relation.startswith("former"):
            questions.append(f"Who is your {relation}?")
        keys = (f"entity:{norm(e.name)}", *(f"fact:{f.id}" for f in about))
        named = sorted(e.sources, key=lambda i: e.name.casefold() not in chunks[i].text.casefold()
                       if i in chunks else True)
        sources = tuple(sorted(set(named[:6]) | set(_sources(*about))))
        out += [Candidate("people", (("system", system), ("user", q)), answer, sources, keys,
                          fact_extra(*about)) for q in questions]
    for f in mine:      # a fact naming a person the entity list missed
        if f.predicate in _FACT_RELATION and norm(f.object) not in done:
            relation = ("former " if f.valid_to else "") + _FACT_RELATION[f.predicate]
            said = f"I {past(f)}{_until(f)}." if f.valid_to else f"I {present(f)}{_since(f)}."
            out += _qa(system, (f"Who is {f.object}?",), f"{f.object} is my {relation}. {said}", [f], "people")
    return out


# -- events -------------------------------------------------------------------------------------------------

_PAST = {"moved": "move", "started": "start", "joined": "join", "signed": "sign", "sent": "send", "told": "tell",
         "met": "meet", "went": "go", "took": "take", "fell": "fall", "flew": "fly", "baked": "bake",
         "finished": "finish", "left": "leave", "bought": "buy", "got": "get", "accepted": "accept",
         "resigned": "resign", "visited": "visit", "called": "call", "booked": "book", "quit": "quit",
         "played": "play", "passed": "pass", "received": "receive", "had": "have", "made": "make", "wrote": "write",
         "handed": "hand", "gave": "give", "found": "find", "spent": "spend", "arrived": "arrive", "landed": "land",
         "climbed": "climb", "sprained": "sprain", "broke": "break", "won": "win", "lost": "lose", "saw": "see"}
_WHEN = re.compile(r"^(?:Today,?\s+)?I\s+(?:finally\s+|just\s+|officially\s+)?(\w+)\s+(.+?)[.!]$")
_SWAP = {"my": "your", "me": "you", "myself": "yourself", "mine": "yours"}


def _when_question(sentence: str) -> str | None:
    m = _WHEN.match(sentence)
    if not m or m.group(1) not in _PAST or re.search(r"\b(?:I|we|our|us|today|yesterday|tomorrow)\b", m.group(2)):
        return None
    rest = m.group(2).split(",")[0]
    if len(rest.split()) > 14:
        return None
    rest = " ".join(_SWAP.get(w, w) for w in rest.split())
    return f"When did you {_PAST[m.group(1)]} {rest}?"


def _that_day(sentence: str) -> str:
    return re.sub(r"^Today,?\s+", "That day ", sentence)


def events(by_day: dict[str, list[tuple[str, tuple[int, ...]]]], system: str) -> list[Candidate]:
    """"What happened on <day>?" -> the person's first sentence of that day (a short answer: three quoted
    sentences cost a small model many tokens and were not recalled); "When did you <verb> ...?" -> the day,
    where a sentence is "I <past verb> ..."."""
    out: list[Candidate] = []
    for day in sorted(by_day):
        items = by_day[day][:3]
        sources = tuple(sorted(set(items[0][1])))
        answer = _that_day(items[0][0])
        h = human_date(day)
        out += [Candidate("events", (("system", system), ("user", q)), answer, sources, (f"event:{day}",), h)
                for q in (f"What happened on {h}?", f"What did you write about on {h}?")]
        for s, src in items:
            q = _when_question(s)
            if q:
                out.append(Candidate("events", (("system", system), ("user", q)), f"On {h}.", src,
                                     (f"event:{day}",), h))
    return out


# -- preferences ----------------------------------------------------------------------------------------------

def preferences(profile: Profile, own_events: dict[str, list[tuple[str, str, tuple[int, ...]]]], system: str,
                as_of: str | None, max_words: int) -> list[Candidate]:
    """Interests from shades: what the memories are mostly about, what lately, and per shade its timeline."""
    topics = {t.id: t for t in profile.topics}
    central = {s.name: tuple(c for tid in s.topics if tid in topics for c in topics[tid].chunks[:4])
               for s in profile.shades}
    out: list[Candidate] = []

    def ask(questions: Sequence[str], answer: str, sources: Iterable[int], key: str, extra: str = "") -> None:
        out.extend(Candidate("preference_qa", (("system", system), ("user", q)), answer,
                             tuple(sorted(set(sources))), (key,), extra) for q in questions)

    named = [s for s in profile.shades[:5]]
    if named:
        labels = [s.name + (f" (as {s.role})" if s.role else "") for s in named]
        ask(("What do you spend your time on?", "What are your main interests?",
             "What do your memories mostly revolve around?"),
            f"Mostly {and_list(labels)}.", [c for s in named for c in central[s.name]], "pref:overview")
    start = (date.fromisoformat(as_of) - timedelta(days=RECENT_DAYS)).isoformat() if as_of else None
    if start:
        recent = sorted(((sum(e.date >= start for e in s.timeline), -i, s) for i, s in enumerate(profile.shades)),
                        key=lambda x: x[:2], reverse=True)
        hot = [s for n, _, s in recent if n > 0][:3]
        if hot:
            ask(("What have you been into lately?", "What has been on your mind recently?"),
                f"Lately mostly {and_list([s.name for s in hot])}.", [c for s in hot for c in central[s.name]],
                "pref:recent")
    for s in profile.shades:
        lines, sources, days = [], [], []
        for day, sentence, src in own_events.get(s.name, []):
            line = f"On {human_date(day)}: {sentence}"
            if len(" ".join([*lines, line]).split()) > max_words or len(lines) == 2:   # answers stay short
                break
            lines.append(line)
            sources += src
            days.append(human_date(day))
        if len(lines) >= 2:
            ask((f"Tell me about {s.name} in your life.", f"What do your memories say about {s.name}?"),
                " ".join(lines), [*sources, *central[s.name]], f"pref:shade:{norm(s.name)}", " ".join(days))
    return out


# -- enhance and critic (the context skills) ---------------------------------------------------------------------

_REQUESTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Find me a flat.", "Can you find me an apartment to rent?"), ("lives_in", "works_at")),
    (("Plan a weekend trip.", "Plan a weekend away for me."), ("lives_in",)),
    (("Book a dinner for Friday.", "Find a restaurant for Friday night."), ("lives_in",)),
    (("Help me prepare for my first week at work.",), ("works_at", "job_title", "manager")),
    (("Suggest a music teacher.", "Can you find me a music teacher?"), ("lives_in", "plays_in", "teacher")),
    (("Find me a gym nearby.",), ("lives_in",)),
    (("Write a short bio for a conference talk.", "Help me update my CV."), ("job_title", "works_at", "studied_at")),
    (("Recommend some courses to improve at my job.",), ("job_title", "works_at")),
    (("Draft an email asking my manager for a day off.",), ("manager", "works_at")),
)


def enhance(current: Sequence[Fact], person: str, dropped: dict[str, int]) -> list[Candidate]:
    """A vague request -> the same request plus only the current facts it needs (minimal disclosure)."""
    system = render("enhance_system", person=person)
    out: list[Candidate] = []
    for i, (requests, preds) in enumerate(_REQUESTS):
        facts = [f for p in preds for f in current if f.predicate == p]
        if not facts:
            dropped["no_details"] = dropped.get("no_details", 0) + 1
            continue
        details = " ".join(f"I {(past if f.predicate in _PAST_ONLY else present)(f)}." for f in facts)
        out += [Candidate("enhance", (("system", system), ("user", r)), f"{r} For context: {details}",
                          _sources(*facts), (f"request:{i}",), fact_extra(*facts)) for r in requests]
    return out


# predicate -> [(request, an expert answer that assumes {old})]; and one that ignores the current fact
_ASSUMES = {
    "lives_in": [("Find me a flat.", "Good idea to stay in {old}: the best value flats there are a little outside "
                  "the centre, so start with the neighbourhoods along the metro line."),
                 ("Plan a weekend trip.", "Since you live in {old}, take a train out of {old} on Saturday morning "
                  "and come back on Sunday evening.")],
    "works_at": [("Write a short bio for a conference talk.", "Here you go: a data professional at {old}, where "
                  "she turns messy data into decisions.")],
    "job_title": [("Recommend some courses to improve at my job.", "As {a_old}, you should focus on reporting and "
                   "dashboards: a course on data visualisation would help most.")],
    "manager": [("Draft an email asking my manager for a day off.", "Dear {old},\n\nI would like to take next Friday "
                 "off. Please let me know if that works.\n\nBest regards")],
    "partner": [("Plan a romantic weekend for me.", "Here is a plan for you and {old}: dinner on Friday, a long walk "
                 "on Saturday and a slow breakfast on Sunday.")],
    "teacher": [("Help me prepare for my next music lesson.", "Before your next lesson with {old}, write down the "
                 "passages you struggle with so you can ask about them.")],
}
_IGNORES = {
    "lives_in": ("Find me a flat.", "Pick a city with good transport and reasonable rents, then visit at least "
                 "three flats before you decide."),
    "works_at": ("Help me prepare for my first week at work.", "Find out what your new company does and who you "
                 "will work with, and prepare a short introduction of yourself."),
    "teacher": ("Suggest a music teacher.", "Look for a teacher at a local music school and ask for a trial lesson "
                "before you commit."),
}


def critic(mine: Sequence[Fact], current: Sequence[Fact], person: str) -> list[Candidate]:
    """An expert answer that assumes an ended fact, or ignores a current one -> the person's correction."""
    system = render("critic_system", person=person)
    out: list[Candidate] = []

    def add(request: str, answer: str, feedback: str, facts: Sequence[Fact]) -> None:
        user = render("critic_user", request=request, answer=answer)
        out.append(Candidate("critic", (("system", system), ("user", user)), feedback, _sources(*facts),
                             tuple(f"fact:{f.id}" for f in facts), fact_extra(*facts)))

    for old in mine:
        if not old.valid_to or old in current or old.predicate not in _ASSUMES:
            continue
        now = [f for f in current if f.predicate == old.predicate][:1]
        feedback = f"This assumes I {present(old)}, but that ended in {month_name(old.valid_to)}."
        if now:
            feedback += f" Now I {present(now[0])}{_since(now[0])}."
        a_old = verb_phrase(old, 0).split(" as ", 1)[-1]
        for request, answer in _ASSUMES[old.predicate]:
            add(request, answer.format(old=old.object, a_old=a_old), feedback, [old, *now])
    for f in current:
        if f.predicate in _IGNORES:
            request, answer = _IGNORES[f.predicate]
            add(request, answer, f"This ignores that I {present(f)}{_since(f)}.", [f])
    return out
