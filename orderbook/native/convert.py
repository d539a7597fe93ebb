"""A pipeline's state across the native and the reference path, exactly, both ways:

    vw = reference_windows(nvw.__getstate__())    # native -> reference's VenueWindows
    nvw = native_windows(vw)                      # reference -> NativeVenueWindows (native_state, checked)

Why: the worker snapshots a partition's state on the path it runs (streams/snapshots.py), and a
partition changes path: the batch the native path panicked on again and again is redone on the
reference path from the native snapshot, and the state goes back to the native path after it
(streams/partition.py); a worker restarted with MT_NATIVE turned off or on reads the other path's
snapshots. Without a conversion each switch rebuilt the partition from its topic's first record (an hour
for a busy day); with it the restore replays only what came after the snapshot.

The converted state continues exactly as the original would have: the same later windows, rejects,
books and stats (tests/test_native_convert.py, both ways: every Binance capture, mangled streams cut
densely, a simulated ITCH day; tests/test_native_lobster.py: simulated LOBSTER rows; tests/test_native_kraken.py:
the Kraken captures). It is read and
written in the native parts' own state layouts: the Rust feeds' dicts (binance.rs `export` / `import`,
itch.rs and lobster.rs `state` / `from_state`, state.rs's packed books) and the window builder's bytes
(pywindows.rs `mod state`), so a change of one of them must change this module too; the test catches one
that does not. The Rust side checks what it reads (a `native_state` goes through its decoders in
`from_state`); `reference_windows` makes the same checks where a value would otherwise break a later
batch. What the native feeds do not keep is not made up: Binance's latest bookTicker per symbol
(`BinanceFeed.tickers`) and the mismatches' examples (`SyncStats.mismatches`) are diagnostics only and
start empty on the reference side, as does `MultiLevelOFI.cumulative`, which no feature reads.
"""

from __future__ import annotations

import math
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..book import BookType, L2Book, L3Book
from ..errors import FeedError, is_text
from ..events import Event, Kind, Side
from ..features import FeatureState
from ..sync import BookSync, SyncState
from ..venue_windows import VenueWindows
from ..venues.binance import MAX_PENDING_TICKERS, BinanceFeed, BookTicker, Diff, SyncStats
from ..venues.coinbase import MAX_EARLY_MATCHES, CoinbaseFeed, FullOp, _StagedSnapshot
from ..venues.itch import ItchFeed
from ..venues.kraken import MAX_DECIMALS, KrakenFeed, Precision
from ..venues.lobster import LobsterFeed
from ..volume_record import KEEP, VOLUME_HORIZONS, VolumeRecord
from ..windows import WindowBuilder, WindowConfig
from .venue_windows import NativeVenueWindows, common_state, restore_common

T = TypeVar("T")
F = TypeVar("F", BinanceFeed, ItchFeed, LobsterFeed, KrakenFeed, CoinbaseFeed)

BUILDER_VERSION = 3  # pywindows.rs STATE_VERSION: the builder layout `_Reader` / `_Writer` below read / write
# 2 predates the volume record: an empty one, the book serving the head alone till 10 are known, as a new book
BUILDER_READ_VERSIONS = (2, BUILDER_VERSION)  # pywindows.rs READ_VERSIONS
FEED_VERSION = 1  # state.rs STATE_VERSION (the feeds' and books' dicts) and the Python wrapper's (`_Feed`)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U64 = (1 << 64) - 1
_SIDES = {int(Side.BID): Side.BID, int(Side.ASK): Side.ASK}


def reference_windows(state: dict[str, Any]) -> VenueWindows:
    """The VenueWindows a `NativeVenueWindows.__getstate__()` state stands for; ValueError where the
    state is not one this reader knows (another kind or version of a part, a malformed value)."""
    vw = VenueWindows.__new__(VenueWindows)
    try:
        restore_common(vw, state)
        venue = vw.venue
        feed = state["feed"]
        if feed["venue"] != venue:
            raise ValueError(f"a feed of {feed['venue']!r} in a state of {venue!r}")
        readers = {"binance": _binance_feed, "itch": _itch_feed, "lobster": _lobster_feed, "kraken": _kraken_feed,
                   "coinbase": _coinbase_feed}  # fmt: skip
        vw.feed = readers[venue](feed["core"])
        vw.builders = {name: _builder(b) for name, b in state["builders"].items()}
    except ValueError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError, struct.error, FeedError) as err:
        # a malformed value the layouts' own checks below do not name (a snapshot edited on its way)
        raise ValueError(f"native state: {type(err).__name__}: {err}") from None
    return vw


# ---- feeds


