"""Book apply throughput beside two references on identical events (run by `make bench`).

The workload is bmoscon's published one (the orderbook issue): books seeded from the real
Coinbase BTC-USD L2/L3 snapshots in ../shared/data/coinbase-snapshots, then a seeded stream
of events whose price rank from the touch is exponential (mean 64) with 10% uniform over the
whole side, with quote flicker (levels emptied and re-opened), and a best bid + best ask read
after every 10th event. Each stream is generated once against a model of the seeded book,
before any timing; every pass replays it from a freshly seeded book (seeding not timed).

Books, side by side in one run (passes interleaved, median of --passes; order-book --peer-passes):
  ours            orderbook.book.L2Book / L3Book, through apply(Event) and through the
                  direct methods (set_level; add/reduce/delete); Events built before timing
  SortedDict      bmoscon's "sortedcontainers" reference (bench/reference_books.py), Decimal keys
  SortedDict int  the same code on int ticks: shows what Decimal costs, apart from the structure
  order-book      bmoscon's C extension (PyPI order-book), Decimal keys; it has no order-level
                  book, so for L3 it gets the level totals our L3 stream produces
  native          orderbook.native.L2Book / L3Book (Rust): the whole stream as numpy arrays in one
                  call, the best bid + ask read inside it after every 10th event (`marks`), the
                  reads returned as one array; arrays (and int ids for Coinbase's UUIDs) built
                  before timing, as the references' Decimals are
Nothing here asserts a time: it prints a table, and the books are compared at the end.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sortedcontainers import SortedDict, SortedList

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402
from reference_books import SortedDictL2, SortedDictL3, run_l2, run_l3  # noqa: E402

from orderbook import native  # noqa: E402
from orderbook.book import L2Book, L3Book  # noqa: E402
from orderbook.events import Event, Kind, Side  # noqa: E402
from orderbook.numbers import parse_fixed  # noqa: E402

try:
    from order_book import OrderBook  # bmoscon/orderbook, PyPI `order-book`
except ImportError:  # the bench still runs, without that column
    OrderBook = None

DECIMALS = 8  # Coinbase prints up to 8 decimals: ticks and lots of 1e-8
SCALE = Decimal(10**DECIMALS)
TICK = 10**6  # BTC-USD quote increment, 0.01 USD, in 1e-8 units
SNAPSHOTS = "coinbase-snapshots"
VENUE, SYMBOL = "coinbase", "BTC-USD"
READ_EVERY = 10  # a best bid + best ask read after every 10th event (the workload)
MEAN_RANK = 64  # rank from the touch ~ Exponential(mean 64) ...
UNIFORM = 0.10  # ... except 10% uniform over the whole side
L2_REMOVE = 0.25  # an update at a live level empties it with this probability
L2_REOPEN = 0.20  # an update re-opens a recently emptied price: 0.8 * 0.25 = 0.2 keeps the depth steady
L3_MIX = ((Kind.ADD, 0.40), (Kind.DELETE, 0.35), (Kind.CANCEL, 0.15), (Kind.EXECUTE, 0.10))
L3_REOPEN = 0.20  # an add lands on a recently emptied price (quote flicker)
NATIVE_GOAL = 10  # issue 12: the native books at least 10x the SortedDict reference
BMOSCON = {"l2_sorteddict": 1.6e6, "l3_sorteddict": 1.1e6, "l2_orderbook": 64e3, "l3_orderbook": 140e3}

Level = tuple[int, int]
L2Set = tuple[Side, int, int]  # (side, price ticks, size lots), size 0 removes the level
L3Op = tuple[Kind, str, Side, int, int]  # (kind, order id, side, price, size)
Resting = list[tuple[str, Side, int, int]]  # (id, side, price, size)


# ---------------------------------------------------------------- snapshots and seeding


def load_json_gz(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def best_first(side: Side, prices: Sequence[int]) -> list[int]:
    return sorted(prices, reverse=side == Side.BID)


def seed_l2_levels(snap: dict[str, Any], per_side: int | None) -> dict[Side, list[Level]]:
    """The best `per_side` levels of each side (all with None), best first, in ticks and lots."""
    out: dict[Side, list[Level]] = {}
    for key, side in (("bids", Side.BID), ("asks", Side.ASK)):
        levels = [
            (parse_fixed(p, DECIMALS, field="price"), parse_fixed(s, DECIMALS, field="size")) for p, s, _ in snap[key]
        ]
        levels.sort(reverse=side == Side.BID)
        out[side] = levels[:per_side] if per_side else levels
    return out


def seed_l3_orders(snap: dict[str, Any], target: int | None) -> tuple[Resting, int]:
    """The orders at the best K levels of each side, K the smallest with at least `target`
    orders in all (every order with None), in the snapshot's order; and K."""
    per_side: dict[Side, dict[int, list[tuple[str, int]]]] = {Side.BID: {}, Side.ASK: {}}
    for key, side in (("bids", Side.BID), ("asks", Side.ASK)):
        for p, s, oid in snap[key]:
            price = parse_fixed(p, DECIMALS, field="price")
            per_side[side].setdefault(price, []).append((oid, parse_fixed(s, DECIMALS, field="size")))
    ranked = {side: best_first(side, list(levels)) for side, levels in per_side.items()}
    deepest = max(len(r) for r in ranked.values())
    k, count = deepest, 0
    for depth in range(1, deepest + 1 if target else 0):
        count += sum(len(per_side[s][ranked[s][depth - 1]]) for s in ranked if depth <= len(ranked[s]))
        if count >= target:
            k = depth
            break
    keep = {side: set(ranked[side][:k]) for side in ranked}
    resting = [
        (oid, side, price, size)
        for side, levels in per_side.items()
        for price, orders in levels.items()
        if price in keep[side]
        for oid, size in orders
    ]
    return resting, k


