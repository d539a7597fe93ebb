"""A native pipeline's state as the reference's objects: `NativeVenueWindows.__getstate__()` -> `VenueWindows`.

Why: a partition whose native path panicked on the same batch again and again goes on on the reference
path (streams/partition.py). Its newest snapshot is a native state; without this the reference path
could not read it and the partition was rebuilt from its topic's first record (an hour for a busy day).
With it the reference path starts from the snapshot and replays only what came after.

    vw = reference_windows(nvw.__getstate__())   # or a state read back from `md.state`

The result continues exactly as the native state would have: the same later windows, rejects, books
and stats (tests/test_native_reference.py, every Binance capture cut at several points and a simulated
ITCH day). It is read from the native parts' own state layouts: the Rust feeds' dicts (binance.rs
`export`, itch.rs `state`, state.rs's packed books) and the window builder's bytes (pywindows.rs
`mod state`), so a change of either layout must change this reader too; the test catches one that
does not. What the native feeds do not keep is not made up: Binance's latest bookTicker per symbol
(`BinanceFeed.tickers`) and the mismatches' examples (`SyncStats.mismatches`) are diagnostics only
and start empty, as does `MultiLevelOFI.cumulative`, which no feature reads.
"""

from __future__ import annotations

import math
import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from ..book import L2Book, L3Book
from ..errors import FeedError
from ..events import Event, Kind, Side
from ..features import FeatureState
from ..sync import BookSync, SyncState
from ..venue_windows import VenueWindows
from ..venues.binance import MAX_PENDING_TICKERS, BinanceFeed, BookTicker, Diff, SyncStats
from ..venues.itch import ItchFeed
from ..windows import WindowBuilder, WindowConfig
from .venue_windows import STATE_KIND, STATE_VERSION

T = TypeVar("T")

BUILDER_VERSION = 2  # pywindows.rs STATE_VERSION: the builder layout read by `_Reader` below
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U64 = (1 << 64) - 1
_SIDES = {int(Side.BID): Side.BID, int(Side.ASK): Side.ASK}


def reference_windows(state: dict[str, Any]) -> VenueWindows:
    """The VenueWindows a `NativeVenueWindows.__getstate__()` state stands for; ValueError where the
    state is not one this reader knows (another kind or version of a part, a malformed value)."""
    if not isinstance(state, dict) or (state.get("kind"), state.get("version")) != (STATE_KIND, STATE_VERSION):
        got = (state.get("kind"), state.get("version")) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"NativeVenueWindows state {got!r}, this reads {(STATE_KIND, STATE_VERSION)}")
    try:
        venue = state["venue"]
        symbols = None if state["symbols"] is None else set(state["symbols"])
        vw = VenueWindows(venue, state["config"], symbols=symbols, ticks=dict(state["ticks"]),
                          max_bytes=state["max_bytes"])  # fmt: skip
        vw.news = {k: [tuple(item) for item in v] for k, v in state["news"].items()}
        stats = state["stats"]
        vw.stats = replace(stats, rejected=Counter(stats.rejected))
        feed = state["feed"]
        if feed["venue"] != venue:
            raise ValueError(f"a feed of {feed['venue']!r} in a state of {venue!r}")
        vw.feed = _binance_feed(feed["core"]) if venue == "binance" else _itch_feed(feed["core"])
        vw.builders = {name: _builder(b, venue) for name, b in state["builders"].items()}
    except ValueError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError, struct.error, FeedError) as err:
        # a malformed value the layouts' own checks below do not name (a snapshot edited on its way)
        raise ValueError(f"native state: {type(err).__name__}: {err}") from None
    return vw


# ---- feeds


def _open(core: dict[str, Any], kind: str) -> None:
    if (core.get("kind"), core.get("version")) != (kind, 1):
        raise ValueError(f"native feed state {core.get('kind')!r} {core.get('version')!r}, this reads {kind} 1")


