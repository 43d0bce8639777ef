"""Spaces over HTTP: list and show (read); create, run and delete (write). Thin calls into `secondself.spaces`.

A run can take minutes with the embedded model, so `POST /api/spaces/{id}/run` submits a background job of
kind "space" and answers 202 with it; its progress (the turn just stored) comes through the job events.
No route returns a remote participant's token: participants are shown as `http://host:8765/v1#***`.

Who may send what where: a participant on another machine, or one whose token is read from this server's
environment (`#env:VAR`), needs the admin scope, as a bridge expert does — a write token must not be able to
send the person's discussion to an address it names, or this server's keys to an address it controls.
Role-bound tokens are refused (a space speaks with several roles at once; no single scope applies).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import spaces
from ..backends.openai_compat import is_remote_url
from ..errors import ConfigError
from .auth import Reader, Writer, operator
from .responses import api_error
from .state import state_of

router = APIRouter(prefix="/api", tags=["spaces"])

Id = Annotated[int, PathParam(ge=1, le=2**53)]
Term = Annotated[str, Field(min_length=1, max_length=200)]


class ParticipantIn(BaseModel):
    ref: str = Field(min_length=1, max_length=4000,
                     description="self, role:NAME, or http://host:port/v1[?model=M&name=N]#env:VAR|#TOKEN")
    never_share: list[Term] = Field(default_factory=list, max_length=500)
    share_citations: bool | None = None


class SpaceIn(BaseModel):
    topic: str = Field(min_length=1, max_length=spaces.MAX_TOPIC)
    participants: list[str | ParticipantIn] = Field(min_length=1, max_length=spaces.MAX_PARTICIPANTS)
    host: str = Field(default="self", max_length=100)
    rounds: int = Field(default=2, ge=1, le=spaces.MAX_ROUNDS)
    never_share: list[Term] = Field(default_factory=list, max_length=500,
                                    description="Terms withheld from remote participants; source:NAME / tag:NAME "
                                                "withhold the turns citing those memories.")
    share_citations: bool = False
    timeout: float = Field(default=spaces.DEFAULT_TIMEOUT, ge=1, le=600)


class RunIn(BaseModel):
    restart: bool = Field(default=False, description="Replace the transcript of a finished space and run it again.")


def _needs_admin(body: SpaceIn) -> str | None:
    for item in body.participants:
        ref = item if isinstance(item, str) else item.ref
        p, _ = spaces.parse_participant(ref)
        if p.remote and is_remote_url(p.url or ""):
            return f"{p.url} is not on this machine"
        if p.key and p.key.startswith("env:"):
            return f"{p.name} reads its token from this server's environment"
    return None


@router.get("/spaces")
def list_spaces(request: Request, _: Reader) -> dict:
    """The latest spaces, newest first (no transcripts)."""
    rt = state_of(request).runtime
    with rt.lock:
        return {"data": spaces.list_spaces(rt.store)}


@router.post("/spaces", status_code=201, response_model=None)
def create_space(body: SpaceIn, request: Request, principal: Writer) -> dict | JSONResponse:
    """Create a space; inline tokens are stored apart and never shown again."""
    why = _needs_admin(body)
    if why and not operator(principal):
        return api_error(403, f"this space needs the 'admin' scope (on a server for many persons, its operator's): "
                         f"{why}", "permission_error", "insufficient_scope")
    rt = state_of(request).runtime
    items = [p if isinstance(p, str) else p.model_dump() for p in body.participants]
    with rt.lock:
        return spaces.create_space(rt.store, body.topic, items, host=body.host, rounds=body.rounds,
                                   never_share=body.never_share, share_citations=body.share_citations,
                                   timeout=body.timeout).to_dict()


@router.get("/spaces/{space_id}")
def show_space(space_id: Id, request: Request, _: Reader) -> dict:
    """The space with its transcript: every turn, skipped ones with their error."""
    rt = state_of(request).runtime
    with rt.lock:
        return spaces.get_space(rt.store, space_id).to_dict()


def _active_job(request: Request, space_id: int) -> dict | None:
    jobs = state_of(request).jobs
    return next((j for j in jobs.list(1000) if j["kind"] == "space" and j["params"].get("space_id") == space_id
                 and j["status"] in ("queued", "running")), None)


@router.post("/spaces/{space_id}/run", status_code=202)
def run_space(space_id: Id, request: Request, _: Writer, body: RunIn | None = None) -> JSONResponse:
    """Run (or continue) the space in the background; 202 with the job (GET /api/jobs/{id}/events follows it).
    A finished space runs again only with `restart`, which replaces its transcript."""
    state = state_of(request)
    if state.jobs is None:
        raise ConfigError("this server runs no background jobs (started with jobs disabled)")
    rt = state.runtime
    restart = bool(body and body.restart)
    if _active_job(request, space_id) is not None:
        return api_error(409, f"space {space_id} is already being run", code="space_running")
    with rt.lock:
        space = spaces.get_space(rt.store, space_id)
        if space.status in ("done", "failed") and not restart:
            raise ConfigError(f"space {space_id} is {space.status}; send {{\"restart\": true}} to run it again")
        if restart:
            spaces.reset_space(rt.store, space_id)
    return JSONResponse({"job": state.jobs.submit("space", {"space_id": space_id})}, status_code=202)


@router.delete("/spaces/{space_id}", response_model=None)
def delete_space(space_id: Id, request: Request, _: Writer) -> dict | JSONResponse:
    """Delete a space, its transcript and its stored tokens."""
    rt = state_of(request).runtime
    if state_of(request).jobs is not None and _active_job(request, space_id) is not None:
        return api_error(409, f"space {space_id} is being run; cancel its job first", code="space_running")
    with rt.lock:
        spaces.delete_space(rt.store, space_id)
    return {"deleted": space_id}
