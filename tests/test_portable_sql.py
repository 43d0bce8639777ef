"""SQL outside the store package runs on both stores (SQLite and Postgres): no SQLite-only forms.

The real check is running each module's tests on both backends (the `store` fixture is parametrized); this
catches the forms by name, including in code paths those tests may not reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "secondself"

# form -> why Postgres refuses it (or answers differently)
FORBIDDEN = {
    r"\.lastrowid\b": "psycopg has no lastrowid: INSERT ... RETURNING id",
    r"INSERT\s+OR\s+(REPLACE|IGNORE)": "SQLite only: ON CONFLICT (key) DO UPDATE / DO NOTHING",
    r"\b(json_extract|instr|strftime|julianday|datetime)\s*\(": "SQLite functions: do it in Python",
    r"\browid\b": "SQLite's hidden column: use the id column",
    r"\bGLOB\b": "SQLite only: filter in Python or use LIKE",
    r"\bIS\s+NOT\s+\?": "Postgres cannot type a parameter compared with IS NOT",
    r"\bWHERE\s+1\s+(AND|\{)": "Postgres wants a boolean: WHERE 1 = 1",
    r"INSERT\s+INTO\s+\w+\s+VALUES": "name the columns: Postgres tables lead with the person key",
}
# files whose SQL is one backend's by design
EXEMPT = {"store", "migrations.py"}


def _sql_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.relative_to(PACKAGE).parts[0] not in EXEMPT and "execute" in p.read_text())


def test_there_are_modules_to_check() -> None:
    names = {p.name for p in _sql_files()}
    assert {"conversations.py", "versions.py", "build.py", "scope.py", "roles.py"} <= names


@pytest.mark.parametrize("path", _sql_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_sqlite_only_sql(path: Path) -> None:
    text = path.read_text()
    found = [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r} — {why}"
             for pattern, why in FORBIDDEN.items() for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert not found, "\n".join(found)
