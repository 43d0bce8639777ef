"""Layer-1 text: topic names and summaries, shades with timelines, the biography and the status.

The structure is always ours; the teacher model only fills short slots, and everything it writes is
checked against the memories it was shown (`grounding`). When a slot cannot be filled well — the embedded
135M model often cannot — a deterministic fallback fills it instead (keywords for names, the most central
sentence for summaries, templates over dated facts for the biography and status), and the fallback is
counted in the build report. A teacher that returns malformed output falls back; a teacher that cannot
be reached (`BackendError`) is an error, so a build never quietly degrades because a server was down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ..backends.chat import ChatModel
from ..prompts import literal, render
from ..structured import Field
from ..text.phrasing import PREDICATES, and_list, human_date, verb_phrase
from ..types import Chunk, Fact, Shade, ShadeEvent, Status, Topic
from .slots import Slots, ask, copied_share, label_problem, sentence_case, text_problem

__all__ = ["Slots", "name_topic", "describe_shade", "timeline", "biography", "status", "status_parts",
           "StatusParts", "narrate_status",
           "best_sentence", "RECENT_DAYS"]

log = logging.getLogger(__name__)

RECENT_DAYS = 90          # "recently" = the last 90 days before the newest memory
MAX_EVENTS = 12
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKUP = re.compile(r"^[#>*\-\s\[\]x]+|\*\*|__|`")

_ORDER = list(PREDICATES)


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _clean(s: str) -> str:
    return " ".join(_MARKUP.sub("", s).split())


def best_sentence(text: str, keywords: Sequence[str], max_words: int = 30) -> str:
    """The sentence of `text` with the most keywords (earliest on ties), cleaned and cut to `max_words`."""
    sents = [_clean(s) for s in _SENT.split(text)]
    sents = [s for s in sents if len(s.split()) >= 3] or [_clean(text)]
    kw = {k.casefold() for k in keywords}
    best = max(sents, key=lambda s: (sum(w.strip(".,;:!?()\"'").casefold() in kw for w in s.split()),
                                     -sents.index(s)))
    words = best.split()
    return " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")


def _samples(chunks: Sequence[Chunk], n: int = 4, words: int = 50) -> str:
    """What a slot is written from: the most central notes first, each dated where its date is known."""
    return "\n".join(f"- {'(' + c.date[:10] + ') ' if c.date else ''}{' '.join(_clean(c.text).split()[:words])}"
                      for c in chunks[:n])


def _boiler(*prompts: str, fields: Sequence[Field] = ()) -> str:
    """The fixed instruction text a model was given (a value that repeats it says nothing)."""
    return "\n".join([literal(p) for p in prompts] + [f.prompt for f in fields])


def _evidence(person: str, shown: str, keywords: Sequence[str], members: Sequence[Chunk]) -> str:
    return "\n".join([person, shown, " ".join(keywords), *(c.text for c in members)])


def _checked(slots: Slots, kind: str, model: ChatModel | None, value: str, problem: str) -> bool:
    """Count the slot; log why a teacher's value was not kept."""
    if problem and model is not None:
        log.debug("%s from %s not kept (%s): %r", kind, model.name, problem, value)
    return slots.take(not problem, kind)