def _packed(part: dict[str, Any], key: str, width: int) -> list[tuple[int, ...]]:
    """state.rs's `set_packed`: little-endian int64s, `width` to a record."""
    values = np.frombuffer(part[key], "<i8").tolist()
    if len(values) % width:
        raise ValueError(f"{key}: {len(values)} values, not records of {width}")
    return [tuple(values[i : i + width]) for i in range(0, len(values), width)]


def _names(core: dict[str, Any]) -> Callable[[int], str]:
    """A book's symbol id -> its name; each id once, in the feed's table."""
    names: list[str] = core["names"]
    seen: set[int] = set()

    def name(i: int) -> str:
        if type(i) is not int or not 0 <= i < len(names) or i in seen:
            raise ValueError(f"a book of symbol id {i!r}: not one new id of the {len(names)} names")
        seen.add(i)
        return names[i]

    return name


def _binance_feed(core: dict[str, Any]) -> BinanceFeed:
    """binance.rs `Binance::export`: per symbol with a book, in the order the books were made, the L2
    levels and the sync (live, last update id, first diff after a snapshot, resyncs, snapshots, the
    SyncStats counters, the bookTickers ahead of the book, the diffs held for a snapshot)."""
    _open(core, "BinanceFeed")
    symbols = None if core["symbols"] is None else set(core["symbols"])
    feed = BinanceFeed(symbols, check_crossed=core["check_crossed"])
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        book = feed.books[name] = L2Book(feed.venue, name)
        _l2_levels(book, part)
        sync = feed.syncs[name] = BookSync(feed.venue, name)
        sync.state = SyncState.LIVE if part["live"] else SyncState.AWAITING_SNAPSHOT
        sync.last_seq = part["last_seq"]
        sync.resyncs, sync.snapshots = part["resyncs"], part["snapshots"]
        sync.buffer = deque(_diffs(name, np.frombuffer(part["buffer"], "<i8").tolist()))
        if part["first"]:
            feed._first.add(name)
        if part["stats"] is not None:
            feed.stats[name] = SyncStats(*part["stats"])
        pending = [BookTicker(name, *t) for t in _packed(part, "pending", 5)]
        if len(pending) > MAX_PENDING_TICKERS:
            raise ValueError(f"{len(pending)} pending book tickers")
        if pending:
            feed._pending_tickers[name] = deque(pending)
    return feed


def _l2_levels(book: L2Book, part: dict[str, Any]) -> None:
    for side, key in ((Side.BID, "bids"), (Side.ASK, "asks")):
        for price, size in _packed(part, key, 2):
            if size <= 0 or price in book.side(side):
                raise ValueError(f"{book.symbol}: a level of size {size} at {price}, or that price twice")
            book.set_level(side, price, size)


def _diffs(symbol: str, flat: list[int]) -> list[Diff]:
    """binance.rs `pack_diffs`: first, last, prev (-1: none), ts, recv_ts, n, then (side, price, size) x n."""
    out, i = [], 0
    while i < len(flat):
        first, last, prev, ts, recv_ts, n = flat[i : i + 6]
        rows = flat[i + 6 : i + 6 + 3 * n]
        if n < 0 or len(rows) != 3 * n:
            raise ValueError("a buffered diff cut short")
        if first < 0 or first > last or prev < -1:
            raise ValueError(f"a buffered diff of U {first}, u {last}, pu {prev}")
        levels = [Event(Kind.LEVEL_SET, "binance", symbol, ts, last, _SIDES[rows[j]], rows[j + 1], rows[j + 2],
                        recv_ts=recv_ts) for j in range(0, 3 * n, 3)]  # fmt: skip
        out.append(Diff(symbol, first, last, None if prev == -1 else prev, ts, recv_ts, levels))
        i += 6 + 3 * n
    return out


