"""The server's background worker for long jobs (ingest, build, train), persisted in the `jobs` table.

    queued ──► running ──► done | failed | cancelled
                  │
                  └──► queued   the server stopped (or was killed) while it ran: resumed at the next start

One worker thread runs one job at a time, oldest first. A job is a row (kind, params, status, progress,
result, error, note); a *runner* does the work: `runner(runtime, params, progress, should_stop) -> result`.
The default runners are thin and call the same library functions as the CLI (`ingest`,
`Runtime.build_profile`, `Runtime.train_model`), so a command and its job cannot drift apart.

Guarantees:
- 'done' only when the runner returned; its result is written in the same statement. A typed error fails
  the job with its (user-facing) message; any other exception fails it with "TypeName: message" and its
  traceback is logged.
- Cancel: a queued job is cancelled at once; a running one is asked to stop (`should_stop()` turns True) and
  becomes 'cancelled' when it does. Runners check `should_stop` in their progress callbacks and raise
  `JobCancelled`; training is stopped through its CANCEL file, after a checkpoint.
- Restart: `stop()` asks the running job to stop and puts it back in the queue with a note; a row left
  'running' by a killed process is requeued by the next `start()`. A train job is then resumed from its
  checkpoint (params["resume"] = True); ingest is idempotent and build resumes from its cache, so running
  those again is correct. One server per person database is assumed: `start()` requeues every running row.

Connections: `Jobs` keeps its own SQLite connection for this bookkeeping, and the worker thread its own
`Runtime` (opened once, reused across jobs), so long jobs never share a connection with request handlers.
Bookkeeping writes are plain autocommit statements, not `Store.transaction()`, which would bump the store's
`generation` and make every search reload its vectors. Progress is written without ever waiting: ingest
reports progress from inside its own write transaction, so a progress write that waited for the write lock
would wait on the job itself. A progress write that finds the database (or this object) busy is retried at
the next report; `get()`/`list()` show the running job's live progress from memory anyway.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import (
    ConfigError,
    JobCancelled,
    JobNotFoundError,
    SecondSelfError,
    StoreError,
    TrainingCancelled,
)
from ..runtime import Runtime
from ..store import Store, now_iso, open_store
from .runners import RUNNERS, JobProgress, Runner, StopCheck, check_params

__all__ = ["Jobs", "Runner", "JobProgress", "StopCheck", "RUNNERS", "FINISHED", "add_loss"]

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
PROGRESS_EVERY_S = 0.5     # progress reaches the database at most this often (and on every stage change)
MAX_LOSS_POINTS = 500      # the loss curve kept for a chart; longer runs are thinned evenly
_BUSY_MS = 30_000          # status writes wait this long for the write lock (ingest commits every ~5 s)
_COLUMNS = "id, kind, params, status, progress, result, error, note, created_at, started_at, finished_at"


def add_loss(losses: list[list[float]], step: int, loss: float, steps: int | None,
             cap: int = MAX_LOSS_POINTS) -> list[list[float]]:
    """The loss curve with [step, loss] added, at most `cap` points.

    Points from `step` on are replaced (a resumed run repeats the steps after its last checkpoint). A long run
    keeps its first point, one point every `every` steps and the newest one; `every` is fixed by the run's
    length, so the curve is thinned evenly rather than dense at one end. Without a known length it doubles as
    the run goes on (powers of two, so each thinning keeps a subset of the points kept before)."""
    if steps:
        every = math.ceil(steps / (cap - 2))
    else:
        every = 1 << max(0, math.ceil(math.log2(max(1, step) / (cap - 2))))
    kept = [p for i, p in enumerate(losses) if p[0] < step and (i == 0 or p[0] % every == 0)]
    kept.append([step, round(float(loss), 5)])
    return kept


# -- the worker --------------------------------------------------------------------------------------------
def _job(row: tuple) -> dict[str, Any]:
    return {"id": row[0], "kind": row[1], "params": json.loads(row[2]), "status": row[3],
            "progress": json.loads(row[4] or "{}"), "result": None if row[5] is None else json.loads(row[5]),
            "error": row[6], "note": row[7], "created_at": row[8], "started_at": row[9], "finished_at": row[10]}


class _Live:
    """The running job's progress: merged in memory at every report, written to the database throttled."""

    def __init__(self, jobs: Jobs, job_id: int, initial: dict[str, Any]) -> None:
        self.jobs, self.job_id, self.data = jobs, job_id, dict(initial)
        self.lock = threading.Lock()
        self.written_at = 0.0
        self.owed = False          # a write that must happen at the next chance (stage changed, or it failed)

    def __call__(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.lock:
            if "stage" in info and info["stage"] != self.data.get("stage"):
                self.owed = True
            self.data.update(info)
            if "step" in info and "loss" in info:
                self.data["losses"] = add_loss(self.data.get("losses", []), int(info["step"]), info["loss"],
                                               info.get("steps"))
            if not self.owed and now - self.written_at < PROGRESS_EVERY_S:
                return
            text = json.dumps(self.data, ensure_ascii=False, default=str)
            if self.jobs._try_progress(self.job_id, text):
                self.written_at, self.owed = now, False
            else:
                self.owed = True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.data, default=str))


