"""Torch threads for training on a CPU that others share: the cores they leave free, re-measured as it runs.

torch starts one thread per core and its threads wait for each other at every operation, so a thread more
than the free cores stalls them all: on the 2-core machine at load average 6, `secondself train` with torch's
default (2 threads) took 62 s per step while a run beside it with 1 thread took 20 s (2026-12-07). The
start uses the measure llama.cpp uses (`cpu.free_cores`); then every `every` steps the cores that *other*
processes used over those steps decide again (`cpu.others_busy`: all CPU time minus this process's own, since
our own threads are busy by design). `SECONDSELF_THREADS` pins the count; CUDA is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import cpu

__all__ = ["CpuThreads"]

log = logging.getLogger(__name__)


class CpuThreads:
    """Sets torch's thread count at `start()` and after every `every` calls of `step()`; `set_threads` and the
    samplers are injectable for tests."""

    def __init__(self, every: int = 5, set_threads: Callable[[int], None] | None = None,
                 sampler: Callable[[], cpu.Sample] = cpu.sample, cpus: int | None = None) -> None:
        self.every = max(1, every)
        self._set = set_threads or _torch_set
        self._sampler = sampler
        self.cpus = cpus or len(cpu.usable_cpus())
        self.threads: int | None = None
        self._since: cpu.Sample | None = None
        self._steps = 0
        self.history: list[int] = []

    def start(self, free: float | None = None) -> int:
        from ..backends.llama_engine import env_threads

        pinned = env_threads()
        n = pinned or cpu.threads_for(cpu.free_cores() if free is None else free, self.cpus)
        self._apply(n)
        self._pinned = pinned is not None
        self._since, self._steps = self._sampler(), 0
        return n

    def step(self) -> int | None:
        """After a training step: re-decide every `every` steps; returns the new count when it changed."""
        if self._since is None or self._pinned:
            return None
        self._steps += 1
        if self._steps < self.every:
            return None
        now = self._sampler()
        others = cpu.others_busy(self._since, now)
        self._since, self._steps = now, 0
        n = cpu.threads_for(self.cpus - others, self.cpus)
        if n != self.threads:
            log.info("training threads %s -> %d (other processes used %.1f of %d cores)", self.threads, n,
                     others, self.cpus)
            self._apply(n)
            return n
        return None

    def _apply(self, n: int) -> None:
        self.threads = n
        self.history.append(n)
        self._set(n)


def _torch_set(n: int) -> None:
    import torch

    torch.set_num_threads(n)
