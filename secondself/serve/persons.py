"""Every person of the home (or of the Postgres store) on one server: `secondself serve --all-persons`.

`Persons` holds, per person, a `ServerState` (state.py) built on first use — their own Runtime, token reader,
rate limiter and job queue — so every route, unchanged, works on the person its caller's token belongs to
(auth.py puts that person's state on the request; state.py's `state_of` returns it). What all persons share
is what costs memory or CPU once per process: the loaded models (`ModelCache`, one base model for all), the
gates in front of them, and one background worker that takes their queues in turn (jobs_fair.py).

Which person a token belongs to: an index sha256(secret) → person (token_index.py), built at start and
rebuilt on a miss at a bounded rate, reading only the persons whose database changed. Only hashes are kept,
never secrets. A hit is always verified against that person's own table, so a revoked token stops at once.

A person's token can reach only their own database, folder and jobs: a request acts through their Runtime,
which opens nothing else, so another person's ids are simply unknown there (404) — existence does not leak.

Removing a person (the admin routes): they leave the index and the worker first, their runtimes are retired
(a request already in flight gets 404 rather than re-creating their database), then their data is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..backends.cache import ModelCache
from ..config import _PERSON_RE, Settings
from ..errors import ConfigError, PersonNotFoundError
from ..runtime import Runtime
from . import tokens as token_store
from .limits import Gates, ModelGate, RateLimiter
from .state import ServeOptions, ServerState
from .token_index import TokenIndex

__all__ = ["Persons", "PersonRuntime"]

log = logging.getLogger("secondself.serve")


class PersonRuntime(Runtime):
    """A person's Runtime on a many-person server: once the person is removed (`retire`), it refuses to open
    their store again (PersonNotFoundError, 404) instead of re-creating an empty database."""

    retired = False

    @property
    def store(self):  # type: ignore[override]
        if self.retired:
            raise PersonNotFoundError(self.settings.person)
        return Runtime.store.fget(self)  # type: ignore[attr-defined]

    def retire(self) -> None:
        with self.lock:
            self.retired = True
            self.close()

    # Models are named by specs a person may have chosen (a role's model, a training base, a build's teacher):
    # loaded under the person's spec guard (`spec_check`) wherever that happens — a request, a job, an MCP tool.
    def chat_model(self, spec: str, purpose: str = "persona"):
        with _guarded(self.settings):
            return super().chat_model(spec, purpose)

    def train_base(self, spec: str | None = None):
        with _guarded(self.settings):
            return super().train_base(spec)


@contextlib.contextmanager
def _guarded(settings: Settings) -> Iterator[None]:
    from ..backends.registry import spec_guard

    token = spec_guard.set(spec_check(settings))
    try:
        yield
    finally:
        spec_guard.reset(token)


def spec_check(settings: Settings) -> Callable[[str, Path | None], None]:
    """The model-spec guard of a person on a many-person server (backends/registry.py `spec_guard`):
    - no path into another person's folder (their exported models and adapters are made from their memories),
      with the same answer whether it exists or not, so existence does not leak;
    - no endpoint but those the operator configured: the server sends its API key (`api_key_env`) to an
      endpoint, so a person naming their own would receive it. A person's token holds the admin scope of their
      own data, never the server's."""
    configured = {s.strip() for s in (settings.persona_model, settings.teacher_model, settings.personal_endpoint)}

    def check(spec: str, path: Path | None) -> None:
        if path is None:
            if spec.strip() not in configured:
                raise ConfigError(f"model {spec!r}: on this server the model endpoints are chosen by its operator "
                                  "(a person's token cannot name one)")
            return
        try:
            resolved = path.expanduser().resolve()
            persons, own = (settings.home / "persons").resolve(), settings.person_dir.resolve()
        except (OSError, ValueError):
            return
        if (resolved == persons or persons in resolved.parents) and not (resolved == own or own in resolved.parents):
            raise ConfigError(f"model {str(path)!r}: a model path on this server may not point into another "
                              "person's folder")
    return check


