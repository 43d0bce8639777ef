"""Roles: personas of the one person, each with its own instructions, memory scope and model.

An "interviewer" role may read only the work notes and the CV, answer with a stronger model and follow its
own instructions; the person's diary stays out of its reach. A role is served as the model id
`secondself:NAME` by the HTTP API, as the `role` argument of the MCP tools, and an API token can be bound to
one role, which confines every request made with it to that role (serve/app.py).

The scope (memory/scope.py) is enforced in retrieval, not asked for in the prompt: the persona searches
through a `ScopedSearcher` and sees a scoped layer-1 view, so no route can show a role what its scope hides.

The model: None means the configured persona model; otherwise a model spec, or 'personal' (the trained
adapter) — but only for a role without a scope: the adapter was trained on all the memories, so its weights
could tell what the scope hides. The same holds for any model fine-tuned on them (an exported merge, say):
give a scoped role a base model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, RoleForbiddenError, RoleNotFoundError
from .memory.scope import Scope, check_name
from .store import Store, now_iso

__all__ = ["Role", "Scope", "MODEL_PREFIX", "create_role", "get_role", "list_roles", "update_role", "delete_role",
           "confine", "role_for"]

#: A role's model id in the OpenAI-compatible API: `secondself:NAME`.
MODEL_PREFIX = "secondself:"
#: Names a role cannot take (`secondself:personal` is the trained adapter's model id).
RESERVED = frozenset({"personal"})
MAX_INSTRUCTIONS = 20_000


@dataclass(frozen=True)
class Role:
    name: str
    instructions: str = ""
    scope: Scope = field(default_factory=Scope)
    model: str | None = None          # a model spec, 'personal', or None (the persona model)
    created_at: str = ""
    updated_at: str = ""

    @property
    def model_id(self) -> str:
        return MODEL_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_id": self.model_id, "instructions": self.instructions,
                "scope": self.scope.to_dict(), "model": self.model, "created_at": self.created_at,
                "updated_at": self.updated_at}


def _check(name: str, instructions: str, scope: Scope, model: str | None) -> None:
    check_name("role", name)
    if name.lower() in RESERVED:
        raise ConfigError(f"the role name {name!r} is reserved; choose another")
    if len(instructions) > MAX_INSTRUCTIONS:
        raise ConfigError(f"instructions are limited to {MAX_INSTRUCTIONS} characters")
    if model is None:
        return
    if model == "personal":
        if not scope.everything:
            raise ConfigError("a role with a memory scope cannot use the personal model: it was trained on all your "
                              "memories, so it could reveal what the scope hides. Give the role a base model "
                              "(e.g. 'embedded' or openai:MODEL@URL), or no scope")
        return
    from .backends.registry import parse_spec

    try:
        parse_spec(model)  # a bad spec fails now, not at the first chat
    except (OSError, RuntimeError, ValueError) as e:  # a path that cannot even be looked at ('~nobody/x')
        raise ConfigError(f"unknown model {model!r}: {e}") from None


_COLUMNS = "name, instructions, scope, model, created_at, updated_at"


def _row(r) -> Role:
    return Role(r[0], r[1], Scope.from_dict(json.loads(r[2])), r[3], r[4], r[5])


def create_role(store: Store, name: str, instructions: str = "", scope: Scope | None = None,
                model: str | None = None) -> Role:
    scope = scope or Scope()
    model = model or None
    _check(name, instructions, scope, model)
    now = now_iso()
    with store.transaction(memory=False) as db:
        if db.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone():
            raise ConfigError(f"a role named {name!r} exists; edit it (`secondself role edit`) or choose another name")
        db.execute("INSERT INTO roles (name, instructions, scope, model, created_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (name, instructions, json.dumps(scope.to_dict()), model, now, now))
    return get_role(store, name)


def get_role(store: Store, name: str) -> Role:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM roles WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise RoleNotFoundError(name)
    return _row(row)


def list_roles(store: Store) -> list[Role]:
    return [_row(r) for r in store.db.execute(f"SELECT {_COLUMNS} FROM roles ORDER BY name")]


def update_role(store: Store, name: str, *, instructions: str | None = None, scope: Scope | None = None,
                model: str | None = None) -> Role:
    """Change what is given (None = keep; model '' = back to the persona model)."""
    old = get_role(store, name)
    new_instructions = old.instructions if instructions is None else instructions
    new_scope = old.scope if scope is None else scope
    new_model = old.model if model is None else (model or None)
    _check(name, new_instructions, new_scope, new_model)
    with store.transaction(memory=False) as db:
        db.execute("UPDATE roles SET instructions = ?, scope = ?, model = ?, updated_at = ? WHERE name = ?",
                   (new_instructions, json.dumps(new_scope.to_dict()), new_model, now_iso(), name))
    return get_role(store, name)


def delete_role(store: Store, name: str) -> Role:
    """Delete a role. Refused while an active token is bound to it (revoke those first): such a token would
    be refused everywhere, and a new role of the same name would silently become its role."""
    role = get_role(store, name)
    bound = [r[0] for r in store.db.execute("SELECT name FROM api_tokens WHERE role = ? AND revoked_at IS NULL "
                                            "ORDER BY id", (name,))]
    if bound:
        raise ConfigError(f"tokens bound to the role {name!r} are still active ({', '.join(bound)}); revoke them "
                          "first (`secondself token revoke NAME`)")
    with store.transaction(memory=False) as db:
        db.execute("DELETE FROM roles WHERE name = ?", (name,))
    return role


def confine(bound: str | None, requested: str | None) -> str | None:
    """The role a request acts as: the one its token is bound to (asking for another is refused), else the
    one it asked for, else none (the whole person)."""
    if bound is None:
        return requested or None
    if requested and requested != bound:
        raise RoleForbiddenError(f"this token is confined to the role {bound!r} and cannot act as {requested!r}")
    return bound


def role_for(store: Store, bound: str | None, requested: str | None) -> Role | None:
    """`confine`, then the Role itself. A token whose role was deleted gets nothing (fails closed)."""
    name = confine(bound, requested)
    if name is None:
        return None
    try:
        return get_role(store, name)
    except RoleNotFoundError:
        if bound is not None:
            raise RoleForbiddenError(f"this token is bound to the role {bound!r}, which no longer exists") from None
        raise
