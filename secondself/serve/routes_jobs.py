"""The background jobs under /api: list, show, cancel, and follow one as server-sent events.

Reading needs the read scope; cancelling needs write, and admin for a training job.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import ConfigError
from .auth import Reader, Writer
from .params import Id, Limit
from .state import jobs_of
from .tokens import grants

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/jobs", tags=["jobs"])
def jobs(request: Request, _: Reader, limit: Limit = 50) -> dict:
    return {"data": jobs_of(request).list(limit)}


@router.get("/jobs/{job_id}", tags=["jobs"])
def job(job_id: Id, request: Request, _: Reader) -> dict:
    return jobs_of(request).get(job_id)


@router.post("/jobs/{job_id}/cancel", tags=["jobs"])
def cancel(job_id: Id, request: Request, principal: Writer) -> dict:
    jobs = jobs_of(request)
    if jobs.get(job_id)["kind"] == "train" and not grants(principal.scopes, "admin"):
        raise ConfigError("cancelling training needs the 'admin' scope")
    return jobs.cancel(job_id)


FINISHED = {"done", "failed", "cancelled"}


@router.get("/jobs/{job_id}/events", tags=["jobs"])
async def job_events(job_id: Id, request: Request, _: Reader) -> StreamingResponse:
    """Server-sent events: `event: job` with the job each time it changes, then `event: end`."""
    jobs = jobs_of(request)
    jobs.get(job_id)  # 404 before the stream starts

    async def events():
        last = None
        while True:
            current = await asyncio.to_thread(jobs.get, job_id)
            text = json.dumps(current, ensure_ascii=False)
            if text != last:
                yield f"event: job\ndata: {text}\n\n"
                last = text
            if current["status"] in FINISHED:
                yield "event: end\ndata: {}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.4)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