class _PersonGates(Gates):
    """A person's view of the server's model gates: the same gates (one line per model for everyone), but
    listing (GET /api/settings) shows only the models this person used."""

    def __init__(self, shared: Gates) -> None:
        super().__init__()
        self.shared = shared

    def __call__(self, spec: str) -> ModelGate:
        gate = self.shared(spec)
        with self._lock:
            self[spec] = gate
        return gate


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Persons:
    """The persons of one server (see the module docstring). `settings` are the home's; `runners` add job
    kinds (tests); `jobs=False` in `options` runs no worker."""

    def __init__(self, settings: Settings, options: ServeOptions, *, shared: ModelCache | None = None,
                 runners: dict[str, Any] | None = None, notify: Callable[[str], None] | None = None,
                 refresh_s: float = 0.25) -> None:
        from .jobs_fair import FairWorker

        self.settings, self.options = settings, options
        self.shared = shared if shared is not None else ModelCache()
        self.gates = Gates(options.model_concurrency, options.max_waiting, options.wait_s)
        self.notices: list[str] = []
        self.worker = FairWorker() if options.jobs else None
        self.runners = runners
        self.notify = notify or log.info
        self.on_remove: list[Callable[[str], None]] = []   # called with a person's name as they are removed
        self._states: dict[str, ServerState] = {}
        self.index = TokenIndex(self.names, self._token_digests, self._signature, refresh_s)
        self._gone: set[str] = set()        # being removed: never given a new state
        self._lock = threading.RLock()

    # -- persons --------------------------------------------------------------------------------------------
    def settings_for(self, person: str) -> Settings:
        """A person's settings: the home's, with their name (the display name set for the home belongs to the
        home's own person only)."""
        keep = self.settings.person_name if person == self.settings.person else ""
        return replace(self.settings, person=person, person_name=keep)

    def names(self) -> list[str]:
        from ..store import list_persons

        return list_persons(self.settings)

    def state(self, person: str) -> ServerState:
        """The person's server state, built on first use (PersonNotFoundError for an unknown person)."""
        found = self._states.get(person)  # without the lock: a request never waits for another's first use
        if found is not None:
            return found
        with self._lock:
            found = self._states.get(person)
            if found is not None:
                return found
            if person in self._gone or person not in self.names():
                raise PersonNotFoundError(person)
            settings = self.settings_for(person)
            runtime = self._runtime(settings)
            with runtime.lock:
                _ = runtime.store  # creates the database before the token reader opens it read-only
            jobs = None
            if self.worker is not None:
                from .jobs import Jobs

                jobs = Jobs(settings, self.runners, make_runtime=lambda: self._runtime(settings),
                            wake=self.worker.wake)
                self.worker.add(person, jobs)
            state = ServerState(runtime, self.options, token_store.reader_for(settings), jobs=jobs,
                                limiter=RateLimiter(self.options.rate_per_minute),
                                gates=_PersonGates(self.gates), notices=self.notices)
            self._states[person] = state
            return state

    def _runtime(self, settings: Settings) -> PersonRuntime:
        return PersonRuntime(settings, notify=self.notify, shared=self.shared)

    def create(self, person: str) -> None:
        """A new, empty person (ConfigError for a bad or taken name)."""
        if not _PERSON_RE.match(person or ""):
            raise ConfigError(f"person name {person!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        with self._lock:
            if person in self.names() or person in self._gone:
                raise ConfigError(f"a person named {person!r} exists already")
            from ..store import open_store

            open_store(self.settings_for(person)).close()  # creates the database (SQLite) or the person's row

    def remove(self, person: str) -> None:
        """Remove a person and all their data (see the module docstring); other persons are not touched."""
        with self._lock:
            if person in self._gone or person not in self.names():
                raise PersonNotFoundError(person)
            self._gone.add(person)
            state = self._states.pop(person, None)
        self.index.forget(person)
        try:
            for hook in self.on_remove:
                hook(person)
            if self.worker is not None:
                self.worker.remove(person)
            if state is not None:
                state.tokens.close()
                state.runtime.retire()  # type: ignore[attr-defined]
            self._delete_data(person)
        finally:
            with self._lock:
                self._gone.discard(person)
        log.info("person %s removed", person)

    def _delete_data(self, person: str) -> None:
        settings = self.settings_for(person)
        if settings.store_url:  # every row of theirs (the person key cascades) and their vector indexes
            from ..store.postgres import remove_pg_person

            remove_pg_person(settings.store_url, person)
        if settings.person_dir.exists():  # SQLite: the database; both: uploads, adapters, training runs
            shutil.rmtree(settings.person_dir)

    # -- tokens ---------------------------------------------------------------------------------------------
    def resolve(self, secret: str) -> tuple[ServerState, token_store.Token] | None:
        """The caller's person (their server state) and token, or None when the token is unknown or revoked.
        The person comes from the index (token_index.py), the answer from their own token table."""
        if not secret or not secret.startswith("ss-") or len(secret) > 200:
            return None
        person = self.index.get(_digest(secret))
        if person is None:
            return None
        try:
            state = self.state(person)
        except PersonNotFoundError:
            return None
        token = state.tokens.verify(secret)
        return (state, token) if token is not None else None

    def refresh(self) -> None:
        """Rebuild the token index now (a person's tokens changed outside the index's sight)."""
        self.index.rebuild()

    def _token_digests(self, person: str) -> list[str]:
        return self._scan(person, "SELECT secret_hash FROM api_tokens WHERE revoked_at IS NULL")

    def _signature(self, person: str) -> tuple[int, ...] | None:
        """SQLite: size and modification time of the database and its WAL (every commit changes one of them);
        Postgres: None (read every time)."""
        settings = self.settings_for(person)
        if settings.store_url:
            return None
        parts: list[int] = []
        for path in (settings.db_path, settings.db_path.with_name(settings.db_path.name + "-wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                parts += [0, 0]
                continue
            # an empty WAL (made by a reader, or truncated by a checkpoint) holds nothing: as if absent
            parts += [st.st_size, st.st_mtime_ns] if st.st_size else [0, 0]
        return tuple(parts)

    def _scan(self, person: str, sql: str) -> list[Any]:
        """The first column of `sql` in the person's database, read without building their server state."""
        settings = self.settings_for(person)
        if settings.store_url:
            from ..store import open_store

            store: Any = open_store(settings)
            try:
                return [r[0] for r in store.db.execute(sql).fetchall()]
            finally:
                store.close()
        db = sqlite3.connect(f"{settings.db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            return [r[0] for r in db.execute(sql).fetchall()]
        except sqlite3.OperationalError as e:   # an older database without the table: no tokens, no jobs
            log.debug("%s: %s", person, e)
            return []
        finally:
            db.close()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Build the token index, take the persons with unfinished jobs into the worker, start it."""
        self.refresh()
        if self.worker is None:
            return
        for person in self.names():
            try:
                if self._scan(person, "SELECT id FROM jobs WHERE status IN ('queued', 'running') LIMIT 1"):
                    self.state(person)
            except Exception:
                log.exception("could not read the jobs of %s", person)
        self.worker.start()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        with self._lock:
            states, self._states = list(self._states.values()), {}
        for state in states:
            state.tokens.close()
            state.runtime.close()
        self.shared.close()
