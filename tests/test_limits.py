"""The model gate and the rate limiter, without a server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from secondself.serve.limits import Busy, Gates, ModelGate, RateLimited, RateLimiter


def test_gate_admits_up_to_concurrency_queues_then_sheds():
    gate = ModelGate(concurrency=1, max_waiting=1, wait_s=0.3)
    gate.acquire()
    outcome: list[str] = []

    def waiter() -> None:
        try:
            gate.acquire()
            outcome.append("got")
            gate.release()
        except Busy:
            outcome.append("timed out")
    t = threading.Thread(target=waiter)
    t.start()
    while gate.waiting == 0:  # the waiter is in line
        time.sleep(0.005)
    with pytest.raises(Busy, match="busy"):  # the line is full: refused at once
        gate.acquire()
    t.join()
    assert outcome == ["timed out"]  # the turn was never given back within wait_s
    gate.release()
    with gate.turn():
        assert gate.snapshot() == {"concurrency": 1, "active": 1, "waiting": 0, "rejected": 2}
    assert gate.snapshot()["active"] == 0


def test_async_waiters_get_the_turn_when_it_is_released():
    gate = ModelGate(concurrency=1, max_waiting=4, wait_s=5)

    async def main() -> list[int]:
        gate.acquire()
        order: list[int] = []

        async def wait(i: int) -> None:
            await gate.acquire_async()
            order.append(i)
            gate.release()
        tasks = [asyncio.create_task(wait(i)) for i in range(3)]
        await asyncio.sleep(0.05)
        assert gate.waiting == 3 and order == []
        gate.release()
        await asyncio.gather(*tasks)
        return order
    assert sorted(asyncio.run(main())) == [0, 1, 2]
    assert gate.snapshot() == {"concurrency": 1, "active": 0, "waiting": 0, "rejected": 0}


def test_gates_per_spec_local_one_remote_four():
    gates = Gates(max_waiting=2)
    assert gates("embedded").concurrency == 1 and gates("fake").concurrency == 4
    assert gates("fake") is gates["fake"]


def test_rate_limiter_refills_over_time():
    limiter = RateLimiter(per_minute=2)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as e:
        limiter.check("a")
    assert e.value.retry_after > 0
    limiter.check("b")  # buckets are per key
