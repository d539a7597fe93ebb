"""Seeded random ITCH 5.0 streams, built with the encoder: for the ITCH and LOBSTER tests and
the demo. Zero-intelligence flow (uniform choices, no state dependence): the market simulator
of the simulator issue supersedes it for anything that needs realistic statistics.

A stream opens like a NASDAQ day: S 'O' (start of messages), one R per stock, S 'S' (start
of system hours), optionally some pre-open orders, S 'Q' (start of market hours) at 09:30,
then random order flow until before 16:00, S 'M' and S 'C'. The flow uses every message type
that touches a book or prints (A F E C X D U P Q B H) plus the administrative types, and a
few E/X/D/U with references that never existed (`Stream.unknown` holds their indices).

The books stay sane: sizes are positive, an execution or cancel never exceeds what rests,
every X leaves something behind, and a new bid (ask) is always priced below the best ask
(above the best bid), so no book ever crosses.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from orderbook.events import NS_PER_S
from orderbook.venues.itch import encode

SEC = NS_PER_S
OPEN_NS = 34_200 * SEC  # 09:30
CLOSE_NS = 57_600 * SEC  # 16:00
TICK = 100  # one cent in Price(4)
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
DATE = dt.date(2019, 12, 30)


@dataclass
class Stream:
    messages: list[bytes]
    symbols: tuple[str, ...]
    date: dt.date = DATE
    unknown: list[int] = field(default_factory=list)  # 0-based indices of messages with unknown references

    def filename(self) -> str:
        """A NASDAQ day-file name from which itch-book infers the session date."""
        return f"{self.date:%m%d%Y}.NASDAQ_ITCH50"


@dataclass
class _Order:
    locate: int
    side: str
    price: int
    shares: int


class _Gen:
    def __init__(self, seed: int, symbols: tuple[str, ...]) -> None:
        self.rng = random.Random(seed)
        self.symbols = symbols
        self.msgs: list[bytes] = []
        self.unknown: list[int] = []
        self.ts = 0
        self.ref = 1000 + self.rng.randrange(1000)
        self.match = 1
        self.orders: dict[int, _Order] = {}
        self.center = {i + 1: self.rng.randrange(2_000, 50_000) * TICK for i in range(len(symbols))}
        self.halted: dict[int, bool] = dict.fromkeys(self.center, False)

    # --- plumbing ---------------------------------------------------------------------------------

    def emit(self, msg_type: str, locate: int = 0, **fields: object) -> None:
        self.msgs.append(encode(msg_type, locate=locate, tracking=self.rng.randrange(3), timestamp=self.ts, **fields))

    def tick(self, lo_ns: int = 1_000, hi_ns: int = 2_000_000) -> None:
        self.ts += self.rng.randint(lo_ns, hi_ns)

    def best(self, locate: int, side: str) -> int | None:
        prices = [o.price for o in self.orders.values() if o.locate == locate and o.side == side]
        if not prices:
            return None
        return max(prices) if side == "B" else min(prices)

    def price_for(self, locate: int, side: str) -> int:
        """A price on `side` that cannot cross the other side."""
        c = self.center[locate]
        off = self.rng.choice((1, 1, 2, 2, 3, 4, 5, 7, 10)) * TICK
        if side == "B":
            p = c - off
            ask = self.best(locate, "S")
            return min(p, ask - TICK) if ask is not None else p
        p = c + off
        bid = self.best(locate, "B")
        return max(p, bid + TICK) if bid is not None else p

    def shares(self) -> int:
        return self.rng.choice((1, 50, 100, 100, 200, 300, 500, 1000)) + self.rng.randrange(0, 3) * 100

    def stock(self, locate: int) -> str:
        return self.symbols[locate - 1]

    def pick(self, locate: int) -> int | None:
        refs = [r for r, o in self.orders.items() if o.locate == locate]
        return self.rng.choice(refs) if refs else None

    # --- messages ---------------------------------------------------------------------------------

    def add(self, locate: int, side: str | None = None) -> None:
        side = side or self.rng.choice("BS")
        self.ref += self.rng.randint(1, 3)
        o = _Order(locate, side, self.price_for(locate, side), self.shares())
        self.orders[self.ref] = o
        fields = {
            "order_ref": self.ref,
            "side": side,
            "shares": o.shares,
            "stock": self.stock(locate),
            "price": o.price,
        }
        if self.rng.random() < 0.2:
            self.emit("F", locate, mpid=self.rng.choice(("GSCO", "MSCO", "NITE", "VIRT")), **fields)
        else:
            self.emit("A", locate, **fields)

    def execute(self, locate: int, ref: int) -> None:
        o = self.orders[ref]
        n = o.shares if self.rng.random() < 0.5 else self.rng.randint(1, o.shares)
        self.match += 1
        if self.rng.random() < 0.3:
            printable = self.rng.choice("YN")
            price = o.price + self.rng.choice((0, 0, -1, 1)) * TICK
            self.emit("C", locate, order_ref=ref, shares=n, match=self.match, printable=printable, price=price)
        else:
            self.emit("E", locate, order_ref=ref, shares=n, match=self.match)
        self._reduce(ref, n)

    def _reduce(self, ref: int, n: int) -> None:
        o = self.orders[ref]
        o.shares -= n
        if o.shares == 0:
            del self.orders[ref]

    def cancel(self, locate: int, ref: int) -> None:
        o = self.orders[ref]
        if o.shares < 2:
            return self.delete(locate, ref)
        n = self.rng.randint(1, o.shares - 1)
        self.emit("X", locate, order_ref=ref, shares=n)
        self._reduce(ref, n)
        return None

    def delete(self, locate: int, ref: int) -> None:
        self.emit("D", locate, order_ref=ref)
        del self.orders[ref]

    def replace(self, locate: int, ref: int) -> None:
        old = self.orders.pop(ref)
        self.ref += self.rng.randint(1, 3)
        price = self.price_for(locate, old.side)
        shares = self.shares()
        self.orders[self.ref] = _Order(locate, old.side, price, shares)
        self.emit("U", locate, order_ref=ref, new_order_ref=self.ref, shares=shares, price=price)

    def unknown_ref(self, locate: int) -> None:
        self.unknown.append(len(self.msgs))
        ghost = 10**12 + self.rng.randrange(10**6)
        t = self.rng.choice("EXDU")
        if t == "E":
            self.emit("E", locate, order_ref=ghost, shares=100, match=self.match)
        elif t == "X":
            self.emit("X", locate, order_ref=ghost, shares=100)
        elif t == "D":
            self.emit("D", locate, order_ref=ghost)
        else:
            self.emit("U", locate, order_ref=ghost, new_order_ref=ghost + 1, shares=100, price=self.center[locate])

    def trade(self, locate: int) -> None:
        self.match += 1
        t = self.rng.choice("PPPQB")
        stock, c = self.stock(locate), self.center[locate]
        if t == "P":
            self.emit("P", locate, side="B", shares=self.shares(), stock=stock, price=c, match=self.match)
        elif t == "Q":
            cross = self.rng.choice("OCHI")
            self.emit("Q", locate, shares=self.shares() * 10, stock=stock, price=c, match=self.match, cross_type=cross)
        else:
            self.emit("B", locate, match=max(1, self.match - self.rng.randint(1, 5)))

    def status(self, locate: int) -> None:
        state = "T" if self.halted[locate] else self.rng.choice("HPQ")
        self.halted[locate] = state != "T"
        self.emit("H", locate, stock=self.stock(locate), trading_state=state, reason="T1" if state == "H" else "")

    def admin(self, locate: int) -> None:
        stock = self.stock(locate)
        t = self.rng.choice("LVWKJhYINO")
        fields: dict[str, object] = {
            "L": {"mpid": "NITE", "stock": stock, "primary_market_maker": "Y", "market_maker_mode": "N"},
            "V": {"level1": 1, "level2": 2, "level3": 3},
            "W": {"breached_level": "1"},
            "K": {"stock": stock, "release_time": 34_500, "release_qualifier": "A", "ipo_price": 1},
            "J": {"stock": stock, "reference_price": 1, "upper_price": 2, "lower_price": 1},
            "h": {"stock": stock, "market_code": "Q", "halt_action": "T"},
            "Y": {"stock": stock, "reg_sho_action": "0"},
            "I": {"paired_shares": 5, "stock": stock, "imbalance_direction": "B", "cross_type": "C"},
            "N": {"stock": stock, "interest_flag": "N"},
            "O": {"stock": stock, "open_eligibility": "N"},
        }[t]
        self.emit(t, 0 if t in "VW" else locate, **fields)  # type: ignore[arg-type]

    def step(self) -> None:
        locate = self.rng.choice(list(self.center))
        if self.rng.random() < 0.02:
            self.center[locate] += self.rng.choice((-1, 1)) * TICK
        r = self.rng.random()
        ref = self.pick(locate)
        book_thin = sum(1 for o in self.orders.values() if o.locate == locate) < 6
        if ref is None or r < 0.30 or (book_thin and r < 0.6):
            self.add(locate)
        elif r < 0.42:
            self.execute(locate, ref)
        elif r < 0.52:
            self.cancel(locate, ref)
        elif r < 0.70:
            self.delete(locate, ref)
        elif r < 0.82:
            self.replace(locate, ref)
        elif r < 0.88:
            self.trade(locate)
        elif r < 0.90:
            self.status(locate)
        elif r < 0.92:
            self.admin(locate)
        elif r < 0.94:
            self.unknown_ref(locate)
        else:
            self.add(locate)


def itch_day_stream(
    seed: int,
    n: int = 1500,
    symbols: tuple[str, ...] = SYMBOLS[:3],
    *,
    preopen_orders: bool = False,
    date: dt.date = DATE,
) -> Stream:
    """About `n` order-flow messages after 09:30 over `symbols` (locates 1..k), deterministic in `seed`.

    With `preopen_orders` some orders are added between 09:00 and 09:30; without it every
    order of the day is entered during the regular session (what a LOBSTER export can see).
    """
    g = _Gen(seed, symbols)
    g.ts = 3 * 3600 * SEC + g.rng.randrange(SEC)
    g.emit("S", event_code="O")
    for locate, stock in enumerate(symbols, start=1):
        g.tick()
        g.emit("R", locate, stock=stock, market_category="Q", financial_status="N", round_lot_size=100)
    g.ts = 4 * 3600 * SEC
    g.emit("S", event_code="S")
    if preopen_orders:
        g.ts = 9 * 3600 * SEC
        for _ in range(5 * len(symbols)):
            g.tick()
            g.add(g.rng.choice(list(g.center)))
    g.ts = OPEN_NS
    g.emit("S", event_code="Q")
    for locate in g.center:  # depth on both sides from the start
        for side in "BS" * 4:
            g.tick()
            g.add(locate, side)
    gap = max(1_000, (CLOSE_NS - OPEN_NS - 10 * SEC) // max(n, 1))
    for _ in range(n):
        g.tick(1, gap)
        g.step()
    g.ts = CLOSE_NS
    g.emit("S", event_code="M")
    g.ts += SEC
    g.emit("S", event_code="C")
    return Stream(g.msgs, tuple(symbols), date, g.unknown)
