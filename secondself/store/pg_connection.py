"""The Postgres connections behind `PgStore.db`: the calls the rest of secondself makes on an sqlite3
connection (`execute(sql, params)` with `?` placeholders, `executemany`, cursors with fetchone/fetchall/
iteration, `BEGIN` ... `COMMIT`), on psycopg 3 connections borrowed from a pool per database (`Pool`). It knows
nothing about the schema beyond one rule (`ON CONFLICT` targets gain the person key, below).

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
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError

__all__ = ["PgConnection", "Pool", "pool_for", "drop_ref", "translate", "redact_url", "connect"]

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
    """The URL with its password replaced by ***, for messages and logs (also a `key=value` connection
    string's password, and a `password=` query parameter)."""
    url = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", url, flags=re.IGNORECASE)
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
    """What callers use of an sqlite3 cursor: fetchone, fetchall, iteration, rowcount. The rows are read when
    the statement runs (the connection goes back to the pool at once)."""

    def __init__(self, cur: Any) -> None:
        self._rows = cur.fetchall() if cur.description is not None else []
        self._next = 0
        self.rowcount = int(cur.rowcount)

    def fetchone(self) -> tuple | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())

    @property
    def lastrowid(self) -> int:
        raise NotImplementedError("Postgres has no lastrowid: write INSERT ... RETURNING id")


POOL_SIZE = 16        # connections per database per process, shared by every store of every person
POOL_WAIT_S = 30.0


class Pool:
    """The connections of one process to one database. A person's store borrows one per statement, or for a
    whole transaction, and sets its person on it (`SET secondself.person_id`) unless it was the last to use
    it; so the number of connections does not grow with the persons a server holds open.

    `prepare(conn, tenant)` readies a new connection and returns `tenant`: given None (the pool's first
    connection) it also checks pgvector, applies migrations and decides whether connections must switch to the
    tenant role (pg_schema.py); it runs outside the pool's lock."""

    def __init__(self, url: str, prepare: Callable[[Any, bool | None], bool], size: int | None = None) -> None:
        self.url, self._prepare, self.size = url, prepare, size or POOL_SIZE
        self.pid = os.getpid()       # a forked child must not share the parent's sockets
        self._idle: list[Any] = []
        self._open = 0
        self.tenant: bool | None = None
        self._person: dict[int, int] = {}
        self._cv = threading.Condition()
        self.refs = 0

    def acquire(self) -> Any:
        with self._cv:
            while True:
                while self._idle:
                    conn = self._idle.pop()
                    if not conn.closed:
                        return conn
                    self._forget(conn)
                if self._open < self.size:
                    self._open += 1
                    tenant = self.tenant
                    break
                if not self._cv.wait(POOL_WAIT_S):
                    raise StoreError(f"all {self.size} connections to the Postgres store {redact_url(self.url)} "
                                     f"stayed busy for {POOL_WAIT_S:.0f} s; try again")
        try:
            conn = connect(self.url)
            try:
                tenant = self._prepare(conn, tenant)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            with self._cv:
                self._open -= 1
                self._cv.notify()
            raise
        self.tenant = tenant
        return conn

    def release(self, conn: Any) -> None:
        with self._cv:
            if conn.closed:
                self._forget(conn)
            else:
                self._idle.append(conn)
            self._cv.notify()

    def _forget(self, conn: Any) -> None:
        self._open -= 1
        self._person.pop(id(conn), None)

    def person_of(self, conn: Any) -> int | None:
        return self._person.get(id(conn))

    def set_person(self, conn: Any, person_id: int) -> None:
        self._person[id(conn)] = person_id

    def close_idle(self) -> None:
        with self._cv:
            idle, self._idle = self._idle, []
            for conn in idle:
                self._forget(conn)
        for conn in idle:
            conn.close()


_pools: dict[str, Pool] = {}
_pools_lock = threading.Lock()


def pool_for(url: str, prepare: Callable[[Any, bool | None], bool]) -> Pool:
    """The process's pool for `url` (made on first use with `prepare`); the caller adds itself to `refs`."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.pid != os.getpid():
            pool = _pools[url] = Pool(url, prepare)
        pool.refs += 1
        return pool


def drop_ref(pool: Pool) -> None:
    """One store fewer on `pool`; the last one closes its idle connections."""
    with _pools_lock:
        pool.refs -= 1
        last = pool.refs <= 0
        if last and _pools.get(pool.url) is pool:
            del _pools[pool.url]
    if last:
        pool.close_idle()


class PgConnection:
    """An sqlite3-shaped facade over a person's borrowed connections (autocommit; `BEGIN` ... `COMMIT` or
    `ROLLBACK` keep one connection for the statements between them).

    `checkout()` lends a connection set to the person (the pinned one inside a transaction); `pin()` and
    `unpin()` hold one across statements. Any loss of the connection raises StoreError naming the URL
    (without its password)."""

    def __init__(self, url: str, checkout: Callable[[], Any], pin: Callable[[], None],
                 unpin: Callable[[], None], pinned: Callable[[], bool], on_lost: Callable[[], None]) -> None:
        import psycopg

        self.url = url
        self.IntegrityError = psycopg.errors.IntegrityError
        self._operational = (psycopg.OperationalError, psycopg.InterfaceError)
        self._checkout, self._pin, self._unpin, self._pinned = checkout, pin, unpin, pinned
        self._on_lost = on_lost

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        word = sql.lstrip()[:8].upper()
        if word.startswith("BEGIN"):
            self._pin()
        try:
            return self._run(lambda conn: conn.execute(translate(sql), _adapt(params)), _is_read(sql))
        except BaseException:
            if word.startswith("BEGIN"):
                self._unpin()
            raise
        finally:
            if word.startswith(("COMMIT", "ROLLBACK", "END")):
                self._unpin()

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        rows = [_adapt(p) for p in seq]

        def run(conn: Any) -> Any:
            cur = conn.cursor()
            cur.executemany(translate(sql), rows)
            return cur
        return self._run(run, False)

    def _run(self, statement: Callable[[Any], Any], read: bool) -> _Cursor:
        for attempt in (1, 2):
            try:
                with self._checkout() as conn:
                    return _Cursor(statement(conn))
            except self._operational as e:
                # a read outside a transaction is tried once more on a new connection (the server restarted,
                # an idle connection was cut: the idle ones are dropped too); inside a transaction the
                # connection, and the transaction, are lost
                self._on_lost()
                if attempt == 2 or not read or self._pinned():
                    raise lost(self.url, e) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Nothing to close: the connections belong to the pool (the store drops its reference)."""


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
