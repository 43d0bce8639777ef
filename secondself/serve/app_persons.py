"""The server for many persons (`secondself serve --all-persons`): the same routes, the OpenAI API and MCP as
for one person (app.py), each acting for the person of the caller's token (persons.py), plus the admin routes.

Tokens:
- a person's token (`secondself --person NAME token create`, or POST /api/tokens with one of theirs) reaches
  that person's memories, profile, conversations, roles, spaces, adapters, uploads and jobs, and nobody
  else's: another person's ids are unknown to it (404), so what exists elsewhere does not leak;
- the server's admin token (`secondself token create --admin`, admin_tokens.py) creates and removes persons
  under /admin/persons and does nothing else: on every person route it is an unknown token (401), as a
  person's token is on the admin routes. Not 403: a 403 would confirm the secret is valid somewhere.
- there is no tokenless access, not even from this machine: there is no one person it could be.

Security otherwise as app.py: Host and Origin checks, CORS only for configured origins, upload limits.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from .. import __version__
from ..backends.openai_compat import is_loopback_host
from ..backends.registry import spec_guard
from ..errors import ConfigError
from . import tokens as token_store
from .app import ROUTERS, _install_errors, _install_guards, add_web_routes
from .auth import SERVER_ADMIN, Forbidden, Principal, authenticate
from .limits import RateLimiter
from .persons import Persons, spec_check

__all__ = ["create_persons_app", "admin_router"]

log = logging.getLogger("secondself.serve")

admin_router = APIRouter(prefix="/admin", tags=["admin"])


def _server_admin(request: Request) -> Principal:
    principal = authenticate(request)
    if SERVER_ADMIN not in principal.scopes:  # cannot happen: under /admin/ only admin tokens authenticate
        raise Forbidden("this route needs the server's admin token")
    request.app.state.admin_limiter.check(principal.name)
    return principal


ServerAdmin = Annotated[Principal, Depends(_server_admin)]


def _persons(request: Request) -> Persons:
    return request.app.state.persons


class FirstToken(BaseModel):
    name: str = Field(default="owner", max_length=64)
    scopes: list[str] = Field(default_factory=lambda: ["admin"], min_length=1)


class PersonIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="the person's id: letters, digits, '.', '_', '-'")
    token: FirstToken | None = Field(default_factory=FirstToken,
                                     description="a first token for the person, returned once (null: none)")


@admin_router.get("/persons")
def list_persons(request: Request, _: ServerAdmin) -> dict:
    """The persons this server serves (names only)."""
    return {"data": _persons(request).names()}


@admin_router.post("/persons", status_code=201)
def create_person(body: PersonIn, request: Request, _: ServerAdmin) -> dict:
    """Create an empty person, with a first token of theirs (its secret is in this response only)."""
    persons = _persons(request)
    bad_token = body.token is not None and (not token_store._NAME.match(body.token.name)
                                            or not set(body.token.scopes) <= set(token_store.SCOPES))
    if bad_token:  # checked before anything is created
        raise ConfigError(f"token: a name of letters, digits, '.', '_', '-' and scopes among "
                          f"{', '.join(token_store.SCOPES)}")
    persons.create(body.name)
    result: dict = {"person": body.name}
    if body.token is not None:
        rt = persons.state(body.name).runtime
        with rt.lock:
            token, secret = token_store.create(rt.store, body.token.name, body.token.scopes)
        persons.refresh()
        result["token"] = token.to_dict() | {"token": secret}
    return result


@admin_router.delete("/persons/{name}")
def remove_person(name: str, request: Request, _: ServerAdmin) -> dict:
    """Remove a person and all their data: memories, profile, conversations, roles, spaces, adapters, uploads,
    jobs and tokens (their running job is stopped first). Other persons are not touched."""
    _persons(request).remove(name)
    return {"deleted": name}


def create_persons_app(persons: Persons) -> FastAPI:
    """The whole server for `persons` (its options say how it runs). The lifespan builds the token index, starts
    the shared job worker, and at the end stops it and closes every person's runtime and the shared models."""
    options = persons.options
    mcp = None
    if options.mcp:
        from .mcp_persons import PersonsMcp

        mcp = PersonsMcp(persons, allowed_hosts=None if is_loopback_host(options.host) else ["*"])

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(persons.start)
        try:
            if mcp is not None:
                async with mcp.lifespan():
                    yield
            else:
                yield
        finally:
            await run_in_threadpool(persons.close)

    app = FastAPI(title="secondself", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Second selves of several persons: each token acts for its own person. "
                              "Authenticate with `Authorization: Bearer <token>`.")
    app.state.secondself = None       # no one person: state_of() takes the person from the token
    app.state.persons = persons
    app.state.admin_limiter = RateLimiter(options.rate_per_minute)
    _install_errors(app)

    @app.middleware("http")  # inside the guards (added after it, so it runs once the caller is known)
    async def confine_model_specs(request: Request, call_next):
        person = getattr(request.state, "person_state", None)
        if person is None:
            return await call_next(request)
        token = spec_guard.set(spec_check(person.runtime.settings))
        try:
            return await call_next(request)
        finally:
            spec_guard.reset(token)

    _install_guards(app, options)
    for module in ROUTERS:
        app.include_router(module.router)
    app.include_router(admin_router)
    if mcp is not None:
        app.add_route("/mcp", mcp)
        app.mount("/mcp", mcp)

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness; names no person."""
        return {"status": "ok", "version": __version__, "persons": "many", "auth": "token",
                "notices": persons.notices}

    add_web_routes(app)
    return app
