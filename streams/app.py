"""The Faust app: the raw topics delivered a fetch at a time (streams/delivery.py) to one task per venue;
decode -> book -> windows -> micro-batcher -> forecaster -> Redis, then `md.forecasts`, `md.dlq` and the
offset commit in one Kafka transaction per source partition (streams/partition.py, streams/txn.py).

Delivery: Faust's consumer (its group, rebalances, consumer thread) fetches the raw topics, but their
records skip Faust's per-record path (a `Message`, two tasks and an `Event` each: ~60 us, more than
our own work on a message): `BatchApp.deliver_batches` hands each partition's fetched records to the
venue's `Inbox`, a bounded lane per partition that a task drains into `Worker.handle`. Faust never acknowledges or
commits these topics (`acks=False`; its `take_events` acknowledged a batch in a `finally:` even when
the agent raised, which had let its commit timer commit past forecasts never written). Offsets are
committed only by a partition's transaction, after its forecasts are in Redis. Outages (Redis, the
broker, the model) are waited out with backoff while the worker takes nothing new (streams/retry.py:
the inbox fills and the fetch loop waits); timers and the news listener survive them.

Recovery: a partition this worker is given is restored on its own, beside the others: the
newest state snapshot its committed offset names, then the records after it
(streams/recovery.py), so a restart costs the snapshot interval, not the topic's length.
Records past the committed offset are processed with their forecasts; below it they were
published and are skipped. Redis writes are idempotent (streams/sink.py) and the transactions
make `md.forecasts` exactly-once for read-committed readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import faust

from model.serving.drift import DriftStat, DriftTracker, describe
from model.serving.forecaster import SCHEMA, Forecaster
from orderbook.errors import FeedError
from orderbook.features import FEATURE_NAMES
from orderbook.news import parse_news
from orderbook.venue_windows import INTERNAL_ERROR
from streams import snapshots
from streams.batcher import MicroBatcher
from streams.config import Settings
from streams.delivery import BatchApp
from streams.logfilter import install_rate_limits
from streams.membership import MembershipWatch, join_limit, name_fenced_instance_id, watch_membership
from streams.metrics import QUANTILES, WorkerMetrics, model_device, quantiles
from streams.news import NewsListener
from streams.partition import NEWS_KEPT, News, Partition, Services
from streams.pipeline import Record, native_choice
from streams.retry import Waits, until_done
from streams.sink import DRIFT_FIELD, RedisSink
from streams.stall import PROBE_TIMEOUT_S, EndProbe, Idle, StallWatch, describe_stall, group_offsets
from streams.swap import initial_model, load_checked
from streams.topics import NEWS_TOPIC, RAW_TOPIC
from streams.txn import quiet_fenced_futures

log = logging.getLogger(__name__)


# The nice value of the state threads (snapshot encoding, restores): background work, run in the
# time the forecasts' path leaves. A partition's snapshot is mostly zlib, which releases the GIL: at
# the default priority it took half of a busy core from the event loop for 10-80 ms (four partitions
# snapshotting together), the whole of the p99 at 20k messages/s (bench/pipeline_bench.py: 60-100 ms
# with snapshots, 20-25 without). RocksDB lowers its compaction threads' CPU priority the same way.
BACKGROUND_NICE = 19


def background_priority() -> None:
    """The calling thread (only: Linux's nice is per thread) to BACKGROUND_NICE."""
    with contextlib.suppress(AttributeError, OSError):  # no per-thread priority here: it runs as it is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


class Worker:
    """What one worker process holds: a Partition per source partition it owns, and what they share.
    `spec`: the spec of `forecaster` (None: a forecaster built in code, which no spec names); the worker
    serves its settings' model again when operators clear the wanted one."""

    def __init__(self, settings: Settings, app: faust.App, forecaster: Forecaster, spec: str | None = None) -> None:
        self.settings = settings
        self.app = app
        self.forecaster = forecaster
        # the model's changes (streams/swap.py): the spec served, the model wanted last acted on (swapped
        # to, or refused: tried again only once the wanted model changes), the last refusal's reason
        self.spec = spec
        self.home_spec = settings.model if spec is not None else None
        self.swapped_ns = 0
        self.swap_error = ""
        self._target = spec
        self._swapping: asyncio.Task[None] | None = None
        self.topics = {RAW_TOPIC.format(venue=v): v for v in settings.venues}
        self.waits = Waits()
        self.services = Services(
            settings=settings,
            forecaster=forecaster,
            batcher=MicroBatcher(
                forecaster,
                explain_above=settings.alert_threshold,
                max_batch=settings.max_batch,
                max_wait=settings.max_wait,
                overload=settings.overload,
                alert_windows=settings.alert_window_ttl_s > 0,
            ),
            sink=RedisSink.from_url(
                settings.redis_url, alert_threshold=settings.alert_threshold, window_ttl_s=settings.alert_window_ttl_s
            ),
            waits=self.waits,
            io=ThreadPoolExecutor(max_workers=2, thread_name_prefix="io"),
            state_io=ThreadPoolExecutor(
                max_workers=settings.restore_threads, thread_name_prefix="state", initializer=background_priority
            ),
            news_log=deque(maxlen=NEWS_KEPT),
            drift=drift_tracker(settings),
        )
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.metrics = self.services.metrics = WorkerMetrics(self)
        self.dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
        self.news = NewsListener(settings.bootstrap)
        self._releasing: set[asyncio.Task[None]] = set()
        self._heartbeat_failed = False
        # the stall watchdog (streams/stall.py); `on_stall` is what a stall does: logged here, the process
        # restarted in place by `run_worker` (a worker inside another program, a test or a bench, is not)
        self.stall = StallWatch(settings.stall_s) if settings.stall_s > 0 else None
        # a group that never assigns, rebalances without end or keeps fencing partitions it assigned us
        # (streams/membership.py): logged, no action
        self.membership = self.services.membership = MembershipWatch(
            time.monotonic(), join_limit(settings.session_timeout), settings.group_instance_id
        )
        self.probe = EndProbe(settings.bootstrap)
        # a thread of its own: the loop's default executor may be full of calls an outage holds up, and a
        # probe queued behind them would keep the watchdog waiting with it
        self._probe_thread = ThreadPoolExecutor(1, thread_name_prefix="stall-probe")
        self.on_stall: Callable[[str], None] = partial(log.error, "STALLED: %s")
        self._probing = False
        self.started_ns = time.time_ns()  # published with the counts: a reader sees them restart from zero

    @property
    def sink(self) -> RedisSink:
        return self.services.sink

    # ---- lifecycle

    async def start(self) -> None:
        self.news.start()
        loop = asyncio.get_running_loop()
        quiet_fenced_futures(loop)
        create = partial(snapshots.ensure_topic, self.settings.bootstrap, self.settings.state_replication)
        await until_done(lambda: loop.run_in_executor(self.services.state_io, create), "kafka", self.waits)
        self.services.state_topic_ready.set()
        meta = partial(self.sink.set_meta, self.forecaster.model_id, SCHEMA)
        await until_done(lambda: loop.run_in_executor(self.services.io, meta), "redis", self.waits)
        # a previous run's counts, a dead-letter reason this run may never meet among them, would stand
        # beside this run's (a heartbeat that came first is written again a second later: absolute values)
        forget = partial(self.sink.forget_counts, self.settings.worker_id)
        await until_done(lambda: loop.run_in_executor(self.services.io, forget), "redis", self.waits)
        await self._publish_model()
        # what start-up made (modules, torch, the model: ~1M objects) lives as long as the process: out of
        # the collector's sight, a full collection scans only what came after (60-110 ms, a latency spike)
        gc.collect()
        gc.freeze()
        log.info("worker %s up: venues %s, model %s; %s", self.settings.worker_id, ",".join(self.settings.venues),
                 self.forecaster.model_id,
                 "; ".join(f"{v}: {native_choice(v)[1]}" for v in self.settings.venues))  # fmt: skip

    def serve_metrics(self) -> None:
        """/metrics from now on (`metrics_port`; None: off): `run_worker` serves them before the group
        join, which may never complete (streams/membership.py), and before the worker is up."""
        s = self.settings
        if s.metrics_port is None:
            return
        try:
            port = self.metrics.serve(s.metrics_host, s.metrics_port)
        except OSError as err:  # a second worker on this machine: the first one holds the port
            log.warning("Prometheus metrics off: cannot listen on %s:%s (%s); set MT_METRICS_PORT to a free port",
                        s.metrics_host, s.metrics_port, err)  # fmt: skip
            return
        log.info("Prometheus metrics on http://%s:%d/metrics", s.metrics_host, port)

    async def stop(self) -> None:
        self.metrics.close()
        if self._swapping is not None:
            self._swapping.cancel()
        await asyncio.to_thread(self.news.stop)  # joins its thread: up to 10 s, off the loop
        await asyncio.gather(*(part.close() for part in self.partitions.values()))
        await self.services.batcher.stop()
        await self.sink.aclose()
        self.services.io.shutdown(wait=False, cancel_futures=True)
        self.services.state_io.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.probe.close)
        self._probe_thread.shutdown(wait=False, cancel_futures=True)

    async def heartbeat(self) -> None:
        """Redis's `mt:meta` heartbeat, with the worker's messages and records per venue since it started
        (the Prometheus counters' totals, absolute: the dashboard's messages/s is their increase), its dead
        letters per venue and reason, its books' resyncs, its batch times (p50/p99), and in
        the same round trip the wanted model (`mt:control`), which it then follows (`follow`); an outage
        is logged once (and its end), never raised: a timer that raises takes the whole Faust app down."""
        loop = asyncio.get_running_loop()
        drift = self.drift_report()
        meta = {DRIFT_FIELD.format(venue=v, symbol=s): stat.to_json() for (v, s), stat in drift.items()}
        # the running counts per venue, copied on the loop that adds to them; every venue it consumes, 0
        # before its first batch: an idle venue reads 0 messages/s on the dashboard, not nothing
        m = self.metrics
        totals = m.totals
        counts = {venue: tuple(totals.get(venue, (0, 0))) for venue in {*self.settings.venues, *totals}}
        resyncs = m.read_resyncs(self.partitions.values())
        recent = {"model": quantiles(self.services.batcher.stats.latencies), "partition": quantiles(m.batch_recent)}
        latency_ms = {f"{kind}_batch_p{round(q * 100)}_ms": qs[q] * 1e3 if qs else None
                      for kind, qs in recent.items() for q in QUANTILES}  # fmt: skip
        try:
            skipped = self.services.batcher.stats.skipped
            # stamped when the counts were read, not when the io thread gets to write them: an exact pair
            beat = partial(self.sink.heartbeat, self.settings.worker_id, skipped, meta, counts, self.started_ns,
                           time.time_ns(), dlq=dict(m.dlq_totals), resyncs=resyncs, latency_ms=latency_ms)  # fmt: skip
            wanted = await loop.run_in_executor(self.services.io, beat)
        except Exception as err:
            if self.services.drift is not None:  # published with the next heartbeat that lands
                self.services.drift.touch(list(drift))
            if not self._heartbeat_failed:
                log.warning("heartbeat to Redis failed (%s: %s); retrying every second", type(err).__name__, err)
            self._heartbeat_failed = True
            return
        if self._heartbeat_failed:
            log.info("heartbeat to Redis is back")
        self.waits.wake("redis")  # a step sleeping out its backoff for Redis need not wait up to 5 s more
        self._heartbeat_failed = False
        self.follow(wanted)

    # ---- the model's changes (`megatrading model use`)

    @property
    def swapping(self) -> asyncio.Task[None] | None:
        """The model change in progress (loading the new model), None when none is."""
        return self._swapping if self._swapping is not None and not self._swapping.done() else None

    def follow(self, wanted: str | None) -> None:
        """Start changing to the wanted model (None: the worker's own) unless it serves it already, a
        change is in progress (the next heartbeat looks again), or it was refused before and has not
        changed since."""
        target = wanted or self.home_spec
        if target is None or target == self._target or self.swapping is not None:
            return
        self._target = target
        if target != self.spec:
            self._swapping = asyncio.create_task(self._swap(target), name=f"model swap to {target}")

    def refused(self, spec: str, why: str) -> None:
        """`spec` will not be served (logged by the caller): not tried again until the wanted model changes."""
        self._target, self.swap_error = spec, why

    async def _swap(self, spec: str) -> None:
        """Load `spec` in a thread, try it on a window this worker scored, and hand it to the batcher,
        which serves it from its next model batch; a model that fails any of it is refused and the old
        one goes on."""
        old = self.services.batcher.forecaster
        t0 = time.perf_counter()
        try:
            new = await asyncio.to_thread(load_checked, self.settings, spec, self.services.batcher.example)
        except Exception as err:
            self.refused(spec, f"{spec}: {type(err).__name__}: {err}")
            log.error("model swap to %s refused (%s: %s): %s goes on serving; tried again once the wanted model "
                      "changes", spec, type(err).__name__, err, old.model_id)  # fmt: skip
            await self._publish_model()
            return
        self.services.batcher.swap(new)
        self.forecaster = self.services.forecaster = new
        self.spec, self.swapped_ns, self.swap_error = spec, time.time_ns(), ""
        if self.services.drift is not None:
            self.services.drift.forget_surprise()
        log.info("model swapped: %s -> %s, load took %.1f s", old.model_id, new.model_id, time.perf_counter() - t0)
        await self._publish_model()

    async def _publish_model(self) -> None:
        """The model this worker serves, since when, and its last refusal, to `mt:meta`."""
        loop = asyncio.get_running_loop()
        meta = partial(self.sink.worker_model, self.settings.worker_id, self.forecaster.model_id, self.swapped_ns,
                       self.swap_error, model_device(self.forecaster))  # fmt: skip
        await until_done(lambda: loop.run_in_executor(self.services.io, meta), "redis", self.waits)

    def drift_report(self) -> dict[tuple[str, str], DriftStat]:
        """The drift of every book that got windows since the last heartbeat (model/serving/drift.py,
        numpy over the books), and a log line for each book that crossed the threshold or came back."""
        tracker = self.services.drift
        if tracker is None:
            return {}
        stats, changes = tracker.report()
        for change in changes:
            (log.warning if change.drifting else log.info)(describe(change, tracker.n_windows, tracker.n_reference))
        return stats

    def log_progress(self) -> None:
        """One line an operator can act on: what came in, what went out, where time goes, what is awaited."""
        parts = list(self.partitions.values())
        recs = sum(p.pipeline.stats.records for p in parts if p.pipeline is not None)
        forecasts = sum(p.stats.forecasts for p in parts)
        rejects = sum(p.stats.rejects for p in parts)
        restoring = [p.name for p in parts if p.pipeline is None and p.assigned]
        b = self.services.batcher.stats
        lat = sorted(b.latencies)
        p99 = lat[int(0.99 * (len(lat) - 1))] * 1e3 if lat else 0.0
        batches = sum(p.stats.batches for p in parts)
        txns = sum(p.stats.transactions for p in parts)
        per, per_txn = 1e3 / max(batches, 1), 1e3 / max(txns, 1)
        line = (f"progress: {len(parts)} partitions, {recs} messages, {rejects} rejected, {forecasts} forecasts "
                f"({self.sink.written} new in Redis, {self.sink.duplicates} duplicates), {b.batches} model batches, "
                f"p99 {p99:.1f} ms, {b.skipped} windows skipped (overload {self.settings.overload}); "
                f"{batches} partition batches (ms each: pipeline {sum(p.stats.pipeline_s for p in parts) * per:.1f}, "
                f"model {sum(p.stats.model_s for p in parts) * per:.1f}, "
                f"redis {sum(p.stats.redis_s for p in parts) * per:.1f}) in {txns} transactions "
                f"({sum(p.stats.commit_s for p in parts) * per_txn:.1f} ms each, off the forecasts' way)")  # fmt: skip
        if self.services.drift is not None:
            line += f"; {self.services.drift.drifting} of {len(self.services.drift.books)} books drifting"
        if restoring:
            line += f"; restoring {', '.join(restoring)}"
        waiting = self.waits.describe()
        if waiting:
            line += f"; WAITING for {waiting}"
        news = self.news
        if not news.healthy:
            line += f"; news listener reconnecting ({news.last_error})"
        log.info(line)

    async def watch_stall(self) -> None:
        """The stall watchdog's check (streams/stall.py): partitions unmoved for `stall_s` while no outage
        is waited out are probed on the broker, and records waiting behind any of them are a stall."""
        if self.stall is None or self._probing:
            return
        now = time.monotonic()
        positions = {key: _position(part) for key, part in self.partitions.items()}
        idle = self.stall.idle(now, positions, excused=bool(self.waits.now))
        if not idle:
            return
        self._probing = True
        try:
            run = asyncio.get_running_loop().run_in_executor(self._probe_thread, self._ask_broker, idle)
            pending, group = await asyncio.wait_for(run, PROBE_TIMEOUT_S)
        except Exception as err:  # the broker cannot say: not a stall the watchdog can tell (an outage's)
            if isinstance(err, TimeoutError):  # its thread may hang on: the next check gets a new probe
                # the old probe is closed on its own thread once the hung call returns (its client is not
                # thread-safe), and that thread then ends instead of idling for the life of the worker
                self._probe_thread.submit(self.probe.close)
                self._probe_thread.shutdown(wait=False)
                self.probe = EndProbe(self.settings.bootstrap)
                self._probe_thread = ThreadPoolExecutor(1, thread_name_prefix="stall-probe")
            # a line per failed probe, at most one per stall_s: the watchdog cannot act while it fails
            log.warning("stall watch: %d partitions unmoved for %.0f s or more, but the broker could not be "
                        "asked whether records wait behind them (%s: %s); asking again in %.0f s", len(idle),
                        min(i.seconds for i in idle), type(err).__name__, err, self.settings.stall_s)  # fmt: skip
            pending, group = {}, {}
        finally:
            self._probing = False
        stalled: list[Idle] = []
        for i in idle:
            if pending.get(i.key) and self._still_at(i):
                stalled.append(i)
            else:
                self.stall.cleared(i.key, time.monotonic())
        if stalled:
            self.on_stall(describe_stall(stalled))
            return
        for i in idle:  # an offset commit that did not materialize (streams/stall.py)
            if group.get(i.key, i.position) < i.position and self._still_at(i):
                await self.partitions[i.key].recommit(group[i.key])

    def _ask_broker(self, idle: list[Idle]) -> tuple[dict[tuple[str, int], bool], dict[tuple[str, int], int]]:
        """(records waiting behind each idle partition, the group's committed offset of each with none
        waiting): blocking."""
        pending = self.probe.pending({i.key: i.position for i in idle})
        quiet = [i.key for i in idle if not pending.get(i.key)]
        return pending, group_offsets(self.settings.bootstrap, self.settings.app_id, quiet) if quiet else {}

    def _still_at(self, idle: Idle) -> bool:
        """`idle`'s partition is still here, at the position it was probed at (the probe takes seconds)."""
        part = self.partitions.get(idle.key)
        return part is not None and _position(part) == idle.position

    # ---- records

    async def handle(self, venue: str, partition: int, records: list[Record]) -> None:
        """A batch of one partition of a venue topic (an `Inbox` lane's) to committed output."""
        await self.join_news()
        topic = RAW_TOPIC.format(venue=venue)
        part = self.partitions.get((topic, partition)) or self._adopt(topic, partition)
        if part is not None:
            await part.handle(records)

    def _adopt(self, topic: str, partition: int) -> Partition | None:
        """Records of a partition the assignment signal has not announced yet: take it if the
        consumer holds it (Faust may fetch before its signal's receivers ran), else leave the
        records to their owner (a stale fetch from before a rebalance)."""
        held = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        if (topic, partition) not in held:
            log.info("%s[%d]: records of a partition not assigned here: left to its owner", topic, partition)
            return None
        return self._take(topic, partition)

    def _take(self, topic: str, partition: int) -> Partition:
        part = Partition(self.services, topic, partition, self.topics[topic])
        self.partitions[(topic, partition)] = part
        part.start()
        return part

    async def join_news(self) -> None:
        """Headlines that arrived since the last batch go to every partition's windows."""
        joined = 0
        for value in self.news.drain():
            try:
                item: News = parse_news(value)
            except Exception as err:
                # a parser bug as well as a bad record: this runs in the heartbeat timer, which an error
                # raised here would end, and the whole Faust app with it
                reason = err.reason if isinstance(err, FeedError) else INTERNAL_ERROR
                if reason == INTERNAL_ERROR:
                    log.exception("an md.news record the parser failed on, dead-lettered as %s", INTERNAL_ERROR)
                headers = [("source_topic", NEWS_TOPIC.encode()), ("reason", reason.encode())]
                await self.dlq.send(key=None, value=value, headers=headers)
                continue
            self.services.news_log.append(item)
            for part in self.partitions.values():
                part.add_news(item)
            joined += 1
        if joined:
            log.info("joined %d headlines from %s (%d received since start)", joined, NEWS_TOPIC, self.news.received)

    # ---- rebalance

    async def on_assigned(self, assigned: set[Any]) -> None:
        """The group's new assignment (the whole of it): partitions that went elsewhere are released
        once their batch in flight is done; new ones start restoring at once, each on its own."""
        self.membership.assigned(time.monotonic())
        now = {(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics}
        for key in [k for k in self.partitions if k not in now]:
            part = self.partitions.pop(key)
            if self.services.drift is not None:  # its books' drift is the new owner's to track
                self.services.drift.forget(key)
            task = asyncio.create_task(part.release(), name=f"release {part.name}")
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        for topic, partition in sorted(now - set(self.partitions)):
            self._take(topic, partition)
        log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in sorted(now)) or "nothing")


