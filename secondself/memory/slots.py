"""Slots: the short texts of layer 1 a teacher model writes, and the checks they pass before they are kept.

A slot is one value: a topic's name or summary, a shade's role or description, the biography (third and
second person), the status (recent and earlier). `ask()` asks the teacher for one or more slots in one
request: with the model's own chat template and a system prompt, as JSON constrained to a schema where the
engine can (llama.cpp), or repaired JSON from a strong model, or field by field for a small one (the 135M).

Every value is then checked against the evidence it was made from (`label_problem`, `text_problem`): every
name and number must occur in the evidence (ISO dates there also count in words: "July 2025"), enough of its
words must, it must not be boilerplate (the instructions, "notes", "memories") and must not loop. A value
that fails is replaced by the caller's deterministic fallback and counted (`Slots`), so the build report
says how much of layer 1 the model wrote; the reason is logged at DEBUG.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..backends.chat import ChatModel, Message, Sampling
from ..errors import StructuredOutputError
from ..structured import Field, constrains_output, fill_fields, generate_json
from ..text.grounding import content_overlap, root, stem, unsupported_specifics
from ..text.phrasing import human_date
from ..text.words import STOPWORDS

__all__ = ["Slots", "ask", "label_problem", "text_problem", "names_not_in", "with_date_words", "sentence_case",
           "copied", "copied_share", "repetitive", "until_loop", "first_person", "SLOT_KINDS"]

log = logging.getLogger(__name__)

SLOT_KINDS = ("topic name", "topic summary", "shade role", "shade description", "biography",
              "biography to you", "status recent", "status earlier")


@dataclass
class Slots:
    """Slots filled by the teacher vs by deterministic fallbacks, in total and per kind of slot."""

    teacher: int = 0
    fallback: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)   # kind -> [teacher, fallback]

    def take(self, ok: bool, kind: str = "other") -> bool:
        counts = self.by_kind.setdefault(kind, [0, 0])
        if ok:
            self.teacher += 1
            counts[0] += 1
        else:
            self.fallback += 1
            counts[1] += 1
        return ok

    def report(self) -> dict:
        total = self.teacher + self.fallback
        order = {k: i for i, k in enumerate(SLOT_KINDS)}
        return {"teacher": self.teacher, "fallback": self.fallback, "total": total,
                "teacher_share": round(self.teacher / total, 3) if total else None,
                "by_kind": {k: {"teacher": t, "fallback": f}
                            for k, (t, f) in sorted(self.by_kind.items(), key=lambda kv: order.get(kv[0], 99))}}


# -- asking ----------------------------------------------------------------------------------------------

def _schema(fields: Sequence[Field]) -> dict:
    # maxLength bounds what a constrained engine can write: a label cannot ramble into a paragraph
    props = {f.name: {"type": "string", "maxLength": 8 * f.max_words} for f in fields}
    for f in fields:
        if f.starts:   # a small model told to write about Maya in the third person copies "I baked ..." otherwise
            rest = 8 * f.max_words - len(f.starts) - 1
            props[f.name]["pattern"] = f"^{re.escape(f.starts)}[ ’'][^\"\\\\\\n]{{1,{rest}}}$"
    return {"type": "object", "properties": props, "required": [f.name for f in fields],
            "additionalProperties": False}


def ask(model: ChatModel | None, system: str, user: str, fields: Sequence[Field], *, as_json: bool) -> dict:
    """The slots `fields` from the teacher, as {name: text}; {} when there is no teacher or its output is
    malformed (the callers' fallbacks take over). A teacher that cannot be reached raises BackendError.

    JSON when `as_json` (strong models) or when the engine constrains output to the schema; then the
    system prompt goes in its own message, so the model's chat template frames it. Otherwise each field is
    filled by one short continuation (small models), from `user` alone."""
    if model is None:
        return {}
    constrained = constrains_output(model)
    if as_json or constrained:
        messages = [Message("system", system), Message("user", user)] if system else [Message("user", user)]
        budget = min(2048, 32 + sum(3 * f.max_words for f in fields))
        try:
            schema = _schema(fields)
            value = generate_json(model, messages, schema, attempts=1 if constrained else 2,
                                  sampling=Sampling(temperature=0.0, max_tokens=budget), what="layer-1 slots")
            out = {}
            for k, v in value.items():
                if not isinstance(v, str) or not v.strip():
                    continue
                if len(v) >= schema["properties"][k]["maxLength"]:   # the limit cut it off: whole sentences only
                    log.debug("slot %r from %s was cut off at its length limit: %r", k, model.name, v)
                    v = v[:max((v.rfind(p) for p in (". ", "! ", "? ")), default=-1) + 1]
                v = until_loop(" ".join(v.split()))
                if v:
                    out[k] = v
            return out
        except StructuredOutputError as e:
            log.debug("malformed slots from %s: %s", getattr(model, "name", "?"), e)
            if constrained:
                return {}
    try:
        return {k: v for k, v in fill_fields(model, user, fields).items() if isinstance(v, str)}
    except StructuredOutputError as e:
        log.debug("malformed slots from %s: %s", getattr(model, "name", "?"), e)
        return {}


# -- grounding ------------------------------------------------------------------------------------------

_ISO = re.compile(r"\b\d{4}-(\d{2})(?:-\d{2})?\b")


def with_date_words(evidence: str) -> str:
    """`evidence` plus every ISO date in it written out ("2025-07-01" also as "1 July 2025"), so a model
    that writes a date in words is not taken for inventing one."""
    extra = [human_date(m.group(0)) for m in _ISO.finditer(evidence) if 1 <= int(m.group(1)) <= 12]
    return evidence + ("\n" + "; ".join(dict.fromkeys(extra)) if extra else "")


_END_WORDS = frozenset("a an the of is for to and in on with about my this that".split())

# Words that may start a sentence without being a name: a capitalized word there is checked against the
# evidence like any name unless it is one of these (or occurs in the evidence in lower case).
_STARTERS = STOPWORDS | frozenset("""one two several few many most much yet still now today recently lately
currently earlier later meanwhile besides outside finally first next last often sometimes usually always never
just even only apart beyond along alongside despite like unlike instead overall together""".split())


_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty").split()
_MEASURE = re.compile(r"\b(\d+)-([a-z]+)(?:-[a-z]+)*\b", re.I)    # "20-year-old", "3-week", "60-day"


def names_not_in(text: str, evidence: str) -> list[str]:
    """Names and numbers of `text` that `evidence` lacks: `grounding.unsupported_specifics`, plus capitalized
    words at the start of a sentence (which it skips) unless they are ordinary sentence starters, plus a
    measure ("20-year-old") whose number and unit the evidence never writes together ("3 weeks" and "three
    weeks" back "3-week", and so does the number on its own, "I'm 32,"): a number that the notes write only in
    a date or with another unit ("20 minutes") is no support for an age."""
    missing = unsupported_specifics(text, evidence)
    ev = evidence.casefold()
    for m in _MEASURE.finditer(text):
        n, unit = int(m.group(1)), m.group(2).casefold()
        number = f"(?:{n}|{_NUMBER_WORDS[n]})" if n < len(_NUMBER_WORDS) else str(n)
        alone = rf"(?<![\w./:-]){n}(?![\w./:-])(?!\s*[\w%€$£])"     # "I'm 32," backs "32-year-old"
        if not re.search(rf"\b{number}[\s-]+{re.escape(unit)}", ev) and not re.search(alone, ev):
            missing.append(m.group(0))
    for m in re.finditer(r"(?:^|[.!?:;]\s+|\n\s*)[\"“(]?([A-ZÀ-Ý][\w'’-]*)", text):
        word = m.group(1)
        low = word.casefold()
        if low in _STARTERS or stem(word) in _STARTERS or low in ev or stem(word) in ev:
            continue
        missing.append(word)
    return list(dict.fromkeys(missing))


def names_in_lower_case(text: str, evidence: str) -> list[str]:
    """Words of `text` in lower case that the evidence writes only capitalized, and capitalized in mid-sentence
    ("lisbon" for "in Lisbon"): text that lower-cases names hides them from the names check."""
    low = {w for w in re.findall(r"\b[a-zà-ÿ][\w'’-]{2,}", text)}
    if not low:
        return []
    written = set(re.findall(r"\b[\w'’-]{3,}", evidence))
    named = set(re.findall(r"(?<=[\w,] )[A-ZÀ-Ý][\w'’-]{2,}", evidence))   # after a word or a comma: a name
    return sorted(w for w in low if w not in written and _upper(w) in named)


def _upper(word: str) -> str:
    return word[:1].upper() + word[1:]


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def copied(value: str, boiler: str, n: int) -> bool:
    """Does `value` repeat any n words in a row from `boiler` (the instructions it was given)?"""
    if not boiler:
        return False
    b, v = _words(boiler), _words(value)
    grams = {tuple(b[i:i + n]) for i in range(len(b) - n + 1)}
    return any(tuple(v[i:i + n]) in grams for i in range(len(v) - n + 1))


def copied_share(value: str, source: str, n: int) -> float:
    """The share of `value`'s words that stand in runs of n or more words copied from `source`."""
    b, v = _words(source), _words(value)
    grams = {tuple(b[i:i + n]) for i in range(len(b) - n + 1)}
    covered = [False] * len(v)
    for i in range(len(v) - n + 1):
        if tuple(v[i:i + n]) in grams:
            covered[i:i + n] = [True] * n
    return sum(covered) / len(v) if v else 0.0


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Ý\"“])")


def until_loop(text: str) -> str:
    """`text` up to the first sentence that repeats eight words of an earlier one: greedy decoding that loops
    says its piece first, then starts over ("Maya plays the cello … Maya plays the cello …"); five words
    may rightly come twice ("a data engineer at Tidewater Labs")."""
    kept: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for sentence in _SENTENCE_END.split(text):
        words = [w for w in _words(sentence) if not w.isdigit()]
        grams = {tuple(words[i:i + 8]) for i in range(len(words) - 7)}
        if kept and grams & seen:
            log.debug("cut a loop from: %r", text)
            break
        kept.append(sentence)
        seen |= grams
    return " ".join(kept)


def repetitive(value: str) -> bool:
    """A loop: the same four words twice in a short text, the same eight twice in a long one (numbers left
    out: "until 31 August 2025" may rightly come twice)."""
    v = [w for w in _words(value) if not w.isdigit()]
    n = 4 if len(v) <= 40 else 8
    grams = [tuple(v[i:i + n]) for i in range(len(v) - n + 1)]
    return len(grams) != len(set(grams))


def text_problem(value: object, evidence: str, *, min_overlap: float, boiler: str = "", min_words: int = 4,
                 max_words: int = 60, third_person: bool = True) -> str:
    """Why `value` is not acceptable grounded prose ("" when it is): too short or long, a name or number
    not in the evidence, too few of its words in it, copied instructions (4 words in a row), a loop, cut
    off after a function word, names written in lower case (two or more: text that lower-cases names hides
    them from the names check), or (`third_person`) written as "I"."""
    if not isinstance(value, str) or not value.strip():
        return "empty"
    n = len(value.split())
    if not min_words <= n <= max_words:
        return f"{n} words (want {min_words}-{max_words})"
    if value.lower().startswith("fake"):
        return "a fake echo"
    if re.search(r"[{}<>\[\]|\\]", value) or not re.match(r"[\"“'(]?\w", value):
        return "not prose (markup or code)"
    if foreign := {ch for ch in value if ord(ch) >= 0x2E80 and ch not in evidence}:
        return f"a script its evidence is not written in ({''.join(sorted(foreign))[:5]})"
    evidence = with_date_words(evidence)
    if missing := names_not_in(value, evidence):
        return f"names or numbers not in its evidence: {', '.join(missing[:5])}"
    if len(lowered := names_in_lower_case(value, evidence)) >= 2:   # one may be a word a form capitalizes
        return f"names written in lower case: {', '.join(lowered[:5])}"
    if (overlap := content_overlap(value, evidence)) < min_overlap:
        return f"only {overlap:.0%} of its words are in its evidence"
    if copied(value, boiler, 4):
        return "repeats the instructions"
    if repetitive(value):
        return "repeats itself"
    if _words(value)[-1] in _END_WORDS and not re.search(r"[.!?…\"”)]$", value):
        return "cut off"
    if third_person and first_person(value):
        return "in the first person (a note copied, not told)"
    return ""


def first_person(text: str) -> bool:
    """Does `text` speak as its writer ("I", "my", "me")? Layer-1 text is told about the person."""
    return bool(re.search(r"\b(?:I|I'm|I've|I'd|I'll)\b|\b(?:my|me|mine|myself)\b", text.replace("’", "'"), re.I))


def sentence_case(label: str, evidence: str, *, first: bool = True) -> str:
    """'Japan Trip' -> 'Japan trip': a capital stays only where the evidence writes the word capitalized (a
    name), and on the first word when `first` (a topic name; a role is lower case: 'Data engineer' -> 'data
    engineer')."""
    words = label.split(" ")
    return " ".join(w if not w[:1].isupper() or (i == 0 and first) or re.search(rf"\b{re.escape(w)}\b", evidence)
                    else w[:1].lower() + w[1:] for i, w in enumerate(words))


# labels made only of these say nothing about a topic
_GENERIC = frozenset("""note notes memory memories thought thoughts topic topics journal journals entry entries
misc miscellaneous various things stuff summary summaries personal life daily update updates record records
message messages text texts document documents information info details detail general other""".split())


def label_problem(value: object, evidence: str, *, person: str, max_words: int, boiler: str = "") -> str:
    """Why `value` is not an acceptable short label (topic name, role) — "" when it is: a few words, no
    sentence punctuation, not ending mid-phrase, every capitalized word (after the first) and number in the
    evidence, its longer words in it too (or a word of the same four-letter stem: "cellist" for "cello"; one
    may be missing from a label of three or more) and names in their case, something besides generic words and the person's name, and not copied from the instructions
    (two words in a row, as in an example there) unless the evidence backs every word."""
    if not isinstance(value, str) or not value.strip():
        return "empty"
    words = _words(value)
    if not 1 <= len(words) <= max_words:
        return f"{len(words)} words (want 1-{max_words})"
    if value.lower().startswith("fake") or re.search(r"[:;!?\"“”()\[\]{}<>=#*_/\\|]", value):
        return "not a label"
    if words[-1] in _END_WORDS or words[0] in {"this", "these", "it"}:
        return "not a label (ends mid-phrase)"
    evidence = with_date_words(evidence)
    ev = evidence.casefold()
    own = {w for w in _words(person)}
    specific = [w for w in words if len(w) >= 3 and w not in own and w not in _STARTERS
                and w not in _GENERIC and stem(w) not in _GENERIC]
    if not specific:
        return "generic"
    # the first word is capitalized in any case: it is checked below, as a word of the evidence
    names = [w for i, w in enumerate(re.findall(r"[^\W_][\w'’-]*", value))
             if (w[:1].isupper() and i > 0) or w[:1].isdigit()]
    missing = [w for w in names if w.casefold() not in ev and stem(w) not in ev]
    if missing and len(names) == len([w for w in words[1:] if len(w) >= 4 or w[:1].isdigit()]):
        # Title Case carries no sign of what is a name ("Wrist Recovery"): there, a word that begins with the
        # first five letters of a word of the evidence ("Breakup" after "break") is taken for an ordinary word
        starts = {w[:5] for w in _words(evidence) if len(w) >= 5}
        roots = {root(w) for w in _words(evidence)}
        missing = [w for w in missing if (len(w) < 5 or w.casefold()[:5] not in starts) and root(w) not in roots]
    if missing:
        return f"names or numbers not in its evidence: {', '.join(missing)}"
    longer = [w for w in words if len(w) >= 4]
    stems = {w[:4] for w in _words(evidence) if len(w) >= 4}
    roots = {root(w) for w in _words(evidence)}
    grounded = [w for w in longer if w in ev or stem(w) in ev or w[:4] in stems    # "cellist" from "cello"
                or root(w) in roots]                                               # "baking" from "baked"
    if value[:1].isupper() and len(words[0]) >= 4 and words[0] not in grounded:    # a name, or nothing from here
        return f"names or numbers not in its evidence: {value.split()[0]}"
    # every longer word from the notes (one may be the label's own in three or more): a name written in lower
    # case ("london flat") escapes the names check above, not this one
    if len(grounded) < len(longer) - (len(longer) >= 3):
        return f"only {len(grounded)} of its {len(longer)} words are in its evidence"
    if len(lowered := names_in_lower_case(value, evidence)) >= 2:
        return f"names written in lower case: {', '.join(lowered)}"
    if len(grounded) < len(longer) and copied(value, boiler, 2):
        return "copied from the instructions"
    return ""
