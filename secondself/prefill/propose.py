"""Values a model reads from the memories, for fields the deterministic readers left empty.

The readers of `evidence` find "Label: value" lines, sections and a few first-person patterns; a value
written in prose ("The secret word for the shed lock is pumpernickel") escapes them. Here a chat model reads
such prose, under three checks that keep pre-fill's rule that nothing is guessed:

1. Retrieval is lexical and strict: the model sees only lines (or sentences) of the person's own text — the
   same parts `evidence` reads: notes, mail they sent, their chat turns, documents naming them — that contain
   the field label's meaning words (all of one or two, all but one of more; the note's title counts: "Budget"
   under "JAPAN PACKING LIST" is about the Japan trip). No such line: no model call, the field stays empty.
2. The model answers with constrained JSON: the number of the note that states the value, and the value
   (or 0 and null). Notes are shown newest first, and the model is told that the newest holds.
3. The value must occur verbatim (case and spacing aside) in a note it was shown, within a few words of the
   label's words there, must be more than the label's own words and not be marked as past ("until June:");
   it is then read and validated like any other candidate (`values.read` and `fit`: the field's kind and
   JSON Schema) by `fill`, with a lower weight than a labelled line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..errors import SecondSelfError, StructuredOutputError
from ..prompts import render
from ..structured import constrains_output, generate_json
from ..text.grounding import stem
from ..types import Chunk
from .concepts import CONCEPTS, FILLER, tokens
from .evidence import Evidence, PersonNames, person_texts
from .forms import FormField

__all__ = ["Window", "field_terms", "windows", "propose", "MODEL_WEIGHT"]

log = logging.getLogger(__name__)

MODEL_WEIGHT = 0.6         # below a labelled line (0.7-0.85): a model read it, from prose
MAX_NOTES = 4
MAX_VALUE_WORDS = 12
_WINDOW_WORDS = 40
# words that say what shape a value has, not what it is about: "Dentist's name" is about a dentist
_GENERIC = frozenset("name names number no nr num date time size code details detail type info information value per at on "
                     "to from by as if than with without".split())
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_SAMPLING = Sampling(temperature=0.0, max_tokens=80)
# a label that asks for one of these asks for digits ("Shoe size" is not "socks WITHOUT holes"), or a size letter
_SHAPES = frozenset("size number no nr num code time height weight amount count".split())
_SIZE_LETTERS = frozenset("XXS XS S M L XL XXL XXXL".split())
# people a value may belong to instead of the person: "Landlord registration number", "my sister's phone"
_THEIRS = frozenset("""landlord landlady manager supervisor boss partner spouse wife husband mother father mum dad
parent sister brother daughter son child guardian referee colleague friend neighbour neighbor tenant emergency
kin""".split())


@dataclass(frozen=True)
class Window:
    """A line or sentence of one chunk that names the field, as shown to the model."""

    chunk: Chunk
    text: str
    hits: int                      # meaning words of the label it contains (with the chunk's title)
    where: str
    day: str | None                # the day it speaks for (None when unknown)


def field_terms(f: FormField) -> frozenset[str]:
    """The words that carry what a field asks about ("Dentist's name" → dentist), stemmed."""
    return _terms(f.label or f.name)


def _terms(text: str) -> frozenset[str]:
    words = [w for w in tokens(text) if w not in FILLER and len(w) > 1]
    meaning = [w for w in words if w not in _GENERIC]
    return frozenset(stem(w) for w in (meaning or words))


def _synonyms(concept: str | None) -> list[frozenset[str]]:
    """The meaning words of each phrase that names `concept` in the registry ("Gross annual income (NZ$)" is
    the salary concept: a line with "salary" names it). None: no known concept, no synonyms."""
    if concept is None or concept not in CONCEPTS:
        return []
    return [t for t in dict.fromkeys(_terms(p) for p in CONCEPTS[concept].phrases) if t]


def _matches(term: str, words: set[str]) -> bool:
    if term in words:
        return True
    # "physio" names a physiotherapist: a prefix of five letters or more counts, either way round
    return len(term) >= 5 and any(len(w) >= 5 and (w.startswith(term) or term.startswith(w)) for w in words)


def _hits(terms: frozenset[str], text: str) -> int:
    words = {stem(w) for w in tokens(text)}
    return sum(1 for t in terms if _matches(t, words))


def _pieces(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if len(line.split()) <= _WINDOW_WORDS:
            yield line
        else:
            yield from (s for s in _SENTENCE.split(line) if s.strip())


def _cut(text: str, terms: frozenset[str]) -> str:
    """At most _WINDOW_WORDS words of `text`, around the first word of the label."""
    words = text.split()
    if len(words) <= _WINDOW_WORDS:
        return text
    first = next((i for i, w in enumerate(words) if _hits(terms, w)), 0)
    start = max(0, min(first - _WINDOW_WORDS // 3, len(words) - _WINDOW_WORDS))
    return " ".join(words[start:start + _WINDOW_WORDS])


def windows(f: FormField, chunks: Iterable[Chunk], who: PersonNames, *, concept: str | None = None,
            undated: set[int] = frozenset(), at: str | None = None, limit: int = MAX_NOTES) -> list[Window]:
    """The person's lines that name field `f` best (most of the label's meaning words, counting the chunk's
    title and heading; all of one or two, all but one of more; or every word of a phrase that names the
    field's `concept`), best and then newest first. A line with only some of them is about something else:
    "Landlord registration number" is no vehicle's registration."""
    terms = field_terms(f)
    if not terms:
        return []
    need = len(terms) if len(terms) <= 2 else len(terms) - 1
    synonyms = _synonyms(concept)
    found: dict[str, Window] = {}
    for chunk in chunks:
        day = None if chunk.id in undated or not chunk.date else chunk.date[:10]
        if at and day and day > at:
            continue                      # not written yet on the day asked about
        title_hits = {t for t in terms if _hits(frozenset([t]), f"{chunk.title} {chunk.heading}")}
        for text in person_texts(chunk, who):
            for piece in _pieces(text):
                inside = {t for t in terms if _hits(frozenset([t]), piece)}
                hits = len(inside | title_hits)
                if synonyms and hits < need and any(_hits(p, piece) == len(p) for p in synonyms):
                    hits = need                   # named by the concept's own words ("salary" for "income")
                elif not inside or hits < need:
                    continue
                key = piece.casefold()
                w = Window(chunk, _cut(piece, terms), hits, _where(chunk, day), day)
                if key not in found or (w.hits, w.day or "") > (found[key].hits, found[key].day or ""):
                    found[key] = w
    # only the lines that name the field best: "Expense card" is "expenses: Pleo card", not "vegetarian card";
    # a label of three words or more may miss one ("standup 10:00 daily" for "Daily standup meeting")
    best = max((w.hits for w in found.values()), default=0)
    floor = max(need, best - len(terms) // 3)
    ranked = sorted((w for w in found.values() if w.hits >= floor), key=lambda w: (w.hits, w.day or "", w.chunk.id),
                    reverse=True)
    return ranked[:limit]


def _where(chunk: Chunk, day: str | None) -> str:
    title = (chunk.title or chunk.path or "").strip()
    return f"{day or 'undated'}, {chunk.kind}: {title}" if title else f"{day or 'undated'}, {chunk.kind}"


def _hint(f: FormField) -> str:
    extra = [t for t in (f.description, f.placeholder) if t and t.strip() and t.strip() != f.label]
    if f.options:
        extra.append("one of: " + ", ".join(str(text or value) for value, text in f.options[:20]))
    return f"{f.label or f.name}" + (f" ({'; '.join(extra)})" if extra else "")


def propose(model: ChatModel, person: str, f: FormField, found: Sequence[Window], key: str,
            who: PersonNames | None = None) -> tuple[Evidence | None, str]:
    """The model's reading of field `f` from `found` as Evidence under `key`, or (None, why not). A value the
    memory itself marks as past ("Teacher until June: ...", "move the standup from 8:30 to ...") is set
    aside and the model asked once more without that memory."""
    if not found:
        return None, "no memory names this field"
    # newest first, as the prompt says (ranking put the most label words first)
    shown = sorted(found, key=lambda w: w.day or "", reverse=True)
    why = ""
    for _ in range(2):
        evidence, why, past = _read_once(model, person, f, shown, key, who)
        if past is None:
            return evidence, why
        shown = [w for w in shown if w is not past]
        if not shown:
            break
    return None, why


def _read_once(model: ChatModel, person: str, f: FormField, shown: list[Window], key: str,
               who: PersonNames | None) -> tuple[Evidence | None, str, Window | None]:
    """(evidence, "", None), or (None, why not, None), or (None, why, the window) when the value is a past one."""
    notes = "\n".join(f"[{i}] ({w.where}) {w.text}" for i, w in enumerate(shown, 1))
    schema = {"type": "object", "additionalProperties": False, "required": ["note", "value"],
              "properties": {"note": {"enum": list(range(len(shown) + 1))},
                             "value": {"anyOf": [{"type": "string", "maxLength": 120}, {"type": "null"}]}}}
    messages = [Message("system", render("prefill_system", person=person)),
                Message("user", render("prefill_field", notes=notes, field=_hint(f)))]
    try:
        got = _ask(model, messages, schema, f"a value for {f.label or f.name!r}")
    except StructuredOutputError:
        return None, "the model's answer was not valid JSON", None
    except SecondSelfError as e:          # a model that is not installed or fails: the field stays empty
        log.warning("pre-fill: the model could not read %r: %s", f.label or f.name, e)
        return None, f"the model failed ({e})", None
    note, value = got.get("note"), got.get("value")
    if not isinstance(note, int) or not 0 < note <= len(shown) or value is None or not str(value).strip():
        return None, f"the model found no value in {len(shown)} memories that name it", None
    # the memory that holds the value is the one cited (small models miscount notes): the cited one first
    window, text = next(((w, t) for w in (shown[note - 1], *shown) if (t := _verbatim(str(value), w.text))),
                        (None, None))
    if window is None or text is None:
        return None, f"the model's value {str(value)[:40]!r} is not written in any memory it was shown", None
    if not {stem(w) for w in tokens(text)} - field_terms(f) - FILLER:
        return None, f"the model's value {text!r} only repeats the field's label", None
    if (shape := _SHAPES & set(tokens(f.label or f.name))) and not re.search(r"\d", text) \
            and text.upper() not in _SIZE_LETTERS:
        return None, f"the model's value {text!r} has no number, so it is no {min(shape)}", None
    if len(text.split()) > MAX_VALUE_WORDS:
        return None, f"the model's value {text[:40]!r}… is a sentence, not a value", None
    words = field_terms(f).union(*_synonyms(key))
    if not _near(text, window.text, words):
        return None, f"the model's value {text!r} is not next to the field's words in its memory", None
    if who is not None and (key not in CONCEPTS or not CONCEPTS[key].about_other) and \
            (other := _someone_else(text, window.text, who, words)):
        return None, f"the model's value {text!r} is said of {other} in its memory, not of {person}", None
    if _past(text, window.text):
        return None, f"the model's value {text!r} is a past one in the memory it comes from", window
    log.info("pre-fill: %s read %r for %r from chunk %d", model.name, text, f.label or f.name, window.chunk.id)
    how = f"'{_short(window.text)}' in {window.where} (read by {model.name})"
    return Evidence(key, text, (window.chunk.id,), window.day, "model", MODEL_WEIGHT, how), "", None


# "until June:", "used to", "previous": said of what no longer holds (unless "now" follows); "from 8:30 to": what
# changed. "was" is not one: "the secret word was changed to ..." states the current value.
_PAST_BEFORE = re.compile(r"\b(?:until|till|previously|formerly|used to|former|previous|no longer|ex)\b"
                          r"(?![^.;!?\n]*\b(?:now|currently|nowadays|these days)\b)[^.;!?\n]*$", re.I)
_CHANGED_FROM = re.compile(r"\bfrom\s*$", re.I)
_CHANGED_TO = re.compile(r"^\s*(?:to|->|→)\s", re.I)


def _near(value: str, text: str, terms: frozenset[str], reach: int = 6) -> bool:
    """Whether `value` stands within `reach` words of a word of the label in `text` (a phone number at the
    start of a CV line is not the driving licence named at its end). A window that names the field only in
    its title counts as near."""
    at = text.casefold().find(value.casefold())
    if at < 0:
        return False
    before, after = text[:at].split(), text[at + len(value):].split()
    around = before[-reach:] + after[:reach]
    return any(_hits(terms, w) for w in around) or not any(_hits(terms, w) for w in before + after)


def _someone_else(value: str, text: str, who: PersonNames, label: frozenset[str], reach: int = 6) -> str:
    """Who else `text` says `value` belongs to, within `reach` words before it: another person named as its
    owner ("Bram's phone is ...") or a role ("Landlord registration number ...", "my manager's email"), unless
    the field's own label names that role; "" when nobody else. A name alone is not an owner: the practice
    in "my GP is Dr Anna Whitcombe at Aro Valley Medical Centre" is what a "GP practice" field asks."""
    at = text.casefold().find(value.casefold())
    if at < 0:
        return ""
    before = " ".join(text[:at].split()[-reach:])
    owners = [m.group(1) for pos, mine in who.mentions(before) if not mine
              for m in [re.match(r"([\w-]+(?:\s+[A-Z][\w-]+)*)['’]s\b", before[pos:])]
              if m and not who.names_me(m.group(1))]
    if owners:
        return owners[-1]
    roles = [w for w in tokens(before) if w in _THEIRS and stem(w) not in label]
    return f"the {roles[-1]}" if roles else ""


def _past(value: str, text: str) -> bool:
    """Whether `text` marks `value` as past: a past word earlier in its clause, or "from VALUE to ..."."""
    at = text.casefold().find(value.casefold())
    if at < 0:
        return False
    clause = re.split(r"[.;!?\n]|\s[-–—]\s|\[[ x]\]", text[:at])[-1]
    after = text[at + len(value):]
    return bool(_PAST_BEFORE.search(clause)) or bool(_CHANGED_FROM.search(clause) and _CHANGED_TO.match(after))


def _ask(model: ChatModel, messages: list[Message], schema: dict, what: str) -> dict:
    """The model's JSON answer. A model that constrains its output to the schema is asked once, without the
    schema spelled out in the prompt (its sampling enforces it); others go through `generate_json`."""
    if not constrains_output(model):
        return generate_json(model, messages, schema, attempts=2, sampling=_SAMPLING, what=what)
    raw = complete(model, messages, replace(_SAMPLING, json_schema=schema)).text()
    try:
        got = json.loads(raw)
    except json.JSONDecodeError as e:          # cut off at max_tokens
        raise StructuredOutputError(what, [(raw, str(e))]) from None
    if not isinstance(got, dict):
        raise StructuredOutputError(what, [(raw, "not an object")])
    return got


def _verbatim(value: str, text: str) -> str | None:
    """`value` as written in `text` (case and spacing aside, quotes and end punctuation trimmed), or None."""
    value = " ".join(value.split()).strip(" \"'“”‘’`*.,;:")
    if not value:
        return None
    pattern = r"\s+".join(re.escape(part) for part in value.split())
    m = re.search(rf"(?<!\w){pattern}(?!\w)" if value[0].isalnum() and value[-1].isalnum() else pattern,
                  text, re.IGNORECASE)
    return m.group(0) if m else None


def _short(text: str, limit: int = 70) -> str:
    s = " ".join(text.split())
    return s if len(s) <= limit else s[:limit - 1] + "…"
