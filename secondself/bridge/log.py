"""The log of bridge runs (`bridge_runs`): every step's input, output, model and what it disclosed.

A run is written once, when it ends (done, failed or a dry run); `secondself bridge log` and
`GET /api/bridge/runs` read it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunNotFoundError
from ..store import Store, now_iso

__all__ = ["BridgeRun", "save_run", "list_runs", "get_run"]


@dataclass
class BridgeRun:
    """One logged run. `status`: done | failed | dry_run; `final` is the last answer (None if none came)."""

    kind: str
    request: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    id: int | None = None
    created_at: str = field(default_factory=now_iso)

    @property
    def status(self) -> str:
        return _status(self.steps)

    @property
    def final(self) -> str | None:
        return next((s["output"] for s in reversed(self.steps) if s["step"] == "final"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "request": self.request, "status": self.status,
                "final": self.final, "created_at": self.created_at, "steps": self.steps}


def _status(steps: Sequence[dict[str, Any]]) -> str:
    if any("error" in s for s in steps):
        return "failed"
    return "dry_run" if any(s.get("skipped") for s in steps) else "done"


def save_run(store: Store, run: BridgeRun) -> int:
    """Store `run`; returns its id. Callers that share the store between threads hold its lock."""
    with store.transaction(memory=False) as db:
        row = db.execute("INSERT INTO bridge_runs(kind, request, steps, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                         (run.kind, run.request, json.dumps(run.steps, ensure_ascii=False), run.created_at)).fetchone()
        return int(row[0])


def list_runs(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The latest runs, newest first: id, kind, request, status, steps, created_at."""
    rows = store.db.execute("SELECT id, kind, request, steps, created_at FROM bridge_runs ORDER BY id DESC LIMIT ?",
                            (limit,)).fetchall()
    out = []
    for rid, kind, request, steps, created in rows:
        parsed = json.loads(steps)
        out.append({"id": rid, "kind": kind, "request": request, "status": _status(parsed),
                    "steps": [s["step"] for s in parsed], "created_at": created})
    return out


def get_run(store: Store, run_id: int) -> BridgeRun:
    """The run with id `run_id` (RunNotFoundError otherwise)."""
    row = store.db.execute("SELECT kind, request, steps, created_at FROM bridge_runs WHERE id = ?",
                           (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return BridgeRun(row[0], row[1], json.loads(row[2]), run_id, row[3])
