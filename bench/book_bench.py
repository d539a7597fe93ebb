"""Order-book benchmark on real Coinbase BTC-USD snapshots (run by `make bench`).

Seeds the books from ../shared/data/coinbase-snapshots (see bench/README.md), then measures
in one run:
  (a) L2Book level updates and reads, side by side with bmoscon's C extension `order-book`
      doing the same work on the same integer prices and sizes;
  (b) L3Book add / cancel / execute / delete through `apply(Event)`, on a random stream
      near the touch, starting from every resting order of the L3 snapshot;
  (c) memory of the seeded L3Book per resting order (tracemalloc).
Each figure: one warm-up run, then the best of --repeat runs, timed with perf_counter_ns.
Nothing here asserts a time: it prints a table.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import random
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: import the working tree, installed or not

from orderbook.book import L2Book, L3Book  # noqa: E402
from orderbook.events import Event, Kind, OrderId, Side  # noqa: E402
from orderbook.numbers import parse_fixed  # noqa: E402

try:
    from order_book import OrderBook  # bmoscon/orderbook, PyPI `order-book`: the peer
except ImportError:  # the bench still runs, without the comparison
    OrderBook = None

DECIMALS = 8  # Coinbase prints prices and sizes with up to 8 decimals: ticks and lots of 1e-8
TICK = 10**6  # BTC-USD quote increment, 0.01 USD, in 1e-8 units
SNAPSHOTS = "coinbase-snapshots"
VENUE, SYMBOL = "coinbase", "BTC-USD"

Levels = list[tuple[int, int]]
Resting = list[tuple[Side, int, int, OrderId]]


# ---------------------------------------------------------------- loading


def load_json_gz(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def parse_l2(snap: dict[str, Any]) -> tuple[Levels, Levels]:
    """`[[price, size, n_orders], ...]` per side -> integer (price, size) levels."""
    return tuple(  # type: ignore[return-value]
        [(parse_fixed(p, DECIMALS, field="price"), parse_fixed(s, DECIMALS, field="size")) for p, s, _ in snap[key]]
        for key in ("bids", "asks")
    )


def parse_l3(snap: dict[str, Any]) -> Resting:
    """`[[price, size, order_id], ...]` per side -> (side, price, size, id), in the snapshot's order."""
    return [
        (side, parse_fixed(p, DECIMALS, field="price"), parse_fixed(s, DECIMALS, field="size"), oid)
        for key, side in (("bids", Side.BID), ("asks", Side.ASK))
        for p, s, oid in snap[key]
    ]


def seed_l2(bids: Levels, asks: Levels) -> L2Book:
    book = L2Book(VENUE, SYMBOL)
    for side, levels in ((Side.BID, bids), (Side.ASK, asks)):
        for price, size in levels:
            book.set_level(side, price, size)
    return book


def seed_peer(bids: Levels, asks: Levels) -> Any:
    peer = OrderBook()
    for levels, prices in ((peer.bids, bids), (peer.asks, asks)):
        for price, size in prices:
            levels[price] = size
    return peer


def seed_l3(resting: Resting) -> L3Book:
    book = L3Book(VENUE, SYMBOL)
    for side, price, size, oid in resting:
        book.add(oid, side, price, size)
    return book


# ---------------------------------------------------------------- timing


def best_rate(run: Callable[[], int], repeat: int, setup: Callable[[], None] | None = None) -> float:
    """Operations per second: one warm-up run, then the best (fastest per op) of `repeat` runs."""
    best_ns_per_op = float("inf")
    for attempt in range(repeat + 1):
        if setup:
            setup()
        gc.collect()
        start = time.perf_counter_ns()
        ops = run()
        elapsed = time.perf_counter_ns() - start
        if attempt:  # attempt 0 is the warm-up
            best_ns_per_op = min(best_ns_per_op, elapsed / ops)
    return 1e9 / best_ns_per_op


@dataclass
class Row:
    section: str
    what: str
    ours: float
    peer: float | None = None
    unit: str = "ops/s"


# ---------------------------------------------------------------- (a) L2 versus the C extension


