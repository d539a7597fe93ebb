"""End to end through Kafka and Redis: one Faust worker beside a bare aiokafka loop (run by `make bench`).

A real broker and Redis are started on free loopback ports (`streams.infra`, a temporary state
folder, always stopped at the end). Data (`--venue`):
- binance (default): the three real Binance captures of ../shared/data/binance-hftbacktest (spot
  BTCUSDT, spot ETHUSDT, USD-M BTCUSDT), read once into memory. They are the richest real input the
  project has (diffs, snapshots, trades, tickers; 5% of messages close a window). For volume, copies
  of each capture travel under distinct symbols (`"s"`/`"symbol"` and the stream name rewritten:
  BTCUSDT_T0, BTCUSDT_T1, ...; the USD-M capture as BTCUSDTPERP_*), merged by capture time as a
  multi-symbol feed interleaves them;
- kraken: copies of the real Kraken book capture (cryptofeed-captures/KRAKEN.ws.50.0.gz: ten pairs' subscribe
  answers, 1,000-level snapshots, updates with their CRC32 checksums), each copy's pairs renamed `<pair>.<k>`,
  merged by capture time. Saturation only;
- itch, lobster, coinbase: a simulated day over `--itch-symbols` stocks (model/sim, as `megatrading
  simulate --format FMT` writes it; Coinbase's `full` channel), keyed by stock (ITCH's system messages
  unkeyed). Saturation only. Coinbase has no native decoder: its worker runs the Python feed with the
  compiled window builders (streams/pipeline.py), `MT_NATIVE=0` the all-Python path.
The saturation records are frames (orderbook/frames.py, the default `Framer`: 64 messages or 1 ms of
venue time per key), as `replay` and `simulate --kafka` write them; `--no-frames` sends one message a
record. Rates are venue messages/s (records/s beside them).

(a) Saturation. N messages (default 500,000) are produced, keyed by symbol, to two 4-partition
    topics with the same partitioner: `md.raw.<venue>` for the Faust worker and
    `bench.raw.<venue>` for the bare loop. Then
    - ONE `python -m streams.cli worker` process (a fresh app id, the baseline forecaster) drains
      `md.raw.<venue>`. Clock: from its first partition restored (the timestamp of that log line:
      from then on its records wait for it) to the commit that covers every record (committed
      offsets polled every 0.05 s by an admin request, as streams.offsets.committed_offsets does: a
      consumer with the group id would join the group). Rate = every record / that time, times the
      workload's mean messages per record. Printed beside it, the clock this bench used before:
      from the first commit seen to the last, the first commit's records left out. A batch holds up
      to take_max (20,000) records a partition, so in a run of a few batches a partition the first
      commit covers much of the run and that clock times a burst (2026-12-01: 196k messages/s at
      200k messages, 153k at 500k, 112k at 2M).
    - the bare loop, in this process: an AIOKafkaConsumer in a fresh group, getmany(take_max
      records, 50 ms), and per batch exactly the worker's work (VenuePipeline.process per record,
      BaselineForecaster.predict on the batch's windows, forecast_records, RedisSink.write, each
      forecast sent to `md.forecasts` as msgpack and every send acknowledged), then a commit.
      Clock: from the start of the fetch that returned its first records to the end of the last
      batch's commit (first commit to last beside it).
    - in memory (no Kafka, no Redis): VenuePipeline.process + predict + forecast_records on the
      same records, the ceiling of one Python process (the records made before the clock starts).
(b) Latency (Binance only, one message a record: the hardest case for a per-record cost) at a fixed
    offered rate R (default 20,000 messages/s, `--rates`, for `--seconds`). A
    producer process (aiokafka, spawned, not sharing this process's interpreter) sends the
    records at R per second, each with its send time in header `bench_produced_ns`. A subscriber
    process listens on Redis `mt:forecasts` (every forecast as it is written, streams/sink.py)
    and stamps each on arrival. Each latency run uses symbols no earlier run used (BTCUSDT_L0...),
    so a forecast's (symbol, window) names the record that completed its window: that map is
    computed before the run by the same VenuePipeline offline (the window count is exact and
    per symbol). Latency = arrival on the channel - that record's send time (same machine, same
    clock), over the forecasts of records sent after the first second (warm-up).
(c) Where the time goes: the bare loop's per-batch work under cProfile on fresh symbols, with
    a real Redis: its stages (decode, book, features + windows, forecaster, Redis) and the top
    10 functions by cumulative time.
(d) `--latency-only`: the worker's latency runs alone, at each of `--rates` in turn (a ladder), with
    `--model` (a checkpoint: the generative model, on the CPU here) and `--overload`; it prints the
    highest offered rate at which p99 stays under `--p99-goal` (250 ms with a model, 50 with the
    baseline), every lower rate included. `make bench` runs it for the demo checkpoint under `latest`
    and under `every`. Under `latest` a window superseded by a newer one of its book is not scored:
    the forecasts column shows how many were published of the windows closed.
(e) `--transactional N` (default 0: off): the worker on a feed handler that writes its raw topic in Kafka
    transactions (Kafka Connect's exactly-once sources, Flink's exactly-once sink). After the worker's runs
    in (a) and (b), `md.raw.<venue>` is deleted and created again (the worker reads that topic and no
    other) and the same saturation records are written to it again, N a transaction; 1 transaction in K
    (`--abort-every K`, default 7; 0: none) is aborted once its records are in the log, and its records
    are sent again in the next, as tests/test_faults.py's transactional feed. Same producer settings and
    partitioner: each partition holds the same records in the same order, between commit markers and
    aborted records (offsets no record fills: the worker reads raw topics read_committed, and
    streams/partition.py `_undelivered` reads the offsets a batch skipped back through a RangeReader, one
    read a batch from its first skip to its last, so such a feed's records are read twice). Then ONE
    fresh worker (a new app id, its own Redis database, the same CPU placement, the machine to itself)
    drains it, timed as in (a): committed offsets are turned into records below them with the offsets
    the producer got for the committed records. Printed: its rate beside the plain worker's, the ratio
    transactional / plain; both again by Redis's clock, from the first forecast written to the last
    (their stream ids), a second clock that leaves out each worker's first batch;
    `_fill_gap`'s "the stream resumed" warnings and the WARNING lines in both workers' logs (the plain
    one's include its latency runs); and whether its forecasts in Redis are the plain worker's, field by
    field but for their emission time (aborted records processed would change them: the run then exits
    1). The bare loop is not run on the transactional feed (it reads `bench.raw.<venue>`, plain, as
    without the flag).

Placement (`--no-pin` to turn it off): with two CPUs or more, the consumer under test (the worker
process, or this process's event-loop thread for the bare loop) runs on the last CPU and everything
else (the broker, Redis, the producer and subscriber processes, this process's other threads) on the
others, as a deployment gives a worker cores of its own and runs the feed and the broker elsewhere.
Unpinned on this 2-core machine, a 20k messages/s latency run shares two cores between five busy
processes (worker ~75% of a core, broker ~55%, producer ~25%): the tail is then the scheduler's.
Before the latency runs, one unmeasured warm-up run at the first rate (`--warm-up-s`): the broker's
JIT and both consumers' caches warm up there, not in the first measured run.

Nothing asserts a time. The machine is shared: read the ratios, whose two sides ran in the same
run, one after the other, each with the machine to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import gc
import heapq
import itertools
import json
import multiprocessing as mp
import os
import pickle
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

import msgpack  # noqa: E402
import redis  # noqa: E402
from kafka import KafkaAdminClient, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kafka.errors import (  # noqa: E402
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)

from model.serving.baseline import BaselineForecaster  # noqa: E402
from model.serving.forecaster import forecast_records  # noqa: E402
from model.sim.engine import SimConfig  # noqa: E402
from model.sim.run import simulate  # noqa: E402
from orderbook.frames import framed  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402
from orderbook.windows import Window  # noqa: E402
from streams.batcher import OVERLOAD_POLICIES  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.logformat import line_time  # noqa: E402
from streams.pipeline import VenuePipeline  # noqa: E402
from streams.publish import simulation_records  # noqa: E402
from streams.sink import CHANNEL, HIST, RedisSink  # noqa: E402
from streams.topics import DLQ_TOPIC, FORECASTS_TOPIC, RAW_TOPIC  # noqa: E402

BINANCE = "binance-hftbacktest"
PARTITIONS = 4
HEADER = "bench_produced_ns"
# the capture's own symbol and the base name its copies get (spot and USD-M BTCUSDT must differ)
CAPTURES = {"spot_btcusdt": ("BTCUSDT", "BTCUSDT"), "spot_ethusdt": ("ETHUSDT", "ETHUSDT"),
            "usdm_btcusdt": ("BTCUSDT", "BTCUSDTPERP")}  # fmt: skip
GOAL_RATE, GOAL_P99_MS, GOAL_AT = 100_000, 50.0, 20_000
GOAL_P99_MS_MODEL = 250.0  # with the generative model on CPU, under `latest`
WARM_UP_S = 1.0  # of each latency run, left out of its figures
POLL_S = 0.05
DB_FAUST, DB_BARE, DB_PROFILE, DB_TXN = 1, 2, 3, 4
GAP_LINE = "the stream resumed at offset"  # streams/partition.py `_fill_gap`'s warning
RESTORED = "]: restored to offset"  # streams/recovery.py Restored.describe, logged once a partition


@dataclass(frozen=True)
class Placement:
    """The consumer under test on CPUs of its own, the rest of the run on the others (module docs)."""

    consumer: frozenset[int]
    rest: frozenset[int]

    @staticmethod
    def of(pin: bool) -> Placement | None:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return None
        return Placement(frozenset(cpus[-1:]), frozenset(cpus[:-1]))

    def describe(self) -> str:
        def cpus(s: frozenset[int]) -> str:
            return ",".join(map(str, sorted(s)))

        return f"consumer on CPU {cpus(self.consumer)}, the rest on {cpus(self.rest)}"


def pin(cpus: frozenset[int] | None) -> None:
    """The calling thread (and the threads and processes it starts later) onto `cpus`."""
    if cpus:
        os.sched_setaffinity(0, cpus)


Msg = tuple[bytes | None, bytes]  # (key, value) of one record
Timed = tuple[bytes | None, bytes, int]  # (key, message, venue time ns): what a Framer takes


def faust_topic(venue: str) -> str:
    return RAW_TOPIC.format(venue=venue)


def bare_topic(venue: str) -> str:
    return f"bench.raw.{venue}"


# ---------------------------------------------------------------- data


def load_captures(folder: Path) -> dict[str, list[Any]]:
    """Every record of each capture, in memory (read_capture: snapshots wrapped with their symbol)."""
    cls = feed_class("binance")
    out = {}
    for stem in CAPTURES:
        path = next(folder.glob(f"{stem}_*.gz"), None)
        if path is None:
            sys.exit(f"pipeline_bench: no {stem}_*.gz in {folder}")
        out[stem] = list(cls.read_capture(path))
    return out


def renamer(old: str, new: str) -> Any:
    """Rewrite the symbol a Binance message names: the `"s"`/`"symbol"` fields (what the feed and
    the record key read) and the combined stream's name (`btcusdt@depth@100ms`)."""
    fields = re.compile(rb'("(?:s|symbol)"\s*:\s*")' + re.escape(old.encode()) + rb'"')
    stream = re.compile(rb'("stream"\s*:\s*")' + re.escape(old.lower().encode()) + rb"@")
    new_b, new_low = new.encode(), new.lower().encode()

    def rename(raw: bytes) -> bytes:
        raw = fields.sub(lambda m: m.group(1) + new_b + b'"', raw)
        return stream.sub(lambda m: m.group(1) + new_low + b"@", raw, count=1)

    return rename


