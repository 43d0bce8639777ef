"""What the persona is told about the person before the retrieved memories: layer 1, condensed.

Small models have small context windows, so this is short and question-dependent: the first sentences
of the biography, the facts true as of the newest memory that share a word with the question (with
their dates, so "where do I live" gets the current city, not the old one), and the shades the question
touches. Facts are phrased in the first person, as the persona speaks.

A role gets the same from its scoped view of the profile (memory/scope.py: no biography, only the facts and
shades derived from memories inside its scope), so this module never needs to know about scopes.
"""

from __future__ import annotations

import re

from ..text.phrasing import present, verb_phrase
from ..types import Profile
from .search import query_terms

__all__ = ["persona_context"]

_SENT = re.compile(r"(?<=[.!?])\s+")


def persona_context(profile: Profile, question: str, *, max_facts: int = 4, bio_sentences: int = 2) -> str:
    terms = {t for t in query_terms(question) if len(t) > 2}
    bio = " ".join(_SENT.split(profile.biography)[:bio_sentences])
    as_of = profile.status.as_of

    def score(text: str) -> int:
        words = {w.lower() for w in re.findall(r"\w+", text)}
        return sum(1 for t in terms if t in words or any(len(w) >= 4 and w[:4] == t[:4] for w in words
                                                             if len(t) >= 4))

    current = [f for f in profile.facts if f.valid_to is None or (as_of and f.valid_to >= as_of)]

    def about(f) -> str:
        return f"{verb_phrase(f, 0)} {f.evidence}"

    ranked = sorted(current, key=lambda f: -score(about(f)))
    lines = [f"- I {present(f)}" + (f" (since {f.valid_from})" if f.valid_from else "")
             for f in ranked[:max_facts] if score(about(f))]
    shades = [s for s in profile.shades if score(f"{s.name} {s.role} {s.description}")][:2]
    lines += [f"- {s.name}" + (f" (I am a {s.role})" if s.role else "") for s in shades]
    return "\n".join([bio, *lines] if bio else lines)  # a role's scoped view has no biography
