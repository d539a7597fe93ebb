"""Fault injection on the real embedded servers, shared by tests/test_faults.py and the fault
table (bench/fault_table.py): streams published to a broker of the test's own, `megatrading
worker` processes, what they must publish computed offline from the very records on the topic
(one pipeline per partition, as a worker keeps them), and the comparison of Redis and the
forecasts topic (read committed) with it: lost, duplicated, differing, out of order.
"""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from prometheus_client.parser import text_string_to_metric_families

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import forecast_records
from orderbook.frames import Framer, framed
from orderbook.news import parse_news
from streams.client import ForecastClient
from streams.config import Settings
from streams.infra import Infra
from streams.offsets import committed_offsets
from streams.pipeline import VenuePipeline
from streams.publish import keyed

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4

Key = tuple[str, str, int]  # venue, symbol, window


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def publish(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes] | tuple[bytes | None, bytes, int | None]],
    frames: int = 1,
) -> int:
    """(key, value) records, in order, acknowledged; the topic made with PARTITIONS first; the number
    of records sent. `frames` > 1: the messages go in frames of up to that many consecutive messages
    of one key (orderbook.frames.Framer); a record (key, value, ts) also closes frames by its venue
    time (1 ms), one without a ts by count alone."""
    create_topic(bootstrap, topic)
    if frames > 1:
        timed = ((r[0], r[1], r[2] if len(r) > 2 else None) for r in records)  # type: ignore[misc]
        records = [(f.key, f.value) for f in framed(timed, Framer(max_messages=frames))]
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 << 20)
    n = 0
    try:
        for key, value, *_ in records:
            prod.send(topic, key=key, value=value)
            n += 1
        prod.flush()
    finally:
        prod.close()
    return n


def capture_records(venue: str, path: Path | Sequence[Path], limit: int | None = None) -> list[tuple[bytes, bytes]]:
    """A capture's messages keyed as `megatrading replay` keys them; several captures (one book each,
    symbols that differ) merged by receive time, as one feed handler would have sent them."""
    from orderbook.venues import feed_class

    paths = [path] if isinstance(path, Path) else list(path)
    streams = [list(keyed(venue, feed_class(venue).read_capture(p))) for p in paths]
    symbols = [{key for key, _ in stream} for stream in streams]
    clash = [s & t for i, s in enumerate(symbols) for t in symbols[i + 1 :] if s & t]
    assert not clash, f"captures {paths} share symbols {clash}: their books would mix"
    merged = heapq.merge(*streams, key=lambda keyed_rec: keyed_rec[1].recv_ts) if len(streams) > 1 else streams[0]
    out = [(key, rec.raw) for key, rec in merged]
    return out[:limit] if limit else out


