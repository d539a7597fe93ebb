"""Outages are waited out: a step is retried with backoff until it succeeds, and what is awaited is
reported while it lasts. Pure asyncio, no servers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.retry import Backoff, Waits, until_done

FAST = Backoff(first=0.001, cap=0.002)


def test_a_failing_step_is_retried_until_it_succeeds_and_the_wait_is_reported_meanwhile(caplog):
    waits = Waits()
    calls = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 4:
            assert "redis" in waits.describe() or len(calls) == 1
            raise ConnectionError("refused")
        return "written"

    with caplog.at_level(logging.INFO, logger="streams.retry"):
        assert asyncio.run(until_done(step, "redis", waits, backoff=FAST)) == "written"
    assert len(calls) == 4 and waits.now == {} and waits.total == 3
    text = caplog.text
    assert "waiting for redis: ConnectionError: refused (attempt 1" in text
    assert "redis is back after" in text and "(3 failed attempts)" in text


def test_fatal_errors_go_to_the_caller_and_end_the_wait():
    waits = Waits()

    class Fenced(Exception):
        pass

    calls = []

    async def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("down")
        raise Fenced("taken over")

    with pytest.raises(Fenced):
        asyncio.run(until_done(step, "kafka", waits, backoff=FAST, fatal=(Fenced,)))
    assert len(calls) == 2 and waits.now == {}


def test_cancellation_is_never_swallowed():
    async def main() -> None:
        async def step() -> None:
            raise ConnectionError("down")

        task = asyncio.create_task(until_done(step, "redis", Waits(), backoff=Backoff(first=10, cap=10)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_backoff_doubles_up_to_its_cap():
    b = Backoff(first=0.1, cap=1.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_backoff_ends_when_what_it_waits_for_is_back():
    """Two partitions' writes wait for Redis with a 10 s backoff: the heartbeat seeing Redis again (`wake`)
    sends both back at once, and a step's success wakes the others waiting for the same thing."""

    async def main() -> tuple[float, float]:
        waits = Waits()
        up = False

        async def write() -> str:
            if not up:
                raise ConnectionError("refused")
            return "written"

        slow = Backoff(first=10, cap=10)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = asyncio.create_task(until_done(write, "redis", waits, backoff=slow))
        second = asyncio.create_task(until_done(write, "redis", waits, backoff=slow))
        other = asyncio.create_task(until_done(write, "kafka", waits, backoff=slow))
        await asyncio.sleep(0.05)
        assert waits.now["redis"].attempts == 2 and not first.done()
        up = True
        waits.wake("redis")
        assert await first == await second == "written"
        woke = loop.time() - t0
        assert not other.done()  # another server's wait is not cut short
        waits.wake("kafka")
        await other
        return woke, loop.time() - t0

    woke, both = asyncio.run(main())
    assert woke < 1.0 and both < 1.0  # against the 10 s backoff


def test_a_backoff_that_times_out_or_is_cancelled_leaves_no_wake_event_behind():
    async def main() -> Waits:
        waits = Waits()
        await waits.pause("reading md.raw.itch[3] [0, 200)", 0.001)
        task = asyncio.create_task(waits.pause("reading md.raw.itch[3] [200, 400)", 10))
        await asyncio.sleep(0.01)
        assert waits._wake and waits._sleeping
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return waits

    waits = asyncio.run(main())
    assert waits._wake == {} and not waits._sleeping


def test_one_steps_success_wakes_the_others_waiting_for_the_same_thing():
    async def main() -> float:
        waits = Waits()
        calls: dict[str, int] = {"a": 0, "b": 0}

        def step(name: str, fails: int):
            async def run() -> str:
                calls[name] += 1
                if calls[name] <= fails:
                    raise ConnectionError("refused")
                return name

            return run

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        b = asyncio.create_task(until_done(step("b", 1), "redis", waits, backoff=Backoff(first=10, cap=10)))
        await asyncio.sleep(0.01)
        assert await until_done(step("a", 1), "redis", waits, backoff=Backoff(first=0.01, cap=0.01)) == "a"
        assert await b == "b"
        return loop.time() - t0

    assert asyncio.run(main()) < 1.0
