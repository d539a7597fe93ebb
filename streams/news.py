"""The `md.news` listener: every worker reads all of `md.news`, outside the consumer group.

A headline must reach the windows of its symbols wherever their books live, so each worker
assigns itself every partition of the topic (no group, no commits) and reads it from the
earliest offset at first start. A thread, so the event loop never waits on Kafka; the
agents `drain()` what it queued before each batch.

Broker outages: kafka-python's consumer does not reliably come back by itself after its
connection fails (an error in `partitions_for_topic`, or a reconnect backoff that grows to
30 s), so the listener owns the recovery. Any error closes the consumer; the thread logs
one line saying what failed, waits (exponential backoff, reset after a success), makes a
new consumer and seeks each partition to the next offset it had not yet queued: no
headline is lost and none is queued twice. A metadata round trip every `check_every`
seconds notices a dead connection that `poll` would only answer with empty batches, and
picks up partitions added later (read from their start).

Bounded: the queue holds at most `max_queued` headlines. When it is full the listener
stops reading (back-pressure) instead of dropping: the headlines it has not read stay in
Kafka and are read, in order, once the worker drains again; it logs once when it pauses
and once when it resumes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.topics import NEWS_TOPIC

log = logging.getLogger(__name__)

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",  # an offset gone by retention: the oldest one kept
    "bootstrap_timeout_ms": 3000,  # a new consumer gives up quickly while the broker is away: our backoff retries
    "request_timeout_ms": 5000,
    "reconnect_backoff_max_ms": 1000,
    "metadata_max_age_ms": 30000,
    "client_id": "news-listener",
}


def describe(exc: BaseException) -> str:
    """`Type: message` once (kafka-python's errors already begin their message with their type)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class NewsListener:
    """A thread that queues the raw values of every `md.news` record, in order per partition.

    `start()`, `stop()` (joins the thread, at most `timeout` s), `drain()` -> the values queued
    since the last drain. For an operator: `received` (headlines queued in all), `reconnects`
    (recoveries after an error), `errors`, `last_error` (what failed last, or None), `healthy`
    (connected and answered within `stale_after` s), `queued`, `paused` (the queue is full and
    reading waits for a drain), `positions` (partition -> next offset to read).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = NEWS_TOPIC,
        max_queued: int = 100_000,
        check_every: float = 2.0,
        stale_after: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        poll_ms: int = 500,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        if max_queued <= 0:
            raise ValueError("max_queued must be positive")
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_queued = max_queued
        self.check_every = check_every
        self.stale_after = stale_after
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.poll_ms = poll_ms
        known = KafkaConsumer.DEFAULT_CONFIG  # bootstrap_timeout_ms is kafka-python 3's: skip what this one lacks
        defaults = {k: v for k, v in CONSUMER_DEFAULTS.items() if k in known}
        self.consumer_config = {**defaults, **(consumer_config or {})}
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._next: dict[int, int] = {}  # partition -> next offset not yet queued (touched by the thread only)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="news", daemon=True)
        self._backoff = backoff_min
        self._connected = False
        self._last_ok = 0.0  # monotonic time of the last answer from the broker
        self._failing = False  # an error since the last success
        self._paused = False
        self.received = 0
        self.reconnects = 0
        self.errors = 0
        self.last_error: str | None = None

    # ---- lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to end and wait for it at most `timeout` s; True when it has ended. A
        call into Kafka in progress ends within the consumer's bootstrap/request timeouts."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def drain(self) -> list[bytes]:
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
        return out

    # ---- what an operator reads

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        """The thread runs, its consumer is connected and the broker answered within `stale_after` s."""
        return self.alive and self._connected and time.monotonic() - self._last_ok < self.stale_after

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def positions(self) -> dict[int, int]:
        return dict(self._next)

    # ---- the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            step = ["connect"]  # what was being done when an error came: for the log line
            try:
                consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, **self.consumer_config)
                self._serve(consumer, step)
            except Exception as exc:  # whatever it was, the cure is the same: a new consumer
                self._connected = False
                self._failing = True
                self.errors += 1
                self.last_error = f"{step[0]}: {describe(exc)}"
                if not self._stop.is_set():
                    log.warning("news listener: %s failed (%s); reconnecting in %.1f s, resuming at %s",
                                step[0], describe(exc), self._backoff, self._next or "the start")  # fmt: skip
            finally:
                self._connected = False
                if consumer is not None:
                    try:
                        consumer.close(timeout_ms=1000)
                    except Exception as exc:
                        log.debug("news listener: closing the consumer failed: %s", exc)
            if self._stop.wait(self._backoff):
                break
            self._backoff = min(2 * self._backoff, self.backoff_max)

    def _ok(self) -> None:
        """The broker answered: connected, backoff reset, a recovery counted."""
        self._last_ok = time.monotonic()
        self._connected = True
        self._backoff = self.backoff_min
        if self._failing:
            self._failing = False
            self.reconnects += 1
            log.info("news listener: reconnected (%d reconnects), resuming at %s", self.reconnects,
                     self._next or "the start")  # fmt: skip

    def _assign(self, consumer: KafkaConsumer, parts: set[int]) -> None:
        """Take every partition; each resumes at its next offset not yet queued, a new one at its start."""
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp.partition not in self._next]
        for tp in tps:
            if tp.partition in self._next:
                consumer.seek(tp, self._next[tp.partition])
        if fresh:
            consumer.seek_to_beginning(*fresh)

    def _serve(self, consumer: KafkaConsumer, step: list[str]) -> None:
        """Read until stopped; any error propagates to `_run`."""
        assigned: set[int] = set()
        next_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_check:
                # a round trip: raises when the broker is unreachable (poll would only return nothing),
                # and refreshes the metadata, so partitions added since are seen
                step[0] = "metadata request"
                consumer.topics()
                step[0] = "partitions_for_topic"
                parts = set(consumer.partitions_for_topic(self.topic) or ())
                if parts != assigned:
                    step[0] = "assign"
                    self._assign(consumer, parts)
                    assigned = parts
                self._ok()
                next_check = now + self.check_every
            if not assigned:  # the topic does not exist yet
                self._stop.wait(min(self.check_every, 1.0))
                continue
            room = self.max_queued - len(self._queue)
            if room <= 0:
                if not self._paused:
                    self._paused = True
                    log.warning("news listener: %d headlines queued and none drained; reading paused (nothing is"
                                " lost: it resumes at %s)", len(self._queue), self._next)  # fmt: skip
                self._stop.wait(0.1)
                continue
            if self._paused:
                self._paused = False
                log.info("news listener: queue drained; reading resumed at %s", self._next)
            step[0] = "poll"
            batches = consumer.poll(timeout_ms=self.poll_ms, max_records=min(500, room))
            self._last_ok = time.monotonic()
            for tp, records in batches.items():
                self._put(tp.partition, records)

    def _put(self, partition: int, records: list[Any]) -> None:
        nxt = self._next.get(partition, 0)
        values = []
        for r in records:
            if r.offset < nxt:  # already queued (a fetch that began before the resume point)
                continue
            values.append(r.value)
            nxt = r.offset + 1
        if values:
            with self._lock:
                self._queue.extend(values)
            self._next[partition] = nxt
            self.received += len(values)
