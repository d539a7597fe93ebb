"""Faust's no-op ceiling beside a bare aiokafka loop, with single-message records and with frames
(issue 12, throughput: its first "must show"). Run by `make bench`.

One run starts a Kafka broker of its own (`streams.infra`, free loopback ports, a temporary folder,
always stopped at the end) and pre-produces the first N messages (default 300,000; the six captures
hold 332,200) of the real Binance captures of ../shared/data/binance-hftbacktest, all six merged by
capture time as one multi-symbol feed interleaves them, keyed by symbol (the USD-M captures as
BTCUSDTPERP / ETHUSDTPERP: spot and USD-M share their symbols), to two 4-partition topics:
- `bench.ceiling.single`: one message per record, as a record has been until now;
- `bench.ceiling.frames`: the same messages through `orderbook.frames.framed` with the default
  `Framer` (64 messages or 1 ms of capture time per key), as `replay` writes them.

Each topic is then drained three ways, one after the other, each consumer a process of its own in a
fresh consumer group, with the machine otherwise idle:
- a Faust app whose one agent does nothing but count: `stream.take_events(take, within)` (2000 /
  0.01 s by default, what the worker's agent took before it took whole fetches), raw key and value
  serializers, memory store, the worker's consumer settings (`streams.app.faust_app`: no web server,
  `stream_wait_empty=False`, its buffer and fetch sizes) and its subscription with `acks=False` (the
  worker commits through its transactions; a no-op has none);
- the same app with the worker's delivery instead of an agent (`streams/delivery.py`: Faust's
  consumer hands each partition's fetched records to a coroutine, here one that counts);
- a bare aiokafka loop: `AIOKafkaConsumer.getmany(max_records=take, timeout_ms=50)` with the
  consumer settings Faust's aiokafka driver passes (fetch_max_wait_ms 1500, the same partition fetch
  size, session timeout, auto offset reset earliest), no commits either.
All three count records and messages: every record goes through `orderbook.frames.messages_of`, so the
frame split is paid by every consumer (for a plain record it is the magic check); a message
count equal to N says that every message arrived.

Clock: from the end of a consumer's first batch to the record that completes the topic (start-up,
the group join and the first fetch are left out); records/s and messages/s over that span. The
frame statistics, and `messages_of` alone over the frames topic in memory, close the printout.

Nothing asserts a time. The machine is shared: read the ratios, whose sides ran in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not
sys.path.insert(0, str(REPO / "tests"))  # tests/faults.py: a plain module there, tests/ is no package

from columns import print_columns  # noqa: E402
from faults import create_topic  # noqa: E402

from orderbook.frames import FRAME_MESSAGES, FRAME_SPAN_NS, Framer, framed, is_frame, messages_of  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402
from streams.app import FETCH_BYTES, faust_app  # noqa: E402
from streams.config import Settings  # noqa: E402

BINANCE = "binance-hftbacktest"
VENUE = "binance"
PARTITIONS = 4
SINGLE_TOPIC = "bench.ceiling.single"
FRAMES_TOPIC = "bench.ceiling.frames"
# a capture's file stem -> the key of its records (the symbol; USD-M's share spot's, hence PERP)
CAPTURES = {
    "spot_btcusdt": "BTCUSDT",
    "spot_ethusdt": "ETHUSDT",
    "usdm_btcusdt": "BTCUSDTPERP",
    "usdm_ethusdt": "ETHUSDTPERP",
    "cm_btcusd_perp": "BTCUSD_PERP",
    "cm_ethusd_perp": "ETHUSD_PERP",
}
# Faust's agent, Faust's consumer with the worker's batch delivery (streams/delivery.py), the bare loop
CONSUMERS = ("faust", "faust-batches", "aiokafka")
FETCH_WAIT_MS = 1500  # what faust's aiokafka driver passes as fetch_max_wait_ms

Msg = tuple[bytes, bytes]  # (key, value) of one record


# ---------------------------------------------------------------- data


def load_messages(folder: Path, n: int) -> list[tuple[bytes, bytes, int]]:
    """(key, message, capture time ns) of the first `n` messages of the captures merged by capture time."""
    cls = feed_class(VENUE)
    streams = []
    for stem, symbol in CAPTURES.items():
        path = next(folder.glob(f"{stem}_*.gz"), None)
        if path is None:
            sys.exit(f"faust_ceiling: no {stem}_*.gz in {folder}")
        key = symbol.encode()
        streams.append([(r.recv_ts, key, r.raw) for r in cls.read_capture(path)])
    merged = heapq.merge(*streams, key=lambda t: t[0])
    out = []
    for ts, key, raw in merged:
        if len(out) == n:
            break
        out.append((key, raw, ts))
    return out


@dataclass
class Topics:
    single: list[Msg]
    frames: list[Msg]
    frame_sizes: list[int]  # messages per record of the frames topic


def build_topics(messages: Sequence[tuple[bytes, bytes, int]]) -> Topics:
    frames = list(framed(messages, Framer()))
    return Topics([(k, m) for k, m, _ in messages], [(f.key, f.value) for f in frames], [f.count for f in frames])


# ---------------------------------------------------------------- Kafka


async def produce(bootstrap: str, topic: str, msgs: Sequence[Msg]) -> None:
    """Every record, keyed, with streams.publish's settings (acks=all, linger 5 ms), all acknowledged."""
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20,
                            max_request_size=16 << 20)  # fmt: skip
    await prod.start()
    try:
        for key, value in msgs:
            await prod.send(topic, value, key=key)
        await prod.flush()
    finally:
        await prod.stop()


