"""Judge-free scoring of free-text answers: does the answer contain a gold answer, or did it abstain?

An answer question set is JSON Lines, one question per line (see `examples/*/questions.jsonl`):

    {"id": "h03", "kind": "fact", "question": "When did I start at Forth & Clyde?",
     "answers": ["2 February 2026"], "sources": ["mail/2025-12-05-start-date.eml"], "evidence": "...", "note": "..."}

`kind` is one of KINDS; `answers` lists acceptable variants (empty for an unanswerable question); `sources` and
`evidence` say where the corpus states the answer (for checking the set, not for scoring).

Scoring is containment after normalisation (`normalize`), on both sides alike: case, accents and letters such as
ð/þ/æ/ø, punctuation and citation markers aside; a written date in any common form becomes "14 march 2025"
(weekday dropped, day-first for numeric dates such as 14/03/2025 and 14.03.2025), so a gold "14 March 2025" matches
"2025-03-14", "Friday, March 14th, 2025" and "14/03/2025", and a gold "14 March" matches any of them; thousands
separators and the spaces or hyphens inside digit groups go (£58,500 = 58500, 07700 900417 = 07700900417); number
words up to ninety-nine become digits ("eighty-six" = 86). A gold matches on word boundaries, with an optional
plural "s"/"es" ("wasp" matches "wasp stings" and "wasps", not "wasplike").

Abstention (`is_abstention`): the persona's own flag, or an answer that says it does not know.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .text.dates import find_dates

__all__ = ["KINDS", "AnswerQuestion", "load_answer_questions", "normalize", "contains_answer", "is_abstention"]

KINDS = ("fact", "other-person", "relative-date", "multi-hop", "unanswerable")


@dataclass(frozen=True)
class AnswerQuestion:
    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    evidence: str = ""
    note: str = field(default="", compare=False)

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_answer_questions(path: str | Path) -> list[AnswerQuestion]:
    """Read a question set; a malformed line or an unknown kind is a ConfigError naming the file and line."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            q = AnswerQuestion(str(d["id"]), d["kind"], d["question"], tuple(d.get("answers", ())),
                               tuple(d.get("sources", ())), d.get("evidence", ""), d.get("note", ""))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: not a question ({e}); expected id, kind, question, answers") from e
        if q.kind not in KINDS:
            raise ConfigError(f"{path}:{n}: unknown kind {q.kind!r}; use one of {', '.join(KINDS)}")
        if (q.kind == "unanswerable") == q.answerable:
            raise ConfigError(f"{path}:{n}: an unanswerable question has no answers, every other kind has some")
        out.append(q)
    return out


# -- normalisation ---------------------------------------------------------------------------------------------
_LETTERS = str.maketrans({"ð": "d", "þ": "th", "æ": "ae", "ø": "o", "ß": "ss", "œ": "oe", "ł": "l", "đ": "d",
                          "ı": "i", "’": "'", "‘": "'"})
_MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december"]
_MONTH_RE = (r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
             r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_NUMERIC_DAY_FIRST = re.compile(r"(?<![\d.,/])(\d{1,2})[./](\d{1,2})[./](\d{4})(?![\d/]|\.\d)")
_YEARLESS = re.compile(rf"\b{_MONTH_RE}\s+(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\b(?!:)", re.I)
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_RE}\b", re.I)
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_NUMBER_WORD = re.compile(r"\b(?:(" + "|".join(_TENS[2:]) + r")(?:[- ](" + "|".join(_UNITS[1:10]) + r"))?|("
                          + "|".join(_UNITS) + r"|" + "|".join(_ORDINALS) + r"))\b")


def _month(name: str) -> int:
    return next(i for i, m in enumerate(_MONTH_NAMES, 1) if m.startswith(name.lower().rstrip(".")[:3]))


