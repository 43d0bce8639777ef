"""Prompt texts, one file each, with `{named}` placeholders, rendered by `render()`.

Prompt text never lives inside logic: the modules that use a prompt pass values, and tests render every
prompt to catch a missing or misspelled placeholder.
"""

from __future__ import annotations

import string
from functools import cache
from importlib import resources

__all__ = ["render", "placeholders", "names", "literal"]


@cache
def _text(name: str) -> str:
    try:
        return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise KeyError(f"no prompt named {name!r}") from e


def names() -> list[str]:
    return sorted(p.name[:-4] for p in resources.files(__package__).iterdir() if p.name.endswith(".txt"))


def placeholders(name: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(_text(name)) if f}


def literal(name: str) -> str:
    """The prompt's own fixed text without its placeholders, one fragment per line: what a model that echoes
    its instructions would repeat (the persona's guard withdraws such answers)."""
    return "\n".join(text.strip() for text, *_ in string.Formatter().parse(_text(name)) if text.strip())


def render(name: str, /, **values: object) -> str:
    """The prompt with every placeholder filled. Missing or unexpected values raise KeyError."""
    expected = placeholders(name)
    missing, extra = expected - values.keys(), values.keys() - expected
    if missing or extra:
        raise KeyError(f"prompt {name!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
    return _text(name).format(**values).strip()
