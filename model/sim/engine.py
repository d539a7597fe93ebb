"""A multi-symbol L3 order-flow simulator: queue-reactive limit/cancel/market flow with Hawkes
market orders, split metaorders, intraday seasonality, Markov regimes, news and labeled anomalies.

The flow of one symbol (all rates per second, times in ns since midnight, prices in integer ticks of
ITCH's Price(4), i.e. 1/10000 dollar, sizes in shares):

- Limit orders arrive at rate mu_L * s(t) * f. A bid is placed at best_ask - (1 + d) * tick (an ask
  mirrored), d drawn from a geometric placement profile, so d = 0 improves the bid while the spread is
  wider than one tick and the spread closes, as in the queue-reactive model of Huang, Lehalle &
  Rosenbaum (2015, "Simulating and analyzing order book data: the queue-reactive model", JASA). The
  level is queue-reactive: a candidate level holding q shares is accepted with probability
  qbar / (qbar + q) (arrivals fall as the queue grows, their Figure 3), else redrawn (twice at most).
- Cancellations: every resting order is cancelled at rate theta (Cont, Stoikov & Talreja 2010,
  "A stochastic model for order book dynamics": cancel intensity proportional to queue size). One in
  ten cancels is partial (ITCH X), the rest whole (ITCH D).
- Market orders: a Hawkes process with exponential kernel, lambda_M(t) = mu_M s(t) f + sum alpha
  exp(-beta (t - t_i)) (Bacry, Mastromatteo & Muzy 2015), simulated exactly by Ogata's thinning for
  the self-exciting part. A market order takes liquidity at the opposite best only (QR: the price moves
  when a queue depletes; the next level behind becomes the best). Signs: with probability p_meta the
  sign of the current metaorder, whose length in child orders is Pareto with tail 1.5, which gives
  long memory of order signs (Lillo, Mike & Farmer 2005); else the sign leans toward the thin side of
  the top-of-book queue imbalance (a large bid queue predicts buys, Cartea, Jaimungal & Penalva 2015,
  ch. 4).
- Sizes: round lots with a discrete power-law distribution P(k lots) ~ k^-2.5 (heavy tails of order
  sizes, Bouchaud, Farmer & Lillo 2009 "How markets slowly digest changes in supply and demand").
- s(t): a U-shaped intraday profile over 09:30-16:00 (Admati & Pfleiderer 1988; Bouchaud et al.):
  about 2x the midday rate at the open and the close.
- Regimes: a per-symbol Markov chain over calm / volatile / one_sided / thin scales the rates, sizes,
  placement width and the buy/sell lean (factors in REGIMES).
- News and anomalies (model/sim/news.py, model/sim/anomalies.py) add time windows of effects and injected
  agents; a halt window stops the flow between STATUS events.

Price formation. The book quotes around a latent efficient price (FlowParams.efficient_price, the default;
the "fundamental" of Glosten & Milgrom 1985 and of zero-intelligence models with a reference price,
e.g. Huang, Lehalle & Rosenbaum's QR with a moving reference):
- it diffuses in event time, a Gaussian step of `price_vol` ticks (x the regime's Effect.vol) per
  order-flow event, so volatility follows activity (Clark 1973), and an earnings headline steps it by a
  fraction of the price (model/sim/news.py, Interval.jump), at once or, with `news_discovery_s`, part at
  once and the rest over the seconds after it;
- limit orders are placed d ticks behind the ticks either side of it (not behind the opposite best); one
  that lands across the book is post-only with probability `post_only` and rests a tick inside the other
  side, else it is a marketable limit order that takes the stale quotes up to its price (`marketable`);
- market makers pull the quotes it has passed by a tick (`stale_pull`, `stale_level`: every such quote),
  so the book catches up after a step mostly through cancels, as real books do (FlowParams says why); a
  side swept bare refills next to it, and market orders lean toward it by up to `info_lean` (informed
  flow; their price impact). TAKER_REPRICING is the flow before 2026-12-05, where takers did the catching up.
Without it (`efficient_price=False`, `--queue-price`) the price moves only when a touch queue empties.

Every symbol is simulated on its own random stream (seeded by (seed, index)), then the streams are
merged by time (stable, so the output is the same bytes for the same seed). The simulator keeps its
own L3 state (plain dicts) and records snapshots of its level totals, which the round-trip tests
compare with the books our feeds rebuild from the written files.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field, replace

from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, NS_PER_S, Event, Kind, Side, Status

SEC = NS_PER_S  # the simulator's clock counts ns, as the venues' events do
OPEN_NS = 34_200 * SEC  # 09:30
CLOSE_NS = 57_600 * SEC  # 16:00
DAY_NS = CLOSE_NS - OPEN_NS
VENUE = "sim"
BID, ASK = Side.BID, Side.ASK
NAMES = ("ALFA", "BRVO", "CHRL", "DLTA", "ECHO", "FXTR", "GOLF", "HTLX", "INDG", "JULT", "KILO", "LIMA")
DEFAULT_EVENTS_PER_DAY = (15_000, 150_000)  # activity range across symbols (10x), events per trading day


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated instrument: ticker, tick and start price in Price(4) units, activity."""

    name: str
    tick: int
    price: int
    events_per_day: float
    lot: int = 100


