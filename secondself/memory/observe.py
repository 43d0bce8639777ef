"""From one chunk to dated observations: a small library of English patterns for first-person life writing.

The boundary: this module reads one chunk at a time and knows nothing about other chunks; `facts.resolve`
turns observations from many chunks into facts with validity intervals.

What counts as the person speaking: notes and documents (journals, CVs, to-do lists) are taken as written by
the person; an e-mail only when its sender is the person; in a chat only the person's own turns. Saved web
pages are skipped, since they are usually someone else's words. "I", "my" and a sentence with no subject
("Moved to Lisbon.", "- 1 July: started at Acme") are the person. Quoted speech, questions and hedged
sentences ("if", "would", "not", "want to", ...) are skipped: a wrong current address is worse than none.

Dates: a date written in the sentence (or in its list item's label, "- 8 September: started at ...") wins;
"today", "yesterday", "tomorrow" count from the day the text was written; a sentence with any other time
expression ("in March", "on Thursday", "three weeks ago") gets no date; otherwise the chunk's date is used,
except for plans ("will", "I'm moving"), which need a written date. In a chat, only the first turn of a chunk
has a known day, so later turns only give undated observations.

Limits: English only; names must be capitalized; the patterns are few on purpose (precision over recall).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from ..text.dates import find_dates, find_relative_dates, parse_date
from ..text.patterns import Pattern, find, pattern
from ..text.phrasing import PREDICATES
from ..text.words import NAME_STOPWORDS, PARTICLE
from ..types import Chunk

__all__ = ["Observation", "extract_observations", "person_units", "norm", "NAME", "PROPER", "is_person"]


@dataclass(frozen=True)
class Observation:
    """One dated statement seen in one chunk.

    `kind`: "start" (became true), "state" (is true), "end" (stopped). `date`: the ISO day it refers to.
    `explicit`: that day was written in the sentence (or "today"), not taken from the chunk's date.
    `seen`: the day the chunk was written (None if unknown). `origin`: "rules" or "teacher".
    """

    subject: str
    predicate: str
    object: str
    date: str | None
    kind: str
    chunk_id: int
    evidence: str
    origin: str = "rules"
    seen: str | None = None
    explicit: bool = False


# -- building blocks -----------------------------------------------------------------------------------

_UP, _LOW = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿĀ-ž"
_CAP = rf"[{_UP}](?:[{_UP}{_LOW}'’-]*[{_UP}{_LOW}])?(?![{_UP}{_LOW}0-9'’-])"
NAME = rf"{_CAP}(?:[ \t]+(?:{PARTICLE}[ \t]+)?{_CAP}){{0,2}}"                      # a person's name
_FORM = r"(?:[A-Z]\.){2,3}(?!\w)"                                               # a company form: B.V., S.A.
PROPER = rf"{_CAP}(?:[ \t]+(?:(?:{PARTICLE}|of|&)[ \t]+)?(?:{_FORM}|{_CAP})){{0,4}}"  # a place or organization
_ADV = r"(?:just|finally|officially|actually|also|then|now|recently|already|still|really|first|currently)"
_I = rf"\bI(?:['’](?:m|ve|d|ll)|[ \t]+(?:am|have|had|will|was))?(?:[ \t]+{_ADV})*(?:[ \t]+(?:have|need|got|going|about)[ \t]+to)?[ \t]+"
_SUBJ = rf"(?:{_I}|^(?:(?i:today|yesterday|finally|officially)[ \t]+)?)"           # "I ...", or no subject
_MY = r"(?:\b[Mm]y[ \t]+|^)"
_ROLE = ("analyst|engineer|developer|programmer|designer|architect|scientist|researcher|manager|director|"
         "consultant|accountant|lawyer|nurse|doctor|physician|teacher|professor|lecturer|student|intern|"
         "writer|editor|journalist|officer|administrator|technician|specialist|coordinator|founder|chef|"
         "pharmacist|therapist|physiotherapist|dentist|electrician|plumber|mechanic|pilot|librarian|"
         "economist|statistician|translator|photographer|illustrator|recruiter|salesperson|barista|"
         "paralegal|veterinarian|surgeon|psychologist|ceo|cto|cfo")
_TITLE = rf"(?:[A-Za-z-]+[ \t]+){{0,3}}?(?i:{_ROLE})s?\b"
_NOT_TITLE = {"former", "ex", "future", "aspiring", "retired", "amateur", "good", "bad", "great", "better",
              "terrible", "bit", "real", "wannabe", "failed", "would-be"}
_ENSEMBLE = re.compile(r"\b(?:orchestra|orquestra|orquesta|orchestre|orchester|orkester|philharmonic|filarm\w*|"
                       r"symphony|sinfonietta|band|choir|chorus|coro|ensemble|quartet|quintet|trio|club|team|fc)\b",
                       re.I)

_HEDGE = re.compile(r"\b(?:not|never|no longer|would|could|might|should|(?-i:may)|if|unless|maybe|perhaps|"
                    r"whether|once|hope|hoped|wish|want|wanted|dream|imagine|pretend|almost|considering|think|"
                    r"thinking|guess|suppose|planned to|supposed to)\b|n['’]t\b", re.I)
_FUTURE = re.compile(r"\b(?:will|going to|gonna|about to|have to|need to|plan to|planning to)\b|['’]ll\b|"
                     r"\b(?:moving|starting|relocating|joining|leaving)\b", re.I)
_VAGUE = re.compile(
    r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|March|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b|\b(?i:monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday|weekend|ago|later|earlier|recently|spring|summer|autumn|winter|(?:last|next|this|that|"
    r"coming|previous)\s+(?:week|month|year|time))\b|\b(?:19|20)\d\d\b|"
    r"\b(?i:a|an|one|two|three|four|five|six|seven|eight|nine|ten|few|several|\d+)\s+(?i:days?|weeks?|months?|years?)\b")


def norm(text: str) -> str:
    """Case-, accent- and whitespace-insensitive key; a leading "the" is dropped."""
    s = unicodedata.normalize("NFKD", text.replace("’", "'"))
    s = " ".join("".join(c for c in s if not unicodedata.combining(c)).casefold().split())
    return s[4:] if s.startswith("the ") else s


def is_person(speaker: str, person: str) -> bool:
    """The display name of a turn or sender is the person ("Maya" vs "Maya Okafor-Lindqvist")."""
    a, b = norm(speaker), norm(person)
    return bool(a and b) and (a == b or a.startswith(b + " ") or b.startswith(a + " "))


# -- the person's own words, as (sentence, label, reference day) ---------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)]|\[[ xX]\])\s+")
_LABEL = re.compile(r"^([^:.!?]{1,40}):\s+(?=\S)")
_SPLIT = re.compile(r"(?<=[.!?])[\"”')]*\s+(?=[\"“(]?[A-Z0-9À-Þ-])")


def person_units(chunk: Chunk, person: str) -> Iterator[tuple[str, str, date | None]]:
    """The sentences the person wrote or said in `chunk`, each with its list item's label ("1 July" in
    "- 1 July: moved to ...") and the day it was written (None when unknown)."""
    day = parse_date(chunk.date).date() if chunk.date and parse_date(chunk.date) else None
    if chunk.kind == "web":
        return
    if chunk.kind == "chat":
        # The chunk's date is its first block's; a chunk that opens mid-turn has no turn with a known day.
        speaker, turn = None, -1
        for i, line in enumerate(chunk.text.splitlines()):
            who = next((s for s in chunk.speakers if line.startswith(s + ":")), None)
            if who is not None:
                speaker, turn, line = who, turn + 1, line[len(who) + 1:]
            elif i == 0:
                turn = 1
            if speaker is not None and is_person(speaker, person):
                yield from _sentences(line, day if turn == 0 else None)
        return
    if chunk.kind == "email" and not (chunk.speakers and is_person(chunk.speakers[0], person)):
        return
    if chunk.heading:
        for part in chunk.heading.split(" > "):
            yield from _sentences(part, day)
    body = chunk.text.split("\n--\n")[0] if chunk.kind == "email" else chunk.text
    for para in re.split(r"\n\s*\n", body):
        items: list[str] = []
        for line in para.splitlines():
            if line.lstrip().startswith(">") and chunk.kind == "email":
                continue
            if not items or _BULLET.match(line) or _LABEL.match(line.strip()) or _heading(items[-1], line):
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        for item in items:
            yield from _sentences(item, day)


def _heading(previous: str, line: str) -> bool:
    """`previous` is a heading of its own line ("People", "Work notes") above `line`, not prose wrapped onto
    the next line: at most three words, no digit (a date line dates what follows), no punctuation at its end,
    and `line` starts a new capitalized item. Joined, "People" + "Mereana Tawhai - Head of Geothermal, my
    manager." read as the name "People Mereana Tawhai"."""
    words = previous.split()
    return 0 < len(words) <= 3 and not previous.endswith((".", ",", ";", ":", "-", "–", "—", "&")) \
        and not any(c.isdigit() for c in previous) and line.strip()[:1].isupper()


