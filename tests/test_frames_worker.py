"""Frames through real `megatrading worker` processes on a real Kafka broker and Redis of this
module's own (issue 12): a record of `md.raw.<venue>` carrying several messages of one key.

- a worker fed a capture as frames publishes, in Redis and on the forecasts topic (read
  committed), exactly what an undisturbed worker fed the same messages as plain records does;
- a corrupted message inside a frame goes to md.dlq alone, its bytes and its `frame_index`, and
  its neighbours are processed;
- a worker SIGKILLed at random points of a framed stream, restarted, loses and duplicates nothing.

One venue per test, so that the tests share the servers without sharing a topic.
"""

from __future__ import annotations

import random
import time

import pytest
from faults import GroupRun, capture_records, create_topic, expected, publish, read_topic

from orderbook.frames import Framer, encode_frame, framed, is_frame, messages_of

pytestmark = pytest.mark.realdata

CAPTURES = {
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
}
FRAME = 16  # messages per frame at most (the producers' default is 64 or 1 ms of venue time)


def in_frames(records: list[tuple[bytes, bytes]], size: int = FRAME) -> list[tuple[bytes, bytes]]:
    """The messages in frames of up to `size` consecutive messages of one key (by count alone)."""
    return [(f.key, f.value) for f in framed(((k, v, None) for k, v in records), Framer(max_messages=size))]


def headers_of(record) -> dict[str, bytes]:
    return dict(record.headers or ())


def test_a_worker_fed_frames_publishes_what_a_worker_fed_plain_records_does(lab, shared_data, tmp_path):
    venue = "kraken"
    records = capture_records(venue, shared_data / CAPTURES[venue])
    bootstrap = lab.kafka.bootstrap
    # the same messages as plain records, on a topic no worker reads: what an undisturbed worker is fed
    publish(bootstrap, "plain.kraken", records)
    want = expected(venue, read_topic(bootstrap, "plain.kraken", committed_only=False))
    sent = publish(bootstrap, f"md.raw.{venue}", records, frames=FRAME)
    assert sent < len(records) // 4, "the stream went out mostly as frames"
    raw = read_topic(bootstrap, f"md.raw.{venue}", committed_only=False)
    assert sum(len(messages_of(m.value)) for m in raw) == len(records)
    run = GroupRun(lab, "frames-equal", 1, (venue,), tmp_path)
    run.start()
    try:
        run.wait(1.0)
    finally:
        run.stop_all()
    outcome = run.compare(want)
    assert len(want) > 50 and outcome.exact, outcome
    assert read_topic(bootstrap, f"md.dlq.{run.group}") == []


def test_a_corrupted_message_in_a_frame_goes_to_md_dlq_alone_with_its_frame_index(lab, shared_data, tmp_path):
    venue = "coinbase"
    frames = in_frames(capture_records(venue, shared_data / CAPTURES[venue], limit=4000), size=8)
    # a full frame in the middle of the stream: its message 3 corrupted, the other seven intact
    at = next(i for i in range(len(frames) // 2, len(frames)) if len(messages_of(frames[i][1])) == 8)
    key, value = frames[at]
    messages = messages_of(value)
    corrupted = b'{"type": "l2update", "product_id": '
    messages[3] = corrupted
    frames[at] = (key, encode_frame(messages))
    bootstrap = lab.kafka.bootstrap
    topic = f"md.raw.{venue}"
    publish(bootstrap, topic, frames)
    raw = read_topic(bootstrap, topic, committed_only=False)
    [where] = [m for m in raw if m.value == frames[at][1]]
    run = GroupRun(lab, "frames-dlq", 2, (venue,), tmp_path)
    run.start()
    try:
        run.wait(1.0)
    finally:
        run.stop_all()
    dead = read_topic(bootstrap, f"md.dlq.{run.group}")
    assert [(m.key, m.value) for m in dead] == [(key, corrupted)]
    h = headers_of(dead[0])
    assert (h["source_topic"], h["partition"], h["offset"], h["reason"], h["frame_index"]) == (
        topic.encode(),
        str(where.partition).encode(),
        str(where.offset).encode(),
        b"malformed",
        b"3",
    )
    # the corrupted message's neighbours, and every other frame, were processed
    want = expected(venue, raw)
    outcome = run.compare(want)
    assert len(want) > 20 and outcome.exact, outcome


def test_a_plain_record_dead_letter_has_no_frame_index(lab, tmp_path):
    """A plain record is still dead-lettered as it was: its own value, no frame_index header; a broken
    frame is one record's dead letter, reason bad_frame."""
    venue = "lobster"
    topic = f"md.raw.{venue}"
    broken = encode_frame([b"1,1,1,1,1,1", b"2,1,2,1,1,1"])[:-3]
    assert is_frame(broken)
    publish(lab.kafka.bootstrap, topic, [(b"ABC", b"not a lobster row"), (b"ABC", broken)])
    run = GroupRun(lab, "frames-plain-dlq", 4, (venue,), tmp_path)
    run.start()
    try:
        run.wait(1.0)
    finally:
        run.stop_all()
    dead = read_topic(lab.kafka.bootstrap, f"md.dlq.{run.group}")
    assert [m.value for m in dead] == [b"not a lobster row", broken]
    assert [headers_of(m)["reason"] for m in dead] == [b"malformed", b"bad_frame"]
    assert all("frame_index" not in headers_of(m) for m in dead)


def test_a_worker_sigkilled_on_framed_input_loses_and_duplicates_nothing(lab, shared_data, tmp_path):
    """test_faults' SIGKILL shape on a framed stream: published in three parts at seeded random cut
    points, the first worker killed at a random moment once the second part is out, the second
    once the third is, a last one finishes; snapshots every 100 records, so restarts restore one."""
    venue = "binance"
    rng = random.Random(f"sigkill-frames-{venue}")
    frames = in_frames(capture_records(venue, shared_data / CAPTURES[venue]))
    a, b = sorted(rng.sample(range(len(frames) // 4, 3 * len(frames) // 4), 2))
    topic = f"md.raw.{venue}"
    bootstrap = lab.kafka.bootstrap
    create_topic(bootstrap, topic)
    run = GroupRun(lab, "frames-kill", 3, (venue,), tmp_path, snapshot_every=100)
    try:
        publish(bootstrap, topic, frames[:a])
        w = run.start("w0")
        run.wait(1.0)
        for name, part in (("w1", frames[a:b]), ("last", frames[b:])):
            publish(bootstrap, topic, part)
            time.sleep(rng.uniform(0.0, 2.0))
            w.kill()
            w = run.start(name)
        run.wait(1.0)
    finally:
        run.stop_all()
    raw = read_topic(bootstrap, topic, committed_only=False)
    assert sorted(m.value for m in raw) == sorted(v for _, v in frames)
    outcome = run.compare(expected(venue, raw))
    assert outcome.want > 100 and outcome.exact, outcome
    assert "from snapshot at offset" in run.log_text(), "no restart used a snapshot"
