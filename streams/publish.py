"""Feeds into Kafka: a recorded file (`publish_capture`) or a simulated market (`publish_simulation`)
published to `md.raw.<venue>`, keyed by symbol, a simulation's headlines to `md.news`.

Keying by symbol keeps each book's messages in one partition, in order. Messages go out in frames
(orderbook/frames.py): consecutive messages of one key in one record, closed at `frame_messages`
messages or once it spans `frame_ms` of venue time (64 and 1 ms by default; `frame_messages=1`
sends every message as a plain record, as before frames). A frame holds one key's messages in their
order and goes to that key's partition, so per-symbol order and partitioning are those of plain
records. `speed` paces the messages by their own timestamps (N times real time); `speed=None`
publishes as fast as the broker takes them.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer

from model.sim.engine import SEC, SimResult
from model.sim.writers import Msg, clock_offset, messages
from orderbook.errors import FeedError
from orderbook.frames import FRAME_MESSAGES, FRAME_SPAN_NS, Frame, Framer
from orderbook.venues import Record, feed_class
from streams.progress import follow_files, progress_bar
from streams.topics import NEWS_TOPIC, raw_topic

log = logging.getLogger(__name__)

FRAME_MS = FRAME_SPAN_NS / 1e6
# open frames are sent once they hold this many bytes together, so that no frame nears the worker's
# max_record_bytes (4 MiB: an oversized frame would be rejected whole) or a producer's request size
MAX_OPEN_FRAME_BYTES = 512 * 1024


def producer(bootstrap: str, **kw: object) -> KafkaProducer:
    """Throughput settings: batches of up to 1 MB, lz4-free (no native codec needed), acks=all.

    Idempotent, and said so explicitly: a feed's messages must reach the partition in the order
    sent, and a producer that retries a batch (a topic's first batch often meets a leader not yet
    elected) while later ones are in flight reorders them. Idempotent, kafka-python keeps one batch
    of a partition in flight at a time (its `guarantee_message_order`) and the broker drops a
    retried duplicate. It turns idempotence off silently when another setting conflicts with it
    (acks=1 did, and a simulated book once arrived out of order); set explicitly, a conflict raises."""
    opts: dict[str, object] = {"bootstrap_servers": bootstrap, "acks": "all", "enable_idempotence": True,
                               "linger_ms": 5, "batch_size": 1 << 20, "max_request_size": 16 << 20}  # fmt: skip
    opts.update(kw)
    return KafkaProducer(**opts)


@dataclass
class Sent:
    """What went to one topic: records produced and the messages they carry (a frame carries several)."""

    records: int = 0
    messages: int = 0

    def __str__(self) -> str:
        return f"{self.records:,} records ({self.messages:,} messages)"


@dataclass
class Pacer:
    """Says how long to wait so that a message of venue time `ts` leaves at `speed` times the pace
    of the stream's clock, counted from the first message that has a time. No speed: never waits."""

    speed: float | None
    _start_wall: float = 0.0
    _first_ts: int | None = None

    def wait(self, ts: int | None) -> float:
        if not self.speed or not ts:
            return 0.0
        if self._first_ts is None:
            self._first_ts, self._start_wall = ts, time.monotonic()
        due = self._start_wall + (ts - self._first_ts) / SEC / self.speed
        return due - time.monotonic()


@dataclass
class FramedTopic:
    """One topic's producer side: messages in, frames out to Kafka as they close (Framer).

    Latency when paced: a message waits in its key's open frame until the frame closes, at
    `frame_messages` messages or when the stream's clock (its latest venue time) is `frame_ms` past the
    frame's opening; and `send_open` sends every open frame before the producer sleeps longer
    than one frame span (at `speed`). At 1x a message therefore leaves at most about two frame
    spans (2 ms by default) after it was due, plus the producer's linger (5 ms), instead of at once."""

    prod: KafkaProducer
    topic: str
    framer: Framer
    capture_header: bool = False  # a `recv_ts_ns` header: the capture time of the record's first message
    sent: Sent = field(default_factory=Sent)

    def add(self, key: bytes | None, message: bytes, ts: int | None) -> None:
        for frame in self.framer.add(key, message, ts):
            self._send(frame)
        if self.framer.open_bytes >= MAX_OPEN_FRAME_BYTES:
            self.send_open()

    def send_open(self) -> None:
        """Send every open frame (before a pause, at the size bound, at the end)."""
        for frame in self.framer.flush():
            self._send(frame)

    def _send(self, frame: Frame) -> None:
        # The capture time rides in a header, not as the record timestamp: a broker deletes
        # records by their timestamp, and a 2021 capture would be gone at the next retention check.
        headers = [("recv_ts_ns", str(frame.first_ts).encode())] if self.capture_header and frame.first_ts else None
        self.prod.send(self.topic, key=frame.key, value=frame.value, headers=headers)
        self.sent.records += 1
        self.sent.messages += frame.count


