"""POST /api/prefill: fill a form from the person's memories (scope read). Included by app.py.

The body carries the form as text (JSON Schema, field names or HTML) or already parsed (a schema object or a
list of names); the answer is `PrefillResult.to_dict()`. A form that cannot be read is a 400 in OpenAI's
error shape (ConfigError → invalid_value), with the message saying what to fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from .auth import Reader
from .state import state_of

router = APIRouter(prefix="/api")


class PrefillIn(BaseModel):
    form: str | dict[str, Any] | list[Any] = Field(
        description="A JSON Schema (object or text), a list of field names (array or text, one a line) or an HTML form")
    at: str | None = Field(default=None, max_length=10, description="Answer as of this date (YYYY-MM-DD)")
    min_confidence: float = Field(default=0.5, ge=0, le=1)


@router.post("/prefill", tags=["memory"])
def prefill_form(body: PrefillIn, request: Request, _: Reader) -> dict:
    """Each field's value from memory with its sources and confidence, or empty with the reason."""
    from ..errors import ConfigError
    from ..prefill import prefill

    if isinstance(body.form, str) and len(body.form) > 1_000_000:
        raise ConfigError("the form is larger than 1 MB; send only the form, not the whole page")
    rt = state_of(request).runtime
    with rt.lock:
        result = prefill(rt, body.form, at=body.at, min_confidence=body.min_confidence)
    return result.to_dict()
