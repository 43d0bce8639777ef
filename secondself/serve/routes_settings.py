"""Settings and tokens under /api (admin): the models and where they run, and creating and revoking tokens.
No route ever returns a token's secret except the one that creates it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from .auth import Admin
from .state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/settings", tags=["settings"])
def settings(request: Request, _: Admin) -> dict:
    """Models and where they run, and the tokens (names and scopes; never secrets or API keys)."""
    from ..backends.embedders import embedder_name
    from ..backends.registry import parse_spec
    from . import tokens

    state = state_of(request)
    s = state.runtime.settings
    with state.runtime.lock:
        toks = [t.to_dict() for t in tokens.list_tokens(state.runtime.store)]
    return {"person": s.person, "models": {
        "persona": {"spec": s.persona_model, "where": parse_spec(s.persona_model).describe()},
        "teacher": {"spec": s.teacher_model, "where": parse_spec(s.teacher_model).describe()},
        "embedding": {"spec": s.embedder, "where": f"{embedder_name(s.embedder)} — in-process, this machine"}},
        "tokens": toks, "gates": {spec: g.snapshot() for spec, g in state.gates.items()}}


class TokenIn(BaseModel):
    name: str
    scopes: list[str] = Field(min_length=1)
    role: str | None = Field(default=None, max_length=64, description="confine the token to this role")


@router.post("/tokens", status_code=201, tags=["settings"])
def create_token(body: TokenIn, request: Request, _: Admin) -> dict:
    """Create a token; its secret is in this response and nowhere else, ever."""
    from . import tokens

    rt = state_of(request).runtime
    with rt.lock:
        token, secret = tokens.create(rt.store, body.name, body.scopes, role=body.role)
    return token.to_dict() | {"token": secret}


@router.delete("/tokens/{name}", tags=["settings"])
def revoke_token(name: str, request: Request, _: Admin) -> dict:
    from . import tokens

    rt = state_of(request).runtime
    with rt.lock:
        return tokens.revoke(rt.store, name).to_dict()
