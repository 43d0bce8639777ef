"""How facts and dates are said in English: the predicates of layer-1 facts with their phrases, and dates as
people write them.

One phrasing for every layer that says a fact: the biography and status (memory/profile.py), the persona's
context (memory/context.py), the training templates (train/templates.py) and the bridge's disclosures and
critiques (bridge/), so the personal model is trained on the sentences the bridge later shows it.

- `verb_phrase(fact, form)`: "lives in Lisbon" (form 0, third person), "live in Lisbon" (1, second person),
  "lived in Lisbon" (2, past); a title takes its article ("works as a data analyst").
- `present(fact)` / `past(fact)`: the first person, after "I": "am in a relationship with Tomás",
  "lived in Porto".
- `human_date("2025-07-01")` → "1 July 2025" ("2025-07" → "July 2025", "2021" → "2021"); `month_name`.
  Month names are English and fixed, never the process locale's.
- `and_list(["A", "B", "C"])` → "A, B and C".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import Fact

__all__ = ["Predicate", "PREDICATES", "verb_phrase", "present", "past", "human_date", "month_name", "and_list"]


@dataclass(frozen=True)
class Predicate:
    """`functional`: one value at a time (a newer value closes the previous one). `phrase`/`end_phrase`
    read the fact while it holds / once it has ended; `object_kind` is person, place, organization or title."""

    name: str
    functional: bool
    phrase: str
    end_phrase: str
    object_kind: str
    relation: str = ""


PREDICATES: dict[str, Predicate] = {p.name: p for p in (
    Predicate("lives_in", True, "lives in {object}", "lived in {object}", "place"),
    Predicate("works_at", True, "works at {object}", "worked at {object}", "organization"),
    Predicate("job_title", True, "works as {object}", "worked as {object}", "title"),
    Predicate("manager", True, "reports to {object}", "reported to {object}", "person", "manager"),
    Predicate("partner", True, "is in a relationship with {object}", "was in a relationship with {object}",
              "person", "partner"),
    Predicate("plays_in", False, "plays in {object}", "played in {object}", "organization"),
    Predicate("teacher", False, "takes lessons with {object}", "took lessons with {object}", "person", "teacher"),
    Predicate("studied_at", False, "studied at {object}", "studied at {object}", "organization"),
)}


def _second_person(phrase: str) -> str:
    """'lives in X' -> 'live in X', 'is in a ...' -> 'are in a ...' (the first word is the verb)."""
    verb, _, rest = phrase.partition(" ")
    verb = {"is": "are", "has": "have", "was": "were"}.get(verb) or (
        verb[:-3] + "y" if verb.endswith("ies") else verb[:-1] if verb.endswith("s") and not verb.endswith("ss")
        else verb)
    return f"{verb} {rest}".strip()


def verb_phrase(fact: Fact, form: int) -> str:
    """'lives in Lisbon' (form 0), 'live in Lisbon' (1), 'lived in Lisbon' (2), from the predicate's phrases."""
    pred = PREDICATES.get(fact.predicate)
    if pred is None:
        label = fact.predicate.replace("_", " ")
        present, past = f"has {label} {{object}}", f"had {label} {{object}}"
    else:
        present, past = pred.phrase, pred.end_phrase
    obj = fact.object
    if pred is not None and pred.object_kind == "title" and not re.match(r"(?i)(a|an|the)\s", obj):
        obj = ("an " if obj[:1].lower() in "aeiou" else "a ") + obj
    text = (present if form < 2 else past).format(object=obj)
    return _second_person(text) if form == 1 else text


def present(f: Fact) -> str:
    """First person, present: "live in Lisbon", "am in a relationship with Tomás"."""
    return re.sub(r"^are ", "am ", verb_phrase(f, 1))


def past(f: Fact) -> str:
    return verb_phrase(f, 2)


_MONTHS = ("January February March April May June July August September October November December").split()


def human_date(d: str) -> str:
    """"2025-07-01" -> "1 July 2025", "2025-07" -> "July 2025", "2021" -> "2021"."""
    if len(d) >= 10:
        return f"{int(d[8:10])} {_MONTHS[int(d[5:7]) - 1]} {d[:4]}"
    return f"{_MONTHS[int(d[5:7]) - 1]} {d[:4]}" if len(d) >= 7 else d[:4]


def month_name(d: str) -> str:
    return human_date(d[:7])


def and_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
