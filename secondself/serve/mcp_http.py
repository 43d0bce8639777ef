"""MCP over streamable HTTP: the token gate in front of the SDK's ASGI app, DNS-rebinding settings, and the
standalone server for `secondself mcp --http`. The tools themselves are in mcp.py.

The gate checks `Authorization: Bearer <token>` on every request (401 otherwise) and leaves the token's
scopes and role in the ASGI scope (`SCOPES_KEY`, `ROLE_KEY`), where the tools read them back.

Mounting in another ASGI app (secondself/serve/app.py does this):
    mcp_app, mcp_lifespan = mcp_asgi_app(runtime, require_token=None, gates=...)
    # in the app's lifespan — it starts the SDK's session manager, once per process:
    async with mcp_lifespan(app): yield
    app.add_route("/mcp", mcp_app); app.mount("/mcp", mcp_app)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.openai_compat import is_loopback_host
from ..errors import ConfigError
from ..runtime import Runtime
from . import tokens as token_store
from .auth import note_use
from .limits import Gates
from .mcp import _LOOPBACK_NAMES, ROLE_KEY, SCOPES_KEY, build_mcp

__all__ = ["mcp_asgi_app", "http_app", "run_http"]

log = logging.getLogger("secondself.mcp")


class _TokenGate:
    """ASGI middleware: every HTTP request needs a valid bearer token (or the open policy), else 401.

    On success the token's scopes go into the ASGI scope under SCOPES_KEY (read by the tools), and `user`
    is set to the SDK's AuthenticatedUser so the SDK binds each MCP session to the token that opened it."""

    def __init__(self, app: Any, runtime: Runtime, require_token: bool | None) -> None:
        self.app, self.runtime, self.require_token = app, runtime, require_token
        with runtime.lock:
            _ = runtime.store  # creates the database before the token reader opens it read-only
        self.tokens = token_store.reader_for(runtime.settings)
        self._touched: dict[str, float] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        import anyio
        from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
        from mcp.server.auth.provider import AccessToken
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
        client = scope.get("client")
        # Starlette's TestClient calls itself 'testclient'
        loopback_client = client is None or client[0] == "testclient" or is_loopback_host(client[0])
        # tokens are read on their own connection (never behind the store lock a loading model holds)
        who = await anyio.to_thread.run_sync(self._authenticate, secret, loopback_client)
        if isinstance(who, str):
            body = {"error": {"message": who, "type": "authentication_error", "code": "invalid_token"}}
            await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        name, scopes, role = who
        user = AuthenticatedUser(AccessToken(token=name, client_id=name, scopes=list(scopes)))
        await self.app({**scope, SCOPES_KEY: scopes, ROLE_KEY: role, "user": user}, receive, send)

    def _authenticate(self, secret: str, loopback_client: bool) -> tuple[str, tuple[str, ...], str | None] | str:
        """(caller name, scopes, bound role), or the message for a 401."""
        if not secret:
            open_ = self.require_token is False or (self.require_token is None and loopback_client)
            if open_ and not self.tokens.any_tokens():
                return "local", token_store.SCOPES, None
            return ("a valid API token is required: send 'Authorization: Bearer <token>' (create one with "
                    "`secondself token create`)")
        token = self.tokens.verify(secret)
        if token is None:
            return "this API token is not valid (unknown or revoked)"
        note_use(self.runtime, self._touched, token.name, secret)
        return f"token:{token.name}", token.scopes, token.role


def _transport_security(allowed_hosts: Sequence[str] | None):
    from mcp.server.transport_security import TransportSecuritySettings

    extra = list(allowed_hosts or ())
    if "*" in extra:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = [*_LOOPBACK_NAMES, *extra]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for n in names for h in (n, f"{n}:*")],
        allowed_origins=[f"{s}://{n}{p}" for n in names for s in ("http", "https") for p in ("", ":*")])


def mcp_asgi_app(runtime: Runtime, *, require_token: bool | None = None, allowed_hosts: Sequence[str] | None = None,
                 gates: Gates | None = None) -> tuple[Any, Callable[..., Any]]:
    """The MCP endpoint as an ASGI app behind the token gate, and the lifespan that must wrap serving it.

    `require_token`: True — every request needs a valid token. False — while no active token exists,
    requests without one get every scope (the caller has made sure only this machine can connect). None —
    the HTTP API's policy: like False, but only for clients connecting from a loopback address.
    A request that carries a token is always checked, whatever the policy.

    `allowed_hosts`: Host names accepted besides 127.0.0.1, localhost and [::1] (DNS-rebinding protection
    for Host and Origin); ["*"] turns the check off (e.g. when bound to 0.0.0.0, where tokens protect).

    The app answers on whatever path it is mounted at. `lifespan(app=None)` returns the async context
    manager that runs the SDK's session manager; enter it once, around the whole time the app serves.
    """
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

    server = build_mcp(runtime, gates=gates)
    # streamable_http_app() creates the session manager (our own gate replaces the Starlette app it returns,
    # so that the endpoint works at any mount path).
    server.streamable_http_app(transport_security=_transport_security(allowed_hosts))
    manager = server.session_manager

    def lifespan(app: Any = None) -> contextlib.AbstractAsyncContextManager[None]:
        return manager.run()

    return _TokenGate(StreamableHTTPASGIApp(manager), runtime, require_token), lifespan


def http_app(runtime: Runtime, *, require_token: bool | None = None, allowed_hosts: Sequence[str] | None = None,
             path: str = "/mcp"):
    """A standalone Starlette app serving MCP at `path` (what `run_http` serves)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    app, lifespan = mcp_asgi_app(runtime, require_token=require_token, allowed_hosts=allowed_hosts)
    return Starlette(routes=[Route(path, endpoint=app)], lifespan=lifespan)


def run_http(runtime: Runtime, host: str = "127.0.0.1", port: int = 8765, require_token: bool | None = None,
             allowed_hosts: Sequence[str] | None = None) -> None:
    """Serve MCP over streamable HTTP at http://HOST:PORT/mcp with uvicorn until interrupted.

    Refuses a non-loopback address while no token exists (anyone reaching it could read the memories)."""
    import uvicorn

    loopback = is_loopback_host(host)
    with runtime.lock:
        if not loopback and not token_store.any_tokens(runtime.store):
            raise ConfigError(f"refusing to listen on {host}: no API token exists, so anyone who can reach this "
                              "address could read your memories. Create one first (`secondself token create`), "
                              "or serve on 127.0.0.1.")
    if allowed_hosts is None and not loopback:
        wildcard = host in ("0.0.0.0", "::", "")
        allowed_hosts = ["*"] if wildcard else [host if ":" not in host else f"[{host.strip('[]')}]"]
    app = http_app(runtime, require_token=require_token, allowed_hosts=allowed_hosts)
    log.info("MCP over HTTP at http://%s:%d/mcp", host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        runtime.close()