def name_topic(model: ChatModel | None, person: str, keywords: Sequence[str], central: Sequence[Chunk],
               slots: Slots, *, prose: bool = False, members: Sequence[Chunk] = ()) -> tuple[str, str]:
    """(name, one-sentence summary) of a cluster, from the teacher if grounded, else from keywords/text.
    The teacher is shown the `central` chunks; what it writes is checked against all the topic's `members`."""
    samples = _samples(central)
    evidence = _evidence(person, samples, keywords, members or central)
    fields = [Field("name", "Topic, in two to four words:", max_words=6),
              Field("summary", "What the notes are about, in one sentence:", max_words=30, required=False,
                    starts=person)]
    got = ask(model, render("layer1_system", name=person),
              render("topic", name=person, keywords=", ".join(keywords), samples=samples), fields, as_json=prose)
    boiler = _boiler("layer1_system", "topic", fields=fields)
    name = got.get("name", "").strip().rstrip(".")
    if not _checked(slots, "topic name", model, name,
                    label_problem(name, evidence, person=person, max_words=6, boiler=boiler)):
        name = _upper_first(" & ".join(keywords[:2])) if keywords else "Miscellaneous"
    else:
        name = _upper_first(sentence_case(name, evidence))
    summary = got.get("summary", "").strip()
    if not _checked(slots, "topic summary", model, summary,
                    text_problem(summary, evidence, min_overlap=0.5, boiler=boiler, max_words=40)):
        summary = best_sentence(central[0].text, keywords) if central else ""
    return name, summary


def describe_shade(model: ChatModel | None, person: str, topic: Topic, central: Sequence[Chunk],
                   slots: Slots, *, prose: bool = False, members: Sequence[Chunk] = ()) -> tuple[str, str]:
    """(role, description) of the person in a shade; role "" when nothing grounded was found.
    The teacher is shown the `central` chunks; what it writes is checked against all the topic's `members`."""
    samples = _samples(central)
    evidence = _evidence(person, f"{topic.name}\n{topic.summary}\n{samples}", topic.keywords, members or central)
    fields = [Field("role", f"{person}'s role in this, in one to three words:", max_words=4, required=False),
              Field("description", f"What this is for {person}, in one sentence:", max_words=40,
                    required=False, starts=person)]
    got = ask(model, render("layer1_system", name=person),
              render("shade", name=person, topic=topic.name, summary=topic.summary,
                     keywords=", ".join(topic.keywords), samples=samples), fields, as_json=prose)
    boiler = _boiler("layer1_system", "shade", fields=fields)
    role = got.get("role", "").strip().rstrip(".")
    problem = label_problem(role, evidence, person=person, max_words=4, boiler=boiler)  # "senior flood risk engineer"
    if not problem and person.casefold() in role.casefold():
        problem = "names the person"
    if not problem and role and set(role.casefold().split()) <= set(topic.name.casefold().split()):
        problem = "words of the shade's name, not a role"     # 'Japan trip' -> 'trip'; 'sourdough baker' is one
    if not _checked(slots, "shade role", model, role, problem):
        role = ""
    else:
        role = sentence_case(role, evidence, first=False)
    desc = got.get("description", "").strip()
    problem = text_problem(desc, evidence, min_overlap=0.5, boiler=boiler, max_words=60)
    if not _checked(slots, "shade description", model, desc, problem):
        span = f" from {topic.first_date} to {topic.last_date}" if topic.first_date else ""
        desc = f"{len(topic.chunks)} memories{span} about {', '.join(topic.keywords[:4])}. {topic.summary}".strip()
    return role, desc


def timeline(members: Sequence[Chunk], keywords: Sequence[str]) -> tuple[ShadeEvent, ...]:
    """One event per dated day among `members` (ordered by centrality): its most telling sentence, with
    the chunks of that day as sources. At most MAX_EVENTS, spread over time (first and last kept)."""
    by_day: dict[str, list[Chunk]] = {}
    for c in members:
        if c.date:
            by_day.setdefault(c.date[:10], []).append(c)
    days = sorted(by_day)
    if len(days) > MAX_EVENTS:
        step = (len(days) - 1) / (MAX_EVENTS - 1)
        days = [days[round(i * step)] for i in range(MAX_EVENTS)]
    return tuple(ShadeEvent(d, best_sentence(by_day[d][0].text, keywords), tuple(c.id for c in by_day[d][:3]))
                 for d in days)


def make_shade(topic: Topic, role: str, description: str, members: Sequence[Chunk]) -> Shade:
    return Shade(name=topic.name, role=role, description=description, topics=(topic.id,),
                 timeline=timeline(members, topic.keywords))


# -- biography ----------------------------------------------------------------------------------------------

