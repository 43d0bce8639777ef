"""Evidence for form values: what the memories say about the person, each item with its chunk and date.

Three readers over layer 0 and one over layer 1:
- labels: "Mobile phone: +351 ...", "Job title | Data Analyst" (tables), "Position: ..." inside a PDF's run-on
  text. The label is matched to a concept (concepts.py); a label with no concept is kept under its own
  words, so a form field with the same label ("Laptop preference") can still be answered.
- sections: a heading that names a concept ("Languages", "Education", "Interests") over a list.
- first-person patterns: "I was born on ...", "I'm allergic to ...", "I have been vegetarian since ...".
- facts (layer 1): works_at, job_title, manager, lives_in, studied_at, partner, with validity intervals.

Whose words count (precision first): notes and documents, e-mails the person sent, and the person's own chat
turns; never saved web pages, nor mail or chat turns by others. A document counts only where it names the
person (its title, its heading, or the text before the label), and in any text a value belongs to the person
only until someone else is named: after "LANDLORD: Fernando Guerreiro" an "Email:" line is the landlord's;
after "TENANT: <the person>" it is theirs again. Values that name someone else on purpose (a manager, an
emergency contact) do not switch the subject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from ..memory.observe import is_person
from ..text.patterns import Pattern, find, pattern
from ..text.words import PARTICLE
from ..types import Chunk, Entity, Fact
from .concepts import CONCEPTS, label_key, match_label

__all__ = ["Evidence", "PersonNames", "scan_chunks", "fact_evidence", "unknown_key", "person_texts"]


@dataclass(frozen=True)
class Evidence:
    """One statement of a value. `key` is a concept name or `unknown_key(label)`. `date`: the day it speaks
    for (None when unknown). `past`: it says itself that it is about the past ("Previous employer: ...");
    for facts `until` is the fact's end and `open` whether it holds on the day asked about."""

    key: str
    value: str
    sources: tuple[int, ...]
    date: str | None
    method: str                 # label | section | pattern | fact | derived
    weight: float
    how: str
    past: bool = False
    until: str | None = None
    open: bool = True
    fact_id: str = ""


def unknown_key(label: str) -> str:
    return "label:" + " ".join(sorted(label_key(label)))