def framer(frame_messages: int, frame_ms: float) -> Framer:
    if frame_ms <= 0:
        raise ValueError(f"frame span {frame_ms} ms: must be above 0")
    return Framer(max_messages=frame_messages, max_span_ns=round(frame_ms * 1e6))


def pause(wait: float, speed: float | None, frame_ms: float, topics: Iterable[FramedTopic]) -> None:
    """Sleep `wait` seconds of pacing; first send the open frames when the sleep is longer than a
    frame's span at `speed`, so a quiet stretch of the stream holds back no message."""
    if wait <= 0:
        return
    if speed and wait > frame_ms / 1e3 / speed:
        for t in topics:
            t.send_open()
    time.sleep(wait)


def keyed(venue: str, records: Iterable[Record], symbol: str | None = None) -> Iterator[tuple[bytes, Record]]:
    """(key, record): the symbol the venue's feed reads from the message (`symbol` overrides:
    LOBSTER rows carry none). A message whose key cannot be read gets key "?" and still goes
    out: the worker then dead-letters it with its reason, so nothing is lost here."""
    feed = feed_class(venue)()
    for rec in records:
        if symbol:
            yield symbol.encode(), rec
            continue
        try:
            key = feed.key(rec.raw)
        except FeedError:
            key = "?"
        yield (key or "?").encode(), rec


def publish_capture(
    path: Path,
    venue: str,
    bootstrap: str,
    *,
    speed: float | None = None,
    symbol: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    frame_messages: int = FRAME_MESSAGES,
    frame_ms: float = FRAME_MS,
) -> Sent:
    """Publish a recorded file (at most `limit` messages) in frames; what was produced (all acknowledged).
    Venue time is the capture time (`recv_ts`); messages without one are framed by count alone."""
    records: Iterable[Record] = feed_class(venue).read_capture(path)
    if limit is not None:
        records = (r for i, r in zip(range(limit), records, strict=False))
    prod = producer(bootstrap)
    out = FramedTopic(prod, raw_topic(venue), framer(frame_messages, frame_ms), capture_header=True)
    pacer = Pacer(speed)
    # the bar's total is the file's size in bytes, advanced by the bytes the reader has read
    # (streams/progress.py): counting the messages first would read a gzipped day file twice
    try:
        with follow_files([path], f"publish {venue}", lambda: f"{out.sent.messages:,} msg", not progress) as position:
            for key, rec in keyed(venue, records, symbol):
                pause(pacer.wait(rec.recv_ts), speed, frame_ms, [out])
                out.add(key, rec.raw, rec.recv_ts or None)
            out.send_open()
            if limit is None or out.sent.messages < limit:
                position.finished()  # the whole file was read
            prod.flush()
    finally:
        prod.close()
    log.info("published %s from %s to %s", out.sent, path, out.topic)
    return out.sent


def simulation_records(result: SimResult, fmt: str) -> Iterator[tuple[str, Msg]]:
    """(topic, message) for a simulated stream in `fmt` and its headlines, in time order."""
    off = clock_offset(fmt)
    raw = ((raw_topic(fmt), m) for m in messages(fmt, result))
    news = (
        (NEWS_TOPIC, Msg(n.ts + off, n.symbol, json.dumps(n.record(off), sort_keys=True).encode())) for n in result.news
    )
    return heapq.merge(raw, news, key=lambda r: r[1].ts)


def publish_simulation(
    result: SimResult,
    fmt: str,
    bootstrap: str,
    speed: float | None,
    *,
    frame_messages: int = FRAME_MESSAGES,
    frame_ms: float = FRAME_MS,
) -> dict[str, Sent]:
    """Send a simulated stream to Kafka, paced at `speed` x real time (None: as fast as possible):
    the venue's messages in frames (venue time: the stream's clock), headlines one per record;
    what was produced, per topic."""
    prod = producer(bootstrap)
    raw = FramedTopic(prod, raw_topic(fmt), framer(frame_messages, frame_ms))
    news = Sent()
    pacer = Pacer(speed)
    try:
        # the total counted by encoding the stream once more: a venue's messages are not its events
        # (ITCH adds directory and system messages, Binance packs several events in one diff), and
        # the encoding costs a fraction of what sending does (0.1 s for an hour of 3 ITCH symbols)
        total = sum(1 for _ in messages(fmt, result)) + len(result.news)
        with progress_bar(total, unit="msg", desc=f"publish {fmt}") as bar:
            for topic, m in simulation_records(result, fmt):
                pause(pacer.wait(m.ts), speed, frame_ms, [raw])
                key = m.symbol.encode() if m.symbol else None
                if topic == NEWS_TOPIC:
                    prod.send(topic, key=key, value=m.raw)
                    news.records += 1
                    news.messages += 1
                else:
                    raw.add(key, m.raw, m.ts)
                bar.update(1)
        raw.send_open()
        prod.flush()
    finally:
        prod.close()
    return {t: s for t, s in ((raw.topic, raw.sent), (NEWS_TOPIC, news)) if s.records}
