"""Grounding checks: is generated text supported by the evidence it was made from?

Used wherever a model writes text that must not invent anything (the persona's answers, layer-1
biographies and summaries). The check is deliberately literal: numbers and capitalized names in the
output must occur in the evidence. It cannot prove a sentence true, but it catches the typical small-model
failure — a confident, specific detail that appears nowhere in the memories.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["unsupported_specifics", "content_overlap", "stem", "root", "echoed_instructions",
           "unattributed_identifiers"]

_SPECIFIC = re.compile(r"\b(\d[\d.,:/-]*\d|\d)\b|(?<![.!?]\s)(?<!^)\b([A-ZÀ-Ý][\w'’-]+)")
_ALLOWED_CAPS = {"I", "I'm", "I've", "I'd", "I'll", "My", "The", "A", "An", "It", "Yes", "No", "And", "But",
                 "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "ChatGPT"}


# "Calvin's", "Calvin’s", "James'": the possessive ending is not part of the name
_POSSESSIVE = re.compile(r"(?:['’]s|(?<=s)['’])$", re.IGNORECASE)


def stem(word: str) -> str:
    """`word` lower-cased, without a possessive ending ("Calvin's", "James'") and without one plural "s"
    ("notes", not "boss"): the form in which a word of an answer is looked up in its evidence."""
    w = _POSSESSIVE.sub("", word.lower())
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


_SUFFIX = re.compile(r"(?:ings?|ers?|ery|ed|ies|es|s|e|y)$")


def root(word: str) -> str:
    """`word` lower-cased without one common English ending ("baking", "baked", "baker", "bakery" -> "bak"),
    at least three letters left: two forms of one word share their root, where `stem` keeps them apart."""
    w = _POSSESSIVE.sub("", word.lower())
    cut = _SUFFIX.sub("", w)
    return cut if len(cut) >= 3 else w


def unsupported_specifics(answer: str, evidence: str) -> list[str]:
    """Numbers and capitalized names in `answer` (not at a sentence start) that `evidence` lacks."""
    ev = evidence.lower()
    missing = []
    for m in _SPECIFIC.finditer(answer):
        tok = m.group(1) or m.group(2)
        if not tok or tok in _ALLOWED_CAPS or re.fullmatch(r"\[\d+\]", tok):
            continue
        if m.group(1) and answer[max(0, m.start() - 1):m.start()] == "[":
            continue  # a citation marker
        if tok.lower() not in ev and stem(tok) not in ev:
            missing.append(tok)
    return list(dict.fromkeys(missing))


_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)


def content_overlap(text: str, evidence: str) -> float:
    """Share of `text`'s longer words (4+ letters) that occur in `evidence` (1.0 for text without any)."""
    words = {w.casefold() for w in _WORD.findall(text)}
    if not words:
        return 1.0
    ev = evidence.casefold()
    return sum(1 for w in words if w in ev or stem(w) in ev) / len(words)


_ECHO_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def echoed_instructions(text: str, instructions: str, n: int = 4) -> str:
    """The first run of `n` words in a row that `text` repeats from `instructions` ("" when none).

    `instructions`: the prompt's instruction text only, one fragment per line (runs do not cross lines) —
    never the memories, which an answer may rightly quote. Small models answer with their instructions
    ('Tim ("I", "my") in one short sentence, using only the notes.'); such a draft says nothing."""
    grams: set[tuple[str, ...]] = set()
    for line in instructions.splitlines():
        words = [w.casefold() for w in _ECHO_WORD.findall(line)]
        grams.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    said = [w.casefold() for w in _ECHO_WORD.findall(text)]
    return next((" ".join(said[i:i + n]) for i in range(len(said) - n + 1) if tuple(said[i:i + n]) in grams), "")


# "What is my passport number?", "Wiremu's new work number", "my bank sort code": the identifier's label
_ID_QUESTION = re.compile(r"\b(?:my|our|his|her|their|[^\W\d_]+'s)\s+((?:[\w-]+\s+){0,3}?[\w-]+)\s+"
                          r"(?:number|code|no\.?|id|iban|pin)\b", re.IGNORECASE)
_ID_PLAIN = frozenset("new old current own personal main home uk us eu".split())
_PHONE = frozenset("mobile phone cell cellphone telephone".split())
_PHONE_WORDS = _PHONE | frozenset("number tel sim".split())
_ID_RUN = re.compile(r"[\w-]*\d[\w-]*(?:[ ][\w-]*\d[\w-]*)*")


def _sentence_before(text: str, at: int, window: int) -> str:
    """The part of the sentence (or line) that ends at `at`, at most `window` characters."""
    head = text[max(0, at - window):at]
    # a list flattened into one line ("- [x] Bank: Monzo - [x] Energy: Octopus, account A-3F…"): items end too
    cut = max(head.rfind("\n"), *(head.rfind(p) for p in (". ", "! ", "? ", "; ", " - ", " • ", " * ")))
    return head[cut + 1:]


def unattributed_identifiers(question: str, answer: str, passages: Sequence[str], *, window: int = 160) -> list[str]:
    """Identifiers in `answer` (a run with three or more digits: "07700 900417", "A-3F2C91D7") to a question
    that asks for a labelled one ("my passport number") which no passage writes by that label (earlier in the
    same sentence or line, or just after it on its line): a model that has no passport number in its memories
    otherwise answers with the phone number it does have. [] when the question asks for no labelled
    identifier, or every identifier is written by its label."""
    m = _ID_QUESTION.search(question)
    if not m:
        return []
    keys = {w for w in re.findall(r"[^\W\d_]+", m.group(1).casefold()) if w not in _ID_PLAIN and len(w) > 1}
    if keys & _PHONE:
        keys |= _PHONE_WORDS
    if not keys:
        return []
    label = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, keys))) + r")", re.IGNORECASE)
    texts = [re.sub(r"[ \t]+", " ", p) for p in passages]
    missing = []
    for run in _ID_RUN.findall(answer):
        run = run.strip("-")
        if sum(ch.isdigit() for ch in run) < 3 or re.fullmatch(r"(?:19|20)\d\d", run):
            continue
        at = [(t, i.start()) for t in texts for i in re.finditer(re.escape(run), t, re.IGNORECASE)]
        if not at:
            continue   # not written anywhere: `unsupported_specifics` says so
        near = any(label.search(_sentence_before(t, s, window)) or label.search(t[s:s + len(run) + 25].split("\n")[0])
                   for t, s in at)
        if not near:
            missing.append(run)
    return missing
