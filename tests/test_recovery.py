"""Bounded recovery on a real broker: a partition restored from the snapshot its committed offset
names, plus the records after it, is the very state a replay from the partition's first record
gives, and goes on exactly as it would; an unusable snapshot is skipped with a log line and the
partition rebuilt from its start. The commits here go through the worker's own transactions."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from faults import create_topic, publish, read_topic

from orderbook.snapshot import SnapshotError
from orderbook.windows import WindowConfig
from streams import snapshots
from streams.config import Settings
from streams.pipeline import VenuePipeline
from streams.recovery import restore
from streams.retry import Waits
from streams.txn import Out, PartitionCommitter

pytestmark = pytest.mark.realdata
VENUE = "kraken"
CAPTURE = "cryptofeed-captures/KRAKEN.ws.50.0.gz"


@pytest.fixture(scope="module")
def kraken(infra, shared_data):
    """The capture on a one-partition topic of this module's own."""
    from faults import capture_records

    topic = "rec.raw.kraken"
    create_topic(infra.kafka.bootstrap, topic, partitions=1)
    snapshots.ensure_topic(infra.kafka.bootstrap)  # as a worker does before its first snapshot
    publish(infra.kafka.bootstrap, topic, capture_records(VENUE, shared_data / CAPTURE, limit=4000))
    return topic, read_topic(infra.kafka.bootstrap, topic, committed_only=False)


def offline(records, upto: int) -> VenuePipeline:
    s = Settings()
    pipe = VenuePipeline(VENUE, s.window, max_bytes=s.max_record_bytes)
    for m in records[:upto]:
        pipe.process(m.key, m.value, m.partition, m.offset)
    return pipe


def commit(bootstrap: str, group: str, topic: str, offset: int, snapshot: bytes | None = None):
    """Commit `offset` for partition 0 as a worker does: in a transaction, with the snapshot, if any."""

    async def go():
        c = PartitionCommitter(bootstrap, group, topic, 0, Waits())
        await c.start()
        try:
            key = snapshots.state_key(group, topic, 0)
            return await c.commit([], 0, offset, None, (key, snapshot) if snapshot is not None else None)
        finally:
            await c.stop()

    return asyncio.run(go())


def do_restore(bootstrap: str, group: str, topic: str):
    s = Settings()
    return restore(bootstrap, group, topic, 0, VENUE, s.window, s.max_record_bytes)


def same_windows(a: VenuePipeline, b: VenuePipeline, records) -> int:
    n = 0
    for m in records:
        wa, ra = a.process(m.key, m.value, m.partition, m.offset)
        wb, rb = b.process(m.key, m.value, m.partition, m.offset)
        assert [r.reason for r in ra] == [r.reason for r in rb]
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb, strict=True):
            assert (x.symbol, x.offset, x.ts, x.n_seen) == (y.symbol, y.offset, y.ts, y.n_seen)
            assert np.array_equal(x.features, y.features, equal_nan=True) and np.array_equal(x.price, y.price)
            n += 1
    return n


def test_a_partition_restored_from_its_snapshot_goes_on_exactly_as_a_full_replay(infra, kraken):
    topic, records = kraken
    boot, group = infra.kafka.bootstrap, "rec-snapshot"
    snap = snapshots.encode(group, topic, 0, offline(records, 1500))[1]
    asyncio.run(_commit_with_pointer_carried(boot, group, topic, snap))
    got = do_restore(boot, group, topic)
    assert (got.committed, got.snapshot_offset, got.replayed) == (2500, 1500, 1000)
    assert same_windows(got.pipeline, offline(records, 2500), records[2500:]) > 20


def test_a_snapshot_of_another_group_is_not_used(infra, kraken):
    topic, records = kraken
    boot = infra.kafka.bootstrap
    commit(boot, "rec-other", topic, 1500, snapshots.encode("rec-snapshot", topic, 0, offline(records, 1500))[1])
    got = do_restore(boot, "rec-other", topic)
    assert got.pointer is not None and got.snapshot_offset is None and got.replayed == 1500