def _new_feed(core: dict[str, Any], cls: type[F], **kw: Any) -> F:
    """The empty reference feed a native feed's state stands for (its kind is `cls`'s name): its symbol filter
    and crossed-book check."""
    kind = cls.__name__
    if (core.get("kind"), core.get("version")) != (kind, 1):
        raise ValueError(f"native feed state {core.get('kind')!r} {core.get('version')!r}, this reads {kind} 1")
    symbols = None if core["symbols"] is None else set(core["symbols"])
    return cls(symbols, check_crossed=core["check_crossed"], **kw)  # type: ignore[call-arg]


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
    feed = _new_feed(core, BinanceFeed)
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        sync = _l2_synced(feed, name, part)
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


def _l2_synced(feed: BinanceFeed | KrakenFeed, name: str, part: dict[str, Any]) -> BookSync:
    """A feed book's L2 levels and its BookSync (live, last_seq, resyncs, snapshots) from its part of a state."""
    book = feed.books[name] = L2Book(feed.venue, name)
    _l2_levels(book, part)
    sync = feed.syncs[name] = BookSync(feed.venue, name)
    sync.state = SyncState.LIVE if part["live"] else SyncState.AWAITING_SNAPSHOT
    sync.last_seq = part["last_seq"]
    sync.resyncs, sync.snapshots = part["resyncs"], part["snapshots"]
    return sync


def _l2_levels(book: L2Book, part: dict[str, Any]) -> None:
    for side, key in ((Side.BID, "bids"), (Side.ASK, "asks")):
        for price, size in _packed(part, key, 2):
            if size <= 0 or price in book.side(side):
                raise ValueError(f"{book.symbol}: a level of size {size} at {price}, or that price twice")
            book.set_level(side, price, size)


def _kraken_feed(core: dict[str, Any]) -> KrakenFeed:
    """kraken.rs `Kraken::export`: the v2 depth where none is named, each pair's precision and named depth,
    and per pair with a book, in the order the books were made, the L2 levels, the sync and the counters."""
    feed = _new_feed(core, KrakenFeed, depth=core["depth"])
    for name, (price, size, source) in core["precision"].items():
        if source not in _PRECISION_SOURCES or not (0 <= price <= MAX_DECIMALS and 0 <= size <= MAX_DECIMALS):
            raise ValueError(f"{name!r}: a precision of {price} / {size} decimals from {source!r}")
        feed.precision[name] = Precision(price, size, source)
    feed.v2_depth = dict(core["v2_depth"])
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        _l2_synced(feed, name, part)
        counters = (feed.messages, feed.skipped, feed.checksums_checked, feed.checksums_matched)
        for counter, value in zip(counters, part["counters"], strict=True):
            if value:
                counter[name] = value
    return feed


_PRECISION_SOURCES = ("config", "instrument", "snapshot", "trade", "update")


def _coinbase_feed(core: dict[str, Any]) -> CoinbaseFeed:
    """coinbase.rs `Coinbase::export`: per product with a book, in the order the books were made, its type
    and book (an L3 book's orders by their UUIDs), the sync with the full-channel messages held for a
    snapshot, the level-2 message count and the REST snapshot parts staged; the matches of products with
    no book yet."""
    feed = _new_feed(core, CoinbaseFeed)
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        if part["type"] == "L3":
            book: L2Book | L3Book = L3Book(feed.venue, name)
            records = [(side, r) for side, key in _L3_SIDES for r in _packed(part, key, 3)]
            if len(records) != len(part["uuids"]):
                raise ValueError(f"{name}: {len(records)} orders for {len(part['uuids'])} UUIDs")
            for (side, (_, price, size)), uuid in zip(records, part["uuids"], strict=True):
                book.add(uuid, side, price, size)
        elif part["type"] == "L2":
            book = L2Book(feed.venue, name)
            _l2_levels(book, part)
        else:
            raise ValueError(f"{name}: a book of type {part['type']!r}")
        feed.books[name] = book
        sync = feed.syncs[name] = BookSync(feed.venue, name)
        sync.state = SyncState.LIVE if part["live"] else SyncState.AWAITING_SNAPSHOT
        sync.last_seq = part["last_seq"]
        sync.resyncs, sync.snapshots = part["resyncs"], part["snapshots"]
        sync.buffer = deque(_full_ops(name, part, "buffer"))
        if part["l2_count"]:
            feed.l2_counts[name] = part["l2_count"]
        if (staged := part["staged"]) is not None:
            entries = {side: _entries(staged, side) for side in ("bids", "asks")}
            book_type = BookType.L3 if staged["l3"] else BookType.L2
            feed._staged[name] = _StagedSnapshot(book_type, staged["seq"], staged["parts"], staged["ts"],
                                                 staged["recv_ts"], staged["next_part"], **entries)  # fmt: skip
    for part in core["early"]:
        name = core["names"][part["symbol"]]
        feed._early[name] = deque(_full_ops(name, part, "matches"), maxlen=MAX_EARLY_MATCHES)
    return feed


_FULL_OPS = ("received", "open", "done", "match", "change", "activate")  # coinbase.rs `OPS`, in its order


