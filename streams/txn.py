"""Exactly-once output per source partition: a batch's forecasts, its dead letters, the
partition's state snapshot and its offset commit in one Kafka transaction.

One transactional producer per source partition, `transactional.id = <group>:<topic>:<partition>`
(Kafka's original exactly-once recipe, the one Kafka Streams used before KIP-447): the worker
that takes a partition over initializes the same id, which fences the previous owner's producer
and aborts its open transaction, so a zombie can neither commit offsets nor publish forecasts
for a partition it lost. aiokafka's TxnOffsetCommit carries no group generation, which is why
the id is per partition and not per worker.

A reader of `md.forecasts` or `md.dlq` with `isolation_level=read_committed` sees each
forecast and each dead letter once, in the order of its source partition, whatever crashed.

Failures: any error but fencing gives up the producer (an aiokafka producer in an unknown
transaction state is not reused), and the next attempt starts a fresh one, whose
initialization aborts the open transaction. A fresh producer also fences whoever holds the id
now, so before it sends anything the group's committed offset must still be where the batch
began: if it moved, another worker owns the partition (Fenced); if it is where the batch ends
and the failed attempt had reached its commit, that commit landed and is not sent again.
Fencing is the caller's to handle: the partition belongs to another worker now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced, TransactionalIdAuthorizationFailed

from streams.offsets import Committed, committed
from streams.retry import Waits, until_done
from streams.snapshots import Pointer, parse_pointer
from streams.topics import STATE_TOPIC

log = logging.getLogger(__name__)

RETRY_BACKOFF_MS = 20  # the transactional producer's retry pause: aiokafka's own for KAFKA-5477 (see _ready)

FENCED = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)


class Fenced(Exception):
    """Another worker has initialized this partition's transactional id: it owns the partition."""