def _position(part: Partition) -> int | None:
    """The next offset `part` processes; None while it restores."""
    return part.pipeline.position.get(part.partition, 0) if part.pipeline is not None else None


def drift_tracker(settings: Settings) -> DriftTracker | None:
    """The worker's drift tracker from its settings; None where `drift_windows` is 0."""
    if settings.drift_windows <= 0:
        return None
    return DriftTracker(FEATURE_NAMES, windows=settings.drift_windows, reference=settings.drift_reference,
                        bins=settings.drift_bins, moderate=settings.drift_moderate,
                        threshold=settings.drift_threshold, level=settings.drift_surprise_level,
                        level_moderate=settings.drift_surprise_level_moderate, skip=settings.drift_skip)  # fmt: skip


# the consumer's largest fetch: a partition's whole backlog of large records in one request
FETCH_BYTES = 16 << 20


def faust_app(settings: Settings) -> BatchApp:
    """The worker's Faust app (raw serializers, memory store, the worker's session, buffer and fetch
    settings, fetches of at most `take_max` records), without agents or batch handlers: the worker's,
    and the one bench/faust_ceiling.py measures empty."""
    # Faust would make `<app_id>-data/` in the working directory; the state home keeps it instead
    settings.faust_datadir.parent.mkdir(parents=True, exist_ok=True)
    return BatchApp(
        settings.app_id,
        datadir=settings.faust_datadir,
        broker=f"kafka://{settings.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        broker_session_timeout=settings.session_timeout,
        consumer_group_instance_id=settings.group_instance_id or None,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port is not None,
        web_bind="127.0.0.1",
        web_port=settings.web_port or 6066,
        stream_wait_empty=False,
        stream_buffer_maxsize=settings.buffer_records,
        producer_max_request_size=settings.max_produce_bytes,
        consumer_max_fetch_size=FETCH_BYTES,
        broker_max_poll_records=settings.take_max,
    )