def _full_ops(product: str, part: dict[str, Any], key: str) -> list[FullOp]:
    """coinbase.rs `pack_ops`: (op, seq, ts, recv_ts, side, given bits, price, size, new_price), ids beside."""
    out = []
    for (code, seq, ts, recv_ts, side, given, *values), order in zip(
        _packed(part, key, 9), part[f"{key}_ids"], strict=True
    ):
        price, size, new_price = (v if given & bit else None for bit, v in zip((1, 2, 4), values, strict=True))
        out.append(FullOp(_FULL_OPS[code], product, seq, ts, recv_ts, order, Side(side), price, size, new_price))
    return out


def _entries(part: dict[str, Any], key: str) -> list[tuple[int, int, str]]:
    """coinbase.rs `put_entries`: a staged snapshot side's (price, size) pairs, their order ids beside."""
    return [(p, q, oid) for (p, q), oid in zip(_packed(part, key, 2), part[f"{key}_ids"], strict=True)]


_L3_SIDES = ((Side.BID, "bids"), (Side.ASK, "asks"))


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
    feed = _new_feed(core, ItchFeed)
    names: list[str] = core["names"]
    for locate, name in _packed(core, "locates", 2):
        if not 0 <= locate < 1 << 16 or not 0 <= name < len(names) or locate in feed.locates:
            raise ValueError(f"locates: ({locate}, {name}) is not a new locate and a symbol id")
        feed.locates[locate] = names[name]
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        feed.books[name] = _l3_book(feed.venue, name, part)
        feed.syncs[name] = BookSync(feed.venue, name)
    feed.messages = core["messages"]
    event = core["system_event"]
    if event is not None and not 0 <= event < 256:
        raise ValueError(f"system event {event!r}: not a byte")
    feed.system_event = "" if event is None else chr(event)
    return feed


def _lobster_feed(core: dict[str, Any]) -> LobsterFeed:
    """lobster.rs `Lobster::state`: the rows seen per symbol, each book's orders as ITCH's are kept."""
    feed = _new_feed(core, LobsterFeed)
    names: list[str] = core["names"]
    rows = [count for (count,) in _packed(core, "rows", 1)]
    if len(rows) != len(names) or min(rows, default=0) < 0:
        raise ValueError(f"rows: {len(rows)} counts, not one count of rows per each of {len(names)} names")
    feed.rows = dict(zip(names, rows, strict=True))
    book_name = _names(core)
    for part in core["books"]:
        name = book_name(part["symbol"])
        feed.books[name] = _l3_book(feed.venue, name, part)
        feed.syncs[name] = BookSync(feed.venue, name)
    return feed


def _l3_book(venue: str, name: str, part: dict[str, Any]) -> L3Book:
    """state.rs `put_l3`'s orders added back in their order, which rebuilds every queue."""
    book = L3Book(venue, name)
    for side, key in ((Side.BID, "bids"), (Side.ASK, "asks")):
        for order_id, price, size in _packed(part, key, 3):
            book.add(order_id & _U64, side, price, size)  # the id's u64 bits
    return book


# ---- window builders


