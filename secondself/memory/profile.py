"""Layer-1 text: topic names and summaries, shades with timelines, the biography and the status.

The structure is always ours; the teacher model only fills short slots, and everything it writes is
checked against the memories it was shown (`grounding`). When a slot cannot be filled well — the embedded
135M model often cannot — a deterministic fallback fills it instead (keywords for names, the most central
sentence for summaries, templates over dated facts for the biography and status), and the fallback is
counted in the build report. A teacher that returns malformed output falls back; a teacher that cannot
be reached (`BackendError`) is an error, so a build never quietly degrades because a server was down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ..backends.chat import ChatModel
from ..errors import StructuredOutputError
from ..prompts import render
from ..structured import Field, structured
from ..text.grounding import content_overlap, unsupported_specifics
from ..text.phrasing import PREDICATES, and_list, verb_phrase
from ..types import Chunk, Fact, Shade, ShadeEvent, Status, Topic

__all__ = ["Slots", "name_topic", "describe_shade", "timeline", "biography", "status", "best_sentence", "RECENT_DAYS"]

RECENT_DAYS = 90          # "recently" = the last 90 days before the newest memory
MAX_EVENTS = 12
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKUP = re.compile(r"^[#>*\-\s\[\]x]+|\*\*|__|`")

_ORDER = list(PREDICATES)


@dataclass
class Slots:
    """Counts of teacher-filled slots vs deterministic fallbacks, for the build report."""

    teacher: int = 0
    fallback: int = 0

    def take(self, ok: bool) -> bool:
        if ok:
            self.teacher += 1
        else:
            self.fallback += 1
        return ok


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


def _samples(chunks: Sequence[Chunk], n: int = 3, words: int = 60) -> str:
    return "\n".join(f"- {' '.join(c.text.split()[:words])}" for c in chunks[:n])


def _ok_text(value: object, evidence: str, min_overlap: float, boiler: str = "") -> bool:
    """Grounded prose: enough of its words occur in the evidence, no invented names or numbers, and it
    neither copies the instructions (small models echo "in one sentence") nor loops."""
    return (isinstance(value, str) and len(value.split()) >= 4 and not value.lower().startswith("fake")
            and content_overlap(value, evidence) >= min_overlap and not unsupported_specifics(value, evidence)
            and not _copied(value, boiler, 3) and not _repetitive(value))


_END_WORDS = {"a", "an", "the", "of", "is", "for", "to", "and", "in", "on", "with", "about", "my", "this", "that"}


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _copied(value: str, boiler: str, n: int) -> bool:
    """Does `value` repeat any n words in a row from the instructions it was given?"""
    if not boiler:
        return False
    b, v = _words(boiler), _words(value)
    grams = {tuple(b[i:i + n]) for i in range(len(b) - n + 1)}
    return any(tuple(v[i:i + n]) in grams for i in range(len(v) - n + 1))


def _repetitive(value: str) -> bool:
    v = _words(value)
    grams = [tuple(v[i:i + 2]) for i in range(len(v) - 1)]
    return len(grams) != len(set(grams))


def _ok_label(value: object, keywords: Sequence[str], boiler: str, max_words: int) -> bool:
    """A short label (topic name, role): a few words, no punctuation or digits, not ending mid-phrase,
    sharing a stem with the cluster's keywords, and not copied from the instructions."""
    if not isinstance(value, str) or value.lower().startswith("fake"):
        return False
    words = _words(value)
    stems = {k.casefold()[:4] for k in keywords}
    return (1 <= len(words) <= max_words and not re.search(r"[:;,\d()\[\]]", value)
            and words[-1] not in _END_WORDS and words[0] not in {"this", "the", "these", "it"}
            and any(w[:4] in stems for w in words if len(w) >= 4)
            and not _copied(value, boiler, 2))


def _fill(model: ChatModel | None, instructions: str, fields: list[Field], prose: bool) -> dict:
    if model is None:
        return {}
    try:
        return structured(model, instructions, fields, prefer_json=prose)
    except StructuredOutputError:
        return {}        # malformed output: the caller's deterministic fallback takes over


def name_topic(model: ChatModel | None, person: str, keywords: Sequence[str], central: Sequence[Chunk],
               slots: Slots, *, prose: bool = False) -> tuple[str, str]:
    """(name, one-sentence summary) of a cluster, from the teacher if grounded, else from keywords/text."""
    evidence = " ".join(c.text for c in central) + " " + " ".join(keywords)
    instructions = render("topic", name=person, keywords=", ".join(keywords), samples=_samples(central))
    fields = [Field("name", "Topic, in two to four words:", max_words=6),
              Field("summary", "What the notes are about, in one sentence:", max_words=40, required=False)]
    boiler = render("topic", name=person, keywords="", samples="") + " ".join(f.prompt for f in fields)
    got = _fill(model, instructions, fields, prose)
    name = got.get("name", "")
    if not slots.take(_ok_label(name, keywords, boiler, 6)):
        name = _upper_first(" & ".join(keywords[:2])) if keywords else "Miscellaneous"
    summary = got.get("summary", "")
    if not slots.take(_ok_text(summary, evidence, 0.6, boiler)):
        summary = best_sentence(central[0].text, keywords) if central else ""
    return name.strip().rstrip("."), summary.strip()


