"""The idempotent, incremental ingest pipeline: paths in, chunks + vectors + keyword index out.

    discover files → skip unchanged (size+mtime, then content hash) → read → chunk → embed (batched
    across files) → write, in transactions that each cover a group of whole files

A file's row is written with its hash only in the same transaction as its chunks, so a crash or Ctrl-C
leaves every file either fully ingested or untouched, and the next run finishes the rest. Failed files are
recorded with their reason (and retried next time); unsupported and empty ones are reported as skipped.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from ..backends.embedders import Embedder
from ..errors import IngestError, UnreadableFileError
from ..progress import OnProgress, Progress
from ..store import Store
from ..text.dates import from_timestamp
from ..types import ChunkDraft, ParsedDocument
from .chunking import chunk_blocks
from .files import check_regular, file_hash, relative_name, text_safe, walk_files
from .readers import is_supported, read_file

__all__ = ["ingest", "ensure_embeddings", "IngestReport", "FileOutcome", "embedding_text", "walk_files",
           "file_hash"]

log = logging.getLogger(__name__)

_FLUSH_CHUNKS = 256      # chunks embedded per model call group
_COMMIT_SECONDS = 5.0    # a transaction covers whole files, committed at least this often
_MATERIALIZE_BYTES = 64 << 20  # files up to this size are parsed completely before any write


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file. status: added, updated, unchanged, duplicate, failed, skipped, missing,
    removed."""

    source: str
    path: str
    status: str
    reason: str = ""
    chunks: int = 0


@dataclass
class IngestReport:
    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    embedded: int = 0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def chunks_written(self) -> int:
        return sum(o.chunks for o in self.outcomes)

    def summary(self) -> dict[str, int]:
        keys = ("added", "updated", "unchanged", "duplicate", "failed", "skipped", "missing", "removed")
        return {k: self.count(k) for k in keys}


def embedding_text(title: str, heading: str, text: str) -> str:
    """What the embedder sees: the chunk with its document title and heading path, for context."""
    head = " — ".join(p for p in (title, heading) if p)
    return f"{head}\n{text}" if head else text


@dataclass
class _Buffered:
    document_id: int
    source_id: int
    title: str
    draft: ChunkDraft
    fallback_date: datetime | None


class _Writer:
    """Buffers chunks so the embedder sees large batches across small files; writes within the open
    transaction of the caller."""

    def __init__(self, store: Store, embedder: Embedder, report: IngestReport, on_progress: OnProgress | None):
        self.store, self.embedder, self.report, self.on_progress = store, embedder, report, on_progress
        self.buffer: list[_Buffered] = []

    def add(self, item: _Buffered) -> None:
        self.buffer.append(item)
        if len(self.buffer) >= _FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        texts = [embedding_text(b.title, b.draft.heading, b.draft.text) for b in self.buffer]
        t = time.perf_counter()
        vectors = self.embedder.embed(texts)
        self.report.embed_seconds += time.perf_counter() - t
        self.report.embedded += len(texts)
        for b, vec in zip(self.buffer, vectors, strict=True):
            self.store.insert_chunk(b.document_id, b.source_id, b.title, b.draft, b.fallback_date, vec,
                                    self.embedder.name)
        self.buffer.clear()


def _map_speaker(doc: ParsedDocument, person_name: str) -> ParsedDocument:
    """Chat exports call the person "me"; use their name when we know it."""
    if not person_name:
        return doc
    blocks = (replace(b, speaker=person_name) if b.speaker == "me" else b for b in doc.blocks)
    return replace(doc, blocks=blocks)


def _source_for(store: Store, path: Path, source_name: str | None) -> tuple[str, int]:
    root = str(path)
    for name, existing_root in store.source_roots().items():
        if existing_root == root and (source_name is None or source_name == name):
            return name, store.ensure_source(name, root)
    if source_name:
        return source_name, store.ensure_source(source_name, root)
    base = path.stem if path.is_file() else path.name
    name, n = base or "root", 1
    roots = store.source_roots()
    while name in roots:
        n += 1
        name = f"{base}-{n}"
    return name, store.ensure_source(name, root)


