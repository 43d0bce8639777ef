"""Training threads follow the cores other processes leave free (train/threads.py, cpu.py)."""

from __future__ import annotations

import pytest

from secondself import cpu
from secondself.train.threads import CpuThreads


def _sample(idle: int, total: int, own_s: float, wall_s: float) -> cpu.Sample:
    return cpu.Sample({0: (idle, total), 1: (idle, total)}, own_s, wall_s)


def test_others_busy_is_all_cpu_time_minus_our_own():
    before = _sample(0, 0, 0.0, 0.0)
    # both CPUs fully busy for 10 s, 5 of those CPU-seconds ours: the others used 1.5 cores
    assert cpu.others_busy(before, _sample(0, 1000, 5.0, 10.0)) == pytest.approx(1.5)
    # 90% idle, 1 s ours: others 0.1
    assert cpu.others_busy(before, _sample(900, 1000, 1.0, 10.0)) == pytest.approx(0.1)
    assert cpu.others_busy(before, _sample(1000, 1000, 0.0, 10.0)) == 0.0


def test_threads_for_rounds_down_with_a_margin_and_stays_in_range():
    assert [cpu.threads_for(f, 2) for f in (0.0, 0.5, 0.75, 1.6, 1.8, 5.0)] == [1, 1, 1, 1, 2, 2]


def test_training_threads_start_from_the_free_cores_and_follow_the_others_load(monkeypatch):
    monkeypatch.delenv("SECONDSELF_THREADS", raising=False)
    samples = iter([_sample(0, 0, 0.0, 0.0),           # start
                    _sample(0, 1000, 5.0, 10.0),       # others took 1.5 cores over the first 2 steps
                    _sample(900, 2000, 6.0, 20.0)])    # then 0.1 over the next 2
    set_to: list[int] = []
    threads = CpuThreads(every=2, set_threads=set_to.append, sampler=lambda: next(samples), cpus=2)
    assert threads.start(free=1.9) == 2
    assert threads.step() is None          # not yet measured again
    assert threads.step() == 1             # busy machine: one thread
    threads.step()
    assert threads.step() == 2             # quiet again
    assert set_to == [2, 1, 2]


def test_secondself_threads_pins_training_threads(monkeypatch):
    monkeypatch.setenv("SECONDSELF_THREADS", "1")
    set_to: list[int] = []
    threads = CpuThreads(every=1, set_threads=set_to.append, sampler=lambda: _sample(0, 0, 0.0, 0.0), cpus=2)
    assert threads.start(free=2.0) == 1
    assert threads.step() is None and set_to == [1]


def test_without_proc_the_others_are_the_load_average(monkeypatch):
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (1.25, 0.0, 0.0))
    assert cpu.others_busy(cpu.Sample(None, 0.0, 0.0), cpu.Sample(None, 1.0, 10.0)) == 1.25