def _builder(state: dict[str, Any]) -> WindowBuilder:
    """pywindows.rs `__getstate__`: venue, symbol, the last window's offset, the headlines, and the
    builder itself as `mod state`'s bytes (`_Reader`)."""
    version = state.get("version")
    if version not in BUILDER_READ_VERSIONS:
        raise ValueError(f"window builder state version {version!r}, this reads 2 and {BUILDER_VERSION}")
    r = _Reader(state["core"])
    config = WindowConfig(n_events=r.u64(), n_rows=r.u64(), max_news=r.u64(), price_clip=r.i64(),
                          every_events=r.opt(r.i64), every_ns=r.opt(r.i64))  # fmt: skip
    tick, ofi_levels, depth_at, window_ns = r.i64(), r.u64(), r.array("Q"), r.i64()
    decay_rate = r.f64()
    r.bool()  # neumaier: the reference sums with its own interpreter's sum()
    memory_levels, halflives, rates = r.u64(), r.array("q"), r.array("d")
    # the checks of the Rust decoder (`FeatureParams::with_rate`, `set_memory`) that FeatureState does not make
    if 0 in depth_at or not decay_rate > 0 or math.isinf(decay_rate):
        raise ValueError("window builder state: a depth level of 0 or a decay rate not positive and finite")
    if len(rates) != len(halflives) or not all(0 < x <= 1 for x in rates):
        raise ValueError("window builder state: not one memory rate in (0, 1] per half-life")
    f = FeatureState(tick, ofi_levels, depth_at, window_ns, memory_levels=memory_levels, memory_halflives=halflives)
    f._decay_rate, f._memory_rate = decay_rate, rates  # as saved, not recomputed from the half-lives
    b = WindowBuilder(config, f, state["venue"], state["symbol"])
    n, t = config.n_events, config.n_rows
    for ring in (b._kind, b._side, b._price, b._size, b._dt, b._ts):
        ring[:] = r.ring(n, "q")
    b._head, b._count = r.u64(), r.u64()
    b._rows[:] = np.asarray(r.ring(t * len(f.names), "f"), np.float32).reshape(t, len(f.names))
    b._row_ts[:] = r.ring(t, "q")
    b._row_head, b._row_count = r.u64(), r.u64()
    if b._head >= n or b._row_head >= t:
        raise ValueError("window builder state: a ring head past its ring")
    b._mid2, b._ref2 = r.opt(r.i128), r.opt(r.i128)
    b._in_snapshot = r.bool()
    b._last_ts, b._last_token_ts = r.opt(r.i64), r.opt(r.i64)
    b._last_seq, b._since_emit = r.i64(), r.i64()
    b._emit_ts = r.opt(r.i64)
    b._best = (r.i64(), r.i64())
    if version >= 3:
        b._volume = _volume_record(r)
    b._offset = _offset(state["offset"])
    b._news = [tuple(item) for item in state["news"]]

    has_prev = r.bool()
    prev_bids = r.rows("qq")
    f.ofi._prev_bids = prev_bids if has_prev else None
    f.ofi._prev_asks = r.rows("qq")
    f.trades._last_price = r.opt(r.i64)
    f.trades._tick_sign = r.i64()
    f._ofi_sum, f._ofi_depth = r.ring(ofi_levels, "d"), r.ring(ofi_levels, "d")
    for window in (f._messages, f._cancels, f._trade_ts):
        window._ts = deque(r.array("q"))
    f._signed_volume._items = deque((ts, (hi << 64) | lo) for ts, lo, hi in r.rows("qQq"))
    f._signed_volume.total = r.i128()
    f._sq_returns._items = deque(r.rows("qd"))
    f._sq_returns.total = r.f64()
    f._levels._sizes[Side.BID] = dict(r.rows("qq"))
    f._levels._sizes[Side.ASK] = dict(r.rows("qq"))
    f._levels._credit = {(_SIDES[s], p): c for s, p, c in r.rows("qqq")}
    f._in_snapshot = r.bool()
    f._mid2, f._rv_mid = r.opt(r.i128), r.opt(r.f64)
    f._last_sign = r.i64()
    f._last_ts = r.opt(r.i64)
    f._now = r.i64()
    f._row_ts = r.opt(r.i64)
    has_cache = r.bool()
    cache = r.array("d")
    f._cached_book_part = cache if has_cache else None
    floor, ceiling = r.i64(), r.i64()
    f._bid_floor = -math.inf if floor == _I64_MIN else floor  # i64::MIN / MAX: the reference's -inf / +inf
    f._ask_ceiling = math.inf if ceiling == _I64_MAX else ceiling
    f._level_depth, f._e = r.ring(ofi_levels, "d"), r.ring(ofi_levels, "q")
    has_out = r.bool()
    out = r.array("d")
    f._ofi_out = out if has_out else None
    has_memory = r.bool()
    memory = r.array("d")
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


def _volume_record(r: _Reader) -> VolumeRecord:
    """pywindows.rs `R::volume`, with `VolumeRecord::check`'s checks: no more known volumes than are kept,
    the pending windows in order and their horizons not over (else they would be known)."""
    v = VolumeRecord()
    v.messages, v.traded = r.u64(), r.i128()
    for k, h in enumerate(VOLUME_HORIZONS):
        pending = [(m, (hi << 64) | lo) for m, lo, hi in r.rows("QQq")]
        known = r.array("d")
        if len(known) > KEEP:
            raise ValueError(f"window builder state: {len(known)} known volumes over {h} messages, {KEEP} are kept")
        for x in known:
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"window builder state: a known volume of {x}: log1p of the lots traded is finite "
                                 "and not negative")  # fmt: skip
        at = [m for m, _ in pending]
        if at != sorted(at) or any(m > v.messages or v.messages - m >= h for m in at):
            raise ValueError(f"window builder state: a window pending over {h} messages out of order or over")
        last = 0
        for _, t in pending:  # lots traded only add up: a volume read off these is never negative
            if t < last or t > v.traded:
                raise ValueError(f"window builder state: a window pending over {h} messages after {t} lots, of "
                                 f"{v.traded} traded")  # fmt: skip
            last = t
        v.pending[k], v.known[k] = deque(pending), deque(known, maxlen=KEEP)
    return v


def _offset(value: Any) -> Any:
    """A window's offset as the worker gives it, (partition, offset), whatever list the codec made of it."""
    return tuple(value) if isinstance(value, list) else value


