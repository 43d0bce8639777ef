"""The FastAPI application: authentication, errors, security headers, and the routers mounted together.

Security model (the reference served 0.0.0.0 with CORS `*` and no authentication; we do the opposite):
- The server binds to 127.0.0.1 unless told otherwise, and `serve` refuses any other address while no
  token exists (checked in `check_bind`).
- Once a token exists, every route but `/health` and the static web app needs `Authorization: Bearer`,
  and each route checks its scope (tokens.py). With no token at all, only loopback clients can reach the
  server and they get every scope: one person on their own machine.
- A browser page on another site can still send requests to 127.0.0.1. So a request with an `Origin`
  header must come from this server's own origin or a configured CORS origin, and on loopback the `Host`
  header must be a loopback name (DNS rebinding). CORS headers are sent only for configured origins.
- A token bound to a role (tokens.py) is confined to it: routes declare that they apply the caller's role
  by authenticating with `RoleChatter`/`RoleReader`; every other route refuses such a token with 403, so a
  route added later fails closed until it is made role-aware.
- Errors never include tracebacks or secrets: typed errors become OpenAI-shaped JSON with their
  user-facing message; anything else becomes "internal error" and is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import (
    BackendError,
    ConfigError,
    ContextOverflowError,
    EndpointError,
    IngestError,
    ModelNotAvailableError,
    ProfileError,
    RoleForbiddenError,
    RoleNotFoundError,
    SecondSelfError,
    SourceNotFoundError,
    StoreError,
    TrainingError,
)
from ..runtime import Runtime
from . import tokens as token_store
from .limits import Busy, Gates, ModelGate, RateLimited, RateLimiter
from .uploads import DEFAULT_MAX_BYTES, UploadTooLarge

__all__ = ["ServeOptions", "ServerState", "create_app", "check_bind", "Principal", "require", "api_error",
           "Chatter", "Reader", "Writer", "Admin", "RoleChatter", "RoleReader"]

log = logging.getLogger("secondself.serve")
WEB_DIR = Path(__file__).with_name("web")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs. Defaults are the private ones."""

    host: str = "127.0.0.1"
    port: int = 8765
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = DEFAULT_MAX_BYTES
    rate_per_minute: float = 120.0          # per token (or per 'local' without tokens); 0 = unlimited
    max_waiting: int = 8                   # requests allowed to wait for a busy model before 503
    model_concurrency: int | None = None   # generations at once per model (default: 1 local, 4 remote)
    wait_s: float = 120.0
    train_base: str | None = None          # default base model for training jobs ('embedded')
    jobs: bool = True                      # run the background worker (tests may turn it off)
    mcp: bool = True                       # mount the MCP server at /mcp


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, runtime: Runtime) -> None:
    """Refuse to listen beyond this machine while anyone could use the API without a token."""
    if not is_loopback(host) and not token_store.any_tokens(runtime.store):
        raise ConfigError(f"refusing to listen on {host}: no API token exists, so anyone who can reach this address "
                          "could read your memories. Create one first: `secondself token create --scope chat "
                          "--name phone`, or serve on 127.0.0.1.")


@dataclass
class ServerState:
    """Everything the routes share, built once per app."""

    runtime: Runtime
    options: ServeOptions
    jobs: Any = None
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    gates: Gates = field(default_factory=Gates)
    notices: list[str] = field(default_factory=list)
    _touched: dict[str, float] = field(default_factory=dict)

    def gate(self, spec: str) -> ModelGate:
        return self.gates(spec)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name, scopes and the role it is bound to (None: the whole person), or
    'local' (no tokens configured, loopback only)."""

    name: str
    scopes: tuple[str, ...]
    role: str | None = None


def api_error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
              param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which its client libraries parse into typed exceptions."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


# typed error → (HTTP status, OpenAI error type, code); first match wins, so subclasses come first
_ERRORS: list[tuple[type[BaseException], int, str, str]] = [
    (UploadTooLarge, 413, "invalid_request_error", "file_too_large"),
    (SourceNotFoundError, 404, "invalid_request_error", "source_not_found"),
    (RoleNotFoundError, 404, "invalid_request_error", "role_not_found"),
    (RoleForbiddenError, 403, "permission_error", "role_forbidden"),
    (ProfileError, 404, "invalid_request_error", "profile_not_found"),
    (ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    (ModelNotAvailableError, 503, "server_error", "model_not_available"),
    (EndpointError, 502, "server_error", "upstream_error"),
    (BackendError, 502, "server_error", "model_error"),
    (TrainingError, 409, "invalid_request_error", "training_error"),
    (IngestError, 400, "invalid_request_error", "ingest_error"),
    (StoreError, 500, "server_error", "store_error"),
    (ConfigError, 400, "invalid_request_error", "invalid_value"),
]


def error_response(e: SecondSelfError) -> JSONResponse:
    if isinstance(e, Busy):
        return api_error(503, str(e), "server_error", "model_busy", headers={"Retry-After": str(int(e.retry_after))})
    if isinstance(e, RateLimited):
        return api_error(429, str(e), "rate_limit_error", "rate_limit_exceeded",
                         headers={"Retry-After": str(max(1, int(e.retry_after + 0.999)))})
    for cls, status, type_, code in _ERRORS:
        if isinstance(e, cls):
            return api_error(status, str(e), type_, code)
    name = type(e).__name__
    if name.endswith("NotFoundError"):
        return api_error(404, str(e), "invalid_request_error", "not_found")
    return api_error(400, str(e), "invalid_request_error", name)


def state_of(request: Request) -> ServerState:
    return request.app.state.secondself


def authenticate(request: Request) -> Principal:
    """The caller's identity from its bearer token (401 when tokens exist and it has none that is valid)."""
    state = state_of(request)
    rt = state.runtime
    header = request.headers.get("authorization", "")
    secret = header[7:].strip() if header[:7].lower() == "bearer " else ""
    with rt.lock:
        if not token_store.any_tokens(rt.store) and _client_is_loopback(request):
            # no tokens yet: this machine's own clients, whatever key they send (OpenAI clients insist on one)
            return Principal("local", token_store.SCOPES)
        token = token_store.verify(rt.store, secret, touch=False) if secret else None
        if token is None:
            raise _Unauthorized("a valid API token is required: send 'Authorization: Bearer <token>' "
                                "(create one with `secondself token create`)" if not secret else
                                "this API token is not valid (unknown or revoked)")
        now = time.monotonic()
        if now - state._touched.get(token.name, 0) > 60:  # one write a minute, not one per request
            token_store.verify(rt.store, secret, touch=True)
            state._touched[token.name] = now
    return Principal(token.name, token.scopes, token.role)


