"""Rate-limited client logging: unit rules on a fake clock, then a real broker outage measured."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import threading
import time

import pytest

from streams.logfilter import (
    RateLimit,
    install_rate_limits,
    installed_rate_limit,
    limited_loggers,
    uninstall_rate_limits,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rec(msg: object, *args: object, name: str = "kafka.net.manager", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args or None, None)


def passed(f: RateLimit, record: logging.LogRecord) -> str | None:
    """The message as a handler would print it, or None when suppressed."""
    return record.getMessage() if f.filter(record) else None


def test_repeats_within_the_interval_are_suppressed_and_counted_on_the_next_one_through():
    clock = Clock()
    f = RateLimit(10.0, clock=clock)
    assert passed(f, rec("Connection failed: %s", "ECONNREFUSED")) == "Connection failed: ECONNREFUSED"
    for i in range(5):
        clock.now += 1.0
        assert passed(f, rec("Connection failed: %s", f"try {i}")) is None  # other args: the same kind
    assert f.pending() == {("kafka.net.manager", "Connection failed: %s"): 5}
    clock.now += 5.5  # 10.5 s after the one let through
    assert passed(f, rec("Connection failed: %s", "again")) == (
        "Connection failed: again (5 similar messages suppressed in the last 10.5s)"
    )
    assert f.pending() == {} and f.suppressed == 5
    clock.now += 1.0
    assert passed(f, rec("Connection failed: %s", "x")) is None  # a new interval began with the last one through


def test_no_suffix_when_nothing_was_suppressed():
    clock = Clock()
    f = RateLimit(10.0, clock=clock)
    assert passed(f, rec("Unable to update metadata from %s", [1])) is not None
    clock.now += 30
    assert passed(f, rec("Unable to update metadata from %s", [1])) == "Unable to update metadata from [1]"


def test_kinds_are_per_logger_and_per_template():
    f = RateLimit(10.0, clock=Clock())
    assert passed(f, rec("Connection failed: %s", 1, name="kafka.net.manager"))
    assert passed(f, rec("Connection failed: %s", 1, name="aiokafka.client"))  # another logger
    assert passed(f, rec("Unable connect to node with id %s: %s", 1, "e", name="aiokafka.client"))  # another template
    assert passed(f, rec("Connection failed: %s", 2, name="aiokafka.client")) is None


def test_records_below_warning_pass_untouched():
    f = RateLimit(10.0, clock=Clock())
    for _ in range(3):
        for level in (logging.DEBUG, logging.INFO):
            r = rec("Sending metadata request %s", "x", level=level)
            assert f.filter(r) and r.msg == "Sending metadata request %s"
    assert f.suppressed == 0 and f.pending() == {}


def test_preformatted_messages_are_grouped_with_their_numbers_masked():
    """kafka-python writes some messages with f-strings: each retry's backoff differs."""
    f = RateLimit(10.0, clock=Clock())
    assert passed(f, rec("Bootstrap attempt to bootstrap-0 failed: 111 ECONNREFUSED (backoff 0.42 secs)"))
    assert passed(f, rec("Bootstrap attempt to bootstrap-0 failed: 111 ECONNREFUSED (backoff 1.13 secs)")) is None
    assert passed(f, rec(ValueError("not a string"))) is not None
    assert passed(f, rec(ValueError("another"))) is None


def test_a_percent_in_the_arguments_survives_the_suffix():
    clock = Clock()
    f = RateLimit(1.0, clock=clock)
    f.filter(rec("lag %s at %d%%", "50%", 3))
    f.filter(rec("lag %s at %d%%", "50%", 3))
    clock.now += 2
    assert (
        passed(f, rec("lag %s at %d%%", "60%", 4)) == "lag 60% at 4% (1 similar messages suppressed in the last 2.0s)"
    )


def test_concurrent_threads_let_exactly_one_through_and_count_the_rest():
    f = RateLimit(10.0, clock=Clock())
    through = []
    start = threading.Barrier(8)

    def spam() -> None:
        start.wait()
        for _ in range(1000):
            if f.filter(rec("Connection failed: %s", "x")):
                through.append(1)

    threads = [threading.Thread(target=spam) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(through) == 1 and f.suppressed == 7999
    assert f.pending() == {("kafka.net.manager", "Connection failed: %s"): 7999}


def test_many_kinds_are_bounded():
    clock = Clock()
    f = RateLimit(1.0, clock=clock)
    for i in range(10_000):
        clock.now += 0.01
        f.filter(rec(f"message kind {chr(0x4E00 + i)}"))  # no digits: every one its own kind
    assert len(f._kinds) <= 4096


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record)


@pytest.fixture
def collect():
    handler = Collect()
    logging.root.addHandler(handler)
    yield handler
    logging.root.removeHandler(handler)
    uninstall_rate_limits()