class _Reader:
    """pywindows.rs `mod state`'s `R`: little-endian fixed-width fields, a u64 length before each sequence,
    a byte before each optional value. A sequence of fixed-width items is read in one `struct` call (`array`,
    `rows`): item by item, a partition of 2,000 stocks took seconds to read."""

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

    def bool(self) -> bool:
        return self._take("<B") != 0

    def opt(self, read: Callable[[], T]) -> T | None:
        return read() if self.bool() else None

    def _items(self, n: int, item: str) -> tuple[Any, ...]:
        """`n` items of the struct codes `item` (no padding: "<"), flat."""
        size = n * struct.calcsize(f"<{item}")  # checked before the format is built: n is read from the bytes
        if size > len(self.buf) - self.at:
            raise ValueError("window builder state: a length past the end")
        out = struct.unpack_from(f"<{item * n}", self.buf, self.at)
        self.at += size
        return out

    def array(self, code: str) -> list[Any]:
        """A sequence of one struct code ("q", "Q", "d", "f")."""
        return list(self._items(self.u64(), code))

    def rows(self, codes: str) -> list[tuple[Any, ...]]:
        """A sequence of tuples, one struct code a field ("qq": an (i64, i64) level)."""
        flat = self._items(self.u64(), codes)
        width = len(codes)
        return [flat[i : i + width] for i in range(0, len(flat), width)]

    def ring(self, n: int, code: str) -> list[Any]:
        out = self.array(code)
        if len(out) != n:
            raise ValueError(f"window builder state: a ring of {len(out)} entries, the config says {n}")
        return out

    def end(self) -> None:
        if self.at != len(self.buf):
            raise ValueError(f"window builder state: {len(self.buf) - self.at} bytes past the end")


# ---- the other way: the reference's objects as a native state


def native_windows(vw: VenueWindows) -> NativeVenueWindows:
    """The reference's VenueWindows on the native path: `native_state` of it, read by the Rust decoders
    (ValueError where they refuse it)."""
    return NativeVenueWindows.from_state(native_state(vw))


def native_state(vw: VenueWindows) -> dict[str, Any]:
    """A `NativeVenueWindows.__getstate__()` state of the reference's VenueWindows (of a venue the crate
    decodes: `NativeVenueWindows.from_state` of it continues exactly as `vw` would have). Every feed book
    gets its follower book, equal to it, as the native path keeps them between batches."""
    feed = vw.feed
    try:
        if isinstance(feed, BinanceFeed):
            core, names = _binance_core(feed)
            book_kind = "L2Book"
        elif isinstance(feed, ItchFeed):
            core, names = _itch_core(feed)
            book_kind = "L3Book"
        elif isinstance(feed, LobsterFeed):
            core, names = _lobster_core(feed)
            book_kind = "L3Book"
        elif isinstance(feed, KrakenFeed):
            core, names = _kraken_core(feed)
            book_kind = "L2Book"
        elif isinstance(feed, CoinbaseFeed):
            core, names = _coinbase_core(feed)
            book_kind = ""  # each book's own type
        else:
            raise ValueError(f"no native feed for {vw.venue!r}")
        builders = {name: _builder_state(b) for name, b in vw.builders.items()}
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError, struct.error) as err:
        # a value no reference run leaves (a snapshot edited on its way): the Rust decoders refuse the rest
        raise ValueError(f"reference state: {type(err).__name__}: {err}") from None
    followers = {}
    for part in core["books"]:
        name = names[part["symbol"]]
        kind = book_kind or f"{part['type']}Book"
        followers[name] = {"kind": kind, "version": FEED_VERSION, "venue": vw.venue, "symbol": name,
                           "bids": part["bids"], "asks": part["asks"]}  # fmt: skip
    return {
        **common_state(vw),
        "feed": {"version": FEED_VERSION, "venue": vw.venue, "symbols": list(names), "core": core},
        "books": followers,
        "builders": builders,
        # the feed's book names as the native path last read them: as they stand (ITCH renames placeholders)
        "feed_books": [names[part["symbol"]] for part in core["books"]] if isinstance(feed, ItchFeed) else [],
    }


def _pack(values: list[int]) -> bytes:
    return np.asarray(values, "<i8").tobytes()


def _l2_packed(book: L2Book) -> dict[str, bytes]:
    """state.rs `put_l2`: (price, size) pairs, best first."""
    bids = [x for p in book.bids for x in (p, book.bids[p])]  # both sides iterate best first
    asks = [x for p in book.asks for x in (p, book.asks[p])]
    return {"bids": _pack(bids), "asks": _pack(asks)}


def _l3_packed(book: L3Book) -> dict[str, bytes]:
    """state.rs `put_l3`: (order id as int64 bits, price, size), level by level best first, each queue
    in time priority."""
    out = {}
    for side, key, prices in ((Side.BID, "bids", book.bids), (Side.ASK, "asks", book.asks)):  # best first
        queues = book._queues[side]
        flat = []
        for price in prices:
            for order_id in queues[price]:
                o = book.orders[order_id]
                flat += (order_id - (1 << 64) if order_id > _I64_MAX else order_id, o.price, o.size)
        out[key] = _pack(flat)
    return out


