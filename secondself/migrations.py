"""Schema migrations: an ordered list of small named functions, each applied once and recorded.

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped.
Each runs inside the store's transaction together with its record in `_migrations`.

These are the SQLite forms. The Postgres store has the same migrations, by the same names, as SQL in
store/pg_schema.py (`PG_MIGRATIONS`; m001..m007 are one baseline there, since no older Postgres database
exists): a new migration is written in both places, and a test checks that the two lists match.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "migrate"]


def _run(db: sqlite3.Connection, script: str) -> None:
    """Execute statements one by one: `executescript` would COMMIT the surrounding transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement!r}")


def m001_initial(db: sqlite3.Connection) -> None:
    _run(db, """        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            root TEXT NOT NULL,
            created_at TEXT NOT NULL,
            last_ingest_at TEXT
        );
        -- One row per file seen under a source, including failed and skipped ones (so `status` can
        -- report them and re-ingest can skip unchanged content by hash).
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            content_hash TEXT,
            size INTEGER,
            mtime REAL,
            status TEXT NOT NULL,            -- ok | failed | skipped | duplicate
            reason TEXT,
            duplicate_of INTEGER REFERENCES files(id) ON DELETE SET NULL,
            ingested_at TEXT NOT NULL,
            UNIQUE (source_id, path)
        );
        CREATE INDEX files_hash ON files(content_hash);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            title TEXT NOT NULL,
            kind TEXT NOT NULL,
            date TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            UNIQUE (file_id, key)
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            date TEXT,
            speakers TEXT NOT NULL DEFAULT ''  -- '|Maya|Tomás|' so a speaker filter is one instr()
        );
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE INDEX chunks_source_date ON chunks(source_id, date);
        -- Vectors are keyed by model, so switching embedders keeps the old vectors (switching back is free).
        CREATE TABLE embeddings (
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (chunk_id, model)
        ) WITHOUT ROWID;
        CREATE INDEX embeddings_model ON embeddings(model);
        -- Keyword index; rowid = chunks.id. Porter stemming: "lived" finds "living" (+10 points hit@5 on the example queries). A plain (not contentless) table so it works on SQLite < 3.43;
        -- the trigger keeps it in step when chunks go, including through ON DELETE CASCADE.
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, title, tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            DELETE FROM chunks_fts WHERE rowid = old.id;
        END;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('generation', '0');
        """)


def m002_conversations(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- status: complete | interrupted (Ctrl-C mid-stream: the partial text is kept) | error
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            citations TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'complete',
            meta TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_conversation ON messages(conversation_id, id);
    """)


def m003_keyword_vocabulary(db: sqlite3.Connection) -> None:
    # Per-term document counts of the keyword index, for pruning very common query terms (search.py).
    _run(db, "CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row');")


def m004_layer1(db: sqlite3.Connection) -> None:
    # Layer 1. Versions hold the whole layer as JSON and are never updated, only added; the current one is
    # meta 'profile_current'. Overrides are the person's own corrections, applied on top of every build.
    # build_cache keeps each step's validated outputs (keyed by a hash of their inputs) so a failed build
    # resumes and an incremental one recomputes only what new memories touch. build_runs is the step log.
    _run(db, """        CREATE TABLE profile_versions (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,               -- build | rollback | edit
            parent INTEGER,
            summary TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL,
            stats TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE profile_overrides (
            kind TEXT NOT NULL,               -- section | pin | forget | fact
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE TABLE build_cache (
            step TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (step, key)
        );
        CREATE TABLE build_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,             -- running | done | failed | up-to-date
            step TEXT,
            error TEXT,
            stats TEXT NOT NULL DEFAULT '{}',
            version INTEGER
        );
    """)


def m005_serve(db: sqlite3.Connection) -> None:
    _run(db, """        -- API tokens: only a SHA-256 of the secret is kept; the secret is shown once, at creation.
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL,              -- space-separated: chat read write admin
            secret_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,              -- first characters, to recognise a token in a list
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        );
        -- Long jobs run by the server's background worker (ingest, build, train), persisted so a restart
        -- neither loses them nor hides their outcome.
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,              -- JSON
            status TEXT NOT NULL,              -- queued running done failed cancelled
            progress TEXT NOT NULL DEFAULT '{}',
            result TEXT,
            error TEXT,
            note TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX jobs_status ON jobs(status);
    """)


def m006_work(db: sqlite3.Connection) -> None:
    _run(db, """        -- Roles: personas with their own instructions, memory scope and model.
        CREATE TABLE roles (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            instructions TEXT NOT NULL DEFAULT '',
            scope TEXT NOT NULL DEFAULT '{}',  -- JSON: sources, tags, since, until
            model TEXT,                        -- a model spec, 'personal', or NULL (the persona model)
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- Labels on sources ("work", "private"), used by role scopes and disclosure rules.
        CREATE TABLE source_tags (
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (source_id, tag)
        );
        -- A token confined to one role: every request with it sees only that role's memories.
        ALTER TABLE api_tokens ADD COLUMN role TEXT;
        -- Bridge runs (enhance, expert, critique): every step, with what was disclosed.
        CREATE TABLE bridge_runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                -- enhance | ask | critique
            request TEXT NOT NULL,
            steps TEXT NOT NULL,               -- JSON list of {step, input, output, disclosed, ...}
            created_at TEXT NOT NULL
        );
        -- Spaces: discussions between the person's roles and other second selves.
        CREATE TABLE spaces (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            participants TEXT NOT NULL,        -- JSON (no secrets: remote tokens live in space_secrets)
            rounds INTEGER NOT NULL,
            status TEXT NOT NULL,              -- created running done failed
            summary TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE space_secrets (
            space_id INTEGER NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            participant TEXT NOT NULL,
            secret TEXT NOT NULL,              -- a remote participant's API token; never returned by any route
            PRIMARY KEY (space_id, participant)
        );
        CREATE TABLE space_turns (
            id INTEGER PRIMARY KEY,
            space_id INTEGER NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
            round INTEGER NOT NULL,            -- 0 = the host's opening; rounds+1 = the summary
            speaker TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL,              -- ok | skipped (timed out or failed: see error)
            error TEXT,
            created_at TEXT NOT NULL
        );
    """)


def m007_space_turn_meta(db: sqlite3.Connection) -> None:
    _run(db, """        -- A space turn's details: a local participant's citations and whether it abstained; for a remote
        -- participant, what the disclosure rules withheld from what was sent (never the token).
        ALTER TABLE space_turns ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
    """)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [m001_initial, m002_conversations,
                                                          m003_keyword_vocabulary, m004_layer1, m005_serve,
                                                          m006_work, m007_space_turn_meta]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations in order; return the names applied. Caller owns the transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    known = {m.__name__ for m in MIGRATIONS}
    if done - known:
        from .errors import StoreError

        raise StoreError(f"database was written by a newer secondself (migrations {sorted(done - known)}); "
                         "upgrade secondself to open it")
    applied = []
    for m in MIGRATIONS:
        if m.__name__ not in done:
            m(db)
            db.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", (m.__name__,))
            applied.append(m.__name__)
    return applied