# ---------------------------------------------------------------- the consumers (child processes)


class Counter:
    """Records and messages seen; the clock starts at the end of the first batch."""

    def __init__(self, expect_records: int, out: Path) -> None:
        self.expect, self.out = expect_records, out
        self.records = self.messages = 0
        self.first: tuple[float, int, int] | None = None  # (time, records, messages) after the first batch
        self.last = 0.0
        self.longest_gap = 0.0  # the longest wait between two batches: a stall, not a rate
        self.written = False

    def batch(self, values: Iterable[bytes]) -> bool:
        """Count one batch; True for the batch that completes the expected records (the result is then
        written), False before and after it."""
        for value in values:
            self.records += 1
            self.messages += len(messages_of(value, VENUE))
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, self.records, self.messages)
        else:
            self.longest_gap = max(self.longest_gap, now - self.last)
        self.last = now
        if self.records < self.expect or self.written:
            return False
        t0, r0, m0 = self.first
        result = {"records": self.records, "messages": self.messages, "timed_records": self.records - r0,
                  "timed_messages": self.messages - m0, "seconds": now - t0,
                  "longest_gap": self.longest_gap}  # fmt: skip
        self.out.write_text(json.dumps(result))
        self.written = True
        return True


def run_faust(bootstrap: str, topic: str, group: str, expect: int, take: int, within: float, out: Path,
              acks: bool = False) -> None:  # fmt: skip
    """A Faust worker whose agent only counts; it stops itself (SIGTERM) once every record is in."""
    from faust.worker import Worker as FaustWorker

    # the worker's own app, empty: its group, its broker, its data beside the bench's output
    settings = replace(Settings(), app_id=group, bootstrap=bootstrap, home=out.parent, web_port=None)
    app = faust_app(settings)
    source = app.topic(topic, key_serializer="raw", value_serializer="raw", acks=acks)
    counter = Counter(expect, out)

    @app.agent(source, name="noop")
    async def noop(stream: Any) -> None:
        async for events in stream.take_events(take, within=within):
            if counter.batch(ev.value for ev in events):
                os.kill(os.getpid(), signal.SIGTERM)  # Faust's worker shuts down on it, as on a deploy

    FaustWorker(app, loglevel="warning", quiet=True).execute_from_commandline()


def run_faust_batches(bootstrap: str, topic: str, group: str, expect: int, take: int, out: Path) -> None:
    """The worker's own delivery (streams/delivery.py): the same empty app (fetches of `take` records),
    the topic handed to a counting handler a fetch at a time instead of to an agent."""
    from faust.worker import Worker as FaustWorker

    settings = replace(Settings(), app_id=group, bootstrap=bootstrap, home=out.parent, web_port=None, take_max=take)
    app = faust_app(settings)
    counter = Counter(expect, out)

    async def count(tp: Any, records: Sequence[Any]) -> None:
        if counter.batch(r.value for r in records):
            os.kill(os.getpid(), signal.SIGTERM)

    app.deliver_batches(app.topic(topic, key_serializer="raw", value_serializer="raw", acks=False), count)
    FaustWorker(app, loglevel="warning", quiet=True).execute_from_commandline()