# ---------------------------------------------------------------- stream generation (not timed)


def pick_rank(rng: random.Random, n: int) -> int:
    """Rank from the touch: Exponential(mean MEAN_RANK), or uniform over the side's n levels."""
    if rng.random() < UNIFORM:
        return rng.randrange(max(n, 1))
    return int(rng.expovariate(1 / MEAN_RANK))


def dist_key(side: Side, price: int) -> int:
    """Distance-ordered key: ascending from the touch on both sides."""
    return -price if side == Side.BID else price


def pop_recent(rng: random.Random, pool: list[int]) -> int:
    """A recently emptied price (most recent most likely): the quote flicker of a real feed."""
    j = len(pool) - 1 - min(int(rng.expovariate(1 / 4)), len(pool) - 1)
    return pool.pop(j)


def l2_stream(levels: dict[Side, list[Level]], n: int, rng: random.Random) -> list[L2Set]:
    """`n` level sets against a model of the seeded book (see the module docstring)."""
    live = {side: SortedList(dist_key(side, p) for p, _ in lv) for side, lv in levels.items()}
    emptied: dict[Side, list[int]] = {Side.BID: [], Side.ASK: []}
    out: list[L2Set] = []
    for _ in range(n):
        side = Side.BID if rng.random() < 0.5 else Side.ASK
        keys, pool = live[side], emptied[side]
        size = rng.randint(10_000, 500_000_000)  # 0.0001 to 5 BTC
        if pool and rng.random() < L2_REOPEN:
            key = pop_recent(rng, pool)
            if key not in keys:
                keys.add(key)
        else:
            r = pick_rank(rng, len(keys))
            if r < len(keys):
                key = keys[r]
                if rng.random() < L2_REMOVE:
                    keys.remove(key)
                    pool.append(key)
                    size = 0
            else:  # past the deepest level: a new price that many ticks further out
                key = (keys[-1] if keys else 0) + (r - len(keys) + 1) * TICK
                keys.add(key)
        out.append((side, dist_key(side, key), size))
    return out


