"""Batch delivery: the raw topics' records reach the worker a fetch at a time, past Faust's per-record path.

Faust delivers a record through its conductor: per record it builds a `Message`, runs
`Service.wait_first(callback(message), suspend_flow.wait())` (two tasks and an `asyncio.wait`), puts
an `Event` on the stream's channel and, for `take_events`, takes it off again. That costs about 60 us a
record on this machine before the agent sees it (bench/faust_ceiling.py, one run: an agent that only
counts receives 16.3k records/s, this delivery 471k, a bare aiokafka `getmany` loop 596k), more than
all of our own work per message. The worker needs none of it for the raw topics: it commits their offsets
itself, in each partition's transaction (streams/partition.py), and keeps no Faust table or
acknowledgement.

So `BatchConsumer` is Faust's aiokafka consumer with one method replaced: its fetch loop hands each
partition's fetched records (aiokafka's ConsumerRecords, as they came) to a coroutine registered for
the topic, once per fetch. Everything else stays Faust's: the group, rebalances (flow stops, seeks,
generations), the consumer thread, the monitor's end offsets. A topic with no handler registered
goes the usual way, record by record, to its agents. What the loop keeps from Faust's own
(`Consumer._drain_messages`, faust-streaming 0.15): a fetch waits while the flow is stopped; a fetch
made while it stopped is dropped and the consumer seeks back to the committed offsets; the rest of
a fetch is dropped when the generation changes mid-way (the partitions' new owners read it from their
committed offsets; a partition that stays here skips what it already processed and reads a gap back
itself, streams/partition.py); only active or buffered partitions are delivered.

    app = BatchApp("app-id", broker=..., broker_max_poll_records=2000)
    app.deliver_batches(app.topic("md.raw.binance", acks=False), handler)  # handler(tp, records)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, ConsumerT, TopicT

from streams import failpoints
from streams.topics import RAW_ISOLATION

# a partition's records of one fetch, in offset order: aiokafka ConsumerRecords (key, value, partition, offset...)
BatchHandler = Callable[[TP, Sequence[Any]], Awaitable[None]]

# How long the broker may hold a fetch that finds no new data. aiokafka keeps one fetch in flight per
# broker, and a partition whose buffered records are still being handed out is left out of it: so
# while a quiet (or caught-up) partition's fetch waits, a busy partition that drained its buffer
# waits too. Faust fixes this at 1500 ms (no setting): stalls of 1.3-1.5 s between batches in
# bench/faust_ceiling.py. 20 ms bounds the stall well inside the worker's latency budget; an idle
# worker sends one empty fetch per broker every 20 ms.
FETCH_WAIT_MS = 20


class BatchConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer's fetch wait set to FETCH_WAIT_MS and its isolation
    level to RAW_ISOLATION (streams/topics.py; read uncommitted, Faust's default outside its own
    transactions, the worker took an aborted transaction's records for messages: a test stream's
    aborted retries corrupted every Kraken book, 125 of 128 forecasts lost)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read when the consumer starts (AIOKafkaConsumer.start builds its Fetcher from them); Faust
        # passes 1500 and read_uncommitted and offers no setting, so the attributes are the only way in
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS
        consumer._isolation_level = RAW_ISOLATION
        return consumer


class BatchConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer whose fetch loop delivers a registered topic's records in batches."""

    def __init__(self, *args: Any, batch_handlers: dict[str, BatchHandler], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers = batch_handlers

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by Faust's Fetcher
        handlers = self.batch_handlers
        callback = self.callback
        to_message = self._to_message
        track_end = self.app.monitor.track_tp_end_offset
        read_offset = self._read_offset
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # a fetch from before a rebalance: its owners read it again
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    track_end(tp, self.highwater(tp))
                    handler = handlers.get(tp.topic)
                    if handler is not None:
                        if failpoints.hit("fetch_stall"):  # the upstream stall, for the watchdog's test
                            await self._stopped.wait()
                        await handler(tp, batch)
                    else:
                        for record in batch:
                            await self.wait_first(callback(to_message(tp, record)), self.suspend_flow.wait())
                    read_offset[tp] = batch[-1].offset
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchApp(faust.App):
    """A Faust app whose consumer is a BatchConsumer: `deliver_batches(topic, handler)` takes a topic
    off Faust's per-record path (no agent: the handler gets every fetch of it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.batch_handlers: dict[str, BatchHandler] = {}
        super().__init__(*args, **kwargs)

    def deliver_batches(self, topic: TopicT, handler: BatchHandler) -> None:
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)  # the conductor subscribes to it, as it would for an agent's topic

    def _new_consumer(self) -> ConsumerT:
        return BatchConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
            batch_handlers=self.batch_handlers,
        )