def _is_current(f: Fact, as_of: str | None) -> bool:
    return f.valid_to is None or (as_of is not None and f.valid_to >= as_of)


def _key(f: Fact) -> tuple:
    return (_ORDER.index(f.predicate) if f.predicate in _ORDER else len(_ORDER), f.valid_from or "")


def _phrases(facts: Sequence[Fact], form: int) -> list[str]:
    """One phrase per predicate: "plays in A and B" rather than "plays in A and plays in B"."""
    by_pred: dict[str, list[Fact]] = {}
    for f in sorted(facts, key=_key):
        by_pred.setdefault(f.predicate, []).append(f)
    out = []
    for group in by_pred.values():
        first = verb_phrase(group[0], form)
        rest = [f.object for f in group[1:]]
        out.append(first + "".join(f" and {o}" for o in rest))
    return out


def _sentences(subject: str, facts: Sequence[Fact], form: int) -> list[str]:
    phrases = _phrases(facts, form)
    return [f"{subject} {' and '.join(phrases[i:i + 2])}." for i in range(0, len(phrases), 2)]


def _quote(about: str, n: int = 2) -> str:
    sents = [s for s in _SENT.split(" ".join(about.split())) if s]
    return " ".join(sents[:n])


def biography_template(person: str, facts: Sequence[Fact], shades: Sequence[Shade], about: str,
                       as_of: str | None) -> tuple[str, str]:
    mine = [f for f in facts if f.subject.casefold() == person.casefold() and f.predicate in PREDICATES]
    now = [f for f in mine if _is_current(f, as_of)]
    before = [f for f in mine if not _is_current(f, as_of)]
    third = _sentences(person, now, 0)
    second = _sentences("You", now, 1)
    if before:
        past = [verb_phrase(f, 2) + (f" until {f.valid_to}" if f.valid_to else "") for f in sorted(before, key=_key)]
        third.append(f"Before that, {person} {and_list(past)}.")
        second.append(f"Before that, you {and_list([re.sub(r'^was ', 'were ', p) for p in past])}.")
    named = [s.name + (f" (as a {s.role})" if s.role else "") for s in shades[:5]]
    if named:
        listed = "; ".join(named)
        third.append(f"{person}'s memories are mostly about {listed}.")
        second.append(f"Your memories are mostly about {listed}.")
    if about.strip():
        q = _quote(about)
        third.append(f"In {person}'s own words: “{q}”")
        second.append(f"In your own words: “{q}”")
    if not third:
        third = [f"There is not enough in {person}'s memories yet to say much about them."]
        second = ["There is not enough in your memories yet to say much about you."]
    return " ".join(third), " ".join(second)


def _voice(text: str, own_words: str, person: str) -> str:
    """Why `text` is not the person's story told by someone else: mostly their own text word for word, or
    (second) no "you" (`text_problem` already refused the first person)."""
    if copied_share(text, own_words, 6) > 0.6:
        return "mostly copies the person's own words"
    if person == "second" and not re.search(r"\byour?\b", text, re.I):
        return "not in the second person"
    return ""


