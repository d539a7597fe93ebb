"""`megatrading reset VENUE` (streams/cli/reset.py) on a broker and Redis of the module's own: the
venue's raw topic, its group offsets, its snapshots and its Redis keys go; another venue's stay."""

from __future__ import annotations

import time

import pytest
from faults import publish, read_topic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streams import snapshots
from streams.cli import main
from streams.cli.reset import Plan, confirmed
from streams.offsets import committed
from streams.sink import ALERTS, META, RedisSink
from streams.topics import STATE_TOPIC, raw_topic

GROUP = "reset-test"
GONE, KEPT = "itch", "kraken"
SYMBOLS = ("AAA", "BBB")


def forecast(venue: str, symbol: str, window: int, score: float) -> dict:
    return {"venue": venue, "symbol": symbol, "seq": window, "window": window, "anomaly_score": score}


@pytest.fixture(scope="module")
def world(lab):
    """Both venues as a worker would leave them: records, committed offsets with a snapshot pointer,
    snapshots on md.state, forecasts, history, alerts and drift in Redis; an old heartbeat."""
    bootstrap = lab.kafka.bootstrap
    for venue in (GONE, KEPT):
        publish(
            bootstrap, raw_topic(venue), [(s.encode(), f"{venue}-{i}".encode()) for i in range(20) for s in SYMBOLS]
        )
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    consumer.commit({TopicPartition(raw_topic(v), p): OffsetAndMetadata(3, "state=0@0", -1)
                     for v in (GONE, KEPT) for p in range(4)})  # fmt: skip
    consumer.close()
    snapshots.ensure_topic(bootstrap)
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for venue in (GONE, KEPT):
        for p in range(4):
            prod.send(STATE_TOPIC, key=snapshots.state_key(GROUP, raw_topic(venue), p), value=b"snapshot")
    prod.flush()
    prod.close()
    sink = RedisSink.from_url(lab.redis.url)
    sink.write([forecast(v, s, w, 0.999 if w == 2 else 0.5) for v in (GONE, KEPT) for s in SYMBOLS for w in (1, 2, 3)])
    sink.redis.hset(META, mapping={f"drift:{v}:{s}": "{}" for v in (GONE, KEPT) for s in SYMBOLS})
    sink.redis.hset(META, "heartbeat:old-worker", str(time.time_ns() - 120 * 10**9))
    return sink.redis


def reset(lab, *argv: str) -> int:
    return main(["reset", *argv, "--bootstrap", lab.kafka.bootstrap, "--redis-url", lab.redis.url, "--app-id", GROUP])


def test_a_fresh_heartbeat_refuses_the_reset_and_touches_nothing(lab, world, capsys):
    world.hset(META, "heartbeat:live-worker", str(time.time_ns()))
    try:
        assert reset(lab, GONE, "--yes") == 2
    finally:
        world.hdel(META, "heartbeat:live-worker")
    err = capsys.readouterr().err
    assert "live-worker" in err and "--force" in err and "old-worker" not in err
    assert len(read_topic(lab.kafka.bootstrap, raw_topic(GONE))) == 20 * len(SYMBOLS)
    assert world.exists(f"mt:latest:{GONE}:AAA")


def test_without_yes_and_no_terminal_it_asks_for_yes(lab, world, capsys):
    assert reset(lab, GONE) == 2 and "--yes" in capsys.readouterr().err
    assert len(read_topic(lab.kafka.bootstrap, raw_topic(GONE))) == 20 * len(SYMBOLS)


def test_the_prompt_lists_what_goes_and_wants_the_venue_typed(capsys):
    plan = Plan(GONE, GROUP, raw_topic(GONE), partitions=4, records=40, redis_keys=["mt:latest:itch:AAA"])
    assert not confirmed(plan, ask=lambda _: "y")
    assert confirmed(plan, ask=lambda _: GONE)
    err = capsys.readouterr().err
    assert "md.raw.itch: 40 records in 4 partitions" in err and "1 keys" in err


def test_reset_removes_the_venue_and_keeps_the_others(lab, world, capsys):
    bootstrap = lab.kafka.bootstrap
    assert reset(lab, GONE, "--yes") == 0
    assert capsys.readouterr().out.startswith(f"reset {GONE}: ")
    # the topic: there again, as many partitions, empty; the other venue's untouched
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    assert consumer.partitions_for_topic(raw_topic(GONE)) == {0, 1, 2, 3}
    consumer.close()
    assert read_topic(bootstrap, raw_topic(GONE)) == []
    assert len(read_topic(bootstrap, raw_topic(KEPT))) == 20 * len(SYMBOLS)
    # the group's offsets (and their snapshot pointers) for it
    assert {c.offset for c in committed(bootstrap, GROUP, raw_topic(GONE), range(4)).values()} == {0}
    assert {c.offset for c in committed(bootstrap, GROUP, raw_topic(KEPT), range(4)).values()} == {3}
    # the snapshots: the newest record of each of the venue's keys is a tombstone
    newest = {m.key: m.value for m in read_topic(bootstrap, STATE_TOPIC)}
    for p in range(4):
        assert newest[snapshots.state_key(GROUP, raw_topic(GONE), p)] is None
        assert newest[snapshots.state_key(GROUP, raw_topic(KEPT), p)] == b"snapshot"
    # Redis: the venue's books, drift and alerts gone, the other's there
    for s in SYMBOLS:
        assert not world.exists(f"mt:latest:{GONE}:{s}", f"mt:hist:{GONE}:{s}")
        assert world.exists(f"mt:latest:{KEPT}:{s}", f"mt:hist:{KEPT}:{s}") == 2
    drift = [f.decode() for f in world.hkeys(META) if f.startswith(b"drift:")]
    assert sorted(drift) == sorted(f"drift:{KEPT}:{s}" for s in SYMBOLS)
    alerts = [fields[b"venue"].decode() for _, fields in world.xrange(ALERTS)]
    assert alerts == [KEPT] * len(SYMBOLS)
