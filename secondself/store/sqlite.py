"""The SQLite store: one file per person holding sources, files, documents, chunks, vectors and the
keyword index. The store knows nothing about models or file formats; it stores what it is given.

Every write goes through `transaction()`, so a crash or Ctrl-C leaves the database as it was before the
transaction began. Every committed write bumps `generation`, which in-memory caches (the vector matrix)
compare against to know when to reload. The queries both backends share are in base.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..migrations import migrate
from ..types import ChunkDraft, SearchFilters
from .base import FileRecord, StoreBase, iso, now_iso

__all__ = ["Store", "FileRecord", "now_iso", "fts5_query"]


def fts5_query(terms: list[str]) -> str:
    """A safe FTS5 query: every term quoted (no syntax injection), OR-ed, so BM25 ranks partial matches."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class Store(StoreBase):
    """A connection to one person's database. Use as a context manager or call `close()`."""

    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            with self.transaction():
                migrate(self.db)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open the memory database {self.path}: {e}. If the file is corrupt, "
                             "restore it from a backup or move it away and re-ingest.") from e
        self._in_tx = False

    # -- plumbing -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, memory: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included).

        `memory=False` for writes that do not change what search sees (the conversation log, token use):
        they leave `generation` alone, so the vector index is not reloaded after every chat turn."""
        if getattr(self, "_in_tx", False):
            yield self.db
            return
        self._in_tx = True
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            if memory:
                self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self._in_tx = False

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- chunks and vectors ---------------------------------------------------------------------------
    def insert_chunk(self, document_id: int, source_id: int, title: str, draft: ChunkDraft,
                     fallback_date: datetime | None, vector: np.ndarray | None, model: str | None) -> int:
        """Write one chunk, its keyword-index row and (optionally) its vector. Call inside a transaction."""
        speakers = "|" + "|".join(draft.speakers) + "|" if draft.speakers else ""
        cid = int(self.db.execute(
            "INSERT INTO chunks(document_id, source_id, position, text, heading, date, speakers) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (document_id, source_id, draft.position, draft.text, draft.heading,
             iso(draft.date or fallback_date), speakers)).lastrowid or 0)
        self.db.execute("INSERT INTO chunks_fts(rowid, text, heading, title) VALUES (?, ?, ?, ?)",
                        (cid, draft.text, draft.heading, title))
        if vector is not None and model is not None:
            self.put_vector(cid, model, vector)
        return cid

    def put_vector(self, chunk_id: int, model: str, vector: np.ndarray) -> None:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        self.db.execute("INSERT OR REPLACE INTO embeddings(chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                        (chunk_id, model, int(v.shape[0]), v.tobytes()))

    _VECTOR_META = "SELECT id, source_id, date FROM chunks INDEXED BY chunks_source_date ORDER BY id"

    @staticmethod
    def _matrix(blobs: list[bytes], dim: int) -> np.ndarray:
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)

    def vector_search(self, model: str, query: np.ndarray, k: int, filters: SearchFilters
                      ) -> list[tuple[int, float]] | None:
        """None: the SQLite store has no vector index of its own; the searcher keeps the matrix in memory."""
        return None

    def undated_chunks(self) -> set[int]:
        """Chunks whose date is only their file's modification time (no date in the content or name)."""
        return {r[0] for r in self.db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE json_extract(d.metadata, '$.date_from') = 'file modification time'")}

    def term_document_counts(self, words: list[str]) -> dict[str, int]:
        """How many chunks contain each word, after the keyword index's own stemming ("living" → "live")."""
        if not words:
            return {}
        db = self.db
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5(w, "
                   "tokenize='porter unicode61 remove_diacritics 2')")
        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_vocab USING fts5vocab(temp, query_terms, "
                   "'instance')")
        db.execute("DELETE FROM temp.query_terms")
        db.executemany("INSERT INTO temp.query_terms(rowid, w) VALUES (?, ?)", list(enumerate(words)))
        stems = {doc: term for term, doc in db.execute("SELECT term, doc FROM temp.query_vocab")}
        out = {}
        for i, word in enumerate(words):
            row = db.execute("SELECT doc FROM chunks_vocab WHERE term = ?", (stems.get(i, word),)).fetchone()
            out[word] = int(row[0]) if row else 0
        return out

    # -- keyword side ---------------------------------------------------------------------------------
    def keyword_search(self, terms: list[str], filters: SearchFilters, limit: int) -> list[tuple[int, float]]:
        """(chunk_id, bm25) best first for chunks holding any of `terms`; bm25 is negated so higher is
        better. Text weighs more than titles.

        Without filters the keyword index answers alone; joining `chunks` for every match cost more than
        the ranking itself at 100k chunks."""
        fts_query = fts5_query(terms)
        if not fts_query:
            return []
        rank = "bm25(chunks_fts, 1.0, 0.5, 0.5)"
        if filters.empty:
            sql, args = (f"SELECT rowid, -{rank} FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY {rank} LIMIT ?",
                         (fts_query, limit))
        else:
            where, extra = self.filter_sql(filters)
            sql = (f"SELECT c.id, -{rank} FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                   f"WHERE chunks_fts MATCH ? {where} ORDER BY {rank} LIMIT ?")
            args = (fts_query, *extra, limit)
        try:
            return [(int(r[0]), float(r[1])) for r in self.db.execute(sql, args)]
        except sqlite3.OperationalError as e:  # a query our sanitizer let through but FTS5 rejects
            raise StoreError(f"keyword search failed for {fts_query!r}: {e}") from e

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))