def describe_shade(model: ChatModel | None, person: str, topic: Topic, central: Sequence[Chunk],
                   slots: Slots, *, prose: bool = False) -> tuple[str, str]:
    """(role, description) of the person in a shade; role "" when nothing grounded was found."""
    evidence = " ".join(c.text for c in central) + " " + topic.summary
    instructions = render("shade", name=person, topic=topic.name, summary=topic.summary,
                          keywords=", ".join(topic.keywords), samples=_samples(central))
    fields = [Field("role", f"{person}'s role in this, in one to three words (for example: cellist, climber, "
                            "data engineer, sister):", max_words=4, required=False),
              Field("description", f"What this is for {person}, in one sentence:", max_words=40, required=False)]
    boiler = render("shade", name=person, topic="", summary="", keywords="", samples="") + " ".join(
        f.prompt for f in fields)
    got = _fill(model, instructions, fields, prose)
    role = got.get("role", "").strip().rstrip(".")
    # the examples in the prompt are allowed as answers only when the topic's own words support them
    if not slots.take(_ok_label(role, topic.keywords, boiler.replace("cellist, climber, data engineer, sister", ""),
                                3) and person.casefold() not in role.casefold()):
        role = ""
    desc = got.get("description", "")
    if not slots.take(_ok_text(desc, evidence, 0.6, boiler)):
        span = f" from {topic.first_date} to {topic.last_date}" if topic.first_date else ""
        desc = f"{len(topic.chunks)} memories{span} about {', '.join(topic.keywords[:4])}. {topic.summary}".strip()
    return role, desc.strip()


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


def biography(model: ChatModel | None, person: str, facts: Sequence[Fact], shades: Sequence[Shade], about: str,
              as_of: str | None, slots: Slots, *, prose: bool = False) -> tuple[str, str]:
    """(third person, second person). With `prose`, the teacher writes both from the template's content,
    and its text is kept only if every name and number in it occurs in that content."""
    third, second = biography_template(person, facts, shades, about, as_of)
    if not (prose and model is not None):
        return third, second
    mine = [f for f in facts if f.subject.casefold() == person.casefold()]
    current = "\n".join(f"- {person} {verb_phrase(f, 0)}" for f in mine if _is_current(f, as_of)) or "- (none)"
    earlier = "\n".join(f"- {person} {verb_phrase(f, 2)} until {f.valid_to}" for f in mine
                        if not _is_current(f, as_of)) or "- (none)"
    lines = "\n".join(f"- {s.name}" + (f": {s.role}" if s.role else "") + f" — {s.description}" for s in shades[:6])
    about_block = f"\nIn {person}'s own words:\n{about.strip()}\n" if about.strip() else ""
    prompt = render("biography", name=person, current=current, earlier=earlier, shades=lines or "- (none)",
                    about=about_block)
    evidence = prompt
    # prose goes through the structured-output helper too (JSON for strong models, else one line)
    text = _fill(model, prompt, [Field("biography", "Biography:", max_words=220)], True).get("biography", "")
    if not slots.take(_ok_text(text, evidence, 0.7) and 15 <= len(text.split()) <= 250
                      and not _copied(text, "Write a short biography of in the third person", 4)):
        return third, second
    rewrite = _fill(model, render("biography_second", name=person, text=text),
                    [Field("rewritten", "Rewritten:", max_words=250)], True).get("rewritten", "")
    if not slots.take(_ok_text(rewrite, evidence + " " + text, 0.7) and re.search(r"\byou\b", rewrite, re.I)):
        return third, second
    return text, rewrite


# -- status ---------------------------------------------------------------------------------------------------

def status(person: str, facts: Sequence[Fact], shades: Sequence[Shade], topics: Sequence[Topic],
           chunk_dates: dict[int, str], as_of: str | None) -> Status:
    """What is going on recently (the last RECENT_DAYS before `as_of`) vs earlier, from dated memories."""
    if as_of is None:
        return Status(None, f"No dated memories yet, so nothing can be said about {person}'s recent life.", "")
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
    recent = [f"Since {f.valid_from}, {person} {verb_phrase(f, 0)}." for f in began]
    if ongoing:
        recent.append(f"{person} still {and_list([verb_phrase(f, 0) for f in sorted(ongoing, key=_key)])}.")
    if hot:
        recent.append(f"Most of the recent memories (since {start}) are about {'; '.join(hot)}.")
    events = sorted((e for s in shades for e in s.timeline if e.date >= start), key=lambda e: e.date)[-2:]
    recent += [f"On {e.date}: {e.text}" for e in events]
    earlier = [f"{person} {verb_phrase(f, 2)}" + (f" from {f.valid_from}" if f.valid_from else "")
               + f" until {f.valid_to}." for f in ended]
    if cold:
        earlier.append(f"Earlier memories are about {'; '.join(cold)}.")
    return Status(as_of, " ".join(recent) or f"Nothing dated in the last {RECENT_DAYS} days.",
                  " ".join(earlier) or "Nothing earlier stands out.")