class L3Model:
    """Plain-dict model of an L3 book, to generate a stream valid at every step."""

    def __init__(self, resting: Resting, rng: random.Random) -> None:
        self.rng = rng
        self.orders: dict[str, list[Any]] = {}  # id -> [side, price, size]
        self.levels = {Side.BID: SortedDict(), Side.ASK: SortedDict()}  # dist key -> {id: None} (FIFO)
        self.emptied: dict[Side, list[int]] = {Side.BID: [], Side.ASK: []}
        for oid, side, price, size in resting:
            self._rest(oid, side, price, size)

    def _rest(self, oid: str, side: Side, price: int, size: int) -> None:
        self.orders[oid] = [side, price, size]
        self.levels[side].setdefault(dist_key(side, price), {})[oid] = None

    def _remove(self, oid: str) -> None:
        side, price, _ = self.orders.pop(oid)
        key = dist_key(side, price)
        queue = self.levels[side][key]
        del queue[oid]
        if not queue:
            del self.levels[side][key]
            self.emptied[side].append(key)

    def total(self, side: Side, price: int) -> int:
        queue = self.levels[side].get(dist_key(side, price), ())
        return sum(self.orders[o][2] for o in queue)

    def _ranked_order(self, side: Side) -> str:
        levels = self.levels[side]
        r = min(pick_rank(self.rng, len(levels)), len(levels) - 1)
        queue = list(levels.peekitem(r)[1])
        return queue[self.rng.randrange(len(queue))]

    def add(self) -> L3Op:
        rng = self.rng
        side = Side.BID if rng.random() < 0.5 else Side.ASK
        levels, pool = self.levels[side], self.emptied[side]
        if pool and rng.random() < L3_REOPEN:
            key = pop_recent(rng, pool)
        else:
            r = pick_rank(rng, len(levels))
            key = levels.peekitem(r)[0] if r < len(levels) else levels.peekitem(-1)[0] + (r - len(levels) + 1) * TICK
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # Coinbase order ids are UUIDs
        price, size = dist_key(side, key), rng.randint(100_000, 200_000_000)
        self._rest(oid, side, price, size)
        return (Kind.ADD, oid, side, price, size)

    def delete(self) -> L3Op:
        oid = self._ranked_order(Side.BID if self.rng.random() < 0.5 else Side.ASK)
        side, price, _ = self.orders[oid]
        self._remove(oid)
        return (Kind.DELETE, oid, side, price, 0)

    def cancel(self) -> L3Op:
        oid = self._ranked_order(Side.BID if self.rng.random() < 0.5 else Side.ASK)
        side, price, size = self.orders[oid]
        if size < 2:
            self._remove(oid)
            return (Kind.DELETE, oid, side, price, 0)
        cut = self.rng.randint(1, size - 1)
        self.orders[oid][2] -= cut
        return (Kind.CANCEL, oid, side, price, cut)

    def execute(self) -> L3Op:
        """A fill of the order at the front of the best level, whole half the time."""
        side = Side.BID if self.rng.random() < 0.5 else Side.ASK
        oid = next(iter(self.levels[side].peekitem(0)[1]))
        _, price, size = self.orders[oid]
        fill = size if self.rng.random() < 0.5 else self.rng.randint(1, size)
        if fill == size:
            self._remove(oid)
        else:
            self.orders[oid][2] -= fill
        return (Kind.EXECUTE, oid, side, price, fill)