@dataclass(frozen=True, slots=True)
class Out:
    """One record the batch publishes."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


class PartitionCommitter:
    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        partition: int,
        waits: Waits,
        *,
        max_request_size: int = 16 << 20,
        attempt_timeout: float = 60.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.tp = TopicPartition(topic, partition)
        self.transactional_id = f"{group}:{topic}:{partition}"
        self.waits = waits
        self.max_request_size = max_request_size
        self.attempt_timeout = attempt_timeout
        self._producer: AIOKafkaProducer | None = None
        self._committing = False
        self.transactions = 0
        self.what = f"kafka transaction of {topic}[{partition}]"

    async def start(self) -> None:
        """Initialize the transactional id (fences a previous owner); retried until it succeeds."""
        await until_done(self._ready, f"kafka producer of {self.tp.topic}[{self.tp.partition}]", self.waits,
                         fatal=FENCED)  # fmt: skip

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            # retry_backoff_ms: a transaction begun right after the last one's commit meets
            # CONCURRENT_TRANSACTIONS while the broker writes the last one's markers (KAFKA-5477);
            # aiokafka retries AddOffsetsToTxn after retry_backoff_ms, 100 ms by default, which
            # was most of a worker's latency (p50 250 ms at 10k messages/s, bench/pipeline_bench.py)
            p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, transactional_id=self.transactional_id,
                                 enable_idempotence=True, acks="all", linger_ms=2, max_batch_size=1 << 20,
                                 max_request_size=self.max_request_size, retry_backoff_ms=RETRY_BACKOFF_MS)  # fmt: skip
            try:
                await asyncio.wait_for(p.start(), self.attempt_timeout)
            except BaseException:
                await self._close(p)
                raise
            self._producer = p
        return self._producer

    async def stop(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            await self._close(p)

    @staticmethod
    async def _close(p: AIOKafkaProducer) -> None:
        # stop() aborts nothing by itself and may wait on an unreachable broker: bounded
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(p.stop(), 10.0)

    async def commit(self, records: Sequence[Out], start: int, next_offset: int, pointer: Pointer | None,
                     snapshot: tuple[bytes, bytes] | None = None) -> Pointer | None:  # fmt: skip
        """Publish `records` (and the snapshot (key, value), if any) and commit the source offset
        `next_offset` with the newest snapshot's pointer, atomically; `start` is the committed
        offset the batch began from. Returns the pointer now committed. Retried until done;
        raises Fenced."""
        committing = False

        async def attempt() -> Pointer | None:
            nonlocal committing
            if self._producer is None:
                # A fresh producer fences whoever holds the id now. Asked before (so that a worker
                # that lost the partition does not disturb its owner) and after (once this producer
                # holds the id, the last transaction's markers are written and the answer is final;
                # before, a commit that just returned may not read back yet: only an offset past
                # ours is conclusive): is the committed offset still where we left it?
                for fresh in (False, True):
                    if fresh:
                        await asyncio.wait_for(self._ready(), self.attempt_timeout)
                    c = await self._committed()
                    if committing and c.offset == next_offset:
                        log.info("%s: the commit to offset %d had landed before its reply was lost",
                                 self.transactional_id, next_offset)  # fmt: skip
                        return parse_pointer(c.metadata)
                    if c.offset > start or (fresh and c.offset != start):
                        raise ProducerFenced(f"the committed offset is {c.offset}; this batch began at {start}")
            committing = False
            try:
                return await asyncio.wait_for(self._transaction(records, next_offset, pointer, snapshot),
                                              self.attempt_timeout)  # fmt: skip
            except FENCED:
                raise
            except BaseException:
                committing = self._committing
                await self.stop()
                raise

        try:
            return await until_done(attempt, self.what, self.waits, fatal=FENCED)
        except FENCED as err:
            await self.stop()
            raise Fenced(f"{self.transactional_id}: {type(err).__name__}: {err}") from None

    async def _committed(self) -> Committed:
        got = await asyncio.to_thread(committed, self.bootstrap, self.group, self.tp.topic, [self.tp.partition])
        return got[self.tp.partition]

    async def _transaction(
        self,
        records: Sequence[Out],
        next_offset: int,
        pointer: Pointer | None,
        snapshot: tuple[bytes, bytes] | None,
    ) -> Pointer | None:
        p = await self._ready()
        self._committing = False
        await p.begin_transaction()
        sent: list[asyncio.Future] = []
        try:
            for r in records:
                sent.append(await p.send(r.topic, key=r.key, value=r.value, headers=list(r.headers) or None))
            if snapshot is not None:
                meta = await (await p.send(STATE_TOPIC, key=snapshot[0], value=snapshot[1]))
                pointer = Pointer(meta.partition, meta.offset)
            await p.send_offsets_to_transaction(
                {self.tp: (next_offset, pointer.metadata() if pointer is not None else "")}, self.group
            )
            self._committing = True  # from here on, a failure leaves it unknown whether the commit landed
            await p.commit_transaction()
            for fut in sent:  # delivered before the commit could succeed; a failure would have failed it
                await fut
        except BaseException:
            # the transaction's failure is the one raised; its sends fail with it (ProducerFenced on each), and
            # unretrieved, asyncio logs each as an ERROR "Future exception was never retrieved"
            for fut in sent:
                fut.add_done_callback(_retrieved)
            raise
        self.transactions += 1
        return pointer


def _retrieved(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


UNRETRIEVED = "Future exception was never retrieved"


def quiet_fenced_futures(loop: asyncio.AbstractEventLoop) -> None:
    """Leave out of the log the fencing errors aiokafka's own futures hold when nobody retrieves them.

    A fenced transaction leaves two such futures (its transaction's waiter and its record batch's drain
    waiter: tests/test_txn.py), and asyncio logs each as an ERROR with a traceback when it is collected:
    two tracebacks for every partition a rebalance moves away from a worker still committing it, beside
    the one WARNING that says what happened (the commit raised Fenced). Those go to DEBUG; every other
    unhandled exception goes to the handler that was there before."""
    before = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == UNRETRIEVED and isinstance(context.get("exception"), FENCED):
            log.debug("%s: %r (the commit that met it raised Fenced)", UNRETRIEVED, context["exception"])
        elif before is not None:
            before(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
