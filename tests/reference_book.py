"""A deliberately naive order book: the yardstick the real books are checked against.

Plain dicts and one arrival list; every read sorts and sums from scratch. It is slow on
purpose, so that it is obviously right: nothing is cached, nothing is updated in place
except the orders themselves. It only accepts valid streams (the tests keep them valid).
"""

from __future__ import annotations

from orderbook.events import Event, Kind, OrderId, Side
from orderbook.venues.lobster import ASK_EMPTY, BID_EMPTY

Level = tuple[int, int]


class ReferenceBook:
    """Both book types in one: L2 streams fill `level_sizes`, L3 streams fill `orders`."""

    def __init__(self, order_by_order: bool = True) -> None:
        self.order_by_order = order_by_order  # an L2 book learns of fills from level updates only
        self.orders: dict[OrderId, list] = {}  # id -> [side, price, size]
        self.arrivals: list[OrderId] = []  # time priority across the whole book
        self.level_sizes: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}

    def apply(self, e: Event) -> None:
        k = e.kind
        if k in (Kind.CANCEL, Kind.EXECUTE, Kind.DELETE) and not self.order_by_order:
            return
        if k == Kind.ADD:
            self.orders[e.order_id] = [e.side, e.price, e.size]
            self.arrivals.append(e.order_id)
        elif k in (Kind.CANCEL, Kind.EXECUTE):
            self.orders[e.order_id][2] -= e.size
            if self.orders[e.order_id][2] == 0:
                self._remove(e.order_id)
        elif k == Kind.DELETE:
            self._remove(e.order_id)
        elif k == Kind.REPLACE:
            side = self.orders[e.order_id][0]
            self._remove(e.order_id)
            self.orders[e.new_order_id] = [side, e.price, e.size]
            self.arrivals.append(e.new_order_id)  # a replacement loses its place
        elif k == Kind.CHANGE:
            self.orders[e.order_id][2] = e.size  # keeps its place
        elif k == Kind.LEVEL_SET:
            self.level_sizes[e.side][e.price] = e.size
        elif k in (Kind.CLEAR, Kind.SNAPSHOT_BEGIN):
            self.orders.clear()
            self.arrivals.clear()
            self.level_sizes = {Side.BID: {}, Side.ASK: {}}

    def _remove(self, order_id: OrderId) -> None:
        del self.orders[order_id]
        self.arrivals.remove(order_id)

    def levels(self, side: Side) -> list[Level]:
        """All non-empty levels of a side, best first."""
        totals: dict[int, int] = {p: s for p, s in self.level_sizes[side].items() if s}
        for order_side, price, size in self.orders.values():
            if order_side == side:
                totals[price] = totals.get(price, 0) + size
        return sorted(totals.items(), reverse=side == Side.BID)

    def best(self, side: Side) -> Level | None:
        levels = self.levels(side)
        return levels[0] if levels else None

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return self.levels(Side.BID)[:n], self.levels(Side.ASK)[:n]

    def depth(self, side: Side, k_ticks: int) -> int:
        levels = self.levels(side)
        if not levels:
            return 0
        return sum(size for price, size in levels if abs(price - levels[0][0]) <= k_ticks)

    def queue(self, side: Side, price: int) -> list[tuple[OrderId, int]]:
        return [(i, self.orders[i][2]) for i in self.arrivals if self.orders[i][:2] == [side, price]]

    def queue_position(self, order_id: OrderId) -> int:
        side, price, _ = self.orders[order_id]
        queue = self.queue(side, price)
        ids = [i for i, _ in queue]
        return sum(size for _, size in queue[: ids.index(order_id)])

    def lobster_row(self, n: int) -> list[int]:
        bids, asks = self.top(n)
        bids += [(BID_EMPTY, 0)] * (n - len(bids))
        asks += [(ASK_EMPTY, 0)] * (n - len(asks))
        return [x for i in range(n) for x in (*asks[i], *bids[i])]
