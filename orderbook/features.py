"""Market-microstructure features of a book and of its event stream (floats start here).

Books hold integer prices in the venue's own units (Binance: 1e-8 of the quote currency,
ITCH/LOBSTER: 1e-4 dollar) and integer sizes in lots. `tick` is the instrument's tick size
in those units (a venue's fixed one is its `Feed.tick`, else `Feed.window_tick` infers it from the
book): spreads and price offsets are reported in ticks (`spread / tick`).

Functions of one book: `mid`, `spread_ticks`, `microprice`, `depth_levels`,
`queue_imbalance`. Of a stream: `MultiLevelOFI` (Cont, Kukanov & Stoikov 2014; Xu, Gould &
Howison 2019), `TradeClassifier` (aggressor flags, else Lee & Ready 1991), and
`FeatureState`, which folds both into one fixed-length float32 row per message with the
columns named in `FEATURE_NAMES` (see `feature_names` for other level settings).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice
from math import gcd
from typing import TypeVar

import numpy as np

from .book import Book
from .events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side

Level = tuple[int, int]
_T = TypeVar("_T")

FILL_VALUE = 0.0
"""What a feature that cannot be computed (empty or one-sided book) holds; `valid` says so."""

# Which events count towards which intensity (see `FeatureState`).
MESSAGE_KINDS = frozenset(
    {Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE, Kind.REPLACE, Kind.LEVEL_SET, Kind.TRADE, Kind.CHANGE}
)
CANCEL_KINDS = frozenset({Kind.CANCEL, Kind.DELETE})
TRADE_KINDS = frozenset({Kind.EXECUTE, Kind.TRADE})
_RESET_KINDS = frozenset({Kind.SNAPSHOT_BEGIN, Kind.CLEAR})
_BOOK_NEUTRAL_KINDS = frozenset({Kind.TRADE, Kind.STATUS, Kind.SNAPSHOT_END})  # leave the book as it is
_PRICED_KINDS = frozenset({Kind.LEVEL_SET, Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE})  # act at e.price

_NO_BID = (-math.inf, 0)  # a missing level: worse than any price, empty
_NO_ASK = (math.inf, 0)


# --------------------------------------------------------------------------- one book


def mid(book: Book) -> float | None:
    """(P_b + P_a) / 2 in price units; None unless both sides have a level."""
    m2 = book.mid2()
    return None if m2 is None else m2 / 2


def spread_ticks(book: Book, tick: int = 1) -> float | None:
    """(P_a - P_b) / tick: the quoted spread in ticks; None unless both sides have a level."""
    s = book.spread()
    return None if s is None else s / tick


def _microprice(pb: float, qb: float, pa: float, qa: float) -> float:
    return (pb * qa + pa * qb) / (qa + qb)


def microprice(book: Book) -> float | None:
    """The size-weighted mid (P_b*Q_a + P_a*Q_b) / (Q_a + Q_b) at the top of the book.

    It leans towards the side with the smaller queue, the one more likely to be depleted
    first. Stoikov (2018), "The micro-price: a high-frequency estimator of future prices",
    starts from this weighted mid (and shows it is a noisy estimate of his micro-price);
    it always lies in [P_b, P_a]. None unless both sides have a level.
    """
    bb, ba = book.best_bid(), book.best_ask()
    if bb is None or ba is None:
        return None
    return _microprice(bb[0], bb[1], ba[0], ba[1])


def depth_levels(book: Book, side: Side, levels: int) -> int:
    """Sum of the sizes of the best `levels` price levels on `side` (fewer if the book is thinner).

    Counted in levels, not in price units (`Book.depth` counts within k price units of the best).
    """
    return sum(size for _, size in islice(book.side(side).items(), levels))


def _queue_imbalance(qb: float, qa: float) -> float:
    total = qb + qa
    return (qb - qa) / total if total > 0 else 0.0


def queue_imbalance(book: Book) -> float | None:
    """(Q_b - Q_a) / (Q_b + Q_a) at the best levels, in [-1, 1].

    Cartea, Jaimungal & Penalva (2015), Algorithmic and High-Frequency Trading, ch. 4;
    Gould & Bonart (2016), "Queue imbalance as a one-tick-ahead price predictor in a limit
    order book". A missing side counts as an empty queue (a one-sided book gives +-1);
    None only for an empty book.
    """
    bb, ba = book.best_bid(), book.best_ask()
    if bb is None and ba is None:
        return None
    return _queue_imbalance(bb[1] if bb else 0, ba[1] if ba else 0)


def infer_tick(prices: Iterable[int], max_tick: int | None = None) -> int:
    """The tick size as the gcd of the differences between observed prices, at least 1.

    Caveats: it is only an upper bound of the true tick that tightens as more distinct
    prices are seen (a few quotes that all sit on multiples of 10 ticks give 10x the tick),
    so feed it many resting-order prices (`chain(book.bids, book.asks)` of a deep book).
    Prints off the quote grid (midpoint crosses at half a cent, sub-penny executions) pull
    it down: leave trades out. `max_tick` clips the estimate. Prefer the venue's published
    tick when there is one (Binance exchangeInfo PRICE_FILTER, the ITCH price rule).
    """
    first: int | None = None
    g = 0
    for p in prices:
        if first is None:
            first = p
        else:
            g = gcd(g, abs(p - first))
    g = max(g, 1)
    return min(g, max_tick) if max_tick is not None else g


# --------------------------------------------------------------------------- order-flow imbalance


def _copy_lists(obj: _T) -> _T:
    """A shallow copy of `obj` with its list attributes copied too: the copy of a part of the feature state
    whose lists hold numbers, strings and tuples of them (the other parts' copies are the caller's)."""
    out = copy.copy(obj)
    for name, value in vars(obj).items():
        if isinstance(value, list):
            setattr(out, name, value.copy())
    return out


class MultiLevelOFI:
    """Per-level order-flow imbalance accumulated over successive top-L book snapshots.

    Cont, Kukanov & Stoikov (2014), "The price impact of order book events", eq. (10), and
    its multi-level form in Xu, Gould & Howison (2019), "Multi-level order-flow imbalance
    in a limit order book". Between snapshots n-1 and n, at level m:

        e_n^m =  1{P_b^m(n) >= P_b^m(n-1)} q_b^m(n) - 1{P_b^m(n) <= P_b^m(n-1)} q_b^m(n-1)
               - 1{P_a^m(n) <= P_a^m(n-1)} q_a^m(n) + 1{P_a^m(n) >= P_a^m(n-1)} q_a^m(n-1)

    and the OFI over an interval is the sum of e_n^m. A level the book does not have is
    priced at -inf (bid) / +inf (ask) with size 0, so a level that appears adds its size
    and one that vanishes removes it. `update` returns e_n per level, `cumulative` holds the
    sum since the last `take()`. `reset_baseline()` (after a resync) makes the next
    snapshot a fresh start instead of a jump.
    """

    def __init__(self, levels: int = 10) -> None:
        self.levels = levels
        self.cumulative = [0] * levels
        self._zeros = [0] * levels
        self._prev_bids: list[Level] | None = None
        self._prev_asks: list[Level] = []

    def __deepcopy__(self, memo: dict) -> MultiLevelOFI:
        return _copy_lists(self)

    def reset_baseline(self) -> None:
        self._prev_bids = None

    def take(self) -> list[int]:
        """The per-level OFI accumulated since the last take, and start a new interval."""
        out, self.cumulative = self.cumulative, [0] * self.levels
        return out

    def _pad(self, levels: list[Level], missing: tuple[float, int]) -> list[tuple[float, int]]:
        n = self.levels
        return levels + [missing] * (n - len(levels)) if len(levels) < n else levels  # type: ignore[operator]

    def _bid_flow(self, new: list[Level], old: list[Level]) -> list[int]:
        """1{P_b(n) >= P_b(n-1)} q_b(n) - 1{P_b(n) <= P_b(n-1)} q_b(n-1), per level."""
        pairs = zip(self._pad(new, _NO_BID), self._pad(old, _NO_BID), strict=True)
        return [(q if p >= pp else 0) - (pq if p <= pp else 0) for (p, q), (pp, pq) in pairs]

    def _ask_flow(self, new: list[Level], old: list[Level]) -> list[int]:
        """1{P_a(n) <= P_a(n-1)} q_a(n) - 1{P_a(n) >= P_a(n-1)} q_a(n-1), per level (enters e with a minus)."""
        pairs = zip(self._pad(new, _NO_ASK), self._pad(old, _NO_ASK), strict=True)
        return [(q if p <= pp else 0) - (pq if p >= pp else 0) for (p, q), (pp, pq) in pairs]

    def update(self, bids: Sequence[Level], asks: Sequence[Level]) -> list[int]:
        """e_n per level for the new snapshot (best first), added to `cumulative`."""
        n = self.levels
        new_bids, new_asks = list(bids[:n]), list(asks[:n])
        old_bids, old_asks = self._prev_bids, self._prev_asks
        self._prev_bids, self._prev_asks = new_bids, new_asks
        if old_bids is None:
            return list(self._zeros)
        # an unchanged side contributes q(n) - q(n-1) = 0 at every level: skip it
        same_b, same_a = new_bids == old_bids, new_asks == old_asks
        if same_b and same_a:
            return list(self._zeros)
        fb = self._zeros if same_b else self._bid_flow(new_bids, old_bids)
        fa = self._zeros if same_a else self._ask_flow(new_asks, old_asks)
        e = [b - a for b, a in zip(fb, fa, strict=True)]
        self.cumulative = [c + x for c, x in zip(self.cumulative, e, strict=True)]
        return e


# --------------------------------------------------------------------------- trades


class LevelFlow:
    """An L2 feed's adds and cancels, read off its level updates: each level's last size, and the
    volume traded at a level that no decrease has matched yet (a credit). A LEVEL_SET that lowers a
    level is a cancel only for what the credit does not explain: the print came first and the
    depth update that consumed it after. FeatureState (the cancel rate) and model.sim.stylized (the
    cancel-to-trade ratio) count with it."""

    MAX_CREDITS = 64  # stale credits, of prints no depth update followed, are dropped past this

    def __init__(self) -> None:
        self._sizes: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}
        self._credit: dict[tuple[Side, int], int] = {}

    def __deepcopy__(self, memo: dict) -> LevelFlow:
        """Its maps hold ints and tuples of them: copied as maps (see FeatureState.__deepcopy__)."""
        out = LevelFlow.__new__(LevelFlow)
        out._sizes = {side: dict(sizes) for side, sizes in self._sizes.items()}
        out._credit = dict(self._credit)
        return out

    def clear(self) -> None:
        """After CLEAR / SNAPSHOT_BEGIN: the next book is not a continuation of the last one."""
        self._sizes[Side.BID].clear()
        self._sizes[Side.ASK].clear()
        self._credit.clear()

    def level_set(self, e: Event) -> int:
        """Apply a LEVEL_SET; the change in the level's size (a new level: its size; 0 off the book's sides)."""
        sizes = self._sizes.get(e.side)
        if sizes is None:
            return 0
        prev = sizes.get(e.price, 0)
        if e.size:
            sizes[e.price] = e.size
        else:
            sizes.pop(e.price, None)
        return e.size - prev

    def is_cancel(self, side: Side, price: int, drop: int) -> bool:
        """Whether a decrease of `drop` lots at a level is (partly) a cancel; the credit there is used up first."""
        key = (side, price)
        credit = self._credit.pop(key, 0)
        if credit > drop:
            self._credit[key] = credit - drop
        return drop > credit

    def traded(self, side: Side, price: int, size: int) -> None:
        """`size` lots traded against the resting `side` at `price`."""
        if len(self._credit) > self.MAX_CREDITS:
            self._credit.clear()
        key = (side, price)
        self._credit[key] = self._credit.get(key, 0) + size


class TradeClassifier:
    """The sign of a trade: +1 buyer-initiated, -1 seller-initiated, 0 unknown.

    In order of precedence:
    1. the venue's aggressor flags (FLAG_AGGRESSOR_BID: the taker bought -> +1;
       FLAG_AGGRESSOR_ASK -> -1);
    2. an EXECUTE with a side: by events.py an EXECUTE fills a *resting* order, so the
       aggressor is on the other side (a resting bid filled -> seller-initiated, -1);
    3. Lee & Ready (1991), "Inferring trade direction from intraday data": the quote rule
       against the prevailing mid (the mid before the message: above -> +1, below -> -1),
       and at the mid the tick rule (price above the last different trade price -> +1,
       below -> -1, a zero tick keeps the previous direction). A trade with no price
       (0) and nothing else to go on is 0.
    """

    def __init__(self) -> None:
        self._last_price: int | None = None
        self._tick_sign = 0

    def __deepcopy__(self, memo: dict) -> TradeClassifier:
        return copy.copy(self)  # numbers only

    def reset(self) -> None:
        self._last_price, self._tick_sign = None, 0

    def sign(self, e: Event, prevailing_mid2: int | None) -> int:
        """Classify `e`; `prevailing_mid2` is twice the mid before the trade (Book.mid2)."""
        tick_sign = self._tick(e.price)
        if e.flags & FLAG_AGGRESSOR_BID:
            return 1
        if e.flags & FLAG_AGGRESSOR_ASK:
            return -1
        if e.kind == Kind.EXECUTE and e.side != Side.NONE:
            return -int(e.side)
        if e.price and prevailing_mid2 is not None:
            twice = 2 * e.price
            if twice > prevailing_mid2:
                return 1
            if twice < prevailing_mid2:
                return -1
        return tick_sign if e.price else 0

    def _tick(self, price: int) -> int:
        if price:
            if self._last_price is not None and price != self._last_price:
                self._tick_sign = 1 if price > self._last_price else -1
            self._last_price = price
        return self._tick_sign


# --------------------------------------------------------------------------- the feature row


def feature_names(
    ofi_levels: int = 10,
    depth_at: Sequence[int] = (1, 5, 10),
    memory_levels: int = 5,
    memory_halflives: Sequence[int] = (128, 512, 2048),
) -> tuple[str, ...]:
    """The columns of `FeatureState`'s row, in order (see `FeatureState` for each one)."""
    depth = [f"log_depth_{s}_{n}" for n in depth_at for s in ("bid", "ask")]
    ofi = [f"ofi_{m}" for m in range(1, ofi_levels + 1)]
    memory = [f"log_depth_{memory_levels}_ewma_{h}" for h in memory_halflives]
    return (
        "valid",
        "mid",
        "spread_ticks",
        "microprice_offset_ticks",
        "queue_imbalance",
        *depth,
        *ofi,
        "signed_volume_log",
        "last_trade_sign",
        "realized_variance",
        "log_message_rate",
        "log_cancel_rate",
        "log_trade_rate",
        "log_dt_ns",
        *memory,
    )