def _binance_core(feed: BinanceFeed) -> tuple[dict[str, Any], list[str]]:
    """binance.rs `Binance::import`'s dict of the reference feed, and its symbol table."""
    names = list(feed.books)
    books = []
    for i, name in enumerate(names):
        sync, stats = feed.syncs[name], feed.stats.get(name)
        pending = [x for t in feed._pending_tickers.get(name, ()) for x in (t.u, t.bid, t.bid_qty, t.ask, t.ask_qty)]
        buffer: list[int] = []
        for d in sync.buffer:
            buffer += (d.first, d.last, -1 if d.prev is None else d.prev, d.ts, d.recv_ts, len(d.levels))
            for e in d.levels:
                buffer += (int(e.side), e.price, e.size)
        books.append({
            "symbol": i,
            **_l2_packed(feed.books[name]),  # type: ignore[arg-type]
            "live": sync.live,
            "last_seq": sync.last_seq,
            "first": name in feed._first,
            "resyncs": sync.resyncs,
            "snapshots": sync.snapshots,
            "stats": None if stats is None else [getattr(stats, f) for f in _SYNC_COUNTERS],
            "pending": _pack(pending),
            "buffer": _pack(buffer),
        })  # fmt: skip
    symbols = None if feed.symbols is None else sorted(feed.symbols)
    core = {"kind": "BinanceFeed", "version": FEED_VERSION, "check_crossed": feed.check_crossed, "symbols": symbols,
            "names": names, "books": books}  # fmt: skip
    return core, names


# binance.rs `Stats::counters`, in its order
_SYNC_COUNTERS = ("applied", "stale", "buffered", "gaps", "snapshots", "stale_snapshots", "tickers", "tickers_matched",
                  "tickers_mismatched", "tickers_not_comparable")  # fmt: skip


def _itch_core(feed: ItchFeed) -> tuple[dict[str, Any], list[str]]:
    """itch.rs `Itch::from_state`'s dict of the reference feed, and its symbol table: the books' names,
    then the stocks the locate table names that have no book yet; a placeholder book (`locate:<n>`) is
    its locate's placeholder."""
    names = list(dict.fromkeys([*feed.books, *feed.locates.values()]))
    ids = {name: i for i, name in enumerate(names)}
    locates = [x for locate, stock in sorted(feed.locates.items()) for x in (locate, ids[stock])]
    placeholders = []
    for name in feed.books:
        tag, _, number = name.partition(":")
        if tag == "locate" and number.isdigit():
            placeholders += (int(number), ids[name])
    books = [{"symbol": ids[name], **_l3_packed(book)} for name, book in feed.books.items()]  # type: ignore[arg-type]
    event = feed.system_event
    core = {"kind": "ItchFeed", "version": FEED_VERSION, "check_crossed": feed.check_crossed,
            "symbols": None if feed.symbols is None else sorted(feed.symbols), "names": names,
            "locates": _pack(locates), "placeholders": _pack(placeholders), "books": books,
            "messages": feed.messages, "system_event": ord(event) if event else None}  # fmt: skip
    return core, names


def _lobster_core(feed: LobsterFeed) -> tuple[dict[str, Any], list[str]]:
    """lobster.rs `Lobster::from_state`'s dict of the reference feed, and its symbol table: the symbols
    rows were seen for (every book's among them)."""
    names = list(dict.fromkeys([*feed.rows, *feed.books]))
    ids = {name: i for i, name in enumerate(names)}
    books = [{"symbol": ids[name], **_l3_packed(book)} for name, book in feed.books.items()]  # type: ignore[arg-type]
    core = {"kind": "LobsterFeed", "version": FEED_VERSION, "check_crossed": feed.check_crossed,
            "symbols": None if feed.symbols is None else sorted(feed.symbols), "names": names,
            "rows": _pack([feed.rows.get(name, 0) for name in names]), "books": books}  # fmt: skip
    return core, names


