"""One source partition a worker owns: its pipeline, its transactional producer, its snapshots.

A batch of a partition's records goes: pipeline (decode, book, windows) -> model -> Redis ->
one Kafka transaction (forecasts on `md.forecasts`, rejects on `md.dlq`, now and then a state
snapshot on `md.state`, and the offset commit). Each step that meets an outage is retried
until it succeeds (streams/retry.py), and the next batch waits: nothing is acknowledged to
Kafka before its forecasts are in Redis, whatever Faust does (the raw topics are consumed with
Faust's acks off: only these transactions commit offsets).

The transaction is not on the forecasts' path: once a batch's forecasts are in Redis the
partition takes its next batch, and a task of its own commits the batches that are done, in
order, all those waiting in one transaction (a group commit), at most one transaction every
`commit_interval` seconds. A transaction on the embedded broker takes 10-100 ms, several round
trips and the broker's markers: on the forecasts' path it had been most of a record's produce ->
Redis latency, and one per batch kept the broker busier than the worker (bench/pipeline_bench.py).
At most MAX_UNSETTLED batches wait for their commit; beyond that the partition waits for them
(backpressure, as in an outage). A commit that is fenced fails every batch behind it: the state
is dropped and the partition restored from the offset committed last, and the records since are
read back as a gap, forecasts and all (Redis writes are idempotent). A restore waits for the
commits in flight first: it starts from their offset.

The pipeline's position is the invariant: every record below it has been processed and its
output committed, except inside the batch being handled and the batches waiting for their
commit. So a record below it is skipped (it was published), a record above it means the stream
skipped some (after a restore the consumer may be ahead of the state): those are read from Kafka
and processed, with their forecasts, first. When the transaction is fenced (another worker took
the partition over), the state may be ahead of what was committed: it is dropped and, if the
partition is still ours, restored from the committed offset and the batch done again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

import msgpack

from model.serving.drift import DriftTracker
from model.serving.forecaster import Forecaster, forecast_records
from orderbook.native.convert import native_windows
from orderbook.windows import Window
from streams import failpoints, recovery, snapshots
from streams.batcher import MicroBatcher
from streams.config import Settings
from streams.membership import MembershipWatch
from streams.metrics import WorkerMetrics
from streams.pipeline import NativePanic, Record, Rejected, VenuePipeline
from streams.retry import Backoff, Waits, until_done
from streams.sink import RedisSink, book_json
from streams.txn import Fenced, Out, PartitionCommitter

log = logging.getLogger(__name__)

T = TypeVar("T")
News = tuple[int, list[str], str]
NEWS_KEPT = 10_000
MAX_UNSETTLED = 64  # batches written to Redis whose transaction has not committed yet
CLOSE_WAIT_S = 10.0  # what a worker stopping gives each partition's batch and commits in flight
NATIVE_PANICS = 2  # native panics on one batch in a row before the batch is redone on the reference path
BATCH_DELAY_S = 3.0  # failpoint `batch_delay`: a batch still in flight when the worker is told to stop


def dlq_headers(topic: str, rej: Rejected) -> list[tuple[str, bytes]]:
    """The md.dlq headers of a reject (docs/design.md); `frame_index` only for one message of a frame."""
    headers = [
        ("source_topic", topic.encode()),
        ("partition", str(rej.partition).encode()),
        ("offset", str(rej.offset).encode()),
        ("reason", rej.reason.encode()),
        ("error", rej.error.encode(errors="replace")[:1000]),
    ]
    if rej.index is not None:
        headers.append(("frame_index", str(rej.index).encode()))
    return headers


@dataclass
class Services:
    """What every partition of a worker shares."""

    settings: Settings
    forecaster: Forecaster
    batcher: MicroBatcher
    sink: RedisSink
    waits: Waits
    io: Executor  # Redis's heartbeat and meta writes
    state_io: Executor  # restores and snapshot encoding: long, off the event loop
    news_log: deque[News]  # the headlines this process has seen (the newest NEWS_KEPT): for partitions restored later
    # set once md.state exists as a compacted topic: no snapshot may go to one auto-created as a deleting one
    state_topic_ready: asyncio.Event = field(default_factory=asyncio.Event)
    drift: DriftTracker | None = None  # drift per book, fed the scored windows (None: not tracked)
    metrics: WorkerMetrics | None = None  # Prometheus counters (streams/metrics.py; None: not counted)
    membership: MembershipWatch | None = None  # told of fencings on partitions still ours (streams/membership.py)


@dataclass
class PartitionStats:
    restores: int = 0
    restore_seconds: float = 0.0
    replayed: int = 0
    gaps: int = 0
    gap_records: int = 0
    skipped: int = 0  # redelivered records below the position
    snapshots: int = 0
    snapshot_bytes: int = 0
    forecasts: int = 0
    rejects: int = 0
    fenced: int = 0
    batches: int = 0
    transactions: int = 0  # each commits one or more batches
    # seconds spent, summed over batches: a batch's way to Redis, then its transaction (off that way)
    pipeline_s: float = 0.0
    model_s: float = 0.0
    redis_s: float = 0.0
    commit_s: float = 0.0


@dataclass
class Unsettled:
    """A batch whose forecasts are in Redis, waiting for its transaction."""

    outs: list[Out]
    start: int  # the committed offset it follows
    end: int  # the offset its commit records
    snapshot: asyncio.Future[tuple[bytes, bytes] | None] | None  # being encoded in a state thread


class Partition:
    def __init__(self, services: Services, topic: str, partition: int, venue: str) -> None:
        self.s = services
        self.topic, self.partition, self.venue = topic, partition, venue
        settings = services.settings
        self.committer = PartitionCommitter(settings.bootstrap, settings.app_id, topic, partition, services.waits,
                                            max_request_size=settings.max_produce_bytes)  # fmt: skip
        self.pipeline: VenuePipeline | None = None
        # the path its pipeline takes: None the venue's (streams.pipeline.native_choice); False from the native
        # path's NATIVE_PANICS-th panic in a row on one batch until that batch is done (`handle`)
        self.native: bool | None = None
        self._panics = 0  # native panics in a row
        self.resyncs_base = 0  # the pipeline's resyncs when restored: earlier ones are not this worker's
        self.pointer: snapshots.Pointer | None = None
        self.assigned = True
        self.lock = asyncio.Lock()
        self.pending_news: deque[News] = deque(maxlen=NEWS_KEPT)
        self.since_snapshot = 0
        self.snapshot_clock = time.monotonic()
        self.stats = PartitionStats()
        self._warm: asyncio.Task[None] | None = None
        self._unsettled: deque[Unsettled] = deque()
        self._settling: asyncio.Task[None] | None = None
        self._fenced: Fenced | None = None  # what a commit of ours met; the next batch raises it
        self._last_commit = 0.0  # time.monotonic() when the last transaction began
        self._reader: recovery.RangeReader | None = None  # offsets the consumer did not deliver (`_undelivered`)

    @property
    def name(self) -> str:
        return f"{self.topic}[{self.partition}]"

    # ---- ownership

    def start(self) -> None:
        """Restore in the background as soon as the partition is assigned, beside the others."""
        self._warm = asyncio.create_task(self._restore_if_needed(), name=f"restore {self.name}")

    async def _restore_if_needed(self) -> None:
        async with self.lock:
            if self.assigned and self.pipeline is None:
                await self._restore()

    async def release(self) -> None:
        """The partition went to another worker: finish what is in flight, then forget it."""
        self.assigned = False
        if self._warm is not None and not self._warm.done():
            self._warm.cancel()
        async with self.lock:
            await self._settled()  # the new owner waits for our transactions or fences them
            self.pipeline = None
            self._close_reader()
            await self.committer.stop()

    async def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """The worker stops: the batch in flight and the commits queued get `timeout` seconds together
        (what does not land is done again by the next owner), then the producer goes. The batch first,
        under the lock: it queues its commit at its end, and a producer stopped before then would leave
        its forecasts uncommitted for the next owner to make again."""
        self.assigned = False  # `handle` starts no batch after the one in flight
        try:
            async with asyncio.timeout(timeout):
                async with self.lock:
                    await self._settled()
        except TimeoutError:
            log.warning("%s: a batch or %d batches' commits still in flight at shutdown: the next owner does them "
                        "again", self.name, len(self._unsettled))  # fmt: skip
        self._close_reader()
        await self.committer.stop()  # an open transaction is aborted by the next owner's fencing

    async def _restore(self) -> None:
        s = self.s.settings
        await self.s.state_topic_ready.wait()
        await self._settled()  # the state is restored from the offset the commits in flight leave
        self._fenced = None
        await self.committer.start()  # first: fences the previous owner, settles its transaction
        restore = partial(recovery.restore, s.bootstrap, s.app_id, self.topic, self.partition, self.venue, s.window,
                          s.max_record_bytes, native=self.native)  # fmt: skip
        r = await until_done(lambda: self._in_thread(restore), f"restore of {self.name}", self.s.waits)
        self.pipeline, self.pointer = r.pipeline, r.pointer
        self.resyncs_base = r.pipeline.resyncs() if r.pipeline.resyncing else 0
        if r.pointer is not None and r.snapshot_offset is None:  # the named snapshot was unusable: replace it soon
            self.since_snapshot = s.snapshot_every
        else:
            self.since_snapshot = r.replayed
        self.snapshot_clock = time.monotonic()
        for ts, symbols, headline in self.s.news_log:  # idempotent: the snapshot may hold them already
            r.pipeline.add_news(ts, symbols, headline)
        self.pending_news.clear()
        self.stats.restores += 1
        self.stats.restore_seconds += r.seconds
        self.stats.replayed += r.replayed
        log.info(r.describe(self.topic, self.partition))

    def _where(self, **fields: object) -> dict[str, object]:
        """`extra=` of a log record: which partition (venue, topic, partition) and what happened, as fields a
        log collector indexes (streams/logformat.py writes them under --log-format json)."""
        return {"venue": self.venue, "topic": self.topic, "partition": self.partition, **fields}

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.s.state_io, fn)

    # ---- records

    def add_news(self, item: News) -> None:
        self.pending_news.append(item)  # a bounded deque: a partition without traffic keeps the newest

    async def handle(self, records: Sequence[Record]) -> None:
        """Process a batch of this partition's records to committed output; retried through
        outages, redone after a fencing while the partition stays ours."""
        async with self.lock:
            while self.assigned:
                try:
                    if self._fenced is not None:
                        raise self._fenced
                    if self.pipeline is None:
                        await self._restore()
                    await self._batch(self.pipeline, records)  # type: ignore[arg-type]
                    self._panics = 0
                    if self.native is False:
                        await self._back_to_native(records)
                    break
                except Fenced as err:
                    self.stats.fenced += 1
                    if self.s.membership is not None and self.assigned:
                        self.s.membership.fenced(time.monotonic())
                    self.pipeline = None
                    self._fenced = None
                    log.warning(
                        "%s: another worker holds this partition's transactions now (%s): its state "
                        "is dropped and, while the group still gives it to us, restored",
                        self.name,
                        err,
                    )
                    if self.assigned:  # let the group's revocation arrive first, if one is on its way
                        await asyncio.sleep(1.0)
                except Exception as err:  # a bug, not an outage: the state may be ahead of the output
                    self.pipeline = None
                    w = self.s.waits.failed(f"a fix for {self.name}", err)
                    log.exception("%s: the batch failed (attempt %d); the state is dropped and the batch redone "
                                  "from the committed offset", self.name, w.attempts,
                                  extra=self._where(offset=records[0].offset if records else None,
                                                    action="batch_redone", attempt=w.attempts))  # fmt: skip
                    if isinstance(err, NativePanic) and self.native is not False:
                        # compiled code without I/O: a pause changes nothing. Redone at once, from the snapshot,
                        # and after NATIVE_PANICS panics on the reference path, which has no native code to panic
                        self._on_native_panic(records)
                        continue
                    await asyncio.sleep(Backoff(first=1.0, cap=30.0).delay(w.attempts))
            self.s.waits.done(f"a fix for {self.name}")

    def _on_native_panic(self, records: Sequence[Record]) -> None:
        """The native path panicked on this batch. Once is redone as any failure is; NATIVE_PANICS times in a
        row is a record that meets a bug of the compiled code, which would panic on every redo and stall the
        partition for as long as the record is kept: the batch is redone on the reference path, which gives
        the same output, slower, and dead-letters what it cannot read. The restore reads the native snapshot
        as the reference's objects (orderbook/native/convert.py) and replays only the records after it, as
        any restore does; once the batch is done the state goes back to the native path (`_back_to_native`)."""
        self._panics += 1
        if self._panics < NATIVE_PANICS:
            return
        self.native = False
        if self.s.metrics is not None:
            self.s.metrics.native_fallbacks.labels(self.venue).inc()
        first, last = _span(records)
        log.error("%s: the native path panicked on the same batch %d times in a row: the batch is redone on the "
                  "reference path (the same output, slower; restored from its native snapshot). A bug of "
                  "orderbook/native: report the records at offsets %s-%s", self.name, self._panics, first, last,
                  extra=self._where(offset=first, action="reference_path"))  # fmt: skip

    async def _back_to_native(self, records: Sequence[Record]) -> None:
        """The batch the native path panicked on is done on the reference path: its state, converted
        (orderbook/native/convert.py: it continues exactly), goes on on the native path, so one bad record
        costs the reference path's speed for one batch, not for as long as this worker owns the partition.
        A state that does not convert (a bug of the conversion) stays on the reference path."""
        pipe = self.pipeline
        if pipe is None or pipe.native:  # not the reference pipeline the batch ran on: nothing to convert
            return
        try:
            core = await self._in_thread(lambda: native_windows(pipe.core))
        except Exception as err:  # the batch is done whatever this does: a bug here only costs speed
            log.error("%s: the reference state does not convert to the native path (%s): this partition stays on "
                      "the reference path", self.name, err, extra=self._where(action="reference_path"))  # fmt: skip
            return
        pipe.core, pipe.native = core, True
        self.native = None
        log.warning("%s: the batch the native path panicked on (offsets %s-%s) is done on the reference path: back "
                    "on the native path", self.name, *_span(records),
                    extra=self._where(action="native_path"))  # fmt: skip

    async def _batch(self, pipe: VenuePipeline, records: Sequence[Record]) -> None:
        p = self.partition
        start = pipe.position.get(p, 0)
        messages_before = pipe.stats.records
        for item in self.pending_news:
            pipe.add_news(*item)
        self.pending_news.clear()
        windows: list[Window] = []
        rejects: list[Rejected] = []
        run: list[Record] = []  # consecutive records at the position: one process_batch call (one native call)
        at = start  # the position once `run` is processed

        t0 = time.perf_counter()

        def flush() -> None:
            ws, rs = pipe.process_batch(run)
            windows.extend(ws)
            rejects.extend(rs)
            run.clear()

        undelivered = await self._undelivered(start, records)
        for m in records:
            if m.offset < at:
                self.stats.skipped += 1
                continue
            if m.offset > at:
                flush()  # the records before the gap first, in order
                # by bisection: a transactional feed leaves a gap (a commit marker) every few records
                lo, hi = (bisect_left(undelivered, o, key=attrgetter("offset")) for o in (at, m.offset))
                self._fill_gap(pipe, at, m.offset, undelivered[lo:hi], windows, rejects)
            run.append(m)
            at = m.offset + 1
        flush()
        end = pipe.position.get(p, 0)
        self.stats.pipeline_s += time.perf_counter() - t0
        if end == start:
            return
        outs = [Out(self.s.settings.dlq_topic, r.key, r.value, dlq_headers(self.topic, r)) for r in rejects]
        if rejects:
            log.warning("%s: %d messages dead-lettered (%s)", self.name, len(rejects),
                        ", ".join(sorted({r.reason for r in rejects})),
                        extra=self._where(offset=rejects[0].offset, last_offset=rejects[-1].offset,
                                          action="dead_lettered", count=len(rejects),
                                          reasons=dict(Counter(r.reason for r in rejects)),
                                          symbols=sorted({r.key.decode(errors="replace") for r in rejects
                                                          if r.key})[:20]))  # fmt: skip
        forecasts = await self._forecasts(windows, self._tops(pipe, windows))
        outs += [Out(self.s.settings.forecasts_topic, str(f["symbol"]).encode(), msgpack.packb(f)) for f in forecasts]
        self.since_snapshot += end - start
        snapshot = None
        if self._snapshot_due():  # counted from here, written or not: a fencing drops the state anyway
            snapshot = await self._snapshot(pipe)
            self.since_snapshot, self.snapshot_clock = 0, time.monotonic()
        self.stats.batches += 1
        self.stats.forecasts += len(forecasts)
        self.stats.rejects += len(rejects)
        if self.s.metrics is not None:
            self.s.metrics.batch(self.venue, end - start, pipe.stats.records - messages_before, len(forecasts),
                                 (r.reason for r in rejects), time.perf_counter() - t0)  # fmt: skip
        if failpoints.hit("batch_delay"):  # tests/test_faults.py: a stop that lands inside a batch
            log.warning("%s: failpoint batch_delay: the batch of offsets [%d, %d) waits %.0f s before its commit",
                        self.name, start, end, BATCH_DELAY_S)  # fmt: skip
            await asyncio.sleep(BATCH_DELAY_S)
        await self._settle(Unsettled(outs, start, end, snapshot))

    # ---- commits, off the forecasts' path

    async def recommit(self, group_offset: int) -> None:
        """The group's committed offset reads back as `group_offset`, below the position this partition
        committed and sits at: commit the position again, in a transaction of the offset commit alone
        (streams/stall.py says when that happens). Nothing is done while a commit of ours is queued or
        in flight (its own commit settles it) or the partition is restoring or gone."""
        async with self.lock:
            pipe = self.pipeline
            position = pipe.position.get(self.partition, 0) if pipe is not None else None
            if (position is None or position <= group_offset or not self.assigned or self._unsettled
                    or self._fenced is not None):  # fmt: skip
                return
            log.warning("%s: the group's committed offset reads back as %d, below the %d this worker committed: "
                        "that transaction's offset commit did not materialize on the broker; committing %d again",
                        self.name, group_offset, position, position,
                        extra=self._where(offset=group_offset, action="recommit"))  # fmt: skip
            try:
                self.pointer = await self.committer.commit([], group_offset, position, self.pointer)
            except Fenced as err:
                self._fenced = Fenced(str(err))  # another worker owns it: the next batch restores, as after any fencing
                return
            self.stats.transactions += 1

    async def _settle(self, batch: Unsettled) -> None:
        """Queue a batch for its transaction; wait while MAX_UNSETTLED are queued already."""
        if len(self._unsettled) >= MAX_UNSETTLED:
            await self._settled()
            if self._fenced is not None:
                raise self._fenced
        self._unsettled.append(batch)
        if self._settling is None or self._settling.done():
            self._settling = asyncio.create_task(self._commit_unsettled(), name=f"commits of {self.name}")

    async def _settled(self) -> None:
        """Until every queued batch is committed, or a commit was fenced."""
        while self._settling is not None and not self._settling.done():
            await asyncio.shield(self._settling)  # a waiter cancelled leaves the commits running

    async def _commit_unsettled(self) -> None:
        """Commit the queued batches, all those waiting in one transaction, until none waits. A
        fencing is kept for the next batch to raise; the batches behind it are dropped with the state."""
        while self._unsettled:
            await asyncio.sleep(self._last_commit + self.s.settings.commit_interval - time.monotonic())
            self._last_commit = time.monotonic()
            batches = list(self._unsettled)
            snapshot = None  # the newest of theirs that could be encoded
            for b in batches:
                if b.snapshot is not None:
                    snapshot = await b.snapshot or snapshot
            outs = [o for b in batches for o in b.outs]
            t0 = time.perf_counter()
            try:
                self.pointer = await self.committer.commit(outs, batches[0].start, batches[-1].end, self.pointer,
                                                           snapshot)  # fmt: skip
            except Fenced as err:
                self._fenced = Fenced(str(err))  # kept without its traceback: that would keep the commit's frames
                self._unsettled.clear()
                return
            for _ in batches:
                self._unsettled.popleft()
            self.stats.transactions += 1
            self.stats.commit_s += time.perf_counter() - t0

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()  # a socket's close: no round trip
            self._reader = None

    async def _undelivered(self, start: int, records: Sequence[Record]) -> list[Record]:
        """The records of the offsets between `start` and the batch's records that the consumer did not
        deliver, read in one go. Most such offsets hold no record: a transactional feed handler's commit
        markers and aborted records. The others are records the consumer resumed past (`_fill_gap`)."""
        lo: int | None = None
        hi = at = start
        for m in records:
            if m.offset > at:
                lo = at if lo is None else lo
                hi = m.offset
            at = max(at, m.offset + 1)
        if lo is None:
            return []
        if self._reader is None:
            self._reader = recovery.RangeReader(self.s.settings.bootstrap, self.topic, self.partition)
        read = partial(self._reader.read, lo, hi)
        return await until_done(lambda: self._in_thread(read), f"reading {self.name} [{lo}, {hi})", self.s.waits)

    def _fill_gap(self, pipe: VenuePipeline, start: int, end: int, gap: list[Record], windows: list[Window],
                  rejects: list[Rejected]) -> None:  # fmt: skip
        """The records of [start, end) the consumer did not deliver (`_undelivered`). None: the offsets held
        no committed record, nothing to do. Otherwise the consumer resumed past them: they are above the
        committed offset, so their forecasts are not known to be published, and are processed, forecasts
        and all."""
        if gap:
            ws, rs = pipe.process_batch(gap)
            windows += ws
            rejects += rs
            self.stats.gaps += 1
            self.stats.gap_records += len(gap)
            log.warning("%s: the stream resumed at offset %d, the state stood at %d: processed the %d records "
                        "between first, with their forecasts", self.name, end, start, len(gap))  # fmt: skip
        pipe.position[self.partition] = end

    def _tops(self, pipe: VenuePipeline, windows: list[Window]) -> list[tuple[str, str, int, str]]:
        """The levels of each book the batch completed a window of, as `RedisSink.write_async` takes them:
        read once per book per batch, after the batch, so they ride in its forecasts' round trip."""
        now = time.time_ns()
        return [(self.venue, t.symbol, t.window,
                 book_json(self.venue, t.symbol, t.window, t.ts, t.seq, t.bids, t.asks, now))
                for t in pipe.tops(windows, self.s.settings.book_levels)]  # fmt: skip

    async def _forecasts(
        self, windows: list[Window], books: Sequence[tuple[str, str, int, str]] = ()
    ) -> list[dict[str, Any]]:
        """Score the windows and write their forecasts to Redis, with `books` (`_tops`) in the same round trip."""
        if not windows:
            return []
        s = self.s
        t0 = time.perf_counter()
        # predictions and the alerts' reasons both come from the model thread: here only records are built
        scored = await until_done(lambda: s.batcher.submit(windows), "the model", s.waits)
        # under `latest` a window superseded by a newer one of its book was not scored: it gets no
        # forecast, and its record's offset is committed with the batch all the same. Each record names
        # the model that scored it (a swap may fall between two of the request's model batches), not
        # the one serving now
        windows, now = scored.windows, time.time_ns()
        records = [rec for model_id, a, b in scored.runs()
                   for rec in forecast_records(model_id, windows[a:b], scored.forecasts.part(a, b), now)]  # fmt: skip
        t1 = time.perf_counter()
        # each alert's window (built with its reason on the model thread) goes in the forecast's own script
        alert_windows = scored.alert_windows or None
        await until_done(lambda: s.sink.write_async(records, alert_windows, books), "redis", s.waits)
        self.stats.model_s += t1 - t0
        self.stats.redis_s += time.perf_counter() - t1
        if s.drift is not None and windows:  # numpy over the batch; published with the heartbeat
            s.drift.observe_windows(windows, scored.calibrated, owner=(self.topic, self.partition))
        return records

    def _snapshot_due(self) -> bool:
        s = self.s.settings
        if self.since_snapshot <= 0 or s.snapshot_every <= 0:
            return False
        return self.since_snapshot >= s.snapshot_every or time.monotonic() - self.snapshot_clock >= s.snapshot_seconds

    async def _snapshot(self, pipe: VenuePipeline) -> asyncio.Future[tuple[bytes, bytes] | None] | None:
        """The state as it stands, captured now; its record (key, value) encoded in a state thread
        while the partition goes on (the commit awaits it). The native path's capture copies its
        compiled state out in under a millisecond a few books; the encoding, ~1.6 ms a Binance book,
        had held the partition's next batch (1,000 books: 1.6 s). The reference path's live objects
        are encoded whole before the partition goes on, in the thread as before."""
        s = self.s.settings
        args = (s.app_id, self.topic, self.partition, pipe)
        try:
            make = snapshots.capture(*args) if pipe.native else await self._in_thread(partial(snapshots.capture, *args))
        except Exception as err:
            log.error("%s: state snapshot failed (%s: %s); keeping the previous one", self.name,
                      type(err).__name__, err)  # fmt: skip
            return None
        return asyncio.ensure_future(self._in_thread(partial(self._snapshot_record, make)))

    def _snapshot_record(self, make: Callable[[], tuple[int, bytes]]) -> tuple[bytes, bytes] | None:
        """(key, value) of a captured state, in a state thread; None when it cannot be written (logged:
        the partition keeps its previous snapshot and replays a little more after a restart)."""
        s = self.s.settings
        t0 = time.perf_counter()
        try:
            offset, value = make()
        except Exception as err:
            log.error("%s: state snapshot failed (%s: %s); keeping the previous one", self.name,
                      type(err).__name__, err)  # fmt: skip
            return None
        if len(value) > s.max_produce_bytes - 4096:
            log.error("%s: state snapshot of %d bytes exceeds the %d-byte record limit; keeping the previous one",
                      self.name, len(value), s.max_produce_bytes)  # fmt: skip
            return None
        self.stats.snapshots += 1
        self.stats.snapshot_bytes = len(value)
        log.debug("%s: snapshot at offset %d, %d bytes encoded in %.1f ms", self.name, offset, len(value),
                  (time.perf_counter() - t0) * 1e3)  # fmt: skip
        return snapshots.state_key(s.app_id, self.topic, self.partition), value


def _span(records: Sequence[Record]) -> tuple[int | None, int | None]:
    """A batch's first and last offsets, as its log lines name it (None, None for none)."""
    return (records[0].offset, records[-1].offset) if records else (None, None)
