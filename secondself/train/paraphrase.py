"""More wordings of one question: the person asking about themselves ("Where do I live?") as well as
someone asking them ("Where do you live?").

The personal model is asked both ways — by the person in chat, by others through the bridge — and a fact
learned under one wording only is recalled under that wording only. The answer stays the same (the model
speaks as the person, in the first person). The rewrite is a small table of English auxiliaries and
pronouns; a question it cannot turn cleanly (no "you", or "you" in a place the table does not know) is left
alone (None).
"""

from __future__ import annotations

import re

__all__ = ["as_self"]

# "are you" -> "am I": the auxiliary agrees with the new subject
_AUX = {"are": "am", "were": "was", "do": "do", "did": "did", "have": "have", "can": "can", "will": "will",
        "would": "would", "could": "could", "should": "should", "had": "had"}
_POSSESSIVE = {"your": "my", "yours": "mine", "yourself": "myself"}
_AUX_YOU = re.compile(r"\b(" + "|".join(_AUX) + r") you\b", re.IGNORECASE)
_POSS = re.compile(r"\b(" + "|".join(_POSSESSIVE) + r")\b", re.IGNORECASE)
_SKIP = re.compile(r"^(?:tell me about yourself|introduce yourself|who are you)\b", re.IGNORECASE)


def _case(src: str, word: str) -> str:
    return word[0].upper() + word[1:] if src[:1].isupper() else word


def as_self(question: str) -> str | None:
    """`question` as the person would ask it about themselves, or None when it does not turn cleanly.

    >>> as_self("Are you still living in Porto?")
    'Am I still living in Porto?'
    >>> as_self("Who is your manager?")
    'Who is my manager?'
    """
    if _SKIP.match(question) or not re.search(r"\byou(?:r|rs|rself)?\b", question, re.IGNORECASE):
        return None
    out = _AUX_YOU.sub(lambda m: _case(m.group(1), _AUX[m.group(1).lower()]) + " I", question)
    out = _POSS.sub(lambda m: _case(m.group(1), _POSSESSIVE[m.group(1).lower()]), out)
    if re.search(r"\byou\b", out, re.IGNORECASE):    # "you" as an object or after a verb: not handled
        return None
    return out if out != question else None
