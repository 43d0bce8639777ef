"""The FastAPI application: guards, errors, security headers, and the routers mounted together.

Security model (the reference served 0.0.0.0 with CORS `*` and no authentication; we do the opposite):
- The server binds to 127.0.0.1 unless told otherwise, and `serve` refuses any other address while no
  token exists (checked in `check_bind`).
- Once a token exists, every route but `/health` and the static web app needs `Authorization: Bearer`,
  and each route checks its scope (auth.py, tokens.py). With no token at all, only loopback clients can
  reach the server and they get every scope: one person on their own machine. The token is checked here,
  before anything reads the request's body: an unknown caller's upload is refused unread.
- A request must name its `Host` (400 otherwise).
- A browser page on another site can still send requests to 127.0.0.1. So a request with an `Origin`
  header must come from this server's own origin or a configured CORS origin, and on loopback the `Host`
  header must be a loopback name (DNS rebinding). CORS headers are sent only for configured origins.
- A token bound to a role (tokens.py) is confined to it (auth.py): a route added later fails closed until
  it is made role-aware.
- Errors never include tracebacks or secrets: typed errors become OpenAI-shaped JSON with their
  user-facing message; anything else becomes "internal error" and is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..backends.openai_compat import is_loopback_host
from ..errors import ConfigError, SecondSelfError
from ..runtime import Runtime
from . import (
    openai_api,
    routes_bridge,
    routes_conversations,
    routes_jobs,
    routes_memory,
    routes_prefill,
    routes_profile,
    routes_roles,
    routes_settings,
    routes_spaces,
    routes_training,
)
from . import tokens as token_store
from .auth import LOOPBACK_HOSTS, Forbidden, Unauthorized, authenticate
from .limits import Gates, RateLimiter
from .responses import api_error, error_response
from .state import ServeOptions, ServerState

__all__ = ["ServeOptions", "ServerState", "create_app", "check_bind"]

log = logging.getLogger("secondself.serve")
WEB_DIR = Path(__file__).with_name("web")
# in the order their routes appear in the OpenAPI spec
ROUTERS = (openai_api, routes_conversations, routes_memory, routes_profile, routes_training, routes_jobs,
           routes_settings, routes_roles, routes_prefill, routes_bridge, routes_spaces)


def check_bind(host: str, runtime: Runtime) -> None:
    """Refuse to listen beyond this machine while anyone could use the API without a token."""
    if not is_loopback_host(host) and not token_store.any_tokens(runtime.store):
        raise ConfigError(f"refusing to listen on {host}: no API token exists, so anyone who can reach this address "
                          "could read your memories. Create one first: `secondself token create --scope chat "
                          "--name phone`, or serve on 127.0.0.1.")


def create_app(runtime: Runtime, options: ServeOptions | None = None, jobs: Any = None) -> FastAPI:
    """The whole server for one person. `jobs` defaults to a started background worker (options.jobs)."""
    from contextlib import asynccontextmanager

    options = options or ServeOptions()
    with runtime.lock:
        _ = runtime.store  # creates the database before the token reader opens it read-only
    state = ServerState(runtime, options, token_store.reader_for(runtime.settings),
                        limiter=RateLimiter(options.rate_per_minute),
                        gates=Gates(options.model_concurrency, options.max_waiting, options.wait_s))
    mcp_lifespan = None
    mcp_app = None
    if options.mcp:
        try:
            from .mcp_http import mcp_asgi_app

            # beyond loopback, tokens protect (check_bind) and the Host check would refuse LAN names
            mcp_app, mcp_lifespan = mcp_asgi_app(runtime, require_token=None, gates=state.gates,
                                                 allowed_hosts=None if is_loopback_host(options.host) else ["*"])
        except ImportError as e:  # pragma: no cover - the mcp SDK is a declared dependency
            log.warning("MCP not mounted: %s", e)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.jobs is None and options.jobs:
            from .jobs import Jobs

            state.jobs = Jobs(runtime.settings)
            state.jobs.start()
        try:
            if mcp_lifespan is not None:
                async with mcp_lifespan(app):
                    yield
            else:
                yield
        finally:
            if state.jobs is not None and options.jobs:
                state.jobs.stop()
            state.tokens.close()

    app = FastAPI(title="secondself", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Your second self: an OpenAI-compatible chat API, your memories, your profile and "
                              "your personal model. Authenticate with `Authorization: Bearer <token>`.")
    app.state.secondself = state
    state.jobs = jobs

    _install_errors(app)
    _install_guards(app, options)

    for module in ROUTERS:
        app.include_router(module.router)
    if mcp_app is not None:
        app.add_route("/mcp", mcp_app)  # exact path: without it, POST /mcp is redirected to /mcp/
        app.mount("/mcp", mcp_app)

    @app.get("/health", tags=["server"])
    def health(request: Request) -> dict:
        """Liveness and what a client needs to know to connect; never a secret. Never waits for a model."""
        auth = "token" if state.tokens.any_tokens() else "open"
        return {"status": "ok", "version": __version__, "person": runtime.settings.person,
                "person_name": runtime.person, "auth": auth,
                "notices": state.notices}

    add_web_routes(app)
    return app


def add_web_routes(app: FastAPI) -> None:
    """The web app: its page at / and its files at /static/NAME."""

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return _web_file("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return _web_file(name)


def _web_file(name: str) -> Response:
    """A file of the web app, looked up by name among the folder's own files: no path is built from the
    client's text, so '..', a separator or a NUL byte in it can only miss (404)."""
    path = next((p for p in WEB_DIR.iterdir() if p.name == name and not name.startswith(".") and p.is_file()), None)
    if path is None:
        return api_error(404, f"no such file: {name!r}", code="not_found")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def _hostname(header: str) -> str:
    """'127.0.0.1:8765' → '127.0.0.1'; '[::1]:8765' → '[::1]'."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def _unauthorized(e: Unauthorized) -> JSONResponse:
    return api_error(401, str(e), "authentication_error", "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def _needs_token(path: str) -> bool:
    """Every route but /health, the web app and the API description (MCP checks tokens itself)."""
    public = path in ("/", "/health", "/openapi.json") or path.startswith("/static/")
    return not (public or path == "/mcp" or path.startswith("/mcp/"))


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(SecondSelfError)
    async def typed(request: Request, e: SecondSelfError) -> JSONResponse:
        if isinstance(e, Unauthorized):
            return _unauthorized(e)
        if isinstance(e, Forbidden):
            return api_error(403, str(e), "permission_error", "insufficient_scope")
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
        return api_error(400, f"invalid request: {'.'.join(loc) or 'body'}: {first.get('msg', 'malformed')}",
                         param=".".join(loc) or None, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return api_error(e.status_code, str(e.detail), code=code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return api_error(500, "internal error; the server log has the details", "server_error", "internal_error")


def _install_guards(app: FastAPI, options: ServeOptions) -> None:
    loopback = is_loopback_host(options.host)
    allowed_origins = {o.rstrip("/") for o in options.cors_origins}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not request.headers.get("host"):
            return api_error(400, "a Host header is required (this server checks it against DNS rebinding)",
                             code="missing_host")
        host = _hostname(request.headers["host"])
        if loopback and host not in LOOPBACK_HOSTS and host != "testserver":
            return api_error(403, f"host {host!r} is not this server (DNS rebinding?)", "permission_error",
                             "bad_host")
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin and origin != own and origin not in allowed_origins:
            return api_error(403, f"requests from {origin} are not allowed (serve --cors-origin adds an origin)",
                             "permission_error", "bad_origin")
        if request.method == "OPTIONS" and origin in allowed_origins:
            response: Response = Response(status_code=204)
        else:
            if _needs_token(request.url.path):
                try:  # before anything reads the body: an unknown caller's upload is never read
                    await run_in_threadpool(authenticate, request)
                except Unauthorized as e:
                    return _unauthorized(e)
            length = request.headers.get("content-length")
            if request.url.path.startswith("/api/memories") and request.method == "POST":
                limit = options.max_upload_bytes + 64 * 1024
                if length is None or not length.isdigit():
                    return api_error(411, "uploads need a Content-Length header", code="length_required")
                if int(length) > limit:
                    return api_error(413, f"upload larger than the limit of {options.max_upload_bytes // 2**20} "
                                     "MiB (serve --max-upload-mb raises it)", code="file_too_large")
            response = await call_next(request)
        if origin and origin in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
            response.headers["Vary"] = "Origin"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.setdefault("Content-Security-Policy",
                                        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                        "connect-src 'self'; frame-ancestors 'none'")
        return response
