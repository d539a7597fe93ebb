"""Limit order books: `L2Book` (size per price) and `L3Book` (orders by id, FIFO per price).

The surface is a pair of mappings, best level first (after bmoscon/orderbook):

    book.bids[price] -> size          book.asks[price] -> size
    book.bids.peekitem(0)             the best bid as (price, size)
    book.best_bid() / best_ask()      (price, size) or None
    book.top(n)                       ([(price, size)] bids, [(price, size)] asks)
    book.depth(Side.BID, k)           size within k price units of the best bid
    book.crossed()                    best bid >= best ask
    book.apply(event)                 apply a normalized Event

`L3Book` adds `orders` (id -> Order), `queue_position(id)` and the per-order operations.
Prices are integers in the venue's price unit and sizes integers in lots (orderbook/events.py).
Both sides are sortedcontainers SortedDicts: `asks` a plain one, `bids` a `DescendingSortedDict` (highest price first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sortedcontainers import SortedDict, SortedList
from sortedcontainers.sorteddict import SortedItemsView, SortedKeysView, SortedValuesView

from .errors import BookError, DuplicateOrder, UnknownOrder
from .events import Event, Kind, OrderId, Side

Level = tuple[int, int]

# Kinds as plain ints for the hot paths: reading `Kind.ADD` goes through the enum metaclass
# (~80 ns on CPython 3.11, as much as the rest of a level update), comparing ints does not.
_ADD, _CANCEL, _DELETE, _EXECUTE, _REPLACE, _CHANGE = (
    int(k) for k in (Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE, Kind.REPLACE, Kind.CHANGE)
)
_LEVEL_SET = int(Kind.LEVEL_SET)
_RESETS = frozenset(int(k) for k in (Kind.SNAPSHOT_BEGIN, Kind.CLEAR))
_L2_IGNORED = frozenset(int(k) for k in (Kind.TRADE, Kind.SNAPSHOT_END, Kind.STATUS, Kind.EXECUTE))
_L3_IGNORED = frozenset(int(k) for k in (Kind.TRADE, Kind.SNAPSHOT_END, Kind.STATUS))

# Level writes where the caller already knows whether the price is there: overwrite with
# `_set_existing(levels, price, size)`, open with `levels._list_add(price)` + `_set_existing`,
# close with `levels._list_remove(price)` + `_del_existing`. That is what SortedDict's
# __setitem__/pop/__delitem__ do, less their Python call and membership test (~10% of an update).
_set_existing = dict.__setitem__
_del_existing = dict.__delitem__


class BookType(Enum):
    L2 = 2
    L3 = 3


class _Book:
    """What both book types share: the two sides as price -> size mappings."""

    book_type: BookType

    def __init__(self, venue: str = "", symbol: str = "") -> None:
        self.venue = venue
        self.symbol = symbol
        self.bids: SortedDict = DescendingSortedDict()  # best (highest) first
        self.asks: SortedDict = SortedDict()  # best (lowest) first
        # side -> levels by one dict lookup (Side.NONE is absent): comparing with `Side.BID`
        # costs an enum attribute read per call
        self._levels: dict[int, SortedDict] = {Side.BID: self.bids, Side.ASK: self.asks}

    def side(self, side: Side, seq: int | None = None) -> SortedDict:
        levels = self._levels.get(side)
        if levels is None:
            raise BookError(f"event has no side ({side!r})", venue=self.venue, symbol=self.symbol, seq=seq)
        return levels

    def best_bid(self) -> Level | None:
        bids = self.bids
        if not bids:
            return None
        price = bids._list[-1]  # the highest key of the ascending store, without peekitem's call
        return price, bids[price]

    def best_ask(self) -> Level | None:
        asks = self.asks
        if not asks:
            return None
        price = asks._list[0]
        return price, asks[price]

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        # the sides' own islice (slices of SortedList's sublists) and dict lookups: the ItemsView's generic
        # __iter__ yields in Python one level at a time (a tenth of the compiled builders' replay of Coinbase)
        bids, asks = self.bids, self.asks
        return [(p, bids[p]) for p in bids.islice(0, n)], [(p, asks[p]) for p in asks.islice(0, n)]

    def depth(self, side: Side, k_units: int) -> int:
        """Total size within `k_units` price units of the best price on `side` (k=0: the best level)."""
        levels = self.side(side)
        if not levels:
            return 0
        best = levels.peekitem(0)[0]
        total = 0
        for price, size in levels.items():
            if abs(price - best) > k_units:
                break
            total += size
        return total

    def mid2(self) -> int | None:
        """Twice the mid price, so it stays an integer in price units."""
        if not self.bids or not self.asks:
            return None
        return self.bids.peekitem(0)[0] + self.asks.peekitem(0)[0]

    def spread(self) -> int | None:
        if not self.bids or not self.asks:
            return None
        return self.asks.peekitem(0)[0] - self.bids.peekitem(0)[0]

    def crossed(self) -> bool:
        # every feed asks this after every message: read the ends of the sorted key lists directly
        bid_keys, ask_keys = self.bids._list, self.asks._list
        return bool(bid_keys and ask_keys and bid_keys[-1] >= ask_keys[0])

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
        levels = self._levels.get(side)
        if levels is None or size < 0:
            self._reject_level(side, price, size, seq)
        elif price in levels:
            if size:
                _set_existing(levels, price, size)
            else:
                levels._list_remove(price)
                _del_existing(levels, price)
        elif size:
            levels._list_add(price)
            _set_existing(levels, price, size)

    def _reject_level(self, side: Side, price: int, size: int, seq: int | None) -> None:
        self.side(side, seq)  # raises for a missing side
        raise BookError(f"negative size {size} at {price}", venue=self.venue, symbol=self.symbol, seq=seq)

    def apply(self, e: Event) -> None:
        k = e.kind
        if k == _LEVEL_SET:
            # set_level inlined: the extra call would cost a sixth of an update
            levels, price, size = self._levels.get(e.side), e.price, e.size
            if levels is None or size < 0:
                self._reject_level(e.side, price, size, e.seq)
            elif price in levels:
                if size:
                    _set_existing(levels, price, size)
                else:
                    levels._list_remove(price)
                    _del_existing(levels, price)
            elif size:
                levels._list_add(price)
                _set_existing(levels, price, size)
        elif k in _RESETS:
            self.clear()
        elif k in _L2_IGNORED:
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
        # price -> ids in arrival order (dicts keep insertion order: the FIFO queue); a price has
        # a queue exactly when it has a level
        self._queues: dict[int, dict[int, dict[OrderId, None]]] = {Side.BID: {}, Side.ASK: {}}

    def _err(self, cls: type[BookError], msg: str, seq: int | None) -> BookError:
        return cls(msg, venue=self.venue, symbol=self.symbol, seq=seq)

    def add(self, order_id: OrderId, side: Side, price: int, size: int, seq: int | None = None) -> None:
        orders, queues = self.orders, self._queues.get(side)
        if order_id in orders or size <= 0 or queues is None:
            self._reject_add(order_id, side, size, seq)
        orders[order_id] = Order(side, price, size)
        levels = self._levels[side]
        queue = queues.get(price)
        if queue is None:
            queues[price] = {order_id: None}
            levels._list_add(price)
            _set_existing(levels, price, size)
        else:
            queue[order_id] = None
            _set_existing(levels, price, levels[price] + size)

    def _reject_add(self, order_id: OrderId, side: Side, size: int, seq: int | None) -> None:
        if order_id in self.orders:
            raise self._err(DuplicateOrder, f"order {order_id} is already resting", seq)
        if size <= 0:
            raise self._err(BookError, f"order {order_id} added with size {size}", seq)
        self.side(side, seq)  # raises for a missing side

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
        levels = self._levels[o.side]
        _set_existing(levels, o.price, levels[o.price] - size)
        return o

    def delete(self, order_id: OrderId, seq: int | None = None) -> Order:
        o = self.orders.pop(order_id, None)
        if o is None:
            raise self._err(UnknownOrder, f"order {order_id} is not in the book", seq)
        side, price = o.side, o.price
        levels, queues = self._levels[side], self._queues[side]
        queue = queues[price]
        del queue[order_id]
        if queue:
            _set_existing(levels, price, levels[price] - o.size)
        else:
            del queues[price]
            levels._list_remove(price)
            _del_existing(levels, price)
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
        levels = self._levels[o.side]
        _set_existing(levels, o.price, levels[o.price] + size - o.size)
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
        for queues in self._queues.values():
            queues.clear()

    def apply(self, e: Event) -> None:
        k = e.kind
        if k == _ADD:
            self.add(e.order_id, e.side, e.price, e.size, e.seq)
        elif k == _DELETE:
            self.delete(e.order_id, e.seq)
        elif k in (_CANCEL, _EXECUTE):
            self.reduce(e.order_id, e.size, e.seq)
        elif k == _REPLACE:
            self.replace(e.order_id, e.new_order_id, e.price, e.size, e.seq)
        elif k == _CHANGE:
            self.change(e.order_id, e.size, e.seq)
        elif k in _RESETS:
            self.clear()
        elif k in _L3_IGNORED:
            pass
        else:
            raise BookError(
                f"{k.name} does not apply to an order-by-order book", venue=self.venue, symbol=self.symbol, seq=e.seq
            )


Book = L2Book | L3Book


# ------------------------------------------------------------------ the bid side's container


def _keys_at(keys: SortedList, index: int | slice) -> Any:
    """Key(s) at `index` counted from the highest key: position i is -1 - i of the ascending list."""
    if isinstance(index, slice):
        return [keys[-1 - i] for i in range(len(keys))[index]]
    return keys[-1 - index]


def _del_at(view: Any, index: int | slice) -> None:
    keys = _keys_at(view._mapping._list, index)
    for key in keys if isinstance(index, slice) else (keys,):
        del view._mapping[key]


class _DescendingKeysView(SortedKeysView):
    __slots__ = ()
    __delitem__ = _del_at

    def __getitem__(self, index: Any) -> Any:
        return _keys_at(self._mapping._list, index)


class _DescendingItemsView(SortedItemsView):
    __slots__ = ()
    __delitem__ = _del_at

    def __getitem__(self, index: Any) -> Any:
        mapping = self._mapping
        keys = _keys_at(mapping._list, index)
        if isinstance(index, slice):
            return [(key, mapping[key]) for key in keys]
        return keys, mapping[keys]


class _DescendingValuesView(SortedValuesView):
    __slots__ = ()
    __delitem__ = _del_at

    def __getitem__(self, index: Any) -> Any:
        mapping = self._mapping
        keys = _keys_at(mapping._list, index)
        if isinstance(index, slice):
            return [mapping[key] for key in keys]
        return mapping[keys]


class DescendingSortedDict(SortedDict):
    """A SortedDict whose order is highest key first: the bid side.

    Why not `SortedDict(operator.neg)`: a key function costs a Python call on every insert and
    removal, and SortedKeyList keeps a second list of keys in step. Here the keys are stored
    ascending with no key function, so lookups and writes by price are the inherited ones, and
    only the positional API is mirrored: iteration, `keys()/items()/values()` (and their `[i]`),
    `peekitem`/`popitem`, `index`, `bisect*`, `irange`, `islice`. Positions count from the
    highest key (`peekitem(0)` is the best bid, `popitem(-1)` the worst), and `irange(a, b)`
    takes its bounds in iteration order (a >= b), as `SortedDict(operator.neg)` did.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SortedDict binds these to its ascending list on the instance: drop them so that the
        # mirrored methods of this class are the ones found.
        for name in ("bisect_left", "bisect", "bisect_right", "index", "irange", "islice"):
            delattr(self, name)

    def __iter__(self) -> Iterator[Any]:
        return self._list_reversed()

    def __reversed__(self) -> Iterator[Any]:
        return self._list_iter()

    def keys(self) -> _DescendingKeysView:  # type: ignore[override]
        return _DescendingKeysView(self)

    def items(self) -> _DescendingItemsView:  # type: ignore[override]
        return _DescendingItemsView(self)

    def values(self) -> _DescendingValuesView:  # type: ignore[override]
        return _DescendingValuesView(self)

    def peekitem(self, index: int = -1) -> tuple[Any, Any]:
        key = self._list[-1 - index]
        return key, self[key]

    def popitem(self, index: int = -1) -> tuple[Any, Any]:
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = self._list_pop(-1 - index)
        return key, dict.pop(self, key)

    def index(self, value: Any, start: int | None = None, stop: int | None = None) -> int:
        pos = len(self) - 1 - self._list.index(value)
        lo, hi, _ = slice(start, stop).indices(len(self))
        if not lo <= pos < hi:
            raise ValueError(f"{value!r} is not in range")
        return pos

    def bisect_left(self, value: Any) -> int:
        return len(self) - self._list.bisect_right(value)

    def bisect_right(self, value: Any) -> int:
        return len(self) - self._list.bisect_left(value)

    bisect = bisect_right

    def irange(
        self,
        minimum: Any = None,
        maximum: Any = None,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[Any]:
        return self._list.irange(maximum, minimum, (inclusive[1], inclusive[0]), not reverse)

    def islice(self, start: int | None = None, stop: int | None = None, reverse: bool = False) -> Iterator[Any]:
        n = len(self)
        lo, hi, _ = slice(start, stop).indices(n)
        if lo >= hi:
            return iter(())
        return self._list.islice(n - hi, n - lo, not reverse)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({{{', '.join(f'{k!r}: {v!r}' for k, v in self.items())}}})"