async def run_aiokafka(bootstrap: str, topic: str, group: str, expect: int, take: int, out: Path) -> None:
    """The bare loop: getmany until every record is in."""
    from aiokafka import AIOKafkaConsumer

    settings = Settings()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=FETCH_BYTES,
                                fetch_max_wait_ms=FETCH_WAIT_MS,
                                session_timeout_ms=int(settings.session_timeout * 1000),
                                heartbeat_interval_ms=int(min(1.0, settings.session_timeout / 3) * 1000))  # fmt: skip
    counter = Counter(expect, out)
    await consumer.start()
    try:
        done = False
        while not done:
            got = await consumer.getmany(timeout_ms=50, max_records=take)
            if got:
                done = counter.batch(m.value for part in got.values() for m in part)
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- the parent


@dataclass
class Result:
    consumer: str
    topic: str
    records: int
    messages: int
    timed_records: int
    timed_messages: int
    seconds: float
    longest_gap: float  # s between two batches

    @property
    def records_per_s(self) -> float:
        return self.timed_records / self.seconds if self.seconds > 0 else float("nan")

    @property
    def messages_per_s(self) -> float:
        return self.timed_messages / self.seconds if self.seconds > 0 else float("nan")


def measure(consumer: str, bootstrap: str, topic: str, expect: int, take: int, within: float, tmp: Path,
            timeout: float, acks: bool = False) -> Result:  # fmt: skip
    """One consumer process on one topic, in a fresh group, until it has every record."""
    group = f"bench-ceiling-{consumer}-{topic.rsplit('.', 1)[-1]}-{os.getpid()}"
    out, log = tmp / f"{group}.json", tmp / f"{group}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", consumer, "--bootstrap", bootstrap, "--topic",
           topic, "--group", group, "--expect", str(expect), "--take", str(take), "--within", str(within),
           "--out", str(out)] + (["--faust-acks"] if acks else [])  # fmt: skip
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{consumer} on {topic}: not done after {timeout:.0f} s\n{_tail(log)}")
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    finally:
        _stop(proc)
    if not out.exists():
        raise RuntimeError(f"{consumer} on {topic}: exited {proc.returncode} without a result\n{_tail(log)}")
    return Result(consumer, topic, **json.loads(out.read_text()))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def split_rate(frames: Sequence[Msg]) -> float:
    """messages/s of `messages_of` alone over the frames topic's records, in memory (median of 3)."""
    times = []
    n = 0
    for _ in range(3):
        start = time.perf_counter()
        n = sum(len(messages_of(v, VENUE)) for _, v in frames)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def frame_stats(topics: Topics) -> Iterator[str]:
    sizes = topics.frame_sizes
    frames_only = [c for c in sizes if c > 1]
    hist = {"1": sum(1 for c in sizes if c == 1), "2-7": sum(1 for c in sizes if 2 <= c <= 7),
            "8-31": sum(1 for c in sizes if 8 <= c <= 31), "32-63": sum(1 for c in sizes if 32 <= c <= 63),
            "64": sum(1 for c in sizes if c == 64)}  # fmt: skip
    yield (f"frames (Framer {FRAME_MESSAGES} messages / {FRAME_SPAN_NS / 1e6:g} ms): {len(topics.single):,} messages "
           f"in {len(sizes):,} records, mean {len(topics.single) / len(sizes):.2f} messages per record; "
           f"{len(frames_only):,} records are frames (mean {statistics.fmean(frames_only) if frames_only else 0:.2f} "
           f"messages), {hist['1']:,} plain messages")  # fmt: skip
    yield "records by messages: " + ", ".join(f"{k}: {v:,}" for k, v in hist.items())
    single_bytes = sum(len(v) for _, v in topics.single)
    frame_bytes = sum(len(v) for _, v in topics.frames)
    yield f"value bytes: single {single_bytes:,}, frames {frame_bytes:,} (+{frame_bytes / single_bytes - 1:.1%} layout)"