def records(captures: dict[str, list[Any]], n: int, tag: str) -> list[Msg]:
    """The first `n` messages of enough symbol-renamed copies of the captures, merged by capture
    time, one a record; symbols `<base>_<tag><copy>`, a tag no other run uses."""
    return [(key, raw) for key, raw, _ in timed_messages(captures, n, tag)]


def timed_messages(captures: dict[str, list[Any]], n: int, tag: str) -> list[Timed]:
    """`records`' messages with their capture times, for a Framer."""
    per_copy = sum(len(v) for v in captures.values())
    copies = max(1, -(-n // per_copy))
    streams = [
        _renamed(recs, *CAPTURES[stem], f"{CAPTURES[stem][1]}_{tag}{k}")
        for k in range(copies)
        for stem, recs in captures.items()
    ]
    merged = heapq.merge(*streams, key=lambda t: t[0])
    return [(key, raw, ts) for ts, key, raw in (next(merged) for _ in range(min(n, per_copy * copies)))]


SIMULATED = ("itch", "lobster", "coinbase")  # `--venue`s simulated here (model/sim writes them)
KRAKEN_BOOKS = "cryptofeed-captures/KRAKEN.ws.50.0.gz"


def kraken_messages(data: Path, n: int) -> list[Timed]:
    """The first `n` messages of copies of the Kraken book capture (ten pairs, each copy's renamed
    `<pair>.<copy>`: its subscribe answers, 1,000-level snapshots, updates with their checksums), merged by
    capture time, keyed by pair as `replay` keys them."""
    records = [r for r in feed_class("kraken").read_capture(data / KRAKEN_BOOKS) if r.raw[:1] in (b"[", b"{")]
    pairs = sorted({m.group(1) for r in records for m in re.finditer(rb'"([A-Z]+/[A-Z]+)"', r.raw)})
    pattern = re.compile(rb'"(' + b"|".join(re.escape(p) for p in pairs) + rb')"')
    copies = max(1, -(-n // len(records)))
    key_of = feed_class("kraken")().key
    streams = []
    for k in range(copies):
        suffix = b".%d" % k

        def rename(raw: bytes, suffix: bytes = suffix) -> bytes:
            return pattern.sub(lambda m: b'"' + m.group(1) + suffix + b'"', raw)

        renamed = [(r.recv_ts, rename(r.raw)) for r in records]
        streams.append([(ts, key_of(raw).encode() or None, raw) for ts, raw in renamed])
    merged = heapq.merge(*streams, key=lambda t: t[0])
    return [(key, raw, ts) for ts, key, raw in itertools.islice(merged, n)]


def simulated(fmt: str, n: int, symbols: int, seed: int) -> list[Timed]:
    """The first `n` messages of a simulated day over `symbols` stocks in `fmt` (itch, lobster, coinbase:
    model/sim, as `megatrading simulate --format FMT` writes it), keyed by stock as `replay` keys them."""
    minutes = 10
    while True:
        result = simulate(SimConfig(n_symbols=symbols, duration_ns=minutes * 60 * 10**9, seed=seed))
        msgs = [(m.symbol.encode() or None, m.raw, m.ts) for topic, m in simulation_records(result, fmt)
                if topic == RAW_TOPIC.format(venue=fmt)]  # fmt: skip
        if len(msgs) >= n or minutes >= 24 * 60:
            return msgs[:n]
        minutes = int(minutes * 1.2 * n / max(len(msgs), 1)) + 1


def as_records(msgs: Sequence[Timed], frames: bool) -> tuple[list[Msg], int]:
    """Records as `replay` writes them (frames of `orderbook.frames.Framer`'s default bounds), or one
    message a record; and the messages they hold."""
    if not frames:
        return [(k, m) for k, m, _ in msgs], len(msgs)
    return [(f.key, f.value) for f in framed(msgs)], len(msgs)


def _renamed(recs: Sequence[Any], old: str, base: str, symbol: str) -> Iterable[tuple[int, bytes, bytes]]:
    """(capture time, key, renamed message) of one copy of a capture."""
    rename = renamer(old, symbol)
    key = symbol.encode()
    return ((r.recv_ts, key, rename(r.raw)) for r in recs)


@dataclass
class FakeMsg:
    """A record outside Kafka, as a consumer hands one over."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int


@dataclass
class Offline:
    """What the records give without Kafka or Redis: the window each record completes, and time."""

    record_of: dict[tuple[str, int], int]  # (symbol, window count) -> index of the record completing it
    windows: int
    seconds: float  # process + predict + forecast_records
    rejected: int


def offline(venue: str, msgs: Sequence[Msg]) -> Offline:
    """The worker's work on the records, in memory, batch by batch as a worker takes them."""
    pipe = VenuePipeline(venue, Settings().window, max_bytes=Settings().max_record_bytes)
    model = BaselineForecaster()
    record_of: dict[tuple[str, int], int] = {}
    n_windows = 0
    take = Settings().take_max
    # the records as a consumer hands them over, made before the clock starts (a consumer's own work)
    batches = [[FakeMsg(key, value, 0, i) for i, (key, value) in enumerate(msgs[lo : lo + take], start=lo)]
               for lo in range(0, len(msgs), take)]  # fmt: skip
    start = time.perf_counter()
    for records in batches:
        batch, _ = pipe.process_batch(records)  # as a worker's partition: one call a batch
        for w in batch:
            record_of[(w.symbol, int(w.n_seen))] = w.offset[1]
        forecast_records(model.model_id, batch, model.forecast(batch, Settings().alert_threshold), 0)
        n_windows += len(batch)
    seconds = time.perf_counter() - start
    return Offline(record_of, n_windows, seconds, sum(pipe.stats.rejected.values()))


# ---------------------------------------------------------------- Kafka helpers


def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()


def producer_opts(bootstrap: str) -> dict[str, Any]:
    """streams.publish's settings (acks=all, linger 5 ms, 1 MB batches) on aiokafka: kafka-python's
    producer manages about 15k records/s here, less than the rate to offer."""
    return {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5, "max_batch_size": 1 << 20,
            "max_request_size": 16 << 20}  # fmt: skip


async def produce(bootstrap: str, topics: Sequence[str], msgs: Sequence[Msg], partitions: list[int] | None = None
                  ) -> None:  # fmt: skip
    """Every record to every topic, as fast as the broker takes them, all acknowledged. `partitions`: filled
    with the partition each record got in the first topic (an unkeyed one's is the partitioner's pick)."""
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(**producer_opts(bootstrap))
    await prod.start()
    try:
        sent: list[Any] = []
        for key, value in msgs:
            for i, topic in enumerate(topics):
                fut = await prod.send(topic, value, key=key)
                if partitions is not None and i == 0:
                    sent.append(fut)
        await prod.flush()
        if partitions is not None:
            partitions[:] = [fut.result().partition for fut in sent]
    finally:
        await prod.stop()


@dataclass
class TxnFeed:
    """What `produce_transactional` left in a topic."""

    offsets: dict[int, list[int]]  # partition -> the offsets of its committed records, in order
    transactions: int  # committed and aborted
    aborted: int  # records of aborted transactions, in the log but not to be read
    seconds: float

    @property
    def records(self) -> int:
        return sum(map(len, self.offsets.values()))

    @property
    def log_offsets(self) -> int:
        """Offsets the records took up to the last committed one: records, aborted records, markers."""
        return sum(o[-1] + 1 for o in self.offsets.values() if o)


async def produce_transactional(bootstrap: str, topic: str, msgs: Sequence[Msg], partitions: Sequence[int],
                                per: int, abort_every: int) -> TxnFeed:  # fmt: skip
    """Every record to `topic` as a feed handler writing in Kafka transactions does (Kafka Connect's
    exactly-once sources, Flink's exactly-once sink): `per` records a transaction; every `abort_every`-th
    (0: none) is aborted once its records are in the log, and its records are sent again in the next,
    as tests/test_faults.py's transactional feed. Same producer settings as `produce`, each record to
    the partition `produce` gave it (`partitions`: a keyed record's is its key's, an unkeyed one's the
    partitioner's pick), so that each partition holds the same records in the same order."""
    from aiokafka import AIOKafkaProducer

    t0 = time.perf_counter()
    prod = AIOKafkaProducer(**producer_opts(bootstrap), transactional_id=f"bench-feed-{os.getpid()}")
    await prod.start()
    offsets: dict[int, list[int]] = {}
    transactions = aborted = 0
    try:
        for n, i in enumerate(range(0, len(msgs), per)):
            chunk = msgs[i : i + per]
            parts = partitions[i : i + per]
            if abort_every and n % abort_every == abort_every - 1:
                await prod.begin_transaction()
                await asyncio.gather(*[await prod.send(topic, value, key=key, partition=part)
                                       for (key, value), part in zip(chunk, parts, strict=True)])  # fmt: skip
                await prod.abort_transaction()  # its records acknowledged first: they take offsets
                transactions, aborted = transactions + 1, aborted + len(chunk)
            async with prod.transaction():
                sent = [await prod.send(topic, value, key=key, partition=part)
                        for (key, value), part in zip(chunk, parts, strict=True)]  # fmt: skip
            transactions += 1
            for fut in sent:  # all acknowledged once the commit returns
                meta = fut.result()
                offsets.setdefault(meta.partition, []).append(meta.offset)
    finally:
        await prod.stop()
    return TxnFeed(offsets, transactions, aborted, time.perf_counter() - t0)


def recreate_topic(bootstrap: str, name: str, timeout: float = 60.0) -> None:
    """`name` deleted and created again, empty, each of its partitions led: the worker reads
    `md.raw.<venue>` and nothing else."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout

    def wait(what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {what} after {timeout:.0f} s")
        time.sleep(0.2)

    try:
        admin.delete_topics([name])
        while True:
            try:
                admin.create_topics([NewTopic(name, PARTITIONS, 1)])
                break
            except TopicAlreadyExistsError:  # its deletion is still under way
                wait("not deleted")
        while True:  # a producer sent to a partition with no leader yet logs warnings while it retries
            parts = [p for t in admin.describe_topics([name]) for p in t.get("partitions", [])]
            if len(parts) == PARTITIONS and all(
                p.get("error_code") == 0 and p.get("leader_id", -1) >= 0 for p in parts
            ):
                return
            wait("partitions without a leader")
    finally:
        admin.close()


class GroupWatch:
    """A group's committed offsets summed over a topic, by admin request (as
    streams.offsets.committed_offsets, with one admin client kept open for frequent polls).
    `offsets` (a transactional topic's: partition -> the sorted offsets of its committed records)
    turns each committed offset into the records below it, as on a topic where every offset is one."""

    def __init__(self, bootstrap: str, group: str, topic: str, offsets: dict[int, list[int]] | None = None) -> None:
        self.group, self.offsets = group, offsets
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def _records(self, partition: int, offset: int) -> int:
        return offset if self.offsets is None else bisect.bisect_left(self.offsets.get(partition, []), offset)

    def committed(self) -> int:
        for _ in range(40):
            try:
                got = self.admin.list_group_offsets({self.group: self.tps}).get(self.group, {})
                return sum(self._records(tp.partition, max(getattr(got.get(tp), "offset", 0) or 0, 0))
                           for tp in self.tps)  # fmt: skip
            except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):  # a new group
                time.sleep(0.25)
        raise TimeoutError(f"group {self.group}: no coordinator")

    def close(self) -> None:
        self.admin.close()


# ---------------------------------------------------------------- latency helpers (processes)


def paced_producer(bootstrap: str, topic: str, msgs: list[Msg], rate: float, out: str, ready: Any,
                   cpus: frozenset[int] | None) -> None:  # fmt: skip
    """Send `msgs` at `rate` per second, each with its send time (ns) in a header; the send times
    go to `out` (pickle). A process of its own: it must not share a core's interpreter with the
    consumer it feeds."""
    from aiokafka import AIOKafkaProducer

    pin(cpus)

    async def run() -> list[int]:
        prod = AIOKafkaProducer(**producer_opts(bootstrap))
        await prod.start()
        sent = [0] * len(msgs)
        ready.set()
        start, i = time.monotonic(), 0
        while i < len(msgs):
            due = min(len(msgs), int((time.monotonic() - start) * rate) + 1)
            while i < due:
                key, value = msgs[i]
                sent[i] = time.time_ns()
                await prod.send(topic, value, key=key, headers=[(HEADER, str(sent[i]).encode())])
                i += 1
            await asyncio.sleep(0.001)
        await prod.flush()
        await prod.stop()
        return sent

    sent = asyncio.run(run())
    Path(out).write_bytes(pickle.dumps(sent))


def subscriber(url: str, out: str, ready: Any, stop: Any, cpus: frozenset[int] | None) -> None:
    """Stamp every message of the forecasts channel on arrival; (ns, payload) pairs go to `out`."""
    pin(cpus)
    client = redis.Redis.from_url(url)
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(CHANNEL)
    while sub.get_message(timeout=0.05) is None and not sub.subscribed:  # the subscription confirmed
        pass
    ready.set()
    got: list[tuple[int, bytes]] = []
    quiet = 0.0
    while not stop.is_set() or quiet < 0.3:  # after stop: drain until the channel is quiet
        msg = sub.get_message(timeout=0.05)
        if msg is None:
            quiet += 0.05
            continue
        quiet = 0.0
        got.append((time.time_ns(), msg["data"]))
    sub.close()
    Path(out).write_bytes(pickle.dumps(got))


@dataclass
class Latency:
    rate: float  # offered
    achieved: float  # what the producer managed
    records: int
    matched: int  # forecasts found on the channel
    expected: int  # forecasts the offline run says the records give
    ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        s = sorted(self.ms)
        return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


class LatencyRun:
    """One latency measurement: subscriber and paced producer processes around a consumer."""

    def __init__(self, bootstrap: str, redis_url: str, topic: str, msgs: list[Msg], rate: float, tmp: Path,
                 place: Placement | None) -> None:  # fmt: skip
        cpus = place.rest if place else None
        self.ctx = mp.get_context("spawn")  # no fork of a process holding sockets and an event loop
        self.msgs, self.rate, self.tmp = msgs, rate, tmp
        self.sub_ready, self.sub_stop, self.prod_ready = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        self.sub = self.ctx.Process(target=subscriber, args=(redis_url, str(tmp / "sub.pkl"), self.sub_ready,
                                                             self.sub_stop, cpus))  # fmt: skip
        self.prod = self.ctx.Process(target=paced_producer, args=(bootstrap, topic, msgs, rate, str(tmp / "sent.pkl"),
                                                                  self.prod_ready, cpus))  # fmt: skip

    def start(self) -> None:
        self.sub.start()
        if not self.sub_ready.wait(60):
            raise RuntimeError("the Redis subscriber did not start")
        self.prod.start()

    def finish(self, off: Offline) -> Latency:
        self.prod.join(120)
        self.sub_stop.set()
        self.sub.join(60)
        sent: list[int] = pickle.loads((self.tmp / "sent.pkl").read_bytes())
        got: list[tuple[int, bytes]] = pickle.loads((self.tmp / "sub.pkl").read_bytes())
        span = (sent[-1] - sent[0]) / 1e9 if len(sent) > 1 else 0.0
        warm_until = sent[0] + int(WARM_UP_S * 1e9)
        lat = Latency(self.rate, (len(sent) - 1) / span if span else 0.0, len(sent), 0,
                      sum(1 for i in off.record_of.values() if sent[i] >= warm_until))  # fmt: skip
        for arrived, payload in got:
            doc = json.loads(payload)
            i = off.record_of.get((doc["symbol"], int(doc["window"])))
            if i is None or sent[i] < warm_until:
                continue
            lat.matched += 1
            lat.ms.append((arrived - sent[i]) / 1e6)
        return lat


# ---------------------------------------------------------------- the Faust worker


class FaustWorker:
    """One `python -m streams.cli worker` process for the binance topic, in a fresh group."""

    def __init__(self, bootstrap: str, redis_url: str, app_id: str, log: Path, venue: str, take: int,
                 model: str = "baseline", overload: str = "every", cpus: frozenset[int] | None = None
                 ) -> None:  # fmt: skip
        # MT_HOME beside the log: the worker's Faust data goes with the test's files, not into ~/.cache
        env = dict(os.environ, MT_KAFKA_BOOTSTRAP=bootstrap, MT_REDIS_URL=redis_url, MT_APP_ID=app_id,
                   MT_WORKER_ID=f"{app_id}-w", MT_VENUES=venue, MT_MODEL=model, MT_OVERLOAD=overload,
                   MT_TAKE_MAX=str(take),
                   PYTHONPATH=str(REPO), MT_HOME=str(log.parent / "mt-home"))  # fmt: skip
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=(lambda: pin(cpus)) if cpus else None)  # fmt: skip

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the Faust worker exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def wait_up(self, timeout: float) -> None:
        """Until the worker's start-up line (its model loaded) is in its log."""
        deadline = time.monotonic() + timeout
        while " up: venues " not in self.log.read_text(errors="replace"):
            self.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Faust worker did not start in {timeout:.0f} s: see {self.log}")
            time.sleep(POLL_S)

    def ready_at(self) -> float | None:
        """Wall time of the worker's first partition restored (its log line's timestamp): from then on
        its records are waiting for it, so a saturation clock started there counts every record."""
        for line in self.log.read_text(errors="replace").splitlines():
            if RESTORED in line and (when := line_time(line)) is not None:
                return when
        return None

    def progress(self) -> str:
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if "progress:" in ln]
        return lines[-1].split("progress:", 1)[1].strip() if lines else "(no progress line yet)"


def wait_committed(watch: GroupWatch, target: int, timeout: float, alive: Any = None
                   ) -> tuple[tuple[float, int] | None, float]:  # fmt: skip
    """Poll until the group has committed `target` records: ((time, committed) of the first commit
    seen, or None if the group had committed before polling began; the time `target` was seen)."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    while True:
        done = watch.committed()
        now = time.time()
        if first is None and done > 0:
            first = (now, done)
        if done >= target:
            return first, now
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {watch.group}: {done:,} of {target:,} committed after {timeout:.0f} s")
        if alive is not None:
            alive()
        time.sleep(POLL_S)


def history_count(client: redis.Redis, venue: str, symbols: Iterable[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for s in symbols:
        pipe.xlen(HIST.format(venue=venue, symbol=s))
    return sum(pipe.execute())


def symbols_of(msgs: Iterable[Msg]) -> set[str]:
    return {k.decode() for k, _ in msgs if k}


@dataclass
class Workload:
    """The saturation run's records (frames or single messages) of one venue."""

    venue: str
    records: list[Msg]
    messages: int  # venue messages in them
    take: int  # records a batch, the worker's (MT_TAKE_MAX) and the bare loop's alike

    @property
    def per_record(self) -> float:
        return self.messages / len(self.records)

    @property
    def symbols(self) -> set[str]:
        return symbols_of(self.records)


@dataclass
class Throughput:
    records: int  # timed
    seconds: float
    forecasts: int  # in Redis at the end, all records
    per_record: float  # venue messages per record, the workload's mean

    @property
    def rate(self) -> float:
        """NaN when the first commit took (nearly) every record: a run too short for its batches."""
        return self.records / self.seconds if self.records > 0 and self.seconds > 0 else float("nan")

    @property
    def message_rate(self) -> float:
        return self.rate * self.per_record

    def describe(self) -> str:
        if self.rate != self.rate:
            return f"not timed: the first commit took all but {self.records:,} records (raise --messages)"
        return (f"{self.message_rate:,.0f} messages/s, {self.rate:,.0f} records/s ({self.records:,} records in "
                f"{self.seconds:.1f} s)")  # fmt: skip


LatRun = tuple[float, list[Msg], Offline]  # offered rate, records, what they give


@dataclass(frozen=True)
class LatPlan:
    runs: list[LatRun]
    warm_up: LatRun | None  # run first, not measured
    place: Placement | None

    def all(self) -> list[tuple[bool, LatRun]]:
        """(measured, run) in order: the warm-up first."""
        warm = [(False, self.warm_up)] if self.warm_up is not None else []
        return warm + [(True, r) for r in self.runs]


def bench_faust(bootstrap: str, redis_url: str, work: Workload, plan: LatPlan,
                tmp: Path, model: str = "baseline", overload: str = "every", name: str = "faust",
                label: str = "faust worker", offsets: dict[int, list[int]] | None = None
                ) -> tuple[Throughput | None, list[Latency], str]:  # fmt: skip
    """The worker's saturation run (none without records: `--latency-only`), then its latency runs.
    A fresh worker each call, `name` its app id's and log's (`<name>-worker.log`); `offsets`: the
    topic was written in transactions (`TxnFeed.offsets`, for `GroupWatch`)."""
    app_id = f"bench-{name}-{os.getpid()}"
    worker = FaustWorker(bootstrap, redis_url, app_id, tmp / f"{name}-worker.log", work.venue, work.take, model,
                         overload, plan.place.consumer if plan.place else None)  # fmt: skip
    watch = GroupWatch(bootstrap, app_id, faust_topic(work.venue), offsets)
    client = redis.Redis.from_url(redis_url)
    tput = work.records
    try:
        th = None
        if tput:
            first, end = wait_committed(watch, len(tput), 600, worker.alive)
            assert first is not None
            t0, c0 = first
            forecasts = history_count(client, work.venue, work.symbols)
            # the first commit seen may cover a whole batch a partition (take_max records), so a run of a
            # few batches is mostly left out of the first-to-last-commit clock: the rate is clocked from
            # the worker's first partition restored, every record counted
            ready = worker.ready_at()
            if ready is None:
                raise RuntimeError(f"no '{RESTORED}' line in {worker.log}")
            burst = Throughput(len(tput) - c0, end - t0, forecasts, work.per_record)
            th = Throughput(len(tput), end - ready, forecasts, work.per_record)
            print(f"  {label}: {th.describe()} from its first partition restored to the last commit; first commit "
                  f"to last: {burst.describe()}", flush=True)  # fmt: skip
        else:
            worker.wait_up(300)
        lats, target = [], len(tput)
        for i, (measured, (rate, msgs, off)) in enumerate(plan.all()):
            run = LatencyRun(bootstrap, redis_url, faust_topic(work.venue), msgs, rate, tmp / f"faust-lat{i}",
                             plan.place)  # fmt: skip
            run.tmp.mkdir()
            run.start()
            target += len(msgs)
            wait_committed(watch, target, len(msgs) / 1000 + 120, worker.alive)
            lat = run.finish(off)
            lats += [lat] * measured
            print(f"  {label} at {rate:,.0f}/s{'' if measured else ' (warm-up)'}: p50 {lat.pct(0.5):.1f} ms, "
                  f"p99 {lat.pct(0.99):.1f} ms", flush=True)  # fmt: skip
        return th, lats, worker.progress()
    finally:
        watch.close()
        worker.stop()


@dataclass
class TxnResult:
    """The worker on the same records written in transactions (`--transactional`)."""

    feed: TxnFeed
    th: Throughput
    progress: str  # the worker's last progress line
    gaps: tuple[int, int]  # `_fill_gap`'s warnings in the plain and the transactional worker's logs
    warnings: tuple[int, int]  # WARNING lines in them
    forecasts: tuple[int, int]  # in Redis: the plain run's, this run's
    exact: bool  # this run's forecasts are the plain run's, field by field (their emission time aside)
    spans: tuple[float, float]  # s from the first forecast written to the last, by Redis's clock: plain, this run


History = dict[str, list[dict[bytes, bytes]]]


def forecast_history(client: redis.Redis, venue: str, symbols: Iterable[str]) -> tuple[History, float]:
    """Every forecast in Redis of each symbol, in order, without its emission time; and the seconds from
    the first written to the last by Redis's clock (their stream ids: ms when each was added)."""
    syms = sorted(symbols)
    pipe = client.pipeline(transaction=False)
    for s in syms:
        pipe.xrange(HIST.format(venue=venue, symbol=s))
    got = pipe.execute()
    ms = [int(entry_id.split(b"-")[0]) for entries in got for entry_id, _ in entries]
    history = {s: [{k: v for k, v in fields.items() if k != b"emitted_ts"} for _, fields in entries]
               for s, entries in zip(syms, got, strict=True)}  # fmt: skip
    return history, (max(ms) - min(ms)) / 1e3 if ms else 0.0


def bench_transactional(bootstrap: str, url: str, work: Workload, partitions: Sequence[int], place: Placement | None,
                        tmp: Path, args: argparse.Namespace) -> TxnResult:  # fmt: skip
    """`--transactional`: the saturation records again, to the worker's topic emptied (deleted and created
    again: the worker reads `md.raw.<venue>` alone), written in transactions with some aborted; then a
    fresh worker's saturation run there, timed as the plain one (`bench_faust`), its forecasts in a Redis
    database of their own and compared with the plain worker's."""
    topic = faust_topic(work.venue)
    recreate_topic(bootstrap, topic)
    feed = asyncio.run(produce_transactional(bootstrap, topic, work.records, partitions, args.transactional,
                                             args.abort_every))  # fmt: skip
    if feed.records != len(work.records):
        raise RuntimeError(f"{feed.records:,} of {len(work.records):,} records committed to {topic}")
    every = f"1 in {args.abort_every} aborted and sent again" if args.abort_every else "none aborted"
    print(f"  {topic} emptied; the {feed.records:,} records written again in {feed.transactions:,} transactions of "
          f"{args.transactional} ({every}: {feed.aborted:,} aborted records, {feed.log_offsets:,} offsets in all) "
          f"in {feed.seconds:.1f} s", flush=True)  # fmt: skip
    th, _, progress = bench_faust(bootstrap, f"{url}/{DB_TXN}", work, LatPlan([], None, place), tmp, args.model,
                                  args.overload, name="faust-txn", label="faust worker, transactional feed",
                                  offsets=feed.offsets)  # fmt: skip
    assert th is not None
    logs = [(tmp / f"{name}-worker.log").read_text(errors="replace") for name in ("faust", "faust-txn")]
    plain, plain_s = forecast_history(redis.Redis.from_url(f"{url}/{DB_FAUST}"), work.venue, work.symbols)
    txn, txn_s = forecast_history(redis.Redis.from_url(f"{url}/{DB_TXN}"), work.venue, work.symbols)
    count = sum(map(len, plain.values())), sum(map(len, txn.values()))
    gaps = logs[0].count(GAP_LINE), logs[1].count(GAP_LINE)
    warnings = tuple(sum(1 for ln in log.splitlines() if "WARNING" in ln) for log in logs)
    return TxnResult(feed, th, progress, gaps, (warnings[0], warnings[1]), count, plain == txn, (plain_s, txn_s))


# ---------------------------------------------------------------- the bare aiokafka loop


class BareLoop:
    """The worker's work without Faust: a consumer, the per-batch work, a producer for
    `md.forecasts` and `md.dlq`, a commit after each batch (at-least-once, as the worker)."""

    def __init__(self, bootstrap: str, redis_url: str, group: str, venue: str, fetch_wait_ms: int = 500,
                 take: int = Settings().take_max) -> None:  # fmt: skip
        self.take = take
        self.bootstrap, self.group, self.topic, self.fetch_wait_ms = bootstrap, group, bare_topic(venue), fetch_wait_ms
        settings = Settings()
        self.threshold = settings.alert_threshold
        self.pipe = VenuePipeline(venue, settings.window, max_bytes=settings.max_record_bytes)
        self.model = BaselineForecaster()
        self.sink = RedisSink.from_url(redis_url, alert_threshold=settings.alert_threshold)
        self.consumed = 0
        self.first: tuple[float, int] | None = None  # (time, consumed) after the first batch's commit
        self.ready: float | None = None  # when the fetch that returned the first records began

    def work(self, msgs: Sequence[Any]) -> tuple[list[dict], list[Any]]:
        """One batch: decode, book, windows, forecasts, Redis. The forecasts and rejects to send."""
        windows: list[Window] = []
        rejects: list[Any] = []
        by_partition: dict[int, list[Any]] = {}
        for m in msgs:
            by_partition.setdefault(m.partition, []).append(m)
        for part in by_partition.values():  # a partition's records in one call, as the worker's partitions
            ws, rejs = self.pipe.process_batch(part)
            windows += ws
            rejects += rejs
        if not windows:
            return [], rejects
        forecasts = self.model.forecast(windows, self.threshold)
        recs = forecast_records(self.model.model_id, windows, forecasts, time.time_ns())
        self.sink.write(recs)
        return recs, rejects

    async def run(self, targets: asyncio.Queue[int], done: asyncio.Queue[float]) -> None:
        """Consume until `consumed` reaches each target taken from `targets`; put the time each
        was reached on `done`. Stops at a target of -1."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20,
                                    fetch_max_wait_ms=self.fetch_wait_ms)  # fmt: skip
        prod = AIOKafkaProducer(**producer_opts(self.bootstrap))
        await consumer.start()
        await prod.start()
        try:
            target = await targets.get()
            while target >= 0:
                asked = time.time()
                got = await consumer.getmany(timeout_ms=50, max_records=self.take)  # the worker's batch
                msgs = [m for part in got.values() for m in part]
                if msgs:
                    self.ready = asked if self.ready is None else self.ready
                    await self._batch(consumer, prod, msgs)
                while 0 <= target <= self.consumed:
                    done.put_nowait(time.time())
                    target = await targets.get()
        finally:
            await consumer.stop()
            await prod.stop()

    async def _batch(self, consumer: Any, prod: Any, msgs: list[Any]) -> None:
        recs, rejects = self.work(msgs)
        acks = [await prod.send(DLQ_TOPIC, r.value, key=r.key) for r in rejects]
        for rec in recs:
            acks.append(await prod.send(FORECASTS_TOPIC, msgpack.packb(rec), key=str(rec["symbol"]).encode()))
        for ack in acks:  # acknowledged by the broker before the batch's offsets commit, as the worker
            await ack
        await consumer.commit()
        self.consumed += len(msgs)
        if self.first is None:
            self.first = (time.time(), self.consumed)


async def bench_bare_async(bootstrap: str, redis_url: str, work: Workload, plan: LatPlan, tmp: Path,
                           fetch_wait_ms: int) -> tuple[Throughput, list[Latency]]:  # fmt: skip
    # this thread runs the loop: onto the consumer's CPUs (the latency runs' processes pin themselves)
    pin(plan.place.consumer if plan.place else None)
    loop = BareLoop(bootstrap, redis_url, f"bench-bare-{os.getpid()}", work.venue, fetch_wait_ms=fetch_wait_ms,
                    take=work.take)  # fmt: skip
    tput = work.records
    targets: asyncio.Queue[int] = asyncio.Queue()
    done: asyncio.Queue[float] = asyncio.Queue()
    task = asyncio.create_task(loop.run(targets, done))
    try:
        targets.put_nowait(len(tput))
        end = await _wait(done, task)
        assert loop.first is not None and loop.ready is not None
        t0, c0 = loop.first
        forecasts = history_count(redis.Redis.from_url(redis_url), work.venue, work.symbols)
        burst = Throughput(len(tput) - c0, end - t0, forecasts, work.per_record)
        th = Throughput(len(tput), end - loop.ready, forecasts, work.per_record)  # as the worker's (bench_faust)
        print(f"  bare loop: {th.describe()} from its first fetch to the last commit; first commit to last: "
              f"{burst.describe()}", flush=True)  # fmt: skip
        lats, target = [], len(tput)
        for i, (measured, (rate, msgs, off)) in enumerate(plan.all()):
            run = LatencyRun(bootstrap, redis_url, loop.topic, msgs, rate, tmp / f"bare-lat{i}", plan.place)
            run.tmp.mkdir()
            await asyncio.to_thread(run.start)
            target += len(msgs)
            targets.put_nowait(target)
            await _wait(done, task)
            lat = await asyncio.to_thread(run.finish, off)
            lats += [lat] * measured
            print(f"  bare loop at {rate:,.0f}/s{'' if measured else ' (warm-up)'}: p50 {lat.pct(0.5):.1f} ms, "
                  f"p99 {lat.pct(0.99):.1f} ms", flush=True)  # fmt: skip
        return th, lats
    finally:
        targets.put_nowait(-1)  # the loop stops at its next target check; on an error, cancel it
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        pin(plan.place.rest if plan.place else None)


async def _wait(done: asyncio.Queue[float], task: asyncio.Task[None]) -> float:
    """The loop's next 'target reached' time; the loop's own error if it died first."""
    getter = asyncio.ensure_future(done.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if not getter.done():
        getter.cancel()
        task.result()  # raises what stopped the loop
        raise RuntimeError("the bare loop stopped early")
    return getter.result()


# ---------------------------------------------------------------- where the time goes

STAGES = {  # a stage and the functions (file path suffix, name) whose cumulative time is that stage
    "native path (decode, book, features, windows)": [("native/venue_windows.py", "process")],
    "decode (JSON, fields, events)": [("binance.py", "_loads"), ("binance.py", "_decode")],
    "book (sync + apply)": [("binance.py", "_on_diff"), ("binance.py", "_on_snapshot"), ("binance.py", "_on_ticker")],
    "features + windows": [("orderbook/windows.py", "push")],
    "forecaster (predict + explain)": [("forecaster.py", "forecast"), ("forecaster.py", "forecast_records")],
    "redis (RedisSink.write)": [("sink.py", "write")],
}


def profile_bare(redis_url: str, msgs: list[Msg]) -> None:
    """The bare loop's per-batch work (`BareLoop.work`, 2000-record batches, a real Redis)
    under cProfile; Kafka's share is what the saturation rates leave to it."""
    loop = BareLoop("unused:0", redis_url, "unused", "binance")
    batches = [[FakeMsg(k, v, 0, lo + j) for j, (k, v) in enumerate(msgs[lo : lo + 2000])]
               for lo in range(0, len(msgs), 2000)]  # fmt: skip
    prof = cProfile.Profile()
    prof.runcall(lambda: [loop.work(b) for b in batches])
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    table = stats.stats  # type: ignore[attr-defined]
    print(f"\nwhere the time goes: the bare loop's per-batch work on {len(msgs):,} records (cProfile, {total:.2f} s "
          f"profiled: read the shares)")  # fmt: skip
    print(f"{'share':>6}  stage")
    for stage, funcs in STAGES.items():
        cum = sum(v[3] for (file, _, name), v in table.items() if any(file.endswith(f) and name == n for f, n in funcs))
        print(f"{cum / total:6.1%}  {stage}")
    print(f"\n{'cum s':>7}  {'share':>6}  {'calls':>9}  function (top 10 by cumulative time)")
    entries = sorted(table.items(), key=lambda kv: kv[1][3], reverse=True)
    shown = 0
    for (file, line, name), (_, calls, _, cum, _) in entries:
        if not line or "<lambda>" in name or name in ("work", "<listcomp>"):
            continue  # the harness and built-in wrappers, not the work
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}"
        print(f"{cum:7.3f}  {cum / total:6.1%}  {calls:9,}  {name}  ({where})")
        shown += 1
        if shown == 10:
            break


# ---------------------------------------------------------------- output and main


def print_tables(work: Workload, faust: tuple[Throughput, list[Latency]], bare: tuple[Throughput, list[Latency]],
                 mem_rate: float, txn: TxnResult | None = None) -> None:  # fmt: skip
    (ft, fl), (bt, bl) = faust, bare
    n = len(work.records)
    print(f"\nsaturation: {work.venue}, {work.messages:,} messages in {n:,} records "
          f"({work.per_record:.2f} a record), pre-produced, one consumer")  # fmt: skip
    print(f"{'consumer':36} {'messages/s':>11} {'records/s':>10} {'forecasts/s':>12}")
    rows = [("faust worker (1 process)", ft), ("faust worker, transactional feed", txn.th if txn else None),
            ("bare aiokafka loop (in-process)", bt)]  # fmt: skip
    for what, th in ((w, t) for w, t in rows if t is not None):
        print(f"{what:36} {th.message_rate:11,.0f} {th.rate:10,.0f} {th.forecasts / n * th.rate:12,.0f}")
    print(f"{'in memory, no Kafka/Redis (ceiling)':36} {mem_rate * work.per_record:11,.0f} {mem_rate:10,.0f}")
    print(f"ratio faust / bare: {ft.rate / bt.rate:.2f}x")
    if txn:
        f = txn.feed
        print(f"ratio transactional / plain (faust worker): {txn.th.rate / ft.rate:.2f}x  ({f.transactions:,} "
              f"transactions, {f.aborted:,} aborted records; the workers' logs, plain / transactional: "
              f"{txn.gaps[0]} / {txn.gaps[1]} gap warnings, {txn.warnings[0]} / {txn.warnings[1]} WARNING "
              "lines)")  # fmt: skip
        (a, b), rate = txn.spans, n * work.per_record
        print(f"by Redis's clock, first forecast written to last (a second clock; it leaves out each worker's first "
              f"batch): plain {a:.2f} s ({rate / a if a else float('nan'):,.0f} messages/s), "
              f"transactional {b:.2f} s ({rate / b if b else float('nan'):,.0f} messages/s): ratio transactional / "
              f"plain {a / b if b else float('nan'):.2f}x")  # fmt: skip
        print(f"transactional feed's forecasts in Redis: {txn.forecasts[1]:,} (plain: {txn.forecasts[0]:,}), "
              f"the plain run's field by field: {'yes' if txn.exact else 'NO'}")  # fmt: skip
    goals = [
        f">= {GOAL_RATE // 1000}k messages/s per worker: {'yes' if ft.message_rate >= GOAL_RATE else 'no'} "
        f"({ft.message_rate:,.0f})",
        f">= 0.8x the bare loop: {'yes' if ft.rate >= 0.8 * bt.rate else 'no'}",
    ]
    if fl:
        print("\nlatency: produce -> forecast on Redis mt:forecasts, one message a record, forecasts of records sent "
              f"after the first {WARM_UP_S:.0f} s")  # fmt: skip
        print(f"{'consumer':36} {'offered/s':>9} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'forecasts':>11}")  # fmt: skip
        for what, lats, th in (("faust worker", fl, ft), ("bare aiokafka loop", bl, bt)):
            for lat in lats:
                over = "  (offered > saturation: backlog)" if lat.rate > th.message_rate else ""
                print(f"{what:36} {lat.rate:9,.0f} {lat.achieved:10,.0f} {lat.pct(0.5):8.1f} {lat.pct(0.99):8.1f} "
                      f"{max(lat.ms, default=float('nan')):8.1f} {lat.matched:5}/{lat.expected:<5}{over}")  # fmt: skip
        for f, b in zip(fl, bl, strict=True):
            print(f"ratio faust / bare at {f.rate:,.0f}/s: p50 {f.pct(0.5) / b.pct(0.5):.2f}x, "
                  f"p99 {f.pct(0.99) / b.pct(0.99):.2f}x")  # fmt: skip
        at = [x for x in fl if x.rate == GOAL_AT]
        p99 = f"{at[0].pct(0.99):.1f} ms" if at else f"not measured (no --rates {GOAL_AT})"
        goals.append(f"p99 < {GOAL_P99_MS:.0f} ms at {GOAL_AT:,}/s: "
                     f"{'yes' if at and at[0].pct(0.99) < GOAL_P99_MS else 'no'} ({p99})")  # fmt: skip
    print("\ngoals: " + "; ".join(goals))


def print_ladder(lats: list[Latency], model: str, overload: str, goal_ms: float) -> None:
    """`--latency-only`: the worker's latency at each offered rate, and the highest rate within the goal."""
    print(f"\nlatency: produce -> forecast on Redis mt:forecasts, one worker, model {model}, overload {overload}, "
          f"one message a record, forecasts of records sent after the first {WARM_UP_S:.0f} s")  # fmt: skip
    print(
        f"{'offered/s':>9} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'forecasts':>11}  "
        "(forecasts: published / windows closed; fewer under `latest`: superseded windows are skipped)"
    )
    for lat in lats:
        print(f"{lat.rate:9,.0f} {lat.achieved:10,.0f} {lat.pct(0.5):8.1f} {lat.pct(0.99):8.1f} "
              f"{max(lat.ms, default=float('nan')):8.1f} {lat.matched:5}/{lat.expected:<5}")  # fmt: skip
    best = None
    for lat in sorted(lats, key=lambda x: x.rate):
        if not lat.pct(0.99) < goal_ms:
            break
        best = lat.rate
    best_s = f"{best:,.0f} messages/s" if best is not None else "none of the ladder"
    print(f"\ngoal: the highest offered rate with p99 < {goal_ms:.0f} ms (every lower rate too): {best_s}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--venue", choices=("binance", "kraken", *SIMULATED), default="binance", help="the saturation "
                   "run's feed: the real Binance captures, copies of the real Kraken book capture (saturation only), "
                   "or a simulated day in ITCH 5.0, LOBSTER or Coinbase `full` (no native decoder for the last: the "
                   "compiled window builders on the Python feed; saturation only; default: binance)")  # fmt: skip
    p.add_argument("--messages", type=int, default=500_000, help="venue messages for the saturation runs "
                   "(default: 500000: the worker drains 200,000 in under a second)")  # fmt: skip
    p.add_argument("--no-frames", dest="frames", action="store_false", help="one message a record in the "
                   "saturation runs (default: frames, as `replay` and `simulate --kafka` write them)")  # fmt: skip
    p.add_argument("--itch-symbols", type=int, default=10, help="stocks of the simulated day (default: 10)")
    p.add_argument("--rates", default="20000,2000", help="offered rates (messages/s) for the latency runs, "
                   "comma-separated, Binance only (default: 20000,2000: the goal's rate, and one a worker "
                   "sustains)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=5.0, help="length of each latency run (default: 5)")
    p.add_argument("--warm-up-s", type=float, default=3.0, help="an unmeasured latency run at the first rate "
                   "before the measured ones, this long (default: 3; 0: none)")  # fmt: skip
    p.add_argument("--no-pin", dest="pin", action="store_false", help="leave CPU placement to the scheduler "
                   "(default: the consumer under test on the last CPU, the rest on the others)")  # fmt: skip
    p.add_argument("--bare-fetch-wait-ms", type=int, default=500, help="the bare consumer's fetch_max_wait_ms "
                   "(default: aiokafka's 500; faust's aiokafka driver fixes 1500)")  # fmt: skip
    p.add_argument("--profile-records", type=int, default=20_000, help="Binance records profiled (default: 20000)")
    p.add_argument("--take", type=int, default=Settings().take_max, help="records a batch, the worker's take_max and "
                   f"the bare loop's getmany max_records (default: the worker's {Settings().take_max})")  # fmt: skip
    p.add_argument("--model", default="baseline", help="the worker's model (MT_MODEL): baseline, or a "
                   "checkpoint folder such as model/checkpoints/demo (default: baseline; the bare loop keeps "
                   "the baseline)")  # fmt: skip
    p.add_argument("--overload", choices=OVERLOAD_POLICIES, default="every", help="the worker's overload policy "
                   "(default: every)")  # fmt: skip
    p.add_argument("--latency-only", action="store_true", help="only the worker's latency runs at --rates (no "
                   "saturation, no bare loop, no profile) and the highest rate within --p99-goal")  # fmt: skip
    p.add_argument("--p99-goal", type=float, default=None, help="ms, for --latency-only (default: "
                   f"{GOAL_P99_MS:.0f} with the baseline, {GOAL_P99_MS_MODEL:.0f} with a generative model, as "
                   "issue 12 sets them)")  # fmt: skip
    p.add_argument("--transactional", type=int, default=0, metavar="N", help="also time a fresh worker on the "
                   "saturation records written again in Kafka transactions of N records (read committed: commit "
                   "markers and aborted records take offsets no record fills), beside the plain run (default: 0, "
                   "off)")  # fmt: skip
    p.add_argument("--abort-every", type=int, default=7, metavar="K", help="with --transactional, 1 transaction "
                   "in K aborted, its records sent again in the next (default: 7; 0: none)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 messages, 2,000/s for 2 s, 2,000 profiled")
    args = p.parse_args(argv)
    args.rates = [float(r) for r in str(args.rates).split(",") if r] if args.venue == "binance" else []
    if args.p99_goal is None:
        args.p99_goal = GOAL_P99_MS if args.model == "baseline" else GOAL_P99_MS_MODEL
    if args.latency_only and not args.rates:
        p.error("--latency-only needs --rates (Binance)")
    if args.transactional < 0 or args.abort_every < 0:
        p.error("--transactional and --abort-every take a count >= 0")
    if args.transactional and args.latency_only:
        p.error("--transactional is a saturation run: not with --latency-only")
    if args.quick:
        args.messages, args.seconds, args.profile_records = min(args.messages, 5000), 2.0, 2000
        args.take = min(args.take, 500)  # several batches even in 5,000 messages: a rate needs two commits
        args.rates = [min(r, 2000.0) for r in args.rates][:1]
        args.warm_up_s = 0.0
    return args


def workload(args: argparse.Namespace, captures: dict[str, list[Any]]) -> Workload:
    if args.venue in SIMULATED:
        msgs = simulated(args.venue, args.messages, args.itch_symbols, seed=7)
    elif args.venue == "kraken":
        msgs = kraken_messages(args.data, args.messages)
    else:
        msgs = timed_messages(captures, args.messages, "T")
    recs, n = as_records(msgs, args.frames)
    return Workload(args.venue, recs, n, args.take)


def latency_plan(args: argparse.Namespace, captures: dict[str, list[Any]]) -> LatPlan:
    """The latency runs of `--rates` (each on symbols of its own), the warm-up and the placement."""

    def run(rate: float, seconds: float, tag: str) -> LatRun:
        msgs = records(captures, int(rate * seconds), tag)
        return rate, msgs, offline("binance", msgs)

    runs = [run(rate, args.seconds, f"L{i}") for i, rate in enumerate(args.rates)]
    warm = run(args.rates[0], args.warm_up_s, "W") if args.rates and args.warm_up_s > 0 else None
    place = Placement.of(args.pin)
    print(f"latency runs: {', '.join(f'{len(m):,}' for _, m, _ in runs) or 'none'} Binance records"
          + (f" after a {args.warm_up_s:.0f} s warm-up" if warm else "")
          + f"; {place.describe() if place else 'CPU placement left to the scheduler'}")  # fmt: skip
    return LatPlan(runs, warm, place)


def latency_only(args: argparse.Namespace, captures: dict[str, list[Any]]) -> None:
    plan = latency_plan(args, captures)
    from streams.infra import Infra

    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp_s:
        tmp = Path(tmp_s)
        infra = Infra.on_free_ports(tmp / "infra")
        pin(plan.place.rest if plan.place else None)  # the servers and this process's threads
        infra.up()
        try:
            create_topics(infra.kafka.bootstrap, [faust_topic("binance")])
            work = Workload("binance", [], 0, args.take)
            url = f"redis://127.0.0.1:{infra.redis.port}/{DB_FAUST}"
            _, lats, progress = bench_faust(infra.kafka.bootstrap, url, work, plan, tmp, args.model, args.overload)
            print(f"  faust worker's last progress line: {progress}")
        finally:
            infra.down()
    print_ladder(lats, args.model, args.overload, args.p99_goal)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = args.data / BINANCE
    if not folder.is_dir():
        sys.exit(f"pipeline_bench: {folder} not found. Pass --data <folder holding {BINANCE}/> or set MT_SHARED_DATA.")
    started = time.perf_counter()
    captures = load_captures(folder)
    if args.latency_only:
        latency_only(args, captures)
        print(f"\n{time.perf_counter() - started:.1f} s in all")
        return
    work = workload(args, captures)
    tput = work.records
    mem_n = min(len(tput), 50_000)
    # as the worker after start-up (streams/app.py): this process's millions of loaded records out of
    # the collector's way, or its full collections are counted as the in-memory run's time
    gc.collect()
    gc.freeze()
    offline(work.venue, tput[:mem_n])  # once cold: a long-running worker's pages and caches are warm
    mem = offline(work.venue, tput[:mem_n])
    print(f"data: {work.venue}, {work.messages:,} messages in {len(tput):,} records "
          f"({'frames' if args.frames else 'one a record'}, {len(work.symbols)} symbols) for saturation; "
          f"{mem.windows / mem_n:.3f} forecasts per record, {mem.rejected} rejected")  # fmt: skip
    plan = latency_plan(args, captures)
    from streams.infra import Infra

    txn: TxnResult | None = None

    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp_s:
        tmp = Path(tmp_s)
        infra = Infra.on_free_ports(tmp / "infra")
        pin(plan.place.rest if plan.place else None)  # the servers and this process's threads
        infra.up()
        try:
            url = f"redis://127.0.0.1:{infra.redis.port}"
            boot = infra.kafka.bootstrap
            topics = [faust_topic(work.venue), bare_topic(work.venue)]
            # the output topics too, as a deployment has them: else the worker's first batch waits for
            # md.forecasts to be created on its first send, inside the saturation clock
            latency = [faust_topic("binance"), bare_topic("binance")] if plan.runs else []
            create_topics(boot, [*topics, FORECASTS_TOPIC, DLQ_TOPIC, *latency])
            t = time.perf_counter()
            partitions: list[int] | None = [] if args.transactional else None  # the records' in topics[0]
            asyncio.run(produce(boot, topics, tput, partitions))
            print(f"infra up; {len(tput):,} records produced to {' and '.join(topics)} in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
            f_th, f_lat, progress = bench_faust(boot, f"{url}/{DB_FAUST}", work, plan, tmp, args.model,
                                                args.overload)  # fmt: skip
            assert f_th is not None
            print(f"  faust worker's last progress line: {progress}")
            if args.transactional:
                txn = bench_transactional(boot, url, work, partitions or [], plan.place, tmp, args)
                print(f"  transactional feed's worker's last progress line: {txn.progress}")
            b_th, b_lat = asyncio.run(
                bench_bare_async(boot, f"{url}/{DB_BARE}", work, plan, tmp, args.bare_fetch_wait_ms)
            )
            print_tables(work, (f_th, f_lat), (b_th, b_lat), mem_n / mem.seconds, txn)
            if args.venue == "binance":
                prof = records(captures, args.profile_records, "P")
                profile_bare(f"{url}/{DB_PROFILE}", prof)
        finally:
            infra.down()
    print(f"\n{time.perf_counter() - started:.1f} s in all")
    if txn is not None and not txn.exact:
        sys.exit("pipeline_bench: the transactional feed's forecasts are not the plain run's (see above)")


if __name__ == "__main__":
    main()