def l3_stream(resting: Resting, n: int, rng: random.Random) -> tuple[list[L3Op], list[L2Set]]:
    """`n` order ops valid against the seeded book, and the level total each one leaves."""
    model = L3Model(resting, rng)
    makers = {Kind.ADD: model.add, Kind.DELETE: model.delete, Kind.CANCEL: model.cancel, Kind.EXECUTE: model.execute}
    kinds, weights = zip(*L3_MIX, strict=True)
    ops: list[L3Op] = []
    totals: list[L2Set] = []
    for kind in rng.choices(kinds, weights, k=n):
        op = makers[kind]()
        ops.append(op)
        totals.append((op[2], op[3], model.total(op[2], op[3])))
    return ops, totals


# ---------------------------------------------------------------- each book's form of the events


def batched(items: Sequence[Any], k: int = READ_EVERY) -> list[Sequence[Any]]:
    return [items[i : i + k] for i in range(0, len(items), k)]


def dec(units: int) -> Decimal:
    """1e-8 units as the Decimal the venue printed ('61837.63', not '6183763000000E-8')."""
    return Decimal(units) / SCALE


def l2_events(stream: Sequence[L2Set]) -> list[Event]:
    return [Event(Kind.LEVEL_SET, VENUE, SYMBOL, i, i, s, p, q) for i, (s, p, q) in enumerate(stream, 1)]


def l3_events(ops: Sequence[L3Op]) -> list[Event]:
    return [Event(k, VENUE, SYMBOL, i, i, s, p, q, oid) for i, (k, oid, s, p, q) in enumerate(ops, 1)]


def decimal_l2(stream: Sequence[L2Set]) -> list[tuple[int, Decimal, Decimal]]:
    return [(int(s), dec(p), dec(q)) for s, p, q in stream]


# ---------------------------------------------------------------- runners (the timed work)


def run_ours_apply(book: L2Book | L3Book, batches: Sequence[Sequence[Event]]) -> None:
    apply, best_bid, best_ask = book.apply, book.best_bid, book.best_ask
    for batch in batches:
        for e in batch:
            apply(e)
        best_bid()
        best_ask()


def run_ours_l2_direct(book: L2Book, batches: Sequence[Sequence[L2Set]]) -> None:
    set_level, best_bid, best_ask = book.set_level, book.best_bid, book.best_ask
    for batch in batches:
        for side, price, size in batch:
            set_level(side, price, size)
        best_bid()
        best_ask()


def run_ours_l3_direct(book: L3Book, batches: Sequence[Sequence[L3Op]]) -> None:
    add, reduce, delete = book.add, book.reduce, book.delete
    best_bid, best_ask = book.best_bid, book.best_ask
    for batch in batches:
        for kind, oid, side, price, size in batch:
            if kind == Kind.ADD:
                add(oid, side, price, size)
            elif kind == Kind.DELETE:
                delete(oid)
            else:  # CANCEL, EXECUTE
                reduce(oid, size)
        best_bid()
        best_ask()


def read_marks(n: int) -> np.ndarray:
    """After which events the native book reads its touch: every READ_EVERY-th, as the others do."""
    return np.arange(READ_EVERY, n + 1, READ_EVERY, dtype=np.int64)


def l2_arrays(stream: Sequence[L2Set]) -> tuple[np.ndarray, ...]:
    sides, prices, sizes = zip(*stream, strict=True)
    return np.array(sides, np.int8), np.array(prices, np.int64), np.array(sizes, np.int64)


def seeded_native_l2(levels: dict[Side, list[Level]]) -> Any:
    book = native.L2Book(VENUE, SYMBOL)
    book.apply_levels(*l2_arrays([(side, p, q) for side, lv in levels.items() for p, q in lv]))
    return book


def run_native_l2(book: Any, columns: tuple[np.ndarray, ...]) -> None:
    book.apply_levels(*columns, read_marks(len(columns[0])))


def l3_arrays(ops: Sequence[L3Op], ids: dict[str, int]) -> tuple[np.ndarray, ...]:
    """The ops as the native L3 book's columns; UUIDs as ints (the book keys orders by integer id)."""
    kinds, oids, sides, prices, sizes = zip(*ops, strict=True)
    return (
        np.array(kinds, np.int8),
        np.array([ids.setdefault(o, len(ids) + 1) for o in oids], np.uint64),
        np.array(sides, np.int8),
        np.array(prices, np.int64),
        np.array(sizes, np.int64),
        np.zeros(len(ops), np.uint64),
    )


