"""Stylized facts of order flow: real captures against simulated streams, as a table and PNG plots.

A `Series` is what the statistics need of one symbol's stream, taken after every message that
changed its book: exchange time, best bid and ask, top-5 depth per side, and how many adds,
cancels and trades the message carried; plus every trade's time, sign and size. It is built by
replaying a capture through the venue's own feed (`series_from_capture`) or by applying
normalized events to a book (`series_from_events`), so real and simulated data go through the
same book code.

The facts (Cont 2001, "Empirical properties of asset returns: stylized facts and statistical
issues"; Bouchaud, Bonart, Donier & Gould 2018, "Trades, Quotes and Prices", ch. 2, 10, 11;
Chakraborti, Toke, Patriarca & Abergel 2011, "Econophysics review I"):
- heavy tails: kurtosis of mid log-returns, in event time (every k-th book change) and in
  calendar time (1 s, 10 s, 60 s, sampled with the last mid at or before each instant);
- volatility clustering: autocorrelation of |r| (event-time returns) at lags 1..50;
- long memory of order signs: the autocorrelation of trade signs at lags 1..100 decays as a
  power law lag^-gamma with 0 < gamma < 1 (Lillo & Farmer 2004), gamma fitted by least squares
  on log-log axes over the lags where it is positive;
- how often the mid is unchanged k book changes later (k = 10, 100): the "stationary" class of
  the model's mid-direction task (model/network/direction.py), and how far the price moves at all;
- spread (in ticks) and top-5 depth distributions;
- inter-arrival times of trades: mean, coefficient of variation (1 for a Poisson process),
  the Weibull shape fitted by maximum likelihood (< 1: burstier than Poisson), the fraction
  under 1 ms;
- the cancel-to-trade ratio; the intraday activity profile (only for a stream longer than 6 h).

Counting flow on an L2 book is `orderbook.features.LevelFlow`'s, as FeatureState's: a level update
that raises a level's size is an add, one that lowers it is a cancel unless trades at that
price and side explain the decrease (traded volume is a credit the next decreases use first).
On an L3 book: ADD is an add, CANCEL/DELETE/CHANGE a cancel, REPLACE both, EXECUTE/TRADE a trade.
Trade signs come from `orderbook.features.TradeClassifier` (aggressor flags, else Lee-Ready).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orderbook.book import Book, BookType, L2Book, L3Book
from orderbook.errors import FeedError
from orderbook.events import NS_PER_S, Event, Kind, Side
from orderbook.features import CANCEL_KINDS, TRADE_KINDS, LevelFlow, TradeClassifier, depth_levels, infer_tick
from orderbook.venues import Record, feed_class, fixed_tick

DEPTH_LEVELS = 5
SEC = NS_PER_S
MS = 1_000_000
DAY_NS = 86_400 * SEC
CALENDAR_SCALES_S = (1, 10, 60)
EVENT_SCALES = (1, 10, 100)
UNCHANGED_SCALES = (10, 100)
ABS_ACF_LAGS = 50
SIGN_ACF_LAGS = 100
MIN_RETURNS = 30  # fewer returns than this: a moment or an ACF is noise, reported as n/a
MIN_FIT_POINTS = 10
INTRADAY_MIN_SPAN_NS = 6 * 3600 * SEC
INTRADAY_BUCKET_NS = 1800 * SEC
MAX_TICK_PRICES = 20_000  # distinct book prices kept to infer a tick

# The real captures in shared/data (see its SOURCES.md): (family, venue, path)
REAL_CAPTURES: tuple[tuple[str, str, str], ...] = (
    ("binance-spot", "binance", "binance-hftbacktest/spot_btcusdt_20240808.gz"),
    ("binance-spot", "binance", "binance-hftbacktest/spot_ethusdt_20240808.gz"),
    ("binance-usdm", "binance", "binance-hftbacktest/usdm_btcusdt_20240808.gz"),
    ("binance-usdm", "binance", "binance-hftbacktest/usdm_ethusdt_20240808.gz"),
    ("binance-coinm", "binance", "binance-hftbacktest/cm_btcusd_perp_20240808.gz"),
    ("binance-coinm", "binance", "binance-hftbacktest/cm_ethusd_perp_20240808.gz"),
    ("coinbase-level2", "coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz"),
    ("kraken-book", "kraken", "cryptofeed-captures/KRAKEN.ws.50.0.gz"),
)


@dataclass
class Series:
    """One symbol's stream, one row per message that changed the book (prices in venue units).

    Row arrays (same length): `ts` (exchange time, ns, made non-decreasing), `bid`, `ask`,
    `bid_depth`/`ask_depth` (top-5 levels, lots), `adds`, `cancels`, `trades` (counts in the
    message; trades printed by messages that left the book alone, as on Binance's trade stream,
    are counted on the next row). Trade arrays: `trade_ts`, `trade_sign` (+1 buyer-initiated,
    -1 seller-initiated, 0 unknown), `trade_size`. Rows where one side is empty are left out
    (`one_sided` counts them); `crossed` counts rows with bid >= ask; `errors` the feed errors
    by reason.
    """

    venue: str
    symbol: str
    tick: int
    ts: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_depth: np.ndarray
    ask_depth: np.ndarray
    adds: np.ndarray
    cancels: np.ndarray
    trades: np.ndarray
    trade_ts: np.ndarray
    trade_sign: np.ndarray
    trade_size: np.ndarray
    source: str = ""  # the capture family ("binance-spot", "simulated", ...); the venue if not given
    errors: dict[str, int] = field(default_factory=dict)
    crossed: int = 0
    one_sided: int = 0

    @property
    def mid(self) -> np.ndarray:
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> np.ndarray:
        return self.ask - self.bid

    @property
    def spread_ticks(self) -> np.ndarray:
        return self.spread / self.tick

    @property
    def duration_s(self) -> float:
        return float(self.ts[-1] - self.ts[0]) / SEC if len(self.ts) > 1 else 0.0

    def __len__(self) -> int:
        return len(self.ts)


# --------------------------------------------------------------------------- building series


class _Recorder:
    """Builds one symbol's Series, message by message (see the module docstring for the counts)."""

    def __init__(self, venue: str, symbol: str, book_type: BookType) -> None:
        self.venue, self.symbol, self.l2 = venue, symbol, book_type is BookType.L2
        self.rows: list[tuple[int, int, int, int, int, int, int, int]] = []
        self.trade_rows: list[tuple[int, int, int]] = []
        self.levels = LevelFlow()
        self.classifier = TradeClassifier()
        self.prices: set[int] = set()
        self.in_snapshot = False
        self.adds = self.cancels = self.trades = 0  # not yet on a row
        self.last_ts = 0
        self.mid2: int | None = None  # at the end of the previous row: the prevailing mid of a trade
        self.crossed = self.one_sided = 0
        self.errors: Counter[str] = Counter()

    def message(self, events: Sequence[Event], book: Book, recv_ts: int) -> None:
        changed = False
        ts = self.last_ts
        for e in events:
            ts = max(ts, e.ts or recv_ts)
            changed = self._event(e, ts) or changed
        self.last_ts = ts
        if changed:
            self._row(book, ts)

    def _event(self, e: Event, ts: int) -> bool:
        """Count one event; True when it changed the book."""
        k = e.kind
        if k in (Kind.SNAPSHOT_BEGIN, Kind.CLEAR):
            self.levels.clear()
            self.in_snapshot = k == Kind.SNAPSHOT_BEGIN
            return True
        if k == Kind.SNAPSHOT_END:
            self.in_snapshot = False
            return True
        if k in (Kind.LEVEL_SET, Kind.ADD) and len(self.prices) < MAX_TICK_PRICES:
            self.prices.add(e.price)
        if self.in_snapshot:  # state, not flow
            if k == Kind.LEVEL_SET:
                self.levels.level_set(e)
            return True
        if k == Kind.LEVEL_SET:
            delta = self.levels.level_set(e)
            if delta > 0:
                self.adds += 1
            elif delta < 0 and self.levels.is_cancel(e.side, e.price, -delta):
                self.cancels += 1
            return True
        if k in TRADE_KINDS:
            self._trade(e, ts)
            return k == Kind.EXECUTE and not self.l2
        if k == Kind.ADD:
            self.adds += 1
        elif k in CANCEL_KINDS or k == Kind.CHANGE:  # Coinbase: "orders can only decrease in size"
            self.cancels += 1
        elif k == Kind.REPLACE:
            self.adds += 1
            self.cancels += 1
        else:
            return False  # STATUS
        return True

    def _trade(self, e: Event, ts: int) -> None:
        sign = self.classifier.sign(e, self.mid2)
        self.trade_rows.append((ts, sign, e.size))
        self.trades += 1
        if self.l2 and sign and e.price:
            self.levels.traded(Side.ASK if sign > 0 else Side.BID, e.price, e.size)  # the resting side hit

    def _row(self, book: Book, ts: int) -> None:
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            self.one_sided += 1
            self.mid2 = None
            return
        if bb[0] >= ba[0]:
            self.crossed += 1
        self.mid2 = bb[0] + ba[0]
        bd, ad = depth_levels(book, Side.BID, DEPTH_LEVELS), depth_levels(book, Side.ASK, DEPTH_LEVELS)
        self.rows.append((ts, bb[0], ba[0], bd, ad, self.adds, self.cancels, self.trades))
        self.adds = self.cancels = self.trades = 0

    def series(self, source: str) -> Series:
        rows = np.array(self.rows, dtype=np.int64).reshape(-1, 8)
        trades = np.array(self.trade_rows, dtype=np.int64).reshape(-1, 3)
        tick = fixed_tick(self.venue) or infer_tick(sorted(self.prices))
        return Series(
            venue=self.venue,
            symbol=self.symbol,
            tick=tick,
            ts=np.maximum.accumulate(rows[:, 0]) if len(rows) else rows[:, 0],
            bid=rows[:, 1],
            ask=rows[:, 2],
            bid_depth=rows[:, 3],
            ask_depth=rows[:, 4],
            adds=rows[:, 5].astype(np.int32),
            cancels=rows[:, 6].astype(np.int32),
            trades=rows[:, 7].astype(np.int32),
            trade_ts=np.maximum.accumulate(trades[:, 0]) if len(trades) else trades[:, 0],
            trade_sign=trades[:, 1].astype(np.int8),
            trade_size=trades[:, 2],
            source=source or self.venue,
            errors=dict(self.errors),
            crossed=self.crossed,
            one_sided=self.one_sided,
        )


