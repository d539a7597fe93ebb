"""streams.publish on a real Kafka broker: `megatrading replay` and `megatrading simulate --kafka` send
frames by default (orderbook/frames.py), and a frame changes nothing a reader of a symbol's messages
sees: read back, each key's records give the source's messages of that key byte for byte and in
order, from one partition; no frame holds more than 64 messages or spans more than 1 ms of venue
time; `--frame-messages 1` sends every message as a plain record.

The broker is this module's own: the session broker's md.raw.<venue> and md.news topics are read
whole by test_e2e and test_simulator, which count what is there."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaConfigurationError

from model.sim.run import simulate
from model.sim.writers import messages
from orderbook.frames import FRAME_MESSAGES, FRAME_SPAN_NS, is_frame, messages_of
from orderbook.venues import feed_class
from streams import publish
from streams.cli import main
from streams.cli.simulate import config_from_args, register
from streams.publish import keyed, producer, publish_capture

CAPTURE = ("coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz")  # 11 symbols, 9,946 messages
SIM_ARGS = ["--symbols", "3", "--duration", "2m", "--seed", "12", "--news", "120", "--format", "itch"]

Source = dict[bytes | None, list[tuple[bytes, int | None]]]  # per key, (message, venue time) in order


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    from streams.infra import KafkaServer, free_port

    kafka = KafkaServer("kafka", tmp_path_factory.mktemp("publish") / "kafka", port=free_port(),
                        controller_port=free_port(), owner_pid=os.getpid())  # fmt: skip
    kafka.start()
    yield kafka.bootstrap
    kafka.stop()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Where each partition of `topic` ends now (nothing: a topic not made yet)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = c.partitions_for_topic(topic) or set()
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts]) if parts else {}
        return {tp.partition: n for tp, n in ends.items()}
    finally:
        c.close()


def records_after(bootstrap: str, topic: str, start: dict[int, int]) -> list:
    """Every record of `topic` after the offsets `start` (0 for a partition not there then), by partition and offset."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20)
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or set()]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, start.get(tp.partition, 0))
        ends = c.end_offsets(tps)
        out: list = []
        while any(c.position(tp) < ends[tp] for tp in tps):
            for batch in c.poll(timeout_ms=500).values():
                out += batch
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        c.close()


def per_key(items: Iterable[tuple[bytes | None, bytes, int | None]]) -> Source:
    out: Source = defaultdict(list)
    for key, message, ts in items:
        out[key].append((message, ts))
    return dict(out)


def assert_frames_carry_the_source(records: list, source: Source, max_messages: int, max_span_ns: int) -> None:
    """Each key's records, in partition order, give its source messages in order, from one partition;
    every record holds at most `max_messages` spanning at most `max_span_ns` of venue time."""
    partitions: dict[bytes | None, set[int]] = defaultdict(set)
    got: dict[bytes | None, list[bytes]] = defaultdict(list)
    for rec in records:
        key = rec.key
        partitions[key].add(rec.partition)
        carried = messages_of(rec.value)
        assert 1 <= len(carried) <= max_messages
        if len(carried) > 1:
            assert is_frame(rec.value)
        at = len(got[key])
        got[key] += carried
        times = [ts for _, ts in source[key][at : at + len(carried)] if ts]
        if times and key is not None:  # the keyless ones are compared as a set below
            assert max(times) - min(times) <= max_span_ns, (key, rec.partition, rec.offset)
    want = {k: [m for m, _ in msgs] for k, msgs in source.items()}
    if None in source:  # keyless messages (ITCH system events) go to any partition, as a plain record does
        assert sorted(got.pop(None)) == sorted(want.pop(None))
        del partitions[None]
    assert {k: len(p) for k, p in partitions.items()} == {k: 1 for k in want}
    assert got == want


def capture_source(shared_data: Path) -> Source:
    """The capture's messages as `megatrading replay` keys them, with their capture times."""
    venue, rel = CAPTURE
    recs = feed_class(venue).read_capture(shared_data / rel)
    return per_key((key, rec.raw, rec.recv_ts or None) for key, rec in keyed(venue, recs))


def test_a_replayed_capture_arrives_in_frames_giving_each_symbols_messages_in_order(broker, shared_data, capsys):
    venue, rel = CAPTURE
    topic = f"md.raw.{venue}"
    start = end_offsets(broker, topic)
    assert main(["replay", str(shared_data / rel), "--venue", venue, "--max", "--bootstrap", broker]) == 0
    records = records_after(broker, topic, start)
    source = capture_source(shared_data)
    n_messages = sum(len(v) for v in source.values())
    assert f"produced {len(records):,} records ({n_messages:,} messages) to {topic}" in capsys.readouterr().out
    assert len(records) < n_messages  # frames there are
    assert_frames_carry_the_source(records, source, FRAME_MESSAGES, FRAME_SPAN_NS)
    # a frame's capture time is its first message's
    first_ts: dict[bytes, list[int | None]] = {k: [ts for _, ts in v] for k, v in source.items()}
    at: dict[bytes, int] = defaultdict(int)
    for rec in records:
        assert dict(rec.headers)["recv_ts_ns"] == str(first_ts[rec.key][at[rec.key]]).encode()
        at[rec.key] += len(messages_of(rec.value))


