"""The worker's inbox (streams/app.py): one lane per partition, so that a partition's batch never
waits behind another partition's model or Redis round trip; order kept within a partition, fetches
merged up to `take_max`, the venue's buffered records bounded (backpressure). And the state threads
(snapshot encoding, restores) run at background priority."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from model.serving.baseline import BaselineForecaster
from streams.app import BACKGROUND_NICE, Inbox, create_app
from streams.config import Settings
from streams.infra import free_port


@dataclass
class Rec:
    offset: int


@dataclass
class TP:
    partition: int


@dataclass
class FakeWorker:
    """What an Inbox uses of a Worker: its settings and `handle`, here recording each call and
    blocking partitions named in `held` until released."""

    settings: Settings
    handled: list[tuple[int, list[int]]] = field(default_factory=list)
    held: dict[int, asyncio.Event] = field(default_factory=dict)

    async def handle(self, venue: str, partition: int, records: list[Any]) -> None:
        if partition in self.held:
            await self.held[partition].wait()
        self.handled.append((partition, [r.offset for r in records]))


def recs(lo: int, hi: int) -> list[Rec]:
    return [Rec(o) for o in range(lo, hi)]


async def until(cond: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.001)


def test_a_partition_held_up_does_not_hold_up_the_others():
    async def go() -> None:
        worker = FakeWorker(Settings(take_max=100))
        worker.held[0] = asyncio.Event()
        inbox = Inbox(worker, "binance")  # type: ignore[arg-type]
        run = asyncio.create_task(inbox.run())
        await inbox.put(TP(0), recs(0, 10))
        await inbox.put(TP(1), recs(0, 10))
        await inbox.put(TP(1), recs(10, 20))
        await until(lambda: sum(p == 1 for p, _ in worker.handled) == 1)
        assert worker.handled == [(1, list(range(20)))]  # partition 1 went on, its two fetches merged
        worker.held[0].set()
        await until(lambda: len(worker.handled) == 2)
        assert worker.handled[1] == (0, list(range(10)))
        run.cancel()

    asyncio.run(go())


def test_a_lane_keeps_its_partitions_order_and_merges_up_to_take_max():
    async def go() -> None:
        worker = FakeWorker(Settings(take_max=25))
        worker.held[3] = asyncio.Event()
        inbox = Inbox(worker, "binance")  # type: ignore[arg-type]
        run = asyncio.create_task(inbox.run())
        for lo in range(0, 100, 10):
            await inbox.put(TP(3), recs(lo, lo + 10))
        worker.held[3].set()
        await until(lambda: sum(len(o) for _, o in worker.handled) == 100)
        offsets = [o for _, batch in worker.handled for o in batch]
        assert offsets == list(range(100))
        # the first fetch was taken alone (the lane was idle); later ones merged while it waited
        assert all(len(batch) <= 25 + 9 for _, batch in worker.handled)
        assert len(worker.handled) < 10
        run.cancel()

    asyncio.run(go())


def test_the_fetch_loop_waits_while_the_venue_holds_its_limit_of_records():
    async def go() -> None:
        worker = FakeWorker(Settings(take_max=10, buffer_records=30))
        worker.held[0] = asyncio.Event()
        inbox = Inbox(worker, "binance")  # type: ignore[arg-type]
        run = asyncio.create_task(inbox.run())
        await inbox.put(TP(0), recs(0, 10))  # taken by the lane, which then waits in handle
        await until(lambda: inbox.buffered == 0)
        for lo in range(10, 40, 10):
            await inbox.put(TP(0), recs(lo, lo + 10))
        assert inbox.buffered == 30
        blocked = asyncio.create_task(inbox.put(TP(1), recs(0, 10)))  # another partition: the same limit
        await asyncio.sleep(0.05)
        assert not blocked.done()
        worker.held[0].set()
        await asyncio.wait_for(blocked, 2)
        await until(lambda: sum(len(o) for _, o in worker.handled) == 50)
        run.cancel()

    asyncio.run(go())


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priority on this platform")
def test_the_state_threads_run_at_background_priority_and_the_loop_does_not():
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                        venues=("binance",), app_id="nice-test")  # fmt: skip

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice()
    _, worker = create_app(settings, BaselineForecaster())
    try:
        assert worker.services.state_io.submit(nice).result() == BACKGROUND_NICE
        assert nice() == before
    finally:
        worker.services.state_io.shutdown()