def _dates(s: str) -> str:
    """Every written date as "14 march 2025" (full) or "14 march" (day and month only)."""
    def day_first(m: re.Match[str]) -> str:
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
        return f" {d} {_MONTH_NAMES[mo - 1]} {y} " if 1 <= d <= 31 and 1 <= mo <= 12 else m[0]

    s = _NUMERIC_DAY_FIRST.sub(day_first, s)
    out, last = [], 0
    for found in find_dates(s):
        out += [s[last:found.start], f" {found.day.day} {_MONTH_NAMES[found.day.month - 1]} {found.day.year} "]
        last = found.end
    s = "".join(out) + s[last:]
    s = _YEARLESS.sub(lambda m: f"{int(m[2])} {_MONTH_NAMES[_month(m[1]) - 1]}", s)
    return _DAY_MONTH.sub(lambda m: f"{int(m[1])} {_MONTH_NAMES[_month(m[2]) - 1]}", s)


def _number_word(m: re.Match[str]) -> str:
    if m[1]:
        return str(_TENS.index(m[1]) * 10 + (_UNITS.index(m[2]) if m[2] else 0))
    return str(_ORDINALS[m[3]] if m[3] in _ORDINALS else _UNITS.index(m[3]))


def normalize(text: str) -> str:
    """Lowercase words and digits separated by single spaces, dates and numbers in one form (module docstring)."""
    s = unicodedata.normalize("NFKD", text.casefold().translate(_LETTERS))
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = re.sub(r"\[\d+\]", " ", s)  # citation markers
    s = _dates(s)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # thousands separators
    s = re.sub(r"(?<=\d)\.0+(?!\d)", "", s)  # 740.00 = 740
    s = re.sub(r"(?<=\d)[ -](?=\d)", "", s)  # digit groups of one number (phone numbers, postcodes)
    s = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", r"\1", s)
    s = _NUMBER_WORD.sub(_number_word, s)
    s = re.sub(r"(?<=\d)\.(?=\d)", "\0", s)  # keep decimal points through the punctuation strip
    s = re.sub(r"[^\w\0]+", " ", s).replace("\0", ".").replace("_", " ")
    return " ".join(s.split())


def contains_answer(answer: str, golds: Iterable[str]) -> bool:
    """Whether the normalised answer contains any normalised gold variant on word boundaries. A full-date gold
    also matches its day and month written without a year ("25 October" for "25 October 2025"), not with
    another year."""
    text = normalize(answer)
    for gold in golds:
        g = normalize(gold)
        if g and re.search(rf"(?<![\w.]){re.escape(g)}(?:e?s)?(?![\w]|\.\d)", text):
            return True
        day_month = re.fullmatch(rf"(\d{{1,2}} (?:{'|'.join(_MONTH_NAMES)})) \d{{4}}", g)
        if day_month and re.search(rf"(?<![\w.]){day_month[1]}(?! \d)(?!\w)", text):
            return True
    return False


# -- abstention ------------------------------------------------------------------------------------------------
_ABSTAIN = re.compile(
    r"\bi (?:do not|don ?t|dont) (?:know|remember|recall|have (?:any |that |this |enough )?(?:information|details|"
    r"record|note|memory))"
    r"|\bi (?:am not|m not) sure\b|\bi (?:can ?not|can ?t|could not|couldn ?t) (?:find|tell|say|remember|recall)"
    r"|\bi have no (?:idea|information|record|memory|note)"
    r"|\b(?:my |the )?(?:memories|notes|records) (?:do not|don ?t|does not|doesn ?t) (?:say|mention|tell|contain|"
    r"include|show)"
    r"|\bnot (?:mentioned|stated|recorded|specified|given|written) (?:in|anywhere)"
    r"|\bno (?:information|record|mention|memory|note) (?:of|about|on|in)\b")


def is_abstention(text: str, abstained: bool = False) -> bool:
    """True when the persona abstained (its flag) or the answer says it does not know."""
    if abstained:
        return True
    s = re.sub(r"[’']", " ", unicodedata.normalize("NFKD", text).casefold())
    return bool(_ABSTAIN.search(" ".join(s.split())))
