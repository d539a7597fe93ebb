"""Bringing one partition's pipeline to the group's committed offset: the newest snapshot at or
before it (streams/snapshots.py), then the records after the snapshot replayed without
emitting (their forecasts were published: they are below the committed offset).

Blocking code (kafka-python), run in a worker thread, one partition at a time per call: the
worker restores the partitions it is given side by side, so one does not wait for another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError

from orderbook.snapshot import SnapshotError
from orderbook.windows import WindowConfig
from streams import kafka_clients, snapshots
from streams.offsets import committed
from streams.pipeline import VenuePipeline
from streams.topics import RAW_ISOLATION

log = logging.getLogger(__name__)

REPLAY_BATCH = 2000  # records replayed per process_batch call (the worker's take_max): one native call each


def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, stall_timeout: float = 60.0
) -> Iterator[ConsumerRecord]:
    """The records of [start, end) of one partition, in order. Records deleted by retention are
    missing from the front: a warning says from where the range really starts. KafkaTimeoutError
    when nothing arrives for `stall_timeout` seconds (a kafka-python consumer does not always
    come back from a broker restart: the caller starts over with a new one)."""
    if end <= start:
        return
    c = _consumer(bootstrap)
    try:
        yield from _read(c, TopicPartition(topic, partition), start, end, stall_timeout)
    finally:
        c.close()


# A poll waits until a record comes or its timeout: a range of commit markers alone returns none, and at
# the partition's end nothing comes after it, so each poll of such a read would wait its whole timeout.
# The position moves past the markers with the fetch, which the loop sees after a short poll.
READER_POLL_MS = 10


class RangeReader:
    """`read_range` of one partition through one consumer kept open between reads. A feed handler that
    writes in transactions leaves a commit marker, an offset with no record, after every transaction,
    so nearly every batch of such a feed has offsets to look at. A consumer made for each read cost
    3.4 s a batch on a test stream, one read through this one costs a fetch. A failed read closes the
    consumer: the next read makes a new one."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        self.bootstrap, self.tp = bootstrap, TopicPartition(topic, partition)
        self._c: KafkaConsumer | None = None

    def read(self, start: int, end: int, stall_timeout: float = 60.0) -> list[ConsumerRecord]:
        if end <= start:
            return []
        if self._c is None:
            self._c = _consumer(self.bootstrap)
        try:
            return list(_read(self._c, self.tp, start, end, stall_timeout, poll_ms=READER_POLL_MS))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None


def _consumer(bootstrap: str) -> KafkaConsumer:
    return kafka_clients.consumer(bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                  isolation_level=RAW_ISOLATION, max_partition_fetch_bytes=16 << 20,
                                  fetch_max_bytes=64 << 20)  # fmt: skip


def _read(
    c: KafkaConsumer, tp: TopicPartition, start: int, end: int, stall_timeout: float, poll_ms: int = 1000
) -> Iterator[ConsumerRecord]:
    c.assign([tp])
    first = c.beginning_offsets([tp])[tp]
    if first > start:
        log.warning("%s[%d]: records before offset %d were deleted (retention): the books of this partition are "
                    "rebuilt from there and may differ from the venue's", tp.topic, tp.partition, first)  # fmt: skip
    c.seek(tp, max(start, first))
    last_progress = time.monotonic()
    while c.position(tp) < end:
        got = c.poll(timeout_ms=poll_ms).get(tp, [])
        if got:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout:  # the broker went away: the caller retries
            raise KafkaTimeoutError(f"{tp.topic}[{tp.partition}]: no records for {stall_timeout:.0f} s at offset "
                                    f"{c.position(tp)} of [{start}, {end})")  # fmt: skip
        for m in got:
            if m.offset >= end:
                return
            yield m


@dataclass
class Restored:
    pipeline: VenuePipeline
    committed: int  # the group's committed offset: where processing resumes
    pointer: snapshots.Pointer | None  # the snapshot the commit named (None: there was none)
    snapshot_offset: int | None  # where the snapshot used stood (None: rebuilt from the start)
    replayed: int  # records replayed after it
    seconds: float

    def describe(self, topic: str, partition: int) -> str:
        src = f"snapshot at offset {self.snapshot_offset}" if self.snapshot_offset is not None else "the start"
        return (f"{topic}[{partition}]: restored to offset {self.committed} from {src}, {self.replayed} records "
                f"replayed, in {self.seconds:.2f} s")  # fmt: skip


def restore(
    bootstrap: str,
    group: str,
    topic: str,
    partition: int,
    venue: str,
    config: WindowConfig,
    max_bytes: int | None,
    native: bool | None = None,
) -> Restored:
    """The pipeline of a partition as the group's committed offset implies it, on the path `native`
    says (None: the venue's). Call it only after the partition's transactional producer has been
    initialized (streams/txn.py): that fences the previous owner and settles its open transaction, so
    the committed offset read here is final."""
    t0 = time.perf_counter()
    c = committed(bootstrap, group, topic, [partition])[partition]
    pointer = snapshots.parse_pointer(c.metadata)
    pipe: VenuePipeline | None = None
    if pointer is not None:
        try:
            value = snapshots.fetch(bootstrap, pointer)
            pipe = snapshots.decode(value, group=group, topic=topic, partition=partition, venue=venue, config=config,
                                    max_bytes=max_bytes, native=native)  # fmt: skip
            at = pipe.position[partition]
            if at > c.offset:  # never written so (the pointer is committed with its offset): distrust it
                raise SnapshotError("ahead", f"snapshot at offset {at} is past the committed offset {c.offset}")
        except SnapshotError as err:
            log.warning("%s[%d]: snapshot %s skipped (%s: %s); rebuilding from the first record", topic, partition,
                        pointer.metadata(), err.reason, err)  # fmt: skip
            pipe = None
    start = pipe.position[partition] if pipe is not None else 0
    snap_at = start if pipe is not None else None
    if pipe is None:
        pipe = VenuePipeline(venue, config, max_bytes=max_bytes, native=native)
    n = 0
    chunk: list[ConsumerRecord] = []
    for m in read_range(bootstrap, topic, partition, start, c.offset):
        chunk.append(m)
        if len(chunk) >= REPLAY_BATCH:
            pipe.process_batch(chunk, warm=True)
            n += len(chunk)
            chunk.clear()
    pipe.process_batch(chunk, warm=True)
    n += len(chunk)
    pipe.position[partition] = c.offset  # also where retention left nothing to replay
    return Restored(pipe, c.offset, pointer, snap_at, n, time.perf_counter() - t0)
