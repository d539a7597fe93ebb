"""The "sortedcontainers" reference books of the book benchmark, and the runners that time them.

bmoscon's published benchmark (bmoscon/orderbook, perf/performance_test.py, `profile_orderbook_sd`)
measures a plain book `{'bid': SortedDict(), 'ask': SortedDict()}` keyed by `Decimal(price)`,
beside his C extension. These are that book, driven by the benchmark's event streams:

- L2: level sets `(side, price, size)`; size 0 removes the level.
- L3: the same two SortedDicts hold the level totals (Decimal price -> Decimal size), plus a
  plain dict of orders (id -> [side, price, size]). No FIFO queue per level: the stream names
  the order an execution fills, so the reference never needs one (our L3Book keeps queues).

Both SortedDicts are ascending (sortedcontainers' default, as in bmoscon's harness): the best
bid is `peekitem(-1)`, the best ask `peekitem(0)`.

A runner takes a freshly seeded book and the stream cut in batches of `READ_EVERY` events; it
applies a batch, then reads the best bid and best ask, as the issue's workload prescribes.
Keys may be Decimal (the reference proper) or int ticks (a diagnostic row that separates the
cost of Decimal from the cost of the structure): the code is the same.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from sortedcontainers import SortedDict

BID, ASK = 1, -1  # the values of orderbook.events.Side, so one stream serves every book
ADD, CANCEL, EXECUTE, DELETE = 1, 2, 4, 3  # the values of orderbook.events.Kind for these ops

L2Op = tuple[int, Any, Any]  # (side, price key, size)
L3Op = tuple[int, Hashable, int, Any, Any]  # (op, order id, side, price key, size)


class SortedDictL2:
    """bmoscon's sortedcontainers book: two ascending SortedDicts, price -> size."""

    def __init__(self, levels: Sequence[L2Op] = ()) -> None:
        self.book: dict[str, SortedDict] = {"bid": SortedDict(), "ask": SortedDict()}
        self.sides = {BID: self.book["bid"], ASK: self.book["ask"]}
        for side, price, size in levels:
            self.sides[side][price] = size

    def best(self) -> tuple[Any, Any]:
        return self.book["bid"].peekitem(-1), self.book["ask"].peekitem(0)


class SortedDictL3(SortedDictL2):
    """The L2 reference's level totals plus a dict of orders (id -> [side, price, size])."""

    def __init__(self, orders: Sequence[tuple[Hashable, int, Any, Any]] = ()) -> None:
        super().__init__()
        self.orders: dict[Hashable, list[Any]] = {}
        for oid, side, price, size in orders:
            self.orders[oid] = [side, price, size]
            levels = self.sides[side]
            levels[price] = levels.get(price, 0) + size


def run_l2(ref: SortedDictL2, batches: Sequence[Sequence[L2Op]]) -> None:
    """Apply every level set; after each batch read the best bid and ask."""
    sides = ref.sides
    bids, asks = ref.book["bid"], ref.book["ask"]
    for batch in batches:
        for side, price, size in batch:
            if size:
                sides[side][price] = size
            else:
                sides[side].pop(price, None)
        bids.peekitem(-1)
        asks.peekitem(0)


def run_l3(ref: SortedDictL3, batches: Sequence[Sequence[L3Op]]) -> None:
    """Apply every order op to the orders dict and the level totals; read the touch per batch."""
    sides, orders = ref.sides, ref.orders
    bids, asks = ref.book["bid"], ref.book["ask"]
    for batch in batches:
        for op, oid, side, price, size in batch:
            if op == ADD:
                orders[oid] = [side, price, size]
                levels = sides[side]
                levels[price] = levels.get(price, 0) + size
                continue
            order = orders[oid]
            levels = sides[order[0]]
            if op != DELETE and size < order[2]:  # a partial cancel or fill
                order[2] -= size
                levels[order[1]] -= size
                continue
            del orders[oid]  # a delete, or a cancel/fill of everything left
            left = levels[order[1]] - order[2]
            if left:
                levels[order[1]] = left
            else:
                del levels[order[1]]
        bids.peekitem(-1)
        asks.peekitem(0)