def _sentences(item: str, day: date | None) -> Iterator[tuple[str, str, date | None]]:
    item = _BULLET.sub("", item.strip()).replace("**", "")
    label = ""
    m = _LABEL.match(item)
    if m and (find_dates(m.group(1), day) or _VAGUE.search(m.group(1))):
        label, item = m.group(1), item[m.end():]
    for s in _SPLIT.split(item):
        if s.strip():
            yield s.strip(), label, day


# -- the patterns --------------------------------------------------------------------------------------

def _r(predicate: str, kind: str, regex: str, check: str = "") -> Pattern:
    """A rule of the table: `kind` is start | state | end, or "k" (a "first" in the match → start, "last" →
    end); `check` "ensemble": the object must name an orchestra, band, team..."""
    return pattern(predicate, regex, kind, check)


_O, _N, _T = rf"(?:the[ \t]+)?(?P<o>{PROPER})", rf"(?P<o>{NAME})", rf"(?:an?[ \t]+)?(?P<t>{_TITLE})"
_RULES = [
    # lives_in: "moved from X to Y" is handled in code (X ends the day before Y starts)
    _r("lives_in", "start", rf"{_SUBJ}(?i:moved|moving|move|relocated|relocating)(?:[ \t]+(?i:back|house))?"
       rf"(?:[ \t]+from[ \t]+(?:the[ \t]+)?(?P<o1>{PROPER}))?[ \t]+to[ \t]+{_O}"),
    _r("lives_in", "end", rf"{_SUBJ}(?i:moved|moving|relocated|relocating)[ \t]+(?:away[ \t]+)?from[ \t]+{_O}(?![ \t]+to\b)"),
    _r("lives_in", "state", rf"\bI(?:['’]m|[ \t]+am)?[ \t]+(?:(?:still|now|currently)[ \t]+)?(?:live|living)[ \t]+in[ \t]+{_O}"),
    # works_at / job_title
    _r("works_at", "start", rf"{_SUBJ}(?i:started|starting|start|began|begin)[ \t]+(?:(?:work(?:ing)?|my (?:new )?job)[ \t]+)?"
       rf"(?:as[ \t]+{_T}[ \t]+)?at[ \t]+{_O}(?:[ \t]+as[ \t]+(?:an?[ \t]+)?(?P<t2>{_TITLE}))?"),
    _r("works_at", "start", rf"{_MY}(?i:first)[ \t]+(?i:day)[ \t]+(?:(?i:of work)[ \t]+)?at[ \t]+{_O}"),
    _r("works_at", "state", rf"(?:\bI(?:['’]m|[ \t]+am)?[ \t]+(?:(?:still|now|currently)[ \t]+)?|^)(?i:work|working)"
       rf"(?:[ \t]+(?:remotely|full[- ]time|part[- ]time))?[ \t]+(?:at|for)[ \t]+{_O}"),
    _r("works_at", "state", rf"\b[Mm]y[ \t]+(?:current[ \t]+)?(?:position|job|role)[ \t]+as[ \t]+{_T}[ \t]+at[ \t]+{_O}"),
    _r("works_at", "end", rf"{_MY}(?i:last)[ \t]+(?:(?:working|full|official)[ \t]+)?(?i:day)[ \t]+at[ \t]+{_O}"),
    _r("works_at", "end", rf"{_I}(?:was[ \t]+)?(?:laid off|fired|let go)[ \t]+(?:from|by)[ \t]+{_O}"),
    _r("job_title", "state", rf"\bI(?:['’]m|[ \t]+am|[ \t]+work[ \t]+as)[ \t]+(?:an?[ \t]+)(?P<t>{_TITLE})"),
    # manager
    _r("manager", "state", rf"\b[Mm]y[ \t]+(?:new[ \t]+|line[ \t]+)?(?:manager|boss|supervisor)(?:[ \t]+is)?,?[ \t]+{_N}"),
    _r("manager", "state", rf"{_N}(?:(?:[ \t]+[-–—]|,)[ \t]+(?:the[ \t]+)?{PROPER})?,[ \t]+[Mm]y[ \t]+(?:new[ \t]+)?"
       rf"(?:manager|boss|supervisor)\b"),
    _r("manager", "state", rf"{_N}[ \t]+is[ \t]+my[ \t]+(?:new[ \t]+)?(?:manager|boss)\b"),
    _r("manager", "state", rf"\bI[ \t]+report[ \t]+to[ \t]+{_N}"),
    # partner
    _r("partner", "start", rf"{_MY}(?i:first)[ \t]+(?:(?:proper|real|official)[ \t]+)?date[ \t]+with[ \t]+{_N}"),
    _r("partner", "start", rf"{_I}(?:started|start)[ \t]+(?:dating|seeing|going out with)[ \t]+{_N}"),
    _r("partner", "start", rf"{_N}[ \t]+and[ \t]+I[ \t]+(?:(?:just|finally|officially)[ \t]+)?(?:started dating|got together|"
       rf"became a couple|got engaged|got married)"),
    _r("partner", "state", rf"\b[Mm]y[ \t]+(?:boyfriend|girlfriend|partner|husband|wife|fianc[ée]e?),?[ \t]+{_N}"),
    _r("partner", "state", rf"{_N},[ \t]+my[ \t]+(?:boyfriend|girlfriend|husband|wife|fianc[ée]e?)\b"),
    _r("partner", "end", rf"{_N}[ \t]+and[ \t]+I[ \t]+(?:(?:have|had|just|finally)[ \t]+)?(?:broke up|split up|separated|"
       rf"divorced|ended things|ended it|decided to (?:break up|split up|separate))"),
    _r("partner", "end", rf"{_I}(?:broke up|split up)[ \t]+with[ \t]+{_N}"),
    _r("partner", "end", rf"{_N}[ \t]+(?:broke up|split up)[ \t]+with[ \t]+me\b"),
    # plays_in: the object must name an ensemble or team
    _r("plays_in", "state", rf"{_I}(?:play|sing)[ \t]+(?:(?:the[ \t]+)?[a-z]+[ \t]+)?(?:in|with|for)[ \t]+{_O}", "ensemble"),
    _r("plays_in", "start", rf"{_SUBJ}(?i:joined)[ \t]+{_O}", "ensemble"),
    _r("plays_in", "state", rf"{_MY}(?i:rehearsals?|concerts?)[ \t]+with[ \t]+{_O}", "ensemble"),
    _r("plays_in", "k", rf"{_MY}(?P<k>(?i:first|last))[ \t]+(?:concert|rehearsal|game|match|gig)[ \t]+(?:with|for)[ \t]+{_O}",
       "ensemble"),
    _r("plays_in", "end", rf"{_I}(?:left|quit)[ \t]+{_O}", "ensemble"),
    # teacher
    _r("teacher", "state", rf"\b[Mm]y[ \t]+(?:[A-Za-z]+[ \t]+)?(?:teacher|tutor|coach|instructor)(?:[ \t]+is)?,?[ \t]+{_N}"),
    _r("teacher", "state", rf"{_N},[ \t]+my[ \t]+(?:[a-z]+[ \t]+)?(?:teacher|tutor|coach|instructor)\b"),
    _r("teacher", "state", rf"{_MY}(?i:lessons?)[ \t]+with[ \t]+{_N}"),
    _r("teacher", "k", rf"{_MY}(?P<k>(?i:first|last))[ \t]+(?:lesson|class)[ \t]+with[ \t]+{_N}"),
    # studied_at
    _r("studied_at", "state", rf"\b(?:I|[Ww]e)[ \t]+(?:studied|graduated|did[ \t]+(?:my|our)[ \t]+(?:master|bachelor|degree|"
       rf"phd|PhD|doctorate|MSc|BSc|MA|BA))\b[^.;]{{0,40}}?[ \t](?:at|from)[ \t]+{_O}"),
]


