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

from ..errors import SecondSelfError

__all__ = ["Busy", "RateLimited", "RateLimiter", "ModelGate"]


class Busy(SecondSelfError):
    """The model is at capacity and its waiting line is full (HTTP 503)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(SecondSelfError):
    """This client sent more requests than its rate limit allows (HTTP 429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        if self._slots.acquire(blocking=False):
            with self._lock:
                self.active += 1
            return
        with self._lock:
            if self.waiting >= self.max_waiting:
                self.rejected += 1
                raise Busy(f"the model is busy ({self.active} answering, {self.waiting} waiting); try again "
                           "shortly", retry_after=5)
            self.waiting += 1
        try:
            got = self._slots.acquire(timeout=self.wait_s)
        finally:
            with self._lock:
                self.waiting -= 1
        if not got:
            with self._lock:
                self.rejected += 1
            raise Busy(f"waited {self.wait_s:.0f} s for the model without a turn; try again shortly", retry_after=10)
        with self._lock:
            self.active += 1

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