class PersonNames:
    """Recognises the person and the other people named in a text."""

    def __init__(self, person: str, others: Iterable[Entity] = ()) -> None:
        self.person = person
        words = [w for w in re.split(r"\s+", person.strip()) if w]
        mine = {person.strip()} | ({words[0]} if words and len(words[0]) >= 3 else set())
        mine = {n for n in mine if n[:1].isupper()}     # a person id such as "me" is not a name to look for
        self._me = _names_re(mine)
        names = set()
        for e in others:
            if e.kind != "person" or is_person(e.name, person):
                continue
            names |= {e.name, *(a for a in e.aliases if len(a) >= 3)}
        self._others = _names_re(names - mine)
        self._mine = mine
        self.documents: set[str] = set()    # paths of documents about the person (see `learn`)

    def learn(self, chunks: Sequence[Chunk]) -> None:
        """The other names the person goes by, read from their memories, and the documents about them.

        - full names that begin with the display name, from the sender of their own mail and document
          titles ("CV - Ana Sofia de la Cruz" for "Ana"): their surname is then theirs;
        - initials and that surname ("A. de la Cruz", "A.S. de la Cruz");
        - a legal name written under a full-name label in a document that names them, with that surname and
          the same first initial ("Full name: Ana Sofia de la Cruz" in "New starter - A. de la Cruz").
        A document is about the person when its title, a heading or its opening chunk names them (the
        addressee of a letter: its terms come on the next page)."""
        first = self.person.strip().split()[0] if self.person.strip() else ""
        if len(first) < 2 or not first[:1].isupper():
            return
        full = re.compile(rf"(?<![\w]){re.escape(first)}((?:[ \t]+(?:{PARTICLE}[ \t]+){{0,3}}{_CAPW}){{1,2}})(?![\w])")
        texts = [c.title for c in chunks if c.kind == "document"]
        texts += [c.speakers[0] for c in chunks if c.kind == "email" and c.speakers and self.is_me(c.speakers[0])]
        surnames = {" ".join(m.group(1).split()) for t in texts for m in full.finditer(t or "")}
        surnames = {sn for sn in surnames if not re.fullmatch(r"[A-Z]+", sn)}
        if not surnames:
            return self._documents(chunks)
        names = set(self._mine) | {f"{first} {sn}" for sn in surnames}
        initials = rf"{re.escape(first[0])}\.(?:[ \t]?[A-Z]\.){{0,2}}"
        alt = "|".join(re.escape(sn) for sn in sorted(surnames, key=len, reverse=True))
        self._initials = re.compile(rf"(?<![\w.]){initials}[ \t]*(?:{alt})(?![\w])")
        self._me = _names_re(names)
        self._refresh(self._initials)
        legal = re.compile(rf"^{re.escape(first[0])}[\w’'-]+(?:[ \t]+{_CAPW}){{0,3}}[ \t]+(?:{alt})$")
        for c in chunks:
            if c.kind != "document" or not (self.names_me(c.title) or self.names_me(c.heading)):
                continue
            text = _tables(c.text) if "|" in c.text else c.text
            for p in _pairs(text):
                hit = _concept_of_label(p, c.heading)
                value = " ".join(p.value.split())
                if hit is not None and hit.concept in ("full_name", "legal_name") and legal.match(value):
                    names.add(value)
        self._me = _names_re(names)
        self._refresh(self._initials)
        self._documents(chunks)

    def _refresh(self, extra: re.Pattern[str] | None) -> None:
        if extra is not None and self._me is not None:
            self._me = re.compile(f"{self._me.pattern}|{extra.pattern}", re.I)

    def _documents(self, chunks: Sequence[Chunk]) -> None:
        opening: dict[str, Chunk] = {}
        for c in chunks:
            if c.kind == "document" and (c.path not in opening or c.id < opening[c.path].id):
                opening[c.path] = c
        for c in chunks:
            if c.kind == "document" and (self.names_me(c.title) or self.names_me(c.heading)):
                self.documents.add(c.path)
        self.documents |= {p for p, c in opening.items() if self.names_me(" ".join(c.text.split()))}

    def is_me(self, name: str) -> bool:
        return is_person(name, self.person)

    def mentions(self, text: str) -> list[tuple[int, bool]]:
        """(position, is the person) for each name mentioned in `text`."""
        out = [(m.start(), True) for m in self._me.finditer(text)] if self._me else []
        if self._others:
            out += [(m.start(), False) for m in self._others.finditer(text)]
        return sorted(out)

    def names_me(self, text: str) -> bool:
        return bool(self._me and self._me.search(text))


def _names_re(names: Iterable[str]) -> re.Pattern[str] | None:
    names = sorted({n for n in names if n and n.strip()}, key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w])", re.I)


# -- which text is the person's ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Segment:
    text: str
    mine: bool          # the person is the subject at its start (own notes, own mail, a document naming them)
    own: bool           # written by the person (first-person patterns apply)


def _segments(chunk: Chunk, who: PersonNames) -> Iterator[_Segment]:
    if chunk.kind == "web":
        return
    if chunk.kind == "chat":
        for speaker, turn in _turns(chunk):
            if speaker is not None and who.is_me(speaker):
                yield _Segment(turn, True, True)
        return
    if chunk.kind == "email":
        if not (chunk.speakers and who.is_me(chunk.speakers[0])):
            return
        body = "\n".join(line for line in chunk.text.splitlines() if not line.lstrip().startswith(">"))
        for para in re.split(r"\n\s*\n", body):
            yield _Segment(para, True, True)
        return
    if chunk.kind == "document":
        named = chunk.path in who.documents or who.names_me(chunk.title) or who.names_me(chunk.heading)
        for para in re.split(r"\n\s*\n", chunk.text):
            # table rows first: unwrapping would run "Key | Value" rows together into one line
            yield _Segment(_unwrap(_tables(para) if "|" in para else para), named, named)
        return
    for para in re.split(r"\n\s*\n", chunk.text):     # notes, journals
        yield _Segment(para, True, True)