def run_native_l3(book: Any, columns: tuple[np.ndarray, ...]) -> None:
    book.apply(*columns, read_marks(len(columns[0])))


def run_orderbook(ob: Any, batches: Sequence[Sequence[tuple[int, Decimal, Decimal]]]) -> None:
    """order-book: a level set; size 0 deletes (it would keep a zero level otherwise, as cryptofeed knows)."""
    sides = {int(Side.BID): ob.bids, int(Side.ASK): ob.asks}
    bid_index, ask_index = ob.bids.index, ob.asks.index
    for batch in batches:
        for side, price, size in batch:
            levels = sides[side]
            if size:
                levels[price] = size
            elif price in levels:
                del levels[price]
        bid_index(0)
        ask_index(0)


def seeded_orderbook(levels: dict[Side, list[Level]]) -> Any:
    ob = OrderBook()
    for side, lv in levels.items():
        target = ob.bids if side == Side.BID else ob.asks
        for p, q in lv:
            target[dec(p)] = dec(q)
    return ob


def seeded_l2(levels: dict[Side, list[Level]]) -> L2Book:
    book = L2Book(VENUE, SYMBOL)
    for side, lv in levels.items():
        for p, q in lv:
            book.set_level(side, p, q)
    return book


def seeded_l3(resting: Resting) -> L3Book:
    book = L3Book(VENUE, SYMBOL)
    for oid, side, p, q in resting:
        book.add(oid, side, p, q)
    return book


def level_totals(resting: Resting) -> dict[Side, list[Level]]:
    totals: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}
    for _, side, p, q in resting:
        totals[side][p] = totals[side].get(p, 0) + q
    return {side: list(t.items()) for side, t in totals.items()}


# ---------------------------------------------------------------- timing


@dataclass
class Contestant:
    seed: Callable[[], Any]  # a fresh seeded book, not timed
    run: Callable[[Any], None]  # the timed work on it
    rates: list[float]
    passes: int | None = None  # fewer passes than the others (the slow peer)
    last: Any = None  # the book after the last pass, for the cross-check


def contestant(
    seed: Callable[[], Any], run: Callable[[Any, Any], None], batches: Any, passes: int | None = None
) -> Contestant:
    return Contestant(seed, lambda book: run(book, batches), [], passes)


def time_all(contestants: list[Contestant], n_events: int, passes: int) -> None:
    """`passes` rounds, every book once per round (order rotated), events/s per pass."""
    for p in range(passes):
        k = p % len(contestants)
        for c in contestants[k:] + contestants[:k]:
            if c.passes is not None and p >= c.passes:
                continue
            book = c.seed()
            gc.collect()
            start = time.perf_counter_ns()
            c.run(book)
            c.rates.append(n_events * 1e9 / (time.perf_counter_ns() - start))
            c.last = book


def median(c: Contestant | None) -> float | None:
    return statistics.median(c.rates) if c and c.rates else None


# ---------------------------------------------------------------- the two workloads


def ticks_of(levels: SortedDict, decimal: bool) -> dict[int, int]:
    if not decimal:
        return dict(levels)
    return {int(p * SCALE): int(q * SCALE) for p, q in levels.items()}


def check_same(label: str, ours: L2Book | L3Book, others: dict[str, tuple[Any, Any, bool]]) -> None:
    """Every book must end equal to ours: a speed figure for different work means nothing."""
    want = ours.to_dict()
    for name, (bids, asks, decimal) in others.items():
        got = {"bids": ticks_of(bids, decimal), "asks": ticks_of(asks, decimal)}
        if got != want:
            sys.exit(f"book_bench: {label}: {name} and ours disagree after the same events")


