"""Per-partition state snapshots on the compacted topic `md.state`, and the pointer to the newest.

Why: without them, a worker that takes over a partition replays it from offset 0 to rebuild
its books (7k records/s: an hour for a busy day). With them it loads the newest snapshot and
replays only what came after it.

A snapshot is taken by the worker every `snapshot_every` records or seconds of a partition and
written in the same Kafka transaction as the forecasts and the offset commit of the batch that
ends where the snapshot stands (streams/txn.py). The commit's metadata names it:

    state=<md.state partition>@<md.state offset>        (empty: no snapshot yet)

so "the newest snapshot at or before the committed offset" is found in one read, whatever the
topic's length, and can never be one from a transaction that did not commit.

Record on `md.state` (key `<group>/<topic>/<partition>`: compaction keeps the newest per key),
a msgpack map, layout 1:

    layout     1
    group      the consumer group (the Faust app id)
    topic      the source topic, e.g. md.raw.binance
    partition  the source partition
    offset     the next source offset the state has not seen
    venue      the venue of the feed
    window     the WindowConfig fields, in declaration order (a worker with other windows
               cannot use the state)
    max_bytes  the record size limit the pipeline enforced
    taken_ns   wall-clock time of the snapshot
    state      orderbook.snapshot.dump_state(VenueWindows): books, sync, features, window rings,
               headlines (its own versioned layout; never pickle); on the native path,
               dump_state(NativeVenueWindows.__getstate__()): the same, each compiled part as the
               plain values of its own versioned __getstate__
    path       "native" on the native path (orderbook/native/venue_windows.py); absent: the
               reference's VenueWindows (every record written before the native path had one)

A snapshot that cannot be read (corrupt, another layout, another class layout, another window
config, another partition) is skipped with a log line: the partition is then rebuilt from its
first record, as it would be without snapshots. A snapshot of the other path is converted
(orderbook/native/convert.py) and continues exactly as on its own: a native one read by a partition
on the reference path (one whose native path panicked again and again, streams/partition.py, or a
worker run with MT_NATIVE=0), a reference one read on the native path (the next owner of such a
partition, or MT_NATIVE=1 again).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from typing import NamedTuple

import msgpack
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from orderbook.native.convert import native_windows, reference_windows
from orderbook.native.venue_windows import NativeVenueWindows
from orderbook.snapshot import SnapshotError, load_state
from orderbook.venue_windows import VenueWindows
from orderbook.windows import WindowConfig
from streams import kafka_clients
from streams.pipeline import VenuePipeline
from streams.topics import STATE_TOPIC

log = logging.getLogger(__name__)

LAYOUT = 1
NATIVE, REFERENCE = "native", "reference"  # the record's `path`: which pipeline's state it holds
STATE_PARTITIONS = 8
# compaction keeps the newest snapshot per key; small segments let it run soon
STATE_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
    "max.message.bytes": str(16 << 20),
}

_POINTER = re.compile(r"(?:^|;)state=(\d+)@(\d+)(?:;|$)")


class Pointer(NamedTuple):
    partition: int
    offset: int

    def metadata(self) -> str:
        return f"state={self.partition}@{self.offset}"


def parse_pointer(metadata: str) -> Pointer | None:
    m = _POINTER.search(metadata or "")
    return Pointer(int(m[1]), int(m[2])) if m else None


def state_key(group: str, topic: str, partition: int) -> bytes:
    return f"{group}/{topic}/{partition}".encode()


def _window_fields(config: WindowConfig) -> list[object]:
    return [getattr(config, f.name) for f in dataclasses.fields(config)]


def encode(group: str, topic: str, partition: int, pipe: VenuePipeline) -> tuple[int, bytes]:
    """(the offset it stands at, the record value) of a partition's pipeline."""
    return capture(group, topic, partition, pipe)()


def capture(group: str, topic: str, partition: int, pipe: VenuePipeline) -> Callable[[], tuple[int, bytes]]:
    """`encode` in two steps: the state captured now (`VenuePipeline.capture_state`), the record
    value made when the returned function is called, from another thread while the pipeline goes on."""
    offset = pipe.position.get(partition, 0)
    state = pipe.capture_state()
    doc = {
        "layout": LAYOUT,
        "group": group,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "venue": pipe.venue,
        "window": _window_fields(pipe.core.config),
        "max_bytes": pipe.max_bytes,
        "taken_ns": time.time_ns(),
    }
    if pipe.native:
        doc["path"] = NATIVE

    def value() -> tuple[int, bytes]:
        # the native path's parts are compiled: their own __getstate__ values go through the codec
        return offset, msgpack.packb({**doc, "state": state()}, use_bin_type=True)

    return value


