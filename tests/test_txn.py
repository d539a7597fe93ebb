"""A partition's output in Kafka transactions, on a real broker: a reader with read_committed sees a
batch's records once its offset commit is in; a worker that takes the partition over fences the
previous owner, whose open transaction is aborted and whose next commit fails as Fenced."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from faults import create_topic, read_topic

from streams.offsets import committed
from streams.retry import Waits
from streams.snapshots import ensure_topic
from streams.txn import Fenced, Out, PartitionCommitter

SOURCE, OUT = "txn.source", "txn.out"


def outs(tag: str, n: int) -> list[Out]:
    return [Out(OUT, b"k", f"{tag}-{i}".encode()) for i in range(n)]


def test_a_new_owner_fences_the_old_one_and_its_open_transaction_never_becomes_visible(infra):
    boot, group = infra.kafka.bootstrap, "txn-fence"
    create_topic(boot, SOURCE, 1)
    create_topic(boot, OUT, 1)

    async def scenario() -> None:
        old = PartitionCommitter(boot, group, SOURCE, 0, Waits())
        await old.start()
        await old.commit(outs("first", 3), 0, 10, None)
        # the old owner is half way through a transaction when the new one starts
        producer: AIOKafkaProducer = await old._ready()
        await producer.begin_transaction()
        await (await producer.send(OUT, key=b"k", value=b"zombie"))
        new = PartitionCommitter(boot, group, SOURCE, 0, Waits())
        await new.start()
        with pytest.raises(ProducerFenced):
            await producer.commit_transaction()
        await new.commit(outs("second", 2), 10, 20, None)
        # the old owner tries its next batch: its fresh producer would fence the new owner, but the
        # committed offset has moved past where that batch began, so it gives up without sending
        with pytest.raises(Fenced):
            await old.commit(outs("late", 2), 10, 15, None)
        await new.commit(outs("third", 1), 20, 30, None)
        await new.stop()

    asyncio.run(scenario())
    values = [m.value.decode() for m in read_topic(boot, OUT)]
    assert values == ["first-0", "first-1", "first-2", "second-0", "second-1", "third-0"]
    assert committed(boot, group, SOURCE, [0])[0].offset == 30


def test_the_offset_commit_carries_the_snapshot_pointer(infra):
    boot, group = infra.kafka.bootstrap, "txn-pointer"
    create_topic(boot, SOURCE, 1)
    ensure_topic(boot)  # md.state, compacted, as a worker makes it

    async def scenario():
        c = PartitionCommitter(boot, group, SOURCE, 0, Waits())
        await c.start()
        try:
            p = await c.commit([], 0, 5, None, (b"key", b"state"))
            again = await c.commit([], 5, 9, p)
            return p, again
        finally:
            await c.stop()

    pointer, again = asyncio.run(scenario())
    assert pointer is not None and again == pointer
    got = committed(boot, group, SOURCE, [0])[0]
    assert got.offset == 9 and got.metadata == pointer.metadata()
