"""The fault table: every fault kind injected into real `megatrading worker` processes, each
injection compared with what an undisturbed run publishes, aggregated per kind into a markdown
table (printed, and written to docs/faults.md).

    .venv/bin/python bench/fault_table.py [--repeats 5] [--seed 1] [--quick] [--kinds a,b] [--out FILE]

Servers: a Kafka broker and a Redis of the script's own (streams.infra.Infra on free loopback
ports in a temporary folder), stopped at the end whatever happens; the folder is removed unless an
injection failed (or --keep): it holds the worker logs and the servers' data.

Streams, published once: four real Binance captures of one day (../shared/data, read in place:
spot ETHUSDT and BTCUSDT, COIN-M BTCUSD_PERP and ETHUSD_PERP, merged by receive time; four books
over two partitions) on `md.raw.binance`, and the first 60% of a simulated ITCH 5.0 stream
(8 stocks over the 4 partitions) on `md.raw.itch`, the rest appended piece by piece: a piece just
before each rebalance kill, then a piece by each corrupt snapshot injection (they run last).
Every injection is a fresh consumer group (its own app id, transactional ids, `md.state` keys),
a fresh Redis database (FLUSHDB first) and its own forecasts topic, started from the topic's
first record; at the end its output (Redis, the forecasts topic read committed) is compared with
`faults.expected` of the very records on the topic (tests/faults.py).

Kinds (the cut point of each injection is a seeded random fraction of the stream committed,
10-80%, 10-50% for the rebalance kind; Binance unless said):

    redis-1s, redis-5s, redis-30s   Redis stopped (SIGTERM) for 1/5/30 s, started again on its data
    broker-15s                      the Kafka broker stopped (SIGTERM) for 15 s, started again
    sigkill                         the worker SIGKILLed, a new one started
    sigkill-static                  the same, both under one group.instance.id (MT_GROUP_INSTANCE_ID)
    sigkill-rebalance               Binance + ITCH, workers a and b from the start, c started at the
                                    cut; one of the three (seeded) SIGKILLed 0-2 s after c asks to
                                    join the group, an ITCH piece appended just before (on a fast
                                    host a and b are done with the rest by then: nothing to recover)
    poison-record                   the record at the cut armed as a poison record (streams/failpoints.py:
                                    the native path panics on it, every time, as on a bug of the compiled
                                    code): after two panics its batch is redone on the reference path from
                                    the native snapshot, then the partition goes back to the native path
    corrupt-snapshot                ITCH: the worker stopped at the cut, a corrupt record produced to
                                    md.state (random bytes, a real snapshot cut short, or one with a
                                    bit of its state flipped, in turn) and the commit of one partition
                                    re-made with metadata `state=<p>@<offset>` naming it; more
                                    records published, a worker started: it must log that the
                                    snapshot was skipped, rebuild the partition from its first
                                    record, and lose nothing

Time to recover: from the end of the fault (the server healthy again; the replacement worker
spawned; the kill, for the rebalance kind; the new worker spawned, for the corrupt snapshot; the
first panic seen in the log, for the poison record) until every partition that still had records
to process has committed past where it stood then (past the poison record, for that kind;
committed offsets polled every 0.1 s). A worker's start (1.5-3 s here) is part of it where a
worker is started.

Exit status 1 if any injection lost, duplicated, reordered or changed a forecast, or failed
(a worker exited, a wait timed out); each such injection is printed with its seed, cut point and
the worker logs' folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not
sys.path.insert(0, str(REPO / "tests"))  # tests/faults.py: a plain module there, tests/ is no package

import msgpack  # noqa: E402
import redis  # noqa: E402
from faults import (  # noqa: E402
    GroupRun,
    Outcome,
    capture_records,
    expected,
    publish,
    read_topic,
    simulated_records,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402
from tqdm import tqdm  # noqa: E402

from model.machine import cpu_model  # noqa: E402
from streams.failpoints import POISON_ENV  # noqa: E402
from streams.infra import Infra  # noqa: E402
from streams.offsets import committed  # noqa: E402
from streams.snapshots import Pointer, fetch, parse_pointer, state_key  # noqa: E402
from streams.topics import STATE_TOPIC  # noqa: E402

SHARED_DATA = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
# long enough that a fault lands with records left: the worker read spot ETHUSDT alone (33.6k records) to its
# end before 10 of 45 faults landed on an AMD EPYC host. Symbols must differ: spot and USD-M BTCUSDT would share a book
BINANCE_CAPTURES = tuple(
    f"binance-hftbacktest/{name}_20240808.gz"
    for name in ("spot_ethusdt", "spot_btcusdt", "cm_btcusd_perp", "cm_ethusd_perp")
)
ITCH_SEED, ITCH_SYMBOLS, ITCH_MINUTES = 11, 8, 60
ITCH_HEAD = 0.6  # of the ITCH stream published at the start; the rest is appended by the injections
REDIS_DBS = range(1, 16)  # a fresh database per injection, flushed first (0 left alone)
POLL = 0.1  # seconds between two reads of the committed offsets
CUTS = (0.1, 0.8)  # a cut point: this range of the stream committed


@dataclass(frozen=True)
class Kind:
    slug: str
    name: str
    what: str
    run: Callable[[Lab, Injection, random.Random], None]
    cuts: tuple[float, float] = CUTS


@dataclass(kw_only=True)
class Injection(GroupRun):
    """One fault injected into one run: a consumer group, a Redis database, a forecasts topic."""

    lab: Lab
    kind: Kind
    index: int
    cut: float = 0.0
    landed: float | None = None  # the fraction committed when the fault ended
    detail: str = ""
    recover_s: float | None = None
    outcome: Outcome | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.outcome is not None and self.outcome.exact


class Progress:
    """The group's committed offsets, read with one admin client (no group membership), beside the
    topics' end offsets."""

    def __init__(self, inj: Injection) -> None:
        self.inj = inj
        c = KafkaConsumer(bootstrap_servers=inj.bootstrap, enable_auto_commit=False)
        try:
            self.tps = [TopicPartition(t, p) for t in inj.topics for p in sorted(c.partitions_for_topic(t) or ())]
            self.ends = c.end_offsets(self.tps)
        finally:
            c.close()
        self.admin = KafkaAdminClient(bootstrap_servers=inj.bootstrap)

    def committed(self) -> dict[TopicPartition, int]:
        for attempt in range(40):
            try:
                got = self.admin.list_group_offsets({self.inj.group: self.tps}).get(self.inj.group, {})
                break
            except KafkaError as exc:  # a coordinator still loading, just after a broker restart
                if not exc.retriable or attempt == 39:
                    raise
                time.sleep(0.25)
        return {tp: max(getattr(got.get(tp), "offset", 0) or 0, 0) for tp in self.tps}

    def close(self) -> None:
        self.admin.close()