def _by_symbol(events: Sequence[Event]) -> Iterator[tuple[str, list[Event]]]:
    """A message's events per symbol, in order (almost always one symbol)."""
    first = events[0].symbol
    if all(e.symbol == first for e in events):
        yield first, list(events)
        return
    groups: dict[str, list[Event]] = {}
    for e in events:
        groups.setdefault(e.symbol, []).append(e)
    yield from groups.items()


def _records(feed_cls: type, path: Path, errors: Counter[str]) -> Iterator[Record]:
    """The capture's records; a reader that fails part-way ends the capture there, counted."""
    try:
        yield from feed_cls.read_capture(path)
    except FeedError as err:
        errors[f"capture_{err.reason}"] += 1


def series_from_capture(venue: str, path: str | Path, *, source: str = "") -> dict[str, Series]:
    """Replay a recorded or simulated file through `feed_class(venue)`: one Series per symbol.

    Feed errors are counted by reason in each symbol's `Series.errors` (in every symbol's when
    the error names none) and skipped; the feed has already put the book where its venue says.
    The crossed-book check is off in the feed: crossed rows are counted in `Series.crossed`.
    """
    feed_cls = feed_class(venue)
    feed = feed_cls(check_crossed=False)
    recorders: dict[str, _Recorder] = {}
    unnamed: Counter[str] = Counter()
    for rec in _records(feed_cls, Path(path), unnamed):
        try:
            events = feed.on_message(rec.raw, rec.recv_ts)
        except FeedError as err:
            target = recorders.get(err.symbol)
            (target.errors if target is not None else unnamed)[err.reason] += 1
            continue
        if not events:
            continue
        for symbol, evs in _by_symbol(events):
            r = recorders.get(symbol)
            if r is None:
                r = recorders[symbol] = _Recorder(venue, symbol, feed.books[symbol].book_type)
            r.message(evs, feed.books[symbol], rec.recv_ts)
    for symbol, book in feed.books.items():  # a book that never got past its sync still gets its (empty) series
        if symbol not in recorders:
            recorders[symbol] = _Recorder(venue, symbol, book.book_type)
    for r in recorders.values():
        r.errors.update(unnamed)
    return {symbol: r.series(source) for symbol, r in recorders.items()}