def bench_l2(
    levels: dict[Side, list[Level]], stream: list[L2Set], passes: int, peer_passes: int
) -> dict[str, Contestant]:
    dec_levels = decimal_l2([(s, p, q) for s, lv in levels.items() for p, q in lv])
    int_levels = [(int(s), p, q) for s, lv in levels.items() for p, q in lv]
    cs = {
        "ours apply(Event)": contestant(lambda: seeded_l2(levels), run_ours_apply, batched(l2_events(stream))),
        "ours set_level": contestant(lambda: seeded_l2(levels), run_ours_l2_direct, batched(stream)),
        "SortedDict+Decimal (ref)": contestant(lambda: SortedDictL2(dec_levels), run_l2, batched(decimal_l2(stream))),
        "SortedDict+int": contestant(
            lambda: SortedDictL2(int_levels), run_l2, batched([(int(s), p, q) for s, p, q in stream])
        ),
    }
    if OrderBook is not None:
        cs["order-book 0.6.1 (C)"] = contestant(
            lambda: seeded_orderbook(levels), run_orderbook, batched(decimal_l2(stream)), peer_passes
        )
    if native.available():
        cs["native"] = contestant(lambda: seeded_native_l2(levels), run_native_l2, l2_arrays(stream))
    time_all(list(cs.values()), len(stream), passes)
    ours = cs["ours set_level"].last
    others = reference_finals(cs)
    check_same("L2", ours, others)
    check_same("L2", cs["ours apply(Event)"].last, {"set_level": (ours.bids, ours.asks, False)})
    return cs


def reference_finals(cs: dict[str, Contestant]) -> dict[str, tuple[dict, dict, bool]]:
    """The references' final books as (bids, asks, Decimal keys?), for check_same."""
    others = {
        name: (c.last.book["bid"], c.last.book["ask"], "Decimal" in name)
        for name, c in cs.items()
        if name.startswith("SortedDict")
    }
    if "order-book 0.6.1 (C)" in cs:
        ob = cs["order-book 0.6.1 (C)"].last
        others["order-book"] = (dict(ob.bids.to_dict()), dict(ob.asks.to_dict()), True)
    if "native" in cs:
        book = cs["native"].last.to_dict()
        others["native"] = (book["bids"], book["asks"], False)
    return others


def bench_l3(
    resting: Resting, ops: list[L3Op], totals: list[L2Set], passes: int, peer_passes: int
) -> dict[str, Contestant]:
    dec_orders = [(oid, int(s), dec(p), dec(q)) for oid, s, p, q in resting]
    int_orders = [(oid, int(s), p, q) for oid, s, p, q in resting]
    dec_ops = [(int(k), oid, int(s), dec(p), dec(q)) for k, oid, s, p, q in ops]
    int_ops = [(int(k), oid, int(s), p, q) for k, oid, s, p, q in ops]

    cs = {
        "ours apply(Event)": contestant(lambda: seeded_l3(resting), run_ours_apply, batched(l3_events(ops))),
        "ours add/reduce/delete": contestant(lambda: seeded_l3(resting), run_ours_l3_direct, batched(ops)),
        "SortedDict+Decimal (ref)": contestant(lambda: SortedDictL3(dec_orders), run_l3, batched(dec_ops)),
        "SortedDict+int": contestant(lambda: SortedDictL3(int_orders), run_l3, batched(int_ops)),
    }
    if OrderBook is not None:
        seed_totals = level_totals(resting)
        cs["order-book 0.6.1 (C)"] = contestant(
            lambda: seeded_orderbook(seed_totals), run_orderbook, batched(decimal_l2(totals)), peer_passes
        )
    if native.available():
        ids: dict[str, int] = {}
        seed_ops = [(Kind.ADD, oid, side, p, q) for oid, side, p, q in resting]
        seed_columns, columns = l3_arrays(seed_ops, ids), l3_arrays(ops, ids)

        def seeded_native_l3() -> Any:
            book = native.L3Book(VENUE, SYMBOL)
            book.apply(*seed_columns)
            return book

        cs["native"] = contestant(seeded_native_l3, run_native_l3, columns)
    time_all(list(cs.values()), len(ops), passes)
    ours = cs["ours add/reduce/delete"].last
    others = reference_finals(cs)
    others["apply(Event)"] = (cs["ours apply(Event)"].last.bids, cs["ours apply(Event)"].last.asks, False)
    check_same("L3", ours, others)
    return cs


