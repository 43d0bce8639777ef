"""Layer 2 under /api: start training (admin; a background job, answered 202), list the trained adapters
(read) and choose the one the personal model uses (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .auth import Admin, Reader
from .responses import accepted
from .state import jobs_of, state_of

__all__ = ["router"]

router = APIRouter(prefix="/api")


class TrainIn(BaseModel):
    steps: int | None = Field(default=None, ge=1, le=100_000)
    epochs: float | None = Field(default=None, gt=0, le=100)
    rank: int | None = Field(default=None, ge=1, le=256)
    base: str | None = None


@router.post("/train", status_code=202, tags=["training"])
def train(body: TrainIn, request: Request, _: Admin) -> JSONResponse:
    """Start training the personal model in the background: synthesize, fine-tune, evaluate, register."""
    params: dict[str, Any] = body.model_dump()
    params["base"] = params["base"] or state_of(request).options.train_base
    return accepted(jobs_of(request).submit("train", params))


@router.get("/adapters", tags=["training"])
def adapters(request: Request, _: Reader) -> dict:
    from ..train import adapters as registry

    rt = state_of(request).runtime
    with rt.lock:
        cur = registry.current(rt.store, rt.settings.person_dir)
    rows = registry.list_adapters(rt.settings.person_dir)
    return {"current": cur.version if cur else None,
            "data": [{"version": a.version, "created_at": a.metadata.get("created_at"), "base": a.base,
                      "current": cur is not None and a.version == cur.version,
                      "metadata": {k: v for k, v in a.metadata.items() if k != "base_dir"}} for a in rows]}


@router.post("/adapters/{version}/use", tags=["training"])
def use_adapter(version: str, request: Request, _: Admin) -> dict:
    from ..train import adapters as registry

    rt = state_of(request).runtime
    with rt.lock:
        info = registry.use(rt.store, rt.settings.person_dir, version)
    return {"current": info.version}
