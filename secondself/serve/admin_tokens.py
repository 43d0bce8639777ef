"""The server's admin tokens (`serve --all-persons`): they create and remove persons, and do nothing else.

They belong to the home, not to a person: `<home>/admin-tokens.json`, written atomically with mode 0600,
holding for each token its name, the SHA-256 of its secret, a prefix, and when it was created and revoked —
never the secret, which `create` returns once (as tokens.py does for person tokens). A secret starts with
`ssa-` (a person token with `ss-`), so neither kind is ever mistaken for the other: a person token is unknown
to the admin routes and an admin token unknown to every person route (both answer 401).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, TokenNotFoundError
from ..store import now_iso

__all__ = ["AdminToken", "create", "list_tokens", "revoke", "verify", "FILE_NAME", "PREFIX"]

FILE_NAME = "admin-tokens.json"
PREFIX = "ssa-"
_lock = threading.Lock()


@dataclass(frozen=True)
class AdminToken:
    """What is known about an admin token; never its secret."""

    name: str
    prefix: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict:
        return asdict(self)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _load(home: Path) -> list[dict]:
    path = Path(home) / FILE_NAME
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read ({e}); delete it and create the admin tokens again") from e
    if not isinstance(rows, list):
        raise ConfigError(f"{path} is not a list of tokens; delete it and create the admin tokens again")
    return rows


def _save(home: Path, rows: list[dict]) -> None:
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{FILE_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, home / FILE_NAME)


def _public(row: dict) -> AdminToken:
    return AdminToken(row["name"], row["prefix"], row["created_at"], row.get("revoked_at"))


def create(home: Path, name: str) -> tuple[AdminToken, str]:
    """A new admin token and its secret (shown once)."""
    from .tokens import _NAME

    if not _NAME.match(name or ""):
        raise ConfigError(f"token name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    secret = PREFIX + secrets.token_urlsafe(32)
    with _lock:
        rows = _load(home)
        if any(r["name"] == name for r in rows):
            raise ConfigError(f"an admin token named {name!r} exists; revoke it first or choose another name")
        row = {"name": name, "secret_hash": _hash(secret), "prefix": secret[:8], "created_at": now_iso(),
               "revoked_at": None}
        _save(home, [*rows, row])
    return _public(row), secret


def list_tokens(home: Path, include_revoked: bool = False) -> list[AdminToken]:
    return [_public(r) for r in _load(home) if include_revoked or r.get("revoked_at") is None]


def revoke(home: Path, name: str) -> AdminToken:
    """Revoke at once (the row stays, revoked, so the name shows in `token list --admin --all`)."""
    with _lock:
        rows = _load(home)
        row = next((r for r in rows if r["name"] == name), None)
        if row is None:
            raise TokenNotFoundError(name)
        if row.get("revoked_at") is None:
            row["revoked_at"] = now_iso()
            _save(home, rows)
    return _public(row)


def verify(home: Path, secret: str) -> AdminToken | None:
    """The active admin token whose secret this is, or None. Read from the file each time: a token revoked
    from the command line stops working at once, without restarting the server."""
    if not secret or not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    digest = _hash(secret)
    row = next((r for r in _load(home) if secrets.compare_digest(r.get("secret_hash", ""), digest)), None)
    if row is None or row.get("revoked_at") is not None:
        return None
    return _public(row)
