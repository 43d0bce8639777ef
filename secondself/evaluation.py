"""Judge-free evaluation helpers on a labelled query set (like `examples/maya/queries.jsonl`).

Query set format, one JSON object per line:
    {"id": "q01", "question": "...", "answer": "reference answer", "answerable": true,
     "relevant": [{"path": "journal/2025-03-02.md", "contains": "a phrase from the passage"}]}

A chunk is relevant to an entry when its file path (before any `#key`) equals `path` and its heading or
text contains the phrase (case-insensitive, whitespace-normalized). Labels name phrases rather than chunk ids, so they
survive re-chunking.

Pre-fill gold (like `examples/maya/forms/gold.json`): {"fields": {name: {"label", "value" (null when the
memories do not support one), "accept": [other writings]}}}. `gold_key` finds a result field's entry (by name,
or by label for a plain field list) and `gold_matches` compares values the way a person would: case, accents
and punctuation aside, phone numbers by their digits, lists as sets.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .types import Chunk

__all__ = ["LabelledQuery", "load_queries", "is_relevant", "relevant_entries", "first_relevant_rank", "token_f1",
           "normalize_answer", "contains_match", "gold_key", "gold_matches"]


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    question: str
    answer: str
    answerable: bool
    relevant: tuple[dict, ...]
    type: str = ""


def load_queries(path: str | Path) -> list[LabelledQuery]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(LabelledQuery(d["id"], d["question"], d.get("answer", ""), bool(d.get("answerable", True)),
                                     tuple(d.get("relevant", ())), d.get("type", "")))
    return out


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def relevant_entries(chunk: Chunk, entries: Sequence[dict]) -> set[int]:
    """Indices of the labelled entries this chunk answers. The heading counts as text: a DOCX heading
    line is stored as the heading of the chunks below it."""
    text = _norm(chunk.heading + " " + chunk.text)
    path = chunk.path.split("#")[0]
    return {i for i, e in enumerate(entries) if path == e["path"] and _norm(e["contains"]) in text}


def is_relevant(chunk: Chunk, query: LabelledQuery) -> bool:
    return bool(relevant_entries(chunk, query.relevant))


def first_relevant_rank(chunks: Iterable[Chunk], query: LabelledQuery) -> int | None:
    """1-based rank of the first relevant chunk, or None."""
    for rank, c in enumerate(chunks, 1):
        if is_relevant(c, query):
            return rank
    return None


def normalize_answer(s: str) -> list[str]:
    """SQuAD-style: lowercase, drop punctuation, articles and citation markers, split on whitespace."""
    s = re.sub(r"\[\d+\]", " ", s.lower())
    s = "".join(" " if ch in string.punctuation else ch for ch in s)
    return [w for w in s.split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction), normalize_answer(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


_DATE_WORD = re.compile(r"\d[\d.,:/-]*|January|February|March|April|May|June|July|August|September|October|"
                        r"November|December")


def contains_match(prediction: str, reference: str, question: str = "") -> bool:
    """Does `prediction` state what `reference` states? A reference that starts with "Yes"/"No" (the answer
    to a yes/no question) needs the same word first, nothing more (what follows it, "Now I live in ...",
    is more than was asked). Otherwise the key is the reference's names (as the grounding check reads
    them) that the question does not already name, or where it names none, its dates: every word of the
    key must occur in the prediction. A reference without a key is matched by token F1 >= 0.5."""
    from .text.grounding import stem, unsupported_specifics

    specifics = unsupported_specifics(reference, question)
    names = [w for w in specifics if not _DATE_WORD.fullmatch(w)]
    polar = re.match(r"\s*(yes|no)\b", reference, re.IGNORECASE)
    if polar:
        return bool(re.match(rf"\W*{polar.group(1)}\b", prediction, re.IGNORECASE))
    key = names or specifics
    if not key:
        return token_f1(prediction, reference) >= 0.5
    said = prediction.lower()
    return all(w.lower() in said or stem(w) in said for w in key)


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


# -- pre-fill gold ----------------------------------------------------------------------------------------------
def _form_norm(value: object) -> str:
    s = unicodedata.normalize("NFKD", str(value))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w@+]+", " ", s).split())


def _items(value: object) -> set[str]:
    parts = value if isinstance(value, list) else re.split(r",\s*", str(value))
    return {_form_norm(p) for p in parts if _form_norm(p)}


def gold_key(field: str, gold: dict[str, dict]) -> str | None:
    """The gold entry for a result field: by its name (schema, HTML form) or by label (a plain field list)."""
    if field in gold:
        return field
    wanted = _form_norm(field)
    return next((key for key, g in gold.items() if _form_norm(g["label"]) == wanted), None)


def gold_matches(value: object, gold: dict) -> bool:
    """Whether a filled value equals the gold value or one of its accepted writings."""
    for want in [gold["value"], *gold.get("accept", [])]:
        if isinstance(want, list) or isinstance(value, list):
            if _items(value) == _items(want):
                return True
        elif re.fullmatch(r"\+?[\d ()-]{7,}", str(want)):
            if re.sub(r"\D", "", str(value)) == re.sub(r"\D", "", str(want)):
                return True
        elif _form_norm(value) == _form_norm(want):
            return True
    return False
