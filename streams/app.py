"""The Faust app: one agent per venue topic, in batches; decode -> book -> windows ->
micro-batcher -> forecaster -> Redis and `md.forecasts`; rejects to `md.dlq`.

Delivery: an agent's batch of records is acknowledged (and its offsets become committable)
only after `handle` returns, that is after its forecasts are in Redis and its dead letters
and `md.forecasts` records are acknowledged by the broker: at-least-once, and the Redis
writes are idempotent (streams/sink.py), so a crash duplicates nothing a reader sees.

Recovery and rebalance: when partitions are assigned, each venue's pipeline is rebuilt
by replaying the partitions it now owns from their start up to the group's committed
offset (`warm=True`, nothing emitted); the books then stand exactly where the last
committed forecast left them, and processing resumes from the committed offset. Each record
is checked against the books' position in its partition (`_in_line`): one already applied is
skipped, and a gap (a kept partition resumed past its committed offset) is replayed first.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import msgpack
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from model.forecaster import SCHEMA, Forecaster, forecast_records, load_forecaster
from orderbook.errors import FeedError

from .batcher import MicroBatcher
from .config import Settings
from .pipeline import Rejected, VenuePipeline, parse_news
from .replay import DLQ_TOPIC, FORECASTS_TOPIC, NEWS_TOPIC, RAW_TOPIC
from .sink import RedisSink

log = logging.getLogger(__name__)


def dlq_headers(topic: str, rej: Rejected) -> list[tuple[str, bytes]]:
    return [
        ("source_topic", topic.encode()),
        ("partition", str(rej.partition).encode()),
        ("offset", str(rej.offset).encode()),
        ("reason", rej.reason.encode()),
        ("error", rej.error.encode(errors="replace")[:1000]),
    ]


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: set[int], attempts: int = 20
) -> dict[int, int]:
    """A group's committed offsets (0 where none), by an admin request. The coordinator of a
    group that has just been created may not be known yet, or may still be loading the offsets
    topic: retriable errors are retried."""
    tps = [TopicPartition(topic, p) for p in partitions]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for attempt in range(attempts):
            try:
                got = admin.list_group_offsets({group: tps}).get(group, {})
                break
            except KafkaError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise
                time.sleep(0.25)
    finally:
        admin.close()
    return {p: max(getattr(got.get(TopicPartition(topic, p)), "offset", 0) or 0, 0) for p in partitions}


class NewsListener:
    """Every worker reads all of `md.news` (outside the consumer group): a headline must reach
    the windows of its symbols wherever their books live. A thread, so the event loop never
    waits on it; the agents drain what it queued before each batch."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="news", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest")  # fmt: skip
        assigned: set[int] = set()
        try:
            while not self._stop.is_set():
                parts = consumer.partitions_for_topic(NEWS_TOPIC) or set()
                if parts != assigned:  # the topic appeared or grew: take every partition
                    assigned = set(parts)
                    consumer.assign([TopicPartition(NEWS_TOPIC, p) for p in assigned])
                if not assigned:
                    self._stop.wait(2.0)
                    continue
                for msgs in consumer.poll(timeout_ms=500).values():
                    for m in msgs:
                        self._queue.put(m.value)
        except Exception:
            log.exception("news listener stopped: headlines will not be joined until restart")
        finally:
            consumer.close()


