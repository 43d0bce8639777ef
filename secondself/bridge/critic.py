"""The critic's checks: an expert's answer against what the person's memory holds. No model is involved;
`bridge.critique` may have a model reword the result, checked against it.

Three kinds of point, each in the first person and each a disclosure (it goes back to the expert in a second
round), so each passes the same `Policy` as `enhance`:
- wrong, ended: the answer assumes something that has ended ("a table in Porto" after the move to Lisbon).
  Ended facts about other people (a former partner, manager or teacher) count only when the request is about
  them: the expert has no business learning of a break-up because it named a restaurant after someone.
- wrong, contradiction: it suggests what a preference rules out (`CONFLICTS`: a steakhouse for a vegetarian)
  or an allergen; a negated mention ("no meat", "a vegetarian alternative to steak", "peanut-free") is not one.
- missed: a detail relevant to the request (as `enhance` would disclose it) that the answer does not mention.

Limits: English words; a contradiction is a word in a small table, so "a churrascaria" is caught and
"grilled sardines" is, but a dish named only by its name ("francesinha") is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..store import Store
from ..text.phrasing import month_name, present
from ..types import Profile
from .disclosure import (
    NEEDS,
    Item,
    Policy,
    Selection,
    admit,
    allowed_sources,
    current_facts,
    mentions,
    provenance,
    select,
)

__all__ = ["Point", "check_answer", "CONFLICTS"]


@dataclass(frozen=True)
class Point:
    """One problem with an answer: `wrong` (it contradicts a detail) or `missed` (it ignores one)."""

    kind: str
    text: str
    item: Item                     # the detail it rests on: disclosed if the critique is sent on

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "detail": self.item.to_dict()}


_MEAT = (r"meat|steak\w*|beef|pork|chicken|lamb|bacon|ham|sausages?|veal|duck|turkey|burgers?|churrasc\w*|"
         r"barbecue|bbq|foie gras|chorizo|prosciutto")
_FISH = r"fish|seafood|shrimps?|prawns?|sushi|sashimi|tuna|salmon|cod|bacalhau|sardines?|anchov\w*|dashi|octopus|squid"
CONFLICTS = {
    "vegetarian": f"{_MEAT}|{_FISH}",
    "vegan": f"{_MEAT}|{_FISH}|cheese|milk|butter|cream|eggs?|honey|yogh?urt|dairy",
    "pescatarian": _MEAT,
    "coeliac": r"bread|pasta|pizza|beer|wheat|croissants?|cakes?|noodles",
    "gluten-free": r"bread|pasta|pizza|beer|wheat|croissants?|cakes?|noodles",
    "lactose-intolerant": r"cheese|milk|cream|ice cream|butter",
    "halal": r"pork|bacon|ham|wine|beer|alcohol",
    "kosher": r"pork|bacon|ham|shellfish|shrimps?|prawns?|lobster",
}
CONFLICTS["celiac"] = CONFLICTS["coeliac"]
_ABOUT_OTHERS = {"partner", "manager", "teacher"}      # ended facts naming another person
_NEGATED = re.compile(r"\b(?:no|not|without|avoid\w*|free|instead of|alternative to|alternatives to|vegetarian|"
                      r"vegan|plant-based|veggie|meat-free|meatless|skip|except|never)\W+(?:\w+\W+){0,2}$", re.I)


def _suggests(answer: str, pattern: str) -> str | None:
    """The first word of `answer` matching `pattern` that is not negated ("no meat", "a vegetarian steak")."""
    for m in re.finditer(rf"\b(?:{pattern})\b", answer, re.I):
        before, after = answer[max(0, m.start() - 40):m.start()], answer[m.end():m.end() + 6]
        if not _NEGATED.search(before) and not re.match(r"[- ]?free\b", after, re.I):
            return m.group(0)
    return None


def _lower_first(text: str) -> str:
    text = text.rstrip(".")
    return text if re.match(r"I\b|I'|I’", text) else text[:1].lower() + text[1:]


def check_answer(store: Store, searcher: Any, embedder: Any, profile: Profile | None, person: str, request: str,
                 answer: str, policy: Policy) -> tuple[list[Point], list[tuple[Item, str]], Selection]:
    """(points, withheld, the details relevant to the request): ended facts the answer assumes, preferences it
    contradicts, relevant details it ignores; each point passes the policy like any disclosure."""
    relevant = select(store, searcher, embedder, profile, person, request, policy)
    traits = select(store, searcher, embedder, profile, person, request,
                    Policy(policy.sources, policy.tags, policy.never_share, max_items=20),
                    needs=[n for n in NEEDS if n.name in ("food", "health")], related=False)
    asked = {p for n in NEEDS if n.triggers.search(request) for p in n.predicates}
    now, ended = current_facts(profile, person)
    allowed = allowed_sources(store, policy)
    found: list[Point] = []
    covered: set[str] = set()
    for f in sorted(ended, key=lambda f: f.valid_to or ""):
        # "Orquestra Amadora do Porto" (a current fact) does not say that I still live in Porto
        said = answer
        for g in now:
            if g.object != f.object and mentions(g.object, f.object):
                said = re.sub(re.escape(g.object), " ", said, flags=re.I)
        if not mentions(said, f.object) or mentions(request, f.object) or (
                f.predicate in _ABOUT_OTHERS and f.predicate not in asked):
            continue                     # a former partner is not the expert's business unless asked about
        instead = [g for g in now if g.predicate == f.predicate and g.object != f.object]
        if any(mentions(answer, g.object) for g in instead):
            continue                     # it knows about the change ("since you moved from Porto to Lisbon")
        text = f"This assumes I {present(f)}, but that ended in {month_name(f.valid_to or '')}."
        if instead:
            text += f" Now I {present(instead[0])}."
        ids = [*f.sources, *(instead[0].sources if instead else ())]
        item = Item(text, "fact", "the answer assumes an ended fact", f.object, provenance(store, ids), f.id)
        found.append(Point("wrong", text, item))
        covered |= {f.object.casefold(), *(g.object.casefold() for g in instead[:1])}
    for item in traits.disclosed:
        if "allerg" in item.text.casefold():
            conflict = re.escape(item.key) + r"s?"
        elif (conflict := CONFLICTS.get(item.key.casefold().replace(" ", "-"))) is None:
            continue
        if (word := _suggests(answer, conflict)) and not mentions(request, word):
            text = f"This suggests “{word}”, but {_lower_first(item.text)}."
            found.append(Point("wrong", text, Item(text, item.kind, item.reason, item.key, item.provenance)))
            covered.add(item.key.casefold())
    for item in relevant.disclosed:
        if item.key.casefold() not in covered and not mentions(answer, item.key):
            text = f"This ignores that {_lower_first(item.text)}."
            found.append(Point("missed", text, Item(text, item.kind, item.reason, item.key, item.provenance,
                                                    item.fact_id)))
    points: list[Point] = []
    withheld = list({i.text: (i, why) for i, why in [*relevant.withheld, *traits.withheld]}.values())
    for p in found:
        ok, why = admit(p.item, policy, allowed)
        if ok is None:
            withheld.append((p.item, why))
        else:
            points.append(Point(p.kind, p.text, ok))
    return points, withheld, relevant