async def _commit_with_pointer_carried(boot: str, group: str, topic: str, snap: bytes) -> None:
    """A snapshot at 1500, then a batch to 2500 that carries its pointer, as a worker's does."""
    c = PartitionCommitter(boot, group, topic, 0, Waits())
    await c.start()
    try:
        pointer = await c.commit([], 0, 1500, None, (snapshots.state_key(group, topic, 0), snap))
        assert await c.commit([Out("rec.out", b"k", b"v")], 1500, 2500, pointer) == pointer
    finally:
        await c.stop()


def test_an_unusable_snapshot_is_skipped_with_a_log_line_and_the_partition_rebuilt_from_its_start(
    infra, kraken, caplog
):
    topic, records = kraken
    boot, group = infra.kafka.bootstrap, "rec-corrupt"
    commit(boot, group, topic, 1800, b"MTSNAP this is not a snapshot")
    with caplog.at_level(logging.WARNING, logger="streams.recovery"):
        got = do_restore(boot, group, topic)
    assert got.pointer is not None and got.snapshot_offset is None and got.replayed == 1800
    assert "skipped (corrupt" in caplog.text and "rebuilding from the first record" in caplog.text
    assert same_windows(got.pipeline, offline(records, 1800), records[1800:2600]) > 5


def test_a_snapshot_taken_with_other_windows_or_elsewhere_is_incompatible(kraken):
    topic, records = kraken
    _, value = snapshots.encode("g", topic, 0, offline(records, 300))
    s = Settings()
    kw = dict(group="g", topic=topic, partition=0, venue=VENUE, max_bytes=s.max_record_bytes)
    assert snapshots.decode(value, config=s.window, **kw).position == {0: 300}
    with pytest.raises(SnapshotError) as err:
        snapshots.decode(value, config=WindowConfig(every_events=64), **kw)
    assert err.value.reason == "incompatible"
    with pytest.raises(SnapshotError) as err:
        snapshots.decode(value, config=s.window, **{**kw, "partition": 1})
    assert err.value.reason == "incompatible"
    with pytest.raises(SnapshotError) as err:
        snapshots.decode(value[:-7], config=s.window, **kw)
    assert err.value.reason == "corrupt"


def test_the_pointer_in_the_commit_metadata_round_trips():
    p = snapshots.Pointer(3, 12345)
    assert snapshots.parse_pointer(p.metadata()) == p
    assert snapshots.parse_pointer("") is None and snapshots.parse_pointer("state=x@1") is None
    assert snapshots.parse_pointer("other=1;state=0@7") == snapshots.Pointer(0, 7)


def test_kafka_python_checks_record_crcs_in_c():
    """Recovery reads through kafka-python, which checks each record batch's CRC-32C in pure Python unless
    the `crc32c` C module is installed: restores and a transactional feed's reads spent half their time
    there (bench/recovery_bench.py, bench/pipeline_bench.py --transactional)."""
    from kafka.record import util

    assert util.crc32c_c is not None and util.calc_crc32c(b"123456789") == 0xE3069283  # RFC 3720's check value


def test_later_consumers_of_a_cluster_are_made_with_the_version_the_first_learned_and_read_the_same(infra, kraken):
    """streams/kafka_clients.py: kafka-python's version probe is made once a process and cluster (it made each
    restore's consumers ~0.1 s slower); a consumer given the learned version reads what a probing one reads."""
    from kafka import TopicPartition

    from streams import kafka_clients

    topic, records = kraken
    bootstrap = infra.kafka.bootstrap
    kafka_clients._versions.pop(bootstrap, None)
    tp = TopicPartition(topic, 0)

    def first_records(c) -> list[tuple[int, bytes]]:
        try:
            c.assign([tp])
            c.seek(tp, 0)
            got: list = []
            while len(got) < 500:
                got += c.poll(timeout_ms=5000).get(tp, [])
            return [(m.offset, m.value) for m in got[:500]]
        finally:
            c.close()

    probing = kafka_clients.consumer(bootstrap, enable_auto_commit=False)
    learned = kafka_clients._versions[bootstrap]
    assert probing.config["api_version"] == learned >= (2, 1)  # what a probe of this broker says
    given = kafka_clients.consumer(bootstrap, enable_auto_commit=False)
    assert given.config["api_version"] == learned
    want = [(m.offset, m.value) for m in records[:500]]
    assert first_records(probing) == first_records(given) == want