class Worker:
    """What one worker process holds: a pipeline per venue, the batcher, the sink."""

    def __init__(self, settings: Settings, app: faust.App, forecaster: Forecaster) -> None:
        self.settings = settings
        self.app = app
        self.forecaster = forecaster
        self.pipelines = {
            v: VenuePipeline(v, settings.window, max_bytes=settings.max_record_bytes) for v in settings.venues
        }
        self.topics = {RAW_TOPIC.format(venue=v): v for v in settings.venues}
        self.batcher = MicroBatcher(forecaster, max_batch=settings.max_batch, max_wait=settings.max_wait)
        self.sink = RedisSink.from_url(settings.redis_url, alert_threshold=settings.alert_threshold)
        self.io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="io")
        self.dlq = app.topic(DLQ_TOPIC, key_serializer="raw", value_serializer="raw")
        self.forecasts = app.topic(FORECASTS_TOPIC, key_serializer="raw", value_serializer="raw")
        self.owned: dict[str, set[int]] = {t: set() for t in self.topics}  # partitions the books hold
        self.assigned: dict[str, set[int]] = {t: set() for t in self.topics}  # the group's latest word
        self.stale: set[str] = set()  # venues whose books must catch up before their next batch
        self.forecasts_written = 0
        self.news = NewsListener(settings.bootstrap)

    # ---- lifecycle

    async def start(self) -> None:
        self.news.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.io, self.sink.set_meta, self.forecaster.model_id, SCHEMA)
        log.info("worker %s up: venues %s, model %s", self.settings.worker_id, ",".join(self.settings.venues),
                 self.forecaster.model_id)  # fmt: skip

    async def stop(self) -> None:
        self.news.stop()
        await self.batcher.stop()
        self.io.shutdown(wait=True)

    def log_progress(self) -> None:
        """One line an operator can act on: what came in, what went out, where time goes."""
        recs = sum(p.stats.records for p in self.pipelines.values())
        rejected = sum(sum(p.stats.rejected.values()) for p in self.pipelines.values())
        b = self.batcher.stats
        lat = sorted(b.latencies)
        p99 = lat[int(0.99 * (len(lat) - 1))] * 1e3 if lat else 0.0
        log.info("progress: %d records, %d rejected, %d forecasts (%d new in Redis, %d duplicates), "
                 "%d model batches, p99 %.1f ms", recs, rejected, self.forecasts_written, self.sink.written,
                 self.sink.duplicates, b.batches, p99)  # fmt: skip

    # ---- records

    async def handle(self, venue: str, events: Sequence[Any]) -> None:
        if venue in self.stale:
            await self._catch_up(venue)
        await self.join_news()
        pipe = self.pipelines[venue]
        topic = RAW_TOPIC.format(venue=venue)
        windows, rejects = [], []
        for ev in events:
            msg = ev.message
            if not await self._in_line(topic, pipe, msg.partition, msg.offset):
                continue
            ws, rej = pipe.process(msg.key, msg.value, msg.partition, msg.offset)
            windows.extend(ws)
            if rej is not None:
                rejects.append(rej)
        pending = [await self.dlq.send(key=r.key, value=r.value, headers=dlq_headers(topic, r)) for r in rejects]
        if rejects:
            log.warning("%s: %d records dead-lettered (%s)", venue, len(rejects),
                        ", ".join(sorted({r.reason for r in rejects})))  # fmt: skip
        if windows:
            preds = await self.batcher.submit(windows)
            records = forecast_records(self.forecaster, windows, preds, time.time_ns(), self.settings.alert_threshold)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.io, self.sink.write, records)
            self.forecasts_written += len(records)
            for rec in records:
                pending.append(await self.forecasts.send(key=str(rec["symbol"]).encode(), value=msgpack.packb(rec)))
        for fut in pending:  # acknowledged by the broker before the batch's offsets may commit
            await fut

    async def join_news(self) -> None:
        """Headlines that arrived since the last batch go into every venue's windows."""
        for value in self.news.drain():
            try:
                ts, symbols, headline = parse_news(value)
            except FeedError as err:
                headers = [("source_topic", NEWS_TOPIC.encode()), ("reason", err.reason.encode())]
                await self.dlq.send(key=None, value=value, headers=headers)
                continue
            for pipe in self.pipelines.values():
                pipe.add_news(ts, symbols, headline)

    # ---- rebalance

    async def on_assigned(self, assigned: set[Any]) -> None:
        """Record the new assignment. The books are brought up to date by the venue's agent
        before it processes its next batch (`_catch_up`): faust may resume fetching before
        this signal's receivers finish, so rebuilding here could race the first records."""
        for topic, venue in self.topics.items():
            self.assigned[topic] = {tp.partition for tp in assigned if tp.topic == topic}
            self.stale.add(venue)

    async def _catch_up(self, venue: str) -> None:
        """Make the venue's books those the group's committed offsets imply, if they are not."""
        self.stale.discard(venue)
        topic = RAW_TOPIC.format(venue=venue)
        now = self.assigned[topic]
        pipe = self.pipelines[venue]
        loop = asyncio.get_running_loop()
        committed = await loop.run_in_executor(self.io, self._committed, topic, now)
        if now == self.owned[topic] and all(pipe.position.get(p, 0) == committed[p] for p in now):
            return  # same partitions, same place: the books are current
        self.owned[topic] = set(now)
        pipe.reset()
        if any(committed.values()):
            t0 = time.perf_counter()
            n = await loop.run_in_executor(self.io, self._rebuild, topic, pipe, committed)
            log.info("%s: rebuilt books from %d records of partitions %s in %.2f s", venue, n, sorted(now),
                     time.perf_counter() - t0)  # fmt: skip

    async def _in_line(self, topic: str, pipe: VenuePipeline, partition: int, offset: int) -> bool:
        """Whether the record at `offset` is the next one the books need. Not when it is in them
        already: a redelivery (at-least-once; its forecasts were published when it was first
        processed). When records are missing before it, they are replayed first, emitting
        nothing: after a rebalance the consumer may resume a partition it kept at its fetch
        position, past the committed offset the books were rebuilt to (their forecasts were
        published before the rebalance)."""
        at = pipe.position.get(partition, 0)
        if offset < at:
            return False
        if offset > at:
            loop = asyncio.get_running_loop()
            n = await loop.run_in_executor(self.io, self._rebuild, topic, pipe, {partition: offset}, {partition: at})
            log.warning("%s[%d]: the stream resumed at offset %d, the books stood at %d: replayed %d records first",
                        topic, partition, offset, at, n)  # fmt: skip
        return True

    def _committed(self, topic: str, partitions: set[int]) -> dict[int, int]:
        """The group's committed offsets, read with an admin request (a consumer carrying the
        group id would be one more client of the group while it rebalances)."""
        if not partitions:
            return {}
        return committed_offsets(self.settings.bootstrap, self.settings.app_id, topic, partitions)

    def _rebuild(
        self, topic: str, pipe: VenuePipeline, upto: dict[int, int], start: dict[int, int] | None = None
    ) -> int:
        """Replay [start, upto) of each partition of `upto` (start: 0) into the pipeline, emitting nothing."""
        start = start or {}
        c = KafkaConsumer(bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False,
                          auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                          fetch_max_bytes=64 << 20)  # fmt: skip
        n = 0
        try:
            tps = [TopicPartition(topic, p) for p, end in upto.items() if end > 0]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            for tp in tps:
                if start.get(tp.partition, 0) > 0:
                    c.seek(tp, start[tp.partition])
            for tp, first in c.beginning_offsets(tps).items():
                if first > start.get(tp.partition, 0):
                    log.warning("%s[%d]: records before offset %d were deleted (retention): the books of this "
                                "partition are rebuilt from there and may differ from the venue's",
                                topic, tp.partition, first)  # fmt: skip
            remaining = {tp.partition: upto[tp.partition] for tp in tps}
            while remaining:
                for tp, msgs in c.poll(timeout_ms=1000).items():
                    end = remaining.get(tp.partition)
                    if end is None:
                        continue
                    for m in msgs:
                        if m.offset >= end:
                            break
                        pipe.process(m.key, m.value, m.partition, m.offset, warm=True)
                        n += 1
                    if c.position(tp) >= end or (msgs and msgs[-1].offset >= end - 1):
                        remaining.pop(tp.partition, None)
                        c.pause(tp)
        finally:
            c.close()
        return n