def series_from_events(events: Iterable[Event], book_type: BookType, *, source: str = "") -> dict[str, Series]:
    """The same from normalized events applied to an L2Book/L3Book per symbol.

    A message is a run of consecutive events with the same symbol and `seq` (a venue's events of
    one message share its sequence number). An event the book refuses is counted in `errors` by
    reason and left out.
    """
    books: dict[str, Book] = {}
    recorders: dict[str, _Recorder] = {}
    cls = L3Book if book_type is BookType.L3 else L2Book
    message: list[Event] = []

    def flush() -> None:
        if message:
            symbol = message[0].symbol
            recorders[symbol].message(message, books[symbol], 0)
            message.clear()

    for e in events:
        if message and (e.symbol != message[0].symbol or e.seq != message[0].seq):
            flush()
        book = books.get(e.symbol)
        if book is None:
            book = books[e.symbol] = cls(e.venue, e.symbol)
            recorders[e.symbol] = _Recorder(e.venue, e.symbol, book_type)
        try:
            book.apply(e)
        except FeedError as err:
            recorders[e.symbol].errors[err.reason] += 1
            continue
        message.append(e)
    flush()
    return {symbol: r.series(source) for symbol, r in recorders.items()}


def real_series(shared_data_dir: str | Path) -> dict[str, Series]:
    """Every real L2 capture of REAL_CAPTURES found under `shared_data_dir`, keyed `family:symbol`."""
    out: dict[str, Series] = {}
    for family, venue, rel in REAL_CAPTURES:
        path = Path(shared_data_dir) / rel
        if not path.exists():
            continue
        for symbol, s in series_from_capture(venue, path, source=family).items():
            out[f"{family}:{symbol}"] = s
    return out


