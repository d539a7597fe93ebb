"""Snapshot dump and load of a venue's state (orderbook.snapshot), beside pickle as a yardstick.

(a) Binance: the BTCUSDT book rebuilt from the largest spot capture in
    ../shared/data/binance-hftbacktest (spot_btcusdt_20240808.gz, every message through a
    VenueWindows), saved as the bare L2Book and as the whole VenueWindows (feed, sync state,
    window builders with their ring buffers and feature state).
(b) ITCH: one stock with about 100k resting orders, built here as a seeded ITCH 5.0 stream
    written with orderbook.venues.itch.encode (adds around a mid, with deletes, executions and
    partial cancels) and run through a VenueWindows; saved as the bare L3Book and as the whole
    VenueWindows.
(c) ITCH, a partition of a whole market: --stocks stocks (2,000 by default, about a quarter of
    Nasdaq's listings: one of a worker's 4 partitions) sharing --orders resting orders, each stock
    with its own book and window builder.
(d) A path switch (orderbook/native/convert.py, where the native path is built): each VenueWindows
    written as a native state and made a NativeVenueWindows (what a native worker does with a
    reference snapshot), and that read back as a VenueWindows (a reference worker with a native
    one, or a partition whose native path panicked), beside the snapshot's own load.
Each figure is the median of --passes (gc collected before each, time.perf_counter_ns). pickle
(protocol 5) is only a yardstick here: the library never uses it. After the passes every restored
and every converted state is checked against the original (books and order queues). Nothing
asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402

from orderbook import native  # noqa: E402
from orderbook.book import L3Book  # noqa: E402
from orderbook.errors import FeedError  # noqa: E402
from orderbook.events import Side  # noqa: E402
from orderbook.snapshot import dump_state, load_state  # noqa: E402
from orderbook.venue_windows import VenueWindows  # noqa: E402
from orderbook.venues.binance import BinanceFeed  # noqa: E402
from orderbook.venues.itch import encode  # noqa: E402

BINANCE = "binance-hftbacktest"
BTC_CAPTURE = "spot_btcusdt_20240808.gz"
GOAL_MS = 1000  # dump + load of a 100k-order book, well under a second


@dataclass
class Row:
    what: str
    state: Any
    note: str
    ours: dict[str, list[float]] = field(default_factory=lambda: {"dump": [], "load": []})
    theirs: dict[str, list[float]] = field(default_factory=lambda: {"dump": [], "load": []})
    ours_bytes: int = 0
    theirs_bytes: int = 0

    def ms(self, which: dict[str, list[float]], op: str) -> float:
        return statistics.median(which[op])


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter_ns()
    out = run()
    return (time.perf_counter_ns() - start) / 1e6, out


# ---------------------------------------------------------------- the states


def binance_state(path: Path, limit: int | None) -> VenueWindows:
    vw = VenueWindows("binance")
    feed = BinanceFeed()
    for n, rec in enumerate(BinanceFeed.read_capture(path)):
        if limit is not None and n >= limit:
            break
        with contextlib.suppress(FeedError):  # a message whose key cannot be read is left out
            vw.process(feed.key(rec.raw).encode(), rec.raw)  # a bad one is rejected and skipped, as by the worker
    return vw


def itch_messages(orders: int, seed: int, stocks: int = 1) -> list[bytes]:
    """A day so far over `stocks` stocks: about `orders` resting orders in all when it has run (a fifth
    of the adds leave again: deleted, executed or partly cancelled), each stock's flow as busy as any."""
    rng = random.Random(seed)
    ts = 34_200 * 10**9
    msgs = [encode("S", timestamp=ts - 10**9, event_code="O")]
    names = ["BENCH"] if stocks == 1 else [f"S{k:04d}" for k in range(stocks)]
    for locate, name in enumerate(names, 1):
        msgs.append(encode("R", locate=locate, timestamp=ts - 10**9, stock=name, market_category="Q"))
    msgs.append(encode("S", timestamp=ts, event_code="Q"))
    live: list[tuple[int, int]] = []  # (locate, order ref)
    shares: dict[int, int] = {}
    ref = 0
    while len(live) < orders:
        ts += rng.randint(1, 20_000)
        r = rng.random()
        if r < 0.8 or len(live) < 100:
            ref += 1
            locate = rng.randint(1, stocks)
            side = "B" if rng.random() < 0.5 else "S"
            away = 1 + int(rng.expovariate(1 / 40))  # ticks from the mid: a deep book, busy at the touch
            price = (5_000 - away if side == "B" else 5_000 + away) * 100
            shares[ref] = rng.choice((100, 100, 200, 300, 500, 1000))
            live.append((locate, ref))
            msgs.append(encode("A", locate=locate, timestamp=ts, order_ref=ref, side=side, shares=shares[ref],
                               stock=names[locate - 1], price=price))  # fmt: skip
            continue
        i = rng.randrange(len(live))
        locate, victim = live[i]
        if r < 0.9:
            live[i] = live[-1]
            live.pop()
            msgs.append(encode("D", locate=locate, timestamp=ts, order_ref=victim))
        elif r < 0.95 and shares[victim] > 100:
            shares[victim] -= 100
            msgs.append(encode("X", locate=locate, timestamp=ts, order_ref=victim, shares=100))
        else:
            live[i] = live[-1]
            live.pop()
            msgs.append(encode("E", locate=locate, timestamp=ts, order_ref=victim, shares=shares[victim], match=ref))
    return msgs


