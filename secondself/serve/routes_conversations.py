"""Logged conversations under /api (scope chat): what `/v1/chat/completions` stored, turn by turn.

A token bound to a role sees only the conversations held with its role (auth.acting_role).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .auth import RoleChatter, acting_role
from .params import Id, Limit
from .state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/conversations", tags=["chat"])
def conversations(request: Request, principal: RoleChatter, limit: Limit = 50) -> dict:
    """Logged conversations; a role-bound token sees only those held with its role."""
    from ..conversations import ConversationLog

    rt = state_of(request).runtime
    role = acting_role(request, principal, None)
    with rt.lock:
        rows = ConversationLog(rt.store).list(limit, model=role.model_id if role else None)
    return {"data": [{"id": c.id, "title": c.title, "model": c.model, "turns": c.turns, "updated_at": c.updated_at}
                     for c in rows]}


@router.get("/conversations/{conversation_id}", tags=["chat"])
def conversation(conversation_id: Id, request: Request, principal: RoleChatter) -> dict:
    from ..conversations import ConversationLog

    rt = state_of(request).runtime
    role = acting_role(request, principal, None)
    with rt.lock:
        turns = ConversationLog(rt.store).turns(conversation_id, model=role.model_id if role else None)
    return {"id": conversation_id, "turns": [{"role": t.role, "content": t.content, "citations": t.citations,
                                              "status": t.status} for t in turns]}
