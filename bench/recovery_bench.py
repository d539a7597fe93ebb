"""Restart time of a partition against its length: restore from a state snapshot beside today's full replay.

    .venv/bin/python bench/recovery_bench.py [--sizes 100k,1M,5M] [--snapshot-every R] [--full-replay-max N]
                                             [--passes P] [--seed S] [--quick]

One run, on a broker and Redis of its own (`streams.infra`, free loopback ports, a temporary
state folder, always stopped at the end). The single-partition topic `md.raw.itch` grows to each
size N of `--sizes` in turn: simulated ITCH 5.0 (model.sim.engine, 10 symbols over one trading day,
the activity chosen so the day holds the largest size; generated once, keyed by symbol as
`megatrading simulate --kafka` keys it) is produced prefix by prefix with kafka-python.

For each N, the consumer group `bench-recovery` is left as a worker with the snapshot interval
r (`--snapshot-every`, default Settings().snapshot_every) would leave it after N records, at the
worst point: its newest snapshot at N - r + 1, just before the next one, and its committed offset
at N. The state is made with the worker's own code, nothing of the bench's:
- offset N - r + 1 committed without a pointer (streams.txn.PartitionCommitter, an empty
  transaction), then streams.recovery.restore: with no pointer it replays the partition from
  offset 0, as every restart did before snapshots;
- "today": offset N committed without a pointer and restore timed again: the full replay of N
  records, today's restart (the first column; `--full-replay-max` skips it above a size, and the
  state of such a size is restored from the previous size's snapshot instead);
- the state at N - r + 1 encoded (streams.snapshots.encode) and written, with offset N committed
  pointing to it, in one PartitionCommitter transaction: the layout a worker leaves.
Before each restore the partition's transactional id is initialized (untimed), as a worker does
first: the offset a transaction commits is visible only once its markers are written, which
follows the commit's reply; the initialization waits for them.
Then the restart with snapshots, measured two ways:
(a) streams.recovery.restore in this process (median of `--passes`): committed offset and
    pointer, snapshot fetch from `md.state`, load, replay of the r - 1 records after it. Its
    state is checked byte for byte (orderbook.snapshot.dump_state) against the full replay's.
(b) end to end: a `python -m streams.cli worker` process (MT_APP_ID=bench-recovery,
    MT_VENUES=itch, MT_MODEL=baseline), timed from spawn to its log line
    `md.raw.itch[0]: restored to offset N ...`, whose own seconds are reported too; then SIGTERM
    (there is nothing past N to process). The worker's log timestamps split the start-up.
A second table says where (a)'s time goes (the same steps as restore, one by one), a third where
(b)'s does; both with the machine's load average, since the cores may be shared.

Nothing asserts a time; the issue's goal (a restart flat in the topic's length, under 5 s at 5M
records) is about (a) and (b).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not
sys.path.insert(0, str(REPO / "tests"))  # tests/faults.py: a plain module there, tests/ is no package

from faults import WorkerProcess, create_topic  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from streams import recovery, snapshots  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.logformat import line_time  # noqa: E402
from streams.offsets import committed  # noqa: E402
from streams.retry import Waits  # noqa: E402
from streams.topics import RAW_TOPIC  # noqa: E402
from streams.txn import PartitionCommitter  # noqa: E402

VENUE = "itch"
TOPIC = RAW_TOPIC.format(venue=VENUE)
PARTITION = 0
GROUP = "bench-recovery"
N_SYMBOLS = 10
GOAL_S, GOAL_AT = 5.0, 5_000_000
EVENTS_PER_NOMINAL = 0.9  # records per nominal `events per day` and symbol over a whole day: a first guess
QUICK_SIZES, QUICK_EVERY = "2k,10k", 500
WORKER_TIMEOUT_S = 180.0
RESTORED = re.compile(
    r"md\.raw\.itch\[0\]: restored to offset (\d+) from (?:snapshot at offset (\d+)|the start), "
    r"(\d+) records replayed, in ([\d.]+) s"
)
# faust's log lines: `[2026-01-02 03:04:05,678] [pid] [INFO] ...`
MILESTONES = {  # the first log line matching each (a worker may log "assigned" before "up")
    "first log line": re.compile(r"."),
    "worker up": re.compile(r"worker \S+ up: venues"),
    "assigned": re.compile(r"assigned md\.raw\.itch\[0\]"),
    "restored": RESTORED,
}

Msg = tuple[bytes | None, bytes]  # (key, value) of one record


# ---------------------------------------------------------------- data


def parse_size(text: str) -> int:
    t = text.strip().replace("_", "").lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def stream(n: int, seed: int) -> list[Msg]:
    """At least `n` ITCH 5.0 records of one simulated trading day of N_SYMBOLS symbols, the
    symbols' activity set so the day holds them; keyed as `megatrading simulate --kafka` keys."""
    from tqdm import tqdm

    from model.sim.engine import DAY_NS, SimConfig, default_symbols
    from model.sim.run import simulate
    from model.sim.writers import messages

    per_day = max(100.0, n / N_SYMBOLS / EVENTS_PER_NOMINAL)
    while True:
        cfg = SimConfig(n_symbols=N_SYMBOLS, duration_ns=DAY_NS, seed=seed,
                        symbols=default_symbols(N_SYMBOLS, (per_day, per_day)))  # fmt: skip
        t0 = time.perf_counter()
        with tqdm(total=N_SYMBOLS, unit="symbol", desc="simulate", disable=None, file=sys.stderr) as bar:
            result = simulate(cfg, progress=lambda _: bar.update(1))
        keys: dict[str, bytes | None] = {}
        out = [(keys.get(m.symbol) or keys.setdefault(m.symbol, m.symbol.encode() or None), m.raw)
               for m in messages(VENUE, result)]  # fmt: skip
        print(f"simulated {len(out):,} ITCH records ({N_SYMBOLS} symbols x {per_day:,.0f} nominal events per day, "
              f"seed {seed}) in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
        if len(out) >= n:
            return out[:n]
        per_day *= 1.1 * n / len(out)


def end_offset(bootstrap: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(TOPIC, PARTITION)
        return c.end_offsets([tp])[tp]
    finally:
        c.close()


def produce(bootstrap: str, msgs: list[Msg], start: int, end: int) -> float:
    """Records [start, end) appended to the topic, all acknowledged; seconds taken."""
    from tqdm import tqdm

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20,
                         max_request_size=16 << 20)  # fmt: skip
    t0 = time.perf_counter()
    try:
        with tqdm(total=end - start, unit="rec", unit_scale=True, desc=f"produce to {end:,}", disable=None,
                  file=sys.stderr) as bar:  # fmt: skip
            for lo in range(start, end, 10_000):
                for key, value in msgs[lo : min(lo + 10_000, end)]:
                    prod.send(TOPIC, key=key, value=value, partition=PARTITION)
                bar.update(min(lo + 10_000, end) - lo)
            prod.flush()
    finally:
        prod.close()
    seconds = time.perf_counter() - t0
    got = end_offset(bootstrap)
    if got != end:
        sys.exit(f"recovery_bench: {TOPIC} ends at offset {got}, expected {end} (a retried send duplicated?)")
    return seconds


# ---------------------------------------------------------------- the group's state, with the worker's code


def commit(bootstrap: str, offset: int, pointer: snapshots.Pointer | None = None,
           snapshot: tuple[bytes, bytes] | None = None) -> snapshots.Pointer | None:  # fmt: skip
    """One PartitionCommitter transaction: the group's offset (with the pointer, or the new
    snapshot's) and nothing else published, as a worker's batch without forecasts commits; from
    the offset the group has committed now (the committer checks that nobody moved it)."""

    async def run() -> snapshots.Pointer | None:
        c = PartitionCommitter(bootstrap, GROUP, TOPIC, PARTITION, Waits())
        await c.start()  # settles the last transaction: the offset read next is final
        try:
            start = (await asyncio.to_thread(committed, bootstrap, GROUP, TOPIC, [PARTITION]))[PARTITION].offset
            return await c.commit([], start=start, next_offset=offset, pointer=pointer, snapshot=snapshot)
        finally:
            await c.stop()

    return asyncio.run(run())


def settle(bootstrap: str) -> None:
    """Initialize the partition's transactional id, as a worker does before it restores
    (streams/partition.py): a transaction that has just committed may not have written its offset
    commit yet (the markers follow the commit's reply); the initialization waits for them."""

    async def run() -> None:
        c = PartitionCommitter(bootstrap, GROUP, TOPIC, PARTITION, Waits())
        await c.start()
        await c.stop()

    asyncio.run(run())


def restore(bootstrap: str) -> recovery.Restored:
    """streams.recovery.restore, after the settling a worker does first (not timed)."""
    settle(bootstrap)
    s = Settings()
    return recovery.restore(bootstrap, GROUP, TOPIC, PARTITION, VENUE, s.window, s.max_record_bytes)


@dataclass
class Breakdown:
    """streams.recovery.restore's steps, one by one (seconds)."""

    offsets: float
    fetch: float
    decode: float
    read: float  # the records after the snapshot, from Kafka (read_range)
    process: float  # VenuePipeline.process(warm=True) of them
    replayed: int


def restore_steps(bootstrap: str) -> Breakdown:
    settle(bootstrap)
    s = Settings()
    t = [time.perf_counter()]
    c = committed(bootstrap, GROUP, TOPIC, [PARTITION])[PARTITION]
    pointer = snapshots.parse_pointer(c.metadata)
    assert pointer is not None, c
    t.append(time.perf_counter())
    value = snapshots.fetch(bootstrap, pointer)
    t.append(time.perf_counter())
    pipe = snapshots.decode(value, group=GROUP, topic=TOPIC, partition=PARTITION, venue=VENUE, config=s.window,
                            max_bytes=s.max_record_bytes)  # fmt: skip
    t.append(time.perf_counter())
    recs = list(recovery.read_range(bootstrap, TOPIC, PARTITION, pipe.position[PARTITION], c.offset))
    t.append(time.perf_counter())
    for m in recs:
        pipe.process(m.key, m.value, m.partition, m.offset, warm=True)
    t.append(time.perf_counter())
    d = [b - a for a, b in itertools.pairwise(t)]
    return Breakdown(d[0], d[1], d[2], d[3], d[4], len(recs))


# ---------------------------------------------------------------- the worker, end to end


@dataclass
class WorkerRun:
    ready_s: float  # spawn -> the restored line seen
    restore_s: float  # the restore's own seconds, from that line
    offset: int
    snapshot_offset: int | None
    replayed: int
    phases: dict[str, float] = field(default_factory=dict)  # milestone -> seconds after spawn (log timestamps)
    stop_s: float = 0.0


def run_worker(bootstrap: str, redis_url: str, every: int, log_path: Path, worker_id: str) -> WorkerRun:
    spawned_wall = time.time()
    t0 = time.perf_counter()
    w = WorkerProcess(bootstrap, redis_url, GROUP, (VENUE,), log_path, worker_id, snapshot_every=every)
    try:
        found = None
        while found is None:
            found = RESTORED.search(log_path.read_text(errors="replace"))
            if found is not None:
                break
            if not w.alive():
                raise RuntimeError(f"the worker exited with {w.proc.returncode} before restoring; log {log_path}:\n"
                                   f"{log_path.read_text(errors='replace')[-3000:]}")  # fmt: skip
            if time.perf_counter() - t0 > WORKER_TIMEOUT_S:
                raise TimeoutError(f"the worker did not restore in {WORKER_TIMEOUT_S:.0f} s; log {log_path}:\n"
                                   f"{log_path.read_text(errors='replace')[-3000:]}")  # fmt: skip
            time.sleep(0.01)
        ready = time.perf_counter() - t0
    finally:
        t1 = time.perf_counter()
        w.stop()
        stop_s = time.perf_counter() - t1
    snap = found[2]
    return WorkerRun(ready, float(found[4]), int(found[1]), int(snap) if snap is not None else None, int(found[3]),
                     phases(log_path.read_text(errors="replace"), spawned_wall), stop_s)  # fmt: skip


def phases(text: str, spawned_wall: float) -> dict[str, float]:
    """Seconds from spawn to the first log line of each milestone, by the lines' own timestamps
    (millisecond stamps of the local clock)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        when = line_time(line)
        if when is None:
            continue
        for name, pattern in MILESTONES.items():
            if name not in out and pattern.search(line):
                out[name] = when - spawned_wall
    return out


# ---------------------------------------------------------------- one size


@dataclass
class Row:
    n: int
    every: int
    full_s: float | None = None  # today's restart: restore with no pointer at N
    built_s: float = 0.0  # the restore that made the state at N - r + 1
    built_how: str = ""
    snap_s: list[float] = field(default_factory=list)  # (a), every pass
    snap_replayed: int = 0
    same_state: bool | None = None  # (a)'s state == the full replay's (None: no full replay)
    load_a: float = 0.0  # the machine's 1-minute load average after (a), after (b): the cores are shared
    load_b: float = 0.0
    snapshot_bytes: int = 0
    steps: Breakdown | None = None
    worker: WorkerRun | None = None

    @property
    def snap_median(self) -> float:
        return statistics.median(self.snap_s)


def one_size(args: argparse.Namespace, boot: str, redis_url: str, n: int, prev: snapshots.Pointer | None,
             tmp: Path) -> tuple[Row, snapshots.Pointer]:  # fmt: skip
    r = args.snapshot_every
    at = n - r + 1  # the newest snapshot: the worst case, one record short of the next
    row = Row(n, r)
    measure_full = args.full_replay_max is None or n <= args.full_replay_max
    if measure_full or prev is None:
        commit(boot, at)
        print(f"  {n:,}: full replay to {at:,} (the state to snapshot) ...", flush=True)
        built = restore(boot)
        row.built_how = "full replay"
    else:
        commit(boot, at, pointer=prev)  # the state from the previous size's snapshot: what a worker would restore
        print(f"  {n:,}: restore to {at:,} from the previous size's snapshot (the state to snapshot) ...", flush=True)
        built = restore(boot)
        row.built_how = f"from the snapshot at {built.snapshot_offset:,}"
    assert built.committed == at and built.pipeline.position[PARTITION] == at, built
    row.built_s = built.seconds
    print(f"      {built.replayed:,} records replayed in {built.seconds:.1f} s", flush=True)
    full_state = None
    if measure_full:
        commit(boot, n)
        print(f"  {n:,}: today's restart, the full replay of {n:,} ...", flush=True)
        full = restore(boot)
        assert full.committed == n and full.replayed == n and full.snapshot_offset is None, full
        row.full_s = full.seconds
        full_state = full.pipeline.dump_state()
        print(f"      {full.replayed:,} records replayed in {full.seconds:.1f} s", flush=True)
        del full
    offset, value = snapshots.encode(GROUP, TOPIC, PARTITION, built.pipeline)
    assert offset == at, (offset, at)
    del built
    row.snapshot_bytes = len(value)
    pointer = commit(boot, n, snapshot=(snapshots.state_key(GROUP, TOPIC, PARTITION), value))
    assert pointer is not None
    # (a) in-process
    for _ in range(args.passes):
        got = restore(boot)
        assert got.committed == n and got.snapshot_offset == at and got.replayed == r - 1, got
        assert got.pointer == pointer, (got.pointer, pointer)
        row.snap_s.append(got.seconds)
        row.snap_replayed = got.replayed
        if full_state is not None and row.same_state is None:
            row.same_state = got.pipeline.dump_state() == full_state
        del got
    row.steps = restore_steps(boot)
    row.load_a = os.getloadavg()[0]
    print(f"  {n:,}: restore from the snapshot in-process {row.snap_median:.2f} s (median of {args.passes}); "
          f"the worker ...", flush=True)  # fmt: skip
    # (b) a worker process, end to end
    row.worker = run_worker(boot, redis_url, r, tmp / f"worker-{n}.log", f"bench-recovery-{n}")
    row.load_b = os.getloadavg()[0]
    w = row.worker
    assert w.offset == n and w.snapshot_offset == at and w.replayed == r - 1, w
    after = committed(boot, GROUP, TOPIC, [PARTITION])[PARTITION]
    assert after.offset == n and snapshots.parse_pointer(after.metadata) == pointer, after  # the worker moved nothing
    print(f"      ready {w.ready_s:.2f} s after spawn, its restore {w.restore_s:.2f} s; stopped in {w.stop_s:.1f} s",
          flush=True)  # fmt: skip
    return row, pointer


# ---------------------------------------------------------------- report


def print_tables(rows: list[Row], r: int) -> None:
    print(f"\nrestart of {TOPIC}[0] (1 partition): today's full replay beside the restore from a snapshot "
          f"taken every {r:,} records, the newest at N - {r - 1:,} (worst case)\n")  # fmt: skip
    head = (f"{'records N':>11} | {'full replay s':>13} {'records/s':>10} | {'(a) restore s':>13} | "
            f"{'(b) worker restore s':>20} {'spawn-to-ready s':>16} | {'snapshot bytes':>14} | "
            f"{'full/(a)':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for x in rows:
        w = x.worker
        assert w is not None
        full = f"{x.full_s:13.2f} {x.n / x.full_s:10,.0f}" if x.full_s is not None else f"{'-':>13} {'-':>10}"
        ratio = f"{x.full_s / x.snap_median:7.1f}x" if x.full_s is not None else f"{'-':>8}"
        print(f"{x.n:>11,} | {full} | {x.snap_median:13.2f} | {w.restore_s:20.2f} {w.ready_s:16.2f} | "
              f"{x.snapshot_bytes:>14,} | {ratio}")  # fmt: skip
    print("\n(a): streams.recovery.restore in-process, median of the passes: committed offset, snapshot fetch,")
    print("     load, replay of the records after it. (b): a `megatrading worker` process: its log's own")
    print("     restore seconds, and spawn to that log line.")
    print("\nwhere (a)'s time goes (seconds; the same steps as restore, one by one)\n")
    head = (f"{'records N':>11} | {'offsets':>7} {'fetch':>6} {'load':>6} {'read r-1':>8} {'replay r-1':>10} | "
            f"{'replayed':>8} {'state = full replay':>19} | {'load 1m':>7}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for x in rows:
        s = x.steps
        assert s is not None
        same = {None: "-", True: "yes", False: "NO"}[x.same_state]
        print(f"{x.n:>11,} | {s.offsets:7.3f} {s.fetch:6.3f} {s.decode:6.3f} {s.read:8.3f} {s.process:10.3f} | "
              f"{s.replayed:>8,} {same:>19} | {x.load_a:7.2f}")  # fmt: skip
    print("\nwhere (b)'s time goes (seconds after spawn, from the worker log's timestamps; the stop after it)\n")
    names = list(MILESTONES)
    head = f"{'records N':>11} | " + " ".join(f"{n:>14}" for n in names) + f" | {'SIGTERM to exit':>15} {'load 1m':>7}"
    print(head)
    print("-" * len(head))
    for x in rows:
        w = x.worker
        assert w is not None
        cells = " ".join(f"{w.phases[n]:14.2f}" if n in w.phases else f"{'-':>14}" for n in names)
        print(f"{x.n:>11,} | {cells} | {w.stop_s:15.1f} {x.load_b:7.2f}")
    big = [x for x in rows if x.n >= GOAL_AT]
    if big:
        x = big[-1]
        w = x.worker
        assert w is not None
        print(f"\ngoal: restart under {GOAL_S:.0f} s at {GOAL_AT:,} records: (a) {x.snap_median:.2f} s "
              f"{'yes' if x.snap_median < GOAL_S else 'no'}; (b) worker restore {w.restore_s:.2f} s, "
              f"spawn-to-ready {w.ready_s:.2f} s {'yes' if w.ready_s < GOAL_S else 'no'}")  # fmt: skip
    else:
        print(f"\ngoal: restart under {GOAL_S:.0f} s at {GOAL_AT:,} records (no size here reaches it)")
    print(
        f"the {GOAL_S:.0f} s goal is about (a) and (b); the full replay is today's restart, for comparison. "
        f"Nothing here asserts a time.\nload 1m: the machine's 1-minute load average ({os.cpu_count()} cores) "
        "after the measurement; other work on the machine inflates the figures."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    every = Settings().snapshot_every
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100k,1M,5M", help="records in the partition, ascending (default: 100k,1M,5M)")
    p.add_argument("--snapshot-every", type=int, default=None,
                   help=f"the snapshot interval r (default: Settings().snapshot_every, {every:,})")  # fmt: skip
    p.add_argument("--full-replay-max", type=parse_size, default=None,
                   help="no full replay above this size: its column shows '-', its state comes from the previous "
                   "size's snapshot (default: measure all)")  # fmt: skip
    p.add_argument("--passes", type=int, default=3, help="in-process restores per size, the median shown (default: 3)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default: 1)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES}, a snapshot every "
                   f"{QUICK_EVERY} records, 1 pass")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = QUICK_SIZES if args.sizes == p.get_default("sizes") else args.sizes
        args.snapshot_every = args.snapshot_every or QUICK_EVERY
        args.passes = 1
    args.snapshot_every = args.snapshot_every or every
    args.sizes = [parse_size(s) for s in str(args.sizes).split(",") if s.strip()]
    if not args.sizes or args.sizes != sorted(set(args.sizes)):
        p.error("--sizes: distinct sizes, ascending (the topic grows from one to the next)")
    if args.snapshot_every < 1 or args.sizes[0] < args.snapshot_every:
        p.error(f"every size must hold at least one snapshot interval ({args.snapshot_every:,} records)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka.coordinator.consumer", "kafka.net"):  # "group_id is None", "Task ran for 0.110s"
        logging.getLogger(noisy).setLevel(logging.ERROR)
    started = time.perf_counter()
    sizes = ", ".join(f"{n:,}" for n in args.sizes)
    print(f"machine: {os.cpu_count()} cores (nproc), Python {sys.version.split()[0]}; sizes {sizes}; "
          f"snapshot every {args.snapshot_every:,} records", flush=True)  # fmt: skip
    msgs = stream(args.sizes[-1], args.seed)
    from streams.infra import Infra

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp_s:
        tmp = Path(tmp_s)
        infra = Infra.on_free_ports(tmp / "infra")
        infra.up()
        try:
            boot, redis_url = infra.kafka.bootstrap, infra.redis.url
            create_topic(boot, TOPIC, partitions=1)
            snapshots.ensure_topic(boot)  # as the worker makes it: compacted (auto-creation would not)
            done, prev = 0, None
            for n in args.sizes:
                secs = produce(boot, msgs, done, n)
                print(f"{TOPIC}: {n:,} records ({n - done:,} produced in {secs:.1f} s, "
                      f"{(n - done) / secs:,.0f}/s)", flush=True)  # fmt: skip
                done = n
                row, prev = one_size(args, boot, redis_url, n, prev, tmp)
                rows.append(row)
        finally:
            infra.down()
    print_tables(rows, args.snapshot_every)
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
