"""Plain data that crosses module boundaries: what readers produce, what the store holds, what search returns.

Readers turn a file into `ParsedDocument`s made of `Block`s (a paragraph under its headings, or one chat
turn). Chunking groups blocks into `ChunkDraft`s; the store gives them ids and returns them as `Chunk`s.
Search returns `Hit`s. Dates are timezone-aware `datetime`s in memory and ISO-8601 strings in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Block", "ParsedDocument", "ChunkDraft", "Chunk", "Hit", "SearchFilters", "SourceInfo"]


@dataclass(frozen=True)
class Block:
    """A structural unit of a document: a paragraph with its heading path, or one chat turn.

    `heading` is the heading path joined with " > " ("Journal > March"); empty if none.
    `date` is the most specific date known for this block (a message timestamp, a dated heading).
    `speaker` is set for chat turns and for e-mails (the sender).
    """

    text: str
    heading: str = ""
    date: datetime | None = None
    speaker: str | None = None
    is_turn: bool = False


@dataclass
class ParsedDocument:
    """One logical document read from a file. A file may hold several (an mbox, a chat export).

    `key` is unique within its file: "" for single-document files, else a message id or conversation id.
    `blocks` may be a lazy iterable (large text files are streamed); it is consumed once.
    `date` is the document date (front matter, Date header, first message); None if unknown, in which
    case the pipeline falls back to the file's modification time.
    `kind` is one of: "note", "document", "email", "chat", "web".
    """

    key: str
    title: str
    blocks: Iterable[Block]
    date: datetime | None = None
    kind: str = "note"
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is stored: text plus provenance taken from its blocks."""

    text: str
    position: int
    heading: str = ""
    date: datetime | None = None
    speakers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A stored chunk with full provenance. `path` is the file path, plus `#key` for sub-documents."""

    id: int
    source: str
    path: str
    title: str
    position: int
    text: str
    heading: str = ""
    date: str | None = None
    speakers: tuple[str, ...] = ()
    document_id: int = 0
    kind: str = "note"


@dataclass(frozen=True)
class Hit:
    """A search result. `score` is the fused score; the per-side ranks are 1-based, None if absent."""

    chunk: Chunk
    score: float
    snippet: str
    keyword_rank: int | None = None
    vector_rank: int | None = None


@dataclass(frozen=True)
class SearchFilters:
    """Filters applied identically to the keyword and the vector side. Dates are ISO strings (inclusive)."""

    sources: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    speaker: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.sources or self.since or self.until or self.speaker)


@dataclass(frozen=True)
class SourceInfo:
    name: str
    root: str
    documents: int
    chunks: int
    files: int
    failed_files: int
    last_ingest_at: str | None