def ingest(store: Store, embedder: Embedder, paths: Sequence[str | Path], *, source_name: str | None = None,
                 prune: bool = False, person_name: str = "", chunk_words: int = 160,
                 on_progress: OnProgress | None = None) -> IngestReport:
    """Ingest files and folders; each path argument is one source (named after it unless `source_name`).

    With no paths, every known source is re-scanned. `prune` deletes files that disappeared, and sources
    whose root disappeared. Raises IngestError if a path does not exist (nothing is written then).
    `on_progress` gets Progress("scan", files, files) per source, then Progress("ingest", done, files).
    """
    report = IngestReport()
    started = time.perf_counter()
    resolved = [Path(p).expanduser().resolve() for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise IngestError(f"no such file or folder: {', '.join(missing)}")
    if source_name and len(resolved) > 1:
        raise IngestError("--source-name names one source; give one path with it")
    undecodable = [text_safe(str(p), escape=True) for p in resolved if text_safe(str(p)) != str(p)]
    if undecodable:  # a source's root is stored to be found again, so it must survive the trip as text
        raise IngestError(f"name is not valid UTF-8: {', '.join(undecodable)}; rename it (files with such "
                          "names inside a folder are fine)")

    with store.transaction():
        if resolved:
            targets = [_source_for(store, p, source_name) + (p,) for p in resolved]
        else:
            targets = []
            for name, root in store.source_roots().items():
                if Path(root).exists():
                    targets.append((name, store.source_id(name), Path(root)))
                elif prune:
                    store.delete_source(name)
                    report.outcomes.append(FileOutcome(name, root, "removed", "source folder is gone"))
                else:
                    report.outcomes.append(FileOutcome(name, root, "missing", "source folder is gone"))

    target = max(1, min(chunk_words, embedder.max_words - 20))
    for name, sid, root in targets:
        _ingest_source(store, embedder, name, sid, root, report, prune=prune, person_name=person_name,
                       target=target, on_progress=on_progress)
    report.seconds = time.perf_counter() - started
    return report


def _ingest_source(store: Store, embedder: Embedder, name: str, sid: int, root: Path, report: IngestReport, *,
                   prune: bool, person_name: str, target: int, on_progress: OnProgress | None) -> None:
    base = root if root.is_dir() else root.parent
    files = list(walk_files(root))
    if on_progress:
        on_progress(Progress("scan", len(files), len(files)))
    seen: set[str] = set()
    writer = _Writer(store, embedder, report, on_progress)
    done = 0
    while done < len(files):
        # One transaction per group of whole files; KeyboardInterrupt rolls back only the open group.
        with store.transaction():
            group_started = time.perf_counter()
            while True:  # at least one file per transaction, then until the time slice is used
                path = files[done]
                rel = relative_name(path, base)
                seen.add(rel)
                outcome = _ingest_one(store, writer, name, sid, path, rel, person_name, target)
                report.outcomes.append(outcome)
                done += 1
                if on_progress:
                    on_progress(Progress("ingest", done, len(files)))
                if done >= len(files) or time.perf_counter() - group_started >= _COMMIT_SECONDS:
                    break
            writer.flush()
            store.touch_source(sid)

    gone = [f for f in store.files(sid) if f.path not in seen]
    with store.transaction():
        for f in gone:
            if prune:
                store.delete_file(f.id)
                report.outcomes.append(FileOutcome(name, f.path, "removed", "file is gone"))
            else:
                report.outcomes.append(FileOutcome(name, f.path, "missing", "file is gone (use --prune)"))


def _ingest_one(store: Store, writer: _Writer, source: str, sid: int, path: Path, rel: str,
                person_name: str, target: int) -> FileOutcome:
    if not is_supported(path):
        return FileOutcome(source, rel, "skipped", f"unsupported format ({path.suffix or 'no extension'})")
    try:
        st = path.stat()
    except OSError as e:
        return FileOutcome(source, rel, "failed", f"cannot read: {e.strerror}")
    old = store.file(sid, rel)
    try:
        check_regular(path, st)  # before any open: a FIFO blocks `open`, /dev/zero never ends
    except UnreadableFileError as e:
        return _record_failure(store, source, sid, rel, st, e, kept=old is not None and old.status == "ok")
    if old and old.status == "ok" and old.size == st.st_size and old.mtime == st.st_mtime:
        return FileOutcome(source, rel, "unchanged")
    try:
        digest = file_hash(path)
    except OSError as e:
        return FileOutcome(source, rel, "failed", f"cannot read: {e.strerror}")
    except UnreadableFileError as e:  # swapped for a FIFO or device since the check above
        return _record_failure(store, source, sid, rel, st, e, kept=old is not None and old.status == "ok")
    if old and old.content_hash == digest and old.status in ("ok", "duplicate"):
        still_dup = old.status == "ok" or store.ok_file_with_hash(digest, exclude_id=old.id)
        if still_dup:
            store.record_file(sid, rel, content_hash=digest, size=st.st_size, mtime=st.st_mtime,
                              status=old.status, reason=old.reason)
            return FileOutcome(source, rel, "unchanged")
    twin = store.ok_file_with_hash(digest, exclude_id=old.id if old else None)
    if twin:
        fid = store.record_file(sid, rel, content_hash=digest, size=st.st_size, mtime=st.st_mtime,
                                status="duplicate", reason=f"same content as {twin.path}", duplicate_of=twin.id)
        store.clear_file_documents(fid)
        return FileOutcome(source, rel, "duplicate", f"same content as {twin.path}")

    fallback, fallback_from = _fallback_date(path, st.st_mtime)
    try:
        parsed = _parse(path, person_name, target, materialize=st.st_size <= _MATERIALIZE_BYTES)
        if st.st_size <= _MATERIALIZE_BYTES and not any(drafts for _, drafts in parsed):
            raise UnreadableFileError(path, "no text found", kind="empty")
    except UnreadableFileError as e:
        return _record_failure(store, source, sid, rel, st, e, kept=old is not None and old.status == "ok")
    except Exception as exc:  # a bug met in one file must not cost the batch: nothing of it is written yet
        log.exception("unexpected error while reading %s", rel)
        e = UnreadableFileError(path, f"unexpected error (a bug in secondself; please report it): "
                                      f"{type(exc).__name__}: {exc}", "corrupt")
        return _record_failure(store, source, sid, rel, st, e, kept=old is not None and old.status == "ok")

    fid = store.record_file(sid, rel, content_hash=digest, size=st.st_size, mtime=st.st_mtime, status="ok")
    store.clear_file_documents(fid)
    n = 0
    doc_ids: set[int] = set()
    try:
        for doc, drafts in parsed:
            doc_date = doc.date or fallback
            meta = dict(doc.metadata) | ({} if doc.date else {"date_from": fallback_from})
            doc_id = store.insert_document(fid, doc.key, doc.title, doc.kind, doc_date, meta)
            doc_ids.add(doc_id)
            for draft in drafts:
                writer.add(_Buffered(doc_id, sid, doc.title, draft, doc_date))
                n += 1
    except UnreadableFileError as e:  # only for streamed (large) files: the error came mid-stream
        writer.buffer = [b for b in writer.buffer if b.document_id not in doc_ids]
        store.clear_file_documents(fid)
        return _record_failure(store, source, sid, rel, st, e, kept=False)
    if n == 0:
        store.delete_file(fid)
        return FileOutcome(source, rel, "skipped", "no text found")
    return FileOutcome(source, rel, "updated" if old else "added", chunks=n)


def _parse(path: Path, person_name: str, target: int,
           materialize: bool) -> Sequence[tuple[ParsedDocument, Iterable[ChunkDraft]]] | Iterator:
    """Read and chunk a file. Small files are parsed completely before anything is written, so a file
    that turns out corrupt half-way changes nothing; large ones stream (their blocks are lazy)."""
    docs = (_map_speaker(d, person_name) for d in read_file(path))
    pairs = ((d, chunk_blocks(d.blocks, target=target)) for d in docs)
    if materialize:
        return [(d, list(drafts)) for d, drafts in pairs]
    return pairs


def _record_failure(store: Store, source: str, sid: int, rel: str, st: os.stat_result,
                    e: UnreadableFileError, kept: bool) -> FileOutcome:
    """Unsupported/empty files are skipped; others are recorded as failed (retried on the next run).
    A file that was readable before keeps its previous chunks, and the reason says so."""
    if e.kind in ("unsupported", "empty"):
        old = store.file(sid, rel)  # the file was emptied or renamed to an unknown type: its old text is gone
        if old:
            store.delete_file(old.id)
        return FileOutcome(source, rel, "skipped", e.reason)
    reason = e.reason + ("; kept the previously ingested version" if kept else "")
    store.record_file(sid, rel, content_hash=None, size=st.st_size, mtime=st.st_mtime, status="failed",
                      reason=reason)
    return FileOutcome(source, rel, "failed", reason)


_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")


def _fallback_date(path: Path, mtime: float) -> tuple[datetime | None, str]:
    """A document without a date of its own: a date in its file name ("2025-03-28-notes.txt"), else the
    file's modification time — marked as such (`date_from`), since it may only say when it was copied."""
    m = _NAME_DATE.search(path.name)
    if m:
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC), "file name"
        except ValueError:
            pass
    return from_timestamp(mtime), "file modification time"  # None past datetime's range


def ensure_embeddings(store: Store, embedder: Embedder, on_progress: OnProgress | None = None,
                      batch: int = _FLUSH_CHUNKS) -> int:
    """Embed every chunk that has no vector from `embedder` (after a model switch). Returns how many.
    `on_progress` gets Progress("embed", chunks done, chunks to embed) per batch.

    Vectors of other models are kept, so switching back costs nothing. Each batch commits on its own,
    so an interrupted re-embed resumes where it stopped.
    """
    todo = store.chunks_missing_vectors(embedder.name)
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        vectors = embedder.embed([embedding_text(t, h, x) for _, t, h, x in part])
        with store.transaction():
            for (cid, *_), vec in zip(part, vectors, strict=True):
                store.put_vector(cid, embedder.name, vec)
        if on_progress:
            on_progress(Progress("embed", min(start + batch, len(todo)), len(todo)))
    return len(todo)
