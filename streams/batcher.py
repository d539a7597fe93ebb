"""Micro-batching off the event loop: windows from every partition, one model call per batch.

Partitions `await batcher.submit(windows)`; a single background task gathers the waiting windows
until `max_batch`, or until a pass of the event loop brings no more (the partitions of a batch
submit in one pass: waiting on for a fixed `max_wait` only delayed them), at most `max_wait` seconds
after the first; it runs the forecaster in one worker thread (model calls never block the event
loop; a forecaster cheaper than the hop, `blocks = False`, runs on the loop) and resolves each
request with what became of its windows
(`Scored`): the windows scored, their predictions and the alerts' reasons. The reasons are computed
in that thread too (`Forecaster.forecast`): explaining an alert can cost the model a pass of its own
(the order-flow model's drivers: a forward and a backward pass), so the event loop only builds
records. So is each alert's window as Redis keeps it (streams/alert_window.py; `alert_windows`),
which reads the model's drivers again (the order-flow model keeps its last answer: no second pass).

When the model falls behind (`overload`, docs/design.md):
- `every`: every window is scored. At most `max_queue` requests wait: past that `submit` waits, so a
  slow model pushes back on the partitions (they stop taking records, the lag grows in Kafka) instead of
  letting memory grow.
- `latest`: at most one window per book (venue, symbol) waits for the model. A newer window of a
  book takes the place of the one waiting, which is skipped: no forecast, counted in
  `stats.skipped`. It takes that window's place in the queue, not the back of it, so a busy book is
  not overtaken forever by quiet ones. A window then waits for the call in flight and its own, each
  at most one window per book: latency stays bounded whatever the offered rate, and a book's
  forecasts stay in order. Windows that wait together are coalesced even when the model is idle:
  a partition submits its next request only once the previous one is resolved, so its own windows
  are the only ones that could ever supersede each other.

Changing the model (`swap`, a running worker's `megatrading model use`): the batch loop reads its
forecaster once per batch, so a batch is scored by one model whole, a batch in flight finishes with
the model it started with, and the next one is the new model's. Each scored window carries the id of
the model that scored it (`Scored.models`): a request whose windows span two batches (more than
`max_batch`, or taken around a swap) may hold both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model.serving.forecaster import Forecaster, Forecasts
from orderbook.windows import Window
from streams import alert_window

log = logging.getLogger(__name__)

OVERLOAD_POLICIES = ("every", "latest")


@dataclass
class BatcherStats:
    batches: int = 0
    windows: int = 0  # scored
    skipped: int = 0  # superseded by a newer window of their book (`latest`): never scored
    model_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per batch, seconds, the last 1000


@dataclass(frozen=True)
class Scored:
    """What became of a request's windows: those at `index` (positions in the request, ascending)
    were scored, `forecasts` row for row; the others were skipped (superseded under `latest`) and
    have no forecast. `models`: the id of the model that scored each row; `calibrated`: each row's
    calibrated score (`Forecaster.calibrated_score` of the model that scored it), None where a row's
    model has none; `alert_windows`: each row's window as JSON where it is an alert
    (streams/alert_window.py), else None (empty: none were built)."""

    requested: Sequence[Window]
    index: np.ndarray  # int positions into `requested`
    forecasts: Forecasts
    models: Sequence[str] = ()
    calibrated: np.ndarray | None = None
    alert_windows: Sequence[str | None] = ()

    def runs(self) -> list[tuple[str, int, int]]:
        """(model id, start, stop) of each run of consecutive rows one model scored: one run except
        around a swap."""
        out: list[tuple[str, int, int]] = []
        start = 0
        for i in range(1, len(self.models) + 1):
            if i == len(self.models) or self.models[i] != self.models[start]:
                out.append((self.models[start], start, i))
                start = i
        return out

    @property
    def windows(self) -> list[Window]:
        """The windows scored, in the request's order: `forecasts` row for row."""
        return [self.requested[i] for i in self.index.tolist()]

    @property
    def skipped(self) -> int:
        return len(self.requested) - len(self.index)


class _Request:
    """A submitted request until it resolves."""

    __slots__ = ("alert_windows", "calibrated", "future", "models", "open", "predictions", "reasons", "scored",
                 "waiting", "windows")  # fmt: skip

    def __init__(self, windows: Sequence[Window], future: asyncio.Future[Scored]) -> None:
        n = len(windows)
        self.windows = windows
        self.future = future
        self.scored = np.zeros(n, bool)
        self.predictions: np.ndarray | None = None  # allocated with the first batch's dtype
        self.reasons = [""] * n
        self.alert_windows: list[str | None] = [None] * n
        self.models = [""] * n
        self.calibrated: np.ndarray | None = np.full(n, np.nan)  # None once a model without one scored a row
        self.waiting = n  # windows neither taken by the model nor skipped: it holds its queue place until 0
        self.open = n  # windows neither scored nor skipped: it resolves at 0


