"""A time range of a raw topic (`md.raw.<venue>`), read back from Kafka as the worker would consume it:
what `megatrading adapt --recent kafka:VENUE --since T [--until T]` trains on.

The range is cut by record timestamps through Kafka's time index (`offsets_for_times`): per partition,
from the first offset whose timestamp is at or after `since` to the first at or after `until` (the
partition's end where there is none). Kafka's answer assumes timestamps that grow with the offsets,
which holds for a feed handler stamping records as it sends them (CreateTime) or for LogAppendTime; a
producer that back-dates records makes the cut by offset, not by each record's own time.

Partitions are read one after the other, each in offset order: a book's messages are all in one
partition (the topic is keyed by symbol), so every book sees its messages in the order the worker
did. Only committed records are read (read_committed), as the worker reads them. A frame (`replay`
and `simulate --kafka` send up to 64 messages a record: orderbook/frames.py) is split into its
messages, as the worker splits it; a frame that cannot be split is skipped and counted, where the
worker dead-letters it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from orderbook.frames import FrameError, messages_of
from orderbook.venues.base import RawRecord
from streams.topics import RAW_ISOLATION

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class OffsetRange:
    partition: int
    start: int  # the first offset read
    stop: int  # the first offset not read

    @property
    def records(self) -> int:
        """An upper bound: transaction markers and aborted records take offsets too."""
        return max(0, self.stop - self.start)


def _consumer(bootstrap: str):  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=RAW_ISOLATION,
                         allow_auto_create_topics=False, max_partition_fetch_bytes=16 << 20)  # fmt: skip


def offset_ranges(bootstrap: str, topic: str, since_ms: int, until_ms: int | None = None) -> list[OffsetRange]:
    """Per partition of `topic`, the offsets whose records fall in [since_ms, until_ms) (module docstring);
    until_ms None: up to the partition's last committed record. A topic that does not exist raises."""
    from kafka import TopicPartition

    if until_ms is not None and until_ms <= since_ms:
        raise ValueError(f"an empty time range: until ({until_ms} ms) is not after since ({since_ms} ms)")
    consumer = _consumer(bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"topic {topic} not found at {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = consumer.end_offsets(tps)  # read committed: the last stable offsets
        starts = consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        stops = consumer.offsets_for_times(dict.fromkeys(tps, until_ms)) if until_ms is not None else {}
        out = []
        for tp in tps:
            start = starts[tp].offset if starts[tp] is not None else ends[tp]
            found = stops.get(tp)
            stop = min(found.offset, ends[tp]) if found is not None else ends[tp]
            out.append(OffsetRange(tp.partition, start, max(start, stop)))
        return out
    finally:
        consumer.close()


def read_range(
    bootstrap: str, topic: str, ranges: list[OffsetRange], timeout: float = READ_TIMEOUT_S
) -> Iterator[RawRecord]:
    """The committed records of `ranges`, partition after partition, each in offset order, as RawRecords
    (key, value). A read that makes no progress for `timeout` seconds raises TimeoutError."""
    from kafka import TopicPartition

    wanted = [r for r in ranges if r.stop > r.start]
    if not wanted:
        return
    consumer = _consumer(bootstrap)
    try:
        for r in wanted:
            tp = TopicPartition(topic, r.partition)
            consumer.assign([tp])
            consumer.seek(tp, r.start)
            deadline = time.monotonic() + timeout
            while consumer.position(tp) < r.stop:
                if time.monotonic() > deadline:
                    where = f"{topic}[{r.partition}]"
                    raise TimeoutError(f"{where}: no progress towards offset {r.stop} in {timeout:.0f} s")
                for batch in consumer.poll(timeout_ms=500).values():
                    if batch:
                        deadline = time.monotonic() + timeout
                    for rec in batch:
                        if rec.offset < r.stop:
                            yield RawRecord(rec.key, rec.value)
    finally:
        consumer.close()


@dataclass
class Unframed:
    """The messages of `records` one RawRecord each (module docstring); `broken`: frames skipped."""

    records: Iterable[RawRecord]
    venue: str = ""
    broken: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[RawRecord]:
        for rec in self.records:
            try:
                messages = messages_of(rec.value, self.venue)
            except FrameError as err:
                self.broken.append(str(err))
                log.warning("a frame that cannot be split is skipped (the worker dead-letters it): %s", err)
                continue
            for m in messages:
                yield RawRecord(rec.key, m)
