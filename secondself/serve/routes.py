"""secondself's own routes under /api: memories, profile, jobs (ingest, build, train), adapters, settings.

Each route is a thin call into the library, under the runtime's lock (one shared store connection);
long work is submitted to the background worker (`jobs.py`) and answered with 202 and the job.
Scopes: read (look), write (change memories and profile), admin (train, adapters, settings, tokens).

Roles: the routes that read memories (search, sources, profile, facts) take an optional `role` and then see
only its scope; a token bound to a role always gets its role (routes_roles.acting_role). The routes that
cannot honour a scope (versions, diffs, jobs, adapters) refuse role-bound tokens (`Reader`, app.py).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..errors import ConfigError, ProfileError
from ..types import SearchFilters
from .app import Admin, Reader, RoleChatter, RoleReader, Writer, state_of
from .routes_roles import acting_role
from .tokens import grants
from .uploads import save_note, save_upload, uploads_dir

router = APIRouter(prefix="/api")

# Bounded integers: anything larger cannot be an id here (and SQLite stores at most 64 bits).
Id = Annotated[int, PathParam(ge=1, le=2**53)]
Version = Annotated[int | None, Query(ge=1, le=2**53)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _jobs(request: Request):
    jobs = state_of(request).jobs
    if jobs is None:
        raise ConfigError("this server runs no background jobs (started with jobs disabled)")
    return jobs


def _accepted(job: dict) -> JSONResponse:
    return JSONResponse({"job": job}, status_code=202)


# -- conversations --------------------------------------------------------------------------------------
@router.get("/conversations", tags=["chat"])
def conversations(request: Request, principal: RoleChatter, limit: Limit = 50) -> dict:
    """Logged conversations; a role-bound token sees only those held with its role."""
    from ..conversations import ConversationLog

    rt = state_of(request).runtime
    role = acting_role(request, principal, None)
    with rt.lock:
        rows = ConversationLog(rt.store).list(limit, model=role.model_id if role else None)
    return {"data": [{"id": c.id, "title": c.title, "model": c.model, "turns": c.turns, "updated_at": c.updated_at}
                     for c in rows]}


@router.get("/conversations/{conversation_id}", tags=["chat"])
def conversation(conversation_id: Id, request: Request, principal: RoleChatter) -> dict:
    from ..conversations import ConversationLog

    rt = state_of(request).runtime
    role = acting_role(request, principal, None)
    with rt.lock:
        turns = ConversationLog(rt.store).turns(conversation_id, model=role.model_id if role else None)
    return {"id": conversation_id, "turns": [{"role": t.role, "content": t.content, "citations": t.citations,
                                              "status": t.status} for t in turns]}


# -- memories -------------------------------------------------------------------------------------------
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
           source: Annotated[str, Form()] = "uploads") -> JSONResponse:
    """Upload files into a source (default 'uploads') and ingest them in the background."""
    state = state_of(request)
    person_dir = state.runtime.settings.person_dir
    saved = []
    for f in files:
        def chunks(f=f):
            while data := f.file.read(1 << 20):
                yield data
        saved.append(save_upload(person_dir, source, f.filename or "", chunks(), state.options.max_upload_bytes))
    folder = saved[0].parent
    job = _jobs(request).submit("ingest", {"paths": [str(folder)], "source_name": folder.name,
                                           "files": [p.name for p in saved]})
    return _accepted(job)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200_000)
    title: str | None = Field(default=None, max_length=200)


@router.post("/memories/text", status_code=202, tags=["memory"])
def add_note(note: NoteIn, request: Request, _: Writer) -> JSONResponse:
    """Add a memory typed by the person; saved as a dated note in the 'notes' source and ingested."""
    rt = state_of(request).runtime
    path = save_note(rt.settings.person_dir, note.text, note.title)
    return _accepted(_jobs(request).submit("ingest", {"paths": [str(path.parent)], "source_name": "notes",
                                                      "files": [path.name]}))


@router.get("/search", tags=["memory"])
def search(request: Request, principal: RoleReader, q: str, k: Annotated[int, Query(ge=1, le=50)] = 5,
           source: Annotated[list[str] | None, Query()] = None, since: str | None = None, until: str | None = None,
           speaker: str | None = None, mode: str = "hybrid", role: str | None = None) -> dict:
    """Hybrid search; with a role, only inside its scope (the filters can narrow it, never widen it)."""
    from ..memory.scope import ScopedSearcher
    from ..memory.search import hit_to_dict

    rt = state_of(request).runtime
    acting = acting_role(request, principal, role)
    with rt.lock:
        rt.reembed_if_stale()
        searcher = ScopedSearcher(rt.searcher, acting.scope) if acting else rt.searcher
        hits = searcher.search(q, k=k, filters=SearchFilters(tuple(source or ()), since, until, speaker), mode=mode)
    return {"query": q, "data": [hit_to_dict(h) for h in hits]}


# -- profile --------------------------------------------------------------------------------------------
def _profile_payload(p) -> dict:
    return {"version": p.version, "profile": p.to_dict()}


@router.get("/profile", tags=["profile"])
def profile(request: Request, principal: RoleReader, version: Version = None, role: str | None = None) -> dict:
    """The profile; with a role, its scoped view (only what was derived from memories inside its scope)."""
    from ..memory.scope import scoped_profile
    from ..memory.versions import current_version, load_version

    rt = state_of(request).runtime
    acting = acting_role(request, principal, role)
    with rt.lock:
        if version is None and current_version(rt.store) is None:
            raise ProfileError("no profile yet: build one (POST /api/build or `secondself build`)")
        p = load_version(rt.store, version)
        return _profile_payload(scoped_profile(p, acting.scope, rt.store) if acting else p)


@router.get("/profile/versions", tags=["profile"])
def versions(request: Request, _: Reader) -> dict:
    from ..memory.versions import list_versions

    rt = state_of(request).runtime
    with rt.lock:
        return {"data": list_versions(rt.store)}


@router.get("/profile/diff", tags=["profile"])
def diff(request: Request, _: Reader, a: Annotated[int, Query(ge=1, le=2**53)], b: Version = None) -> dict:
    from ..memory import versions as v

    rt = state_of(request).runtime
    with rt.lock:
        return {"a": a, "b": b, "lines": v.diff(v.load_version(rt.store, a), v.load_version(rt.store, b))}


class SectionIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


@router.put("/profile/sections/{section}", tags=["profile"])
def edit_section(section: str, body: SectionIn, request: Request, _: Writer) -> dict:
    """Replace a section with the person's own text; later builds keep it."""
    from ..memory import versions as v

    if section not in v.SECTIONS:
        raise ConfigError(f"unknown section {section!r}; sections: {', '.join(v.SECTIONS)}")
    rt = state_of(request).runtime
    with rt.lock:
        return _profile_payload(v.edit_section(rt.store, section, body.text))