def extract_observations(chunk: Chunk, person: str) -> list[Observation]:
    """Rule-based observations about `person` in one chunk (see the module docstring for what counts)."""
    out: dict[tuple, Observation] = {}
    seen = chunk.date[:10] if chunk.date else None
    for sentence, label, day in person_units(chunk, person):
        if sentence.rstrip().endswith("?"):
            continue
        for rule, m in find(_RULES, sentence, hedge=_HEDGE, quotes=True):
            for pred, obj, kind, shift in _readings(rule, m):
                obj = _clean(obj, PREDICATES[pred].object_kind)
                if not obj or (rule.check == "ensemble" and not _ENSEMBLE.search(obj)):
                    continue
                if is_person(obj, person):
                    continue
                when, explicit = _when(sentence, label, m, day, future=bool(_FUTURE.search(sentence)))
                if when is not None and shift:
                    when = when + timedelta(days=shift)
                o = Observation(person, pred, obj, when.isoformat() if when else None, kind, chunk.id,
                                _short(sentence), seen=seen, explicit=explicit)
                out.setdefault((pred, norm(obj), kind, o.date), o)
    return list(out.values())


def _readings(rule: Pattern, m: re.Match[str]) -> Iterator[tuple[str, str, str, int]]:
    """(predicate, object, kind, day shift) read from one match."""
    groups = m.groupdict()
    kind = rule.kind
    if kind == "k":
        kind = "start" if groups["k"].lower() == "first" else "end"
    if groups.get("o1"):
        yield "lives_in", groups["o1"], "end", -1        # moved from X to Y on d: X ends on d-1
    if groups.get("o"):
        yield rule.key, groups["o"], kind, 0
    title = groups.get("t") or groups.get("t2")
    if title and rule.key in ("works_at", "job_title"):
        yield "job_title", title, kind, 0


