"""Hybrid search: keyword (FTS5/BM25) and vector (exact cosine), fused by reciprocal rank fusion.

On personal data the keyword side often wins (names, places, rare words) and the vector side wins on
paraphrase; RRF needs no score calibration between them. Both sides apply the same filters (source,
date range, speaker) before ranking, so a filter never empties a result list that has matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ..backends.embedders import Embedder
from ..errors import ConfigError, EmbeddingMismatchError
from ..store import Store
from ..store.sqlite import fts5_query
from ..text.dates import parse_date
from ..text.words import QUERY_STOPWORDS
from ..types import Chunk, Hit, SearchFilters
from .vectors import VectorIndex

__all__ = ["Searcher", "fts_query", "make_snippet", "query_terms", "hit_to_dict", "normalize", "narrow", "MODES"]

MODES = ("hybrid", "keyword", "vector")
RRF_K = 60
# Cost-based pruning of OR queries on large memories: a term found in more than COMMON_SHARE of the
# chunks has a small BM25 weight (idf ≈ ln 9 at 10%, against ≈ ln 1000 for a rare term) yet makes
# FTS5 score every chunk that holds it. Below PRUNE_FROM chunks every term is kept.
PRUNE_FROM = 20_000
COMMON_SHARE = 0.10

_TOKEN = re.compile(r"\w+", re.UNICODE)


# what \w+ splits off a contraction or a possessive ("what's", "Tomás's", "don't"): no term, and "s" is found in
# nearly every memory (it made "When is Tomás's birthday?" look two-thirds covered by any note about Tomás)
_FRAGMENTS = frozenset("s t d m ll re ve don didn doesn isn wasn aren weren haven hasn hadn wouldn couldn".split())


def query_terms(query: str) -> list[str]:
    words = [w.lower() for w in _TOKEN.findall(query)]
    content = [w for w in words if w not in QUERY_STOPWORDS and w not in _FRAGMENTS]
    return list(dict.fromkeys(content or words))


def keyword_terms(query: str, drop: frozenset[str] = frozenset()) -> list[str]:
    """The words the keyword side looks for; each store builds its own query from them."""
    return [t for t in query_terms(query) if t not in drop]


def fts_query(query: str, drop: frozenset[str] = frozenset()) -> str:
    """A safe FTS5 query: every term quoted (no syntax injection), OR-ed, so BM25 ranks partial matches."""
    return fts5_query(keyword_terms(query, drop))


def make_snippet(text: str, query: str, width: int = 32) -> str:
    """The `width`-word window of `text` with the most query terms, with ellipses where cut."""
    words = text.split()
    if len(words) <= width:
        return " ".join(words)
    terms = set(query_terms(query))
    hits = [1 if w.strip(".,;:!?\"'()[]«»").lower() in terms else 0 for w in words]
    best, best_score, score = 0, -1, 0
    for i, h in enumerate(hits):
        score += h
        if i >= width:
            score -= hits[i - width]
        if i >= width - 1 and score > best_score:
            best, best_score = i - width + 1, score
    out = " ".join(words[best:best + width])
    return ("… " if best > 0 else "") + out + (" …" if best + width < len(words) else "")


@dataclass(frozen=True)
class _Bounds:
    since_iso: str | None
    until_iso: str | None
    since_ts: float | None
    until_ts: float | None


def _bounds(f: SearchFilters) -> _Bounds:
    """Normalize since/until to UTC; a date-only `until` includes that whole day."""
    def parse(value: str | None, end: bool) -> datetime | None:
        if not value:
            return None
        d = parse_date(value)
        if d is None:
            raise ConfigError(f"cannot read the date {value!r}; use YYYY-MM-DD")
        if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            d = d.replace(hour=23, minute=59, second=59)  # (adding a day overflowed on 9999-12-31)
        return d.astimezone(UTC)

    s, u = parse(f.since, False), parse(f.until, True)
    iso = lambda d: d.isoformat(timespec="seconds") if d else None  # noqa: E731
    return _Bounds(iso(s), iso(u), s.timestamp() if s else None, u.timestamp() if u else None)


def normalize(filters: SearchFilters) -> SearchFilters:
    """The same filters with since/until as UTC ISO timestamps (a date-only `until` covering its whole day), so
    bounds written differently compare correctly as strings."""
    b = _bounds(filters)
    return SearchFilters(filters.sources, b.since_iso, b.until_iso, filters.speaker)


def narrow(request: SearchFilters | None, bound: SearchFilters) -> SearchFilters | None:
    """A request's filters intersected with an upper bound (a role's scope), which they may narrow but never
    widen: the sources in both (`()` on either side meaning all), the later `since`, the earlier `until`, the
    request's speaker. None when the intersection is empty: the caller must then find nothing, not everything
    (`SearchFilters()` would mean everything)."""
    r, b = normalize(request or SearchFilters()), normalize(bound)
    if r.sources and b.sources:
        sources = tuple(s for s in dict.fromkeys(r.sources) if s in b.sources)
        if not sources:
            return None
    else:
        sources = r.sources or b.sources
    since = max((d for d in (r.since, b.since) if d), default=None)
    until = min((d for d in (r.until, b.until) if d), default=None)
    if since and until and since > until:
        return None
    return SearchFilters(sources, since, until, r.speaker)


class Searcher:
    """Searches one store with one embedder; caches the vector matrix (and the chunk count and speaker
    index) until the store changes."""

    def __init__(self, store: Store, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._index: VectorIndex | None = None
        self._meta: tuple[int, int, dict[str, np.ndarray]] | None = None  # generation, chunks, speakers

    def index(self) -> VectorIndex:
        gen = self.store.generation
        if self._index is None or self._index.generation != gen:
            ids, matrix, sources, dates = self.store.load_vectors(self.embedder.name)
            if len(ids) and matrix.shape[1] != self.embedder.dim:
                raise EmbeddingMismatchError(
                    f"stored vectors for {self.embedder.name} have dimension {matrix.shape[1]}, the model "
                    f"gives {self.embedder.dim}; run `secondself reindex`")
            self._index = VectorIndex(ids, matrix, sources, dates, self.embedder.name, gen)
        return self._index

    def _metadata(self) -> tuple[int, dict[str, np.ndarray]]:
        gen = self.store.generation
        if self._meta is None or self._meta[0] != gen:
            self._meta = (gen, self.store.chunk_count(), self.store.speakers_index())
        return self._meta[1], self._meta[2]

    def common_terms(self, query: str) -> frozenset[str]:
        """Query terms to leave out of the keyword side (see COMMON_SHARE); never all of them."""
        n, _ = self._metadata()
        terms = query_terms(query)
        if n < PRUNE_FROM or len(terms) < 2:
            return frozenset()
        counts = self.store.term_document_counts(terms)
        common = {t for t in terms if counts[t] > COMMON_SHARE * n}
        if common == set(terms):
            common.discard(min(terms, key=lambda t: counts[t]))
        return frozenset(common)

    def stale(self) -> int:
        """Chunks without a vector from the current embedder (search still works; `reindex` fixes it)."""
        return self.store.count_missing_vectors(self.embedder.name)

    def search(self, query: str, k: int = 5, filters: SearchFilters | None = None,
               mode: str = "hybrid", candidates: int = 50) -> list[Hit]:
        if mode not in MODES:
            raise ConfigError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if k < 1:
            raise ConfigError("k must be at least 1")
        filters = filters or SearchFilters()
        bounds = _bounds(filters)
        sql_filters = SearchFilters(filters.sources, bounds.since_iso, bounds.until_iso, filters.speaker)
        n = max(candidates, k)
        keyword: list[tuple[int, float]] = []
        vector: list[tuple[int, float]] = []
        if mode in ("hybrid", "keyword") and (terms := keyword_terms(query, self.common_terms(query))):
            keyword = self.store.keyword_search(terms, sql_filters, n)
        if mode in ("hybrid", "vector"):
            vector = self._vector_side(query, sql_filters, bounds, n)

        kw_rank = {cid: r for r, (cid, _) in enumerate(keyword, 1)}
        vec_rank = {cid: r for r, (cid, _) in enumerate(vector, 1)}
        fused: dict[int, float] = {}
        for ranks in (kw_rank, vec_rank):
            for cid, r in ranks.items():
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + r)
        if mode == "keyword":
            fused = {cid: s for cid, s in keyword}
        elif mode == "vector":
            fused = {cid: s for cid, s in vector}
        best = sorted(fused, key=lambda c: (-fused[c], c))[:k]
        chunks = self.store.chunks(best)
        return [Hit(chunk=chunks[c], score=fused[c], snippet=make_snippet(chunks[c].text, query),
                    keyword_rank=kw_rank.get(c), vector_rank=vec_rank.get(c)) for c in best if c in chunks]

    def _vector_side(self, query: str, f: SearchFilters, b: _Bounds, n: int) -> list[tuple[int, float]]:
        """The store's own vector search where it has one (Postgres: `vectors_in_store`), else the matrix
        held in memory (SQLite)."""
        if getattr(self.store, "vectors_in_store", False):
            return self._store_vector_side(query, f, n)
        index = self.index()
        if len(index) == 0:
            return []
        source_ids = [self.store.source_id(s) for s in f.sources] if f.sources else None
        allowed = None
        if f.speaker:
            allowed = self._metadata()[1].get(f.speaker.lower(), np.zeros(0, np.int64))
        mask = index.mask(source_ids, b.since_ts, b.until_ts, allowed)
        qvec = self.embedder.embed([query])[0]
        return index.top_k(qvec, n, mask)

    def _store_vector_side(self, query: str, f: SearchFilters, n: int) -> list[tuple[int, float]]:
        dims = self.store.vector_dims(self.embedder.name)
        if not dims:
            return []
        if dims != {self.embedder.dim}:
            raise EmbeddingMismatchError(
                f"stored vectors for {self.embedder.name} have dimension {sorted(dims)[0]}, the model "
                f"gives {self.embedder.dim}; run `secondself reindex`")
        found = self.store.vector_search(self.embedder.name, self.embedder.embed([query])[0], n, f)
        return found or []


def hit_to_dict(hit: Hit) -> dict[str, object]:
    """The stable, documented JSON shape of a search result (README: "Search output")."""
    c: Chunk = hit.chunk
    return {
        "chunk_id": c.id, "score": round(hit.score, 6), "snippet": hit.snippet, "text": c.text,
        "source": c.source, "path": c.path, "title": c.title, "heading": c.heading, "position": c.position,
        "date": c.date, "speakers": list(c.speakers), "kind": c.kind,
        "keyword_rank": hit.keyword_rank, "vector_rank": hit.vector_rank,
    }
