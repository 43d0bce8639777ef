"""Which person a token belongs to, on a server for many persons (persons.py): sha256(secret) → person.

Built from every person's active tokens and rebuilt when a token is not found, so a token made since (from the
command line, or by a person over HTTP) is found without a restart. Only hashes are kept, never secrets. A hit
is only a hint: the caller verifies the token in that person's own table, so a revoked token stops at once.

What a rebuild costs, and how often one may happen:
- A person whose database has not changed since the last rebuild is not read again: each database is known
  by its `signature` (SQLite: the size and modification time of the file and its WAL, taken before it is
  read, so a write during the read shows as a change next time). Over 1,000 unchanged persons a rebuild is
  then a thousand `stat` calls. Postgres has no such signature: every person is read.
- A rebuild starts at most once per `refresh_s` (0.25 s: a token made a moment ago works at once in practice),
  and never sooner than ten times the last rebuild's duration after it: a stream of unknown tokens costs one
  dictionary lookup each, and rebuilding keeps under a tenth of a core however many persons there are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["TokenIndex", "COST_FACTOR"]

log = logging.getLogger("secondself.serve")

COST_FACTOR = 10.0   # a rebuild waits at least this many times the last one's duration


class TokenIndex:
    """digest → person, rebuilt from `scan(person)` (the person's active token digests) over `names()`;
    `signature(person)`: a value that changes whenever their tokens may have (None: always read them)."""

    def __init__(self, names: Callable[[], list[str]], scan: Callable[[str], list[str]],
                 signature: Callable[[str], Hashable | None], refresh_s: float = 0.25) -> None:
        self.names, self.scan, self.signature = names, scan, signature
        self.refresh_s = refresh_s
        self.rebuilds = 0          # how many rebuilds ran
        self.reads = 0             # how many persons' token tables they read
        self._index: dict[str, str] = {}
        self._known: dict[str, tuple[Hashable | None, list[str]]] = {}   # person → (signature, digests)
        self._at = float("-inf")
        self._took = 0.0
        self._lock = threading.Lock()
        self._rebuild_lock = threading.Lock()

    def get(self, digest: str, rebuild: bool = True) -> str | None:
        """The person of `digest`; on a miss, rebuilds first when one is due (see the module docstring)."""
        person = self._index.get(digest)
        if person is None and rebuild and self._due():
            self.rebuild()
            person = self._index.get(digest)
        return person

    def _due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._at < max(self.refresh_s, COST_FACTOR * self._took):
                return False
            self._at = now  # claimed here, so two misses at once rebuild once
            return True

    def rebuild(self) -> None:
        """Read every person whose signature changed (or who is new); forget the persons that are gone."""
        with self._rebuild_lock:
            started = time.monotonic()
            with self._lock:
                self._at = started
            known: dict[str, tuple[Hashable | None, list[str]]] = {}
            for person in self.names():
                try:
                    signature = self.signature(person)
                    previous = self._known.get(person)
                    if signature is not None and previous is not None and previous[0] == signature:
                        known[person] = previous
                        continue
                    known[person] = (signature, self.scan(person))
                    self.reads += 1
                except Exception:  # one unreadable database must not lock every other person out
                    log.exception("could not read the tokens of %s", person)
            index = {digest: person for person, (_, digests) in known.items() for digest in digests}
            with self._lock:
                self._known, self._index = known, index
                self._took = time.monotonic() - started
                self.rebuilds += 1

    def forget(self, person: str) -> None:
        """Drop a person (being removed) at once, before the next rebuild."""
        with self._rebuild_lock, self._lock:
            self._known.pop(person, None)
            self._index = {d: p for d, p in self._index.items() if p != person}