FEATURE_NAMES = feature_names()


class _RateWindow:
    """Timestamps inside a sliding window of event time; the count over the span is the rate."""

    __slots__ = ("_ts",)

    def __init__(self) -> None:
        self._ts: deque[int] = deque()

    def __deepcopy__(self, memo: dict) -> _RateWindow:
        out = _RateWindow.__new__(_RateWindow)
        out._ts = deque(self._ts)  # ints: the deque's copy is a deep one
        return out

    def add(self, ts: int) -> None:
        self._ts.append(ts)

    def expire(self, cutoff: int) -> None:
        ts = self._ts
        while ts and ts[0] <= cutoff:
            ts.popleft()

    def __len__(self) -> int:
        return len(self._ts)

    def clear(self) -> None:
        self._ts.clear()


class _SumWindow:
    """(ts, value) pairs inside a sliding window of event time, with their running sum."""

    __slots__ = ("_items", "_resum", "total")

    def __init__(self, resum: bool) -> None:
        self._items: deque[tuple[int, float]] = deque()
        self._resum = resum  # floats: rounding error can outlive the values that caused it
        self.total: float = 0

    def __deepcopy__(self, memo: dict) -> _SumWindow:
        out = _SumWindow(self._resum)
        out._items, out.total = deque(self._items), self.total  # tuples of numbers: the deque's copy is a deep one
        return out

    def add(self, ts: int, value: float) -> None:
        self._items.append((ts, value))
        self.total += value

    def expire(self, cutoff: int) -> None:
        items = self._items
        big = False
        while items and items[0][0] <= cutoff:
            _, v = items.popleft()
            self.total -= v
            big = big or abs(v) > abs(self.total)
        if not items:
            self.total = 0
        elif big and self._resum:  # a large value left: resum rather than keep its rounding error
            self.total = sum(v for _, v in items)

    def clear(self) -> None:
        self._items.clear()
        self.total = 0


