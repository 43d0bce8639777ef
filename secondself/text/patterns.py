"""Pattern tables: a list of regular expressions, each reading one kind of statement, run over a text in order.

A table row is a `Pattern`: what a match says (`key`: a predicate such as "lives_in", a concept such as
"date_of_birth"), the compiled `regex`, and two words the table's owner gives meaning to — `kind` (how to read
a match: "start", "state", "end") and `check` (what must still hold of it: "ensemble", "first_person").
`find` runs a table over one text and yields every (pattern, match), in table order and then text order, that
no hedge weakens: a word of the caller's `hedge` regex ("not", "would", "if", "maybe", ...) between the start of
the match's line and the match (or its `hedge_to` group, where the value starts), or, with `quotes`, an open
quotation mark before the match ("she said “I live in Lisbon”" is not the person's statement).

The boundary: this module knows no patterns and no language; the tables (memory/observe.py for life writing,
prefill/evidence.py for form values) and their hedge words live with their owners.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Pattern", "pattern", "find", "hedged"]


@dataclass(frozen=True)
class Pattern:
    """One row of a pattern table (see the module docstring)."""

    key: str
    regex: re.Pattern[str]
    kind: str = ""
    check: str = ""


def pattern(key: str, regex: str, kind: str = "", check: str = "", flags: int = 0) -> Pattern:
    return Pattern(key, re.compile(regex, flags), kind, check)


def hedged(text: str, start: int, end: int, hedge: re.Pattern[str] | None, *, quotes: bool = False) -> bool:
    """Whether the statement at `start` is weakened: a `hedge` match in `text` from the start of `start`'s line
    up to `end`, or (with `quotes`) an odd number of double quotation marks before `start` on that line."""
    line_start = text.rfind("\n", 0, start) + 1
    if quotes:
        before = text[line_start:start]
        if (before.count('"') + before.count("“") - before.count("”")) % 2 == 1:
            return True
    return hedge is not None and bool(hedge.search(text[line_start:end]))


def find(table: Iterable[Pattern], text: str, *, hedge: re.Pattern[str] | None = None, hedge_to: str = "",
         quotes: bool = False) -> Iterator[tuple[Pattern, re.Match[str]]]:
    """Every unhedged match of every pattern of `table` in `text`: patterns in table order, matches in text order.
    The hedge window ends at the match's start, or at the start of its group `hedge_to` when given."""
    for p in table:
        for m in p.regex.finditer(text):
            if hedged(text, m.start(), m.start(hedge_to) if hedge_to else m.start(), hedge, quotes=quotes):
                continue
            yield p, m
