"""What the CLI prints goes through `out`, so text that came from data cannot drive the terminal.

A file name, a memory, a profile, a role's instructions or a model's answer may hold control characters: ESC
starts sequences that set the window title, clear the screen or rewrite what is shown, BEL rings, CR returns
over a line, bidirectional overrides reorder it. `out(*parts)` prints its parts with these as visible escapes
("\\x1b", "\\u202e"); `styled(text, bold=True)` escapes first and styles after, so our own styling codes
survive and the data's do not. One-line records (a row of a list) show a newline as "\\n", so each stays one
line; multi-line text (an answer, the biography) keeps its newlines and tabs with `multiline=True`. A streamed
answer is escaped delta by delta: every control character is one character, so a sequence split across two
deltas is escaped in both halves. JSON output (`json_text`) writes the same characters as "\u001b" escapes, and
log records shown while a command runs (`escaped_logs`) are escaped like the rest.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

__all__ = ["Safe", "escape", "escaped_logs", "json_text", "out", "styled"]

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_KEPT = frozenset("\n\t")
# What json.dumps(ensure_ascii=False) leaves raw: DEL, C1 controls, bidi overrides, lone surrogates (it escapes C0).
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class Safe(str):
    """Text already escaped (and perhaps styled) for the terminal: `out` prints it as it is. Only `styled`
    makes one; text built from a Safe by formatting is a plain str again and is escaped once more."""


def escape(text: object, keep_newlines: bool = False) -> str:
    """`text` safe to print on a terminal: control characters (C0, DEL, C1), bidirectional overrides and
    lone surrogates become visible escapes ("\\x1b", "\\u202e"); the rest, accents and emoji included, is kept.
    `keep_newlines` keeps newlines and tabs (multi-line text)."""
    text = str(text)
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    return "".join(ch if (keep_newlines and ch in _KEPT) or not _unsafe(ch) else _escaped(ch) for ch in text)


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs")


def _escaped(ch: str) -> str:
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return named.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def styled(text: object, *, multiline: bool = False, **style: object) -> Safe:
    """`text` escaped, then styled with click.style's keywords (bold=True, fg="yellow", dim=True)."""
    return Safe(click.style(escape(text, keep_newlines=multiline), **style))  # type: ignore[arg-type]


def out(*parts: object, err: bool = False, nl: bool = True, multiline: bool = False) -> None:
    """Print `parts` joined, each escaped unless it is `Safe` (from `styled`); on stderr with `err`.
    `multiline` keeps newlines and tabs; without it a part's newline shows as "\\n"."""
    click.echo("".join(p if isinstance(p, Safe) else escape(p, keep_newlines=multiline) for p in parts),
               err=err, nl=nl)


def json_text(data: Any) -> str:
    """`data` as indented JSON, non-ASCII text kept readable, every control character written as an escape."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False, indent=2))


class _EscapedLogs(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(escape(self.format(record), keep_newlines=True), err=True)
        except Exception:
            self.handleError(record)


@contextmanager
def escaped_logs() -> Iterator[None]:
    """While a command runs, log records of WARNING and above go to stderr escaped (Python's fallback, which
    shows them when no handler is configured, would print a file name in a warning raw)."""
    handler = _EscapedLogs(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