def recovery(inj: Injection, t_end: float, base: dict[TopicPartition, int] | None = None,
             progress: Progress | None = None, timeout: float = 300.0) -> float | None:  # fmt: skip
    """Seconds from `t_end` until every partition with records left has committed past `base`
    (read now if not given); None when nothing was left to process."""
    progress = progress or Progress(inj)
    live = [w for w in inj.workers if w.alive()]
    try:
        base = base if base is not None else progress.committed()
        inj.landed = sum(base.values()) / max(sum(progress.ends.values()), 1)
        lagging = [tp for tp in progress.tps if base[tp] < progress.ends[tp]]
        if not lagging:
            return None
        while True:
            now = progress.committed()
            if all(now[tp] > base[tp] for tp in lagging):
                return time.monotonic() - t_end
            for w in live:
                if not w.alive():
                    raise AssertionError(f"worker exited with {w.proc.returncode}; log {w.log}")
            if time.monotonic() - t_end > timeout:
                stuck = {f"{tp.topic}[{tp.partition}]": (base[tp], now[tp]) for tp in lagging if now[tp] <= base[tp]}
                raise TimeoutError(f"committed offsets did not advance in {timeout:.0f} s: {stuck}")
            time.sleep(POLL)
    finally:
        progress.close()


# ------------------------------------------------------------------------------------ the kinds