def print_table(results: list[Result], n: int) -> None:
    base = next(r for r in results if r.consumer == "aiokafka" and r.topic == SINGLE_TOPIC).records_per_s
    names = {"faust": "Faust no-op agent", "faust-batches": "Faust, batch delivery", "aiokafka": "aiokafka getmany"}
    kinds = {SINGLE_TOPIC: "single", FRAMES_TOPIC: "frames"}
    rows = []
    for r in results:
        rows.append((f"{names[r.consumer]} {kinds[r.topic]}", f"{r.records:,}", f"{r.messages:,}",
                     f"{r.records_per_s:,.0f}", f"{r.messages_per_s:,.0f}", f"{r.records_per_s / base:.3f}",
                     f"{r.messages_per_s / base:.3f}", f"{r.seconds:.2f}"))  # fmt: skip
    print(f"\n{n:,} messages; clock from each consumer's first batch to its last record")
    head = ("consumer", "records", "messages", "records/s", "messages/s", "rec / aiokafka single",
            "msg / aiokafka single", "s")  # fmt: skip
    print_columns(head, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    settings = Settings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--messages", type=int, default=300_000, help="messages N (default: 300000; at most what the "
                   "captures hold)")  # fmt: skip
    p.add_argument("--take", type=int, default=settings.take_max, help="records per batch: the agent's take_events "
                   f"and the loop's getmany max_records (default: the worker's {settings.take_max})")  # fmt: skip
    p.add_argument("--within", type=float, default=0.01, help="the agent's take_events within, s (default: 0.01, "
                   "what the worker's agent used before it took whole fetches)")  # fmt: skip
    p.add_argument("--faust-acks", action="store_true", help="subscribe with Faust's acks on (its default: every "
                   "event acknowledged, offsets committed by its timer), not the worker's acks=False")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 messages")
    # a consumer process (the parent spawns them)
    p.add_argument("--child", choices=CONSUMERS, help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.messages = min(args.messages, 5000)
    return args


def child(args: argparse.Namespace) -> None:
    if args.child == "faust":
        run_faust(args.bootstrap, args.topic, args.group, args.expect, args.take, args.within, args.out,
                  args.faust_acks)  # fmt: skip
    elif args.child == "faust-batches":
        run_faust_batches(args.bootstrap, args.topic, args.group, args.expect, args.take, args.out)
    else:
        asyncio.run(run_aiokafka(args.bootstrap, args.topic, args.group, args.expect, args.take, args.out))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    folder = args.data / BINANCE
    if not folder.is_dir():
        sys.exit(f"faust_ceiling: {folder} not found. Pass --data <folder holding {BINANCE}/> or set MT_SHARED_DATA.")
    started = time.perf_counter()
    topics = build_topics(load_messages(folder, args.messages))
    n = len(topics.single)
    print(f"data: {n:,} Binance messages from {len(CAPTURES)} captures ({len(CAPTURES)} keys), "
          f"{len(topics.frames):,} frame records; {sum(is_frame(v) for _, v in topics.frames):,} of them frames; "
          f"take {args.take}, within {args.within} s, Faust acks {'on' if args.faust_acks else 'off'}",
          flush=True)  # fmt: skip
    from streams.infra import Infra

    with tempfile.TemporaryDirectory(prefix="faust-ceiling-") as tmp_s:
        tmp = Path(tmp_s)
        servers = Infra.on_free_ports(tmp / "servers")
        servers.kafka.start()  # no Redis: nothing here writes to it
        try:
            boot = servers.kafka.bootstrap
            for topic in (SINGLE_TOPIC, FRAMES_TOPIC):
                create_topic(boot, topic, PARTITIONS)
            for topic, msgs in ((SINGLE_TOPIC, topics.single), (FRAMES_TOPIC, topics.frames)):
                t = time.perf_counter()
                asyncio.run(produce(boot, topic, msgs))
                print(f"  {len(msgs):,} records produced to {topic} in {time.perf_counter() - t:.1f} s", flush=True)
            results = []
            for consumer in CONSUMERS:
                for topic, msgs in ((SINGLE_TOPIC, topics.single), (FRAMES_TOPIC, topics.frames)):
                    timeout = 120 + len(msgs) / 500
                    r = measure(consumer, boot, topic, len(msgs), args.take, args.within, tmp, timeout, args.faust_acks)
                    print(f"  {consumer} on {topic}: {r.records_per_s:,.0f} records/s, {r.messages_per_s:,.0f} "
                          f"messages/s ({r.records:,} records, {r.messages:,} messages; longest pause between "
                          f"batches {r.longest_gap * 1e3:,.0f} ms)", flush=True)  # fmt: skip
                    results.append(r)
        finally:
            servers.kafka.stop()
    print_table(results, n)
    print()
    for line in frame_stats(topics):
        print(line)
    print(f"messages_of alone over the frames topic, in memory: {split_rate(topics.frames):,.0f} messages/s")
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
