"""Limit order books: `L2Book` (size per price) and `L3Book` (orders by id, FIFO per price).

The surface is a pair of mappings, best level first (after bmoscon/orderbook):

    book.bids[price] -> size          book.asks[price] -> size
    book.bids.peekitem(0)             the best bid as (price, size)
    book.best_bid() / best_ask()      (price, size) or None
    book.top(n)                       ([(price, size)] bids, [(price, size)] asks)
    book.depth(Side.BID, k)           size within k ticks of the best bid
    book.crossed()                    best bid >= best ask
    book.apply(event)                 apply a normalized Event

`L3Book` adds `orders` (id -> Order), `queue_position(id)` and the per-order operations.
Prices are integer ticks and sizes integer lots throughout.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from enum import Enum
from itertools import islice

from sortedcontainers import SortedDict

from .errors import BookError, DuplicateOrder, UnknownOrder
from .events import Event, Kind, OrderId, Side

ASK_EMPTY = 9_999_999_999
BID_EMPTY = -9_999_999_999
"""LOBSTER's placeholders for an empty level in its orderbook file."""

Level = tuple[int, int]


class BookType(Enum):
    L2 = 2
    L3 = 3


class _Book:
    """What both book types share: the two sides as price -> size mappings."""

    book_type: BookType

    def __init__(self, venue: str = "", symbol: str = "") -> None:
        self.venue = venue
        self.symbol = symbol
        self.bids: SortedDict = SortedDict(operator.neg)  # best (highest) first
        self.asks: SortedDict = SortedDict()  # best (lowest) first

    def side(self, side: Side, seq: int | None = None) -> SortedDict:
        if side == Side.BID:
            return self.bids
        if side == Side.ASK:
            return self.asks
        raise BookError(f"event has no side ({side!r})", venue=self.venue, symbol=self.symbol, seq=seq)

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(0) if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0) if self.asks else None

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return list(islice(self.bids.items(), n)), list(islice(self.asks.items(), n))

    def depth(self, side: Side, k_ticks: int) -> int:
        """Total size within `k_ticks` of the best price on `side` (k=0: the best level)."""
        levels = self.side(side)
        if not levels:
            return 0
        best = levels.peekitem(0)[0]
        total = 0
        for price, size in levels.items():
            if abs(price - best) > k_ticks:
                break
            total += size
        return total

    def mid2(self) -> int | None:
        """Twice the mid price, so it stays an integer number of ticks."""
        if not self.bids or not self.asks:
            return None
        return self.bids.peekitem(0)[0] + self.asks.peekitem(0)[0]

    def spread(self) -> int | None:
        if not self.bids or not self.asks:
            return None
        return self.asks.peekitem(0)[0] - self.bids.peekitem(0)[0]

    def crossed(self) -> bool:
        return bool(self.bids and self.asks and self.bids.peekitem(0)[0] >= self.asks.peekitem(0)[0])

    def lobster_row(self, levels: int) -> list[int]:
        """Top `levels` in LOBSTER's orderbook-file layout: ask px, ask size, bid px, bid size per level."""
        bids, asks = self.top(levels)
        row: list[int] = []
        for i in range(levels):
            row.extend(asks[i] if i < len(asks) else (ASK_EMPTY, 0))
            row.extend(bids[i] if i < len(bids) else (BID_EMPTY, 0))
        return row

    def to_dict(self) -> dict[str, dict[int, int]]:
        return {"bids": dict(self.bids), "asks": dict(self.asks)}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.venue}:{self.symbol} bid={self.best_bid()} ask={self.best_ask()})"


class L2Book(_Book):
    """Aggregated size per price level, as L2 venues (Binance, Coinbase level2, Kraken) send it."""

    book_type = BookType.L2

    def set_level(self, side: Side, price: int, size: int, seq: int | None = None) -> None:
        levels = self.side(side, seq)
        if size < 0:
            raise BookError(f"negative size {size} at {price}", venue=self.venue, symbol=self.symbol, seq=seq)
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size

    def apply(self, e: Event) -> None:
        k = e.kind
        if k == Kind.LEVEL_SET:
            self.set_level(e.side, e.price, e.size, e.seq)
        elif k in (Kind.SNAPSHOT_BEGIN, Kind.CLEAR):
            self.clear()
        elif k in (Kind.TRADE, Kind.SNAPSHOT_END, Kind.STATUS, Kind.EXECUTE):
            pass  # an L2 book learns of fills from the level updates that follow them
        else:
            raise BookError(f"{k.name} needs an order-by-order book", venue=self.venue, symbol=self.symbol, seq=e.seq)


@dataclass(slots=True)
class Order:
    side: Side
    price: int
    size: int