@dataclass
class _Current:
    id: int
    kind: str
    params: dict[str, Any]
    live: _Live
    reason: str | None = None                   # "cancel" or "shutdown" once asked to stop

    def should_stop(self) -> bool:
        return self.reason is not None


class Jobs:
    """Submit, list, cancel and run long jobs for one person (see the module docstring).

    `runners` are added to (or replace) the default ones by kind; `make_runtime` builds the worker's Runtime
    (default: `Runtime(settings)`, notices logged). `wake`: the event a submit sets — a shared worker's
    (jobs_fair.py, which runs several persons' queues and never calls `start`)."""

    def __init__(self, settings: Settings, runners: dict[str, Runner] | None = None,
                 make_runtime: Callable[[], Runtime] | None = None, wake: threading.Event | None = None) -> None:
        self.settings = settings
        self.runners: dict[str, Runner] = {**RUNNERS, **(runners or {})}
        self._make_runtime = make_runtime or (lambda: Runtime(settings, notify=log.info))
        self._store = open_store(settings)
        self._db = self._store.db
        self._sqlite = isinstance(self._store, Store)   # Postgres has no file lock to wait for: no PRAGMAs
        if self._sqlite:
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        self._lock = threading.Lock()            # guards the connection and `_current`
        self._wake = wake or threading.Event()
        self._shutdown = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: _Current | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Requeue what a killed process left running, then start the worker thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._recover()
        self._shutdown.clear()
        self._thread = threading.Thread(target=self._work, name="secondself-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Ask the running job to stop and wait up to `timeout` s; it goes back to the queue with a note, so the
        next start resumes it. A job that does not stop in time stays 'running' and is requeued at next start."""
        self._shutdown.set()
        self._wake.set()
        with self._lock:
            if self._current is not None and self._current.reason is None:
                self._current.reason = "shutdown"
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("job %s did not stop within %s s; it is resumed when the server starts again",
                            self._current.id if self._current else "?", timeout)

    def close(self) -> None:
        """stop(), then close the bookkeeping connection (unless a job that would not stop still uses it)."""
        self.stop()
        if self._thread is None or not self._thread.is_alive():
            self._store.close()

    # -- the API -------------------------------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job; returns it. Unknown kinds and bad parameters raise ConfigError (nothing is queued)."""
        if kind not in self.runners:
            raise ConfigError(f"unknown job kind {kind!r}; known: {', '.join(sorted(self.runners))}")
        params = dict(params or {})
        check_params(kind, params)
        try:
            text = json.dumps(params, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} job: parameters must be JSON ({e})") from None
        with self._write() as db:
            job_id = db.execute("INSERT INTO jobs (kind, params, status, created_at) VALUES (?, ?, 'queued', ?) "
                                "RETURNING id", (kind, text, now_iso())).fetchone()[0]
        self._wake.set()
        return self.get(int(job_id))

    def get(self, job_id: int) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            current = self._current
        if row is None:
            raise JobNotFoundError(job_id)
        return self._with_live(_job(row), current)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest `limit` jobs, newest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?",
                                    (max(0, min(int(limit), 1000)),)).fetchall()
            current = self._current
        return [self._with_live(_job(r), current) for r in rows]

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a queued job at once; ask a running one to stop (it becomes 'cancelled' when it does); a
        finished job is returned unchanged."""
        job = self.get(job_id)
        now = now_iso()
        if job["status"] == "queued":
            with self._write() as db:
                db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, note = ? "
                           "WHERE id = ? AND status = 'queued'", (now, f"cancelled at {now} before it started",
                                                                  job_id))
            job = self.get(job_id)               # the worker may have claimed it meanwhile: then stop it
        if job["status"] == "running":
            with self._lock:
                mine = self._current is not None and self._current.id == job_id
                if mine and self._current is not None:
                    self._current.reason = "cancel"
            with self._write() as db:
                if mine:
                    db.execute("UPDATE jobs SET note = ? WHERE id = ? AND status = 'running'",
                               (f"cancel requested at {now}", job_id))
                else:   # no worker of this process runs it: a killed process left it 'running'
                    db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, note = ? "
                               "WHERE id = ? AND status = 'running'", (now, f"cancelled at {now}", job_id))
        return self.get(job_id)

    def wait(self, job_id: int, timeout: float) -> dict[str, Any]:
        """Poll until the job is finished or `timeout` s passed; returns the job as it is then."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in FINISHED or time.monotonic() >= deadline:
                return job
            time.sleep(0.02)

    # -- bookkeeping ---------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction on the bookkeeping connection (not Store.transaction: see the module
        docstring). Waits up to 30 s for the write lock; a database still busy then is a StoreError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                raise StoreError(f"could not record a job change: {e}. The database is busy; try again.") from e

    def _try_progress(self, job_id: int, text: str) -> bool:
        """Write progress unless the database is busy (never waits for SQLite's lock); False then. The Python
        lock is only ever held for short statements by pollers (`get`), so waiting a moment for it is safe."""
        if not self._lock.acquire(timeout=0.2):
            return False
        try:
            if self._sqlite:
                self._db.execute("PRAGMA busy_timeout = 0")
            try:
                self._db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (text, job_id))
                return True
            except sqlite3.OperationalError as e:      # locked by the job's own open transaction: next time
                log.debug("job %s: progress not written now (%s)", job_id, e)
                return False
            finally:
                if self._sqlite:
                    self._db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        finally:
            self._lock.release()

    def _with_live(self, job: dict[str, Any], current: _Current | None) -> dict[str, Any]:
        if current is not None and current.id == job["id"] and job["status"] == "running":
            job["progress"] = current.live.snapshot()
        return job

    def _recover(self) -> None:
        now = now_iso()
        with self._write() as db:
            rows = db.execute("SELECT id, kind, params FROM jobs WHERE status = 'running'").fetchall()
            for job_id, kind, params in rows:
                self._requeue(db, job_id, kind, json.loads(params), f"interrupted (server stopped); resumed at {now}")
        for job_id, kind, _ in rows:
            log.info("job %s (%s) was interrupted when the server stopped; it runs again", job_id, kind)

    @staticmethod
    def _requeue(db: sqlite3.Connection, job_id: int, kind: str, params: dict[str, Any], note: str) -> None:
        if kind == "train":
            params["resume"] = True               # continue from the run's checkpoint
        db.execute("UPDATE jobs SET status = 'queued', params = ?, note = ?, started_at = NULL, finished_at = NULL "
                   "WHERE id = ?", (json.dumps(params, ensure_ascii=False), note, job_id))

    def _claim(self) -> _Current | None:
        """The oldest queued job, marked running and made current (one statement under the lock)."""
        with self._write() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', started_at = ?, error = NULL WHERE id = ?",
                       (now_iso(), row[0]))
            job = _job(row)
            self._current = _Current(job["id"], job["kind"], job["params"], _Live(self, job["id"], job["progress"]))
            if self._shutdown.is_set():           # stop() came between the loop's check and this claim
                self._current.reason = "shutdown"
            return self._current

    # -- the worker thread -----------------------------------------------------------------------------------
    def _work(self) -> None:
        runtime: Runtime | None = None
        try:
            while not self._shutdown.is_set():
                try:
                    current = self._claim()
                except StoreError:
                    log.exception("the job worker could not read the queue; retrying")
                    with self._lock:
                        self._current = current = None
                if current is None:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                if runtime is None:
                    try:
                        runtime = self._make_runtime()
                    except Exception as e:
                        self._finish(current, "failed", error=_message(e, log_traceback=True))
                        continue
                self._run(current, runtime)
        finally:
            if runtime is not None:
                runtime.close()

    def _run(self, current: _Current, runtime: Runtime) -> None:
        if current.kind not in self.runners:       # queued by a server that knew more kinds
            self._finish(current, "failed", error=f"this server cannot run {current.kind!r} jobs")
            return
        try:
            result = self.runners[current.kind](runtime, dict(current.params), current.live, current.should_stop)
            text = json.dumps(result, ensure_ascii=False, default=str)
        except Exception as e:
            if current.reason is not None and _is_stop(e):
                if current.reason == "shutdown":
                    self._finish(current, "queued", note=f"stopped at {now_iso()} (server shutting down); "
                                                        "resumes when it starts again")
                else:
                    self._finish(current, "cancelled", note=f"cancelled at {now_iso()}: {e}")
            elif _is_stop(e):                     # e.g. `secondself train --cancel` from a terminal
                self._finish(current, "cancelled", note=f"cancelled at {now_iso()}: {e}")
            else:
                self._finish(current, "failed", error=_message(e, log_traceback=True))
            return
        self._finish(current, "done", result=text)

    def _finish(self, current: _Current, status: str, *, result: str | None = None, error: str | None = None,
                note: str | None = None) -> None:
        """Record how the job ended (and its last progress), then let the next one start. Retried a few times:
        a job left 'running' here would only be rerun at the next start."""
        progress = json.dumps(current.live.snapshot(), ensure_ascii=False)
        for attempt in range(3):
            try:
                with self._write() as db:
                    if status == "queued":
                        kind, params = db.execute("SELECT kind, params FROM jobs WHERE id = ?",
                                                  (current.id,)).fetchone()
                        self._requeue(db, current.id, kind, json.loads(params), note or "")
                        db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (progress, current.id))
                    else:
                        db.execute("UPDATE jobs SET status = ?, progress = ?, result = ?, error = ?, "
                                   "note = coalesce(?, note), finished_at = ? WHERE id = ?",
                                   (status, progress, result, error, note, now_iso(), current.id))
                    if self._current is current:
                        self._current = None
                return
            except StoreError:
                log.exception("job %s: could not record status %r (attempt %d of 3)", current.id, status,
                              attempt + 1)
                time.sleep(1.0)
        with self._lock:
            if self._current is current:
                self._current = None


def _is_stop(e: BaseException) -> bool:
    """Whether `e` is (or was raised from) a stop: build wraps errors from its callbacks in BuildError."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, JobCancelled | TrainingCancelled):
            return True
        seen = seen.__cause__
    return False


def _message(e: BaseException, log_traceback: bool) -> str:
    if isinstance(e, SecondSelfError):
        return str(e)
    if log_traceback:
        log.error("job failed with an unexpected error", exc_info=e)
    return f"{type(e).__name__}: {e}"