def person_texts(chunk: Chunk, who: PersonNames) -> Iterator[str]:
    """The parts of `chunk` whose words count for the person (the same rules as the readers here): their
    notes, the mail they sent, their own chat turns, and documents that name them."""
    for seg in _segments(chunk, who):
        if seg.mine:
            yield seg.text


def _turns(chunk: Chunk) -> Iterator[tuple[str | None, str]]:
    speaker, lines = None, []
    for line in chunk.text.splitlines():
        who = next((s for s in chunk.speakers if line.startswith(s + ":")), None)
        if who is not None:
            if lines:
                yield speaker, "\n".join(lines)
            speaker, lines = who, [line[len(who) + 1:].strip()]
        else:
            lines.append(line)
    if lines:
        yield speaker, "\n".join(lines)


_LABEL_START = re.compile(r"^\s*(?:[-*•]\s+)?[A-Za-zÀ-ÿ][\w’' /&()-]{0,50}:\s")


def _unwrap(para: str) -> str:
    """Join the hard-wrapped lines of extracted document text, keeping lines that start a label or a list."""
    out: list[str] = []
    for line in para.splitlines():
        s = " ".join(line.split())
        if out and s and not re.search(r"[.:;!?]$", out[-1]) and not _LABEL_START.match(line) \
                and not re.match(r"[-*•]\s", s):
            out[-1] += " " + s
        elif s:
            out.append(s)
    return "\n".join(out)


# -- labels ---------------------------------------------------------------------------------------------

_LABEL = re.compile(r"(?:^|(?<=[.!?;])[ \t]+)(?:[-*•][ \t]+)?(?P<label>[A-Za-zÀ-ÿ][\wÀ-ÿ’'/&()-]*"
                    r"(?:[ \t]+[\wÀ-ÿ’'/&()-]+){0,5})[ \t]*:[ \t]+(?=\S)", re.M)
_ABBREV = (r"(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bProf)(?<!\bNo)(?<!\bNr)(?<!\bAv)(?<!\bJr)(?<!\bSr)"
           r"(?<!\b[A-Z])")          # an initial or the "B" of "B.V." ends no sentence
# a company suffix ("Ltd.", "Inc.", "B.V.") ends a sentence only where a sentence plainly starts after it
_SUFFIX_END = (r"(?:(?<=\bLtd)|(?<=\bInc)|(?<=\bCo)|(?<=\bCorp)|(?<=\b[A-Z]\.[A-Z]))\.(?=\s+(?:I|We|It|The|This|That|"
               r"My|Our|He|She|They|But|And|So|Then)\b)")
_SENTENCE_END = re.compile(rf"(?:(?<!\bLtd)(?<!\bInc)(?<!\bCo)(?<!\bCorp)(?<![A-Z]\.[A-Z]){_ABBREV}[.!?]"
                           rf"(?=\s+[A-Z0-9\"“(])|{_SUFFIX_END})")


@dataclass(frozen=True)
class _Pair:
    start: int
    end: int
    label: str
    value: str
    midline: bool


