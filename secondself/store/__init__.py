"""The store: where one person's memory lives. Two backends share one contract (the docstrings of
`sqlite.Store`): an SQLite file per person (the embedded default) and Postgres + pgvector (`postgres.PgStore`,
every person in one database, separated by a person key that row-level security enforces).

`open_store(settings)` picks the backend from `settings.store_url` ("" = SQLite). psycopg is imported only
when a Postgres URL is used, so SQLite users never need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .sqlite import FileRecord, Store, now_iso

if TYPE_CHECKING:
    from ..config import Settings
    from .postgres import PgStore

__all__ = ["Store", "FileRecord", "now_iso", "open_store", "list_persons"]


def open_store(settings: Settings) -> Store | PgStore:
    """The store of `settings.person`: the SQLite file under the home, or the person's rows in the Postgres
    database named by `settings.store_url` (created on first open)."""
    if not settings.store_url:
        return Store(settings.db_path)
    from .postgres import PgStore

    return PgStore(settings.store_url, settings.person)


def list_persons(settings: Settings) -> list[str]:
    """The persons of this home (SQLite: the folders under persons/ that hold a database) or of the
    Postgres store (its `persons` table), sorted by name."""
    if not settings.store_url:
        root = settings.home / "persons"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "memory.sqlite3").exists())
    from .postgres import list_pg_persons

    return list_pg_persons(settings.store_url)