def _kraken_core(feed: KrakenFeed) -> tuple[dict[str, Any], list[str]]:
    """kraken.rs `Kraken::import`'s dict of the reference feed, and its symbol table. A depth past u64 is
    u64's largest (no book is that deep either way); a precision or depth learnt for a name that is not
    Unicode text is left out (no book ever has that name: the feed refuses it first)."""
    names = list(feed.books)
    books = []
    for i, name in enumerate(names):
        sync = feed.syncs[name]
        counters = [feed.messages[name], feed.skipped[name], feed.checksums_checked[name], feed.checksums_matched[name]]
        books.append({"symbol": i, **_l2_packed(feed.books[name]), "live": sync.live,  # type: ignore[arg-type]
                      "last_seq": sync.last_seq, "resyncs": sync.resyncs, "snapshots": sync.snapshots,
                      "counters": counters})  # fmt: skip
    precision = {k: (p.price, p.size, p.source) for k, p in feed.precision.items() if is_text(k)}
    depths = {k: min(d, _U64) for k, d in feed.v2_depth.items() if is_text(k)}
    core = {"kind": "KrakenFeed", "version": FEED_VERSION, "check_crossed": feed.check_crossed,
            "symbols": None if feed.symbols is None else sorted(feed.symbols), "names": names,
            "depth": min(feed.default_depth, _U64), "precision": precision, "v2_depth": depths,
            "books": books}  # fmt: skip
    return core, names


def _coinbase_core(feed: CoinbaseFeed) -> tuple[dict[str, Any], list[str]]:
    """coinbase.rs `Coinbase::import`'s dict of the reference feed, and its symbol table (the books' products,
    then those whose matches wait for a book): each resting order gets the next u64 id, level by level best
    first, each queue in time priority."""
    names = list(dict.fromkeys([*feed.books, *feed._early]))
    ids = {name: i for i, name in enumerate(names)}
    next_id = 1
    books = []
    for name, book in feed.books.items():
        sync = feed.syncs[name]
        part: dict[str, Any] = {"symbol": ids[name], "type": book.book_type.name, "live": sync.live,
                                "last_seq": sync.last_seq, "resyncs": sync.resyncs, "snapshots": sync.snapshots,
                                "l2_count": feed.l2_counts.get(name, 0),
                                **_ops_packed("buffer", sync.buffer)}  # fmt: skip
        if isinstance(book, L3Book):
            uuids: list[str] = []
            for side, key, prices in ((Side.BID, "bids", book.bids), (Side.ASK, "asks", book.asks)):  # best first
                flat: list[int] = []
                for price in prices:
                    for uuid, size in book.queue(side, price):
                        flat += (next_id, price, size)
                        uuids.append(uuid)  # type: ignore[arg-type]
                        next_id += 1
                part[key] = _pack(flat)
            part["uuids"] = uuids
        else:
            part.update(_l2_packed(book))
        staged = feed._staged.get(name)
        part["staged"] = None if staged is None else {
            "l3": staged.book_type is BookType.L3, "seq": staged.seq, "parts": staged.parts, "ts": staged.ts,
            "recv_ts": staged.recv_ts, "next_part": staged.next_part,
            **{k: v for side in ("bids", "asks") for k, v in _entries_packed(side, getattr(staged, side)).items()},
        }  # fmt: skip
        books.append(part)
    early = [{"symbol": ids[name], **_ops_packed("matches", ops)} for name, ops in feed._early.items()]
    core = {"kind": "CoinbaseFeed", "version": FEED_VERSION, "check_crossed": feed.check_crossed,
            "symbols": None if feed.symbols is None else sorted(feed.symbols), "names": names, "next_id": next_id,
            "order_names": False, "books": books, "early": early}  # fmt: skip
    return core, names


def _ops_packed(key: str, ops: Any) -> dict[str, Any]:
    """coinbase.rs `pack_ops` of the reference's FullOps."""
    flat: list[int] = []
    for op in ops:
        given = (op.price is not None) | (op.size is not None) << 1 | (op.new_price is not None) << 2
        flat += (_FULL_OPS.index(op.type), op.seq, op.ts, op.recv_ts, int(op.side), given, op.price or 0,
                 op.size or 0, op.new_price or 0)  # fmt: skip
    return {key: _pack(flat), f"{key}_ids": [op.order_id for op in ops]}


def _entries_packed(key: str, entries: list[tuple[int, int, str]]) -> dict[str, Any]:
    return {key: _pack([x for p, q, _ in entries for x in (p, q)]), f"{key}_ids": [oid for _, _, oid in entries]}


