"""Memories under /api: sources, uploads, typed notes and search.

Each route is a thin call into the library, under the runtime's lock (one shared store connection); ingesting
an upload is submitted to the background worker (`jobs.py`) and answered with 202 and the job. Scopes: read
(sources, search), write (upload, add a note, forget a source). The reading routes take an optional `role`
and then see only its scope; a token bound to a role always gets its role (auth.acting_role).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..types import SearchFilters
from .auth import RoleReader, Writer, acting_role
from .responses import accepted
from .state import jobs_of, state_of
from .uploads import save_note, save_upload, upload_source, uploads_dir

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/sources", tags=["memory"])
def sources(request: Request, principal: RoleReader, role: str | None = None) -> dict:
    """Sources with their counts and tags; with a role, only those its scope may read."""
    from ..memory.scope import source_tags

    rt = state_of(request).runtime
    acting = acting_role(request, principal, role)
    with rt.lock:
        rows = rt.store.sources()
        tags = source_tags(rt.store)
        readable = acting.scope.readable_sources(rt.store) if acting else None
    return {"data": [{"name": s.name, "root": s.root, "files": s.files, "failed_files": s.failed_files,
                      "documents": s.documents, "chunks": s.chunks, "last_ingest_at": s.last_ingest_at,
                      "tags": list(tags.get(s.name, ()))}
                     for s in rows if readable is None or s.name in readable]}


@router.delete("/sources/{name}", tags=["memory"])
def delete_source(name: str, request: Request, _: Writer) -> dict:
    """Forget a source and everything derived from it; uploaded copies are deleted too."""
    rt = state_of(request).runtime
    with rt.lock:
        root = rt.store.source_roots().get(name)
        counts = rt.store.delete_source(name)
    uploads = uploads_dir(rt.settings.person_dir).resolve()
    if root and uploads in Path(root).resolve().parents:
        shutil.rmtree(root, ignore_errors=True)
    return {"deleted": name, "counts": counts,
            "note": "layer 1 still mentions this source until the next build; `profile purge` clears history"}


@router.post("/memories", status_code=202, tags=["memory"])
def upload(request: Request, _: Writer, files: Annotated[list[UploadFile], File()],
           source: Annotated[str | None, Form()] = None) -> JSONResponse:
    """Upload files into a source (default 'uploads') and ingest them in the background. A source that one
    of the person's folders owns is refused (409); the default moves on to 'uploads-2' when a folder owns it."""
    state = state_of(request)
    rt = state.runtime
    person_dir = rt.settings.person_dir
    with rt.lock:
        source = upload_source(rt.store.source_roots(), person_dir, source, "uploads")
    saved = []
    for f in files:
        def chunks(f=f):
            while data := f.file.read(1 << 20):
                yield data
        saved.append(save_upload(person_dir, source, f.filename or "", chunks(), state.options.max_upload_bytes))
    folder = saved[0].parent
    job = jobs_of(request).submit("ingest", {"paths": [str(folder)], "source_name": folder.name,
                                           "files": [p.name for p in saved]})
    return accepted(job)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200_000)
    title: str | None = Field(default=None, max_length=200)


@router.post("/memories/text", status_code=202, tags=["memory"])
def add_note(note: NoteIn, request: Request, _: Writer) -> JSONResponse:
    """Add a memory typed by the person; saved as a dated note in the 'notes' source (or 'notes-2', ... when
    one of the person's folders is called 'notes') and ingested."""
    rt = state_of(request).runtime
    with rt.lock:
        source = upload_source(rt.store.source_roots(), rt.settings.person_dir, None, "notes")
    path = save_note(rt.settings.person_dir, note.text, note.title, source=source)
    return accepted(jobs_of(request).submit("ingest", {"paths": [str(path.parent)], "source_name": source,
                                                      "files": [path.name]}))


@router.get("/search", tags=["memory"])
def search(request: Request, principal: RoleReader, q: str, k: Annotated[int, Query(ge=1, le=50)] = 5,
           source: Annotated[list[str] | None, Query()] = None, since: str | None = None, until: str | None = None,
           speaker: str | None = None, mode: str = "hybrid", role: str | None = None) -> dict:
    """Hybrid search; with a role, only inside its scope (the filters can narrow it, never widen it). The
    answer is the object `secondself search --json` prints: query, mode, results."""
    from ..memory.scope import ScopedSearcher
    from ..memory.search import hit_to_dict

    rt = state_of(request).runtime
    acting = acting_role(request, principal, role)
    with rt.lock:
        rt.reembed_if_stale()
        searcher = ScopedSearcher(rt.searcher, acting.scope) if acting else rt.searcher
        hits = searcher.search(q, k=k, filters=SearchFilters(tuple(source or ()), since, until, speaker), mode=mode)
    return {"query": q, "mode": mode, "results": [hit_to_dict(h) for h in hits]}
