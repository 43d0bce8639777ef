"""What every route shares: how the server runs (`ServeOptions`) and what it holds (`ServerState`), built once
per app by `create_app` and reached from a request with `state_of`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ..errors import ConfigError
from ..runtime import Runtime
from .limits import Gates, ModelGate, RateLimiter
from .tokens import TokenReader
from .uploads import DEFAULT_MAX_BYTES

__all__ = ["ServeOptions", "ServerState", "state_of", "jobs_of"]


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


@dataclass
class ServerState:
    """Everything the routes share, built once per app."""

    runtime: Runtime
    options: ServeOptions
    tokens: TokenReader      # token checks that never wait for the runtime's lock
    jobs: Any = None
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    gates: Gates = field(default_factory=Gates)
    notices: list[str] = field(default_factory=list)
    _touched: dict[str, float] = field(default_factory=dict)

    def gate(self, spec: str) -> ModelGate:
        return self.gates(spec)


def state_of(request: Request) -> ServerState:
    """The state of the person this request acts for: the server's one person, or on a many-person server
    (persons.py) the person of the caller's token, which auth.py put on the request. A route reached there
    without a person (it never authenticated) fails closed."""
    person = getattr(request.state, "person_state", None)
    if person is not None:
        return person
    state = request.app.state.secondself
    if state is None:
        raise ConfigError("this route needs a person's token on a server for many persons")
    return state


def jobs_of(request: Request):
    """The background worker (jobs.py); a ConfigError (400) when this server runs none."""
    jobs = state_of(request).jobs
    if jobs is None:
        raise ConfigError("this server runs no background jobs (started with jobs disabled)")
    return jobs