def _client_is_loopback(request: Request) -> bool:
    client = request.client
    return client is None or is_loopback(client.host) or client.host == "testclient"


class _Unauthorized(SecondSelfError):
    pass


class _Forbidden(SecondSelfError):
    pass


def require(scope: str, roles: bool = False) -> Callable[..., Principal]:
    """A dependency: the caller must hold `scope`; also applies the per-caller rate limit. Unless the route
    applies the caller's role itself (`roles=True`), a token bound to a role is refused."""

    def check(request: Request) -> Principal:
        principal = authenticate(request)
        if not token_store.grants(principal.scopes, scope):
            raise _Forbidden(f"this token lacks the '{scope}' scope (it has: {', '.join(principal.scopes)})")
        if principal.role is not None and not roles:
            raise _Forbidden(f"this token is confined to the role {principal.role!r}, and this route is not open to "
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


def create_app(runtime: Runtime, options: ServeOptions | None = None, jobs: Any = None) -> FastAPI:
    """The whole server for one person. `jobs` defaults to a started background worker (options.jobs)."""
    from contextlib import asynccontextmanager

    options = options or ServeOptions()
    state = ServerState(runtime, options, limiter=RateLimiter(options.rate_per_minute),
                        gates=Gates(options.model_concurrency, options.max_waiting, options.wait_s))
    mcp_lifespan = None
    mcp_app = None
    if options.mcp:
        try:
            from .mcp_http import mcp_asgi_app

            # beyond loopback, tokens protect (check_bind) and the Host check would refuse LAN names
            mcp_app, mcp_lifespan = mcp_asgi_app(runtime, require_token=None, gates=state.gates,
                                                 allowed_hosts=None if is_loopback(options.host) else ["*"])
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

    app = FastAPI(title="secondself", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Your second self: an OpenAI-compatible chat API, your memories, your profile and "
                              "your personal model. Authenticate with `Authorization: Bearer <token>`.")
    app.state.secondself = state
    state.jobs = jobs

    _install_errors(app)
    _install_guards(app, options)

    from . import openai_api, routes, routes_bridge, routes_prefill, routes_roles, routes_spaces

    app.include_router(openai_api.router)
    app.include_router(routes.router)
    for extra in (routes_roles, routes_prefill, routes_bridge, routes_spaces):
        app.include_router(extra.router)
    if mcp_app is not None:
        app.add_route("/mcp", mcp_app)  # exact path: without it, POST /mcp is redirected to /mcp/
        app.mount("/mcp", mcp_app)

    @app.get("/health", tags=["server"])
    def health(request: Request) -> dict:
        """Liveness and what a client needs to know to connect; never a secret."""
        with runtime.lock:
            auth = "token" if token_store.any_tokens(runtime.store) else "open"
        return {"status": "ok", "version": __version__, "person": runtime.settings.person,
                "person_name": runtime.person, "auth": auth,
                "notices": state.notices}

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return _web_file("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return _web_file(name)

    return app


def _web_file(name: str) -> Response:
    path = (WEB_DIR / name).resolve()
    if path.parent != WEB_DIR.resolve() or not path.is_file():
        return api_error(404, f"no such file: {name}", code="not_found")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def _hostname(header: str) -> str:
    """'127.0.0.1:8765' → '127.0.0.1'; '[::1]:8765' → '[::1]'."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(SecondSelfError)
    async def typed(request: Request, e: SecondSelfError) -> JSONResponse:
        if isinstance(e, _Unauthorized):
            return api_error(401, str(e), "authentication_error", "invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
        if isinstance(e, _Forbidden):
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
    loopback = is_loopback(options.host)
    allowed_origins = {o.rstrip("/") for o in options.cors_origins}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = _hostname(request.headers.get("host") or "")
        if loopback and host and host not in LOOPBACK_HOSTS and host != "testserver":
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