def create_app(settings: Settings, forecaster: Forecaster | None = None) -> tuple[faust.App, Worker]:
    install_rate_limits()
    name_fenced_instance_id()
    app = faust_app(settings)
    if forecaster is None:  # the model operators want (`megatrading model use`), else the settings'
        served, spec, refused, why = initial_model(settings)
        worker = Worker(settings, app, served, spec)
        if refused is not None:
            worker.refused(refused, why)
    else:
        worker = Worker(settings, app, forecaster)

    for topic_name, venue in worker.topics.items():
        # acks off: Faust never commits these topics; the partitions' transactions do
        topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", acks=False)
        inbox = Inbox(worker, venue)
        app.deliver_batches(topic, inbox.put)
        app.task(inbox.run)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        await worker.on_assigned(assigned)

    @app.task
    async def _start() -> None:
        await worker.start()

    @app.timer(interval=1.0)
    async def _heartbeat() -> None:
        await worker.join_news()  # headlines reach idle partitions too, not only with the next batch
        await worker.heartbeat()

    @app.timer(interval=10.0)
    async def _progress() -> None:
        worker.log_progress()

    if worker.stall is not None:

        @app.timer(interval=min(10.0, max(0.5, settings.stall_s / 4)))
        async def _stall() -> None:
            await worker.watch_stall()

    return app, worker