class RollbackIn(BaseModel):
    version: int = Field(ge=1, le=2**53)


@router.post("/profile/rollback", tags=["profile"])
def rollback(body: RollbackIn, request: Request, _: Writer) -> dict:
    from ..memory import versions as v

    rt = state_of(request).runtime
    with rt.lock:
        return _profile_payload(v.rollback(rt.store, body.version))


@router.get("/facts", tags=["profile"])
def facts(request: Request, principal: RoleReader, at: str | None = None, about: str | None = None,
          version: Version = None, role: str | None = None) -> dict:
    """Dated facts; with a role, only those whose source memories are all inside its scope."""
    from ..memory import facts as factlib
    from ..memory.scope import scoped_profile
    from ..memory.versions import fact_dict, load_version

    rt = state_of(request).runtime
    acting = acting_role(request, principal, role)
    with rt.lock:
        p = load_version(rt.store, version)
        if acting is not None:
            p = scoped_profile(p, acting.scope, rt.store)
    items = list(p.facts)
    if about:
        items = factlib.facts_about(items, p.entities, about)
    if at:
        if len(at) != 10 or at[4] != "-" or at[7] != "-":
            raise ConfigError(f"at must be a date YYYY-MM-DD, not {at!r}")
        items = factlib.facts_at(items, at)
    return {"data": [fact_dict(f) | {"id": f.id} for f in items]}


class FactIn(BaseModel):
    object: str | None = Field(default=None, min_length=1, max_length=500)
    valid_from: str | None = Field(default=None, pattern=r"^(\d{4}-\d{2}-\d{2})?$")
    valid_to: str | None = Field(default=None, pattern=r"^(\d{4}-\d{2}-\d{2})?$")


@router.put("/facts/{fact_id}", tags=["profile"])
def edit_fact(fact_id: str, body: FactIn, request: Request, _: Writer) -> dict:
    """Correct a fact ('' for a date means unknown / still true); the person's version wins from then on."""
    from ..memory import versions as v

    changes = {k: (val or None) for k, val in body.model_dump().items() if val is not None}
    if not changes:
        raise ConfigError("give object, valid_from and/or valid_to")
    rt = state_of(request).runtime
    with rt.lock:
        fact, p = v.edit_fact(rt.store, fact_id, **changes)
    return {"fact": v.fact_dict(fact) | {"id": fact.id}, "version": p.version}


@router.post("/facts/{fact_id}/{action}", tags=["profile"])
def mark_fact(fact_id: str, action: str, request: Request, _: Writer) -> dict:
    """`pin` keeps a fact as it is, `forget` drops it, `unpin` undoes either (and edits)."""
    from ..memory import versions as v

    rt = state_of(request).runtime
    with rt.lock:
        if action == "unpin":
            return {"removed": v.clear_fact(rt.store, fact_id)}
        if action not in ("pin", "forget"):
            raise ConfigError(f"unknown action {action!r}: pin, forget or unpin")
        fact, p = v.mark_fact(rt.store, fact_id, action)
    return {"fact": v.fact_dict(fact) | {"id": fact.id}, "version": p.version}


class BuildIn(BaseModel):
    full: bool = False
    seed: int = Field(default=0, ge=0, le=2**31)
    teacher: str | None = None


