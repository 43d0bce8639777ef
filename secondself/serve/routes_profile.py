"""Layer 1 under /api: the profile, its versions and diffs, the person's own edits, dated facts, and builds.

Scopes: read (look), write (edit, roll back, correct facts, build). `profile` and `facts` take an optional
`role` and then show its scoped view; versions and diffs cannot honour a scope and refuse role-bound tokens.
A build runs in the background worker and is answered with 202 and the job.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..errors import ConfigError, ProfileError
from .auth import Reader, RoleReader, Writer, acting_role
from .params import Version
from .responses import accepted
from .state import jobs_of, state_of

__all__ = ["router"]

router = APIRouter(prefix="/api")


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
    return accepted(jobs_of(request).submit("build", body.model_dump()))