class _Slot:
    """A place in the queue: one waiting window (`latest` may hand it to a newer window of its book)."""

    __slots__ = ("index", "request")

    def __init__(self, request: _Request, index: int) -> None:
        self.request, self.index = request, index

    @property
    def window(self) -> Window:
        return self.request.windows[self.index]


class MicroBatcher:
    """`explain_above`: the alert threshold; windows scored at or above it get their reason.
    `overload`: `every` or `latest` (the module's docstring). `alert_windows`: build each alert's window
    for Redis (streams/alert_window.py)."""

    def __init__(
        self,
        forecaster: Forecaster,
        *,
        explain_above: float,
        max_batch: int = 256,
        max_wait: float = 0.005,
        max_queue: int = 64,
        overload: str = "every",
        alert_windows: bool = True,
    ) -> None:
        if overload not in OVERLOAD_POLICIES:
            raise ValueError(f"overload {overload!r}: one of {', '.join(OVERLOAD_POLICIES)}")
        self.forecaster = forecaster
        self.explain_above = explain_above
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.overload = overload
        self.alert_windows = alert_windows
        self._failed_windows = 0  # alert windows that could not be built (logged once)
        self._queue: deque[_Slot] = deque()
        self._book_slot: dict[tuple[str, str], _Slot] = {}  # `latest`: each book's waiting window
        self._room = asyncio.Semaphore(max_queue)  # requests with windows waiting
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None
        self.example: Window | None = None  # the newest window scored: a new model's trial before a swap
        # warmed up on the first batch's first window before scoring it (Forecaster.warm_up: on a GPU every
        # CUDA-graph bucket, which live batches would otherwise wait for); a swapped-in model was warmed
        # by its trial (streams/swap.py)
        self._unwarmed: Forecaster | None = forecaster
        self.stats = BatcherStats()

    @property
    def waiting(self) -> int:
        """Windows waiting for the model (not those in the call in flight)."""
        return len(self._queue)

    def swap(self, forecaster: Forecaster) -> Forecaster:
        """Serve `forecaster` from the next batch on; returns the one it replaces. Called on the event
        loop, which the batch loop reads its forecaster on once per batch: the batch in flight, if
        any, finishes with the old one, and no batch is scored by both."""
        old, self.forecaster = self.forecaster, forecaster
        return old

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancel we just asked for
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, windows: Sequence[Window]) -> Scored:
        if not windows:
            return Scored(windows, np.zeros(0, np.intp), Forecasts(np.zeros(0, self.forecaster.dtype), []))
        if self._task is None:  # first use: run on the loop of whoever submits
            self._task = asyncio.create_task(self._run(), name="micro-batcher")
        fut: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        await self._room.acquire()  # waits when max_queue requests wait: backpressure on the partition
        req = _Request(windows, fut)
        for i, w in enumerate(windows):
            book = (w.venue, w.symbol)
            slot = self._book_slot.get(book) if self.overload == "latest" else None
            if slot is None:
                slot = _Slot(req, i)
                self._queue.append(slot)
                if self.overload == "latest":
                    self._book_slot[book] = slot
            else:
                self._skip(slot.request, slot.index)
                slot.request, slot.index = req, i
        self._arrived.set()
        return await fut

    def _skip(self, req: _Request, i: int) -> None:
        """Window i of `req` will not be scored: a newer window of its book took its place."""
        self.stats.skipped += 1
        self._leave(req, 1)
        req.open -= 1
        if req.open == 0:
            self._resolve(req)

    def _leave(self, req: _Request, n: int) -> None:
        """n of the request's windows stopped waiting (taken by the model or skipped)."""
        req.waiting -= n
        if req.waiting == 0:
            self._room.release()

    def _resolve(self, req: _Request) -> None:
        if req.future.done():  # failed, or its caller went away
            return
        index = np.flatnonzero(req.scored)
        if req.predictions is None:
            predictions = np.zeros(0, self.forecaster.dtype)
        else:
            predictions = req.predictions[index]
        forecasts = Forecasts(predictions, [req.reasons[i] for i in index])
        calibrated = None if req.calibrated is None else req.calibrated[index]
        req.future.set_result(Scored(req.windows, index, forecasts, [req.models[i] for i in index], calibrated,
                                     [req.alert_windows[i] for i in index]))  # fmt: skip

    async def _gather(self) -> list[_Slot]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.monotonic() + self.max_wait
        while len(self._queue) < self.max_batch and time.monotonic() < deadline:
            n = len(self._queue)
            await asyncio.sleep(0)  # one pass of the event loop: submitters that are running submit
            if len(self._queue) == n:
                break  # nobody else was about to: waiting longer only delays these
        taken: list[_Slot] = []
        leaving: dict[_Request, int] = {}
        while self._queue and len(taken) < self.max_batch:
            slot = self._queue.popleft()
            if self._book_slot.get(book := (slot.window.venue, slot.window.symbol)) is slot:
                del self._book_slot[book]  # taken: the book's next window waits anew
            leaving[slot.request] = leaving.get(slot.request, 0) + 1
            if not slot.request.future.done():  # a failed or abandoned request's windows are not scored
                taken.append(slot)
        for req, n in leaving.items():
            self._leave(req, n)
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            slots = await self._gather()
            if not slots:
                continue
            batch = [s.window for s in slots]
            model = self.forecaster  # the whole batch's: a swap while it is scored takes the next one
            if model is self._unwarmed:
                self._unwarmed = None
                try:
                    if model.blocks:
                        await loop.run_in_executor(self._executor, model.warm_up, batch[0])
                    else:
                        model.warm_up(batch[0])
                except Exception:  # served without it: slower first batches, not wrong ones
                    log.exception("model warm-up failed; its first batches of each size will be slower")
            t0 = time.perf_counter()
            try:
                if model.blocks:
                    forecasts, windows = await loop.run_in_executor(self._executor, self._score, model, batch)
                else:
                    forecasts, windows = self._score(model, batch)
            except Exception as err:  # the partitions decide what a failed batch means; the batcher lives on
                log.exception("model call failed on a batch of %d windows", len(batch))
                for req in dict.fromkeys(s.request for s in slots):
                    if not req.future.done():
                        req.future.set_exception(err)
                continue
            dt = time.perf_counter() - t0
            self.stats.batches += 1
            self.stats.windows += len(batch)
            self.stats.model_seconds += dt
            self.stats.latencies.append(dt)
            del self.stats.latencies[:-1000]
            self.example = batch[-1]
            self._deliver(slots, forecasts, model, windows)

    def _score(self, model: Forecaster, batch: list[Window]) -> tuple[Forecasts, list[str | None]]:
        """The batch's forecasts and each alert's window as JSON (None for the others), where the model
        runs: the model thread, or the loop for a model cheaper than the hop (`blocks = False`), whose
        drivers are then not asked for (none of ours has any)."""
        forecasts = model.forecast(batch, self.explain_above)
        windows: list[str | None] = [None] * len(batch)
        if not self.alert_windows:
            return forecasts, windows
        for i in np.flatnonzero(forecasts.predictions["anomaly_score"] >= self.explain_above).tolist():
            try:
                surprising, drivers = alert_window.model_drivers(model, batch[i]) if model.blocks else (None, [])
                windows[i] = alert_window.payload(batch[i], forecasts.reasons[i], model.model_id, surprising, drivers)
            except Exception:  # the alert is written all the same, without its window: never a failed batch
                self._failed_windows += 1
                if self._failed_windows == 1:
                    log.exception("an alert's window could not be built (the alert goes out without it; "
                                  "further failures are counted, not logged)")  # fmt: skip
        return forecasts, windows

    def _deliver(
        self, slots: list[_Slot], forecasts: Forecasts, model: Forecaster, windows: Sequence[str | None]
    ) -> None:
        """A batch's forecasts, scored by `model`, to their requests; each request whose last window
        this was resolves."""
        score = model.calibrated_score
        calibrated = forecasts.predictions[score] if score is not None else None
        rows: dict[_Request, tuple[list[int], list[int]]] = {}
        for j, slot in enumerate(slots):
            index, at = rows.setdefault(slot.request, ([], []))
            index.append(slot.index)
            at.append(j)
        for req, (index, at) in rows.items():
            batch = forecasts.predictions
            if req.predictions is None:
                req.predictions = np.empty(len(req.windows), batch.dtype)
            elif req.predictions.dtype != batch.dtype:  # a swap to a model of other fields mid-request
                req.predictions = _narrow(req.predictions, _common(req.predictions.dtype, batch.dtype))
                batch = _narrow(batch, req.predictions.dtype)
            req.predictions[index] = batch[at]
            for i, j in zip(index, at, strict=True):
                req.reasons[i] = forecasts.reasons[j]
                req.alert_windows[i] = windows[j]
                req.models[i] = model.model_id
            if calibrated is None:
                req.calibrated = None
            elif req.calibrated is not None:
                req.calibrated[index] = calibrated[at]
            req.scored[index] = True
            req.open -= len(index)
            if req.open == 0:
                self._resolve(req)


def _common(a: np.dtype, b: np.dtype) -> np.dtype:
    """The fields of `a` that `b` has with the same type (PREDICTION_FIELDS at least: every model's)."""
    names = b.names or ()
    return np.dtype([(n, a[n]) for n in a.names or () if n in names and b[n] == a[n]])


def _narrow(predictions: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`predictions` restricted to `dtype`'s fields (a copy)."""
    out = np.empty(len(predictions), dtype)
    for name in dtype.names or ():
        out[name] = predictions[name]
    return out