def level_updates(bids: Levels, asks: Levels, n: int, rng: random.Random) -> list[tuple[Side, int, int]]:
    """Absolute level sizes near the touch, as a level2 feed sends them: most within a few
    ticks of the best, about a quarter removing the level (size 0)."""
    best_bid, best_ask = bids[0][0], asks[0][0]
    updates = []
    for _ in range(n):
        side = Side.BID if rng.random() < 0.5 else Side.ASK
        offset = int(rng.expovariate(1 / 8)) * TICK
        price = best_bid - offset if side == Side.BID else best_ask + offset
        size = 0 if rng.random() < 0.25 else rng.randint(1, 500_000_000)  # up to 5 BTC
        updates.append((side, price, size))
    return updates


def bench_l2(args: argparse.Namespace, bids: Levels, asks: Levels, rng: random.Random) -> list[Row]:
    updates = level_updates(bids, asks, args.updates, rng)
    # the peer sorts its levels again on the first read after a change: a short stream is enough
    interleaved = updates[: args.interleaved]
    n_reads, repeat = args.reads, args.repeat
    events = [Event(Kind.LEVEL_SET, VENUE, SYMBOL, i, i, side, p, s) for i, (side, p, s) in enumerate(updates)]
    book = seed_l2(bids, asks)
    peer = seed_peer(bids, asks) if OrderBook else None
    reads = range(n_reads)

    def ours_updates() -> int:
        set_level = book.set_level
        for side, price, size in updates:
            set_level(side, price, size)
        return len(updates)

    def ours_apply() -> int:
        apply = book.apply
        for e in events:
            apply(e)
        return len(events)

    def peer_updates() -> int:
        # the peer keeps a level at size 0 unless told to drop it: its users `del` (as cryptofeed does)
        sides = {Side.BID: peer.bids, Side.ASK: peer.asks}
        for side, price, size in updates:
            levels = sides[side]
            if size:
                levels[price] = size
            elif price in levels:
                del levels[price]
        return len(updates)

    def ours_best() -> int:
        best_bid, best_ask = book.best_bid, book.best_ask
        for _ in reads:
            best_bid()
            best_ask()
        return n_reads

    def peer_best() -> int:
        bid_index, ask_index = peer.bids.index, peer.asks.index
        for _ in reads:
            bid_index(0)
            ask_index(0)
        return n_reads

    def ours_top() -> int:
        top = book.top
        for _ in reads:
            top(10)
        return n_reads

    def peer_top() -> int:
        # the peer has no top-N call: index(i) is its way to the i-th level
        pb, pa = peer.bids, peer.asks
        nb, na = min(10, len(pb)), min(10, len(pa))
        for _ in reads:
            [pb.index(i) for i in range(nb)], [pa.index(i) for i in range(na)]
        return n_reads

    def ours_update_then_best() -> int:
        set_level, best_bid, best_ask = book.set_level, book.best_bid, book.best_ask
        for side, price, size in interleaved:
            set_level(side, price, size)
            best_bid()
            best_ask()
        return len(interleaved)

    def peer_update_then_best() -> int:
        sides = {Side.BID: peer.bids, Side.ASK: peer.asks}
        bid_index, ask_index = peer.bids.index, peer.asks.index
        for side, price, size in interleaved:
            levels = sides[side]
            if size:
                levels[price] = size
            elif price in levels:
                del levels[price]
            if peer.bids:
                bid_index(0)
            if peer.asks:
                ask_index(0)
        return len(interleaved)

    def pair(what: str, ours: Callable[[], int], theirs: Callable[[], int]) -> Row:
        return Row("a L2", what, best_rate(ours, repeat), best_rate(theirs, repeat) if peer is not None else None)

    rows = [
        pair("set_level (update)", ours_updates, peer_updates),
        Row("a L2", "apply(LEVEL_SET event)", best_rate(ours_apply, repeat)),
        pair("best bid + ask read", ours_best, peer_best),
        pair("top(10) read, both sides", ours_top, peer_top),
        pair("update, then best bid + ask", ours_update_then_best, peer_update_then_best),
    ]
    if peer is not None:
        same = book.to_dict() == {"bids": peer.bids.to_dict(), "asks": peer.asks.to_dict()}
        if not same:  # a speed figure for different work means nothing
            sys.exit("book_bench: L2Book and order-book disagree after the same updates")
    return rows