def _clean(obj: str | None, kind: str) -> str:
    if not obj:
        return ""
    kept = obj.strip(" ,.;:") + ("." if re.search(rf"\s{_FORM}[\s,;:]*$", obj) else "")   # "B.V." keeps its dot
    words = re.sub(r"['’]s$", "", kept).split()
    while words and words[0].casefold() in NAME_STOPWORDS:
        words = words[1:]
    while words and words[-1].casefold() in NAME_STOPWORDS:
        words = words[:-1]
    if not words:
        return ""
    if kind == "title":
        lowered = [w.casefold() for w in words]
        if any(w in _NOT_TITLE for w in lowered) or lowered[0] in ("a", "an"):
            return ""
    return " ".join(words)


def _when(sentence: str, label: str, m: re.Match[str], day: date | None, *, future: bool) -> tuple[date | None, bool]:
    """The day a match refers to, and whether it was written in the text (see the module docstring)."""
    dates = find_dates(sentence, day)
    if dates:
        centre = (m.start() + m.end()) / 2
        return min(dates, key=lambda d: (abs((d.start + d.end) / 2 - centre), d.start < m.start())).day, True
    if label and (in_label := find_dates(label, day)):
        return in_label[0].day, True
    if day is None:
        return None, False
    # "yesterday", "on Monday", "two weeks ago": resolved against the day the sentence was written
    relative = [r for r in find_relative_dates(sentence, day) if r.day is not None]
    if relative:
        centre = (m.start() + m.end()) / 2
        return min(relative, key=lambda r: abs((r.start + r.end) / 2 - centre)).day, True
    if future or _VAGUE.search(sentence) or _VAGUE.search(label):
        return None, False
    return day, False


def _short(sentence: str, limit: int = 240) -> str:
    s = " ".join(sentence.split())
    return s if len(s) <= limit else s[:limit - 1].rstrip() + "…"