# --------------------------------------------------------------------------- statistics


def kurtosis(x: np.ndarray) -> float:
    """Pearson's kurtosis E[(x-m)^4] / Var(x)^2 (3 for a Gaussian); nan under MIN_RETURNS values or no variance."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < MIN_RETURNS:
        return math.nan
    d = x - x.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0:
        return math.nan
    return float(np.mean(d**4) / (m2 * m2))


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation at lags 1..max_lag (Box & Jenkins' estimator: sum over n, one variance);
    all nan when the series is shorter than MIN_RETURNS + max_lag or constant."""
    x = np.asarray(x, dtype=float)
    out = np.full(max_lag, math.nan)
    n = len(x)
    if n < MIN_RETURNS + max_lag:
        return out
    d = x - x.mean()
    var = float(np.dot(d, d))
    if var <= 0:
        return out
    for k in range(1, max_lag + 1):
        out[k - 1] = float(np.dot(d[:-k], d[k:])) / var
    return out


def power_law_exponent(values: np.ndarray, lags: np.ndarray | None = None, floor: float = 0.0) -> float:
    """gamma of values ~ C lag^-gamma: least squares of log(value) on log(lag) over the values above `floor`.

    With `floor` = 2/sqrt(n), the 95% band of a white-noise ACF (Box & Jenkins), only lags with
    significant positive correlation enter the fit, so noise is not mistaken for slow decay.
    nan with fewer than MIN_FIT_POINTS such lags (no memory to fit).
    """
    values = np.asarray(values, dtype=float)
    lags = np.arange(1, len(values) + 1) if lags is None else np.asarray(lags, dtype=float)
    ok = np.isfinite(values) & (values > max(floor, 0.0))
    if ok.sum() < MIN_FIT_POINTS:
        return math.nan
    slope, _ = np.polyfit(np.log(lags[ok]), np.log(values[ok]), 1)
    return float(-slope)