def decode(value: bytes, *, group: str, topic: str, partition: int, venue: str, config: WindowConfig,
           max_bytes: int | None, native: bool | None = None) -> VenuePipeline:  # fmt: skip
    """The pipeline a snapshot holds, positioned at its offset; SnapshotError when it is not one this
    worker can continue from. `native`: the path to continue on (None: the venue's, `native_choice`)."""
    try:
        doc = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except Exception as err:
        raise SnapshotError("corrupt", f"not a msgpack snapshot record: {err}") from None
    if not isinstance(doc, dict) or doc.get("layout") != LAYOUT:
        got = doc.get("layout") if isinstance(doc, dict) else type(doc).__name__
        raise SnapshotError("incompatible", f"snapshot record layout {got!r}, this worker reads {LAYOUT}")
    where = (doc.get("group"), doc.get("topic"), doc.get("partition"), doc.get("venue"))
    if where != (group, topic, partition, venue):
        raise SnapshotError("incompatible", f"snapshot of {where}, wanted {(group, topic, partition, venue)}")
    if doc.get("window") != _window_fields(config) or doc.get("max_bytes") != max_bytes:
        raise SnapshotError(
            "incompatible",
            f"snapshot taken with windows {doc.get('window')} and record limit {doc.get('max_bytes')}; this worker "
            f"has {_window_fields(config)} and {max_bytes}",
        )
    offset, state = doc.get("offset"), doc.get("state")
    if not isinstance(offset, int) or offset < 0 or not isinstance(state, bytes):
        raise SnapshotError("corrupt", "snapshot record without a valid offset and state")
    pipe = VenuePipeline(venue, config, max_bytes=max_bytes, native=native)
    path = doc.get("path", REFERENCE)
    if path not in (NATIVE, REFERENCE):
        raise SnapshotError("incompatible", f"snapshot of an unknown path {path!r:.40}")
    loaded = load_state(state)
    if path == NATIVE:
        try:
            pipe.core = NativeVenueWindows.from_state(loaded) if pipe.native else reference_windows(loaded)
        except ValueError as err:
            raise SnapshotError("incompatible", f"native snapshot state: {err}") from None
        if pipe.core.venue != venue:
            raise SnapshotError("corrupt", f"native snapshot state of {pipe.core.venue}, not {venue}")
        if not pipe.native:
            log.info("%s[%d]: the native snapshot at offset %d read on the reference path", topic, partition, offset)
    else:
        if not isinstance(loaded, VenueWindows) or loaded.venue != venue:
            raise SnapshotError("corrupt", f"snapshot state is a {type(loaded).__name__}, not {venue}'s VenueWindows")
        if not pipe.native:
            pipe.core = loaded
        else:
            try:
                pipe.core = native_windows(loaded)
            except ValueError as err:
                raise SnapshotError("incompatible", f"reference snapshot state: {err}") from None
        if pipe.native:
            log.info("%s[%d]: the reference snapshot at offset %d read on the native path", topic, partition, offset)
    pipe.position[partition] = offset
    return pipe


def fetch(bootstrap: str, pointer: Pointer, timeout: float = 30.0) -> bytes:
    """The value of the `md.state` record a pointer names: SnapshotError("missing") when the topic
    no longer holds it, KafkaTimeoutError when the broker does not answer (the caller retries).
    Read uncommitted: the pointer comes from a committed offset, so its transaction committed; a
    read-committed consumer would wait behind any other worker's open transaction there."""
    c = kafka_clients.consumer(bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=32 << 20,
                               fetch_max_bytes=64 << 20)  # fmt: skip
    try:
        tp = TopicPartition(STATE_TOPIC, pointer.partition)
        c.assign([tp])
        first, end = c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp]
        if not first <= pointer.offset < end:
            raise SnapshotError("missing", f"{STATE_TOPIC}[{pointer.partition}] holds [{first}, {end}), not "
                                           f"{pointer.offset}")  # fmt: skip
        c.seek(tp, pointer.offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in c.poll(timeout_ms=1000).get(tp, []):
                if m.offset == pointer.offset:
                    return m.value
                raise SnapshotError("missing", f"{STATE_TOPIC}[{pointer.partition}]@{pointer.offset} is gone")
        raise KafkaTimeoutError(f"{STATE_TOPIC}[{pointer.partition}]@{pointer.offset}: no answer in {timeout:.0f} s")
    finally:
        c.close()


def ensure_topic(bootstrap: str, replication: int = 1) -> None:
    """Create `md.state` as a compacted topic if it does not exist (auto-creation would make it a
    deleting one: snapshots would expire with retention)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        if STATE_TOPIC in admin.list_topics():
            return
        try:
            topic = NewTopic(STATE_TOPIC, STATE_PARTITIONS, replication, topic_configs=STATE_TOPIC_CONFIG)
            admin.create_topics([topic])
            log.info("created %s (compacted, %d partitions)", STATE_TOPIC, STATE_PARTITIONS)
        except TopicAlreadyExistsError:
            pass  # another worker was first
    finally:
        admin.close()