def itch_state(orders: int, seed: int, stocks: int = 1) -> VenueWindows:
    vw = VenueWindows("itch")
    for raw in itch_messages(orders, seed, stocks):
        vw.process(None, raw)
    return vw


# ---------------------------------------------------------------- timing and checking


def same_book(a: Any, b: Any, *, arrival_order: bool = True) -> bool:
    """Equal levels, and for an order book equal queues and orders, all orders in arrival order where
    `arrival_order` (a snapshot keeps it; a native state keeps only each queue's, which is all a book's
    behaviour reads)."""
    if a.to_dict() != b.to_dict():
        return False
    if isinstance(a, L3Book):
        orders = list(a.orders) == list(b.orders) if arrival_order else a.orders == b.orders
        return orders and all(
            a.queue(side, p) == b.queue(side, p) for side in (Side.BID, Side.ASK) for p in a.side(side)
        )
    return True


def books_of(state: Any) -> dict[str, Any]:
    return state.feed.books if isinstance(state, VenueWindows) else {"book": state}


def same_books(a: Any, b: Any, *, arrival_order: bool = True) -> bool:
    ours, theirs = books_of(a), books_of(b)
    return ours.keys() == theirs.keys() and all(
        same_book(x, theirs[s], arrival_order=arrival_order) for s, x in ours.items()
    )


def measure(rows: list[Row], passes: int) -> None:
    for _ in range(passes):  # rows interleaved per pass: a noisy spell does not land on one row only
        for row in rows:
            ms, blob = timed(lambda row=row: dump_state(row.state))
            row.ours["dump"].append(ms)
            ms, restored = timed(lambda blob=blob: load_state(blob))
            row.ours["load"].append(ms)
            row.ours_bytes = len(blob)
            ms, pickled = timed(lambda row=row: pickle.dumps(row.state, protocol=5))
            row.theirs["dump"].append(ms)
            ms, _ = timed(lambda pickled=pickled: pickle.loads(pickled))
            row.theirs["load"].append(ms)
            row.theirs_bytes = len(pickled)
            if not same_books(row.state, restored):
                sys.exit(f"snapshot_bench: the restored state of {row.what!r} differs from the original")


def measure_switch(rows: list[Row], passes: int) -> list[tuple[str, str, str, str]]:
    """(d): the VenueWindows rows to the native path and back, with their snapshot load beside."""
    from orderbook.native.convert import native_windows, reference_windows

    out = []
    for row in rows:
        if not isinstance(row.state, VenueWindows):
            continue
        there: list[float] = []
        back: list[float] = []
        for _ in range(passes):
            ms, nvw = timed(lambda row=row: native_windows(row.state))
            there.append(ms)
            ms, again = timed(lambda nvw=nvw: reference_windows(nvw.__getstate__()))
            back.append(ms)
            if not same_books(row.state, again, arrival_order=False):
                sys.exit(f"snapshot_bench: {row.what!r} converted to the native path and back differs")
        load = row.ms(row.ours, "load")
        there_ms, back_ms = statistics.median(there), statistics.median(back)
        out.append((row.what, f"{there_ms:.1f} ms", f"{back_ms:.1f} ms",
                    f"{load:.1f} ms ({(there_ms + back_ms) / load:.1f}x for both ways)"))  # fmt: skip
    return out


