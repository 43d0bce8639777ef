"""HTTP routes for bridge (issue 7) — being written. Included by app.py."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api")
