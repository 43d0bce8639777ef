"""The bridge's prose: the template text, and the checks a model's text must pass to replace it (it adds no
personal detail that was not selected, names no never-share term, and keeps the request and every disclosed
detail or correction)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..text.grounding import content_overlap, unsupported_specifics
from .critic import Point
from .disclosure import Item, Policy, Selection, mentions

__all__ = ["compose", "check_rewrite", "check_feedback"]


def compose(request: str, details: Sequence[Item]) -> str:
    """The template: the request, then "For context:" and the details (the personal model's training format)."""
    if not details:
        return request
    end = "" if request[-1:] in ".?!" else "."
    return f"{request}{end} For context: {' '.join(i.text for i in details)}"


def check_rewrite(text: str, request: str, sel: Selection, policy: Policy) -> str | None:
    """Why a model's rewrite of the enhanced request may not be used, or None when it may: it must keep the
    request and every disclosed detail and add no personal detail that was not selected."""
    if len(text.split()) < 3 or text.lower().startswith("fake"):
        return "it is empty"
    evidence = " ".join([request, "For context:"] + [i.text for i in sel.disclosed])
    if extra := unsupported_specifics(text, evidence):
        return f"it adds {', '.join(extra[:3])}, which was not selected for disclosure"
    words = {w.casefold() for w in re.findall(r"\w{4,}", text)}
    if leaked := sorted(words & sel.private):
        return f"it adds {', '.join(leaked[:3])}, which was not selected for disclosure"
    if said := [t for t in policy.terms if t.casefold() in text.casefold() and t.casefold() not in request.casefold()]:
        return f"it names the never-share term {said[0]!r}"
    if content_overlap(request, text) < 0.6:
        return "it drops part of the request"
    if missing := [i.key for i in sel.disclosed if not mentions(text, i.key)]:
        return f"it leaves out {missing[0]}"
    if len(text.split()) > 2 * len(compose(request, sel.disclosed).split()) + 30:
        return "it is too long"
    return None


def check_feedback(text: str, request: str, answer: str, points: Sequence[Point], sel: Selection,
                   policy: Policy) -> str | None:
    """Why a model's wording of the critique may not be used, or None when it may: first-person feedback
    that adds nothing unselected and keeps every correction."""
    if len(text.split()) < 4 or text.lower().startswith("fake") or not re.search(r"\b(?:I|my|me)\b", text):
        return "it is not first-person feedback"
    evidence = " ".join([request, answer] + [p.text for p in points])
    if extra := unsupported_specifics(text, evidence):
        return f"it adds {', '.join(extra[:3])}, which is not in what I know or what was said"
    words = {w.casefold() for w in re.findall(r"\w{4,}", text)} - {w.casefold() for w in re.findall(r"\w{4,}",
                                                                                                   evidence)}
    if leaked := sorted(words & sel.private):
        return f"it adds {', '.join(leaked[:3])}, which was not selected for disclosure"
    if said := [t for t in policy.terms if t.casefold() in text.casefold() and t.casefold() not in evidence.casefold()]:
        return f"it names the never-share term {said[0]!r}"
    if missing := [p.item.key for p in points if p.kind == "wrong" and not mentions(text, p.item.key)]:
        return f"it leaves out the correction about {missing[0]}"
    if len(text.split()) > 160:
        return "it is too long"
    return None
