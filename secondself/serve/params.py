"""Path and query parameter types the routers share: anything larger cannot be an id here (and SQLite stores
at most 64 bits), so oversized numbers are a 400, not an OverflowError."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from fastapi import Query

__all__ = ["Id", "Version", "Limit"]

Id = Annotated[int, PathParam(ge=1, le=2**53)]
Version = Annotated[int | None, Query(ge=1, le=2**53)]
Limit = Annotated[int, Query(ge=1, le=1000)]
