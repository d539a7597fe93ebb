"""The micro-batcher's overload policies, measured: `every` beside `latest` when windows come faster
than the model scores them (issue 12, "Overload"; streams/batcher.py).

    .venv/bin/python bench/overload_bench.py            # rates ladder, both policies: about 1 min 45 s on 2 cores
    .venv/bin/python bench/overload_bench.py --quick    # smoke run: two rates, short runs, 16 books
    .venv/bin/python bench/overload_bench.py --rates 500,1000 --books 256 --model baseline

Model: the committed generative checkpoint (model/checkpoints/demo) on the CPU, loaded as the worker
loads it (`load_forecaster`), behind a `MicroBatcher` with the worker's settings (256 windows or 5 ms
per call, 64 requests, the alert threshold 0.99: alerts are explained, a backward pass each).

Windows: real ones, every window of the Binance spot BTCUSDT and ETHUSDT captures in
../shared/data/binance-hftbacktest (orderbook.venue_windows.process_records, the default
WindowConfig), relabelled as `--books` books B000, B001, ...: book k replays one capture's windows
in their order, from its own starting point. A window's cost to the model depends on its contents,
not on its symbol's name.

Offered load, the worker's shape: windows are offered at R per second, round robin over the books,
each onto its book's partition (book mod `--partitions`), as records arrive on a Kafka partition. A
partition's consumer takes everything offered to it so far (at most `--take` windows), submits
them as one request and waits for its result before taking more, as `Partition.handle` does; what
it has not taken yet is the lag (the worker's Kafka lag). Each run lasts `--seconds`; then at most
`--drain` seconds are given to the windows still waiting.

Columns, per rate and policy:
- offered/s: windows offered per second (what the offering loop achieved; R unless the loop lagged).
- scored/s, skipped/s: windows the model scored, and windows skipped, per second while the offer
  lasted (the batcher's counts: a request of `every` resolves only once its last window is scored).
- p50, p99 ms: from a window's offer (its scheduled time) to its request's result, over the scored
  windows offered in the run. A window still unscored after the drain counts with its age then, a
  lower bound: such figures are shown as `>N`.
- waiting: the most windows waiting in the batcher (sampled every millisecond); lag max / lag end:
  windows offered but not yet submitted by their partition, most and at the end of the offer.

The summary gives the highest offered rate of the ladder up to which `latest` keeps p99 under
250 ms, and `every`'s p99 at the same rates. Then the model thread's own work timed alone (`--alone` s a
stage): calls of `--max-batch` windows in a plain loop on the main thread, no event loop, no batcher: the
input arrays, `predict`, and `forecast` (with the alerts' explanations), beside the most the runs scored:
what the rest of the process (one GIL) costs the model thread. Nothing asserts a time: the figures are the machine's
(printed: cores, torch threads, load average), and the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402

from model.serving.forecaster import Forecaster  # noqa: E402
from model.serving.load import load_forecaster  # noqa: E402
from orderbook.venue_windows import VenueWindows, process_records  # noqa: E402
from orderbook.venues import capture_records  # noqa: E402
from orderbook.windows import Window  # noqa: E402
from streams.batcher import OVERLOAD_POLICIES, MicroBatcher  # noqa: E402
from streams.config import SHIPPED_MODEL, Settings  # noqa: E402

CAPTURES = ("spot_btcusdt", "spot_ethusdt")
GOAL_P99_MS = 250.0
RATES = (250, 500, 1000, 2000, 4000, 8000, 16000)
QUICK_RATES = (200, 4000)


@dataclass
class Row:
    policy: str
    rate: int
    offered: int
    seconds: float
    scored: int  # by the model while the offer lasted
    skipped: int
    latencies: list[float]  # seconds, one per scored window offered in the run (lower bounds where censored)
    censored: int  # windows still unscored after the drain
    waiting_max: int
    lag_max: int
    lag_end: int
    model_windows: int  # the batcher's stats: windows scored and the model's seconds for them
    model_seconds: float

    def quantile_ms(self, q: float) -> str:
        if not self.latencies:
            return "-"
        lat = sorted(self.latencies)
        value = f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3:.0f}"
        return f">{value}" if self.censored else value

    def cells(self) -> tuple[str, ...]:
        """scored/s, skipped/s, p50 ms, p99 ms, waiting."""
        per_s = (f"{n / self.seconds:,.0f}" for n in (self.scored, self.skipped))
        return (*per_s, self.quantile_ms(0.5), self.quantile_ms(0.99), f"{self.waiting_max:,}")

    def p99_under(self, limit_ms: float) -> bool:
        lat = sorted(self.latencies)
        return bool(lat) and not self.censored and lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3 < limit_ms


def load_windows(folder: Path, captures: tuple[str, ...], limit: int | None) -> list[list[Window]]:
    """Every window of each capture (the first `limit` where given), in order, one list per capture."""
    out = []
    for stem in captures:
        path = next(folder.glob(f"{stem}_*.gz"), None)
        if path is None:
            sys.exit(f"overload_bench: no {stem}_*.gz in {folder}")
        windows: list[Window] = []
        for done in process_records(VenueWindows("binance"), capture_records("binance", [path])):
            windows += done.windows
            if limit is not None and len(windows) >= limit:
                break
        out.append(windows[:limit])
    return out


class Books:
    """The offered stream: window i goes to book i mod n, the book's next real window, relabelled."""

    def __init__(self, pools: list[list[Window]], n: int) -> None:
        self.pools, self.n = pools, n
        self.names = [f"B{k:03d}" for k in range(n)]
        self.start = [(k * 97) % len(pools[k % len(pools)]) for k in range(n)]  # each book its own stretch

    def window(self, i: int) -> tuple[int, Window]:
        book, j = i % self.n, i // self.n
        pool = self.pools[book % len(self.pools)]
        return book, dataclasses.replace(pool[(self.start[book] + j) % len(pool)], symbol=self.names[book])


