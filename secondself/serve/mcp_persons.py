"""MCP at /mcp on a many-person server (`serve --all-persons`): the caller's token picks the person, and each
person gets their own MCP server (mcp.py's `build_mcp` on their Runtime), built on first use.

Every request needs a token (there is no person a tokenless caller could be). The SDK binds each MCP session
to the token that opened it — here "person/token name", so a session opened by one person's token is unknown
to every other token — and each person's sessions live in their own session manager anyway: another person's
session id is not found there (404).

Each person's session manager runs in a task of this app's task group (`lifespan`), started when their first
request comes and stopped when the person is removed (`Persons.on_remove`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .mcp import ROLE_KEY, SCOPES_KEY
from .persons import Persons
from .state import ServerState

__all__ = ["PersonsMcp"]

log = logging.getLogger("secondself.mcp")


class PersonsMcp:
    """The ASGI app for /mcp on a many-person server; enter `lifespan()` around the whole time it serves."""

    def __init__(self, persons: Persons, allowed_hosts: Sequence[str] | None = None) -> None:
        self.persons = persons
        self.allowed_hosts = allowed_hosts
        self._apps: dict[str, tuple[ServerState, Any, Any]] = {}   # person → (their state, app, stop event)
        self._tg: Any = None
        self._lock: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        persons.on_remove.append(self._forget)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        import anyio

        self._loop = asyncio.get_running_loop()
        self._lock = anyio.Lock()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        import anyio
        from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
        from mcp.server.auth.provider import AccessToken
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            return
        header = Headers(scope=scope).get("authorization", "")
        secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
        found = await anyio.to_thread.run_sync(self._resolve, secret)
        if found is None or self._tg is None:
            message = ("a valid API token is required: send 'Authorization: Bearer <token>'" if not secret else
                       "this API token is not valid (unknown or revoked)")
            body = {"error": {"message": message, "type": "authentication_error", "code": "invalid_token"}}
            await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        state, token = found
        app = await self._app_for(state)
        who = f"{state.runtime.settings.person}/{token.name}"
        user = AuthenticatedUser(AccessToken(token=who, client_id=who, scopes=list(token.scopes)))
        await app({**scope, SCOPES_KEY: token.scopes, ROLE_KEY: token.role, "user": user}, receive, send)

    def _resolve(self, secret: str):
        from .auth import note_use

        found = self.persons.resolve(secret) if secret else None
        if found is not None:
            state, token = found
            note_use(state.runtime, state._touched, token.name, secret)
        return found

    async def _app_for(self, state: ServerState) -> Any:
        from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

        from .mcp import build_mcp
        from .mcp_http import _transport_security

        person = state.runtime.settings.person
        async with self._lock:
            known = self._apps.get(person)
            if known is not None and known[0] is state:
                return known[1]
            if known is not None:   # the person was removed and created again: a new server
                known[2].set()
            import anyio

            server = build_mcp(state.runtime, gates=state.gates)
            server.streamable_http_app(transport_security=_transport_security(self.allowed_hosts))
            manager = server.session_manager
            stop = anyio.Event()
            await self._tg.start(_serve, manager, stop)
            app = StreamableHTTPASGIApp(manager)
            self._apps[person] = (state, app, stop)
            return app

    def _forget(self, person: str) -> None:
        """Stop a removed person's MCP server (called from the thread that removes them)."""
        known = self._apps.pop(person, None)
        if known is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(known[2].set)


async def _serve(manager: Any, stop: Any, *, task_status: Any = None) -> None:
    """Run one person's session manager until `stop` is set (or the server stops)."""
    async with manager.run():
        task_status.started()
        await stop.wait()
