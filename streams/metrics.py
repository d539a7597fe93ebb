"""A worker's Prometheus metrics (`/metrics`, prometheus-client), served on `metrics_port`.

Two kinds, as the client library intends them:
- counted where they happen (`WorkerMetrics.batch`, called once per partition batch): venue messages
  and Kafka records processed, forecasts, dead-lettered messages by reason, and a histogram of the
  partition batch's time from its records to its forecasts in Redis. A few increments a batch,
  never a call per message. The messages and records per venue and the dead-lettered messages per
  venue and reason are also kept as plain totals (`totals`, `dlq_totals`), and the last 1,000 batch
  times (`batch_recent`), which the worker's heartbeat publishes to `mt:meta` (the dashboard's
  messages/s, dead letters and batch latency).
- read when scraped (`_Live`): what the worker already keeps, so nothing is counted twice: consumer
  lag per partition (the fetched high watermark minus the partition's position), windows skipped
  by the overload policy, model batches and their recent p50/p99, Redis writes and duplicates,
  failed attempts per retried step (Redis, Kafka, the model...), the age of each partition's last
  state snapshot, books drifting, the consumer group's rebalances and whether it has settled
  (streams/membership.py), and the model's id and device as an info metric. The books' resyncs
  per venue are read from the partitions' states at heartbeat time, on the event loop that feeds
  them (`read_resyncs`), and scraped as they stood then.

Each Worker has a registry of its own (tests run several workers in one process); the metric names
are the contract of deploy/grafana's dashboard (tests/test_metrics.py checks every name it uses).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.membership import REASONS
from streams.pipeline import RESYNCING

if TYPE_CHECKING:
    from streams.app import Worker
    from streams.partition import Partition
    from streams.pipeline import VenuePipeline

log = logging.getLogger(__name__)

# seconds: a batch takes ~1 ms of work plus a model pass and a Redis round trip; a generative model
# on a CPU, or an outage waited out, pushes it into seconds
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECENT = 1000  # partition batches whose times give the heartbeat's p50/p99 (the batcher keeps as many model batches)
QUANTILES = (0.5, 0.99)


def model_device(forecaster: object) -> str:
    """Where a forecaster's model runs ("cpu", "cuda:0"): its `device`; one without (the baseline) runs on the CPU."""
    return str(getattr(forecaster, "device", "cpu"))


def quantiles(values: Sequence[float]) -> dict[float, float]:
    """p50 and p99 of `values` (nearest rank below, as the model batch gauge has always taken them);
    empty when there are none."""
    recent = sorted(values)
    return {q: recent[int(q * (len(recent) - 1))] for q in QUANTILES} if recent else {}


