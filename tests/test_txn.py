"""A partition's output in Kafka transactions, on a real broker: a reader with read_committed sees a
batch's records once its offset commit is in; a worker that takes the partition over fences the
previous owner, whose open transaction is aborted and whose next commit fails as Fenced."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from faults import create_topic, read_topic

from streams.offsets import committed
from streams.retry import Waits
from streams.snapshots import ensure_topic
from streams.txn import Fenced, Out, PartitionCommitter, quiet_fenced_futures

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


@pytest.mark.parametrize("quiet", [False, True], ids=["sends", "worker"])
def test_a_batch_fenced_after_its_sends_leaves_no_send_failure_unretrieved(infra, quiet):
    """The owner's producer is still open when another worker takes the partition: its next batch's sends
    go out and fail with the transaction, fenced. Until 2026-12-03 asyncio logged each failed send as an
    ERROR "Future exception was never retrieved", a line per forecast, beside the one Fenced that says
    what happened. Two such futures remain whatever the batch's size: aiokafka's own (its transaction's
    waiter and its record batch's drain waiter), out of our reach; the worker's loop
    (`quiet_fenced_futures`) logs them at DEBUG and passes every other unhandled exception on."""
    boot, group, out = infra.kafka.bootstrap, f"txn-fenced-sends-{quiet}", f"txn.fenced-out-{quiet}"
    create_topic(boot, SOURCE, 1)
    create_topic(boot, out, 1)
    unretrieved: list[object] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: unretrieved.append(context.get("exception")))
        if quiet:
            quiet_fenced_futures(loop)
        old = PartitionCommitter(boot, group, SOURCE, 0, Waits())
        await old.start()
        await old.commit([Out(out, b"k", b"first")], 0, 10, None)
        new = PartitionCommitter(boot, group, SOURCE, 0, Waits())
        await new.start()
        fenced = False
        try:
            await old.commit([Out(out, b"k", f"late-{i}".encode()) for i in range(20)], 10, 20, None)
        except Fenced:
            fenced = True
        assert fenced
        await new.stop()
        await asyncio.sleep(0.1)  # the sends' done callbacks
        gc.collect()  # a future's unretrieved exception is reported when it is collected
        if quiet:  # anything else still reaches the handler that was there before
            other = loop.create_future()
            other.set_exception(ValueError("not a fencing"))
            del other
            gc.collect()

    asyncio.run(scenario())
    if quiet:
        assert len(unretrieved) == 1 and isinstance(unretrieved[0], ValueError), unretrieved
    else:
        assert len(unretrieved) <= 2, unretrieved
    assert [m.value for m in read_topic(boot, out)] == [b"first"]