class L3Book(_Book):
    """Every resting order by id, FIFO per price level; `bids`/`asks` hold the level totals."""

    book_type = BookType.L3

    def __init__(self, venue: str = "", symbol: str = "") -> None:
        super().__init__(venue, symbol)
        self.orders: dict[OrderId, Order] = {}
        # price -> ids in arrival order (dicts keep insertion order: the FIFO queue)
        self._queues: dict[Side, dict[int, dict[OrderId, None]]] = {Side.BID: {}, Side.ASK: {}}

    def _err(self, cls: type[BookError], msg: str, seq: int | None) -> BookError:
        return cls(msg, venue=self.venue, symbol=self.symbol, seq=seq)

    def add(self, order_id: OrderId, side: Side, price: int, size: int, seq: int | None = None) -> None:
        if order_id in self.orders:
            raise self._err(DuplicateOrder, f"order {order_id} is already resting", seq)
        if size <= 0:
            raise self._err(BookError, f"order {order_id} added with size {size}", seq)
        levels = self.side(side, seq)
        self.orders[order_id] = Order(side, price, size)
        self._queues[side].setdefault(price, {})[order_id] = None
        levels[price] = levels.get(price, 0) + size

    def reduce(self, order_id: OrderId, size: int, seq: int | None = None) -> Order:
        """Take `size` off a resting order (cancel or execution); remove it when nothing is left.

        Reducing by more than remains removes the order and raises, so the book follows the
        venue (which has removed the order) and the inconsistency is still reported.
        """
        o = self.orders.get(order_id)
        if o is None:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", seq)
        if size <= 0:
            raise self._err(BookError, f"order {order_id} reduced by {size}", seq)
        if size >= o.size:
            over = size - o.size
            self.delete(order_id, seq)
            if over:
                raise self._err(BookError, f"order {order_id} reduced by {size}, {over} more than it had", seq)
            return o
        o.size -= size
        self.side(o.side)[o.price] -= size
        return o

    def delete(self, order_id: OrderId, seq: int | None = None) -> Order:
        o = self.orders.pop(order_id, None)
        if o is None:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", seq)
        levels = self.side(o.side)
        queue = self._queues[o.side][o.price]
        del queue[order_id]
        if not queue:
            del self._queues[o.side][o.price]
            del levels[o.price]
        else:
            levels[o.price] -= o.size
        return o

    def replace(self, order_id: OrderId, new_id: OrderId, price: int, size: int, seq: int | None = None) -> None:
        """Cancel-replace: the new order joins the back of the queue at its price, same side."""
        if order_id not in self.orders:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", seq)
        if new_id in self.orders and new_id != order_id:
            raise self._err(DuplicateOrder, f"replacement id {new_id} is already resting", seq)
        if size <= 0:
            raise self._err(BookError, f"order {order_id} replaced with size {size}", seq)
        old = self.delete(order_id, seq)
        self.add(new_id, old.side, price, size, seq)

    def change(self, order_id: OrderId, size: int, seq: int | None = None) -> None:
        """Resize in place, keeping queue priority (Coinbase `change`). Venues remove orders
        with a delete (`done`), never a change to zero: a size <= 0 is an error."""
        o = self.orders.get(order_id)
        if o is None:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", seq)
        if size <= 0:
            raise self._err(BookError, f"order {order_id} changed to size {size}", seq)
        self.side(o.side)[o.price] += size - o.size
        o.size = size

    def queue_position(self, order_id: OrderId) -> int:
        """Size resting ahead of the order at its price level (0: first in the queue)."""
        o = self.orders.get(order_id)
        if o is None:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", None)
        ahead = 0
        for oid in self._queues[o.side][o.price]:
            if oid == order_id:
                return ahead
            ahead += self.orders[oid].size
        raise AssertionError("order missing from its own queue")

    def queue(self, side: Side, price: int) -> list[tuple[OrderId, int]]:
        """The orders at a level in time priority, as (id, size)."""
        return [(oid, self.orders[oid].size) for oid in self._queues[side].get(price, ())]

    def clear(self) -> None:
        super().clear()
        self.orders.clear()
        self._queues = {Side.BID: {}, Side.ASK: {}}

    def apply(self, e: Event) -> None:
        k = e.kind
        if k == Kind.ADD:
            self.add(e.order_id, e.side, e.price, e.size, e.seq)
        elif k in (Kind.CANCEL, Kind.EXECUTE):
            self.reduce(e.order_id, e.size, e.seq)
        elif k == Kind.DELETE:
            self.delete(e.order_id, e.seq)
        elif k == Kind.REPLACE:
            self.replace(e.order_id, e.new_order_id, e.price, e.size, e.seq)
        elif k == Kind.CHANGE:
            self.change(e.order_id, e.size, e.seq)
        elif k in (Kind.SNAPSHOT_BEGIN, Kind.CLEAR):
            self.clear()
        elif k in (Kind.TRADE, Kind.SNAPSHOT_END, Kind.STATUS):
            pass
        else:
            raise BookError(
                f"{k.name} does not apply to an order-by-order book", venue=self.venue, symbol=self.symbol, seq=e.seq
            )


Book = L2Book | L3Book