def _builder_state(b: WindowBuilder) -> dict[str, Any]:
    """pywindows.rs `__getstate__`'s dict of a reference builder: `mod state`'s bytes (`_Writer`)."""
    c, f = b.config, b.features
    w = _Writer()
    for x in (c.n_events, c.n_rows, c.max_news):
        w.u64(x)
    w.i64(c.price_clip)
    w.opt(c.every_events, w.i64)
    w.opt(c.every_ns, w.i64)
    w.i64(f.tick)
    w.u64(f.ofi.levels)
    w.items(f.depth_at, "Q")
    w.i64(f.window_ns)
    w.f64(f._decay_rate)
    w.bool(sys.version_info >= (3, 12))  # neumaier: the Rust side sets it for its own interpreter anyway
    w.u64(f.memory_levels)
    w.items(f.memory_halflives, "q")
    w.items(f._memory_rate, "d")
    for ring in (b._kind, b._side, b._price, b._size, b._dt, b._ts):
        w.array(ring, "<i8")
    w.u64(b._head)
    w.u64(b._count)
    w.array(b._rows.reshape(-1), "<f4")
    w.array(b._row_ts, "<i8")
    w.u64(b._row_head)
    w.u64(b._row_count)
    w.opt(b._mid2, w.i128)
    w.opt(b._ref2, w.i128)
    w.bool(b._in_snapshot)
    w.opt(b._last_ts, w.i64)
    w.opt(b._last_token_ts, w.i64)
    w.i64(b._last_seq)
    w.i64(b._since_emit)
    w.opt(b._emit_ts, w.i64)
    w.i64(b._best[0])
    w.i64(b._best[1])
    _put_volume_record(w, b._volume)

    prev_bids = f.ofi._prev_bids
    w.bool(prev_bids is not None)
    w.items(prev_bids or [], "qq")
    w.items(f.ofi._prev_asks, "qq")
    w.opt(f.trades._last_price, w.i64)
    w.i64(f.trades._tick_sign)
    w.items(f._ofi_sum, "d")
    w.items(f._ofi_depth, "d")
    for window in (f._messages, f._cancels, f._trade_ts):
        w.items(window._ts, "q")
    # an i128 as its two halves, low unsigned then high signed: what `i128` writes, in the sequence's one call
    w.items([(ts, v & _U64, v >> 64) for ts, v in f._signed_volume._items], "qQq")
    w.i128(f._signed_volume.total)
    w.items(f._sq_returns._items, "qd")
    w.f64(f._sq_returns.total)
    w.items(sorted(f._levels._sizes[Side.BID].items()), "qq")
    w.items(sorted(f._levels._sizes[Side.ASK].items()), "qq")
    credit = sorted((int(side), price, c) for (side, price), c in f._levels._credit.items())
    w.items(credit, "qqq")
    w.bool(f._in_snapshot)
    w.opt(f._mid2, w.i128)
    w.opt(f._rv_mid, w.f64)
    w.i64(f._last_sign)
    w.opt(f._last_ts, w.i64)
    w.i64(f._now)
    w.opt(f._row_ts, w.i64)
    w.bool(f._cached_book_part is not None)
    w.items(f._cached_book_part or [], "d")
    w.i64(_I64_MIN if f._bid_floor == -math.inf else int(f._bid_floor))
    w.i64(_I64_MAX if f._ask_ceiling == math.inf else int(f._ask_ceiling))
    w.items(f._level_depth, "d")
    w.items(f._e, "q")
    w.bool(f._ofi_out is not None)
    w.items(f._ofi_out or [], "d")
    w.bool(f._memory is not None)
    w.items(f._memory or [], "d")
    w.f64(f._memory_depth)
    return {"version": BUILDER_VERSION, "venue": b.venue, "symbol": b.symbol, "offset": b._offset,
            "news": list(b._news), "core": w.bytes()}  # fmt: skip


def _put_volume_record(w: _Writer, v: VolumeRecord) -> None:
    """pywindows.rs `W::volume`: what `_volume_record` reads."""
    w.u64(v.messages)
    w.i128(v.traded)
    for pending, known in zip(v.pending, v.known, strict=True):
        w.items([(m, t & _U64, t >> 64) for m, t in pending], "QQq")
        w.items(known, "d")


class _Writer:
    """pywindows.rs `mod state`'s `W`: what `_Reader` reads. A sequence goes in one `struct` call (`items`),
    as `_Reader` reads it: item by item, a 2,000-stock partition's builders took longer to write
    (bench/snapshot_bench.py times the whole path switch)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u64(self, x: int) -> None:
        self.parts.append(struct.pack("<Q", x))

    def i64(self, x: int) -> None:
        self.parts.append(struct.pack("<q", x))

    def i128(self, x: int) -> None:
        self.parts.append((x & ((1 << 128) - 1)).to_bytes(16, "little"))

    def f64(self, x: float) -> None:
        self.parts.append(struct.pack("<d", x))

    def bool(self, x: bool) -> None:
        self.parts.append(b"\x01" if x else b"\x00")

    def opt(self, x: T | None, write: Callable[[T], object]) -> None:
        self.bool(x is not None)
        if x is not None:
            write(x)

    def items(self, xs: Any, codes: str) -> None:
        """A sequence of fixed-width items in one `struct` call, its length first: `_Reader.array` (one
        code an item) and `_Reader.rows` (a tuple of `codes` an item, "qq": an (i64, i64) level)."""
        xs = list(xs)
        flat = xs if len(codes) == 1 else [v for x in xs for v in x]
        self.parts.append(struct.pack(f"<Q{codes * len(xs)}", len(xs), *flat))

    def array(self, xs: np.ndarray, dtype: str) -> None:
        self.u64(len(xs))
        self.parts.append(np.ascontiguousarray(xs, dtype).tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)