async def run(forecaster: Forecaster, books: Books, policy: str, rate: int, args: argparse.Namespace) -> Row:
    batcher = MicroBatcher(forecaster, explain_above=Settings().alert_threshold, max_batch=args.max_batch,
                           max_wait=args.max_wait, overload=policy)  # fmt: skip
    backlogs: list[deque[tuple[float, Window]]] = [deque() for _ in range(args.partitions)]
    offered = [asyncio.Event() for _ in range(args.partitions)]
    latencies: list[float] = []
    outstanding: dict[int, list[float]] = {}  # offer times of what each partition has submitted, unresolved

    async def consume(p: int) -> None:
        backlog = backlogs[p]
        while True:
            while not backlog:
                offered[p].clear()
                await offered[p].wait()
            items = [backlog.popleft() for _ in range(min(args.take, len(backlog)))]
            outstanding[p] = [t for t, _ in items]
            scored = await batcher.submit([w for _, w in items])
            now = time.perf_counter()
            latencies.extend(now - items[i][0] for i in scored.index.tolist())
            del outstanding[p]

    consumers = [asyncio.create_task(consume(p)) for p in range(args.partitions)]
    waiting_max = lag_max = i = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < args.seconds:
        due = int(elapsed * rate)
        while i < due:  # every window due by now, at its scheduled time
            book, w = books.window(i)
            p = book % args.partitions
            backlogs[p].append((t0 + i / rate, w))
            offered[p].set()
            i += 1
        waiting_max = max(waiting_max, batcher.waiting)
        lag_max = max(lag_max, sum(map(len, backlogs)))
        await asyncio.sleep(0.001)
    t_end = time.perf_counter()
    scored_in_run, skipped_in_run = batcher.stats.windows, batcher.stats.skipped  # the model's, not the requests'
    n_offered = i
    lag_end = sum(map(len, backlogs))
    seconds = t_end - t0
    deadline = t_end + args.drain
    while (any(backlogs) or outstanding) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    now = time.perf_counter()
    unscored = [now - t for b in backlogs for t, _ in b] + [now - t for ts in outstanding.values() for t in ts]
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await batcher.stop()
    return Row(policy, rate, n_offered, seconds, scored_in_run, skipped_in_run, latencies + unscored, len(unscored),
               waiting_max, lag_max, lag_end, batcher.stats.windows, batcher.stats.model_seconds)  # fmt: skip


