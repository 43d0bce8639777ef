"""Operations on the Postgres store as a whole, outside any person: list the persons, remove one (the
person key cascades through every table). They connect as the login role, which sees every person's row
in `persons` (its policy binds only the tenant role)."""

from __future__ import annotations

from .pg_connection import connect

__all__ = ["list_pg_persons", "remove_pg_person"]


def list_pg_persons(url: str) -> list[str]:
    """Every person in the Postgres store at `url`, sorted (none before the first store opened it)."""
    conn = connect(url)
    try:
        if conn.execute("SELECT to_regclass('persons')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT name FROM persons ORDER BY name")]
    finally:
        conn.close()


def remove_pg_person(url: str, person: str) -> bool:
    """Delete a person and every row of theirs (the person key cascades), and their HNSW indexes; False if
    there was no such person. Close that person's open stores first."""
    conn = connect(url)
    try:
        if conn.execute("SELECT to_regclass('persons')").fetchone()[0] is None:
            return False
        row = conn.execute("SELECT id FROM persons WHERE name = %s", (person,)).fetchone()
        if row is None:
            return False
        for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE starts_with(indexname, %s)",
                                    (f"embeddings_hnsw_{int(row[0])}_",)).fetchall():
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute("DELETE FROM persons WHERE id = %s", (row[0],))
        return True
    finally:
        conn.close()
