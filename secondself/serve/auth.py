"""Who is calling and what they may do: the one module of token and scope checks every router depends on.

- Once a token exists, every route but `/health` and the static web app needs `Authorization: Bearer`, and
  each route checks its scope (tokens.py). With no token at all, only loopback clients can reach the server
  and they get every scope: one person on their own machine.
- A token bound to a role (tokens.py) is confined to it: routes declare that they apply the caller's role by
  authenticating with `RoleChatter`/`RoleReader` (and call `acting_role`); every other route refuses such a
  token with 403, so a route added later fails closed until it is made role-aware.

- On a server for many persons (persons.py, app_persons.py) a token is always required; it names the person
  whose state (state.py `state_of`) the request then acts on. Under /admin/ only the server's admin token
  (admin_tokens.py) authenticates, and nowhere else.

Routers import from here (and state.py, responses.py), never from app.py, which imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from .. import roles as rolelib
from ..backends.openai_compat import is_loopback_host
from ..errors import SecondSelfError
from ..runtime import Runtime
from . import tokens as token_store
from .state import state_of

__all__ = ["Principal", "operator", "authenticate", "require", "acting_role", "note_use", "Unauthorized", "Forbidden",
           "Chatter", "Reader", "Writer", "Admin", "RoleChatter", "RoleReader"]

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
ADMIN_PREFIX = "/admin/"      # a many-person server's admin routes (app_persons.py): the admin token's realm
SERVER_ADMIN = "server-admin"  # the one scope an admin token holds; no person route grants anything to it


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name, scopes and the role it is bound to (None: the whole person), or
    'local' (no tokens configured, loopback only)."""

    name: str
    scopes: tuple[str, ...]
    role: str | None = None
    tenant: bool = False      # a person's token on a server for many persons: their admin is not the server's


def operator(principal: Principal) -> bool:
    """Whether the caller may use the server's own reach: endpoints off this machine, its environment, its API
    keys. The admin scope on a one-person server (its person runs it); never a person's token on a server for
    many persons (persons.py), whatever its scopes."""
    return token_store.grants(principal.scopes, "admin") and not principal.tenant


class Unauthorized(SecondSelfError):
    """No valid token (HTTP 401)."""


class Forbidden(SecondSelfError):
    """A valid token without the scope, or confined to a role this route does not apply (HTTP 403)."""


def authenticate(request: Request) -> Principal:
    """The caller's identity from its bearer token (401 when tokens exist and it has none that is valid).

    Checked once per request (app.py's guard does it before the body is read; the route's dependency then
    finds it on the request) and never behind the runtime's lock: tokens are read on their own connection
    (tokens.TokenReader), so /health and a 503 from a full model line do not wait for a model that loads."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    header = request.headers.get("authorization", "")
    secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
    persons = getattr(request.app.state, "persons", None)
    if persons is not None:  # a server for many persons: the token names the person (persons.py)
        admin = request.url.path.startswith(ADMIN_PREFIX)
        principal = (_admin_principal if admin else _person_principal)(request, persons, secret)
        request.state.principal = principal
        return principal
    state = state_of(request)
    if not state.tokens.any_tokens() and _client_is_loopback(request):
        # no tokens yet: this machine's own clients, whatever key they send (OpenAI clients insist on one)
        principal = Principal("local", token_store.SCOPES)
    else:
        token = state.tokens.verify(secret) if secret else None
        if token is None:
            raise Unauthorized("a valid API token is required: send 'Authorization: Bearer <token>' "
                               "(create one with `secondself token create`)" if not secret else
                               "this API token is not valid (unknown or revoked)")
        note_use(state.runtime, state._touched, token.name, secret)
        principal = Principal(token.name, token.scopes, token.role)
    request.state.principal = principal
    return principal


def _admin_principal(request: Request, persons, secret: str) -> Principal:
    """On a many-person server, under /admin/: the server's admin token (admin_tokens.py), nothing else — a
    person's token is unknown here (401), as an admin token is unknown on every person route."""
    from . import admin_tokens

    token = admin_tokens.verify(persons.settings.home, secret)
    if token is None:
        raise Unauthorized("the server's admin token is required here (`secondself token create --admin`)")
    return Principal(f"admin:{token.name}", (SERVER_ADMIN,))


def _person_principal(request: Request, persons, secret: str) -> Principal:
    """On a many-person server: the caller's token, looked up among every person's (always required, even
    from this machine: there is no one person a tokenless caller could be). Their state goes on the request."""
    found = persons.resolve(secret) if secret else None
    if found is None:
        raise Unauthorized("a valid API token is required: send 'Authorization: Bearer <token>' (create one with "
                           "`secondself --person NAME token create`)" if not secret else
                           "this API token is not valid (unknown or revoked)")
    state, token = found
    request.state.person_state = state
    note_use(state.runtime, state._touched, token.name, secret)
    return Principal(token.name, token.scopes, token.role, tenant=True)


def note_use(runtime: Runtime, touched: dict[str, float], name: str, secret: str) -> None:
    """Record a token's last use, at most once a minute (`touched`: when each name was last recorded);
    skipped while the runtime's lock is busy (a later request records it), so authenticating never waits."""
    now = time.monotonic()
    if now - touched.get(name, 0.0) <= 60 or not runtime.lock.acquire(blocking=False):
        return
    try:
        token_store.verify(runtime.store, secret, touch=True)
        touched[name] = now
    finally:
        runtime.lock.release()


def _client_is_loopback(request: Request) -> bool:
    client = request.client
    return client is None or is_loopback_host(client.host) or client.host == "testclient"


def require(scope: str, roles: bool = False) -> Callable[..., Principal]:
    """A dependency: the caller must hold `scope`; also applies the per-caller rate limit. Unless the route
    applies the caller's role itself (`roles=True`), a token bound to a role is refused."""

    def check(request: Request) -> Principal:
        principal = authenticate(request)
        if not token_store.grants(principal.scopes, scope):
            raise Forbidden(f"this token lacks the '{scope}' scope (it has: {', '.join(principal.scopes)})")
        if principal.role is not None and not roles:
            raise Forbidden(f"this token is confined to the role {principal.role!r}, and this route is not open to "
                            "role-bound tokens")
        state_of(request).limiter.check(principal.name)
        return principal
    return check


# Route parameters that authenticate: `def route(..., _: Reader)` needs the read scope.
Chatter = Annotated[Principal, Depends(require("chat"))]
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
# Routes that confine a role-bound token to its role (and honour an optional `role` the caller asks for).
RoleChatter = Annotated[Principal, Depends(require("chat", roles=True))]
RoleReader = Annotated[Principal, Depends(require("read", roles=True))]


def acting_role(request: Request, principal: Principal, requested: str | None) -> rolelib.Role | None:
    """The role this request acts as: the token's own (asking for another is 403), else the `role` it asked
    for (404 if unknown), else None — the whole person. Call it before reading anything."""
    rt = state_of(request).runtime
    with rt.lock:
        return rolelib.role_for(rt.store, principal.role, requested)
