"""The SQLite store: one file per person holding sources, files, documents, chunks, vectors and the
keyword index. The store knows nothing about models or file formats; it stores what it is given.

Every write goes through `transaction()`, so a crash or Ctrl-C leaves the database as it was before the
transaction began. Every committed write bumps `generation`, which in-memory caches (the vector matrix)
compare against to know when to reload.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import SourceNotFoundError, StoreError
from ..migrations import migrate
from ..types import Chunk, ChunkDraft, SearchFilters, SourceInfo

__all__ = ["Store", "FileRecord", "now_iso"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso(d: datetime | None) -> str | None:
    return d.astimezone(UTC).isoformat(timespec="seconds") if d else None


@dataclass(frozen=True)
class FileRecord:
    id: int
    source_id: int
    path: str
    content_hash: str | None
    size: int | None
    mtime: float | None
    status: str
    reason: str | None


class Store:
    """A connection to one person's database. Use as a context manager or call `close()`."""

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

    @property
    def generation(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- sources ------------------------------------------------------------------------------------
    def ensure_source(self, name: str, root: str) -> int:
        row = self.db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        if row:
            self.db.execute("UPDATE sources SET root = ? WHERE id = ?", (root, row[0]))
            return int(row[0])
        cur = self.db.execute("INSERT INTO sources(name, root, created_at) VALUES (?, ?, ?)",
                              (name, root, now_iso()))
        return int(cur.lastrowid or 0)

    def source_id(self, name: str) -> int:
        row = self.db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        if not row:
            raise SourceNotFoundError(name)
        return int(row[0])

    def source_roots(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, root FROM sources ORDER BY name").fetchall())

    def touch_source(self, source_id: int) -> None:
        self.db.execute("UPDATE sources SET last_ingest_at = ? WHERE id = ?", (now_iso(), source_id))

    def sources(self) -> list[SourceInfo]:
        rows = self.db.execute(
            """SELECT s.name, s.root, s.last_ingest_at,
                 (SELECT count(*) FROM documents d JOIN files f ON f.id = d.file_id WHERE f.source_id = s.id),
                 (SELECT count(*) FROM chunks c WHERE c.source_id = s.id),
                 (SELECT count(*) FROM files f WHERE f.source_id = s.id),
                 (SELECT count(*) FROM files f WHERE f.source_id = s.id AND f.status = 'failed')
               FROM sources s ORDER BY s.name"""
        ).fetchall()
        return [SourceInfo(name=r[0], root=r[1], last_ingest_at=r[2], documents=r[3], chunks=r[4],
                           files=r[5], failed_files=r[6]) for r in rows]

    def delete_source(self, name: str) -> dict[str, int]:
        """Delete a source and everything derived from it (files, documents, chunks, vectors, index)."""
        sid = self.source_id(name)
        with self.transaction():
            counts = self._counts("WHERE source_id = ?", (sid,))
            self.db.execute("DELETE FROM sources WHERE id = ?", (sid,))
        return counts

    def _counts(self, where: str, args: tuple) -> dict[str, int]:
        files = self.db.execute(f"SELECT count(*) FROM files {where}", args).fetchone()[0]
        chunks = self.db.execute(f"SELECT count(*) FROM chunks {where}", args).fetchone()[0]
        return {"files": files, "chunks": chunks}

    # -- files ----------------------------------------------------------------------------------------
    def file(self, source_id: int, path: str) -> FileRecord | None:
        row = self.db.execute(
            "SELECT id, source_id, path, content_hash, size, mtime, status, reason FROM files "
            "WHERE source_id = ? AND path = ?", (source_id, path)).fetchone()
        return FileRecord(*row) if row else None

    def files(self, source_id: int | None = None) -> list[FileRecord]:
        sql = "SELECT id, source_id, path, content_hash, size, mtime, status, reason FROM files"
        rows = (self.db.execute(sql + " WHERE source_id = ? ORDER BY path", (source_id,)) if source_id
                else self.db.execute(sql + " ORDER BY path"))
        return [FileRecord(*r) for r in rows.fetchall()]

    def ok_file_with_hash(self, content_hash: str, exclude_id: int | None = None) -> FileRecord | None:
        row = self.db.execute(
            "SELECT id, source_id, path, content_hash, size, mtime, status, reason FROM files "
            "WHERE content_hash = ? AND status = 'ok' AND id IS NOT ? LIMIT 1", (content_hash, exclude_id)
        ).fetchone()
        return FileRecord(*row) if row else None

    def record_file(self, source_id: int, path: str, *, content_hash: str | None, size: int | None,
                    mtime: float | None, status: str, reason: str | None = None,
                    duplicate_of: int | None = None) -> int:
        """Insert or update a file row, keeping its id (documents hang off it). Call inside a transaction."""
        self.db.execute(
            """INSERT INTO files(source_id, path, content_hash, size, mtime, status, reason, duplicate_of,
                                 ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(source_id, path) DO UPDATE SET content_hash = excluded.content_hash,
                 size = excluded.size, mtime = excluded.mtime, status = excluded.status,
                 reason = excluded.reason, duplicate_of = excluded.duplicate_of,
                 ingested_at = excluded.ingested_at""",
            (source_id, path, content_hash, size, mtime, status, reason, duplicate_of, now_iso()))
        return int(self.db.execute("SELECT id FROM files WHERE source_id = ? AND path = ?",
                                   (source_id, path)).fetchone()[0])

    def delete_file(self, file_id: int) -> None:
        self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def clear_file_documents(self, file_id: int) -> None:
        self.db.execute("DELETE FROM documents WHERE file_id = ?", (file_id,))

    # -- documents, chunks, vectors -------------------------------------------------------------------
    def insert_document(self, file_id: int, key: str, title: str, kind: str, date: datetime | None,
                        metadata: dict[str, str]) -> int:
        cur = self.db.execute(
            "INSERT INTO documents(file_id, key, title, kind, date, metadata) VALUES (?, ?, ?, ?, ?, ?)",
            (file_id, key, title, kind, _iso(date), json.dumps(metadata, ensure_ascii=False)))
        return int(cur.lastrowid or 0)

    def insert_chunk(self, document_id: int, source_id: int, title: str, draft: ChunkDraft,
                     fallback_date: datetime | None, vector: np.ndarray | None, model: str | None) -> int:
        """Write one chunk, its keyword-index row and (optionally) its vector. Call inside a transaction."""
        speakers = "|" + "|".join(draft.speakers) + "|" if draft.speakers else ""
        cid = int(self.db.execute(
            "INSERT INTO chunks(document_id, source_id, position, text, heading, date, speakers) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (document_id, source_id, draft.position, draft.text, draft.heading,
             _iso(draft.date or fallback_date), speakers)).lastrowid or 0)
        self.db.execute("INSERT INTO chunks_fts(rowid, text, heading, title) VALUES (?, ?, ?, ?)",
                        (cid, draft.text, draft.heading, title))
        if vector is not None and model is not None:
            self.put_vector(cid, model, vector)
        return cid

    def put_vector(self, chunk_id: int, model: str, vector: np.ndarray) -> None:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        self.db.execute("INSERT OR REPLACE INTO embeddings(chunk_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                        (chunk_id, model, int(v.shape[0]), v.tobytes()))

    _CHUNK_SELECT = """SELECT c.id, s.name, f.path, d.key, d.title, c.position, c.text, c.heading, c.date,
                              c.speakers, d.id, d.kind
                       FROM chunks c JOIN documents d ON d.id = c.document_id
                       JOIN files f ON f.id = d.file_id JOIN sources s ON s.id = c.source_id"""

    @staticmethod
    def _chunk(row: Sequence) -> Chunk:
        path = row[2] + (f"#{row[3]}" if row[3] else "")
        speakers = tuple(s for s in row[9].split("|") if s)
        return Chunk(id=row[0], source=row[1], path=path, title=row[4], position=row[5], text=row[6],
                     heading=row[7], date=row[8], speakers=speakers, document_id=row[10], kind=row[11])

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = list(ids)
        out: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self.db.execute(f"{self._CHUNK_SELECT} WHERE c.id IN ({marks})", part):
                out[row[0]] = self._chunk(row)
        return out

    def all_chunks(self, source: str | None = None) -> Iterator[Chunk]:
        sql, args = self._CHUNK_SELECT, ()
        if source:
            sql, args = sql + " WHERE s.name = ?", (source,)
        for row in self.db.execute(sql + " ORDER BY c.id", args):
            yield self._chunk(row)

    def chunks_missing_vectors(self, model: str) -> list[tuple[int, str, str, str]]:
        """(chunk_id, title, heading, text) of chunks that have no vector from `model`."""
        return self.db.execute(
            "SELECT c.id, d.title, c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model = ?) ORDER BY c.id", (model,)
        ).fetchall()

    def count_missing_vectors(self, model: str) -> int:
        return self.db.execute(
            "SELECT (SELECT count(*) FROM chunks) - (SELECT count(*) FROM embeddings WHERE model = ?)", (model,)
        ).fetchone()[0]

    def vector_models(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT model, count(*) FROM embeddings GROUP BY model").fetchall())

    def load_vectors(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All vectors of `model` as (chunk_ids int64[n], matrix float32[n, d], source_ids int64[n],
        dates as unix seconds float64[n] with NaN where unknown).

        Two narrow queries instead of a join, so no page holding chunk text is read (at 100k chunks the
        join spent a second reading text it did not need).
        """
        rows = self.db.execute("SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? ORDER BY chunk_id",
                               (model,)).fetchall()
        if not rows:
            return (np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                    np.zeros(0, np.float64))
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise StoreError(f"vectors for model {model!r} have mixed dimensions {sorted(dims)}")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dims.pop())
        meta = self.db.execute("SELECT id, source_id, date FROM chunks INDEXED BY chunks_source_date "
                               "ORDER BY id").fetchall()
        meta_ids = np.fromiter((r[0] for r in meta), np.int64, len(meta))
        pos = np.searchsorted(meta_ids, ids)  # every vector's chunk exists (ON DELETE CASCADE)
        sources = np.fromiter((r[1] for r in meta), np.int64, len(meta))[pos]
        dates = np.array([_epoch(r[2]) for r in meta], dtype=np.float64)[pos]
        return ids, matrix, sources, dates

    def undated_chunks(self) -> set[int]:
        """Chunks whose date is only their file's modification time (no date in the content or name)."""
        return {r[0] for r in self.db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE json_extract(d.metadata, '$.date_from') = 'file modification time'")}

    def speakers_index(self) -> dict[str, np.ndarray]:
        """Lower-cased speaker → sorted chunk ids, for the vector side's speaker filter."""
        index: dict[str, list[int]] = {}
        for cid, speakers in self.db.execute("SELECT id, speakers FROM chunks WHERE speakers != ''"):
            for s in speakers.lower().split("|"):
                if s:
                    index.setdefault(s, []).append(cid)
        return {s: np.asarray(ids, dtype=np.int64) for s, ids in index.items()}

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

    def chunk_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    # -- keyword side ---------------------------------------------------------------------------------
    def keyword_search(self, fts_query: str, filters: SearchFilters, limit: int) -> list[tuple[int, float]]:
        """(chunk_id, bm25) best first; bm25 is negated so higher is better. Text weighs more than titles.

        Without filters the keyword index answers alone; joining `chunks` for every match cost more than
        the ranking itself at 100k chunks."""
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
            parts.append("instr(lower(c.speakers), ?) > 0")
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
            "db_bytes": sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")),
        }


def _epoch(iso: str | None) -> float:
    if not iso:
        return float("nan")
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return float("nan")