def biography(model: ChatModel | None, person: str, facts: Sequence[Fact], shades: Sequence[Shade], about: str,
              as_of: str | None, slots: Slots, *, prose: bool = False) -> tuple[str, str]:
    """(third person, second person). With `prose`, the teacher writes the first from the template's content
    (dated facts, shades, the person's own words), then rewrites it in the second person; each is kept only
    if every name and number in it occurs in that content, else the template's text takes its place (both,
    when the first is not kept)."""
    third, second = biography_template(person, facts, shades, about, as_of)
    if not (prose and model is not None):
        slots.take(False, "biography")
        slots.take(False, "biography to you")
        return third, second
    mine = sorted((f for f in facts if f.subject.casefold() == person.casefold()), key=_key)
    current = "\n".join(f"- {person} {verb_phrase(f, 0)}" + (f" (since {human_date(f.valid_from)})" if f.valid_from else "")
                        for f in mine if _is_current(f, as_of)) or "- (none)"
    earlier = "\n".join(f"- {person} {verb_phrase(f, 2)}" + (f" until {human_date(f.valid_to)}" if f.valid_to else "")
                        for f in mine if not _is_current(f, as_of)) or "- (none)"
    lines = "\n".join(f"- {s.name}" + (f" ({person} as {s.role})" if s.role else "") + f": {s.description}"
                      for s in shades[:6]) or "- (none)"
    about_block = f"\nWhat {person} wrote about themselves, in the first person:\n{about.strip()}\n" if about.strip() else ""
    evidence = f"{person}\n{current}\n{earlier}\n{lines}\n{about_block}"
    system = render("layer1_system", name=person)
    got = ask(model, system, render("biography", name=person, current=current, earlier=earlier, shades=lines,
                                    about=about_block), [Field("biography", "Biography:", max_words=120)], as_json=True)
    boiler = _boiler("layer1_system", "biography", "biography_second")
    text = got.get("biography", "")
    problem = text_problem(text, evidence, min_overlap=0.7, boiler=boiler, min_words=15, max_words=220)
    if not problem and person.split()[0].casefold() not in text.casefold():
        problem = "does not name the person"
    problem = problem or _voice(text, about, "third")
    if not _checked(slots, "biography", model, text, problem):
        slots.take(False, "biography to you")
        return third, second
    third = text
    rewrite = ask(model, system, render("biography_second", name=person, text=text),
                  [Field("to_you", "Rewritten:", max_words=130)], as_json=True).get("to_you", "")
    problem = text_problem(rewrite, evidence + "\n" + text, min_overlap=0.7, boiler=boiler, min_words=15,
                           max_words=220)
    problem = problem or _voice(rewrite, about, "second")
    if _checked(slots, "biography to you", model, rewrite, problem):
        second = rewrite
    return third, second


# -- status ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusParts:
    """What the status is made of: facts that began, hold on, or ended around `as_of`, the topics with the
    most recent (`hot`) or only earlier (`cold`) memories, and the shade events since `start`."""

    as_of: str
    start: str
    began: tuple[Fact, ...]
    ongoing: tuple[Fact, ...]
    ended: tuple[Fact, ...]
    hot: tuple[str, ...]
    cold: tuple[str, ...]
    events: tuple[ShadeEvent, ...]


def status_parts(person: str, facts: Sequence[Fact], shades: Sequence[Shade], topics: Sequence[Topic],
                 chunk_dates: dict[int, str], as_of: str | None) -> StatusParts | None:
    """The parts of the status (the last RECENT_DAYS before `as_of` vs earlier); None without dated memories."""
    if as_of is None:
        return None
    start = (date.fromisoformat(as_of) - timedelta(days=RECENT_DAYS)).isoformat()
    mine = [f for f in facts if f.subject.casefold() == person.casefold() and f.predicate in PREDICATES]
    began = sorted((f for f in mine if f.valid_from and f.valid_from >= start and _is_current(f, as_of)), key=_key)
    ongoing = [f for f in mine if _is_current(f, as_of) and f not in began and PREDICATES[f.predicate].functional]
    ended = sorted((f for f in mine if not _is_current(f, as_of)), key=lambda f: f.valid_to or "")

    def activity(t: Topic, recent: bool) -> int:
        return sum(1 for c in t.chunks if c in chunk_dates and (chunk_dates[c] >= start) == recent)

    hot = [t.name for t in sorted(topics, key=lambda t: -activity(t, True)) if activity(t, True) >= 2][:4]
    cold = [t.name for t in sorted(topics, key=lambda t: -activity(t, False))
            if activity(t, False) >= 2 and activity(t, True) == 0][:4]
    events = sorted((e for s in shades for e in s.timeline if e.date >= start), key=lambda e: e.date)
    return StatusParts(as_of, start, tuple(began), tuple(sorted(ongoing, key=_key)), tuple(ended), tuple(hot),
                       tuple(cold), tuple(events))