@dataclass(frozen=True)
class Effect:
    """Multipliers and shifts on the flow while a window is active (regime, news, anomaly)."""

    lim: float = 1.0  # limit order rate
    mkt: float = 1.0  # market order base rate
    can_bid: float = 1.0  # cancel rate of resting bids
    can_ask: float = 1.0
    bias: float = 0.0  # added to P(buy) of market orders
    gap: int = 0  # extra ticks between a new limit order and the opposite best (spread widening)
    size: float = 1.0  # market order size
    excite: float = 1.0  # Hawkes jump size
    pull_bid: float = 0.0  # touch pulls: rate of deleting an order at the best bid, in units of the limit rate
    pull_ask: float = 0.0
    halted: bool = False
    vol: float = 1.0  # the efficient price's volatility (FlowParams.efficient_price)

    def combine(self, o: Effect) -> Effect:
        return Effect(
            self.lim * o.lim,
            self.mkt * o.mkt,
            self.can_bid * o.can_bid,
            self.can_ask * o.can_ask,
            self.bias + o.bias,
            self.gap + o.gap,
            self.size * o.size,
            self.excite * o.excite,
            self.pull_bid + o.pull_bid,
            self.pull_ask + o.pull_ask,
            self.halted or o.halted,
            self.vol * o.vol,
        )

    def clamped(self, max_branching: float) -> Effect:
        """Overlapping windows multiply; the caps keep the stack a stress, not an explosion: the
        Hawkes branching ratio stays below 1 (stationarity, Hawkes 1971) and the rates within bounds."""
        return replace(
            self,
            lim=min(self.lim, 3.0),
            mkt=min(self.mkt, 6.0),
            can_bid=min(self.can_bid, 5.0),
            can_ask=min(self.can_ask, 5.0),
            bias=max(-0.45, min(0.45, self.bias)),
            gap=min(self.gap, 4),
            size=min(self.size, 3.0),
            excite=min(self.excite, max_branching),
            pull_bid=min(self.pull_bid, 1.0),
            pull_ask=min(self.pull_ask, 1.0),
            vol=min(self.vol, 4.0),
        )


NEUTRAL = Effect()
REGIMES: dict[str, Effect] = {
    "calm": NEUTRAL,
    "volatile": Effect(lim=1.2, mkt=2.5, can_bid=1.6, can_ask=1.6, gap=1, size=1.5, excite=1.3, vol=2.0),
    "one_sided": Effect(mkt=1.6, size=1.3),  # the lean (+-bias) is drawn when the regime starts
    "thin": Effect(lim=0.45, can_bid=1.5, can_ask=1.5, gap=1, size=0.7, vol=1.5),
}
REGIME_MEAN_S = {"calm": 1800.0, "volatile": 420.0, "one_sided": 300.0, "thin": 420.0}
REGIME_NEXT = {  # transition probabilities out of each regime
    "calm": (("volatile", 0.4), ("one_sided", 0.35), ("thin", 0.25)),
    "volatile": (("calm", 0.8), ("thin", 0.2)),
    "one_sided": (("calm", 0.8), ("volatile", 0.2)),
    "thin": (("calm", 0.8), ("volatile", 0.2)),
}


@dataclass(frozen=True)
class Interval:
    """An effect active over [start, end) on one symbol; `what` names its source. `jump`: a step of the
    efficient price at `start`, a fraction of it (news; FlowParams.efficient_price only)."""

    start: int
    end: int
    effect: Effect
    what: str
    jump: float = 0.0