def simulated_records(fmt: str, seed: int, symbols: int = 3, minutes: int = 20) -> list[tuple[bytes, bytes]]:
    """A simulated stream in a venue's format (no headlines: their timing would make a run's
    windows depend on when the listener read them)."""
    from model.sim.engine import SEC, SimConfig
    from model.sim.run import simulate
    from model.sim.writers import messages

    result = simulate(SimConfig(n_symbols=symbols, duration_ns=minutes * 60 * SEC, seed=seed))
    return [(m.symbol.encode(), m.raw) for m in messages(fmt, result)]


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0, committed_only: bool = True) -> list:
    """Every record of a topic up to its end offsets, by (partition, offset); read committed
    (what a reader of md.forecasts is told to do) unless asked otherwise."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20,
                      fetch_max_bytes=64 << 20,
                      isolation_level="read_committed" if committed_only else "read_uncommitted")  # fmt: skip
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)  # read committed: the last stable offsets
        out = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout} s"
            for msgs in c.poll(timeout_ms=500).values():
                out += msgs
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        c.close()


def expected(venue: str, raw: Sequence, news: dict[tuple[int, int], list[bytes]] | None = None) -> dict[Key, dict]:
    """What a worker must publish for these records of `md.raw.<venue>`: one pipeline per partition,
    the baseline model; `news[(partition, offset)]`: md.news values joined before that record."""
    model = BaselineForecaster()
    settings = Settings()
    pipes: dict[int, VenuePipeline] = {}
    out: dict[Key, dict] = {}
    for m in raw:
        pipe = pipes.get(m.partition)
        if pipe is None:
            pipe = pipes[m.partition] = VenuePipeline(venue, settings.window, max_bytes=settings.max_record_bytes)
        for value in (news or {}).get((m.partition, m.offset), ()):
            pipe.add_news(*parse_news(value))
        windows, _ = pipe.process(m.key, m.value, m.partition, m.offset)
        if windows:
            for rec in forecast_records(model.model_id, windows, model.forecast(windows, settings.alert_threshold), 0):
                rec.pop("emitted_ts")
                out[(venue, str(rec["symbol"]), int(rec["window"]))] = rec
    return out


@dataclass
class Outcome:
    """A run's output beside what it should be."""

    want: int
    redis: int
    topic: int
    lost_redis: int
    lost_topic: int
    duplicated_redis: int
    duplicated_topic: int
    differing: list[Key] = field(default_factory=list)
    unordered: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.lost_redis or self.lost_topic or self.duplicated_redis or self.duplicated_topic
                    or self.differing or self.unordered)  # fmt: skip

    def __str__(self) -> str:
        return (f"want {self.want}: Redis {self.redis} (lost {self.lost_redis}, duplicated {self.duplicated_redis}), "
                f"topic {self.topic} (lost {self.lost_topic}, duplicated {self.duplicated_topic}), "
                f"differing {self.differing[:5]}, unordered {self.unordered[:5]}")  # fmt: skip


def compare(want: dict[Key, dict], redis_url: str, bootstrap: str, forecasts_topic: str) -> Outcome:
    """Redis's history of every book and the forecasts topic (read committed) against `want`."""
    client = ForecastClient(redis_url)
    in_redis: list[dict] = []
    unordered = []
    for venue, symbol in client.symbols():
        rows = client.history(venue, symbol)
        windows = [int(r["window"]) for r in rows]  # type: ignore[call-overload]
        if windows != sorted(windows):
            unordered.append(f"redis {venue}:{symbol}")
        in_redis += rows
    on_topic = [msgpack.unpackb(m.value) for m in read_topic(bootstrap, forecasts_topic)]
    by_symbol: dict[tuple[str, str], list[int]] = {}
    for r in on_topic:
        by_symbol.setdefault((r["venue"], r["symbol"]), []).append(r["window"])
    unordered += [f"topic {v}:{s}" for (v, s), ws in by_symbol.items() if ws != sorted(ws)]

    def keyed_rows(rows: list[dict]) -> tuple[dict[Key, dict], int]:
        seen = Counter((r["venue"], r["symbol"], int(r["window"])) for r in rows)
        return {(r["venue"], r["symbol"], int(r["window"])): r for r in rows}, sum(n - 1 for n in seen.values())

    got_redis, dup_redis = keyed_rows(in_redis)
    got_topic, dup_topic = keyed_rows(on_topic)
    differing = []
    for key, w in want.items():
        for got in (got_redis.get(key), got_topic.get(key)):
            if got is None:
                continue
            g = dict(got)
            g.pop("emitted_ts", None)
            if g != w:
                differing.append(key)
                break
    extra = (set(got_redis) | set(got_topic)) - set(want)
    differing += sorted(extra)
    return Outcome(len(want), len(in_redis), len(on_topic), len(set(want) - set(got_redis)),
                   len(set(want) - set(got_topic)), dup_redis, dup_topic, differing, unordered)  # fmt: skip


# records a batch for the workers the fault tests start: the default (20,000) takes a test topic of a
# few thousand records in one batch a partition, so a kill or an outage would land after the end
TEST_TAKE_MAX = 200