# ---------------------------------------------------------------- output


def rate(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:.3f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def ratio(x: float | None, base: float | None) -> str:
    return "-" if x is None or not base else f"{x / base:.2f}x"


def print_table(l2: dict[str, Contestant], l3: dict[str, Contestant]) -> None:
    head = ("book", "L2 events/s", "L3 events/s", "L2 / ref", "L3 / ref", "L2 / order-book", "L3 / order-book")
    ref2, ref3 = median(l2["SortedDict+Decimal (ref)"]), median(l3["SortedDict+Decimal (ref)"])
    ob2, ob3 = median(l2.get("order-book 0.6.1 (C)")), median(l3.get("order-book 0.6.1 (C)"))
    names = {
        "ours apply(Event)": ("ours apply(Event)", "ours apply(Event)"),
        "ours direct (set_level | add/reduce/delete)": ("ours set_level", "ours add/reduce/delete"),
        "SortedDict+Decimal (reference)": ("SortedDict+Decimal (ref)",) * 2,
        "SortedDict+int (diagnostic)": ("SortedDict+int",) * 2,
        "order-book 0.6.1 (C; L3 as level totals)": ("order-book 0.6.1 (C)",) * 2,
        "native (Rust; one call, arrays in, reads out)": ("native",) * 2,
    }
    rows = []
    for label, (k2, k3) in names.items():
        a, b = median(l2.get(k2)), median(l3.get(k3))
        rows.append((label, rate(a), rate(b), ratio(a, ref2), ratio(b, ref3), ratio(a, ob2), ratio(b, ob3)))
    print_columns(head, rows)


def verdict(l2: dict[str, Contestant], l3: dict[str, Contestant]) -> None:
    ref2, ref3 = median(l2["SortedDict+Decimal (ref)"]), median(l3["SortedDict+Decimal (ref)"])
    o2, o3 = median(l2["ours apply(Event)"]), median(l3["ours apply(Event)"])
    ok = o2 >= 2 * ref2 and o3 >= 2 * ref3
    print(
        f"\n2x the SortedDict reference through apply(Event): {'yes' if ok else 'no'} "
        f"(L2 {rate(o2)}/s = {o2 / ref2:.2f}x of {rate(ref2)}/s; L3 {rate(o3)}/s = {o3 / ref3:.2f}x of {rate(ref3)}/s)"
    )
    n2, n3 = median(l2.get("native")), median(l3.get("native"))
    if n2 is None or n3 is None:
        print(f"native books: not measured ({native.describe()})")
    else:
        ok = n2 >= NATIVE_GOAL * ref2 and n3 >= NATIVE_GOAL * ref3
        print(
            f"native >= {NATIVE_GOAL}x the SortedDict reference: {'yes' if ok else 'no'} "
            f"(L2 {rate(n2)}/s = {n2 / ref2:.1f}x; L3 {rate(n3)}/s = {n3 / ref3:.1f}x)"
        )
    print(
        "bmoscon's published figures on this machine class: SortedDict ref "
        f"{rate(BMOSCON['l2_sorteddict'])} L2, {rate(BMOSCON['l3_sorteddict'])} L3; order-book 0.6.1 "
        f"{rate(BMOSCON['l2_orderbook'])} L2, {rate(BMOSCON['l3_orderbook'])} L3 (events/s)"
    )


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data, help=f"shared data folder (default: {default_data})")
    p.add_argument("--events", type=int, default=200_000, help="events per stream (default: 200000)")
    p.add_argument("--passes", type=int, default=5, help="timed passes per book, median kept (default: 5)")
    p.add_argument(
        "--peer-passes", type=int, default=3, help="passes of order-book, 60x slower than the rest (default: 3)"
    )
    p.add_argument("--levels", type=int, default=2_000, help="L2 levels seeded per side (default: 2000)")
    p.add_argument("--orders", type=int, default=5_917, help="L3 orders to seed, at least (default: 5917)")
    p.add_argument("--full", action="store_true", help="seed with the whole snapshots instead")
    p.add_argument("--seed", type=int, default=20260807, help="random seed of the streams")
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 events, 2 passes")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.passes = min(args.events, 5_000), min(args.passes, 2)
    args.peer_passes = min(args.peer_passes, args.passes)
    return args