# ---------------------------------------------------------------- (b) L3 operations near the touch


class L3StreamMaker:
    """Valid order-by-order events near the touch, generated against a scratch copy of the book.

    Adds rest within a few ticks of their own side's best (never crossing); cancels and deletes
    pick a random live order among those near the touch; executions fill the order at the
    front of the best level, fully or partly, as a market order would.
    """

    def __init__(self, resting: Resting, rng: random.Random, near_ticks: int = 100) -> None:
        self.book = seed_l3(resting)
        self.rng = rng
        self.seq = 0
        bid, ask = self.book.best_bid()[0], self.book.best_ask()[0]
        self.pool: list[OrderId] = [
            oid for _, price, _, oid in resting if bid - near_ticks * TICK <= price <= ask + near_ticks * TICK
        ]

    def _event(self, kind: Kind, **fields: Any) -> Event:
        self.seq += 1
        e = Event(kind, VENUE, SYMBOL, self.seq, self.seq, **fields)
        self.book.apply(e)
        return e

    def _pick(self, min_size: int = 1) -> OrderId:
        for _ in range(1000):
            i = self.rng.randrange(len(self.pool))
            oid = self.pool[i]
            order = self.book.orders.get(oid)
            if order is None:  # gone since it joined the pool: drop it (swap with the last)
                self.pool[i] = self.pool[-1]
                self.pool.pop()
            elif order.size >= min_size:
                return oid
        raise RuntimeError("no live order near the touch to pick")

    def add(self) -> Event:
        side = Side.BID if self.rng.random() < 0.5 else Side.ASK
        offset = int(self.rng.expovariate(1 / 5)) * TICK
        best_bid, best_ask = self.book.best_bid()[0], self.book.best_ask()[0]
        price = best_bid - offset if side == Side.BID else best_ask + offset
        # join the touch at worst, never cross it (a crossing order would have traded)
        price = min(price, best_ask - TICK) if side == Side.BID else max(price, best_bid + TICK)
        oid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))  # Coinbase ids are UUIDs
        self.pool.append(oid)
        return self._event(Kind.ADD, side=side, price=price, size=self.rng.randint(100_000, 200_000_000), order_id=oid)

    def cancel(self) -> Event:
        oid = self._pick(min_size=2)
        cut = self.rng.randint(1, self.book.orders[oid].size - 1)
        return self._event(Kind.CANCEL, order_id=oid, size=cut)

    def execute(self) -> Event:
        side = Side.BID if self.rng.random() < 0.5 else Side.ASK
        levels = self.book.bids if side == Side.BID else self.book.asks
        oid, size = self.book.queue(side, levels.peekitem(0)[0])[0]
        fill = size if self.rng.random() < 0.5 else self.rng.randint(1, size)
        return self._event(Kind.EXECUTE, order_id=oid, size=fill)

    def delete(self) -> Event:
        return self._event(Kind.DELETE, order_id=self._pick())

    def mixed(self) -> Event:
        """The proportions of a Coinbase `full` stream, roughly: mostly opens and cancels (done)."""
        r = self.rng.random()
        if r < 0.45:
            return self.add()
        if r < 0.80:
            return self.delete()
        if r < 0.90:
            return self.execute()
        return self.cancel()


