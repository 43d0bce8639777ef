"""How many of this machine's cores are free: measured, never assumed (the cores may be shared).

`free_cores()` samples /proc/stat over a short interval on the CPUs this process may use; `others_busy()`
gives, for an interval that already passed, the cores that *other* processes used (all CPU time on our
CPUs minus this process's own), which is what a process that is itself busy needs to choose its threads.
Both return floats; callers round. Without /proc (not Linux) the 1-minute load average stands in.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["usable_cpus", "cpu_times", "free_cores", "Sample", "sample", "others_busy", "threads_for"]


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cpu_times(cpus: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) jiffies per CPU from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cpus:
            v = [int(x) for x in rest.split()]
            out[int(head[3:])] = (v[3] + v[4], sum(v[:8]))
    return out


def _load_free(cpus: Sequence[int]) -> float:
    return len(cpus) - os.getloadavg()[0] if hasattr(os, "getloadavg") else 1.0


def free_cores(sample_s: float = 0.25) -> float:
    """Idle cores (a float) among ours over the next `sample_s` seconds."""
    cpus = usable_cpus()
    try:
        before = cpu_times(cpus)
        time.sleep(sample_s)
        after = cpu_times(cpus)
        return sum((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in cpus)
    except (OSError, ValueError, KeyError, IndexError):
        return _load_free(cpus)


@dataclass(frozen=True)
class Sample:
    """A point in time: per-CPU jiffies (None without /proc), this process's CPU seconds, the wall clock."""

    jiffies: dict[int, tuple[int, int]] | None
    own_s: float
    wall_s: float


def sample() -> Sample:
    t = os.times()
    try:
        jiffies = cpu_times(usable_cpus())
    except (OSError, ValueError, IndexError):
        jiffies = None
    return Sample(jiffies, t.user + t.system, time.monotonic())


def others_busy(before: Sample, after: Sample) -> float:
    """Cores used by other processes between two samples (on our CPUs): busy time minus our own."""
    wall = after.wall_s - before.wall_s
    if before.jiffies is None or after.jiffies is None or wall <= 0:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 1.0
    busy = 0.0
    for c, (idle1, total1) in after.jiffies.items():
        idle0, total0 = before.jiffies.get(c, (idle1, total1))
        total = max(total1 - total0, 1)
        busy += (total - (idle1 - idle0)) / total          # the busy share of this CPU over the interval
    return max(0.0, busy - (after.own_s - before.own_s) / wall)


def threads_for(free: float, cpus: int) -> int:
    """Whole threads for `free` cores: rounded down (a fraction of a core is not enough for a thread the others
    wait for at every step; 0.75 of a core counts as free), at least 1, at most the usable cores."""
    return max(1, min(cpus, math.floor(free + 0.25)))
