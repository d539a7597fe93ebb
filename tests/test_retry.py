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
