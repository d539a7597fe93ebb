"""Feeds into Kafka: a recorded file (`publish_capture`) or a simulated market (`publish_simulation`)
published to `md.raw.<venue>`, keyed by symbol, a simulation's headlines to `md.news`.

Keying by symbol keeps each book's messages in one partition, in order. `speed` paces the
records by their own timestamps (N times real time); `speed=None` publishes as fast as the
broker takes them.
"""

from __future__ import annotations

import heapq
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from kafka import KafkaProducer
from tqdm import tqdm

from model.sim.engine import SEC, SimResult
from model.sim.writers import Msg, clock_offset, messages
from orderbook.errors import FeedError
from orderbook.venues import Record, feed_class
from streams.topics import NEWS_TOPIC, raw_topic

log = logging.getLogger(__name__)


def producer(bootstrap: str, **kw: object) -> KafkaProducer:
    """Throughput settings: batches of up to 1 MB, lz4-free (no native codec needed), acks=all."""
    opts: dict[str, object] = {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5,
                               "batch_size": 1 << 20, "max_request_size": 16 << 20}  # fmt: skip
    opts.update(kw)
    return KafkaProducer(**opts)


def paced(records: Iterable[Record], speed: float | None) -> Iterator[Record]:
    """Sleep so that records leave at `speed` times the pace of their capture timestamps."""
    if not speed:
        yield from records
        return
    start_wall = time.monotonic()
    first: int | None = None
    for rec in records:
        if rec.recv_ts:
            if first is None:
                first = rec.recv_ts
            due = start_wall + (rec.recv_ts - first) / 1e9 / speed
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield rec


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
) -> int:
    """Publish a recorded file; returns the number of records produced (all acknowledged)."""
    topic = raw_topic(venue)
    records: Iterable[Record] = feed_class(venue).read_capture(path)
    if limit is not None:
        records = (r for i, r in zip(range(limit), records, strict=False))
    prod = producer(bootstrap)
    n = 0
    try:
        for key, rec in tqdm(keyed(venue, paced(records, speed), symbol), unit="msg", desc=f"publish {venue}",
                             disable=not progress):  # fmt: skip
            # The capture time rides in a header, not as the record timestamp: a broker deletes
            # records by their timestamp, and a 2021 capture would be gone at the next retention check.
            headers = [("recv_ts_ns", str(rec.recv_ts).encode())] if rec.recv_ts else None
            prod.send(topic, key=key, value=rec.raw, headers=headers)
            n += 1
        prod.flush()
    finally:
        prod.close()
    log.info("published %d records from %s to %s", n, path, topic)
    return n


def simulation_records(result: SimResult, fmt: str) -> Iterator[tuple[str, Msg]]:
    """(topic, message) for a simulated stream in `fmt` and its headlines, in time order."""
    off = clock_offset(fmt)
    raw = ((raw_topic(fmt), m) for m in messages(fmt, result))
    news = (
        (NEWS_TOPIC, Msg(n.ts + off, n.symbol, json.dumps(n.record(off), sort_keys=True).encode())) for n in result.news
    )
    return heapq.merge(raw, news, key=lambda r: r[1].ts)


def publish_simulation(result: SimResult, fmt: str, bootstrap: str, speed: float | None) -> dict[str, int]:
    """Send a simulated stream to Kafka, paced at `speed` x real time (None: as fast as possible); counts per topic."""
    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    counts: dict[str, int] = {}
    wall0, t0 = time.monotonic(), None
    try:
        with tqdm(total=len(result.events) + len(result.news), unit="msg", desc="publish", disable=None,
                  file=sys.stderr) as bar:  # fmt: skip
            for topic, m in simulation_records(result, fmt):
                if speed:
                    t0 = m.ts if t0 is None else t0
                    wait = (m.ts - t0) / SEC / speed - (time.monotonic() - wall0)
                    if wait > 0:
                        time.sleep(wait)
                prod.send(topic, key=m.symbol.encode() if m.symbol else None, value=m.raw)
                counts[topic] = counts.get(topic, 0) + 1
                bar.update(1)
        prod.flush()
    finally:
        prod.close()
    return counts
