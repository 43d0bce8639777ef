"""What both stores share: the queries whose SQL both SQLite and Postgres accept (through the Postgres
connection facade, pg_connection.py), written once. Each backend adds its connection, transactions, the
keyword index, vectors and the few statements that differ (sqlite.py, postgres.py).

Contract notes that hold for both: every write happens inside `transaction()`; `record_file`,
`insert_document`, `insert_chunk` and `put_vector` must be called inside one; ids are integers that stay
valid until their row is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import SourceNotFoundError, StoreError
from ..types import Chunk, SearchFilters, SourceInfo

__all__ = ["StoreBase", "FileRecord", "now_iso", "iso"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def iso(d: datetime | None) -> str | None:
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


_FILE_COLUMNS = "id, source_id, path, content_hash, size, mtime, status, reason"


class StoreBase:
    """The portable half of the store contract. Subclasses set `db` (sqlite3-shaped: `execute` with `?`
    placeholders) and implement `transaction`."""

    db: Any

    def transaction(self, memory: bool = True) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def generation(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- sources ------------------------------------------------------------------------------------
    def ensure_source(self, name: str, root: str) -> int:
        row = self.db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        if row:
            self.db.execute("UPDATE sources SET root = ? WHERE id = ?", (root, row[0]))
            return int(row[0])
        return int(self.db.execute("INSERT INTO sources(name, root, created_at) VALUES (?, ?, ?) RETURNING id",
                                   (name, root, now_iso())).fetchone()[0])

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
        row = self.db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE source_id = ? AND path = ?",
                              (source_id, path)).fetchone()
        return FileRecord(*row) if row else None

    def files(self, source_id: int | None = None) -> list[FileRecord]:
        sql = f"SELECT {_FILE_COLUMNS} FROM files"
        rows = (self.db.execute(sql + " WHERE source_id = ? ORDER BY path", (source_id,)) if source_id
                else self.db.execute(sql + " ORDER BY path"))
        return [FileRecord(*r) for r in rows.fetchall()]

    def ok_file_with_hash(self, content_hash: str, exclude_id: int | None = None) -> FileRecord | None:
        row = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE content_hash = ? AND status = 'ok' AND id IS DISTINCT FROM ? "
            "LIMIT 1", (content_hash, exclude_id)).fetchone()
        return FileRecord(*row) if row else None

    def record_file(self, source_id: int, path: str, *, content_hash: str | None, size: int | None,
                    mtime: float | None, status: str, reason: str | None = None,
                    duplicate_of: int | None = None) -> int:
        """Insert or update a file row, keeping its id (documents hang off it). Call inside a transaction."""
        return int(self.db.execute(
            """INSERT INTO files(source_id, path, content_hash, size, mtime, status, reason, duplicate_of,
                                 ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(source_id, path) DO UPDATE SET content_hash = excluded.content_hash,
                 size = excluded.size, mtime = excluded.mtime, status = excluded.status,
                 reason = excluded.reason, duplicate_of = excluded.duplicate_of,
                 ingested_at = excluded.ingested_at
               RETURNING id""",
            (source_id, path, content_hash, size, mtime, status, reason, duplicate_of, now_iso())).fetchone()[0])

    def delete_file(self, file_id: int) -> None:
        self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def clear_file_documents(self, file_id: int) -> None:
        self.db.execute("DELETE FROM documents WHERE file_id = ?", (file_id,))

    # -- documents, chunks ----------------------------------------------------------------------------
    def insert_document(self, file_id: int, key: str, title: str, kind: str, date: datetime | None,
                        metadata: dict[str, str]) -> int:
        return int(self.db.execute(
            "INSERT INTO documents(file_id, key, title, kind, date, metadata) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (file_id, key, title, kind, iso(date), json.dumps(metadata, ensure_ascii=False))).fetchone()[0])

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

    def chunk_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    # -- vectors --------------------------------------------------------------------------------------
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

    def speakers_index(self) -> dict[str, np.ndarray]:
        """Lower-cased speaker → sorted chunk ids, for the vector side's speaker filter."""
        index: dict[str, list[int]] = {}
        for cid, speakers in self.db.execute("SELECT id, speakers FROM chunks WHERE speakers != '' ORDER BY id"):
            for s in speakers.lower().split("|"):
                if s:
                    index.setdefault(s, []).append(cid)
        return {s: np.asarray(ids, dtype=np.int64) for s, ids in index.items()}

    # -- filters and statistics ---------------------------------------------------------------------
    _POSITION = "instr"  # the SQL function giving a substring's position (Postgres: strpos)

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
            parts.append(f"{self._POSITION}(lower(c.speakers), ?) > 0")
            args.append("|" + f.speaker.lower() + "|")
        return ("AND " + " AND ".join(parts)) if parts else "", args

    def stats(self) -> dict[str, object]:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        by_status = dict(self.db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        return {
            "sources": q("SELECT count(*) FROM sources"),
            "files": by_status,
            "documents": q("SELECT count(*) FROM documents"),
            "chunks": q("SELECT count(*) FROM chunks"),
            "vectors": self.vector_models(),
            "db_bytes": self.db_bytes(),
        }

    def db_bytes(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- vectors ------------------------------------------------------------------------------------------
    _VECTOR_META = "SELECT id, source_id, date FROM chunks ORDER BY id"

    def load_vectors(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All vectors of `model` as (chunk_ids int64[n], matrix float32[n, d], source_ids int64[n],
        dates as unix seconds float64[n] with NaN where unknown).

        Two narrow queries instead of a join, so no page holding chunk text is read (at 100k chunks the
        join spent a second reading text it did not need)."""
        rows = self.db.execute("SELECT chunk_id, dim, vector FROM embeddings WHERE model = ? ORDER BY chunk_id",
                               (model,)).fetchall()
        if not rows:
            return (np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                    np.zeros(0, np.float64))
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise StoreError(f"vectors for model {model!r} have mixed dimensions {sorted(dims)}")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        matrix = self._matrix([r[2] for r in rows], dims.pop())
        return ids, matrix, *vector_metadata(ids, self.db.execute(self._VECTOR_META).fetchall())

    @staticmethod
    def _matrix(vectors: list, dim: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def vector_metadata(ids: np.ndarray, meta: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Source ids and dates (unix seconds, NaN where unknown) of the chunks `ids`, from (id, source_id, date)
    rows of every chunk sorted by id."""
    meta_ids = np.fromiter((r[0] for r in meta), np.int64, len(meta))
    pos = np.searchsorted(meta_ids, ids)  # every vector's chunk exists (ON DELETE CASCADE)
    sources = np.fromiter((r[1] for r in meta), np.int64, len(meta))[pos]
    dates = np.array([_epoch(r[2]) for r in meta], dtype=np.float64)[pos]
    return sources, dates


def _epoch(iso_date: str | None) -> float:
    if not iso_date:
        return float("nan")
    try:
        return datetime.fromisoformat(iso_date).timestamp()
    except ValueError:
        return float("nan")