def bench_l3(resting: Resting, n_ops: int, repeat: int, rng: random.Random) -> list[Row]:
    maker = L3StreamMaker(resting, rng)
    phases: list[tuple[str, list[Event]]] = []
    for name, make, count in (
        ("add", maker.add, n_ops),
        ("cancel (partial)", maker.cancel, n_ops // 2),
        ("execute (front of best level)", maker.execute, n_ops // 2),
        ("delete", maker.delete, n_ops // 2),
        ("mixed stream", maker.mixed, 2 * n_ops),
    ):
        phases.append((name, [make() for _ in range(count)]))
    # Phases run in the order they were generated, on a freshly seeded book each repetition,
    # so every event is valid where it lands. One seeding per repetition, not per phase.
    best_ns: dict[str, float] = {name: float("inf") for name, _ in phases}
    for attempt in range(repeat + 1):
        book = seed_l3(resting)
        apply = book.apply
        for name, events in phases:
            gc.collect()
            start = time.perf_counter_ns()
            for e in events:
                apply(e)
            elapsed = time.perf_counter_ns() - start
            if attempt:  # attempt 0 is the warm-up
                best_ns[name] = min(best_ns[name], elapsed / len(events))
    return [Row("b L3", f"apply: {name}", 1e9 / best_ns[name]) for name, _ in phases]


def bench_seed(resting: Resting, repeat: int) -> Row:
    def run() -> int:
        seed_l3(resting)
        return len(resting)

    return Row("b L3", f"seed from snapshot ({len(resting):,} orders)", best_rate(run, repeat), unit="orders/s")


# ---------------------------------------------------------------- (c) memory


def bench_memory(resting: Resting) -> list[Row]:
    """Bytes the seeded L3Book allocates per resting order. The order-id strings and the price
    and size ints come from the decoder and are shared, not counted; their size is shown apart."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = seed_l3(resting)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    n = len(book.orders)
    ids = sum(sys.getsizeof(oid) for _, _, _, oid in resting) / len(resting)
    ints = sum(sys.getsizeof(p) + sys.getsizeof(s) for _, p, s, _ in resting) / len(resting)
    return [
        Row("c memory", f"seeded L3Book, structures only ({n:,} orders)", used / n, unit="bytes/order"),
        Row("c memory", "+ order-id str (UUID, held by the book)", ids, unit="bytes/order"),
        Row("c memory", "+ price and size ints (held by the book)", ints, unit="bytes/order"),
    ]


# ---------------------------------------------------------------- output


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def print_table(rows: list[Row]) -> None:
    head = ("section", "measure", "unit", "ours", "order-book (C)", "ours / peer")
    body = [
        (r.section, r.what, r.unit, fmt(r.ours), fmt(r.peer), f"{r.ours / r.peer:.2f}x" if r.peer else "-")
        for r in rows
    ]
    widths = [max(len(cells[i]) for cells in [head, *body]) for i in range(len(head))]
    numeric = {3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(head))
    print("  ".join("-" * w for w in widths))
    for cells in body:
        print(line(cells))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per figure, best kept (default: 3)")
    p.add_argument("--updates", type=int, default=100_000, help="L2 level updates per run (default: 100000)")
    p.add_argument(
        "--interleaved", type=int, default=5_000, help="updates each followed by a best read (default: 5000)"
    )
    p.add_argument("--reads", type=int, default=100_000, help="L2 reads per run (default: 100000)")
    p.add_argument("--l3-ops", type=int, default=20_000, help="L3 adds per run; other phases scale (default: 20000)")
    p.add_argument("--seed", type=int, default=20260807, help="random seed of the generated streams")
    return p.parse_args(argv)


def snapshot_paths(data: Path) -> Iterator[Path]:
    folder = data / SNAPSHOTS
    for name in ("l2_snapshot.json.gz", "l3_snapshot.json.gz"):
        path = folder / name
        if not path.is_file():
            sys.exit(
                f"book_bench: {path} not found. Pass --data <folder holding {SNAPSHOTS}/> "
                "(the shared captures, see ../shared/data/SOURCES.md) or set MT_SHARED_DATA."
            )
        yield path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    l2_path, l3_path = snapshot_paths(args.data)
    started = time.perf_counter()
    l2_snap, l3_snap = load_json_gz(l2_path), load_json_gz(l3_path)
    bids, asks = parse_l2(l2_snap)
    resting = parse_l3(l3_snap)
    rng = random.Random(args.seed)
    print(
        f"{l2_snap['product']} L2 snapshot: {len(bids):,} bid + {len(asks):,} ask levels; "
        f"L3 snapshot: {len(resting):,} resting orders (seq {l3_snap['sequence']})"
    )
    if OrderBook is None:
        print("order-book (bmoscon's C extension) is not installed: no comparison (pip install order-book)")
    rows = bench_l2(args, bids, asks, rng)
    rows.append(bench_seed(resting, args.repeat))
    rows += bench_l3(resting, args.l3_ops, args.repeat, rng)
    rows += bench_memory(resting)
    print(f"best of {args.repeat} after a warm-up; python {sys.version.split()[0]}\n")
    print_table(rows)
    print(f"\n{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
