"""What a role may read: a `Scope` over the memories, tags on sources, and the two views that every route
reads through when a role is in play — `ScopedSearcher` (raw memories) and `scoped_profile` (layer 1).

A scope names sources, source tags and a date range. The sources it may read are the named ones plus every
source carrying one of the tags (resolved against the store at each use, so tagging a source later widens
the roles that name the tag); with neither, every source. Its dates bound the memories' dates; an undated
memory is outside any date range (as in search's own date filters). A scope with nothing set is everything:
the default persona.

A scope is an upper bound. A request's own filters are intersected with it (`search.narrow`): they can
narrow it, never widen it, and an empty intersection finds nothing — never everything. A source named in a
request but outside the scope is treated like an unknown one: nothing, with no error that would tell a
confined caller which sources exist.

Enforcement lives here, once, and is checked against the store, never taken from a prompt or a request:
- `ScopedSearcher.search` searches with the intersected filters, then checks every hit's chunk against the
  scope again (one query), so a mistake in translating filters cannot leak a memory.
- `scoped_profile` keeps a layer-1 item only when every chunk it was derived from exists and is in scope:
  facts, shade timeline events, shades (through all of their topics' chunks), topics, people. Items derived
  from nothing (a fact the person typed) are left out. The biography and status are written from all the
  memories, so a scoped view has neither; its `status.as_of` is the newest in-scope memory's date.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from ..store import Store
from ..text.dates import parse_date
from ..types import Hit, Profile, SearchFilters, Status
from .search import Searcher, narrow

__all__ = ["Scope", "ScopedSearcher", "scoped_profile", "tag_source", "untag_source", "source_tags", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """A role, tag or source name: letters, digits, '.', '_' or '-', at most 64, not starting with a mark."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{kind} name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a "
                          "letter or digit)")
    return name


@dataclass(frozen=True)
class Scope:
    """The memories a role may read (see the module docstring). Dates are YYYY-MM-DD or ISO 8601, inclusive."""

    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(dict.fromkeys(check_name("source", s) for s in self.sources)))
        object.__setattr__(self, "tags", tuple(dict.fromkeys(check_name("tag", t) for t in self.tags)))
        for field in ("since", "until"):
            value = getattr(self, field) or None
            if value is not None and parse_date(value) is None:
                raise ConfigError(f"cannot read the date {value!r} ({field}); use YYYY-MM-DD")
            object.__setattr__(self, field, value)
        if narrow(None, SearchFilters(since=self.since, until=self.until)) is None:
            raise ConfigError(f"the scope's dates are reversed: since {self.since} is after until {self.until}")

    @property
    def everything(self) -> bool:
        return not (self.sources or self.tags or self.since or self.until)

    def to_dict(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "tags": list(self.tags), "since": self.since, "until": self.until}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scope:
        return cls(tuple(d.get("sources") or ()), tuple(d.get("tags") or ()), d.get("since"), d.get("until"))

    def describe(self) -> str:
        parts = []
        if self.sources:
            parts.append("sources " + ", ".join(self.sources))
        if self.tags:
            parts.append("sources tagged " + ", ".join(self.tags))
        if self.since or self.until:
            parts.append(f"dated {self.since or '…'} to {self.until or '…'}")
        return "; ".join(parts) if parts else "all memories"

    # -- resolved against the store --------------------------------------------------------------------
    def readable_sources(self, store: Store) -> tuple[str, ...] | None:
        """The existing sources this scope may read, by name; None when it names none (every source)."""
        if not self.sources and not self.tags:
            return None
        names = {n for n in store.source_roots() if n in self.sources}
        if self.tags:
            marks = ",".join("?" * len(self.tags))
            names |= {r[0] for r in store.db.execute(
                f"SELECT s.name FROM source_tags t JOIN sources s ON s.id = t.source_id WHERE t.tag IN ({marks})",
                self.tags)}
        return tuple(sorted(names))

    def filters(self, store: Store, request: SearchFilters | None = None) -> SearchFilters | None:
        """`request` narrowed to this scope; None when nothing can match (search must then find nothing)."""
        sources = self.readable_sources(store)
        if sources == ():
            return None
        return narrow(request, SearchFilters(sources or (), self.since, self.until))

    def allowed_chunks(self, store: Store, ids: Iterable[int]) -> set[int]:
        """Those of `ids` that are chunks in the store and inside this scope."""
        ids = sorted(set(ids))
        f = self.filters(store)
        if not ids or f is None:
            return set()
        where, args = store.filter_sql(f)
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            out |= {r[0] for r in store.db.execute(f"SELECT c.id FROM chunks c WHERE c.id IN ({marks}) {where}",
                                                   [*part, *args])}
        return out

    def newest(self, store: Store) -> str | None:
        """The date (YYYY-MM-DD) of the newest memory inside this scope."""
        f = self.filters(store)
        if f is None:
            return None
        where, args = store.filter_sql(f)
        row = store.db.execute(f"SELECT max(c.date) FROM chunks c WHERE 1 = 1 {where}", args).fetchone()
        return row[0][:10] if row and row[0] else None


