"""Back-pressure for the server: a per-client rate limit and a gate in front of each chat model.

A 135M model on two cores generates about ten tokens a second, one answer at a time; letting sixteen
requests start at once would only make all sixteen slow and grow memory. The gate admits `concurrency`
generations per model and lets at most `max_waiting` more wait (up to `wait_s`); anything beyond gets an
explicit `Busy` (HTTP 503 with Retry-After) at once. The rate limit is a token bucket per API token (or per
"local" when no tokens are configured), answered with 429 and Retry-After.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from ..errors import Busy, RateLimited

__all__ = ["Busy", "RateLimited", "RateLimiter", "ModelGate", "Gates"]


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to `burst` (default: per_minute)."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else max(1.0, per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimited."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                wait = (1.0 - tokens) / self.rate
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"rate limit reached ({self.rate * 60:.0f} requests a minute); retry in "
                                  f"{wait:.0f} s", retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)


class ModelGate:
    """At most `concurrency` holders at a time and at most `max_waiting` waiting for a turn."""

    def __init__(self, concurrency: int = 1, max_waiting: int = 8, wait_s: float = 120.0) -> None:
        self.concurrency, self.max_waiting, self.wait_s = max(1, concurrency), max(0, max_waiting), wait_s
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self.waiting = 0
        self.active = 0
        self.rejected = 0

    def acquire(self) -> None:
        if self._enter():
            return
        try:
            got = self._slots.acquire(timeout=self.wait_s)
        finally:
            self._leave_line()
        self._took(got)

    async def acquire_async(self) -> None:
        """`acquire` for the event loop: waiting polls instead of parking a worker thread, so a long line
        of waiters cannot exhaust the server's thread pool (which the streams being answered need), and a
        client that goes away while waiting simply stops waiting (nothing to clean up)."""
        import asyncio

        if self._enter():
            return
        deadline = time.monotonic() + self.wait_s
        try:
            while not (got := self._slots.acquire(blocking=False)) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            self._leave_line()
        self._took(got)

    def _enter(self) -> bool:
        """True when a turn was free and is now held; otherwise join the waiting line (Busy when it is full)."""
        if self._slots.acquire(blocking=False):
            with self._lock:
                self.active += 1
            return True
        with self._lock:
            if self.waiting >= self.max_waiting:
                self.rejected += 1
                raise Busy(f"the model is busy ({self.active} answering, {self.waiting} waiting); try again "
                           "shortly", retry_after=5)
            self.waiting += 1
        return False

    def _leave_line(self) -> None:
        with self._lock:
            self.waiting -= 1

    def _took(self, got: bool) -> None:
        """After waiting: count the turn, or give up with Busy when the wait ran out."""
        with self._lock:
            if got:
                self.active += 1
                return
            self.rejected += 1
        raise Busy(f"waited {self.wait_s:.0f} s for the model without a turn; try again shortly", retry_after=10)

    def release(self) -> None:
        with self._lock:
            self.active -= 1
        self._slots.release()

    @contextmanager
    def turn(self):
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def snapshot(self) -> dict[str, int]:
        return {"concurrency": self.concurrency, "active": self.active, "waiting": self.waiting,
                "rejected": self.rejected}


class Gates(dict[str, ModelGate]):
    """One ModelGate per model spec (a dict of them), made on first use by calling it: 1 at a time for models
    on this machine (they share its cores), `remote_concurrency` for endpoints and fakes. Shared by the HTTP
    API and MCP, so both queue for the same model."""

    def __init__(self, concurrency: int | None = None, max_waiting: int = 8, wait_s: float = 120.0,
                 remote_concurrency: int = 4) -> None:
        super().__init__()
        self.concurrency, self.max_waiting, self.wait_s = concurrency, max_waiting, wait_s
        self.remote_concurrency = remote_concurrency
        self._lock = threading.Lock()

    def __call__(self, spec: str) -> ModelGate:
        from ..backends.registry import parse_spec

        with self._lock:
            if spec not in self:
                remote = spec != "personal" and parse_spec(spec).kind in ("openai", "fake")
                n = self.concurrency or (self.remote_concurrency if remote else 1)
                self[spec] = ModelGate(n, self.max_waiting, self.wait_s)
            return self[spec]