def print_table(rows: list[Row]) -> None:
    head = ("state", "snapshot dump", "load", "size", "pickle dump", "load", "size", "notes")
    body = []
    for r in rows:
        body.append(
            (
                r.what,
                f"{r.ms(r.ours, 'dump'):.1f} ms",
                f"{r.ms(r.ours, 'load'):.1f} ms",
                f"{r.ours_bytes / 1e6:.2f} MB",
                f"{r.ms(r.theirs, 'dump'):.1f} ms",
                f"{r.ms(r.theirs, 'load'):.1f} ms",
                f"{r.theirs_bytes / 1e6:.2f} MB",
                r.note,
            )
        )
    print_columns(head, body, left=(0, 7))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--passes", type=int, default=5, help="timed passes, median kept (default: 5)")
    p.add_argument("--orders", type=int, default=100_000, help="resting orders of the ITCH book (default: 100000)")
    p.add_argument("--binance-limit", type=int, default=None, help="first N messages of the capture (default: all)")
    p.add_argument("--stocks", type=int, default=2_000, help="stocks of the many-books ITCH state (default: 2000)")
    p.add_argument("--seed", type=int, default=20240808, help="seed of the ITCH stream")
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 orders, 100 stocks, 5,000 messages, 1 pass")
    args = p.parse_args(argv)
    if args.quick:
        args.passes, args.orders, args.stocks = 1, min(args.orders, 5_000), min(args.stocks, 100)
        args.binance_limit = min(args.binance_limit or 5_000, 5_000)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = args.data / BINANCE / BTC_CAPTURE
    if not path.is_file():
        sys.exit(f"snapshot_bench: {path} not found. Pass --data <folder holding {BINANCE}/> or set MT_SHARED_DATA.")
    started = time.perf_counter()
    binance = binance_state(path, args.binance_limit)
    btc = binance.feed.books["BTCUSDT"]
    itch = itch_state(args.orders, args.seed)
    (stock,) = itch.feed.books.values()
    many = itch_state(args.orders, args.seed, args.stocks)
    many_orders = sum(len(b.orders) for b in many.feed.books.values())
    print(
        f"states built in {time.perf_counter() - started:.1f} s: BTCUSDT {len(btc.bids):,} bid and "
        f"{len(btc.asks):,} ask levels; ITCH {len(stock.orders):,} resting orders at "
        f"{len(stock.bids) + len(stock.asks):,} price levels; ITCH {len(many.feed.books):,} stocks with "
        f"{many_orders:,} resting orders in all"
    )
    levels = f"{len(btc.bids) + len(btc.asks):,} levels"
    windows = f"{len(binance.builders)} window builder(s)"
    rows = [
        Row("binance BTCUSDT L2Book", btc, levels),
        Row("binance BTCUSDT VenueWindows", binance, f"{levels}, {windows}"),
        Row("itch L3Book", stock, f"{len(stock.orders):,} orders"),
        Row("itch VenueWindows", itch, f"{len(stock.orders):,} orders, {len(itch.builders)} window builder(s)"),
        Row(
            f"itch VenueWindows, {len(many.feed.books):,} stocks",
            many,
            f"{many_orders:,} orders, {len(many.builders):,} window builders",
        ),
    ]
    measure(rows, args.passes)
    print(f"median of {args.passes} passes; python {sys.version.split()[0]}; pickle protocol 5 as a yardstick\n")
    print_table(rows)
    if native.available():
        print("\na path switch (orderbook/native/convert.py):")
        head = ("state", "to the native path", "back to the reference", "snapshot load (beside)")
        print_columns(head, measure_switch(rows, args.passes), left=(0,))
    else:
        print(f"\nno path switch timed: {native.describe()}")
    big = rows[3]
    total = big.ms(big.ours, "dump") + big.ms(big.ours, "load")
    print(
        f"\ngoal: dump + load of the {len(stock.orders):,}-order ITCH state under {GOAL_MS} ms: "
        f"{'yes' if total < GOAL_MS else 'no'} ({total:.0f} ms; pickle "
        f"{big.ms(big.theirs, 'dump') + big.ms(big.theirs, 'load'):.0f} ms)"
    )


if __name__ == "__main__":
    main()