class WorkerProcess:
    """`megatrading worker` as a separate process (its own session: a kill takes its threads too)."""

    def __init__(self, bootstrap: str, redis_url: str, app_id: str, venues: Sequence[str], log: Path,
                 worker_id: str, forecasts_topic: str = "md.forecasts", dlq_topic: str = "md.dlq",
                 snapshot_every: int = 500, take_max: int = TEST_TAKE_MAX,
                 extra_env: dict[str, str] | None = None) -> None:  # fmt: skip
        # MT_HOME beside the log: the worker's Faust data goes with the test's files, not into ~/.cache
        env = dict(os.environ, MT_KAFKA_BOOTSTRAP=bootstrap, MT_REDIS_URL=redis_url, MT_APP_ID=app_id,
                   MT_WORKER_ID=worker_id, MT_VENUES=",".join(venues), MT_FORECASTS_TOPIC=forecasts_topic,
                   MT_DLQ_TOPIC=dlq_topic, MT_SNAPSHOT_EVERY=str(snapshot_every), MT_MODEL="baseline",
                   MT_TAKE_MAX=str(take_max), MT_HOME=str(log.parent / "mt-home")) | (extra_env or {})  # fmt: skip
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=REPO)  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exited(self) -> str:
        """What an assertion that this worker is alive prints when it is not: its exit status and log's end."""
        tail = self.log.read_text(errors="replace")[-3000:]
        return f"worker exited with {self.proc.returncode}; log {self.log}:\n{tail}"

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def committed_fraction(bootstrap: str, group: str, topics: Sequence[str]) -> float:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    done = total = 0
    try:
        for topic in topics:
            parts = c.partitions_for_topic(topic) or set()
            ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
            total += sum(ends.values())
            done += sum(committed_offsets(bootstrap, group, topic, parts).values())
    finally:
        c.close()
    return done / max(total, 1)


def wait_for(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    fraction: float,
    timeout: float,
    workers: Sequence[WorkerProcess] = (),
    poll: float = 0.25,
) -> float:
    """Until the group has committed `fraction` of the topics' records; a worker that exits fails it."""
    deadline = time.monotonic() + timeout
    while True:
        f = committed_fraction(bootstrap, group, topics)
        if f >= fraction:
            return f
        for w in workers:
            assert w.alive(), w.exited()
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} committed {f:.1%} of {topics} after {timeout} s, wanted {fraction:.0%}")
        time.sleep(poll)


@dataclass
class GroupRun:
    """One consumer group's run on `servers`: its own Redis database and output topics, its worker
    processes (logs under `logs`)."""

    servers: Infra
    group: str
    db: int
    venues: tuple[str, ...]
    logs: Path
    poll: float = 0.25  # how often `wait` reads the committed offsets
    wait_timeout: float = 240.0
    snapshot_every: int = 500  # records of a partition between state snapshots
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.servers.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.servers.redis.port}/{self.db}"

    @property
    def forecasts_topic(self) -> str:
        return f"md.forecasts.{self.group}"

    @property
    def topics(self) -> list[str]:
        return [f"md.raw.{v}" for v in self.venues]

    def start(self, name: str = "w", extra_env: dict[str, str] | None = None) -> WorkerProcess:
        w = WorkerProcess(self.bootstrap, self.redis_url, self.group, self.venues, self.logs / f"{name}.log",
                          f"{self.group}-{name}", self.forecasts_topic, f"md.dlq.{self.group}",
                          self.snapshot_every, extra_env=extra_env)  # fmt: skip
        self.workers.append(w)
        return w

    def wait(self, fraction: float, timeout: float | None = None) -> float:
        return wait_for(self.bootstrap, self.group, self.topics, fraction, timeout or self.wait_timeout,
                        [w for w in self.workers if w.alive()], poll=self.poll)  # fmt: skip

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()

    def compare(self, want: dict[Key, dict]) -> Outcome:
        return compare(want, self.redis_url, self.bootstrap, self.forecasts_topic)

    def log_text(self) -> str:
        return "".join(w.log.read_text(errors="replace") for w in self.workers)


def timed(step: Callable[[], object]) -> float:
    t0 = time.monotonic()
    step()
    return time.monotonic() - t0


def scrape(port: int) -> dict[str, list]:
    """{sample name: [(labels, value)]} of one scrape of a worker's /metrics on 127.0.0.1:`port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out