class WorkerMetrics:
    """The worker's metrics registry, with the counters its partitions feed."""

    def __init__(self, worker: Worker) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("megatrading_messages", "Venue messages processed (frames split into their "
                                "messages), rejected ones included", ["venue"], registry=r)  # fmt: skip
        self.records = Counter("megatrading_records", "Kafka records of md.raw.<venue> processed", ["venue"],
                               registry=r)  # fmt: skip
        self.forecasts = Counter("megatrading_forecasts", "Forecasts written (Redis and md.forecasts)", ["venue"],
                                 registry=r)  # fmt: skip
        self.dlq = Counter("megatrading_dlq", "Messages sent to md.dlq, by the reason in their header",
                           ["venue", "reason"], registry=r)  # fmt: skip
        self.native_fallbacks = Counter("megatrading_native_fallbacks", "Batches done on the reference path "
                                        "because the native path panicked on them again and again (a bug of "
                                        "orderbook/native met by a record: the ERROR line names it)", ["venue"],
                                        registry=r)  # fmt: skip
        for venue in worker.settings.venues:  # exported at 0 from the start: an alert can watch its increase
            self.native_fallbacks.labels(venue)
        self.batch_seconds = Histogram("megatrading_partition_batch_seconds", "A partition's batch: its records "
                                       "taken -> its forecasts in Redis (the transaction follows, off this path)",
                                       ["venue"], buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        r.register(_Live(worker))
        self._server: Any = None
        # venue -> [messages, records] since the worker started: the counters above, as plain ints the
        # heartbeat publishes to `mt:meta` (the dashboard's messages/s), counted at the same call
        self.totals: dict[str, list[int]] = {}
        self.dlq_totals: dict[tuple[str, str], int] = {}  # (venue, reason) -> dead-lettered since start, likewise
        self.batch_recent: deque[float] = deque(maxlen=RECENT)  # the last partition batches' seconds
        # venue -> books' resyncs since the worker started, as of the last heartbeat (`read_resyncs`), and per
        # partition the state last read (weakly: a released state is not kept alive for this) and its count
        self.resyncs: dict[str, int] = {v: 0 for v in worker.settings.venues if v in RESYNCING}
        self._resyncs_seen: dict[tuple[str, int], tuple[weakref.ref[VenuePipeline], int]] = {}

    def batch(self, venue: str, records: int, messages: int, forecasts: int, rejects: Iterable[str],
              seconds: float) -> None:  # fmt: skip
        """One partition batch's counts (`rejects`: each dead-lettered message's reason)."""
        self.records.labels(venue).inc(records)
        self.messages.labels(venue).inc(messages)
        totals = self.totals.setdefault(venue, [0, 0])
        totals[0] += messages
        totals[1] += records
        self.forecasts.labels(venue).inc(forecasts)
        for reason in rejects:
            self.dlq.labels(venue, reason).inc()
            self.dlq_totals[venue, reason] = self.dlq_totals.get((venue, reason), 0) + 1
        self.batch_seconds.labels(venue).observe(seconds)
        self.batch_recent.append(seconds)

    def read_resyncs(self, partitions: Iterable[Partition]) -> dict[str, int]:
        """Venue -> times its books fell out of sync and awaited a snapshot since the worker started,
        read from the partitions' states (on the event loop that feeds them: the native feeds are not
        read from another thread), at heartbeat time, never per record. A state's own count
        (BookSync.resyncs) is since the state began, snapshots and replays included: only its increase
        while this worker holds it counts, from the count it was restored with (`resyncs_base`); a
        count that went down is a state reset (a new feed), all of it new."""
        seen: dict[tuple[str, int], tuple[weakref.ref[VenuePipeline], int]] = {}
        for p in partitions:
            pipe = p.pipeline
            if pipe is None or not pipe.resyncing:
                continue
            last = self._resyncs_seen.get((p.topic, p.partition))
            try:
                now = pipe.resyncs()
            except Exception:  # a heartbeat must not raise (it would end the Faust app): counted next time
                log.warning("could not read the resyncs of %s[%d]", p.topic, p.partition, exc_info=True)
                if last is not None:
                    seen[p.topic, p.partition] = last
                continue
            before = last[1] if last is not None and last[0]() is pipe else p.resyncs_base
            self.resyncs[p.venue] = self.resyncs.get(p.venue, 0) + (now if now < before else now - before)
            seen[p.topic, p.partition] = (weakref.ref(pipe), now)
        self._resyncs_seen = seen
        return dict(self.resyncs)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port from a thread of the client library's; the port bound (0: any free)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            # shutdown() waits for the serving loop: from a thread of its own, not the event loop's
            threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()


class _Live(Collector):
    """What the worker keeps anyway, read at scrape time (from the HTTP server's thread: every read
    here is of plain values, copied before iterating)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        parts = list(w.partitions.values())
        lag = GaugeMetricFamily(
            "megatrading_consumer_lag",
            "Records of a partition fetched by the broker's account (its high watermark) and not yet processed",
            labels=["topic", "partition"],
        )
        age = GaugeMetricFamily(
            "megatrading_snapshot_age_seconds",
            "Seconds since the partition's last state snapshot (what a restart replays grows with it)",
            labels=["topic", "partition"],
        )
        now = time.monotonic()
        for p in parts:
            pipe = p.pipeline
            high = _highwater(w, p.topic, p.partition)
            if pipe is not None and high is not None:
                lag.add_metric([p.topic, str(p.partition)], max(high - pipe.position.get(p.partition, 0), 0))
            age.add_metric([p.topic, str(p.partition)], now - p.snapshot_clock)
        yield lag
        yield age
        b = w.services.batcher.stats
        yield CounterMetricFamily("megatrading_model_batches", "Model batches scored", value=b.batches)
        yield CounterMetricFamily("megatrading_windows_scored", "Windows scored by the model", value=b.windows)
        yield CounterMetricFamily(
            "megatrading_windows_skipped",
            "Windows superseded by a newer one of their book before the model reached them (overload policy `latest`)",
            value=b.skipped,
        )
        model_s = GaugeMetricFamily("megatrading_model_batch_seconds", "A model batch's time, over the last "
                                    "1,000 batches", labels=["quantile"])  # fmt: skip
        for q, seconds in quantiles(b.latencies).items():
            model_s.add_metric([str(q)], seconds)
        yield model_s
        # counted at heartbeat time on the event loop (`WorkerMetrics.read_resyncs`): as of the last heartbeat
        resyncs = CounterMetricFamily("megatrading_resyncs", "Times a book fell out of sync (a sequence gap, a "
                                      "checksum mismatch) and awaited a fresh snapshot, since the worker started "
                                      "(as of its last heartbeat)", labels=["venue"])  # fmt: skip
        for venue, n in sorted(dict(w.metrics.resyncs).items()):
            resyncs.add_metric([venue], n)
        yield resyncs
        sink = w.sink
        yield CounterMetricFamily("megatrading_redis_writes", "Forecasts new in Redis", value=sink.written)
        yield CounterMetricFamily("megatrading_redis_duplicates", "Forecasts Redis already held (a replay after "
                                  "a restart or a fencing: written once)", value=sink.duplicates)  # fmt: skip
        failures = CounterMetricFamily("megatrading_step_failures", "Failed attempts of a step the worker retries "
                                       "through an outage (redis, kafka, the model, ...)", labels=["step"])  # fmt: skip
        for step, n in list(w.waits.failures.items()):
            failures.add_metric([step], n)
        yield failures
        waiting = GaugeMetricFamily("megatrading_waiting", "1 while the worker waits out a failing step",
                                    labels=["step"])  # fmt: skip
        for step in list(w.waits.now):
            waiting.add_metric([step], 1)
        yield waiting
        drift = w.services.drift
        if drift is not None:
            yield GaugeMetricFamily("megatrading_books_drifting", "Books in the drift state (docs/design.md, "
                                    "Drift)", value=drift.drifting)  # fmt: skip
        # the membership watch's state (streams/membership.py): served from before the first join, so a
        # worker whose join never completes shows here as well as in its log
        membership = w.membership
        yield CounterMetricFamily("megatrading_group_rebalances", "Partition assignments the worker received since "
                                  "it started (one per rebalance of its consumer group)",
                                  value=membership.rebalances)  # fmt: skip
        unsettled = GaugeMetricFamily("megatrading_group_unsettled", "1 while the consumer group has not settled: "
                                      "no_assignment (the join does not complete), flapping (rebalances without "
                                      "end: two live workers, one group_instance_id), fenced (transactions of "
                                      "partitions still assigned fenced again and again: the same)",
                                      labels=["reason"])  # fmt: skip
        state = membership.unsettled(time.monotonic())
        for reason in REASONS:
            unsettled.add_metric([reason], int(state == reason))
        yield unsettled
        f = w.forecaster
        info = InfoMetricFamily("megatrading_model", "The model scoring this worker's windows")
        info.add_metric([], {"model": f.model_id, "device": model_device(f)})
        yield info


def _highwater(worker: Worker, topic: str, partition: int) -> int | None:
    from faust.types import TP

    try:
        return int(worker.app.consumer.highwater(TP(topic, partition)))
    except Exception:  # not assigned here, or not fetched yet: no lag to report
        return None