def weibull_shape(x: np.ndarray) -> float:
    """Maximum-likelihood Weibull shape k of positive samples (1: exponential, < 1: bursty).

    Solves the profile-likelihood equation 1/k + mean(log x) - sum(x^k log x)/sum(x^k) = 0
    (Cohen 1965, "Maximum likelihood estimation in the Weibull distribution"), which is
    decreasing in k, by bisection on [0.01, 50]; the samples are scaled by their mean first.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    if len(x) < MIN_RETURNS or np.all(x == x[0]):
        return math.nan
    lx = np.log(x / x.mean())
    mean_lx = lx.mean()

    def score(k: float) -> float:
        w = np.exp(k * lx - np.max(k * lx))
        return 1.0 / k + mean_lx - float(np.dot(w, lx) / w.sum())

    lo, hi = 0.01, 50.0
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if score(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def event_returns(mid: np.ndarray, k: int = 1) -> np.ndarray:
    """Log-returns of the mid between every k-th row (event time)."""
    m = np.asarray(mid, dtype=float)[::k]
    return np.diff(np.log(m)) if len(m) > 1 else np.empty(0)


def unchanged_share(mid: np.ndarray, tick: float, k: int) -> float:
    """The share of rows whose mid k rows later is within half a tick of theirs (unchanged: a mid
    lives on a half-tick grid); nan under MIN_RETURNS pairs."""
    m = np.asarray(mid, dtype=float)
    if len(m) - k < MIN_RETURNS:
        return math.nan
    return float(np.mean(np.abs(m[k:] - m[:-k]) < tick / 2.0))


def calendar_returns(ts: np.ndarray, mid: np.ndarray, step_ns: int) -> np.ndarray:
    """Log-returns of the mid on a grid of `step_ns` from the first row (the last mid at or before each instant)."""
    if len(ts) < 2:
        return np.empty(0)
    n = int((ts[-1] - ts[0]) // step_ns)
    if n < 1:
        return np.empty(0)
    grid = ts[0] + step_ns * np.arange(n + 1, dtype=np.int64)
    idx = np.searchsorted(ts, grid, side="right") - 1
    return np.diff(np.log(np.asarray(mid, dtype=float)[idx]))


def intraday_profile(ts: np.ndarray, bucket_ns: int = INTRADAY_BUCKET_NS) -> np.ndarray:
    """Rows per time-of-day bucket from the first to the last bucket seen (empty under 6 h of data)."""
    if len(ts) < 2 or ts[-1] - ts[0] < INTRADAY_MIN_SPAN_NS:
        return np.empty(0)
    b = (np.asarray(ts) % DAY_NS) // bucket_ns
    lo = int(b.min())
    return np.bincount(b - lo).astype(float)


def _cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean()) if len(x) >= MIN_RETURNS and x.mean() > 0 else math.nan


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def _analyse(s: Series) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The facts of one series and the curves the plots draw."""
    nan = math.nan
    mid = s.mid
    facts: dict[str, float] = {"duration_s": s.duration_s, "rows": float(len(s)), "trades": float(len(s.trade_ts))}
    for k in EVENT_SCALES:
        facts[f"kurtosis_event_{k}"] = kurtosis(event_returns(mid, k))
    for sec in CALENDAR_SCALES_S:
        facts[f"kurtosis_{sec}s"] = kurtosis(calendar_returns(s.ts, mid, sec * SEC))
    for k in UNCHANGED_SCALES:
        facts[f"unchanged_event_{k}"] = unchanged_share(mid, s.tick, k)
    r = event_returns(mid, 1)
    abs_acf = acf(np.abs(r), ABS_ACF_LAGS)
    facts["absret_acf_mean_1_10"] = float(np.mean(abs_acf[:10]))
    facts["absret_acf_mean_41_50"] = float(np.mean(abs_acf[40:50]))
    signs = s.trade_sign[s.trade_sign != 0].astype(float)
    sign_acf = acf(signs, SIGN_ACF_LAGS)
    facts["sign_acf_1"] = float(sign_acf[0])
    facts["sign_acf_gamma"] = power_law_exponent(sign_acf, floor=2 / math.sqrt(max(len(signs), 1)))
    spread = s.spread_ticks[s.spread > 0]
    facts["spread_mean_ticks"] = _mean(spread)
    facts["spread_q90_ticks"] = float(np.quantile(spread, 0.9)) if len(spread) else nan
    facts["spread_one_tick_frac"] = float(np.mean(np.isclose(spread, 1.0))) if len(spread) else nan
    depth = ((s.bid_depth + s.ask_depth) / 2.0).astype(float)
    facts["depth5_median"] = float(np.median(depth)) if len(depth) else nan
    facts["depth5_cv"] = _cv(depth)
    msg_dt = np.diff(s.ts).astype(float) / SEC
    facts["msg_interarrival_cv"] = _cv(msg_dt)
    trade_dt = np.diff(s.trade_ts).astype(float) / SEC
    facts["trade_interarrival_mean_s"] = _mean(trade_dt)
    facts["trade_interarrival_cv"] = _cv(trade_dt)
    facts["trade_interarrival_weibull_k"] = weibull_shape(trade_dt)
    facts["trade_interarrival_below_1ms"] = float(np.mean(trade_dt < 1e-3)) if len(trade_dt) else nan
    n_trades = int(s.trades.sum())
    facts["cancel_to_trade"] = float(s.cancels.sum()) / n_trades if n_trades else nan
    profile = intraday_profile(s.ts)
    facts["intraday_peak_to_mean"] = float(profile.max() / profile.mean()) if len(profile) else nan
    curves = {
        "returns_1s": calendar_returns(s.ts, mid, SEC),
        "abs_acf": abs_acf,
        "sign_acf": sign_acf,
        "spread_ticks": spread,
        "trade_dt": trade_dt,
        "intraday": profile,
    }
    return facts, curves


