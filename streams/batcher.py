"""Micro-batching off the event loop: windows from every agent, one model call per batch.

Agents `await batcher.submit(windows)`; a single background task gathers requests until
`max_batch` windows or `max_wait` seconds, runs the forecaster in one worker thread (model
calls never block the event loop) and resolves each request with its share of the batch's
Forecasts: the predictions and the alerts' reasons. The reasons are computed in that thread
too (`Forecaster.forecast`): explaining an alert can cost the model a pass of its own (the
order-flow model's drivers: a forward and a backward pass), so the event loop only builds
records. The request queue is bounded, so a slow model pushes back on the agents (they stop
taking records) instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model.serving.forecaster import Forecaster, Forecasts
from orderbook.windows import Window

log = logging.getLogger(__name__)


@dataclass
class BatcherStats:
    batches: int = 0
    windows: int = 0
    model_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per batch, seconds, the last 1000


Request = tuple[Sequence[Window], asyncio.Future[Forecasts]]


class MicroBatcher:
    """`explain_above`: the alert threshold; windows scored at or above it get their reason."""

    def __init__(
        self,
        forecaster: Forecaster,
        *,
        explain_above: float,
        max_batch: int = 256,
        max_wait: float = 0.005,
        max_queue: int = 64,
    ) -> None:
        self.forecaster = forecaster
        self.explain_above = explain_above
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[Request] = asyncio.Queue(max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    async def warm_up(self, example: Window) -> None:
        """One model call before real traffic (allocations, compilation, CUDA graphs)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.forecaster.warm_up, example)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancel we just asked for
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, windows: Sequence[Window]) -> Forecasts:
        if not windows:
            return Forecasts(np.zeros(0, self.forecaster.dtype), [])
        if self._task is None:  # first use: run on the loop of whoever submits
            self._task = asyncio.create_task(self._run(), name="micro-batcher")
        fut: asyncio.Future[Forecasts] = asyncio.get_running_loop().create_future()
        await self._queue.put((windows, fut))  # blocks when full: backpressure on the agent
        return await fut

    async def _gather(self) -> list[Request]:
        first = await self._queue.get()
        requests = [first]
        size = len(first[0])
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                req = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                break
            requests.append(req)
            size += len(req[0])
        return requests

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            requests = await self._gather()
            batch = [w for windows, _ in requests for w in windows]
            t0 = time.perf_counter()
            try:
                forecasts = await loop.run_in_executor(
                    self._executor, self.forecaster.forecast, batch, self.explain_above
                )
            except Exception as err:  # the agents decide what a failed batch means; the batcher lives on
                log.exception("model call failed on a batch of %d windows", len(batch))
                for _, fut in requests:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            dt = time.perf_counter() - t0
            self.stats.batches += 1
            self.stats.windows += len(batch)
            self.stats.model_seconds += dt
            self.stats.latencies.append(dt)
            del self.stats.latencies[:-1000]
            i = 0
            for windows, fut in requests:
                if not fut.done():
                    fut.set_result(forecasts.part(i, i + len(windows)))
                i += len(windows)