def _tables(text: str) -> str:
    """'Key | Value' table rows → 'Key: Value'; 'A: x | B: y' → one pair a line."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"\s+\|\s+", line.strip())]
        if len(cells) >= 2 and all(re.match(r"[^:]{1,50}:\s", c) for c in cells):
            out += cells
        elif len(cells) == 2 and ":" not in cells[0] and 0 < len(cells[0].split()) <= 5 and cells[1]:
            out.append(f"{cells[0]}: {cells[1]}")
        else:
            out.append(line)
    return "\n".join(out)


def _pairs(text: str) -> list[_Pair]:
    found = list(_LABEL.finditer(text))
    pairs = []
    for i, m in enumerate(found):
        line_end = text.find("\n", m.end())
        stop = len(text) if line_end < 0 else line_end
        if i + 1 < len(found) and found[i + 1].start() < stop:
            stop = found[i + 1].start()
        value = text[m.end():stop]
        cut = _SENTENCE_END.search(value)
        if cut:
            value = value[:cut.start()]
        value = value.strip().rstrip(".").strip()
        line_start = text.rfind("\n", 0, m.start()) + 1
        midline = bool(text[line_start:m.start("label")].strip(" \t-*•"))
        if value:
            pairs.append(_Pair(m.start("label"), m.end() + len(value), m.group("label").strip(), value, midline))
    return pairs


def _concept_of_label(pair: _Pair, heading: str = ""):
    section = heading.split(" > ")[-1] if heading else ""
    over = match_label(section) if section else None
    if over is not None and CONCEPTS[over.concept].about_other:
        # under "Emergency contact", "Name" and "Phone" are the contact's
        inner = match_label(f"{section} {pair.label}")
        return inner if inner is not None and CONCEPTS[inner.concept].about_other else None
    hit = match_label(pair.label)
    if hit is None and pair.midline and len(pair.label.split()) >= 2 and pair.label[0].isupper():
        # run-on PDF text: "... 16 May 2025. Terms Position: Data Engineer" — the heading word ran in
        rest = pair.label.split(None, 1)[1]
        if rest[:1].isupper():
            hit = match_label(rest)
    return hit


# -- first-person patterns --------------------------------------------------------------------------------

_DATE = (r"(?:\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?[A-Z][a-z]+\.?,?\s+(?:19|20)\d\d|[A-Z][a-z]+\.?\s+\d{1,2}(?:st|nd|rd|th)?,?"
         r"\s+(?:19|20)\d\d|(?:19|20)\d\d-\d\d-\d\d)")
_CAPW = r"[A-ZÀ-ÖØ-Þ][\wÀ-ÿ'’-]+"
_PLACE = rf"{_CAPW}(?:[ \t]+{_CAPW}){{0,2}}(?:,[ \t]+{_CAPW}(?:[ \t]+{_CAPW}){{0,2}})?"
_HEDGE = re.compile(r"\b(?:not|never|no longer|would|could|might|if|unless|maybe|perhaps|whether|hope|wish|want|"
                    r"think|guess|used to)\b|n['’]t\b", re.I)
_DIETS = (r"vegetarian|vegan|pescatarian|pescetarian|lacto-vegetarian|ovo-vegetarian|halal|kosher|gluten-free|"
          r"lactose-free|dairy-free|coeliac|celiac")
_INSTRUMENTS = (r"cello|violin|viola|double bass|piano|guitar|bass guitar|bass|drums|flute|clarinet|oboe|bassoon|"
                r"saxophone|trumpet|trombone|french horn|horn|tuba|harp|ukulele|banjo|mandolin|accordion|organ|"
                r"harmonica|keyboard")
_I = r"\bI(?:['’]m|[ \t]+am|[ \t]+have[ \t]+been|['’]ve[ \t]+been|[ \t]+was)?"


def _p(key: str, regex: str, first_person: bool = True) -> Pattern:
    """`first_person`: the pattern names the person itself ("I", "my"); else the subject must be them."""
    return pattern(key, regex, check="first_person" if first_person else "", flags=re.M)


_PATTERNS = [
    _p("date_of_birth", rf"\bI[ \t]+was[ \t]+born[ \t]+(?:on[ \t]+)?(?P<v>{_DATE})"),
    _p("date_of_birth", rf"(?:^|[.!?][ \t]+)(?i:born)[ \t]+(?:on[ \t]+)?(?P<v>{_DATE})", False),
    _p("date_of_birth", rf"(?P<me>{_CAPW}(?:[ \t]+{_CAPW}){{0,3}}),[ \t]+born[ \t]+(?:on[ \t]+)?(?P<v>{_DATE})", False),
    _p("place_of_birth", rf"\bI[ \t]+was[ \t]+born[ \t]+(?:on[ \t]+{_DATE}[ \t]+)?in[ \t]+(?P<v>{_PLACE})"),
    _p("place_of_birth", rf"(?:^|[.!?][ \t]+)(?i:born)[ \t]+(?:on[ \t]+)?(?:{_DATE}[ \t]+)?in[ \t]+(?P<v>{_PLACE})", False),
    _p("place_of_birth", rf"(?P<me>{_CAPW}(?:[ \t]+{_CAPW}){{0,3}}),[ \t]+born[ \t]+(?:on[ \t]+)?(?:{_DATE}[ \t]+)?in[ \t]+"
                         rf"(?P<v>{_PLACE})", False),
    _p("nationality", rf"\bof[ \t]+(?P<v>{_CAPW})[ \t]+nationality\b", False),
    _p("nationality", rf"\bI(?:['’]m|[ \t]+am)[ \t]+an?[ \t]+(?P<v>{_CAPW})[ \t]+(?:citizen|national)\b"),
    _p("diet", rf"{_I}[ \t]+(?:an?[ \t]+)?(?:strict[ \t]+)?(?P<v>{_DIETS})\b"),
    _p("diet", rf"(?:^|[.!?:][ \t]+)(?i:being|been)[ \t]+(?P<v>{_DIETS})[ \t]+since\b", False),
    _p("allergies", rf"{_I}[ \t]+(?:(?:very|severely|mildly)[ \t]+)?allergic[ \t]+to[ \t]+(?P<v>[a-z][a-z -]{{2,30}}?)"
                    r"(?=[ \t]*[(,.;:!?]|[ \t]+(?:and|but|so|which|since)\b|[ \t]*$)"),
    _p("allergies", r"(?:^|[.!?:][ \t]+)(?:[-*•][ \t]+)?allergic[ \t]+to[ \t]+(?P<v>[a-z][a-z -]{2,30}?)"
                    r"(?=[ \t]*[(,.;:!?]|[ \t]+(?:and|but)\b|[ \t]*$)", False),
    _p("allergies", r"(?:\bmy[ \t]+|^[ \t]*(?:[-*•][ \t]+)?)(?P<v>[a-z]{4,20})[ \t]+allerg(?:y|ies)\b"),
    _p("languages", rf"\bI[ \t]+speak[ \t]+(?P<v>{_CAPW}(?:(?:,[ \t]*|[ \t]+and[ \t]+){_CAPW}){{0,6}})"),
    _p("instrument", rf"\bI[ \t]+(?:play|have[ \t]+played|['’]ve[ \t]+played)[ \t]+(?:the[ \t]+)?(?P<v>{_INSTRUMENTS})\b"),
    _p("shirt_size", r"(?i:\b(?:t-?shirt|shirt|hoodie)[ \t]+size):?[ \t]+(?P<v>XXS|XS|S|M|L|XL|XXL|XXXL)\b", False),
    _p("email", r"\b[Mm]y[ \t]+(?:new[ \t]+|personal[ \t]+|private[ \t]+)?e-?mail(?:[ \t]+address)?[ \t]+is[ \t]+"
                r"(?P<v>[\w.%+'-]+@[\w-]+(?:\.[\w-]+)+)"),
    _p("phone", r"\b[Mm]y[ \t]+(?:new[ \t]+)?(?:phone|mobile|cell)(?:[ \t]+number)?[ \t]+is[ \t]+(?P<v>\+?[\d ()./-]{7,22}\d)"),
    _p("pronouns", r"\b[Mm]y[ \t]+pronouns[ \t]+are[ \t]+(?P<v>[a-z]+/[a-z]+(?:/[a-z]+)?)"),
]

_NOT_FIRST_PERSON = [p for p in _PATTERNS if p.check != "first_person"]     # for text the person did not write


# Words without which no pattern can match: most paragraphs are skipped at the cost of one search.
_HINT = re.compile(r"born|allerg|vegetarian|vegan|pescatarian|pescetarian|halal|kosher|gluten|lactose|dairy|"
                   r"c(?:o|e)eliac|celiac|nationality|citizen|national\b|speak|play|size|mail|phone|mobile|cell|pronouns",
                   re.I)


# -- the scan ---------------------------------------------------------------------------------------------

def scan_chunks(chunks: Iterable[Chunk], who: PersonNames, *, undated: set[int] = frozenset(),
                at: str | None = None) -> list[Evidence]:
    """Every label, section and pattern statement about the person in `chunks` (those dated after `at`
    are skipped: they were not written yet)."""
    out: list[Evidence] = []
    for chunk in chunks:
        day = None if chunk.id in undated or not chunk.date else chunk.date[:10]
        if at and day and day > at:
            continue
        out += _scan_chunk(chunk, who, day)
    return out


def _where(chunk: Chunk) -> str:
    kind = {"email": "an e-mail you sent", "chat": "your chat message", "document": "a document about you"}
    return kind.get(chunk.kind, "your notes") + f" ({chunk.path})"


def _scan_chunk(chunk: Chunk, who: PersonNames, day: str | None) -> list[Evidence]:
    out = list(_section(chunk, who, day))
    own = chunk.kind != "document"
    for seg in _segments(chunk, who):
        text = _tables(seg.text) if "|" in seg.text else seg.text
        pairs = _pairs(text) if ":" in text else []
        hinted = bool(_HINT.search(text))
        if not pairs and not hinted:
            continue
        subject = _subject_track(text, pairs, seg.mine, who, chunk.heading)
        for pair in pairs:
            if not subject(pair.start):
                continue
            hit = _concept_of_label(pair, chunk.heading)
            weight = 0.85 if own else 0.8
            how = f"'{pair.label}: {_short(pair.value)}' in {_where(chunk)}"
            if hit is None:
                if not label_key(pair.label):
                    continue
                out.append(Evidence(unknown_key(pair.label), pair.value, (chunk.id,), day, "label", 0.7, how))
            else:
                out.append(Evidence(hit.concept, pair.value, (chunk.id,), day, "label", weight, how, past=hit.past))
        if not hinted:
            continue
        for pat, m in find(_PATTERNS if seg.own else _NOT_FIRST_PERSON, text, hedge=_HEDGE, hedge_to="v"):
            me = m.groupdict().get("me")
            if me is not None and not who.is_me(me):
                continue
            if pat.check != "first_person" and me is None and not subject(m.start("v")):
                continue
            out.append(Evidence(pat.key, m.group("v"), (chunk.id,), day, "pattern", 0.75,
                                f"'{_short(m.group(0).strip(' .-'), 70)}' in {_where(chunk)}"))
    return out


_OWN_NAMES = {"full_name", "legal_name", "given_name", "family_name", "preferred_name"}


def _subject_track(text: str, pairs: Sequence[_Pair], mine: bool, who: PersonNames, heading: str = ""):
    """A function telling, for a position in `text`, whether the person is its subject there."""
    changes: list[tuple[int, bool]] = [(0, mine)]
    spans = []
    for p in pairs:
        hit = _concept_of_label(p, heading)
        vstart = p.end - len(p.value)
        if hit is not None and hit.concept in _OWN_NAMES:
            changes.append((p.start, who.names_me(p.value)))   # "Name: Catarina Vaz" starts someone else's card
        elif hit is not None and CONCEPTS[hit.concept].about_other:
            spans.append((vstart, p.end))             # a manager's name does not make the text theirs
        elif hit is None:
            names_me = who.names_me(p.value)
            if names_me:
                changes.append((vstart, True))
            elif re.match(rf"{_CAPW}[ \t]+(?:{PARTICLE}[ \t]+){{0,3}}{_CAPW}", p.value) and \
                    not re.match(r"[A-Z][a-z]+day\b|(?:19|20)\d\d", p.value):
                changes.append((vstart, False))       # "LANDLORD: Fernando Guerreiro, ..."
            spans.append((vstart, p.end))
    for pos, is_me in who.mentions(text):
        if not any(a <= pos < b for a, b in spans):
            changes.append((pos, is_me))
    for line in re.finditer(r"^[ \t]*[-*•][ \t]", text, re.M):   # each list item starts afresh
        changes.append((line.start(), mine))
    changes.sort(key=lambda c: c[0])

    def subject(pos: int) -> bool:
        state = mine
        for at, value in changes:
            if at > pos:
                break
            state = value
        return state
    return subject


def _section(chunk: Chunk, who: PersonNames, day: str | None) -> Iterator[Evidence]:
    """A heading that names a list or text concept ("Languages", "Education") over the person's own text."""
    if not chunk.heading or chunk.kind not in ("note", "document"):
        return
    if chunk.kind == "document" and not (chunk.path in who.documents or who.names_me(chunk.title)
                                         or who.names_me(chunk.heading)):
        return
    hit = match_label(chunk.heading.split(" > ")[-1])
    if hit is None or CONCEPTS[hit.concept].kind not in ("list", "text") or hit.past:
        return
    first = re.split(r"\n\s*\n", chunk.text.strip(), maxsplit=1)[0]
    lines = [ln.strip(" -*•\t") for ln in first.splitlines() if ln.strip(" -*•\t")]
    items = lines if len(lines) > 1 else re.split(r"(?<=[a-z0-9)])\.\s+(?=[A-Z])", lines[0]) if lines else []
    if CONCEPTS[hit.concept].kind == "list":
        heads = [re.split(r"\s*[:(,;]|\s+[-–—]\s+", i, maxsplit=1)[0].strip(" .") for i in items]
        heads = [h for h in heads if h and len(h.split()) <= 4]
        if not heads:
            return
        value: str | list[str] = heads
    else:
        value = items[0] if items else ""
    if value:
        how = f"the section '{chunk.heading.split(' > ')[-1]}' in {_where(chunk)}"
        yield Evidence(hit.concept, value, (chunk.id,), day, "section", 0.75, how)  # type: ignore[arg-type]


