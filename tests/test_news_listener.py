"""The md.news listener on a real broker: every headline once, in partition order, across a broker outage."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.news import NewsListener

PARTITIONS = 3


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        admin.wait_for_topics([topic], timeout_ms=20000)
    finally:
        admin.close()


def publish(bootstrap: str, topic: str, tag: str, n: int) -> list[bytes]:
    """`n` headlines spread over the partitions, each naming its partition; in the order sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = []
    try:
        for i in range(n):
            p = i % PARTITIONS
            value = f'{{"ts": {i}, "symbols": ["P{p}"], "headline": "{tag}-{i}"}}'.encode()
            producer.send(topic, value=value, partition=p).get(timeout=30)
            sent.append(value)
    finally:
        producer.close()
    return sent


def send_once(bootstrap: str, topic: str, value: bytes, partition: int) -> bool:
    """One record to `partition`; False while a fresh producer's metadata does not show it yet."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, value=value, partition=partition).get(timeout=30)
        return True
    except ValueError:  # "Unrecognized partition": the broker's metadata has not caught up
        return False
    finally:
        producer.close()


def partition_of(value: bytes) -> str:
    return value.split(b'"symbols": ["')[1][:2].decode()


def by_partition(values: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for v in values:
        out.setdefault(partition_of(v), []).append(v)
    return out


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def collect(listener: NewsListener, got: list[bytes], n: int, timeout: float) -> None:
    def enough() -> bool:
        got.extend(listener.drain())
        return len(got) >= n

    wait_for(enough, timeout, f"{n} headlines (have {len(got)})")
    time.sleep(1.0)  # anything extra (a duplicate) would show up now
    got.extend(listener.drain())


def test_headlines_published_before_and_after_start_arrive_once_in_partition_order(infra):
    bootstrap = infra.kafka.bootstrap
    topic = f"md.news.t-{uuid.uuid4().hex[:8]}"  # the session broker is shared: a topic of our own
    create_topic(bootstrap, topic)
    before = publish(bootstrap, topic, "before", 12)
    listener = NewsListener(bootstrap, topic=topic)
    listener.start()
    try:
        got: list[bytes] = []
        collect(listener, got, len(before), timeout=30)
        after = publish(bootstrap, topic, "after", 12)
        collect(listener, got, len(before) + len(after), timeout=30)
        assert by_partition(got) == by_partition(before + after)
        assert len(got) == len(set(got)) == 24
        assert listener.received == 24 and listener.healthy and listener.reconnects == 0
        assert listener.positions == {p: 8 for p in range(PARTITIONS)}
    finally:
        assert listener.stop(timeout=10)


def test_waits_for_the_topic_and_reads_partitions_added_later_from_their_start(infra):
    from kafka.admin import NewPartitions

    bootstrap = infra.kafka.bootstrap
    topic = f"md.news.t-{uuid.uuid4().hex[:8]}"
    listener = NewsListener(bootstrap, topic=topic)
    listener.start()
    try:
        wait_for(lambda: listener.healthy, 30, "the listener to connect before the topic exists")
        create_topic(bootstrap, topic, partitions=1)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        producer.send(topic, value=b"first", partition=0).get(timeout=30)
        got: list[bytes] = []
        collect(listener, got, 1, timeout=30)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_partitions({topic: NewPartitions(total_count=2)})
        admin.close()
        producer.close()
        # published before the listener sees the new partition: read from its start all the same
        wait_for(lambda: send_once(bootstrap, topic, b"on the new partition", 1), 20, "the new partition to be usable")
        collect(listener, got, 2, timeout=30)
        assert got == [b"first", b"on the new partition"]
        assert listener.positions == {0: 1, 1: 1}
    finally:
        assert listener.stop(timeout=10)


def test_listener_survives_a_broker_outage_without_losing_or_repeating_a_headline(own_broker):
    """The incident: the broker went away for half a minute and the listener thread died for good.
    Here it is stopped for ~9 s while the listener reads a 3-partition topic."""
    bootstrap = own_broker.bootstrap
    topic = "md.news"
    create_topic(bootstrap, topic)
    before = publish(bootstrap, topic, "before", 30)
    listener = NewsListener(bootstrap)  # the default topic, read from its start
    listener.start()
    got: list[bytes] = []
    try:
        collect(listener, got, len(before), timeout=30)
        assert listener.healthy and listener.reconnects == 0

        own_broker.stop()
        time.sleep(9.0)
        assert listener.alive
        assert not listener.healthy and listener.errors >= 1 and listener.last_error is not None
        own_broker.start()

        after = publish(bootstrap, topic, "after", 30)
        # back within the listener's backoff (at most 10 s) and a connect: the consumer it replaced could
        # take up to kafka-python's 30 s reconnect backoff, or never come back
        collect(listener, got, len(before) + len(after), timeout=30)
        assert len(got) == len(set(got)) == 60, "every headline exactly once"
        assert by_partition(got) == by_partition(before + after), "in partition order"
        assert listener.alive and listener.reconnects >= 1
        wait_for(lambda: listener.healthy, 10, "the listener to report healthy again")
        assert listener.positions == {p: 20 for p in range(PARTITIONS)}
    finally:
        assert listener.stop(timeout=10)
    assert not listener.alive


def test_listener_started_while_the_broker_is_down_connects_when_it_comes_up(own_broker):
    """The first consumer cannot even be made (no broker to bootstrap from): the thread keeps trying."""
    bootstrap = own_broker.bootstrap
    create_topic(bootstrap, "md.news")
    sent = publish(bootstrap, "md.news", "early", 9)
    own_broker.stop()
    listener = NewsListener(bootstrap)
    listener.start()
    try:
        time.sleep(4.0)
        assert listener.alive and not listener.healthy and listener.errors >= 1
        assert listener.last_error is not None and listener.last_error.startswith("connect")
        own_broker.start()
        got: list[bytes] = []
        collect(listener, got, len(sent), timeout=30)
        assert by_partition(got) == by_partition(sent) and len(got) == 9
        assert listener.reconnects == 1
    finally:
        assert listener.stop(timeout=10)


def test_a_full_queue_pauses_reading_and_loses_nothing(infra):
    bootstrap = infra.kafka.bootstrap
    topic = f"md.news.t-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    sent = publish(bootstrap, topic, "burst", 30)
    listener = NewsListener(bootstrap, topic=topic, max_queued=10)
    listener.start()
    try:
        wait_for(lambda: listener.paused, 30, "the listener to pause on a full queue")
        assert listener.queued == 10 and listener.received == 10
        got: list[bytes] = []
        collect(listener, got, len(sent), timeout=30)
        assert by_partition(got) == by_partition(sent) and len(got) == 30
        assert not listener.paused
    finally:
        assert listener.stop(timeout=10)
