"""The stall watchdog (streams/stall.py): which partitions stood still long enough to be probed, and the
probe's answer on a real broker where offsets hold more than records (transaction markers, an aborted
batch). The restart in place itself is test_faults': a worker whose consumer stops fetching."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from aiokafka import AIOKafkaProducer
from faults import create_topic

from streams import failpoints
from streams.stall import EndProbe, StallWatch

A, B = ("md.raw.x", 0), ("md.raw.x", 1)


def test_a_partition_is_idle_once_its_position_stood_still_for_stall_s():
    watch = StallWatch(10.0)
    assert watch.idle(0.0, {A: 5, B: 7}, excused=False) == []
    assert watch.idle(6.0, {A: 5, B: 9}, excused=False) == []  # B moved at 6
    idle = watch.idle(10.0, {A: 5, B: 9}, excused=False)
    assert [(i.key, i.position, i.seconds) for i in idle] == [(A, 5, 10.0)]
    assert [i.key for i in watch.idle(16.0, {A: 5, B: 9}, excused=False)] == [A, B]


def test_an_outage_waited_out_restarts_every_clock():
    watch = StallWatch(10.0)
    watch.idle(0.0, {A: 5}, excused=False)
    assert watch.idle(9.0, {A: 5}, excused=True) == []
    assert watch.idle(18.0, {A: 5}, excused=False) == []  # 9 s since the outage ended
    assert [i.key for i in watch.idle(19.0, {A: 5}, excused=False)] == [A]


def test_a_restoring_partition_is_never_idle_and_its_clock_starts_once_restored():
    watch = StallWatch(10.0)
    watch.idle(0.0, {A: None}, excused=False)
    assert watch.idle(30.0, {A: None}, excused=False) == []
    assert watch.idle(31.0, {A: 0}, excused=False) == []
    assert [i.key for i in watch.idle(41.0, {A: 0}, excused=False)] == [A]


def test_a_cleared_partition_waits_stall_s_again_and_a_partition_given_away_is_forgotten():
    watch = StallWatch(10.0)
    watch.idle(0.0, {A: 5, B: 1}, excused=False)
    assert len(watch.idle(10.0, {A: 5, B: 1}, excused=False)) == 2
    watch.cleared(A, 10.0)
    assert [i.key for i in watch.idle(15.0, {A: 5}, excused=False)] == []  # B given away
    assert watch.idle(19.0, {A: 5, B: 1}, excused=False) == []  # B back: a fresh clock
    assert [i.key for i in watch.idle(20.0, {A: 5, B: 1}, excused=False)] == [A]


def test_the_probe_sees_records_past_a_position_and_not_a_transactions_marker_or_an_aborted_batch(infra):
    boot, topic = infra.kafka.bootstrap, "stall.probe"
    create_topic(boot, topic, 3)
    # partition 0: plain records; 1: one committed transaction (its marker ends the log); 2: one record,
    # then an aborted transaction and its marker

    async def produce() -> None:
        plain = AIOKafkaProducer(bootstrap_servers=boot)
        txn = AIOKafkaProducer(bootstrap_servers=boot, transactional_id="stall-probe")
        await plain.start()
        await txn.start()
        try:
            for value in (b"r0", b"r1"):
                await plain.send_and_wait(topic, value, key=b"k", partition=0)
            async with txn.transaction():
                await txn.send_and_wait(topic, b"t0", key=b"k", partition=1)
            await plain.send_and_wait(topic, b"plain", key=b"k", partition=2)
            await txn.begin_transaction()
            await txn.send_and_wait(topic, b"aborted", key=b"k", partition=2)
            await txn.abort_transaction()
        finally:
            await txn.stop()
            await plain.stop()

    asyncio.run(produce())
    probe = EndProbe(boot)  # read committed, as the worker reads the raw topics
    try:
        got = probe.pending({(topic, 0): 1, (topic, 1): 0, (topic, 2): 0})
        assert got == {(topic, 0): True, (topic, 1): True, (topic, 2): True}
        # past the last record: the offsets after it are a marker (1), an aborted record and its marker (2)
        got = probe.pending({(topic, 0): 2, (topic, 1): 1, (topic, 2): 1})
        assert got == {(topic, 0): False, (topic, 1): False, (topic, 2): False}
    finally:
        probe.close()
    # read uncommitted (Faust's default isolation, not the worker's), the aborted record counts
    probe = EndProbe(boot, isolation_level="read_uncommitted")
    try:
        assert probe.pending({(topic, 1): 1, (topic, 2): 1}) == {(topic, 1): False, (topic, 2): True}
    finally:
        probe.close()


def test_a_failpoint_fires_at_its_count_once_per_marker(tmp_path, monkeypatch):
    marker = tmp_path / "fired"
    monkeypatch.setenv(failpoints.ENV, f"stall=3:{marker}")
    fp = importlib.reload(failpoints)
    try:
        assert [fp.hit("stall") for _ in range(5)] == [False, False, True, False, False]
        assert not fp.hit("unarmed")
        fp._calls.clear()  # a second process (the worker restarted) with the same environment
        assert not any(fp.hit("stall") for _ in range(5))
    finally:
        monkeypatch.delenv(failpoints.ENV)
        importlib.reload(failpoints)


@pytest.mark.parametrize("text", ["stall", "stall=0:/tmp/x", "stall=2", "=1:/tmp/x", "stall=a:/tmp/x"])
def test_a_malformed_failpoint_is_named(text):
    with pytest.raises(ValueError, match="NAME=AFTER:MARKER"):
        failpoints.parse(text)


def test_a_probe_that_hangs_is_given_up_with_a_line_and_the_next_check_asks_a_new_one(monkeypatch, caplog):
    """The probe runs on a thread of its own with a bound: one held up (a broker that does not answer, a
    call that never returns) must not keep the watchdog waiting with it, as it would if it queued on
    the loop's default executor behind calls an outage holds up."""
    import threading
    from types import SimpleNamespace

    import streams.app as app_module
    from model.serving.baseline import BaselineForecaster
    from streams.config import Settings

    _, worker = app_module.create_app(Settings(bootstrap="127.0.0.1:9", venues=("kraken",)), BaselineForecaster())
    worker.partitions = {A: SimpleNamespace(pipeline=SimpleNamespace(position={0: 5}), partition=0)}  # type: ignore[assignment]
    worker.stall = StallWatch(0.0)  # every partition is a candidate at once
    stalls: list[str] = []
    worker.on_stall = stalls.append
    release = threading.Event()

    class Hung:
        closed = threading.Event()

        def pending(self, positions: dict) -> dict:
            release.wait(30)
            return {key: True for key in positions}

        def close(self) -> None:
            self.closed.set()

    class Answers:
        def pending(self, positions: dict) -> dict:
            return {key: True for key in positions}

    monkeypatch.setattr(app_module, "PROBE_TIMEOUT_S", 0.3)
    hung = worker.probe = Hung()  # type: ignore[assignment]
    try:
        with caplog.at_level("WARNING", logger="streams.app"):
            asyncio.run(worker.watch_stall())
        assert not stalls and "could not be asked" in caplog.text and "TimeoutError" in caplog.text
        assert worker.probe is not hung and not worker._probing  # a new probe, and the next check runs
        assert not hung.closed.is_set()  # not from the loop, while its call still runs
        worker.probe = Answers()  # type: ignore[assignment]
        asyncio.run(worker.watch_stall())
        assert len(stalls) == 1 and "md.raw.x[0]" in stalls[0]
        release.set()
        assert hung.closed.wait(5)  # on its own thread, once the hung call returned
    finally:
        release.set()