def warm(forecaster: Forecaster, windows: list[Window], max_batch: int) -> None:
    """The model's first calls of each size are slow (allocations; on a GPU the CUDA graph of each batch
    bucket): the worker's warm-up, then a call of a few sizes, before any run."""
    forecaster.warm_up(windows[0])
    for size in (1, 16, max_batch):
        forecaster.forecast([windows[j % len(windows)] for j in range(size)], Settings().alert_threshold)


def alone(forecaster: Forecaster, books: Books, size: int, budget: float) -> tuple[list[tuple[str, float]], int]:
    """The model thread's work with nothing beside it: calls of `size` windows (the books' stream in order)
    in a plain loop on this thread, no event loop and no batcher, each stage for about `budget` s: the
    input arrays alone (a forecaster that builds them), `predict`, and `forecast` (predict, then each alert's
    explanation). ([(stage, windows/s)], alerts explained in the forecast stage)."""
    batches = [[books.window(i)[1] for i in range(k * size, (k + 1) * size)] for k in range(8)]
    threshold = Settings().alert_threshold
    alerts = 0

    def forecast(batch: list[Window]) -> None:
        nonlocal alerts
        alerts += sum(1 for r in forecaster.forecast(batch, threshold).reasons if r)

    stages: list[tuple[str, Any]] = []
    if callable(arrays := getattr(forecaster, "arrays", None)):
        stages.append(("input arrays", arrays))
    stages += [("predict", forecaster.predict), ("forecast", forecast)]
    rates = []
    for name, call in stages:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < budget:
            call(batches[(n // size) % len(batches)])
            n += size
        rates.append((name, n / (time.perf_counter() - t0)))
    return rates, alerts


def report_alone(stages: list[tuple[str, float]], alerts: int, rows: list[Row], size: int) -> None:
    """The stages' rates beside the most the runs scored: what the model thread loses to the rest of the
    process (the offering loop, the batcher, the partitions' tasks: one GIL)."""
    cells = ", ".join(f"{name} {rate:,.0f}/s" for name, rate in stages)
    print(f"\nalone on one thread, calls of {size} windows: {cells} ({alerts} alerts explained in the forecast stage)")
    if rows:
        best = max(r.scored / r.seconds for r in rows)
        print(f"the runs scored at most {best:,.0f}/s: {best / stages[-1][1]:.2f}x the forecast stage alone")


def report(rows: list[Row], args: argparse.Namespace) -> None:
    head = ("rate/s", "policy", "offered/s", "scored/s", "skipped/s", "p50 ms", "p99 ms", "waiting", "lag max",
            "lag end")  # fmt: skip
    body = [(f"{r.rate:,}", r.policy, f"{r.offered / r.seconds:,.0f}", *r.cells(), f"{r.lag_max:,}", f"{r.lag_end:,}")
            for r in rows]  # fmt: skip
    print_columns(head, body, left=(1,))
    model_windows = sum(r.model_windows for r in rows)
    model_seconds = sum(r.model_seconds for r in rows)
    if model_seconds:
        print(f"\nthe model scored {model_windows / model_seconds:,.0f} windows per second of its calls "
              f"(all runs; calls of up to {args.max_batch} windows)")  # fmt: skip
    latest = {r.rate: r for r in rows if r.policy == "latest"}
    every = {r.rate: r for r in rows if r.policy == "every"}
    held = None
    for rate in sorted(latest):
        if not latest[rate].p99_under(GOAL_P99_MS):
            break
        held = rate
    if not latest:
        return
    top = max(latest)
    if held is None:
        print(f"latest: p99 is not under {GOAL_P99_MS:.0f} ms even at {min(latest):,} windows/s offered")
    else:
        more = " (the top of the ladder: the limit lies higher)" if held == top else ""
        print(f"latest: p99 under {GOAL_P99_MS:.0f} ms up to {held:,} windows/s offered{more}, "
              f"{args.books} books, {args.partitions} partitions")  # fmt: skip
    for policy, by_rate in (("latest", latest), ("every", every)):
        if by_rate:
            print(f"{policy} p99 ms by rate: " + ", ".join(
                f"{rate:,}/s {by_rate[rate].quantile_ms(0.99)}" for rate in sorted(by_rate)))  # fmt: skip


def report_books(rows: list[Row], args: argparse.Namespace) -> None:
    """`latest` at one rate past the model's capacity, by the number of books: a call scores at most
    one window per book, so its duration, and the latency, grow with the books."""
    print(f"\nlatest at {args.books_rate:,} windows/s offered, by books (a call holds at most one window per book):")
    head = ("books", "scored/s", "skipped/s", "p50 ms", "p99 ms", "waiting")
    body = [(f"{n:,}", *r.cells()) for n, r in zip(args.books_ladder, rows, strict=True)]
    print_columns(head, body, left=())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--model", default=f"generative:{SHIPPED_MODEL}", help="a --model spec (default: the shipped one)")
    p.add_argument("--device", default="cpu", help="cpu|cuda|auto (default: cpu)")
    p.add_argument("--rates", default=",".join(map(str, RATES)), help="offered windows/s, comma-separated")
    p.add_argument("--policies", default=",".join(OVERLOAD_POLICIES), help="every,latest (default: both)")
    p.add_argument("--books", type=int, default=64, help="books the windows are spread over (default: 64)")
    p.add_argument("--partitions", type=int, default=4, help="partitions, one request in flight each (default: 4)")
    p.add_argument("--take", type=int, default=2000, help="most windows a partition submits at once (default: 2000)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds each run offers windows (default: 5)")
    p.add_argument("--drain", type=float, default=1.0, help="seconds then given to what waits (default: 1)")
    p.add_argument("--max-batch", type=int, default=Settings.max_batch, help="the batcher's max_batch")
    p.add_argument("--max-wait", type=float, default=Settings.max_wait, help="the batcher's max_wait, seconds")
    p.add_argument("--books-ladder", default="16,64,256", help="books of the second table ('' for none)")
    p.add_argument("--books-rate", type=int, default=4000, help="windows/s offered in the second table")
    p.add_argument("--windows", type=int, default=None, help="first N windows of each capture (default: all)")
    p.add_argument("--alone", type=float, default=2.0, help="seconds per stage timed alone after the runs (0: none)")
    p.add_argument("--quick", action="store_true", help="smoke run: rates 200 and 4000, 1.5 s runs, 16 books")
    args = p.parse_args(argv)
    if args.quick:
        args.rates = ",".join(map(str, QUICK_RATES))
        args.books, args.seconds, args.drain = 16, 1.5, 0.5
        args.windows = min(args.windows or 300, 300)
        args.books_ladder = ""
        args.alone = min(args.alone, 0.3)
    args.rates = [int(r) for r in args.rates.split(",")]
    args.policies = [s.strip() for s in args.policies.split(",")]
    args.books_ladder = [int(n) for n in args.books_ladder.split(",") if n.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t = time.perf_counter()
    captures = CAPTURES[:1] if args.quick else CAPTURES
    pools = load_windows(args.data / "binance-hftbacktest", captures, args.windows)
    forecaster = load_forecaster(args.model, args.device)
    warm(forecaster, pools[0], args.max_batch)
    threads = "-"
    with contextlib.suppress(ImportError):
        import torch

        threads = str(torch.get_num_threads())
    print(f"machine: {os.cpu_count()} cores (nproc), torch threads {threads}, load average "
          f"{os.getloadavg()[0]:.2f}; model {forecaster.model_id} ({args.device})")  # fmt: skip
    print(f"windows: {sum(map(len, pools)):,} real ({', '.join(captures)}) as {args.books} books on "
          f"{args.partitions} partitions; batcher: {args.max_batch} windows or {args.max_wait * 1e3:g} ms per call; "
          f"{args.seconds:g} s per run (+ {args.drain:g} s drain); set up in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    print()
    books = Books(pools, args.books)
    rows = []
    for rate in args.rates:
        for policy in args.policies:
            rows.append(asyncio.run(run(forecaster, books, policy, rate, args)))
    report(rows, args)
    if args.alone:
        report_alone(*alone(forecaster, books, args.max_batch, args.alone), rows, args.max_batch)
    if args.books_ladder:
        by_books = [asyncio.run(run(forecaster, Books(pools, n), "latest", args.books_rate, args))
                    for n in args.books_ladder]  # fmt: skip
        report_books(by_books, args)


if __name__ == "__main__":
    main()