def redis_down(seconds: int) -> Callable[[Lab, Injection, random.Random], None]:
    def run(lab: Lab, inj: Injection, rng: random.Random) -> None:
        w = inj.start("w")
        inj.wait(inj.cut)
        progress = Progress(inj)
        lab.servers.redis.stop()
        time.sleep(seconds)
        assert w.alive(), f"the worker exited while Redis was down; log {w.log}"
        base = progress.committed()  # nothing commits while Redis is down
        lab.servers.redis.start()
        inj.recover_s = recovery(inj, time.monotonic(), base, progress)
        inj.wait(1.0)

    return run


def broker_down(lab: Lab, inj: Injection, rng: random.Random) -> None:
    w = inj.start("w")
    inj.wait(inj.cut)
    lab.servers.kafka.stop()
    time.sleep(15)
    assert w.alive(), f"the worker exited while the broker was down; log {w.log}"
    lab.servers.kafka.start()
    inj.recover_s = recovery(inj, time.monotonic())
    inj.wait(1.0)


STALL_S = 10  # the stall injections' watchdog threshold (MT_STALL_S; the default 60 s would make the table slow)
STALL_TAKE = 200  # records a fetch of the Binance stream: the stall's fetch is drawn from 10-80% of its fetches


def consumer_stall(lab: Lab, inj: Injection, rng: random.Random) -> None:
    marker = inj.logs / "fetch_stall.fired"
    fetches = len(lab.topic_records("md.raw.binance")) / STALL_TAKE
    fetch = rng.randint(round(CUTS[0] * fetches), round(CUTS[1] * fetches))
    w = inj.start("w", extra_env={"MT_FAILPOINTS": f"fetch_stall={fetch}:{marker}", "MT_STALL_S": str(STALL_S)})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert w.alive(), f"the worker exited before its consumer stalled; log {w.log}"
        assert time.monotonic() < deadline, f"the consumer did not reach fetch {fetch} in 120 s; log {w.log}"
        time.sleep(0.05)
    # the fetched records already in the worker's inbox are processed after the fetch stops: the stall is
    # when the committed offsets stop moving (a second unchanged: commits go every 0.1 s while it works)
    progress = Progress(inj)
    base, stalled_at = progress.committed(), time.monotonic()
    while time.monotonic() - stalled_at < 1.0:
        time.sleep(POLL)
        now = progress.committed()
        if now != base:
            base, stalled_at = now, time.monotonic()
    inj.detail = f"the consumer stopped fetching at fetch {fetch}"
    inj.cut = sum(base.values()) / max(sum(progress.ends.values()), 1)
    inj.recover_s = recovery(inj, stalled_at, base, progress)
    inj.wait(1.0)
    assert "STALLED" in w.log.read_text(errors="replace"), f"no stall logged; log {w.log}"


def sigkill(static: bool) -> Callable[[Lab, Injection, random.Random], None]:
    """The worker SIGKILLed and a new one started; `static`: both under one group.instance.id (the
    replacement takes the dead member's place while its session lasts: no session timeout to wait out)."""

    def run(lab: Lab, inj: Injection, rng: random.Random) -> None:
        env = {"MT_GROUP_INSTANCE_ID": f"{inj.group}-w"} if static else None
        w = inj.start("w0", extra_env=env)
        inj.wait(inj.cut)
        w.kill()
        progress = Progress(inj)
        base = progress.committed()
        inj.start("w1", extra_env=env)
        inj.recover_s = recovery(inj, time.monotonic(), base, progress)
        inj.wait(1.0)

    return run