def _itch_feed(core: dict[str, Any]) -> ItchFeed:
    """itch.rs `Itch::state`: the locate table (placeholders are `locate:<n>`, as the reference names
    them on demand), each book's orders level by level, best first, each queue in time priority (so
    adding them in that order rebuilds every queue), the message count and the last system event."""
    _open(core, "ItchFeed")
    symbols = None if core["symbols"] is None else set(core["symbols"])
    feed = ItchFeed(symbols, check_crossed=core["check_crossed"])
    names: list[str] = core["names"]
    for locate, name in _packed(core, "locates", 2):
        if not 0 <= locate < 1 << 16 or not 0 <= name < len(names) or locate in feed.locates:
            raise ValueError(f"locates: ({locate}, {name}) is not a new locate and a symbol id")
        feed.locates[locate] = names[name]
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        book = feed.books[name] = L3Book(feed.venue, name)
        feed.syncs[name] = BookSync(feed.venue, name)
        for side, key in ((Side.BID, "bids"), (Side.ASK, "asks")):
            for order_id, price, size in _packed(part, key, 3):
                book.add(order_id & _U64, side, price, size)  # the id's u64 bits
    feed.messages = core["messages"]
    event = core["system_event"]
    if event is not None and not 0 <= event < 256:
        raise ValueError(f"system event {event!r}: not a byte")
    feed.system_event = "" if event is None else chr(event)
    return feed


# ---- window builders


def _builder(state: dict[str, Any], venue: str) -> WindowBuilder:
    """pywindows.rs `__getstate__`: venue, symbol, the last window's offset, the headlines, and the
    builder itself as `mod state`'s bytes (`_Reader`)."""
    if state.get("version") != BUILDER_VERSION:
        raise ValueError(f"window builder state version {state.get('version')!r}, this reads {BUILDER_VERSION}")
    r = _Reader(state["core"])
    config = WindowConfig(n_events=r.u64(), n_rows=r.u64(), max_news=r.u64(), price_clip=r.i64(),
                          every_events=r.opt(r.i64), every_ns=r.opt(r.i64))  # fmt: skip
    tick, ofi_levels, depth_at, window_ns = r.i64(), r.u64(), r.seq(r.u64), r.i64()
    decay_rate = r.f64()
    r.bool()  # neumaier: the reference sums with its own interpreter's sum()
    memory_levels, halflives, rates = r.u64(), r.seq(r.i64), r.seq(r.f64)
    # the checks of the Rust decoder (`FeatureParams::with_rate`, `set_memory`) that FeatureState does not make
    if 0 in depth_at or not decay_rate > 0 or math.isinf(decay_rate):
        raise ValueError("window builder state: a depth level of 0 or a decay rate not positive and finite")
    if len(rates) != len(halflives) or not all(0 < x <= 1 for x in rates):
        raise ValueError("window builder state: not one memory rate in (0, 1] per half-life")
    f = FeatureState(tick, ofi_levels, depth_at, window_ns, memory_levels=memory_levels, memory_halflives=halflives)
    f._decay_rate, f._memory_rate = decay_rate, rates  # as saved, not recomputed from the half-lives
    b = WindowBuilder(config, f, state["venue"], state["symbol"])
    n, t = config.n_events, config.n_rows
    b._kind[:] = r.ring(n, r.i64)
    b._side[:] = r.ring(n, r.i64)
    b._price[:] = r.ring(n, r.i64)
    b._size[:] = r.ring(n, r.i64)
    b._dt[:] = r.ring(n, r.i64)
    b._ts[:] = r.ring(n, r.i64)
    b._head, b._count = r.u64(), r.u64()
    b._rows[:] = np.asarray(r.ring(t * len(f.names), r.f32), np.float32).reshape(t, len(f.names))
    b._row_ts[:] = r.ring(t, r.i64)
    b._row_head, b._row_count = r.u64(), r.u64()
    if b._head >= n or b._row_head >= t:
        raise ValueError("window builder state: a ring head past its ring")
    b._mid2, b._ref2 = r.opt(r.i128), r.opt(r.i128)
    b._in_snapshot = r.bool()
    b._last_ts, b._last_token_ts = r.opt(r.i64), r.opt(r.i64)
    b._last_seq, b._since_emit = r.i64(), r.i64()
    b._emit_ts = r.opt(r.i64)
    b._best = (r.i64(), r.i64())
    b._offset = _offset(state["offset"])
    b._news = [tuple(item) for item in state["news"]]

    has_prev = r.bool()
    prev_bids = r.seq(r.level)
    f.ofi._prev_bids = prev_bids if has_prev else None
    f.ofi._prev_asks = r.seq(r.level)
    f.trades._last_price = r.opt(r.i64)
    f.trades._tick_sign = r.i64()
    f._ofi_sum, f._ofi_depth = r.ring(ofi_levels, r.f64), r.ring(ofi_levels, r.f64)
    for window in (f._messages, f._cancels, f._trade_ts):
        window._ts = deque(r.seq(r.i64))
    f._signed_volume._items = deque(r.seq(lambda: (r.i64(), r.i128())))
    f._signed_volume.total = r.i128()
    f._sq_returns._items = deque(r.seq(lambda: (r.i64(), r.f64())))
    f._sq_returns.total = r.f64()
    f._levels._sizes[Side.BID] = dict(r.seq(r.level))
    f._levels._sizes[Side.ASK] = dict(r.seq(r.level))
    f._levels._credit = {(_SIDES[s], p): c for s, p, c in r.seq(lambda: (r.i64(), r.i64(), r.i64()))}
    f._in_snapshot = r.bool()
    f._mid2, f._rv_mid = r.opt(r.i128), r.opt(r.f64)
    f._last_sign = r.i64()
    f._last_ts = r.opt(r.i64)
    f._now = r.i64()
    f._row_ts = r.opt(r.i64)
    has_cache = r.bool()
    cache = r.seq(r.f64)
    f._cached_book_part = cache if has_cache else None
    floor, ceiling = r.i64(), r.i64()
    f._bid_floor = -math.inf if floor == _I64_MIN else floor  # i64::MIN / MAX: the reference's -inf / +inf
    f._ask_ceiling = math.inf if ceiling == _I64_MAX else ceiling
    f._level_depth, f._e = r.ring(ofi_levels, r.f64), r.ring(ofi_levels, r.i64)
    has_out = r.bool()
    out = r.seq(r.f64)
    f._ofi_out = out if has_out else None
    has_memory = r.bool()
    memory = r.seq(r.f64)
    f._memory = memory if has_memory else None
    f._memory_depth = r.f64()
    r.end()
    if (
        (has_cache and len(cache) != 5 + 2 * len(depth_at))
        or (has_out and len(out) != ofi_levels)
        or (has_memory and len(memory) != len(rates))
    ):
        raise ValueError("window builder state: cached book columns, OFI columns or memories of another length")
    return b