def status(person: str, facts: Sequence[Fact], shades: Sequence[Shade], topics: Sequence[Topic],
           chunk_dates: dict[int, str], as_of: str | None) -> Status:
    """What is going on recently (the last RECENT_DAYS before `as_of`) vs earlier, from dated memories."""
    parts = status_parts(person, facts, shades, topics, chunk_dates, as_of)
    if parts is None:
        return Status(None, f"No dated memories yet, so nothing can be said about {person}'s recent life.", "")
    recent = [f"Since {f.valid_from}, {person} {verb_phrase(f, 0)}." for f in parts.began]
    if parts.ongoing:
        recent.append(f"{person} still {and_list([verb_phrase(f, 0) for f in parts.ongoing])}.")
    if parts.hot:
        recent.append(f"Most of the recent memories (since {parts.start}) are about {'; '.join(parts.hot)}.")
    recent += [f"On {e.date}: {e.text}" for e in parts.events[-2:]]
    earlier = [f"{person} {verb_phrase(f, 2)}" + (f" from {f.valid_from}" if f.valid_from else "")
               + f" until {f.valid_to}." for f in parts.ended]
    if parts.cold:
        earlier.append(f"Earlier memories are about {'; '.join(parts.cold)}.")
    return Status(as_of, " ".join(recent) or f"Nothing dated in the last {RECENT_DAYS} days.",
                  " ".join(earlier) or "Nothing earlier stands out.")


def narrate_status(model: ChatModel | None, person: str, parts: StatusParts | None, template: Status,
                   slots: Slots, *, prose: bool = False) -> Status:
    """The status told by the teacher (with `prose`) from its `parts`, in words rather than the `template`'s
    sentences: recent and earlier in one request each, from their own list only (shown both, a small model
    moved ended facts into the present), and each kept only if every name and number in it occurs in its
    list and it is more than the list copied, else the template's text stays."""
    if not (prose and model is not None and parts is not None):
        slots.take(False, "status recent")
        slots.take(False, "status earlier")
        return template

    def since(f: Fact) -> str:
        return f" (since {human_date(f.valid_from)})" if f.valid_from else ""

    recent = [f"- started: {person} {verb_phrase(f, 0)}{since(f)}" for f in parts.began]
    recent += [f"- still: {person} {verb_phrase(f, 0)}{since(f)}" for f in parts.ongoing]
    recent += [f"- many notes about: {name}" for name in parts.hot]
    recent += [f"- {human_date(e.date)}: {e.text}" for e in parts.events[-6:]]
    earlier = [f"- ended: {person} {verb_phrase(f, 2)}" + (f" from {human_date(f.valid_from)}" if f.valid_from else "")
               + f" until {human_date(f.valid_to or '')}" for f in parts.ended]
    earlier += [f"- many notes about: {name}" for name in parts.cold]
    out = {"recent": template.recent, "earlier": template.earlier}
    system = render("layer1_system", name=person)
    for name, listed, words in (("recent", recent, 70), ("earlier", earlier, 50)):
        listing = "\n".join(listed)
        prompt = f"status_{name}"
        dates = {"as_of": human_date(parts.as_of)} if name == "recent" else {}
        value = ask(model, system, render(prompt, name=person, start=human_date(parts.start), listed=listing, **dates),
                    [Field(name, f"{name.capitalize()}:", max_words=words)], as_json=True).get(name, "") if listed else ""
        evidence = f"{person}\n{parts.as_of}\n{parts.start}\n{listing}"
        problem = text_problem(value, evidence, min_overlap=0.7, boiler=_boiler("layer1_system", prompt), min_words=6,
                               max_words=100)
        if not problem and copied_share(value, listing, 8) > 0.8:
            problem = "copies its list"
        if _checked(slots, f"status {name}", model, value, problem):
            out[name] = value
    return Status(template.as_of, out["recent"], out["earlier"])
