"""API tokens with scopes, stored hashed in the person's database.

A token is `ss-` plus 43 random URL-safe characters (256 bits). Only its SHA-256 is stored: the secret is
returned once, by `create`, and can never be read back — not by the CLI, not by any endpoint. Because the
secret is random and long, a plain SHA-256 is enough (a slow password hash protects guessable secrets).

Scopes, each granting one kind of access:
    chat   talk to the second self (/v1/chat/completions, /v1/models, conversations)
    read   read memories and the profile (search, sources, profile, facts, jobs, adapters)
    write  change memories and the profile (upload, delete a source, edit, build); implies read
    admin  everything, including training, choosing adapters, settings and tokens

A token may be bound to a role (roles.py): every request made with it is then confined to that role — its
model id only, its memory scope on every route (serve/auth.py `require`, serve/mcp.py). Such a token holds
only chat and read: write or admin would let it edit the profile, read settings or mint an unbound token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, TokenNotFoundError
from ..store import Store, now_iso

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SCOPES", "Token", "TokenReader", "StoreTokenReader", "reader_for", "create", "list_tokens", "revoke", "verify", "grants", "any_tokens"]

SCOPES = ("chat", "read", "write", "admin")
_IMPLIES = {"admin": set(SCOPES), "write": {"write", "read"}, "read": {"read"}, "chat": {"chat"}}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Token:
    """What is known about a token; never its secret."""

    name: str
    scopes: tuple[str, ...]
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    role: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict:
        return {"name": self.name, "scopes": list(self.scopes), "prefix": self.prefix, "created_at": self.created_at,
                "last_used_at": self.last_used_at, "revoked_at": self.revoked_at, "role": self.role}


def grants(scopes: tuple[str, ...] | list[str], needed: str) -> bool:
    """Whether a token with `scopes` may do what needs `needed`."""
    return any(needed in _IMPLIES.get(s, set()) for s in scopes)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(r) -> Token:
    return Token(r[0], tuple(r[1].split()), r[2], r[3], r[4], r[5], r[6])


_COLUMNS = "name, scopes, prefix, created_at, last_used_at, revoked_at, role"
ROLE_SCOPES = ("chat", "read")


def create(store: Store, name: str, scopes: list[str] | tuple[str, ...],
           role: str | None = None) -> tuple[Token, str]:
    """A new token and its secret (the only time the secret exists outside the caller's hands). With `role`,
    the token is confined to that role (which must exist) and may hold only the chat and read scopes."""
    if not _NAME.match(name or ""):
        raise ConfigError(f"token name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    scopes = tuple(dict.fromkeys(scopes))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"unknown scope {', '.join(bad) or '(none)'}: choose from {', '.join(SCOPES)}")
    if role:
        from ..roles import get_role

        get_role(store, role)
        if set(scopes) - set(ROLE_SCOPES):
            raise ConfigError(f"a token bound to a role can hold only the {' and '.join(ROLE_SCOPES)} scopes (write or "
                              "admin would let it step outside the role)")
    secret = "ss-" + secrets.token_urlsafe(32)
    with store.transaction(memory=False) as db:
        if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
            raise ConfigError(f"a token named {name!r} exists; revoke it first or choose another name")
        db.execute("INSERT INTO api_tokens (name, scopes, secret_hash, prefix, created_at, role) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (name, " ".join(scopes), _hash(secret), secret[:7], now_iso(), role or None))
    return get(store, name), secret


def get(store: Store, name: str) -> Token:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise TokenNotFoundError(name)
    return _row(row)


def list_tokens(store: Store, include_revoked: bool = False) -> list[Token]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    return [_row(r) for r in store.db.execute(f"SELECT {_COLUMNS} FROM api_tokens {where} ORDER BY id")]


def any_tokens(store: Store | TokenReader | StoreTokenReader) -> bool:
    """Whether at least one active token exists (then every request must carry one)."""
    return store.db.execute("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None


def revoke(store: Store, name: str) -> Token:
    """Revoke at once; the row is kept (revoked) so the name shows in `token list --all`."""
    token = get(store, name)
    if token.active:
        with store.transaction(memory=False) as db:
            db.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?", (now_iso(), name))
    return get(store, name)


def verify(store: Store | TokenReader | StoreTokenReader, secret: str, touch: bool = True) -> Token | None:
    """The active token whose secret this is, or None (unknown, malformed or revoked). `touch` records the use
    (a write: a Store only)."""
    if not secret or not secret.startswith("ss-") or len(secret) > 200:
        return None
    row = store.db.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE secret_hash = ?", (_hash(secret),)).fetchone()
    if row is None or row[5] is not None:
        return None
    if touch:
        with store.transaction(memory=False) as db:
            db.execute("UPDATE api_tokens SET last_used_at = ? WHERE secret_hash = ?", (now_iso(), _hash(secret)))
    return _row(row)


class _Reader:
    """Token checks serialized by a lock on a connection of the reader's own (`db`, opened on first use, from
    any thread; `_release` closes it)."""

    _lock: threading.Lock

    db: Any

    def any_tokens(self) -> bool:
        with self._lock:
            return any_tokens(self)

    def verify(self, secret: str) -> Token | None:
        with self._lock:
            return verify(self, secret, touch=False)

    def close(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TokenReader(_Reader):
    """The server's token checks on a read-only connection of their own, so that authenticating (and /health)
    never waits for the runtime's lock, which a cold model load or a long store operation holds for seconds.
    The database is in WAL mode: this reader sees every committed change (a revocation at once) and never
    waits for a writer."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
        return self._db

    def _release(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class StoreTokenReader(_Reader):
    """TokenReader's contract on a store connection of its own, for Postgres (where there is no read-only file
    to open): token checks never wait for the runtime's lock either."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    @property
    def db(self) -> Any:
        if self._store is None:
            from ..store import open_store

            self._store = open_store(self.settings)
        return self._store.db

    def _release(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def reader_for(settings: Settings) -> TokenReader | StoreTokenReader:
    """The server's token reader for `settings`' person: the read-only SQLite file, or a Postgres connection."""
    return StoreTokenReader(settings) if settings.store_url else TokenReader(settings.db_path)