def _short(text: str, limit: int = 60) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


# -- layer 1 ----------------------------------------------------------------------------------------------

_FACT_CONCEPTS = {"works_at": "employer", "job_title": "job_title", "manager": "manager", "lives_in": "city",
                  "studied_at": "education", "partner": "partner"}


def fact_evidence(facts: Iterable[Fact], person: str, day: str, chunk_dates: dict[int, str | None]) -> list[Evidence]:
    """Layer-1 facts about the person as evidence: open = holds on `day`; facts that begin later are left out.
    The start date of the job held on `day` answers "start date"."""
    out: list[Evidence] = []
    for f in facts:
        concept = _FACT_CONCEPTS.get(f.predicate)
        if concept is None or not is_person(f.subject, person) or (f.valid_from and f.valid_from > day):
            continue
        seen = [d for c in f.sources if (d := chunk_dates.get(c))]
        as_of = max([x for x in [f.valid_from, *seen] if x] or [None])  # type: ignore[type-var]
        span = f"{f.valid_from or '…'} – {f.valid_to or 'now'}"
        weight = 0.45 if concept == "education" else 0.8   # an institution alone does not name a degree
        e = Evidence(concept, f.object, f.sources, as_of, "fact", weight, f"fact [{f.id}] {f.predicate} {f.object} ({span})",
                     until=f.valid_to, open=f.holds_at(day), fact_id=f.id)
        out.append(e)
        if f.predicate == "works_at" and f.valid_from and e.open:
            out.append(replace(e, key="start_date", value=f.valid_from, weight=0.75,
                               how=f"start of fact [{f.id}] works_at {f.object} ({span})"))
    return out