def sigkill_rebalance(lab: Lab, inj: Injection, rng: random.Random) -> None:
    workers = {"a": inj.start("a"), "b": inj.start("b")}
    inj.wait(inj.cut)
    workers["c"] = c = inj.start("c")
    # the worker's consumer starting: it subscribes and asks to join at once. aiokafka's own "(Re-)joining
    # group" line is INFO, which the worker's quiet client loggers (streams/logfilter.py) no longer print
    joining = "BatchConsumerThread]: Starting..."
    deadline = time.monotonic() + 120
    while joining not in c.log.read_text(errors="replace"):
        assert c.alive(), f"worker c exited with {c.proc.returncode}; log {c.log}"
        assert time.monotonic() < deadline, f"worker c did not join the group in 120 s; log {c.log}"
        time.sleep(0.05)
    victim, delay = rng.choice(sorted(workers)), rng.uniform(0.0, 2.0)
    time.sleep(delay)
    # records the kill must find left: a and b finish the published streams within c's start on a fast host
    appended = lab.append_itch("rebalance", inj.index)
    workers[victim].kill()
    t_end = time.monotonic()
    inj.detail = f"{victim} killed {delay:.1f} s after c asked to join, {appended:,} ITCH records appended just before"
    inj.recover_s = recovery(inj, t_end)
    inj.wait(1.0)


def poison_record(lab: Lab, inj: Injection, rng: random.Random) -> None:
    raw = lab.topic_records("md.raw.binance")
    poison = raw[int(inj.cut * len(raw))]
    w = inj.start("w", extra_env={POISON_ENV: poison.value.hex()})
    deadline = time.monotonic() + 300
    while "NativePanic: the native binance pipeline panicked" not in w.log.read_text(errors="replace"):
        assert w.alive(), f"the worker exited before the poison record; log {w.log}"
        assert time.monotonic() < deadline, f"no native panic in 300 s; log {w.log}"
        time.sleep(0.05)
    t_panic = time.monotonic()
    progress = Progress(inj)
    base = {tp: poison.offset if tp.partition == poison.partition else progress.ends[tp] for tp in progress.tps}
    inj.recover_s = recovery(inj, t_panic, base, progress)
    inj.wait(1.0)
    name = f"md.raw.binance[{poison.partition}]"
    log = w.log.read_text(errors="replace")
    back = f"{name}: the batch the native path panicked on (offsets "
    assert back in log and "back on the native path" in log, f"no '{back}...' line; log {w.log}"
    assert "read on the reference path" in log, f"the reference path did not start from the snapshot; log {w.log}"
    replayed = re.findall(rf"{re.escape(name)}: restored to offset \d+ from (.+?), (\d+) records replayed", log)
    inj.detail = f"{name}@{poison.offset}: redone on the reference path after {replayed[-1][1]} records replayed"


CORRUPTIONS = ("random bytes", "cut short", "bit flipped")


def corrupt_snapshot(lab: Lab, inj: Injection, rng: random.Random) -> None:
    topic = inj.topics[0]
    w = inj.start("w0")
    inj.wait(inj.cut)
    w.stop()
    assert w.proc.returncode == 0, f"the worker stopped with {w.proc.returncode}; log {w.log}"
    parts = sorted(lab.partitions(topic))
    got = committed(inj.bootstrap, inj.group, topic, parts)
    candidates = [p for p in parts if got[p].offset > 0]
    assert candidates, f"nothing committed on {topic} at the cut"
    how = CORRUPTIONS[inj.index % len(CORRUPTIONS)]
    snapshotted = [p for p in candidates if parse_pointer(got[p].metadata) is not None]
    p = rng.choice(snapshotted if snapshotted and how != "random bytes" else candidates)
    old = parse_pointer(got[p].metadata)
    how = how if old is not None else "random bytes"  # the others need the partition's snapshot
    value = corrupt_value(inj.bootstrap, old, how, rng)
    prod = KafkaProducer(bootstrap_servers=inj.bootstrap, acks="all", max_request_size=32 << 20)
    try:
        meta = prod.send(STATE_TOPIC, key=state_key(inj.group, topic, p), value=value).get(timeout=30)
    finally:
        prod.close()
    bad = Pointer(meta.partition, meta.offset)
    recommit(inj.bootstrap, inj.group, TopicPartition(topic, p), got[p].offset, bad.metadata())
    assert committed(inj.bootstrap, inj.group, topic, [p])[p] == (got[p].offset, bad.metadata()), "re-commit lost"
    inj.detail = (f"{topic}[{p}]@{got[p].offset}: {how} ({len(value)} bytes) at {bad.metadata()}, "
                  f"was {old.metadata() if old else 'no snapshot'}")  # fmt: skip
    lab.append_itch("corrupt", inj.index)
    progress = Progress(inj)
    base = progress.committed()
    w1 = inj.start("w1")
    inj.recover_s = recovery(inj, time.monotonic(), base, progress)
    inj.wait(1.0)
    log = w1.log.read_text(errors="replace")
    skipped = f"{topic}[{p}]: snapshot {bad.metadata()} skipped"
    assert skipped in log and "rebuilding from the first record" in log, f"no '{skipped}' line in {w1.log}"
    assert f"{topic}[{p}]: restored to offset {got[p].offset} from the start" in log, (
        f"{topic}[{p}] not rebuilt from its first record; log {w1.log}"
    )