@router.post("/build", status_code=202, tags=["profile"])
def build(body: BuildIn, request: Request, _: Writer) -> JSONResponse:
    """Build or update layer 1 in the background (resumable; an unchanged memory costs nothing)."""
    return _accepted(_jobs(request).submit("build", body.model_dump()))


# -- training -------------------------------------------------------------------------------------------
class TrainIn(BaseModel):
    steps: int | None = Field(default=None, ge=1, le=100_000)
    epochs: float | None = Field(default=None, gt=0, le=100)
    rank: int | None = Field(default=None, ge=1, le=256)
    base: str | None = None


@router.post("/train", status_code=202, tags=["training"])
def train(body: TrainIn, request: Request, _: Admin) -> JSONResponse:
    """Start training the personal model in the background: synthesize, fine-tune, evaluate, register."""
    params: dict[str, Any] = body.model_dump()
    params["base"] = params["base"] or state_of(request).options.train_base
    return _accepted(_jobs(request).submit("train", params))


@router.get("/jobs", tags=["jobs"])
def jobs(request: Request, _: Reader, limit: Limit = 50) -> dict:
    return {"data": _jobs(request).list(limit)}


@router.get("/jobs/{job_id}", tags=["jobs"])
def job(job_id: Id, request: Request, _: Reader) -> dict:
    return _jobs(request).get(job_id)


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel(job_id: Id, request: Request, principal: Writer) -> dict:
    jobs = _jobs(request)
    if jobs.get(job_id)["kind"] == "train" and not grants(principal.scopes, "admin"):
        raise ConfigError("cancelling training needs the 'admin' scope")
    return jobs.cancel(job_id)


FINISHED = {"done", "failed", "cancelled"}


@router.get("/jobs/{job_id}/events", tags=["jobs"])
async def job_events(job_id: Id, request: Request, _: Reader) -> StreamingResponse:
    """Server-sent events: `event: job` with the job each time it changes, then `event: end`."""
    jobs = _jobs(request)
    jobs.get(job_id)  # 404 before the stream starts

    async def events():
        last = None
        while True:
            current = await asyncio.to_thread(jobs.get, job_id)
            text = json.dumps(current, ensure_ascii=False)
            if text != last:
                yield f"event: job\ndata: {text}\n\n"
                last = text
            if current["status"] in FINISHED:
                yield "event: end\ndata: {}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.4)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/adapters", tags=["training"])
def adapters(request: Request, _: Reader) -> dict:
    from ..train import adapters as registry

    rt = state_of(request).runtime
    with rt.lock:
        cur = registry.current(rt.store, rt.settings.person_dir)
    rows = registry.list_adapters(rt.settings.person_dir)
    return {"current": cur.version if cur else None,
            "data": [{"version": a.version, "created_at": a.metadata.get("created_at"), "base": a.base,
                      "current": cur is not None and a.version == cur.version,
                      "metadata": {k: v for k, v in a.metadata.items() if k != "base_dir"}} for a in rows]}


@router.post("/adapters/{version}/use", tags=["training"])
def use_adapter(version: str, request: Request, _: Admin) -> dict:
    from ..train import adapters as registry

    rt = state_of(request).runtime
    with rt.lock:
        info = registry.use(rt.store, rt.settings.person_dir, version)
    return {"current": info.version}


# -- settings and tokens --------------------------------------------------------------------------------
@router.get("/settings", tags=["settings"])
def settings(request: Request, _: Admin) -> dict:
    """Models and where they run, and the tokens (names and scopes; never secrets or API keys)."""
    from ..backends.embedders import embedder_name
    from ..backends.registry import parse_spec
    from . import tokens

    state = state_of(request)
    s = state.runtime.settings
    with state.runtime.lock:
        toks = [t.to_dict() for t in tokens.list_tokens(state.runtime.store)]
    return {"person": s.person, "models": {
        "persona": {"spec": s.persona_model, "where": parse_spec(s.persona_model).describe()},
        "teacher": {"spec": s.teacher_model, "where": parse_spec(s.teacher_model).describe()},
        "embedding": {"spec": s.embedder, "where": f"{embedder_name(s.embedder)} — in-process, this machine"}},
        "tokens": toks, "gates": {spec: g.snapshot() for spec, g in state.gates.items()}}


class TokenIn(BaseModel):
    name: str
    scopes: list[str] = Field(min_length=1)
    role: str | None = Field(default=None, max_length=64, description="confine the token to this role")


@router.post("/tokens", status_code=201, tags=["settings"])
def create_token(body: TokenIn, request: Request, _: Admin) -> dict:
    """Create a token; its secret is in this response and nowhere else, ever."""
    from . import tokens

    rt = state_of(request).runtime
    with rt.lock:
        token, secret = tokens.create(rt.store, body.name, body.scopes, role=body.role)
    return token.to_dict() | {"token": secret}


@router.delete("/tokens/{name}", tags=["settings"])
def revoke_token(name: str, request: Request, _: Admin) -> dict:
    from . import tokens

    rt = state_of(request).runtime
    with rt.lock:
        return tokens.revoke(rt.store, name).to_dict()