def test_a_capture_with_frame_messages_1_is_every_message_a_plain_record(broker, shared_data):
    venue, rel = CAPTURE
    topic = f"md.raw.{venue}"
    start = end_offsets(broker, topic)
    sent = publish_capture(shared_data / rel, venue, broker, limit=3000, progress=False, frame_messages=1)
    records = records_after(broker, topic, start)
    assert sent.records == sent.messages == len(records) == 3000
    assert not any(is_frame(r.value) for r in records)
    recs = feed_class(venue).read_capture(shared_data / rel)
    head = [(key, rec.raw, rec.recv_ts or None) for key, rec in keyed(venue, recs)][:3000]
    assert_frames_carry_the_source(records, per_key(head), 1, 0)


def simulation_source(argv: list[str]) -> tuple[Source, int]:
    """What `simulate` with these arguments sends to md.raw.itch, per key, and its number of headlines."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register(sub)
    args = parser.parse_args(["simulate", *argv])
    result = simulate(config_from_args(args))
    items = ((m.symbol.encode() if m.symbol else None, m.raw, m.ts) for m in messages(args.format, result))
    return per_key(items), len(result.news)


@pytest.mark.parametrize("pace", [["--max"], ["--speed", "240"]], ids=["max", "paced-240x"])
def test_a_simulation_arrives_in_frames_and_its_headlines_one_per_record(broker, capsys, pace):
    raw_start, news_start = end_offsets(broker, "md.raw.itch"), end_offsets(broker, "md.news")
    assert main(["simulate", *SIM_ARGS, "--kafka", "--bootstrap", broker, *pace]) == 0
    records = records_after(broker, "md.raw.itch", raw_start)
    source, n_news = simulation_source(SIM_ARGS)
    n_messages = sum(len(v) for v in source.values())
    out = capsys.readouterr().out
    assert f"{len(records):,} records ({n_messages:,} messages) to md.raw.itch" in out
    assert len(records) < n_messages
    assert_frames_carry_the_source(records, source, FRAME_MESSAGES, FRAME_SPAN_NS)
    news = records_after(broker, "md.news", news_start)
    assert len(news) == n_news > 0 and not any(is_frame(r.value) for r in news)
    assert f"{n_news:,} records ({n_news:,} messages) to md.news" in out


def test_a_simulation_with_frame_messages_1_is_every_message_a_plain_record(broker):
    argv = ["--symbols", "3", "--duration", "2m", "--seed", "12", "--news", "0", "--format", "itch"]
    start = end_offsets(broker, "md.raw.itch")
    assert main(["simulate", *argv, "--kafka", "--bootstrap", broker, "--max", "--frame-messages", "1"]) == 0
    records = records_after(broker, "md.raw.itch", start)
    source, _ = simulation_source(argv)
    assert not any(is_frame(r.value) for r in records)
    assert_frames_carry_the_source(records, source, 1, 0)


def test_smaller_frame_bounds_are_kept(broker, shared_data):
    venue, rel = CAPTURE
    topic = f"md.raw.{venue}"
    start = end_offsets(broker, topic)
    sent = publish_capture(shared_data / rel, venue, broker, progress=False, frame_messages=8, frame_ms=0.25)
    records = records_after(broker, topic, start)
    assert sent.records == len(records)
    assert max(len(messages_of(r.value)) for r in records) == 8
    assert_frames_carry_the_source(records, capture_source(shared_data), 8, 250_000)


def test_the_feed_producer_is_idempotent_and_refuses_a_setting_that_would_let_a_retry_reorder(broker, monkeypatch):
    prod = producer(broker)
    try:
        assert prod.config["enable_idempotence"] and prod.config["acks"] == -1
    finally:
        prod.close()
    with pytest.raises(KafkaConfigurationError, match="acks"):
        producer(broker, acks=1)
    # both publishers go through it: a simulation's producer is the idempotent one too
    made: list[dict] = []
    real = publish.producer
    monkeypatch.setattr(publish, "producer", lambda *a, **kw: made.append(kw) or real(*a, **kw))
    argv = ["--symbols", "1", "--duration", "10s", "--seed", "3", "--news", "0", "--format", "itch"]
    assert main(["simulate", *argv, "--kafka", "--bootstrap", broker, "--max"]) == 0
    assert made == [{}]