def create_app(settings: Settings, forecaster: Forecaster | None = None) -> tuple[faust.App, Worker]:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port is not None,
        web_bind="127.0.0.1",
        web_port=settings.web_port or 6066,
        stream_wait_empty=False,
        stream_buffer_maxsize=65536,
        producer_max_request_size=16 << 20,
        consumer_max_fetch_size=16 << 20,
    )
    worker = Worker(settings, app, forecaster or load_forecaster(settings.model, settings.device))

    for topic_name, venue in worker.topics.items():
        topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
        app.agent(topic, name=f"venue_{venue}")(_venue_agent(worker, venue))

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        await worker.on_assigned(assigned)

    @app.task
    async def _start() -> None:
        await worker.start()

    @app.timer(interval=1.0)
    async def _heartbeat() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(worker.io, worker.sink.heartbeat, settings.worker_id)

    @app.timer(interval=10.0)
    async def _progress() -> None:
        worker.log_progress()

    return app, worker


def _venue_agent(worker: Worker, venue: str) -> Any:
    async def agent(stream: Any) -> None:
        async for events in stream.take_events(worker.settings.take_max, within=worker.settings.take_within):
            await worker.handle(venue, events)

    agent.__name__ = f"venue_{venue}"
    return agent


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run until SIGINT/SIGTERM (faust's Worker owns the event loop and the signals)."""
    from faust.worker import Worker as FaustWorker

    app, _ = create_app(settings)
    FaustWorker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