def _offset(value: Any) -> Any:
    """A window's offset as the worker gives it, (partition, offset), whatever list the codec made of it."""
    return tuple(value) if isinstance(value, list) else value


class _Reader:
    """pywindows.rs `mod state`'s `R`: little-endian fixed-width fields, a u64 length before each sequence,
    a byte before each optional value."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.at = memoryview(buf), 0

    def _take(self, fmt: str) -> Any:
        (v,) = struct.unpack_from(fmt, self.buf, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def u64(self) -> int:
        return int(self._take("<Q"))

    def i64(self) -> int:
        return int(self._take("<q"))

    def i128(self) -> int:
        lo, hi = self.u64(), self.i64()
        return (hi << 64) | lo

    def f64(self) -> float:
        return float(self._take("<d"))

    def f32(self) -> float:
        return float(self._take("<f"))

    def bool(self) -> bool:
        return self._take("<B") != 0

    def level(self) -> tuple[int, int]:
        return self.i64(), self.i64()

    def opt(self, read: Callable[[], T]) -> T | None:
        return read() if self.bool() else None

    def seq(self, read: Callable[[], T]) -> list[T]:
        n = self.u64()
        if n > len(self.buf) - self.at:
            raise ValueError("window builder state: a length past the end")
        return [read() for _ in range(n)]

    def ring(self, n: int, read: Callable[[], T]) -> list[T]:
        out = self.seq(read)
        if len(out) != n:
            raise ValueError(f"window builder state: a ring of {len(out)} entries, the config says {n}")
        return out

    def end(self) -> None:
        if self.at != len(self.buf):
            raise ValueError(f"window builder state: {len(self.buf) - self.at} bytes past the end")
