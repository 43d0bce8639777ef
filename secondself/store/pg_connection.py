"""The Postgres connection behind `PgStore.db`: the calls the rest of secondself makes on an sqlite3 connection
(`execute(sql, params)` with `?` placeholders, `executemany`, cursors with fetchone/fetchall/iteration), on a
psycopg 3 connection. It knows nothing about the schema beyond one rule (`ON CONFLICT` targets gain the person
key, below); the store owns transactions.

What it translates, and why:
- `?` outside string literals, comments and quoted names becomes `%s`; `%` becomes `%%` (psycopg reads `%`
  everywhere in a query that has parameters).
- `ON CONFLICT (cols)` becomes `ON CONFLICT (person_id, cols)`: every unique key in the Postgres schema leads
  with the person key (pg_schema.py), while SQLite's has no person column; so portable SQL names the columns
  it would on SQLite.
- Python `bool` parameters are sent as 0/1 (SQLite stores them so, and the columns are integers).
- `numeric` results (Postgres' `sum()` of integers) come back as int, or float when fractional, as SQLite
  gives them; `bytea` comes back as bytes.
Not supported: `cursor.lastrowid` (use `INSERT ... RETURNING id`), SQLite's own functions and PRAGMAs.

psycopg is imported inside functions only: SQLite users never need it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError

__all__ = ["PgConnection", "translate", "redact_url", "connect"]

log = logging.getLogger(__name__)

# a string literal, a quoted name, a comment, a `?`, a `%`, or an ON CONFLICT target
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\?|%|ON\s+CONFLICT\s*\(""",
                     re.IGNORECASE | re.DOTALL)
_cache: dict[str, str] = {}


def translate(sql: str) -> str:
    """The SQLite-flavoured portable statement as psycopg wants it (see the module docstring)."""
    done = _cache.get(sql)
    if done is not None:
        return done

    def sub(m: re.Match[str]) -> str:
        t = m.group(0)
        if t == "?":
            return "%s"
        if t == "%":
            return "%%"
        if t[0] in "'\"-/":
            return t.replace("%", "%%")
        return t + "person_id, "

    out = _TOKENS.sub(sub, sql)
    if len(_cache) < 4096:
        _cache[sql] = out
    return out


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _is_read(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT")


def _adapt(params: Sequence[Any] | None) -> tuple:
    if not params:
        return ()
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class _Cursor:
    """What callers use of an sqlite3 cursor: fetchone, fetchall, iteration, rowcount."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> int:
        raise NotImplementedError("Postgres has no lastrowid: write INSERT ... RETURNING id")


class PgConnection:
    """An sqlite3-shaped facade over one psycopg connection (autocommit; the store issues BEGIN/COMMIT).

    Any loss of the connection raises StoreError naming the URL (without its password)."""

    def __init__(self, conn: Any, url: str, reopen: Callable[[], Any] | None = None) -> None:
        import psycopg

        self.raw = conn
        self.url = url
        self.IntegrityError = psycopg.errors.IntegrityError
        self._operational = (psycopg.OperationalError, psycopg.InterfaceError)
        self._reopen = reopen

    def _alive(self) -> None:
        """A connection lost earlier is replaced (by the store, which knows whether that is safe)."""
        if self.raw.closed and self._reopen is not None:
            self.raw = self._reopen()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        self._alive()
        try:
            return _Cursor(self.raw.execute(translate(sql), _adapt(params)))
        except self._operational as e:
            # a read outside a transaction is tried once more on a new connection (the server restarted, an
            # idle connection was cut); the store refuses to reconnect inside a transaction, which is lost
            if not (self.raw.closed and self._reopen is not None and _is_read(sql)):
                raise lost(self.url, e) from e
        self.raw = self._reopen()
        try:
            return _Cursor(self.raw.execute(translate(sql), _adapt(params)))
        except self._operational as e:
            raise lost(self.url, e) from e

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        self._alive()
        try:
            cur = self.raw.cursor()
            cur.executemany(translate(sql), [_adapt(p) for p in seq])
            return _Cursor(cur)
        except self._operational as e:
            raise lost(self.url, e) from e

    def close(self) -> None:
        self.raw.close()


def lost(url: str, e: BaseException) -> StoreError:
    return StoreError(f"lost the connection to the Postgres store {redact_url(url)}: {_first_line(e)}. Nothing "
                      "of the interrupted change was kept; check that the server is running and try again.")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def connect(url: str) -> Any:
    """A psycopg connection (autocommit) with our type adaptations, or StoreError saying what is wrong."""
    try:
        import psycopg
    except ImportError as e:
        raise StoreError("a Postgres store needs psycopg: pip install 'secondself[postgres]'") from e
    shown = redact_url(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, prepare_threshold=None)
    except psycopg.OperationalError as e:
        text = str(e)
        if "password authentication failed" in text or "no password supplied" in text:
            raise StoreError(f"the Postgres store {shown} refused the password: check the user and password in "
                             "store_url (or SECONDSELF_STORE_URL / --store)") from e
        if "does not exist" in text and "database" in text:
            raise StoreError(f"the Postgres store {shown} has no such database: create it (createdb NAME) or "
                             "fix store_url") from e
        raise StoreError(f"cannot reach the Postgres store {shown}: {_first_line(e)}. Is the server running? "
                         "`secondself store pg-start` starts a local one.") from e
    except psycopg.ProgrammingError as e:  # a malformed URL
        raise StoreError(f"cannot read the store URL {shown}: {_first_line(e)}; write it as "
                         "postgresql://user:password@host:port/database") from e
    _register_loaders(conn)
    return conn


def _register_loaders(conn: Any) -> None:
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if re.fullmatch(r"-?\d+", text) else float(text)

    conn.adapters.register_loader("numeric", NumericLoader)