def stylized_facts(series: Series) -> dict[str, float]:
    """The scalar facts of one series (nan where the data cannot say: too short, no trades, ...)."""
    return _analyse(series)[0]


# --------------------------------------------------------------------------- the report

Verdict = Callable[[float, float], str]


def _same_side(threshold: float) -> Verdict:
    def verdict(real: float, sim: float) -> str:
        return "match" if (real > threshold) == (sim > threshold) else "no match"

    return verdict


def _within_factor(factor: float) -> Verdict:
    def verdict(real: float, sim: float) -> str:
        if real <= 0 or sim <= 0:
            return "match" if real == sim else "no match"
        return "match" if max(real / sim, sim / real) <= factor else "no match"

    return verdict


def _within(diff: float) -> Verdict:
    return lambda real, sim: "match" if abs(real - sim) <= diff else "no match"


def _long_memory(gamma: float) -> bool:
    return 0 < gamma < 1


@dataclass(frozen=True)
class Fact:
    key: str
    label: str
    criterion: str  # in words, for the table
    verdict: Verdict | None  # None: shown for information only


HEAVY = _same_side(3.0)
FACTS: tuple[Fact, ...] = (
    *(
        Fact(
            f"kurtosis_event_{k}",
            f"return kurtosis, every {k} book change(s)",
            "kurtosis > 3 in both or in neither",
            HEAVY,
        )
        for k in EVENT_SCALES
    ),
    *(
        Fact(f"kurtosis_{s}s", f"return kurtosis, {s} s", "kurtosis > 3 in both or in neither", HEAVY)
        for s in CALENDAR_SCALES_S
    ),
    *(
        Fact(f"unchanged_event_{k}", f"mid unchanged after {k} book changes (share)", "within 0.25", _within(0.25))
        for k in UNCHANGED_SCALES
    ),
    Fact(
        "absret_acf_mean_1_10",
        "|r| ACF, mean of lags 1-10 (event time)",
        "clustering (> 0.02) in both or in neither",
        _same_side(0.02),
    ),
    Fact("absret_acf_mean_41_50", "|r| ACF, mean of lags 41-50", "information (decay: compare with lags 1-10)", None),
    Fact("sign_acf_1", "trade-sign ACF at lag 1", "positive (> 0.05) in both or in neither", _same_side(0.05)),
    Fact(
        "sign_acf_gamma",
        "trade-sign ACF power-law exponent gamma",
        "long memory (0 < gamma < 1) in both or in neither",
        lambda r, s: "match" if _long_memory(r) == _long_memory(s) else "no match",
    ),
    Fact("spread_mean_ticks", "spread, mean (ticks)", "within a factor of 3", _within_factor(3.0)),
    Fact("spread_q90_ticks", "spread, 90th percentile (ticks)", "within a factor of 3", _within_factor(3.0)),
    Fact("spread_one_tick_frac", "spread, fraction at one tick", "within 0.25", _within(0.25)),
    Fact("depth5_median", "top-5 depth per side, median (lots)", "information (lots differ by venue)", None),
    Fact("depth5_cv", "top-5 depth, coefficient of variation", "within a factor of 3", _within_factor(3.0)),
    Fact("msg_interarrival_cv", "book-change inter-arrival CV", "information (Binance batches depth per 100 ms)", None),
    Fact("trade_interarrival_mean_s", "trade inter-arrival, mean (s)", "information (activity level)", None),
    Fact(
        "trade_interarrival_cv",
        "trade inter-arrival CV",
        "bursty (> 1, Poisson = 1) in both or in neither",
        _same_side(1.0),
    ),
    Fact(
        "trade_interarrival_weibull_k",
        "trade inter-arrival Weibull shape",
        "< 1 in both or in neither",
        lambda r, s: "match" if (r < 1) == (s < 1) else "no match",
    ),
    Fact("trade_interarrival_below_1ms", "trades arriving < 1 ms after the previous", "information", None),
    Fact("cancel_to_trade", "cancel-to-trade ratio", "within a factor of 3", _within_factor(3.0)),
    Fact(
        "intraday_peak_to_mean",
        "intraday activity, busiest 30-min bucket / mean",
        "needs a full day on both sides",
        None,
    ),
)


