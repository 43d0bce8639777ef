"""Bridge mode over HTTP: enhance, critique and ask (chat scope), and the log of runs (read scope).

Thin calls into `secondself.bridge`; model calls go through the server's model gates. Sending the person's
details to an expert that is not on this machine, or asking one that is not an OpenAI-compatible endpoint
(a local model directory, a fake), needs the admin scope: a chat token must not be able to send memories to
any address it names. The rewriting model is the template or the personal model, never a client's choice of
spec. An expert that fails answers 502 with the id of the run, which is logged as failed at that step.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..bridge import MAX_REQUEST_CHARS, Policy, ask, critique, enhance, get_run, list_runs
from ..errors import ConfigError
from .auth import Chatter, Principal, Reader, operator
from .responses import api_error
from .state import state_of

router = APIRouter(prefix="/api/bridge", tags=["bridge"])

Term = Annotated[str, Field(min_length=1, max_length=200)]


class PolicyIn(BaseModel):
    """What may be disclosed (see `disclosure.Policy`)."""

    sources: list[Term] = Field(default_factory=list, max_length=200)
    tags: list[Term] = Field(default_factory=list, max_length=200)
    never_share: list[Term] = Field(default_factory=list, max_length=500,
                                    description="Terms, or source:NAME / tag:NAME to exclude a source or a tag.")
    max_items: int = Field(default=5, ge=0, le=20)
    model: str | None = Field(default=None, description="'template' or 'personal' (default: personal once "
                                                        "trained, else template).")

    def policy(self) -> Policy:
        return Policy(tuple(self.sources), tuple(self.tags), tuple(self.never_share), self.max_items)

    def writer(self) -> str | None:
        if self.model not in (None, "template", "personal"):
            raise ConfigError("model must be 'template' or 'personal' here (a server's models are chosen by its "
                              "owner, not by its clients)")
        return self.model


class EnhanceIn(PolicyIn):
    request: str = Field(min_length=1, max_length=MAX_REQUEST_CHARS)


class CritiqueIn(EnhanceIn):
    answer: str = Field(min_length=1, max_length=200_000)


class AskIn(EnhanceIn):
    expert: str = Field(min_length=1, max_length=2000, description="An OpenAI-compatible URL or openai:MODEL@URL.")
    expert_model: str | None = Field(default=None, max_length=500)
    rounds: int = Field(default=1, ge=1, le=2)
    dry_run: bool = False


def _expert_allowed(expert: str, principal: Principal) -> bool:
    from ..backends.openai_compat import is_remote_url
    from ..backends.registry import parse_spec

    expert = expert.strip()
    if expert.startswith(("http://", "https://")):
        remote, endpoint = is_remote_url(expert), True
    else:
        spec = parse_spec(expert) if expert != "personal" else None
        endpoint = spec is not None and spec.kind == "openai"
        remote = bool(spec and spec.remote)
    return not (remote or not endpoint) or operator(principal)


def _turn(request: Request):
    state = state_of(request)
    return lambda spec: state.gate(spec).turn()


@router.post("/enhance")
def enhance_route(body: EnhanceIn, request: Request, _: Chatter) -> dict:
    """The request with only the personal details it needs, and exactly which were disclosed (logged)."""
    rt = state_of(request).runtime
    return enhance(rt, body.request, body.policy(), model=body.writer(), turn=_turn(request)).to_dict()


@router.post("/critique")
def critique_route(body: CritiqueIn, request: Request, _: Chatter) -> dict:
    """What an expert's answer got wrong or missed about the person, in their voice (logged)."""
    rt = state_of(request).runtime
    return critique(rt, body.request, body.answer, body.policy(), model=body.writer(), turn=_turn(request)).to_dict()


@router.post("/ask", response_model=None)
def ask_route(body: AskIn, request: Request, principal: Chatter) -> dict | JSONResponse:
    """enhance → expert → critique (→ revision → critique) → final; the whole logged run."""
    if not body.dry_run and not _expert_allowed(body.expert, principal):
        return api_error(403, "this expert needs the 'admin' scope: sending your details to a machine other than "
                         "this one, or to a model that is not an OpenAI-compatible endpoint, is the owner's "
                         "decision (on a server for many persons, its operator's)", "permission_error",
                         "insufficient_scope")
    rt = state_of(request).runtime
    return ask(rt, body.request, body.expert, body.policy(), body.rounds, expert_model=body.expert_model,
               model=body.writer(), dry_run=body.dry_run, turn=_turn(request)).to_dict()


@router.get("/runs")
def runs_route(request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict:
    """The latest bridge runs, newest first."""
    rt = state_of(request).runtime
    with rt.lock:
        return {"data": list_runs(rt.store, limit)}


@router.get("/runs/{run_id}")
def run_route(run_id: Annotated[int, PathParam(ge=1, le=2**53)], request: Request, _: Reader) -> dict:
    """One run with every step: inputs, outputs, models and what each disclosed."""
    rt = state_of(request).runtime
    with rt.lock:
        return get_run(rt.store, run_id).to_dict()