def corrupt_value(bootstrap: str, pointer: Pointer | None, how: str, rng: random.Random) -> bytes:
    """A record `md.state` must refuse: random bytes (0xc1 first: never valid msgpack), or the
    partition's real snapshot cut short, or with one bit of its state blob flipped (the blob's
    Adler-32 must catch it)."""
    if pointer is None or how == "random bytes":
        return b"\xc1" + rng.randbytes(rng.randint(16, 4096))
    real = fetch(bootstrap, pointer)
    if how == "cut short":
        return real[: rng.randint(1, len(real) - 1)]
    doc = msgpack.unpackb(real, raw=False)
    state = bytearray(doc["state"])
    at = rng.randrange(16, len(state))  # past the header: the zlib body
    state[at] ^= 1 << rng.randrange(8)
    doc["state"] = bytes(state)
    return msgpack.packb(doc, use_bin_type=True)


def recommit(bootstrap: str, group: str, tp: TopicPartition, offset: int, metadata: str, timeout: float = 60) -> None:
    """Commit `offset` with `metadata` for a group with no active member (the stopped worker may
    take a moment to leave)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                c.commit({tp: OffsetAndMetadata(offset, metadata, -1)})
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close(autocommit=False)


KINDS = (
    Kind("redis-1s", "redis down 1 s", "Redis stopped (SIGTERM) for 1 s mid-stream, started again on its data",
         redis_down(1)),
    Kind("redis-5s", "redis down 5 s", "the same, 5 s", redis_down(5)),
    Kind("redis-30s", "redis down 30 s", "the same, 30 s", redis_down(30)),
    Kind("broker-15s", "broker down 15 s",
         "the Kafka broker stopped (SIGTERM) for 15 s mid-stream, started again on its data", broker_down),
    Kind("consumer-stall", "consumer stall",
         f"the worker's consumer stops fetching mid-stream (the failpoint `fetch_stall`: the upstream stall after "
         f"a broker outage), records left on the broker; the watchdog restarts the worker in place "
         f"(MT_STALL_S={STALL_S}); time to recover counts from the last commit before the stall, so it includes the "
         f"{STALL_S} s threshold",
         consumer_stall),
    Kind("sigkill", "worker SIGKILL", "the worker SIGKILLed mid-stream, a new one started", sigkill(static=False)),
    Kind("sigkill-static", "worker SIGKILL, static member",
         "the same, both workers under one group.instance.id (`MT_GROUP_INSTANCE_ID`, opt-in: docs/recovery.md, "
         "\"Static membership\"): the new one takes the dead member's place while its session lasts",
         sigkill(static=True)),
    Kind("sigkill-rebalance", "worker SIGKILL during a rebalance",
         "Binance + ITCH, workers a and b from the start, c started mid-stream; one of the three (seeded) "
         "SIGKILLed 0-2 s after c asks to join the group, a piece of the ITCH stream appended just before, so that "
         "records are left when the kill lands; c started at 10-50% committed", sigkill_rebalance, (0.1, 0.5)),
    Kind("poison-record", "poison record",
         "a record the native path panics on every time (the failpoint MT_FAILPOINT_NATIVE_PANIC, as a record that "
         "meets a bug of the compiled code) at the cut: after two panics its batch is redone on the reference "
         "path, restored from the native snapshot, then the partition goes back to the native path; time to "
         "recover counts from the first panic seen in the log until the partition commits past the record",
         poison_record),
    Kind("corrupt-snapshot", "corrupt snapshot",
         "ITCH: the worker stopped mid-stream; a corrupt record produced to md.state (random bytes, the "
         "partition's snapshot cut short, or with a bit of its state flipped, in turn) and one partition's "
         "commit re-made naming it; more records published and a worker started: it must log the snapshot "
         "skipped and rebuild that partition from its first record", corrupt_snapshot),
)  # fmt: skip
VENUES = {
    "sigkill-rebalance": ("binance", "itch"),
    "corrupt-snapshot": ("itch",),
}


# ------------------------------------------------------------------------------------ the lab


class Lab:
    """The servers, the streams on them and what an undisturbed run of them publishes."""

    def __init__(self, servers: Infra, root: Path, binance: list, itch: list, repeats: int) -> None:
        self.servers, self.root = servers, root
        self.bootstrap = servers.kafka.bootstrap
        publish(self.bootstrap, "md.raw.binance", binance)
        head = round(len(itch) * ITCH_HEAD)
        publish(self.bootstrap, "md.raw.itch", itch[:head])
        # the rest in pieces appended by the injections: one per rebalance kill, then one per corrupt snapshot
        pieces = 2 * max(repeats, 1)
        step = max(1, (len(itch) - head) // pieces)
        self.itch_tail = [itch[head + i * step : head + (i + 1) * step] for i in range(pieces)]
        self.itch_tail[-1] = itch[head + (pieces - 1) * step :]
        self.repeats = max(repeats, 1)
        self._want: dict[tuple, dict] = {}
        self._records: dict[str, list] = {}
        self.injections = 0

    def topic_records(self, topic: str) -> list:
        """The records on a topic as the broker holds them (partition, offset, value), read once."""
        if topic not in self._records:
            self._records[topic] = read_topic(self.bootstrap, topic, committed_only=False)
        return self._records[topic]

    def partitions(self, topic: str) -> set[int]:
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            return set(c.partitions_for_topic(topic) or ())
        finally:
            c.close()

    def append_itch(self, kind: str, index: int) -> int:
        """Append the ITCH piece of a kind's injection (`kind`: "rebalance" or "corrupt"); its records."""
        piece = self.itch_tail[(index % self.repeats) + (self.repeats if kind == "corrupt" else 0)]
        publish(self.bootstrap, "md.raw.itch", piece)
        return len(piece)

    def want(self, venues: Sequence[str]) -> dict:
        """`expected` of the records on the topics now (computed once per topic length)."""
        out: dict = {}
        for venue in venues:
            topic = f"md.raw.{venue}"
            c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            try:
                ends = c.end_offsets([TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()])
            finally:
                c.close()
            key = (venue, tuple(sorted((tp.partition, n) for tp, n in ends.items())))
            if key not in self._want:
                self._want[key] = expected(venue, read_topic(self.bootstrap, topic, committed_only=False))
            out.update(self._want[key])
        return out

    def inject(self, kind: Kind, index: int, seed: int) -> Injection:
        n = self.injections
        self.injections += 1
        group = f"ft-{kind.slug}-{index}"
        db = REDIS_DBS[n % len(REDIS_DBS)]
        redis.Redis(host="127.0.0.1", port=self.servers.redis.port, db=db).flushdb()
        logs = self.root / "logs" / group
        logs.mkdir(parents=True, exist_ok=True)
        inj = Injection(
            servers=self.servers,
            group=group,
            db=db,
            venues=VENUES.get(kind.slug, ("binance",)),
            logs=logs,
            poll=POLL,
            wait_timeout=300.0,
            lab=self,
            kind=kind,
            index=index,
        )
        rng = random.Random(f"{seed}/{kind.slug}/{index}")
        inj.cut = rng.uniform(*kind.cuts)
        try:
            kind.run(self, inj, rng)
        except Exception as err:
            inj.error = f"{type(err).__name__}: {err}"
            inj.detail += "\n" + traceback.format_exc(limit=4)
        finally:
            inj.stop_all()
            if not self.servers.kafka.pid():  # a failure while the broker was down
                self.servers.kafka.start()
            if not self.servers.redis.pid():
                self.servers.redis.start()
        try:
            inj.outcome = inj.compare(self.want(inj.venues))
        except Exception as err:
            inj.error = inj.error or f"compare failed: {type(err).__name__}: {err}"
        return inj


