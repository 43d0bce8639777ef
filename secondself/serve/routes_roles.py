"""Roles over HTTP: list and show (read), create, change and delete (admin); tags on sources (admin).

A token bound to a role sees only its own role here. `auth.acting_role` is what every role-aware route (chat,
search, sources, profile, facts, conversations) calls to learn which role, if any, a request acts as.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from .. import roles as rolelib
from ..errors import RoleNotFoundError
from ..memory import scope as scopelib
from .auth import Admin, RoleReader, acting_role
from .state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["roles"])

Name = Annotated[str, Field(min_length=1, max_length=64)]


class ScopeIn(BaseModel):
    sources: list[Name] = Field(default_factory=list, max_length=200)
    tags: list[Name] = Field(default_factory=list, max_length=200)
    since: str | None = Field(default=None, max_length=40)
    until: str | None = Field(default=None, max_length=40)

    def scope(self) -> scopelib.Scope:
        return scopelib.Scope(tuple(self.sources), tuple(self.tags), self.since, self.until)


class RoleIn(BaseModel):
    name: Name
    instructions: str = Field(default="", max_length=rolelib.MAX_INSTRUCTIONS)
    scope: ScopeIn = Field(default_factory=ScopeIn)
    model: str | None = Field(default=None, max_length=500)


class RolePatch(BaseModel):
    """What to change; omitted fields stay. `model: ""` goes back to the persona model; `scope` replaces the
    whole scope."""

    instructions: str | None = Field(default=None, max_length=rolelib.MAX_INSTRUCTIONS)
    scope: ScopeIn | None = None
    model: str | None = Field(default=None, max_length=500)


@router.get("/roles")
def list_roles(request: Request, principal: RoleReader) -> dict:
    """Every role (a role-bound token: only its own), with its model id for /v1/chat/completions."""
    rt = state_of(request).runtime
    with rt.lock:
        rows = rolelib.list_roles(rt.store)
    return {"data": [r.to_dict() for r in rows if principal.role is None or r.name == principal.role]}


@router.get("/roles/{name}")
def show_role(name: str, request: Request, principal: RoleReader) -> dict:
    role = acting_role(request, principal, name)
    if role is None:  # cannot happen: a name was asked for
        raise RoleNotFoundError(name)
    return role.to_dict()


@router.post("/roles", status_code=201)
def create_role(body: RoleIn, request: Request, _: Admin) -> dict:
    """Create a role; chat with it as model `secondself:NAME`."""
    rt = state_of(request).runtime
    with rt.lock:
        return rolelib.create_role(rt.store, body.name, body.instructions, body.scope.scope(), body.model).to_dict()


@router.put("/roles/{name}")
def update_role(name: str, body: RolePatch, request: Request, _: Admin) -> dict:
    rt = state_of(request).runtime
    with rt.lock:
        return rolelib.update_role(rt.store, name, instructions=body.instructions,
                                   scope=body.scope.scope() if body.scope is not None else None,
                                   model=body.model).to_dict()


@router.delete("/roles/{name}")
def delete_role(name: str, request: Request, _: Admin) -> dict:
    """Delete a role (refused while tokens bound to it are active)."""
    rt = state_of(request).runtime
    with rt.lock:
        return {"deleted": rolelib.delete_role(rt.store, name).name}


@router.put("/sources/{source}/tags/{tag}", tags=["memory"])
def tag_source(source: str, tag: str, request: Request, _: Admin) -> dict:
    """Tag a source; roles whose scope names the tag can read it from now on (admin: it widens roles)."""
    rt = state_of(request).runtime
    with rt.lock:
        scopelib.tag_source(rt.store, source, tag)
        return {"source": source, "tags": list(scopelib.source_tags(rt.store).get(source, ()))}


@router.delete("/sources/{source}/tags/{tag}", tags=["memory"])
def untag_source(source: str, tag: str, request: Request, _: Admin) -> dict:
    rt = state_of(request).runtime
    with rt.lock:
        removed = scopelib.untag_source(rt.store, source, tag)
        return {"source": source, "removed": removed, "tags": list(scopelib.source_tags(rt.store).get(source, ()))}
