"""Keyword and vector search in Postgres, answering the same questions as the SQLite store's FTS5 and numpy
sides, on the same scales, so the hybrid fusion above them is unchanged.

Keyword: the text is tokenized like FTS5's `unicode61 remove_diacritics 2` (runs of letters and digits,
lower-cased, diacritics removed) here in Python, then stemmed by Postgres (Snowball English, no stop words:
pg_schema.TEXT_CONFIG) into `chunks_fts.tsv`, text with weight A and heading + title with weight B.
Candidates come from the GIN index (`tsv @@ query`); they are ranked by the BM25 FTS5 computes (k1 1.2,
b 0.75, column weights 1.0 / 0.5 / 0.5, IDF ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6), in SQL from each
candidate's term frequencies (`unnest(tsv)`), its token count `doc_len`, and the person's document
frequencies. These queries run as the tables' owner (`PgStore.as_owner`), outside the row-level policy that
would hide the GIN index from the planner (pg_schema.py, chunks_fts), so each names the person itself on every
table it reads (`person_id = N`): the only queries of the store that do.

Vector: `1 - (vector <=> query)`, the cosine similarity, as the numpy index gives it. Exact (an ORDER BY over
the person's vectors of that model) until the person has HNSW_FROM vectors of a model; then a partial HNSW
index for that person and model is built (CONCURRENTLY, after the commit that crossed the line), and queries
use it with `hnsw.iterative_scan = relaxed_order`, so a filtered query still returns k rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from ..types import SearchFilters
from .pg_schema import TEXT_CONFIG

if TYPE_CHECKING:
    from .postgres import PgStore

__all__ = ["fold_tokens", "tsv_sql", "keyword_search", "term_document_counts", "vector_search",
           "maintain_vector_index", "session_settings", "HNSW_FROM"]

log = logging.getLogger(__name__)

K1, B = 1.2, 0.75
HNSW_FROM = 20_000     # vectors of one model for one person; below it an exact scan takes a few ms
EF_SEARCH = 100        # HNSW candidate list (pgvector's default is 40; search asks for 50)
_TOKEN = re.compile(r"[^\W_]+")


def fold_tokens(text: str) -> list[str]:
    """FTS5 unicode61 tokens: letters and digits, lower-cased, without diacritics ('Tomás' -> 'tomas')."""
    if text.isascii():  # nothing to strip (most text; the character loop below cost a sixth of an insert)
        return _TOKEN.findall(text.lower())
    decomposed = unicodedata.normalize("NFD", text)
    plain = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return _TOKEN.findall(plain.lower())


def tsv_sql() -> str:
    """The SQL expression that builds `tsv` from two parameters: the text's tokens, then heading + title's."""
    return (f"setweight(to_tsvector('{TEXT_CONFIG}', ?), 'A') || "
            f"setweight(to_tsvector('{TEXT_CONFIG}', ?), 'B')")


def _lexemes(store: PgStore, words: list[str]) -> dict[str, list[str]]:
    """Each word's stems, as the index stores them (one for a plain word)."""
    if not words:
        return {}
    folded = [" ".join(fold_tokens(w)) for w in words]
    rows = store.db.execute(f"SELECT w, tsvector_to_array(to_tsvector('{TEXT_CONFIG}', w)) "
                            "FROM unnest(?::text[]) AS w", (folded,)).fetchall()
    stems = {w: list(lex) for w, lex in rows}
    return {word: stems.get(f, []) for word, f in zip(words, folded, strict=True)}


def _tsquery(lexemes: list[str]) -> str:
    return " | ".join("'" + lx.replace("\\", "\\\\").replace("'", "''") + "'" for lx in lexemes)


def _document_frequencies(store: PgStore, lexemes: list[str]) -> dict[str, int]:
    if not lexemes:
        return {}
    parts = ", ".join(f"(SELECT count(*) FROM chunks_fts f WHERE f.person_id = {store.person_id} "
                      "AND f.tsv @@ ?::tsquery)" for _ in lexemes)
    with store.as_owner():
        row = store.db.execute(f"SELECT {parts}", [_tsquery([lx]) for lx in lexemes]).fetchone()
    return dict(zip(lexemes, (int(n) for n in row), strict=True))


def term_document_counts(store: PgStore, words: list[str]) -> dict[str, int]:
    """How many of the person's chunks contain each word, after stemming (the most of a word's stems)."""
    stems = _lexemes(store, words)
    df = _document_frequencies(store, sorted({lx for lxs in stems.values() for lx in lxs}))
    return {w: max((df[lx] for lx in stems[w]), default=0) for w in words}


def keyword_search(store: PgStore, terms: list[str], filters: SearchFilters, limit: int
                   ) -> list[tuple[int, float]]:
    """(chunk_id, BM25) best first, FTS5's formula (see the module docstring); ties by chunk id."""
    stems = _lexemes(store, terms)
    lexemes = list(dict.fromkeys(lx for t in terms for lx in stems[t]))
    if not lexemes:
        return []
    n, avgdl = store.document_statistics()
    where, args = store.filter_sql(filters)
    with store.as_owner():  # one switch of role for both queries
        return _ranked(store, lexemes, n, avgdl, where, args, limit)