# ------------------------------------------------------------------------------------ the table


COLUMNS = ("fault", "injections", "forecasts expected", "lost in Redis", "lost on topic", "duplicated in Redis",
           "duplicated on topic", "differing", "out of order", "failed", "time to recover, median (s)",
           "time to recover, max (s)")  # fmt: skip


def table(kinds: Sequence[Kind], done: Sequence[Injection]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    for kind in kinds:
        runs = [i for i in done if i.kind is kind]
        outs = [i.outcome for i in runs if i.outcome is not None]
        times = [i.recover_s for i in runs if i.recover_s is not None]
        row = [
            kind.name,
            len(runs),
            sum(o.want for o in outs),
            sum(o.lost_redis for o in outs),
            sum(o.lost_topic for o in outs),
            sum(o.duplicated_redis for o in outs),
            sum(o.duplicated_topic for o in outs),
            sum(len(o.differing) for o in outs),
            sum(len(o.unordered) for o in outs),
            sum(1 for i in runs if i.error),
            f"{statistics.median(times):.1f}" if times else "-",
            f"{max(times):.1f}" if times else "-",
        ]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    late = [i for i in done if i.outcome is not None and not i.error and i.recover_s is None]
    if late:
        lines.append(f"\n{len(late)} injection(s) ended with no records left to process (no time to recover): "
                     + ", ".join(f"{i.kind.name} #{i.index}" for i in late))  # fmt: skip
    return "\n".join(lines)


def describe(inj: Injection) -> str:
    rec = f"{inj.recover_s:.1f} s" if inj.recover_s is not None else "-"
    landed = f" ({inj.landed:.1%} when the fault ended)" if inj.landed is not None else ""
    head = f"{inj.kind.name} #{inj.index}: cut at {inj.cut:.1%} committed{landed}, recovered in {rec}"
    if inj.detail.strip():
        head += f"; {inj.detail.strip().splitlines()[0]}"
    head += f"; {inj.outcome}" if inj.outcome is not None else ""
    return head + (f"; FAILED: {inj.error}" if inj.error else "")


def document(kinds: Sequence[Kind], done: Sequence[Injection], args: argparse.Namespace, wall: float) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/fault_table.py", *sys.argv[1:]])
    cpu = cpu_model()
    kinds_text = "\n".join(f"- **{k.name}**: {k.what}." for k in kinds)
    note = f"\n{args.note}\n" if args.note else ""
    return f"""# Fault table

Every fault below was injected into real `megatrading worker` processes (the baseline model,
snapshots every 500 records of a partition) on a Kafka broker and a Redis of the script's own;
each injection is a fresh consumer group, Redis database and forecasts topic, processing the
stream from its first record, each at a seeded random cut point (a fraction of the stream
committed, drawn from {CUTS[0]:.0%}-{CUTS[1]:.0%}; the fault lands a poll later, the detail below gives both).
Streams: four real Binance captures of 2024-08-08 merged by receive time (spot ETHUSDT and BTCUSDT,
COIN-M BTCUSD_PERP and ETHUSD_PERP: {", ".join(f"`{c}`" for c in BINANCE_CAPTURES)};
{args.binance_records} records, four books over two partitions) and, where a second venue format and several
partitions help, a simulated ITCH 5.0 stream ({ITCH_SYMBOLS} stocks over 4 partitions, seed {ITCH_SEED},
{args.itch_records} records: {ITCH_HEAD:.0%} published at the start, the rest appended piece by piece, just
before each rebalance kill and by the corrupt snapshot injections).

{kinds_text}

- **forecasts expected**: what an undisturbed run publishes, computed offline from the very
  records on the topic (one pipeline per partition, as a worker keeps them: `tests/faults.py`),
  summed over the injections.
- **lost**: expected forecasts missing from Redis (every book's history) or from the forecasts
  topic read committed (`isolation_level=read_committed`, as its readers are told to read it).
- **duplicated**: forecasts present more than once there. **differing**: present with another
  value than offline (or not expected at all). **out of order**: a book whose forecasts are not
  in window order. **failed**: an injection that could not finish (a worker exited, a wait timed out).
- **time to recover**: from the end of the fault (the server healthy again; the replacement
  worker spawned; the kill, for the rebalance kind; the new worker spawned, for the corrupt
  snapshot; the last commit before the stall, for the consumer stall) until every partition that still had
  records to process has committed past where it stood then (committed offsets read every
  {POLL} s). Where a worker is started it includes its start; after a kill, the group's session
  timeout (6 s) before the dead member's partitions move, unless the new worker takes its place
  under its group.instance.id (the static member row).

Command: `{command}` ({wall / 60:.0f} min).
Run {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {len(os.sched_getaffinity(0))} cores (`nproc`), {cpu}, \
Python {platform.python_version()}. Times are wall-clock seconds on a shared machine: noisy.
{note}
{table(kinds, done)}

<details><summary>Each injection</summary>

{chr(10).join("- " + describe(i) for i in done)}

</details>
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="injections of each kind (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="cut points, victims, corruptions (default 1)")
    ap.add_argument("--quick", action="store_true", help="1 of each kind on small streams (a smoke test)")
    ap.add_argument("--kinds", default=",".join(k.slug for k in KINDS),
                    help=f"comma-separated, of: {', '.join(k.slug for k in KINDS)}")  # fmt: skip
    ap.add_argument("--data", type=Path, default=SHARED_DATA, help="the captures folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "faults.md", help="the markdown file written")
    ap.add_argument("--note", default="", help="a line added to the file's header")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, server data)")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.kinds.split(",") if s.strip()]
    unknown = set(wanted) - {k.slug for k in KINDS}
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(k.slug for k in KINDS)}")
    kinds = [k for k in KINDS if k.slug in wanted]  # corrupt-snapshot last: it appends to md.raw.itch
    repeats = 1 if args.quick else args.repeats
    captures = [args.data / c for c in BINANCE_CAPTURES]
    missing = [c for c in captures if not c.is_file()]
    if missing:
        print(f"{', '.join(map(str, missing))} not found (set --data or MT_SHARED_DATA)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # kafka-python's own, about our pollers while a server is down
        handler.addFilter(lambda record: not record.name.startswith("kafka"))

    binance = capture_records("binance", captures, limit=12000 if args.quick else None)
    itch = simulated_records("itch", ITCH_SEED, symbols=ITCH_SYMBOLS, minutes=4 if args.quick else ITCH_MINUTES)
    args.binance_records, args.itch_records = len(binance), len(itch)
    root = Path(tempfile.mkdtemp(prefix="fault-table-"))
    servers = Infra.on_free_ports(root / "servers")
    done: list[Injection] = []
    t0 = time.monotonic()
    try:
        servers.up()
        lab = Lab(servers, root, binance, itch, repeats)
        bar = tqdm(total=len(kinds) * repeats, unit="injection", file=sys.stderr, dynamic_ncols=True)
        for kind in kinds:
            for index in range(repeats):
                bar.set_postfix_str(kind.name)
                inj = lab.inject(kind, index, args.seed)
                done.append(inj)
                bar.update()
                tqdm.write(("ok    " if inj.ok else "WRONG ") + describe(inj), file=sys.stderr)
                if not inj.ok:
                    tqdm.write(f"      seed {args.seed}, logs {inj.logs}\n{inj.detail}", file=sys.stderr)
        bar.close()
    finally:
        for inj in done:
            inj.stop_all()
        servers.down()
    wall = time.monotonic() - t0
    failed = [i for i in done if not i.ok]
    print(table(kinds, done))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document(kinds, done, args, wall))
    print(f"\n{len(done)} injections in {wall / 60:.1f} min; written to {args.out}")
    if failed:
        print(f"\n{len(failed)} injection(s) lost, duplicated, changed or failed (seed {args.seed}); "
              f"logs and server data kept in {root}:", file=sys.stderr)  # fmt: skip
        for inj in failed:
            print(f"- {describe(inj)}\n  logs {inj.logs}\n{inj.detail}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
