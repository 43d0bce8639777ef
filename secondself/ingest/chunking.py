"""Chunking that respects structure: blocks in, `ChunkDraft`s out, lazily (large files stream through).

- Documents: consecutive paragraphs under the same heading and date are packed up to `target` words; a
  chunk never spans two headings or two dates, so its provenance stays exact. A paragraph longer than the
  target is split at sentence boundaries. Consecutive chunks of one section overlap by one sentence.
- Chats: whole turns ("Speaker: text") packed up to `target` words, never cut mid-turn unless a single
  turn is longer than the target; consecutive windows overlap by one turn. The chunk's speakers are
  the distinct speakers of its turns, its date that of its first turn.

Sizes are in words because the limit that matters is the embedding model's (all-MiniLM-L6-v2 truncates
at 256 word pieces, roughly 190 English words); callers pass `target` below the embedder's `max_words`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..types import Block, ChunkDraft

__all__ = ["chunk_blocks", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p.strip()]
    return parts or ([text.strip()] if text.strip() else [])


def _words(text: str) -> int:
    return len(text.split())


def _split_long(text: str, target: int) -> list[str]:
    """Split text into pieces of at most `target` words, at sentence boundaries where possible."""
    pieces: list[str] = []
    cur: list[str] = []
    n = 0
    for sent in split_sentences(text):
        w = _words(sent)
        if w > target:  # a run-on "sentence": cut by words
            words = sent.split()
            for i in range(0, len(words), target):
                sub = " ".join(words[i:i + target])
                if cur:
                    pieces.append(" ".join(cur))
                    cur, n = [], 0
                pieces.append(sub)
            continue
        if n + w > target and cur:
            pieces.append(" ".join(cur))
            cur, n = [], 0
        cur.append(sent)
        n += w
    if cur:
        pieces.append(" ".join(cur))
    return pieces


@dataclass
class _Pending:
    heading: str = ""
    section_date: datetime | None = None
    is_chat: bool = False
    texts: list[str] = field(default_factory=list)
    dates: list[datetime | None] = field(default_factory=list)
    speakers: list[str | None] = field(default_factory=list)
    words: int = 0

    def add(self, text: str, date: datetime | None, speaker: str | None) -> None:
        self.texts.append(text)
        self.dates.append(date)
        self.speakers.append(speaker)
        self.words += _words(text)

    def draft(self, position: int) -> ChunkDraft:
        sep = "\n" if self.is_chat else "\n\n"
        date = next((d for d in self.dates if d is not None), self.section_date)
        speakers = tuple(dict.fromkeys(s for s in self.speakers if s))
        return ChunkDraft(text=sep.join(self.texts), position=position, heading=self.heading, date=date,
                          speakers=speakers)


def chunk_blocks(blocks: Iterable[Block], target: int = 160, overlap: bool = True) -> Iterator[ChunkDraft]:
    """Group blocks into chunks of about `target` words (never more, except a single unsplittable word run)."""
    position = 0
    cur = _Pending()

    def flush(carry: bool) -> Iterator[ChunkDraft]:
        nonlocal cur, position
        if not cur.texts:
            return
        yield cur.draft(position)
        position += 1
        nxt = _Pending(heading=cur.heading, section_date=cur.section_date, is_chat=cur.is_chat)
        if carry and overlap:
            last = cur.texts[-1] if cur.is_chat else split_sentences(cur.texts[-1])[-1]
            if _words(last) <= target // 3:  # overlap only if it leaves room for new text
                nxt.add(last, cur.dates[-1], cur.speakers[-1])
        cur = nxt

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.is_turn:
            text = f"{block.speaker or 'unknown'}: {text}"
        new_section = (block.heading != cur.heading or block.is_turn != cur.is_chat
                       or (not block.is_turn and block.date != cur.section_date))
        if new_section:
            yield from flush(carry=False)
            cur = _Pending(heading=block.heading, section_date=block.date, is_chat=block.is_turn)
        pieces = [text] if _words(text) <= target else _split_long(text, target)
        for piece in pieces:
            if cur.words + _words(piece) > target and cur.texts:
                yield from flush(carry=True)
            cur.add(piece, block.date, block.speaker)
    yield from flush(carry=False)