class ScopedSearcher:
    """A `Searcher` that can only find what `scope` may read: what the persona, `/api/search` and the MCP
    tools search through whenever a role applies. Same `search` signature; `embedder` and `store` as the
    wrapped searcher's."""

    def __init__(self, searcher: Searcher, scope: Scope) -> None:
        self.searcher, self.scope = searcher, scope

    @property
    def store(self) -> Store:
        return self.searcher.store

    @property
    def embedder(self):
        return self.searcher.embedder

    def stale(self) -> int:
        return self.searcher.stale()

    def search(self, query: str, k: int = 5, filters: SearchFilters | None = None, mode: str = "hybrid",
               candidates: int = 50) -> list[Hit]:
        bounded = self.scope.filters(self.store, filters)
        if bounded is None:
            return []
        hits = self.searcher.search(query, k=k, filters=bounded, mode=mode, candidates=candidates)
        allowed = self.scope.allowed_chunks(self.store, (h.chunk.id for h in hits))
        return [h for h in hits if h.chunk.id in allowed]


def scoped_profile(profile: Profile, scope: Scope, store: Store) -> Profile:
    """The part of `profile` derived only from memories inside `scope` (see the module docstring)."""
    if scope.everything:
        return profile
    ids: set[int] = set(profile.unclustered)
    for f in profile.facts:
        ids.update(f.sources)
    for t in profile.topics:
        ids.update(t.chunks)
    for s in profile.shades:
        for e in s.timeline:
            ids.update(e.sources)
    for e in profile.entities:
        ids.update(e.sources)
    allowed = scope.allowed_chunks(store, ids)

    def inside(chunks: Iterable[int]) -> bool:
        chunks = set(chunks)
        return bool(chunks) and chunks <= allowed

    topics = tuple(t for t in profile.topics if inside(t.chunks))
    kept_topics = {t.id for t in topics}
    shades = tuple(replace(s, timeline=tuple(e for e in s.timeline if inside(e.sources)))
                   for s in profile.shades if s.topics and set(s.topics) <= kept_topics)
    return replace(
        profile, biography="", biography_second="", status=Status(scope.newest(store), "", ""),
        shades=shades, topics=topics, facts=tuple(f for f in profile.facts if inside(f.sources)),
        entities=tuple(e for e in profile.entities if inside(e.sources)),
        unclustered=tuple(c for c in profile.unclustered if c in allowed))


# -- tags on sources ------------------------------------------------------------------------------------
def tag_source(store: Store, source: str, tag: str) -> None:
    """Label a source (idempotent). Roles whose scope names the tag can read it from now on."""
    check_name("tag", tag)
    sid = store.source_id(source)
    with store.transaction(memory=False) as db:
        db.execute("INSERT INTO source_tags (source_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", (sid, tag))


def untag_source(store: Store, source: str, tag: str) -> bool:
    """Remove a label; False when the source did not carry it."""
    sid = store.source_id(source)
    with store.transaction(memory=False) as db:
        return db.execute("DELETE FROM source_tags WHERE source_id = ? AND tag = ?", (sid, tag)).rowcount > 0


def source_tags(store: Store) -> dict[str, tuple[str, ...]]:
    """Every source's tags, by source name (sources without tags are absent)."""
    out: dict[str, list[str]] = {}
    for name, tag in store.db.execute("SELECT s.name, t.tag FROM source_tags t JOIN sources s ON s.id = t.source_id "
                                      "ORDER BY s.name, t.tag"):
        out.setdefault(name, []).append(tag)
    return {k: tuple(v) for k, v in out.items()}