def _nanmedian(values: Iterable[float]) -> float:
    v = np.array([x for x in values if np.isfinite(x)], dtype=float)
    return float(np.median(v)) if len(v) else math.nan


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _verdict(fact: Fact, real: float, sim: float) -> str:
    if fact.key == "intraday_peak_to_mean" and not np.isfinite(real):
        return "n/a on real data (capture shorter than a day)"
    if fact.verdict is None:
        return "info"
    if not np.isfinite(real):
        return "n/a (real data too short or without trades)"
    if not np.isfinite(sim):
        return "no match (simulated: not measurable)"
    return fact.verdict(real, sim)


def _families(series: dict[str, Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for s in series.values():
        out.setdefault(s.source or s.venue, []).append(s)
    return out


def report(real: dict[str, Series], simulated: dict[str, Series], out_dir: Path) -> str:
    """Compare the facts of real and simulated series; write stylized_facts.md and PNG plots to `out_dir`.

    Values on each side: the median over each family's symbols, then the median over the families
    (so a family with many thin symbols does not outvote one with two deep ones); the simulated
    symbols are one family. The verdict applies the fact's stated criterion to those two numbers.
    Returns the markdown.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysed = {name: _analyse(s) for name, s in {**_prefixed("real", real), **_prefixed("sim", simulated)}.items()}

    def by_family(prefix: str, series: dict[str, Series]) -> dict[str, dict[str, float]]:
        return {fam: {f.key: _nanmedian(analysed[f"{prefix}:{_key(series, s)}"][0][f.key] for s in members)
                      for f in FACTS} for fam, members in _families(series).items()}  # fmt: skip

    def overall(fam_facts: dict[str, dict[str, float]]) -> dict[str, float]:
        return {f.key: _nanmedian(ff[f.key] for ff in fam_facts.values()) for f in FACTS}

    fams = _families(real)
    fam_facts = by_family("real", real)
    real_facts, sim_facts = overall(fam_facts), overall(by_family("sim", simulated))
    lines = _header(fams, simulated)
    head = ["fact", *fams, "real (median of families)", "simulated", "verdict", "criterion"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for f in FACTS:
        label = f.label.replace("|", "\\|")  # a bare | would end the markdown cell
        cells = [label, *(_fmt(fam_facts[fam][f.key]) for fam in fams), _fmt(real_facts[f.key])]
        cells += [_fmt(sim_facts[f.key]), _verdict(f, real_facts[f.key], sim_facts[f.key]), f.criterion]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_plots(analysed, fams, real, simulated, out_dir)]
    text = "\n".join(lines) + "\n"
    (out_dir / "stylized_facts.md").write_text(text)
    return text


def _prefixed(prefix: str, series: dict[str, Series]) -> dict[str, Series]:
    return {f"{prefix}:{k}": s for k, s in series.items()}


def _key(series: dict[str, Series], s: Series) -> str:
    return next(k for k, v in series.items() if v is s)


def _header(fams: dict[str, list[Series]], simulated: dict[str, Series]) -> list[str]:
    lines = ["# Stylized facts: real captures vs simulated order flow", ""]
    for fam, members in fams.items():
        spans = [s.duration_s for s in members]
        lines.append(
            f"- real `{fam}`: {len(members)} symbol(s), {sum(len(s) for s in members)} book changes, "
            f"{sum(len(s.trade_ts) for s in members)} trades, spanning {min(spans) / 60:.1f}-{max(spans) / 60:.1f} min"
        )
    spans = [s.duration_s for s in simulated.values()] or [0.0]
    lines.append(
        f"- simulated: {len(simulated)} symbol(s), {sum(len(s) for s in simulated.values())} book changes, "
        f"spanning up to {max(spans) / 3600:.2f} h"
    )
    lines += [
        "",
        "The real captures last minutes, not days: calendar-time statistics at scales the capture cannot",
        f"hold {MIN_RETURNS} returns of are n/a, and the intraday profile needs a full day. Verdicts compare the",
        "real value (median of the families' medians) with the simulated median by the criterion in the",
        "last column; 'info' rows are not comparable across venues.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- plots


def _plots(
    analysed: dict[str, tuple[dict[str, float], dict[str, np.ndarray]]],
    fams: dict[str, list[Series]],
    real: dict[str, Series],
    simulated: dict[str, Series],
    out_dir: Path,
) -> list[str]:
    """The PNGs, one curve per real family and one for the simulated side; markdown links to them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {fam: [f"real:{_key(real, s)}" for s in members] for fam, members in fams.items()}
    groups["simulated"] = [f"sim:{k}" for k in simulated]

    def curves(name: str) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = {}
        for group, keys in groups.items():
            arrays = [analysed[k][1][name] for k in keys]
            out[group] = [a for a in arrays if len(a) and np.isfinite(a).any()]
        return out

    files = []
    for fname, title, draw in (
        ("returns_distribution.png", "1 s mid returns (standardized per symbol), log density", _draw_returns),
        ("absret_acf.png", "ACF of |r| (event time), mean over symbols", _draw_abs_acf),
        ("sign_acf.png", "trade-sign ACF (log-log, positive lags)", _draw_sign_acf),
        ("spread_distribution.png", "spread in ticks", _draw_spread),
        ("interarrival.png", "trade inter-arrival times (s)", _draw_interarrival),
        ("intraday.png", "activity per 30-min bucket (normalized)", _draw_intraday),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        draw(ax, curves)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=90)
        plt.close(fig)
        files.append(f"![{title}]({fname})")
    return files


def _draw_returns(ax, curves) -> None:  # type: ignore[no-untyped-def]
    bins = np.linspace(-8, 8, 65)
    for group, arrays in curves("returns_1s").items():
        z = [(a - a.mean()) / a.std() for a in arrays if a.std() > 0]
        if z:
            h, edges = np.histogram(np.concatenate(z), bins=bins, density=True)
            ax.semilogy((edges[:-1] + edges[1:]) / 2, np.where(h > 0, h, np.nan), marker=".", label=group)
    x = (bins[:-1] + bins[1:]) / 2
    ax.semilogy(x, np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi), "k--", label="Gaussian")
    ax.set_ylim(1e-5, 2.0)  # the Gaussian reference would otherwise stretch the axis to 1e-14
    ax.set_xlabel("standardized return")


def _draw_abs_acf(ax, curves) -> None:  # type: ignore[no-untyped-def]
    lags = np.arange(1, ABS_ACF_LAGS + 1)
    for group, arrays in curves("abs_acf").items():
        if arrays:
            ax.plot(lags, np.nanmean(np.vstack(arrays), axis=0), label=group)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("lag (book changes)")


def _draw_sign_acf(ax, curves) -> None:  # type: ignore[no-untyped-def]
    lags = np.arange(1, SIGN_ACF_LAGS + 1)
    for group, arrays in curves("sign_acf").items():
        if arrays:
            m = np.nanmean(np.vstack(arrays), axis=0)
            ax.loglog(lags, np.where(m > 0, m, np.nan), marker=".", ls="", label=group)
    ax.set_xlabel("lag (trades)")


def _draw_spread(ax, curves) -> None:  # type: ignore[no-untyped-def]
    bins = np.arange(0.5, 21.5, 1.0)
    for group, arrays in curves("spread_ticks").items():
        if arrays:
            ax.hist(np.clip(np.concatenate(arrays), 0, 20.4), bins=bins, density=True, histtype="step", label=group)
    ax.set_xlabel("spread (ticks, 20 = 20 or more)")


def _draw_interarrival(ax, curves) -> None:  # type: ignore[no-untyped-def]
    bins = np.logspace(-4, 3, 50)
    for group, arrays in curves("trade_dt").items():
        if arrays:
            x = np.concatenate(arrays)
            ax.hist(np.clip(x, 1e-4, 1e3), bins=bins, density=True, histtype="step", label=group)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds (< 0.1 ms shown at 0.1 ms)")


def _draw_intraday(ax, curves) -> None:  # type: ignore[no-untyped-def]
    for group, arrays in curves("intraday").items():
        for i, a in enumerate(arrays):
            ax.plot(a / a.mean(), label=group if i == 0 else None)
    if not ax.lines:
        ax.text(0.5, 0.5, "no stream spans a day", ha="center", transform=ax.transAxes)
    ax.set_xlabel("30-min bucket from the first")