@dataclass
class FlowParams:
    """Shape parameters of the flow shared by all symbols (rates come from SymbolSpec)."""

    limit_share: float = 0.45  # share of events that are limit orders (adds)
    market_to_limit: float = 0.03  # market orders per limit order (TAKER_REPRICING: 0.09)
    resting_orders: int = 240  # equilibrium orders per book: sets the cancel rate theta
    hawkes_branching: float = 0.55  # alpha / beta: the share of market orders triggered by others
    hawkes_beta: float = 2.0  # kernel decay, 1/s
    p_meta: float = 0.65  # probability that a market order continues the current metaorder
    meta_tail: float = 1.5  # Pareto tail of metaorder lengths (Lillo, Mike & Farmer 2005)
    imbalance_lean: float = 0.3  # P(buy) shift per unit of top-of-book queue imbalance
    placement_decay: float = 0.55  # geometric placement profile P(d) ~ decay^d, d = 0..levels-1
    placement_levels: int = 10
    queue_qbar_lots: float = 12.0  # qbar in the queue-reactive acceptance, in lots
    size_tail: float = 2.5  # P(k lots) ~ k^-tail
    size_max_lots: int = 60
    partial_cancel: float = 0.1
    seasonality: float = 1.0  # depth of the U shape (0: flat)
    regimes: bool = True
    # The efficient price (module doc). Off (`--queue-price`), the price moves only when a touch queue empties,
    # and on a calm book that is rare: the mid is unchanged 100 book changes later in most rows, where real
    # books move (README, the simulator's shortfalls). Kept to reproduce figures made before it.
    efficient_price: bool = True
    price_vol: float = 0.18  # its standard deviation per event, in ticks (x Effect.vol; TAKER_REPRICING: 0.15)
    info_lean: float = 0.25  # P(buy) shift of market orders when it is a tick or more above the mid
    # Makers reprice (since 2026-12-05): a limit order priced across the book is post-only with probability
    # `post_only` (it rests a tick inside the other side, as a maker's GTX/post-only order that would take is
    # moved or refused), and market makers pull quotes the price has passed (`stale_pull`, `stale_level`). The
    # book follows the price through cancels, as real books do: most limit orders end cancelled (the captures'
    # cancel-to-trade ratio is 7 to 58; NASDAQ's order-to-trade ratios are tens, SEC MIDAS) and the takers
    # left are the market orders and the few marketable limits that snipe stale quotes (Budish, Cramton & Shim
    # 2015). Before it every crossing limit order traded and the ratio was 1.3 (TAKER_REPRICING keeps that flow).
    post_only: float = 0.95
    stale_pull: float = 2.0  # rate of pulling quotes the price has passed, in units of the limit rate
    stale_level: bool = True  # a pull takes every quote the price has passed (False: the newest at the touch)
    news_pull: float = 0.7  # share of the quotes a news step passes that are pulled at once (SymbolSim.reprice)
    # Price discovery after a headline: with news_discovery_s > 0, the efficient price takes `news_at_once`
    # of an earnings step at the headline and the rest over the next seconds, the part left decaying as
    # exp(-dt / news_discovery_s) at each order-flow event (markets take seconds to minutes to price news:
    # Busse & Green 2002 on CNBC reports, Chordia, Roll & Subrahmanyam 2005). 0: the whole step at once;
    # market makers pull the quotes it passes, so the book shows where the price went a few events after
    # the headline, and its text adds little beyond its age (bench/news_bound.py; README, "Headlines").
    news_discovery_s: float = 0.0
    news_at_once: float = 0.5


def default_symbols(n: int, events_per_day: tuple[float, float] = DEFAULT_EVENTS_PER_DAY) -> list[SymbolSpec]:
    """n symbols with prices log-spaced from $5 to $500, activity log-spaced over the given range
    (shuffled against price by a fixed permutation), and a tick that grows with price."""
    out = []
    lo, hi = events_per_day
    for i in range(n):
        x = i / (n - 1) if n > 1 else 0.5
        dollars = 5.0 * 100.0**x
        tick = 100 if dollars < 40 else 500 if dollars < 200 else 1000
        price = round(dollars * 10_000 / tick) * tick
        y = ((i * 7) % n) / (n - 1) if n > 1 else 0.5
        name = NAMES[i] if i < len(NAMES) else f"S{i:03d}"
        out.append(SymbolSpec(name, tick, price, lo * (hi / lo) ** y))
    return out


def pick(u: float, table: tuple[tuple[str, float], ...]) -> str:
    """The name whose cumulative probability first exceeds u (the last one if rounding leaves a gap)."""
    acc = 0.0
    for name, pr in table:
        acc += pr
        if u < acc:
            return name
    return table[-1][0]


