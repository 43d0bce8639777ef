"""One background worker for many persons (`serve --all-persons`): their job queues taken in turn.

Each person keeps their own queue (a `Jobs`, jobs.py: their `jobs` table, submit/list/cancel, the same
guarantees), but no `Jobs` runs a thread of its own here: one `FairWorker` thread runs one job at a time for
the whole server, taking the persons round-robin — after a job of person A it looks at the person after A
first. So a person with ten queued jobs delays another person's one job by at most one job of theirs, never
by ten. Within a person, jobs still run oldest first.

The worker keeps a Runtime per person for their jobs (built by that person's `Jobs.make_runtime`, so models
come from the server's shared cache), apart from the runtimes that answer requests, as `Jobs` does — the
`keep` most recently used ones; an older one is closed (its database connection) and built again when needed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from ..errors import StoreError
from ..runtime import Runtime
from .jobs import Jobs, _Current, _message

__all__ = ["FairWorker"]

log = logging.getLogger(__name__)


class FairWorker:
    """Runs the jobs of several persons' queues, one at a time, round-robin by person."""

    def __init__(self, keep: int = 4) -> None:
        self.wake = threading.Event()          # pass to every Jobs(..., wake=worker.wake)
        self.keep = keep
        self._queues: dict[str, Jobs] = {}     # person → queue, in the order they were added
        self._runtimes: OrderedDict[str, Runtime] = OrderedDict()   # least recently used first
        self._last: str | None = None          # the person whose job ran last
        self._running: str | None = None       # the person whose job runs now
        self._lock = threading.Condition()
        self._shutdown = threading.Event()
        self._thread: threading.Thread | None = None

    # -- persons --------------------------------------------------------------------------------------------
    def add(self, person: str, jobs: Jobs) -> None:
        """Take `jobs` (built with wake=self.wake) into the rotation; what a killed server left running is
        requeued first, as `Jobs.start` would."""
        jobs._recover()
        with self._lock:
            self._queues[person] = jobs
        self.wake.set()

    def remove(self, person: str, timeout: float = 30) -> None:
        """Take the person out of the rotation: their running job (if any) is asked to stop and waited for (up
        to `timeout` s); then their queue's connection and their job runtime are closed."""
        with self._lock:
            jobs = self._queues.pop(person, None)
        if jobs is None:
            return
        jobs.stop(timeout=0)                   # no thread of its own: this only asks its current job to stop
        with self._lock:
            if not self._lock.wait_for(lambda: self._running != person, timeout):
                log.warning("a job of %s did not stop within %s s", person, timeout)
            runtime = self._runtimes.pop(person, None)
        if runtime is not None:
            runtime.close()
        jobs.close()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._shutdown.clear()
        self._thread = threading.Thread(target=self._work, name="secondself-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Ask the running job to stop (it goes back to its queue and resumes at the next start), wait for the
        thread, then close every queue and runtime."""
        self._shutdown.set()
        with self._lock:
            queues = list(self._queues.values())
        for jobs in queues:
            jobs.stop(timeout=0)
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            runtime.close()
        for jobs in queues:
            jobs.close()

    # -- the thread -----------------------------------------------------------------------------------------
    def _next(self) -> tuple[str, Jobs, _Current] | None:
        """The next job: the persons are tried in order starting after the one served last."""
        with self._lock:
            persons = list(self._queues)
            if self._last in persons:
                at = persons.index(self._last) + 1
                persons = persons[at:] + persons[:at]
            for person in persons:
                jobs = self._queues[person]
                try:
                    current = jobs._claim()
                except StoreError:
                    log.exception("the job worker could not read %s's queue; retrying", person)
                    continue
                if current is not None:
                    self._last = self._running = person
                    return person, jobs, current
        return None

    def _runtime(self, person: str, jobs: Jobs) -> Runtime:
        """The person's job runtime, made the most recently used; the least recently used beyond `keep` are
        closed (only this thread runs jobs, so none of them is in use)."""
        with self._lock:
            runtime = self._runtimes.pop(person, None)
        if runtime is None:
            runtime = jobs._make_runtime()
        with self._lock:
            self._runtimes[person] = runtime
            old = [self._runtimes.popitem(last=False)[1] for _ in range(max(0, len(self._runtimes) - self.keep))]
        for stale in old:
            stale.close()
        return runtime

    def _work(self) -> None:
        while not self._shutdown.is_set():
            picked = self._next()
            if picked is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            person, jobs, current = picked
            try:
                try:
                    runtime = self._runtime(person, jobs)
                except Exception as e:
                    jobs._finish(current, "failed", error=_message(e, log_traceback=True))
                    continue
                jobs._run(current, runtime)
            finally:
                with self._lock:
                    self._running = None
                    self._lock.notify_all()