def _ranked(store: PgStore, lexemes: list[str], n: int, avgdl: float, where: str, args: list, limit: int
            ) -> list[tuple[int, float]]:
    df = _document_frequencies(store, lexemes)
    idf = [max(math.log((n - df[lx] + 0.5) / (df[lx] + 0.5)), 1e-6) for lx in lexemes]
    person = store.person_id
    join = f"JOIN chunks c ON c.person_id = {person} AND c.id = f.chunk_id" if where else ""
    sql = f"""
        SELECT f.chunk_id, sum(q.idf * t.tf * {K1 + 1} / (t.tf + {K1} * ({1 - B} + {B} * f.doc_len / ?))) AS score
        FROM chunks_fts f {join}
        CROSS JOIN LATERAL unnest(f.tsv) AS u(lexeme, positions, weights)
        JOIN unnest(?::text[], ?::float8[]) AS q(lexeme, idf) ON q.lexeme = u.lexeme
        CROSS JOIN LATERAL (SELECT sum(CASE WHEN w = 'A' THEN 1.0 ELSE 0.5 END)::float8 AS tf
                            FROM unnest(u.weights) AS w) AS t
        WHERE f.person_id = {person} AND f.tsv @@ ?::tsquery {where}
        GROUP BY f.chunk_id ORDER BY score DESC, f.chunk_id LIMIT ?"""
    with store.as_owner():
        rows = store.db.execute(sql, (max(avgdl, 1e-9), lexemes, idf, _tsquery(lexemes), *args, limit)).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def _index_name(person_id: int, model: str) -> str:
    return f"embeddings_hnsw_{person_id}_{hashlib.sha256(model.encode()).hexdigest()[:12]}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def vector_search(store: PgStore, model: str, query: np.ndarray, k: int, filters: SearchFilters
                  ) -> list[tuple[int, float]]:
    """(chunk_id, cosine similarity) best first among the person's vectors of `model` passing `filters`.

    The person and the model are written into the SQL as literals (not parameters) so the planner can match
    the person's partial HNSW index, when there is one."""
    q = np.ascontiguousarray(query, dtype=np.float32)
    dim = int(q.shape[0])
    hnsw = store.has_vector_index(model)
    column = f"(e.vector::vector({dim}))" if hnsw else "e.vector"
    where, args = store.filter_sql(filters)
    join = "JOIN chunks c ON c.person_id = e.person_id AND c.id = e.chunk_id" if where else ""
    sql = f"""SELECT e.chunk_id, 1 - ({column} <=> ?::vector({dim})) FROM embeddings e {join}
              WHERE e.person_id = {store.person_id} AND e.model = {_literal(model)} AND e.dim = {dim} {where}
              ORDER BY {column} <=> ?::vector({dim}) LIMIT ?"""
    rows = store.db.execute(sql, (q, *args, q, k)).fetchall()
    out = [(int(r[0]), float(r[1])) for r in rows]
    out.sort(key=lambda r: (-r[1], r[0]))  # relaxed_order may return near-ties out of order
    return out


def session_settings() -> list[str]:
    """Set once per connection: the HNSW search breadth, and iterative scans so that a filtered query keeps
    searching the graph until it has k rows that pass (pgvector 0.8; `relaxed_order`: re-sorted here)."""
    return [f"SET hnsw.ef_search = {EF_SEARCH}", "SET hnsw.iterative_scan = relaxed_order"]


def maintain_vector_index(store: PgStore) -> None:
    """Build the person's HNSW index for each model past HNSW_FROM vectors that lacks one. Outside any
    transaction (CREATE INDEX CONCURRENTLY does not block other persons' writes); as the login role (an
    index belongs to the table's owner)."""
    rows = store.db.execute("SELECT model, dim, count(*) FROM embeddings GROUP BY model, dim "
                            "HAVING count(*) >= ?", (HNSW_FROM,)).fetchall()
    for model, dim, count in rows:
        name = _index_name(store.person_id, model)
        if store.has_vector_index(model):
            continue
        log.info("building the HNSW index %s for %d vectors of %s", name, count, model)
        with store.as_owner() as raw:
            # a build that was interrupted leaves an invalid index, which the planner ignores: build it again
            raw.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            raw.execute(f"CREATE INDEX CONCURRENTLY {name} ON embeddings USING hnsw "
                        f"((vector::vector({int(dim)})) vector_cosine_ops) "
                        f"WHERE person_id = {store.person_id} AND model = {_literal(model)} AND dim = {int(dim)}")
        store.forget_index_cache()


def index_exists(store: PgStore, model: str) -> bool:
    """Whether the person has a usable (valid: completely built) HNSW index for `model`."""
    row = store.db.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                           "WHERE c.relname = ?", (_index_name(store.person_id, model),)).fetchone()
    return bool(row and row[0])