def seasonality(t: int, depth: float) -> float:
    """The U-shaped intraday rate multiplier, mean 1 over 09:30-16:00: (1 + 3 depth u^2) / (1 + depth)
    with u in [-1, 1] the position in the day (u^2 has mean 1/3)."""
    u = 2.0 * (t - OPEN_NS) / DAY_NS - 1.0
    u = -1.0 if u < -1.0 else 1.0 if u > 1.0 else u
    return (1.0 + 3.0 * depth * u * u) / (1.0 + depth)


def _size_table(tail: float, kmax: int) -> list[float]:
    """Cumulative probabilities of 1..kmax lots under P(k) ~ k^-tail (for bisect)."""
    w = [k**-tail for k in range(1, kmax + 1)]
    total = sum(w)
    acc, out = 0.0, []
    for x in w:
        acc += x / total
        out.append(acc)
    out[-1] = 1.0
    return out


@dataclass
class Snapshot:
    """The simulator's own book of one symbol after its `n`-th event: level totals per side."""

    n: int
    ts: int
    bids: dict[int, int]
    asks: dict[int, int]


class SymbolSim:
    """The order flow and L3 state of one symbol. Agents (anomalies) call `add`, `delete`, `market`."""

    def __init__(
        self,
        index: int,
        spec: SymbolSpec,
        n_symbols: int,
        seed: int,
        params: FlowParams,
        start: int,
        end: int,
        windows: list[Interval],
        snapshot_every: int = 0,
    ) -> None:
        self.index, self.spec, self.p = index, spec, params
        self.rng = random.Random(seed * 1_000_003 + index)
        self.start, self.end = start, end
        self.oid_next, self.oid_step = index + 1, n_symbols  # unique ids across symbols
        self.orders: dict[int, list] = {}  # id -> [side, price, size]
        self.queues: dict[Side, dict[int, list[int]]] = {BID: {}, ASK: {}}  # price -> FIFO ids (may hold dead ids)
        self.levels: dict[Side, dict[int, int]] = {BID: {}, ASK: {}}  # price -> total shares
        self.ids: dict[Side, list[int]] = {BID: [], ASK: []}  # for picking a random order (lazy removal)
        self.count = {BID: 0, ASK: 0}
        self.best = {BID: 0, ASK: 0}
        self.out: list[Event] = []
        self.snapshot_every = snapshot_every
        self.snapshots: list[Snapshot] = []
        self.sizes = _size_table(params.size_tail, params.size_max_lots)
        self.windows = list(windows)
        self.regimes: list[tuple[int, int, str]] = []
        self.agents: list = []
        self.effect = NEUTRAL
        epd = spec.events_per_day
        self.mu_l = epd * params.limit_share / (DAY_NS / SEC)
        self.mu_m = self.mu_l * params.market_to_limit
        self.theta = self.mu_l / params.resting_orders
        # a guard against a runaway (an explosive parameter set): 50x the expected events, at least 100k
        self.max_events = max(100_000, int(50 * epd * (end - start) / DAY_NS))

    # --- book operations (each emits one Event per book change) -----------------------------

    def _emit(self, kind: Kind, ts: int, side: Side, price: int, size: int, oid: int, flags: int = 0) -> None:
        out = self.out
        out.append(Event(kind, VENUE, self.spec.name, ts, 0, side, price, size, oid, 0, flags))
        if self.snapshot_every and len(out) % self.snapshot_every == 0:
            self.snapshots.append(self.snapshot(ts))

    def snapshot(self, ts: int) -> Snapshot:
        return Snapshot(len(self.out), ts, dict(self.levels[BID]), dict(self.levels[ASK]))

    def add(self, ts: int, side: Side, price: int, size: int) -> int:
        oid = self.oid_next
        self.oid_next += self.oid_step
        self.orders[oid] = [side, price, size]
        q = self.queues[side].get(price)
        lv = self.levels[side]
        if q is None:
            self.queues[side][price] = [oid]
            lv[price] = size
        else:
            q.append(oid)
            lv[price] += size
        self.ids[side].append(oid)
        self.count[side] += 1
        b = self.best[side]
        if side == BID:
            if price > b or not b:
                self.best[BID] = price
        elif price < b or not b:
            self.best[ASK] = price
        self._emit(Kind.ADD, ts, side, price, size, oid)
        return oid

    def _remove(self, oid: int, o: list) -> None:
        """Drop a fully gone order from the level structures (queues keep dead ids until popped)."""
        side, price = o[0], o[1]
        del self.orders[oid]
        self.count[side] -= 1
        lv = self.levels[side]
        if lv[price] == 0:
            del lv[price]
            del self.queues[side][price]
            if price == self.best[side]:
                self.best[side] = (max(lv) if side == BID else min(lv)) if lv else 0

    def delete(self, ts: int, oid: int) -> None:
        o = self.orders[oid]
        side, price, size = o
        self.levels[side][price] -= size
        o[2] = 0
        self._remove(oid, o)
        self._emit(Kind.DELETE, ts, side, price, size, oid)  # after the change: snapshots see it whole

    def cancel_part(self, ts: int, oid: int, n: int) -> None:
        o = self.orders[oid]
        o[2] -= n
        self.levels[o[0]][o[1]] -= n
        self._emit(Kind.CANCEL, ts, o[0], o[1], n, oid)

    def market(self, ts: int, side: Side, size: int, walk: bool = False, keep: int = 1, limit: int = 0) -> int:
        """A market order of `side` (BID buys from the asks) for `size` shares; it stops at the end of
        the best level unless `walk`, at a level beyond `limit` where one is given (a marketable limit
        order), and never takes the last `keep` orders of the book side (so the book never empties).
        Returns the shares filled."""
        rest = ASK if side == BID else BID
        flag = FLAG_AGGRESSOR_BID if side == BID else FLAG_AGGRESSOR_ASK
        filled = 0
        while size > 0 and self.count[rest] > keep:
            price = self.best[rest]
            if limit and (price > limit if side == BID else price < limit):
                break
            q = self.queues[rest][price]
            while q and size > 0 and self.count[rest] > keep:
                oid = q[0]
                o = self.orders.get(oid)
                if o is None or o[1] != price:
                    q.pop(0)  # a dead id (cancelled or executed earlier)
                    continue
                n = o[2] if o[2] <= size else size
                o[2] -= n
                self.levels[rest][price] -= n
                size -= n
                filled += n
                if o[2] == 0:
                    q.pop(0)
                    self._remove(oid, o)
                self._emit(Kind.EXECUTE, ts, rest, price, n, oid, flag)
                if price not in self.levels[rest]:
                    break
            if not walk or price in self.levels[rest]:
                break
        return filled

    def reprice(self, ts: int, fair: float) -> None:
        """Market makers react to a step of the efficient price to `fair`: each quote it has passed (an ask
        at or below it, a bid at or above it) is pulled with probability `news_pull`; the rest is left
        for marketable orders to take."""
        rand, share = self.rng.random, self.p.news_pull
        for side, sign in ((ASK, 1), (BID, -1)):
            passed = [oid for oid, o in self.orders.items() if o[0] == side and (o[1] - fair) * sign <= 0]
            for oid in passed:
                if self.count[side] > 2 and rand() < share:
                    self.delete(ts, oid)

    def marketable(self, ts: int, side: Side, price: int, size: int) -> None:
        """A limit order that crosses: it takes the other side up to `price`, and the rest rests at `price`,
        or a tick inside the other side's best where `market` kept that side's last order."""
        left = size - self.market(ts, side, size, walk=True, limit=price)
        if left <= 0:
            return
        other, tick = self.best[ASK if side == BID else BID], self.spec.tick
        if side == BID and price >= other:
            price = other - tick
        elif side == ASK and price <= other:
            price = other + tick
        if price > 0:
            self.add(ts, side, price, left)

    def random_order(self, side: Side) -> int | None:
        """A resting order of `side` picked uniformly (dead ids met on the way are dropped)."""
        ids = self.ids[side]
        rng = self.rng
        orders = self.orders
        while ids:
            i = int(rng.random() * len(ids))
            oid = ids[i]
            if oid in orders:
                return oid
            ids[i] = ids[-1]
            ids.pop()
        return None

    def pull(self, ts: int, side: Side) -> None:
        """Delete the newest order at the best price of `side` (a market maker pulling its quote)."""
        if self.count[side] <= 2:
            return
        q = self.queues[side][self.best[side]]
        for i in range(len(q) - 1, -1, -1):
            if q[i] in self.orders:
                self.delete(ts, q[i])
                return

    def pull_stale(self, ts: int, fair: float) -> None:
        """Market makers pull a quote the efficient price `fair` has passed by a tick: the newest at the
        stale touch, or with FlowParams.stale_level every quote it has passed, a side's last ones moved to
        the tick beyond it (a cancel-replace: `pull` keeps a side's last two orders, and post-only orders
        would queue behind them)."""
        tick, best = self.spec.tick, self.best
        while True:
            if best[ASK] <= fair - tick:
                side = ASK
            elif best[BID] >= fair + tick:
                side = BID
            else:
                return
            if not self.p.stale_level:
                self.pull(ts, side)
                return
            if self.count[side] <= 2:
                below = int(fair // tick) * tick
                self.add(ts, side, below + tick if side == ASK else below, self.lot_size())
            self.pull(ts, side)

    def lot_size(self) -> int:
        return (bisect.bisect_left(self.sizes, self.rng.random()) + 1) * self.spec.lot

    # --- the flow ----------------------------------------------------------------------------

    def seed_book(self, ts: int, levels: int = 8) -> None:
        """Depth on both sides at the start: 1-3 orders on each of `levels` ticks."""
        tick, mid = self.spec.tick, self.spec.price
        for k in range(levels):
            for side, price in ((BID, mid - k * tick), (ASK, mid + (k + 1) * tick)):
                for _ in range(1 + int(self.rng.random() * 3)):
                    self.add(ts, side, price, self.lot_size())

    def _boundaries(self) -> list[tuple[int, int, Interval]]:
        """Start (0) and end (1) times of every window, time ordered (ends before starts at a tie)."""
        b = []
        for w in self.windows:
            b.append((w.start, 1, w))
            b.append((w.end, 0, w))
        b.sort(key=lambda x: (x[0], x[1]))
        return b

    def _draw_regimes(self) -> None:
        """The regime path over [start, end): windows added to self.windows, and kept in self.regimes."""
        rng, t, name = self.rng, self.start, "calm"
        while t < self.end:
            dur = int(-math.log(1.0 - rng.random()) * REGIME_MEAN_S[name] * SEC) + 1
            stop = min(self.end, t + dur)
            eff = REGIMES[name]
            if name == "one_sided":
                eff = replace(eff, bias=0.3 if rng.random() < 0.5 else -0.3)
            if name != "calm":
                self.windows.append(Interval(t, stop, eff, f"regime:{name}"))
            self.regimes.append((t, stop, name))
            name, t = pick(rng.random(), REGIME_NEXT[name]), stop

    def run(self) -> list[Event]:
        """Simulate [start, end): the symbol's events, time ordered."""
        p = self.p
        if p.regimes:
            self._draw_regimes()
        self.seed_book(self.start)
        bounds = self._boundaries()
        active: list[Interval] = []
        bi = 0
        agents = sorted(self.agents, key=lambda a: a.next_t)
        rng = self.rng
        rand = rng.random
        log = math.log
        tick = self.spec.tick
        best, levels, count = self.best, self.levels, self.count
        lv_bid, lv_ask = levels[BID], levels[ASK]
        decay, nlev = p.placement_decay, p.placement_levels
        log_decay = log(decay)
        qbar = p.queue_qbar_lots * self.spec.lot
        alpha = p.hawkes_branching * p.hawkes_beta
        beta = p.hawkes_beta
        mu_m0 = self.mu_m * (1.0 - p.hawkes_branching)  # so the mean market rate is mu_m
        mu_l, theta = self.mu_l, self.theta
        season_depth = p.seasonality
        meta_sign, meta_left = 1, 0
        hawkes = 0.0  # excitation at time t
        efficient = p.efficient_price
        fair = float(self.spec.price + tick // 2)  # the seeded book's mid
        pending, pending_t = 0.0, 0  # the part of news steps the efficient price has yet to take, since when
        discovery_ns = p.news_discovery_s * SEC
        sigma, gauss, info = p.price_vol * tick, rng.gauss, p.info_lean
        mu_s = mu_l * p.stale_pull if efficient else 0.0
        post_only = p.post_only
        lam_s = 0.0
        eff = NEUTRAL
        t = self.start
        halted = False
        while True:
            # the next boundary where the effects change, or the next agent action
            t_bound = bounds[bi][0] if bi < len(bounds) else self.end
            t_agent = agents[0].next_t if agents else self.end
            t_stop = min(t_bound, t_agent, self.end)
            if halted:
                lam_bar = 0.0
            else:
                s = seasonality(t, season_depth)
                lam_l = mu_l * s * eff.lim
                lam_c = theta * (count[BID] * eff.can_bid + count[ASK] * eff.can_ask)
                lam_m0 = mu_m0 * s * eff.mkt
                lam_p = mu_l * s * (eff.pull_bid + eff.pull_ask)
                lam_s = mu_s * s
                lam_bar = lam_s + lam_p + lam_l + lam_c + lam_m0 + hawkes
            if lam_bar > 0.0:
                dt = int(-log(1.0 - rand()) / lam_bar * SEC) + 1
            else:
                dt = t_stop - t + 1
            if t + dt >= t_stop:  # memoryless: move to the stop and draw afresh
                hawkes *= math.exp(-beta * (t_stop - t) / SEC)
                t = t_stop
                if t >= self.end:
                    break
                if t == t_agent and agents:
                    a = agents.pop(0)
                    if halted:
                        a.skip(t)  # agents sleep through a halt
                    else:
                        a.act(self, t)
                        self._refill(t, fair if efficient else 0.0)
                    if a.next_t < self.end:
                        bisect.insort(agents, a, key=lambda x: x.next_t)
                while bi < len(bounds) and bounds[bi][0] <= t:
                    _, is_start, w = bounds[bi]
                    if is_start:
                        active.append(w)
                        if efficient and w.jump:
                            step = w.jump * fair
                            if discovery_ns > 0:
                                pending, pending_t = pending + (1.0 - p.news_at_once) * step, t
                                step *= p.news_at_once
                            fair += step
                            self.reprice(t, fair)
                    else:
                        active.remove(w)
                    bi += 1
                    eff = NEUTRAL
                    for x in active:
                        eff = eff.combine(x.effect)
                    eff = eff.clamped(0.9 / p.hawkes_branching)
                    if eff.halted != halted:
                        halted = eff.halted
                        self._emit(Kind.STATUS, t, Side.NONE, 0, 0, 0, int(Status.HALTED if halted else Status.TRADING))
                self.effect = eff
                continue
            t += dt
            hawkes *= math.exp(-beta * dt / SEC)
            lam = lam_s + lam_p + lam_l + lam_c + lam_m0 + hawkes
            u = rand() * lam_bar
            if u >= lam:  # thinning: the excitation decayed during the wait
                continue
            if efficient:
                if pending:
                    taken = pending * (1.0 - math.exp((pending_t - t) / discovery_ns))
                    fair, pending, pending_t = fair + taken, pending - taken, t
                if u < lam_s:  # quotes the efficient price has passed (none: thinned)
                    self.pull_stale(t, fair)
                    continue
                u -= lam_s
                fair += gauss(0.0, sigma * eff.vol)
            if u < lam_p:  # a quote pulled from the touch (news)
                self.pull(t, BID if rand() * (eff.pull_bid + eff.pull_ask) < eff.pull_bid else ASK)
                continue
            u -= lam_p
            if u < lam_l:  # limit order
                side = BID if rand() < 0.5 else ASK
                if efficient:  # quoted around the efficient price: the ticks either side of it
                    bid_ref = int(fair // tick) * tick
                else:  # improving the best while the spread is wider than a tick
                    bid_ref = (best[ASK] or self.spec.price + tick) - tick
                ask_ref = bid_ref + tick if efficient else (best[BID] or self.spec.price) + tick
                for _ in range(3):
                    d = int(log(1.0 - rand()) / log_decay)
                    if d >= nlev:
                        d = nlev - 1
                    d += eff.gap
                    if side == BID:
                        price = bid_ref - d * tick
                        q = lv_bid.get(price, 0)
                    else:
                        price = ask_ref + d * tick
                        q = lv_ask.get(price, 0)
                    if rand() * (qbar + q) < qbar:
                        break
                if price > 0:
                    if efficient and (price >= best[ASK] if side == BID else price <= best[BID]):
                        if post_only and rand() < post_only:  # no draw at 0: TAKER_REPRICING's stream unchanged
                            self.add(t, side, best[ASK] - tick if side == BID else best[BID] + tick, self.lot_size())
                        else:
                            self.marketable(t, side, price, self.lot_size())
                    else:
                        self.add(t, side, price, self.lot_size())
            elif u < lam_l + lam_c:  # cancel
                side = BID if rand() * lam_c < theta * count[BID] * eff.can_bid else ASK
                if count[side] <= 1:
                    continue
                oid = self.random_order(side)
                if oid is None:
                    continue
                o = self.orders[oid]
                if o[2] > self.spec.lot and rand() < p.partial_cancel:
                    self.cancel_part(t, oid, self.spec.lot * (1 + int(rand() * (o[2] // self.spec.lot - 1))))
                else:
                    self.delete(t, oid)
            else:  # market order
                if meta_left > 0 and rand() < p.p_meta:
                    sign = meta_sign
                    meta_left -= 1
                else:
                    if meta_left <= 0:
                        meta_left = int((1.0 - rand()) ** (-1.0 / p.meta_tail))
                        meta_sign = 1 if rand() < 0.5 + eff.bias else -1
                    qb = lv_bid.get(best[BID], 0)
                    qa = lv_ask.get(best[ASK], 0)
                    imb = (qb - qa) / (qb + qa) if qb + qa else 0.0
                    lean = 0.5 + p.imbalance_lean * imb + eff.bias
                    if efficient:  # informed: toward the efficient price, at most `info` a tick away
                        x = (fair - (best[BID] + best[ASK]) * 0.5) / tick
                        lean += info * (x if -1.0 < x < 1.0 else 1.0 if x > 0 else -1.0)
                    sign = 1 if rand() < lean else -1
                size = int(self.lot_size() * eff.size) // self.spec.lot * self.spec.lot or self.spec.lot
                self.market(t, BID if sign > 0 else ASK, size)
                hawkes += alpha * eff.excite
            self._refill(t, fair if efficient else 0.0)
        return self.out

    def _refill(self, t: int, fair: float = 0.0) -> None:
        """Keep both sides non-empty: a side left with one order gets one more behind it (QR's rule
        that a new queue appears when the last one depletes), or, given the efficient price `fair`, at
        the tick next to it (else a side swept bare would climb a tick per order that takes it)."""
        if len(self.out) > self.max_events:
            raise RuntimeError(f"{self.spec.name}: over {self.max_events} events by {t} ns: the flow ran away")
        tick = self.spec.tick
        below = int(fair // tick) * tick  # the tick at or below the efficient price
        for side in (BID, ASK):
            if self.count[side] < 2:
                other = self.best[ASK if side == BID else BID]
                if side == BID:
                    price = max(tick, min(below, other - tick) if fair else (self.best[BID] or other) - tick)
                else:
                    price = max(below + tick, other + tick) if fair else (self.best[ASK] or other) + tick
                self.add(t, side, price, self.lot_size())


# The flow before makers repriced (until 2026-12-05): every crossing limit order took, a stale pull took one
# order, and three times the market orders (`--taker-repricing`).
TAKER_REPRICING = {
    "market_to_limit": 0.09,
    "post_only": 0.0,
    "stale_pull": 0.5,
    "stale_level": False,
    "price_vol": 0.15,
}
# The simulator before the efficient price (`--queue-price`), with the market orders it had then.
QUEUE_PRICE = {**TAKER_REPRICING, "efficient_price": False}


@dataclass
class SimConfig:
    """What to simulate; every random choice follows from `seed`."""

    n_symbols: int = 3
    duration_ns: int = DAY_NS
    seed: int = 1
    start_ns: int = OPEN_NS
    symbols: list[SymbolSpec] | None = None
    flow: FlowParams = field(default_factory=FlowParams)
    anomaly_rates: dict[str, float] = field(default_factory=dict)  # kind -> windows per symbol per hour
    anomaly_intensity: float | tuple[float, float] = 1.0  # model.sim.anomalies.parse_intensity
    news_rate: float = 0.0  # headlines per symbol per hour
    news_effect_s: float = 300.0
    news_jump: float = 0.01  # an earnings headline's step of the efficient price (FlowParams.efficient_price)
    halt_s: float = 300.0
    snapshot_every: int = 0
    news: list | None = None  # model.sim.news.NewsItem list to use instead of drawing news_rate headlines

    def specs(self) -> list[SymbolSpec]:
        return self.symbols if self.symbols is not None else default_symbols(self.n_symbols)


@dataclass
class SimResult:
    """A simulated multi-symbol stream and its ground truth."""

    config: SimConfig
    symbols: list[SymbolSpec]
    events: list[Event]  # all symbols, time ordered, seq = 1.. in this order
    news: list  # model.sim.news.NewsItem
    labels: list  # model.sim.anomalies.Label
    regimes: dict[str, list[tuple[int, int, str]]]
    snapshots: dict[str, list[Snapshot]]
    final: dict[str, Snapshot]

    @property
    def start_ns(self) -> int:
        return self.config.start_ns

    @property
    def end_ns(self) -> int:
        return self.config.start_ns + self.config.duration_ns