class Inbox:
    """One venue topic's fetched records waiting for the worker, in one lane per partition: the
    consumer's fetch loop puts each partition's records of a fetch (streams/delivery.py), and each lane's
    task takes them, merged up to `take_max` records, to `Worker.handle`. A lane per partition, not one
    queue for the venue: a partition's batch waits for the model and a Redis round trip (a few ms each
    on a busy machine), and with a single queue every partition's next fetch waited behind the slowest
    partition of the batch before (p50 produce -> Redis 20-30 ms at 20k messages/s, where the work is
    about 1 ms a batch). The lanes' windows still meet in the micro-batcher. Bounded in records for the
    venue: while the worker waits out an outage or a slow model the lanes fill and the fetch loop waits,
    so the consumer takes nothing new (backpressure)."""

    def __init__(self, worker: Worker, venue: str) -> None:
        self.worker, self.venue = worker, venue
        self.limit = max(worker.settings.buffer_records, worker.settings.take_max)
        self.buffered = 0  # records put and not yet taken by a lane: at most `limit` plus one fetch
        self.room = asyncio.Condition()
        self.lanes: dict[int, asyncio.Queue[Sequence[Record]]] = {}
        self.opened: asyncio.Queue[int] = asyncio.Queue()  # lanes for `run` to start

    async def put(self, tp: Any, records: Sequence[Record]) -> None:
        async with self.room:
            await self.room.wait_for(lambda: self.buffered < self.limit)
            self.buffered += len(records)
        lane = self.lanes.get(tp.partition)
        if lane is None:
            lane = self.lanes[tp.partition] = asyncio.Queue()
            self.opened.put_nowait(tp.partition)
        lane.put_nowait(records)

    async def run(self) -> None:
        """The lanes' tasks, for as long as the app runs (cancelled with it)."""
        async with asyncio.TaskGroup() as lanes:
            while True:
                partition = await self.opened.get()
                lanes.create_task(self._lane(partition, self.lanes[partition]))

    async def _lane(self, partition: int, queue: asyncio.Queue[Sequence[Record]]) -> None:
        take_max = self.worker.settings.take_max
        while True:
            batch = list(await queue.get())
            while len(batch) < take_max and not queue.empty():
                batch.extend(queue.get_nowait())
            async with self.room:
                self.buffered -= len(batch)
                self.room.notify_all()
            try:
                await self.worker.handle(self.venue, partition, batch)
            except Exception:
                # the partition retries its own failures; what escapes is a bug in between: a batch
                # not processed is above its partition's position, and read back as a gap with the next
                log.exception("%s: a batch of %d records of partition %d failed outside it", self.venue,
                              len(batch), partition)  # fmt: skip


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run until SIGINT/SIGTERM (faust's Worker owns the event loop and the signals)."""
    from faust.worker import Worker as FaustWorker

    from streams import infra
    from streams.logformat import faust_logging_config
    from streams.stall import restart_in_place

    # the servers first: an address nobody answers is one line naming it, not aiokafka's bootstrap
    # traceback or redis-py's retries (twice a CLI verb's wait: a worker may start beside its servers)
    infra.reach_kafka(settings.bootstrap, wait=2 * infra.CONNECT_WAIT_S)
    infra.reach_redis(settings.redis_url, wait=2 * infra.CONNECT_WAIT_S)
    app, worker = create_app(settings)
    worker.on_stall = restart_in_place
    watch_membership(worker.membership, settings.app_id)
    worker.serve_metrics()

    @app.on_before_shutdown.connect
    async def _stopping(sender: Any, **kwargs: Any) -> None:
        await worker.stop()

    # Faust replaces the root logger's handlers when it starts: under --log-format json its handler gets
    # our JSON formatter (None under text: Faust's own colored lines, as before)
    FaustWorker(
        app, loglevel=loglevel, quiet=True, logging_config=faust_logging_config(loglevel)
    ).execute_from_commandline()
