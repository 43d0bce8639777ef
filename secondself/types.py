"""Plain data that crosses module boundaries: what readers produce, what the store holds, what search returns.

Readers turn a file into `ParsedDocument`s made of `Block`s (a paragraph under its headings, or one chat
turn). Chunking groups blocks into `ChunkDraft`s; the store gives them ids and returns them as `Chunk`s.
Search returns `Hit`s. Dates are timezone-aware `datetime`s in memory and ISO-8601 strings in the store.

Layer 1 (what the second self knows *about* the person) is made of `Fact`s, `Entity`s, `Topic`s and
`Shade`s, gathered with the biography and status into one `Profile` per build version. Every generated
item cites the chunk ids it came from. Layer-1 dates are ISO dates ("2025-07-01"), None when unknown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Block", "ParsedDocument", "ChunkDraft", "Chunk", "Hit", "SearchFilters", "SourceInfo",
           "Fact", "Entity", "Topic", "ShadeEvent", "Shade", "Status", "Profile", "TrainingExample"]


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


# -- layer 1 ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """A subject-predicate-object statement, true from `valid_from` to `valid_to` (inclusive ISO dates;
    None = unknown start / still true). A contradicted fact is closed, never deleted.

    `origin`: "rules" (pattern extraction), "teacher" (model extraction, checked against its chunks) or
    "person" (added or edited by the person). `pinned` facts survive every rebuild unchanged.
    """

    subject: str
    predicate: str
    object: str
    valid_from: str | None = None
    valid_to: str | None = None
    sources: tuple[int, ...] = ()
    origin: str = "rules"
    pinned: bool = False
    evidence: str = ""

    @property
    def id(self) -> str:
        """Stable across builds: the same statement keeps its id when its interval or sources change."""
        key = "|".join((self.subject.casefold(), self.predicate, " ".join(self.object.casefold().split())))
        return hashlib.sha1(key.encode()).hexdigest()[:8]

    def holds_at(self, day: str) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class Entity:
    """A person (or place/organization) the memories mention, with the other names it goes by."""

    name: str
    kind: str = "person"
    aliases: tuple[str, ...] = ()
    relation: str = ""                # to the person: "sister", "manager", ...
    mentions: int = 0
    sources: tuple[int, ...] = ()


@dataclass(frozen=True)
class Topic:
    """A cluster of chunks about one thing. `chunks` are ordered by closeness to the cluster centre."""

    id: str
    name: str
    summary: str
    keywords: tuple[str, ...]
    chunks: tuple[int, ...]
    first_date: str | None = None
    last_date: str | None = None


@dataclass(frozen=True)
class ShadeEvent:
    date: str
    text: str
    sources: tuple[int, ...]


@dataclass(frozen=True)
class Shade:
    """An interest facet: what it is, the person's role in it, and a dated timeline with sources."""

    name: str
    role: str
    description: str
    topics: tuple[str, ...]
    timeline: tuple[ShadeEvent, ...]


@dataclass(frozen=True)
class Status:
    """What the person is doing recently vs earlier, relative to `as_of` (the newest memory's date)."""

    as_of: str | None
    recent: str
    earlier: str


@dataclass(frozen=True)
class Profile:
    """One version of the whole layer. `edited` names the sections the person wrote themselves."""

    version: int
    built_at: str
    person: str
    biography: str
    biography_second: str
    status: Status
    shades: tuple[Shade, ...] = ()
    topics: tuple[Topic, ...] = ()
    facts: tuple[Fact, ...] = ()
    entities: tuple[Entity, ...] = ()
    unclustered: tuple[int, ...] = ()
    edited: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["facts"] = [{"id": f.id, **asdict(f)} for f in self.facts]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        def tup(x: Any) -> Any:
            return tuple(tup(i) for i in x) if isinstance(x, list) else x

        return cls(
            version=d["version"], built_at=d["built_at"], person=d["person"], biography=d["biography"],
            biography_second=d["biography_second"], status=Status(**d["status"]),
            shades=tuple(Shade(**{**s, "topics": tup(s["topics"]),
                                  "timeline": tuple(ShadeEvent(e["date"], e["text"], tup(e["sources"]))
                                                    for e in s["timeline"])}) for s in d["shades"]),
            topics=tuple(Topic(**{k: tup(v) for k, v in t.items()}) for t in d["topics"]),
            facts=tuple(Fact(**{k: tup(v) for k, v in f.items() if k != "id"}) for f in d["facts"]),
            entities=tuple(Entity(**{k: tup(v) for k, v in e.items()}) for e in d["entities"]),
            unclustered=tup(d["unclustered"]), edited=tup(d["edited"]))


# -- layer 2 ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingExample:
    """One sample for the personal model.

    `prompt`: the (role, content) turns before the answer — system/user/assistant — or () for plain text
    (the person's own notes, trained as language modelling). `completion`: what the model learns to say;
    only its tokens are supervised. `sources`: chunk ids it was made from. `split`: "train" or "heldout"
    (never trained on; used by evaluation). `kind`: self_qa | preference_qa | people | events |
    unanswerable | enhance | critic | notes | retention.
    """

    kind: str
    prompt: tuple[tuple[str, str], ...]
    completion: str
    sources: tuple[int, ...] = ()
    split: str = "train"

    @property
    def chat(self) -> bool:
        return bool(self.prompt)
