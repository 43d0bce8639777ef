"""The conversation log: every question and answer, with the memories it cited, in the person's database.

Each turn is written in its own transaction when it ends, so the log is consistent even after Ctrl-C:
an interrupted answer is stored with status "interrupted" and the text streamed so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import ConversationNotFoundError
from .store import Store, now_iso

__all__ = ["ConversationLog", "Turn", "ConversationSummary"]


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    citations: list[dict] = field(default_factory=list)
    status: str = "complete"
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    model: str
    turns: int
    updated_at: str


class ConversationLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, title: str, model: str) -> int:
        with self.store.transaction(memory=False) as db:
            now = now_iso()
            row = db.execute("INSERT INTO conversations(title, model, created_at, updated_at) VALUES (?, ?, ?, ?) "
                             "RETURNING id", (title[:80], model, now, now)).fetchone()
            return int(row[0])

    def add(self, conversation_id: int, turn: Turn) -> None:
        with self.store.transaction(memory=False) as db:
            now = now_iso()
            db.execute("INSERT INTO messages(conversation_id, role, content, citations, status, meta, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (conversation_id, turn.role, turn.content, json.dumps(turn.citations, ensure_ascii=False),
                        turn.status, json.dumps(turn.meta), now))
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))

    def model_of(self, conversation_id: int) -> str:
        """The model id the conversation was started with."""
        row = self.store.db.execute("SELECT model FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise ConversationNotFoundError(conversation_id)
        return row[0]

    def turns(self, conversation_id: int, model: str | None = None) -> list[Turn]:
        """The turns, oldest first. With `model`, a conversation held with another model does not exist (a
        caller confined to a role cannot read or continue another role's conversations)."""
        stored = self.model_of(conversation_id)
        if model is not None and stored != model:
            raise ConversationNotFoundError(conversation_id)
        rows = self.store.db.execute("SELECT role, content, citations, status, meta FROM messages "
                                     "WHERE conversation_id = ? ORDER BY id", (conversation_id,)).fetchall()
        return [Turn(r[0], r[1], json.loads(r[2]), r[3], json.loads(r[4])) for r in rows]

    def list(self, limit: int = 20, model: str | None = None) -> list[ConversationSummary]:
        """The newest conversations (only those held with `model`, when given)."""
        where, args = ("WHERE c.model = ?", (model,)) if model is not None else ("", ())
        rows = self.store.db.execute(
            "SELECT c.id, c.title, c.model, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id), "
            f"c.updated_at FROM conversations c {where} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
            (*args, limit)).fetchall()
        return [ConversationSummary(*r) for r in rows]