class FeatureState:
    """One symbol's features, updated once per venue message: `update(book, events) -> row`.

    `book` is the book *after* the message's `events` were applied (what `Feed.on_message`
    leaves); the state keeps what it needs of the past (the prevailing mid, the previous
    top-L snapshot, the previous size of each L2 level). Contract: the book changes only
    through the events given here (in order, none skipped), because the book columns are
    reused while every event of a message lands behind the top max(ofi_levels, depth_at)
    levels (an event without a price or side always forces a recompute). After a resync
    that the events do not show, start a new FeatureState. Rows are float32 of length
    `len(self.names)`, always finite; columns (`FEATURE_NAMES` for the defaults):

    - `valid`: 1 when both sides have a level, else 0 and the two-sided columns below hold
      FILL_VALUE (0).
    - `mid`: (P_b + P_a)/2 in venue price units (two-sided).
    - `spread_ticks`: (P_a - P_b)/tick (two-sided; negative if the book is crossed).
    - `microprice_offset_ticks`: (microprice - mid)/tick, in [-spread/2, spread/2] (two-sided).
    - `queue_imbalance`: (Q_b - Q_a)/(Q_b + Q_a) at the top; a missing side is an empty queue.
    - `log_depth_{bid,ask}_{L}`: log(1 + sum of sizes of the best L levels), lots.
    - `ofi_{m}`: OFI at level m (MultiLevelOFI) summed with exponential decay (half-life
      `ofi_halflife_ns` of event time), divided by the level's depth averaged the same way
      ((q_b^m + q_a^m)/2, at least 1 lot): the depth-normalized OFI of Xu, Gould & Howison.
    - `signed_volume_log`: sign(V) log(1 + |V|), V = sum of sign * size of the trades in the
      last `window_ns` (signs from TradeClassifier).
    - `last_trade_sign`: the sign of the most recent trade (0 before any).
    - `realized_variance`: sum of squared log-returns of the mid over the last `window_ns`
      (returns taken between successive messages; a resync starts a new series).
    - `log_{message,cancel,trade}_rate`: log(1 + events per second) over the last
      `window_ns` of event time (the count divided by the full window, so it reads low
      during the first window). Messages: ADD, CANCEL, DELETE, EXECUTE, REPLACE, CHANGE,
      LEVEL_SET, TRADE. Trades: EXECUTE, TRADE. Cancels, L3 books: CANCEL and DELETE.
      Cancels, L2 books: a LEVEL_SET that lowers a level's size, less the volume that
      trades at that price and side explain (trade volume seen at that price is a credit
      the next decreases use up first). L2 caveat: a venue that sends trades on another
      stream (Binance `trade` vs `depthUpdate`) may deliver the depth decrease first; it
      then counts as a cancel. Snapshot contents (between SNAPSHOT_BEGIN and SNAPSHOT_END)
      are state, not flow, and are not counted.
    - `log_dt_ns`: log(1 + ns between the previous message's last event and this message's
      first event) (0 on the first message; clipped at 0 if time runs backwards).
    - `log_depth_{L}_ewma_{H}`: the EWMA, over messages with a half-life of H messages, of
      log(1 + the sizes of the best L levels of both sides) after each message (the first
      message's value to start; L = `memory_levels`, H in `memory_halflives`). The book's slow
      memory: the window's rows span its last T messages, and how far depth strays from its
      level over thousands of messages is what a forecast 100 messages out needs most
      (bench/depth_memory.py). A resync does not reset it: the level is the instrument's.
    """

    def __init__(
        self,
        tick: int = 1,
        ofi_levels: int = 10,
        depth_at: Sequence[int] = (1, 5, 10),
        window_ns: int = 1_000_000_000,
        ofi_halflife_ns: int = 1_000_000_000,
        memory_levels: int = 5,
        memory_halflives: Sequence[int] = (128, 512, 2048),
    ) -> None:
        if tick <= 0 or window_ns <= 0 or ofi_halflife_ns <= 0 or ofi_levels <= 0 or memory_levels <= 0:
            raise ValueError("tick, ofi_levels, memory_levels, window_ns and ofi_halflife_ns must be positive")
        if any(h <= 0 for h in memory_halflives):
            raise ValueError("memory_halflives must be positive")
        self.tick = tick
        self.names = feature_names(ofi_levels, depth_at, memory_levels, memory_halflives)
        self.depth_at = tuple(depth_at)
        self.memory_levels = memory_levels
        self.memory_halflives = tuple(memory_halflives)
        self._memory_rate = [1.0 - 0.5 ** (1.0 / h) for h in self.memory_halflives]
        self._memory: list[float] | None = None  # the EWMAs; None before the first message
        self._memory_depth = 0.0  # log1p(top memory_levels of both sides) of the last book read
        self.window_ns = window_ns
        self._per_second = 1e9 / window_ns
        self._decay_rate = math.log(2) / ofi_halflife_ns
        self._n_top = max(ofi_levels, memory_levels, *self.depth_at)
        self.ofi = MultiLevelOFI(ofi_levels)
        self.trades = TradeClassifier()
        self._ofi_sum = [0.0] * ofi_levels
        self._ofi_depth = [0.0] * ofi_levels
        self._messages, self._cancels, self._trade_ts = _RateWindow(), _RateWindow(), _RateWindow()
        self._signed_volume, self._sq_returns = _SumWindow(resum=False), _SumWindow(resum=True)  # ints are exact
        self._levels = LevelFlow()
        self._in_snapshot = False
        self._mid2: int | None = None  # at the end of the previous message
        self._rv_mid: float | None = None
        self._last_sign = 0
        self._last_ts: int | None = None
        self._now = 0  # latest event time seen
        self._row_ts: int | None = None
        # The book-only columns are kept while messages provably leave the top levels alone.
        self._cached_book_part: list[float] | None = None
        self._bid_floor: float = -math.inf  # the last of the top levels (+-inf: fewer levels)
        self._ask_ceiling: float = math.inf
        self._level_depth = [0.0] * ofi_levels  # (q_b^m + q_a^m) / 2 now
        self._e: list[int] = [0] * ofi_levels
        self._ofi_out: list[float] | None = None

    def __deepcopy__(self, memo: dict) -> FeatureState:
        """Part by part: a scenario path copies its window builder at every level update of a message
        (model/serving/scenarios.py), and the generic copy, object by object and tuple by tuple, took
        0.6 ms of a Binance builder (2.0 of 6.9 s for 16 paths x 200 events on USD-M BTCUSDT)."""
        out = memo[id(self)] = _copy_lists(self)  # in the memo: a structure that holds it twice gets one copy
        for name in ("ofi", "trades", "_messages", "_cancels", "_trade_ts", "_signed_volume", "_sq_returns", "_levels"):
            setattr(out, name, copy.deepcopy(getattr(self, name), memo))
        return out

    # ---- events

    def _reset_flow_baseline(self) -> None:
        """After CLEAR / SNAPSHOT_BEGIN the next book is not a continuation of the last one."""
        self._levels.clear()
        self.ofi.reset_baseline()
        self._rv_mid = None
        self._mid2 = None

    def _on_level_set(self, e: Event) -> bool:
        """Track the L2 level size; True when the update is (partly) a cancel."""
        delta = self._levels.level_set(e)
        return delta < 0 and self._levels.is_cancel(e.side, e.price, -delta)

    def _on_trade(self, e: Event, ts: int, prevailing_mid2: int | None) -> None:
        s = self.trades.sign(e, prevailing_mid2)
        self._trade_ts.add(ts)
        if s:
            self._last_sign = s
            self._signed_volume.add(ts, s * e.size)
            if e.price:
                self._levels.traded(Side.ASK if s > 0 else Side.BID, e.price, e.size)  # the resting side hit

    def _on_events(self, events: Sequence[Event]) -> None:
        prevailing = self._mid2
        for e in events:
            k = e.kind
            if k in _RESET_KINDS:
                self._reset_flow_baseline()
                self._in_snapshot = k == Kind.SNAPSHOT_BEGIN
                continue
            if k == Kind.SNAPSHOT_END:
                self._in_snapshot = False
                continue
            if self._in_snapshot:
                if k == Kind.LEVEL_SET:
                    self._on_level_set(e)
                continue
            ts = e.ts
            if ts > self._now:
                self._now = ts
            if k not in MESSAGE_KINDS:
                continue
            self._messages.add(ts)
            if k in TRADE_KINDS:
                self._on_trade(e, ts, prevailing)
            elif k in CANCEL_KINDS or (k == Kind.LEVEL_SET and self._on_level_set(e)):
                self._cancels.add(ts)

    # ---- the row

    def _ofi_columns(self, e: list[int] | None, dt: int) -> list[float]:
        """Decayed OFI over decayed level depth; `e` None: the top-L did not change (e = 0)."""
        if e is None and dt <= 0 and self._ofi_out is not None:
            return self._ofi_out
        w = math.exp(-self._decay_rate * dt) if dt > 0 else 1.0
        v = 1 - w
        xs = self._level_depth
        self._ofi_depth = d = [x if d == 0 else w * d + v * x for d, x in zip(self._ofi_depth, xs, strict=True)]
        if e is None:
            self._ofi_sum = s = [w * s for s in self._ofi_sum]
        else:
            self._ofi_sum = s = [w * s + x for s, x in zip(self._ofi_sum, e, strict=True)]
        self._ofi_out = out = [a / (b if b > 1 else 1.0) for a, b in zip(s, d, strict=True)]
        return out

    def _touches_top(self, events: Sequence[Event]) -> bool:
        """Whether the message may have changed the top `_n_top` levels of either side.

        Only events that name their side and price can be ruled out: a level update, add,
        cancel, delete or execution strictly behind the last level of the previous top.
        """
        floor, ceiling = self._bid_floor, self._ask_ceiling
        for e in events:
            k = e.kind
            if k in _BOOK_NEUTRAL_KINDS:
                continue
            if k not in _PRICED_KINDS or not e.price:
                return True
            side = e.side
            if (side == Side.BID and e.price >= floor) or (side == Side.ASK and e.price <= ceiling):
                return True
            if side == Side.NONE:
                return True
        return False

    def _book_part(self, book: Book) -> list[float]:
        """Columns that depend on the book alone (and their side effects: OFI, RV, mid)."""
        n = self._n_top
        bids, asks = book.top(n)
        self._bid_floor = bids[-1][0] if len(bids) == n else -math.inf
        self._ask_ceiling = asks[-1][0] if len(asks) == n else math.inf
        self._realized_variance(bids, asks)
        self._mid2 = bids[0][0] + asks[0][0] if bids and asks else None
        row = self._book_columns(bids, asks)
        sb = [q for _, q in bids]
        sa = [q for _, q in asks]
        cb = list(accumulate(sb)) or [0]
        ca = list(accumulate(sa)) or [0]
        for k in self.depth_at:  # the book may be thinner than k levels: then all of it
            row.append(math.log1p(cb[min(k, len(cb)) - 1]))
            row.append(math.log1p(ca[min(k, len(ca)) - 1]))
        k = self.memory_levels
        self._memory_depth = math.log1p(cb[min(k, len(cb)) - 1] + ca[min(k, len(ca)) - 1])
        levels = self.ofi.levels
        sb += [0] * (levels - len(sb))
        sa += [0] * (levels - len(sa))
        self._level_depth = [(b + a) / 2 for b, a in zip(sb[:levels], sa[:levels], strict=True)]
        self._e = self.ofi.update(bids, asks)
        return row

    def _book_columns(self, bids: list[Level], asks: list[Level]) -> list[float]:
        if not (bids and asks):
            qi = _queue_imbalance(bids[0][1] if bids else 0, asks[0][1] if asks else 0) if bids or asks else 0.0
            return [0.0, FILL_VALUE, FILL_VALUE, FILL_VALUE, qi]
        (pb, qb), (pa, qa) = bids[0], asks[0]
        m = (pb + pa) / 2
        tick = self.tick
        return [1.0, m, (pa - pb) / tick, (_microprice(pb, qb, pa, qa) - m) / tick, _queue_imbalance(qb, qa)]

    def _realized_variance(self, bids: list[Level], asks: list[Level]) -> None:
        if not (bids and asks):
            return
        m = (bids[0][0] + asks[0][0]) / 2
        prev = self._rv_mid
        if prev is not None and prev > 0 and m > 0 and m != prev:
            r = math.log(m / prev)
            self._sq_returns.add(self._now, r * r)
        self._rv_mid = m

    def update(self, book: Book, events: Sequence[Event]) -> np.ndarray:
        """Fold one message's events (already applied to `book`) in; the feature row after it."""
        dt_msg = 0
        if events:
            first_ts, last_ts = events[0].ts, events[-1].ts
            if self._last_ts is not None:
                dt_msg = max(first_ts - self._last_ts, 0)
            self._last_ts = last_ts
        touched = self._cached_book_part is None or self._touches_top(events)
        self._on_events(events)
        cutoff = self._now - self.window_ns
        for w in (self._messages, self._cancels, self._trade_ts, self._signed_volume, self._sq_returns):
            w.expire(cutoff)

        dt_row = self._now - self._row_ts if self._row_ts is not None else 0
        self._row_ts = self._now
        if touched:
            self._cached_book_part = self._book_part(book)
        row = self._cached_book_part + self._ofi_columns(self._e if touched else None, dt_row)
        v = self._signed_volume.total
        per_s = self._per_second
        row += [
            math.copysign(math.log1p(abs(v)), v),
            float(self._last_sign),
            max(self._sq_returns.total, 0.0),
            math.log1p(len(self._messages) * per_s),
            math.log1p(len(self._cancels) * per_s),
            math.log1p(len(self._trade_ts) * per_s),
            math.log1p(dt_msg),
        ]
        row += self._update_memory()
        return np.array(row, dtype=np.float32)

    def _update_memory(self) -> list[float]:
        x = self._memory_depth
        if self._memory is None:
            self._memory = [x] * len(self._memory_rate)
        else:
            self._memory = [m + a * (x - m) for m, a in zip(self._memory, self._memory_rate, strict=True)]
        return self._memory