def test_install_covers_the_child_loggers_once_and_is_idempotent(collect):
    import aiokafka  # noqa: F401  the worker's client libraries: install covers the modules of those imported
    import faust  # noqa: F401
    import kafka  # noqa: F401

    install_rate_limits(10.0)
    install_rate_limits(5.0)
    f = installed_rate_limit()
    assert f is not None and f.interval == 5.0
    names = {lg.name for lg in limited_loggers()}
    assert {
        "kafka",
        "kafka.net.manager",
        "kafka.cluster",
        "aiokafka",
        "aiokafka.conn",
        "faust.transport.consumer",
        "faust.transport.producer",
        "faust.transport.drivers.aiokafka",
    } <= names
    for lg in limited_loggers():
        assert sum(isinstance(x, RateLimit) for x in lg.filters) == 1, lg.name
    for _ in range(100):  # a filter on "kafka" alone would not see these: they are logged on the child
        logging.getLogger("kafka.net.manager").error("Connection failed: %s", "ECONNREFUSED")
        logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "refused")
        logging.getLogger("streams.app").error("not a client logger: %s", "kept")
    by_name = {}
    for r in collect.lines:
        by_name[r.name] = by_name.get(r.name, 0) + 1
    assert by_name == {"kafka.net.manager": 1, "aiokafka": 1, "streams.app": 100}
    late = logging.getLogger("kafka.some.module.imported.later")
    install_rate_limits(5.0)
    assert any(isinstance(x, RateLimit) for x in late.filters)
    uninstall_rate_limits()
    assert installed_rate_limit() is None
    assert not any(isinstance(x, RateLimit) for lg in limited_loggers() for x in lg.filters)


SUFFIX = re.compile(r" \(\d+ similar messages suppressed in the last [\d.]+s\)$")


def kind(record: logging.LogRecord) -> tuple[str, str]:
    msg = record.msg if isinstance(record.msg, str) else str(record.msg)
    return record.name, SUFFIX.sub("", msg)


class Tally(logging.Filter):
    """Counts what reaches a logger's filters (what would be written without the rate limit)."""

    def __init__(self, counts: collections.Counter) -> None:
        super().__init__()
        self.counts = counts
        self.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.on and record.levelno >= logging.WARNING:
            self.counts[kind(record)] += 1
        return True


class TallyHandler(logging.Handler):
    """Counts what is written (after the loggers' filters)."""

    def __init__(self, counts: collections.Counter, tally: Tally) -> None:
        super().__init__(logging.WARNING)
        self.counts, self.tally = counts, tally

    def emit(self, record: logging.LogRecord) -> None:
        if self.tally.on:
            self.counts[kind(record)] += 1


def test_a_broker_outage_writes_at_most_one_line_per_kind_per_interval(own_broker, record_property):
    """A kafka-python consumer, an aiokafka consumer (in a group) and an aiokafka producer keep trying
    while the broker is stopped for 6 s. Without the filter they write hundreds to hundreds of thousands
    of lines (aiokafka's metadata loop sometimes spins); with it, one per kind per interval."""
    import aiokafka
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    interval, outage = 2.0, 6.0  # three intervals: the clients retry every 0.1-1 s
    bootstrap = own_broker.bootstrap
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("t.outage", 3, 1)])
    admin.wait_for_topics(["t.outage"], timeout_ms=20000)
    admin.close()

    install_rate_limits(interval)
    before, after = collections.Counter(), collections.Counter()
    tally = Tally(before)
    loggers = limited_loggers()
    for lg in loggers:
        lg.filters.insert(0, tally)
    handler = TallyHandler(after, tally)
    logging.root.addHandler(handler)
    stop = threading.Event()
    got = {"kafka-python": 0, "aiokafka": 0}

    def kafka_python() -> None:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
        consumer.assign([TopicPartition("t.outage", p) for p in range(3)])
        while not stop.is_set():
            with contextlib.suppress(Exception):
                got["kafka-python"] += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        consumer.close(timeout_ms=2000)

    async def aio() -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap)
        consumer = aiokafka.AIOKafkaConsumer("t.outage", bootstrap_servers=bootstrap, group_id="g-outage",
                                             auto_offset_reset="earliest")  # fmt: skip
        await producer.start()
        await consumer.start()

        async def produce() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.send_and_wait("t.outage", b"x"), 5)
                await asyncio.sleep(0.1)

        async def consume() -> None:
            while not stop.is_set():
                try:
                    got["aiokafka"] += sum(len(v) for v in (await consumer.getmany(timeout_ms=500)).values())
                except Exception:
                    await asyncio.sleep(0.5)

        try:
            await asyncio.gather(produce(), consume())
        finally:
            for client in (consumer, producer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)

    threads = [threading.Thread(target=kafka_python), threading.Thread(target=lambda: asyncio.run(aio()))]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while min(got.values()) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert min(got.values()) > 0, got
        tally.on = True
        start = time.monotonic()
        own_broker.stop()
        time.sleep(outage)
        own_broker.start()
        time.sleep(1.0)
        tally.on = False
        window = time.monotonic() - start
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        logging.root.removeHandler(handler)
        for lg in loggers:
            lg.removeFilter(tally)
        uninstall_rate_limits()

    n_before, n_after = sum(before.values()), sum(after.values())
    record_property("lines_without_rate_limit", n_before)
    record_property("lines_with_rate_limit", n_after)
    print(f"\n{window:.1f} s with the broker away: {n_before} lines without the rate limit, {n_after} with it")
    for key, n in before.most_common():
        print(f"{n:8d} {after[key]:3d}  {key[0]}: {key[1]}")
    assert n_before > 0, "the outage was noticed by the clients"
    limit = math.ceil(window / interval) + 1
    over = {k: n for k, n in after.items() if k[0].startswith(("kafka", "aiokafka")) and n > limit}
    assert not over, f"more than {limit} lines per kind in {window:.1f} s: {over}"
    assert n_after < n_before