def snapshot(data: Path, name: str) -> dict[str, Any]:
    path = data / SNAPSHOTS / name
    if not path.is_file():
        sys.exit(f"book_bench: {path} not found. Pass --data <folder holding {SNAPSHOTS}/> or set MT_SHARED_DATA.")
    return load_json_gz(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    l2_snap, l3_snap = snapshot(args.data, "l2_snapshot.json.gz"), snapshot(args.data, "l3_snapshot.json.gz")
    levels = seed_l2_levels(l2_snap, None if args.full else args.levels)
    resting, k = seed_l3_orders(l3_snap, None if args.full else args.orders)
    rng = random.Random(args.seed)
    l2 = l2_stream(levels, args.events, rng)
    ops, totals = l3_stream(resting, args.events, rng)
    n_bid = sum(1 for _, s, _, _ in resting if s == Side.BID)
    print(
        f"{l2_snap['product']} snapshots (seq {l3_snap['sequence']}): L2 seeded with {len(levels[Side.BID]):,} bid + "
        f"{len(levels[Side.ASK]):,} ask levels (the best of {len(l2_snap['bids']):,} + {len(l2_snap['asks']):,}); "
        f"L3 with the {len(resting):,} orders ({n_bid:,} bid, {len(resting) - n_bid:,} ask) at the best {k:,} "
        f"levels a side (of {len(l3_snap['bids']) + len(l3_snap['asks']):,} orders)"
    )
    n_zero = sum(1 for e in l2 if e[2] == 0)
    mix = {kd.name: sum(1 for o in ops if o[0] == kd) for kd, _ in L3_MIX}
    print(
        f"streams (seed {args.seed}, built in {time.perf_counter() - started:.1f} s): {len(l2):,} L2 level sets "
        f"({n_zero:,} empty a level); {len(ops):,} L3 ops {mix}; price rank ~ Exp(mean {MEAN_RANK}) from the touch, "
        f"{UNIFORM:.0%} uniform over the side; best bid + ask read every {READ_EVERY} events (timed)"
    )
    print(
        "keys: ours int ticks (its contract); SortedDict ref and order-book Decimal prices and sizes, built before "
        "timing (bmoscon converted per update); order-book gets the L3 stream as level totals (no order-level book)"
    )
    if OrderBook is None:
        print("order-book (bmoscon's C extension) is not installed: no order-book column (pip install order-book)")
    l2_res = bench_l2(levels, l2, args.passes, args.peer_passes)
    l3_res = bench_l3(resting, ops, totals, args.passes, args.peer_passes)
    print(
        f"median of {args.passes} passes (order-book: {args.peer_passes}), passes interleaved; "
        f"python {sys.version.split()[0]}; books agree at the end\n"
    )
    print_table(l2_res, l3_res)
    verdict(l2_res, l3_res)
    print(f"{time.perf_counter() - started:.1f} s in all")


if __name__ == "__main__":
    main()
