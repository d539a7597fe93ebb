"""Binance spot (and USD-M futures) market data: websocket events and REST depth snapshots.

A raw message (the value on `md.raw.binance`) is one websocket event as Binance sends it,
either the combined-stream wrapper `{"stream": "btcusdt@depth@100ms", "data": {...}}` or the
bare event: `depthUpdate` (diff depth), `trade`, `aggTrade`, `bookTicker`, `kline` (ignored).
A REST depth snapshot (`GET /api/v3/depth`, body `{"lastUpdateId", "bids", "asks"}`) names no
symbol, so it travels wrapped as

    {"symbol": "BTCUSDT", "snapshot": <the REST body, byte for byte>}

(symbol first, so `key` finds it without scanning a 300 kB body). USD-M futures snapshots
(`/fapi/v1/depth`, which add `E` and `T`) travel the same way.

Units: Binance prints prices and quantities as decimal strings with at most 8 places, so a
price unit is 1e-8 of the quote currency and a lot 1e-8 of the base (`"61837.63000000"` ->
6183763000000). Futures print fewer places; the same 1e-8 units hold them exactly. A symbol's
tick (its PRICE_FILTER) is a multiple of the unit, inferred from its book (`Feed.window_tick`).

Events: `Event.ts` is the event's transaction time `T` where present, else its event time `E`
(ms -> ns); the spot REST snapshot has neither and takes the local receive time. `Event.seq`
of a diff's LEVEL_SETs is the diff's final update id `u`; of a snapshot's events, its
`lastUpdateId`. A trade does not move the book: its `seq` is the update id of the book it was
received against (so a rebuilt row's seq always names a book state) and its trade id (`t`, or
`a` for aggTrade) is in `order_id`; `side` is the resting (maker) side and `flags` says who
the aggressor was, as for ITCH executions.

Sync ("How to manage a local order book correctly", Binance spot API docs; the USD-M futures
page of the same name for events that carry `pu`):
- diffs are buffered until a snapshot arrives; then, and for every later diff,
- spot: a diff whose `u` <= the book's update id is stale and dropped; the first diff after
  the snapshot must straddle it (`U <= lastUpdateId+1 <= u`); after that a diff with
  `U > last u + 1` means updates were missed (the doc: "Normally, U of the next event is
  equal to the update ID of the local order book plus 1"; an overlap is harmless because
  quantities are absolute, and is applied);
- futures: drop a diff with `u < lastUpdateId`; the first must have `U <= lastUpdateId <= u`;
  each later diff's `pu` must equal the previous diff's `u`. A diff whose `u` is not past the
  book's is a duplicate (Kafka redelivers at least once) and is dropped, not a gap;
- on a gap the book is discarded ("Discard your local order book and restart"): BookSync
  drops to AWAITING_SNAPSHOT, the diff that revealed the gap is buffered, SequenceGap is
  raised. The next snapshot replays the buffer under the same rules.
`bookTicker` leaves the book alone; it is decoded, kept in `tickers[symbol]`, and wherever its
`u` equals the update id of the book (now, or once a diff ending at that `u` is applied) the
book's best bid/ask is compared with it (`stats[symbol].tickers_*`): a free consistency check.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import parse_qs, urlsplit

from .. import native
from ..book import BookType, L2Book
from ..errors import DecodeError, FeedError, SequenceGap, UnknownMessageType, check_size, is_text, shown
from ..events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from ..numbers import INT64_MAX, fits_int64, parse_fixed
from ..sync import BookSync
from .base import (
    Feed,
    Record,
    RecordBlock,
    block_lines,
    block_records,
    blocks_of,
    check_first_line,
    epoch_splitter,
    line_blocks,
    loads_strict,
    not_this_format,
)

VENUE = "binance"
DECIMALS = 8  # price unit 1e-8 quote, lot 1e-8 base
MS = 1_000_000  # ms -> ns
MAX_PENDING_TICKERS = 256  # tickers waiting for the book to reach their u; older ones are given up

Level = tuple[int, int]

_LEVEL_SET, _BID, _ASK = Kind.LEVEL_SET, Side.BID, Side.ASK  # globals: no enum class lookup per level
_MAX_FIXED_CACHE = 1 << 16  # about 10 MB when full; the captures hold under 50k distinct strings each
_FIXED_CACHE: dict[str, int] = {}
"""Decimal string -> parse_fixed(text, 8) for every string parsed before (str keys only).

Depth diffs repeat the same prices and quantities (the levels near the touch, "0.00000000")
message after message: on the captures 70-97% of the strings were seen before. The value is a
pure function of the key, so the cache is shared by every feed; it is emptied when full."""


class BookTicker(NamedTuple):
    """A decoded `bookTicker`: best bid/ask (ticks, lots) as of order-book update id `u`."""

    symbol: str
    u: int
    bid: int
    bid_qty: int
    ask: int
    ask_qty: int


@dataclass(slots=True)
class Diff:
    """A decoded `depthUpdate`: update ids `U`..`u` (`pu` on futures), absolute level sizes."""

    symbol: str
    first: int  # U
    last: int  # u
    prev: int | None  # pu (USD-M futures only)
    ts: int
    recv_ts: int
    levels: list[Event]  # LEVEL_SET events (seq `u`), bids then asks: built once, returned when applied


@dataclass(slots=True)
class Snapshot:
    symbol: str
    last_update_id: int
    ts: int
    recv_ts: int
    levels: list[Event]  # LEVEL_SET events (seq lastUpdateId), bids then asks


@dataclass
class SyncStats:
    """What happened to one symbol's diffs and tickers (for operators and the real-data tests)."""

    applied: int = 0  # diffs applied to the book
    stale: int = 0  # diffs dropped by the rule "u <= the book's update id" (pre-snapshot, duplicates)
    buffered: int = 0  # diffs held while the book waited for a snapshot
    gaps: int = 0
    snapshots: int = 0
    stale_snapshots: int = 0  # snapshots older than the live book, ignored
    tickers: int = 0
    tickers_matched: int = 0  # bookTicker u == book u and best bid/ask equal
    tickers_mismatched: int = 0  # bookTicker u == book u but best bid/ask differ: the book drifted
    tickers_not_comparable: int = 0  # no book state with exactly the ticker's u was ever seen
    mismatches: list[tuple[BookTicker, tuple[Level | None, Level | None]]] = field(default_factory=list)


_SYMBOL_RE = re.compile(rb'"(?:s|symbol)"\s*:\s*"([^"\\]{1,64})"')
_STREAM_RE = re.compile(rb'"stream"\s*:\s*"([^"@\\]{1,64})@')


def _fail(msg: str) -> DecodeError:
    return DecodeError(msg, venue=VENUE)


def _loads(raw: bytes) -> Any:
    return loads_strict(raw, VENUE)


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj[key]
    if type(v) is not int or v < 0 or v > INT64_MAX:  # an event's int64 holds it, or the native decoder refuses it
        raise _fail(f"{key} must be a non-negative integer, got {v!r:.40}")
    return v


def _str(obj: dict[str, Any], key: str) -> str:
    v = obj[key]
    if type(v) is not str or not v or not is_text(v):  # a lone surrogate: the native decoder's JSON refuses it
        raise _fail(f"{key} must be a non-empty string, got {v!r:.40}")
    return v


def _time(obj: dict[str, Any], fallback: int) -> int:
    """Transaction time `T` if present, else event time `E` (ms), as ns; else `fallback`."""
    for key in ("T", "E"):
        if key in obj:
            ms = _int(obj, key)
            if ms * MS > INT64_MAX:
                raise _fail(f"{key} {ms} ms does not fit int64 ns")
            return ms * MS
    return fallback


def _fixed(text: Any, field: str) -> int:
    """`parse_fixed(text, 8, field=field)` through `_FIXED_CACHE`."""
    value = _FIXED_CACHE.get(text) if type(text) is str else None
    if value is None:
        value = parse_fixed(text, DECIMALS, field=field)
        if type(text) is str:
            if len(_FIXED_CACHE) >= _MAX_FIXED_CACHE:
                _FIXED_CACHE.clear()
            _FIXED_CACHE[text] = value
    return value


def _price(text: Any, key: str) -> int:
    p = _fixed(text, key)
    if p <= 0:
        raise _fail(f"{key} {text!r} is not a positive price")
    return p


def _level_events(rows: Any, key: str, side: Side, symbol: str, ts: int, seq: int, recv_ts: int) -> list[Event]:
    """`[[price, qty], ...]` as LEVEL_SET events; the first bad row raises (price before qty)."""
    if type(rows) is not list:
        raise _fail(f"{key} must be a list of [price, qty], got {type(rows).__name__}")
    cached = _FIXED_CACHE.get
    out: list[Event] = []
    append = out.append
    for row in rows:
        if type(row) is not list or len(row) != 2:
            raise _fail(f"{key} level must be [price, qty], got {row!r:.60}")
        text_price, text_size = row
        try:
            price, size = cached(text_price), cached(text_size)
        except TypeError:  # unhashable: not a string, parse_fixed says so below
            price = size = None
        if price is None or price <= 0:
            price = _price(text_price, f"{key} price")
        if size is None:
            size = _fixed(text_size, f"{key} qty")
        append(Event(_LEVEL_SET, VENUE, symbol, ts, seq, side, price, size, 0, 0, 0, recv_ts))
    return out


def _ticker_of(ev: dict[str, Any]) -> BookTicker:
    return BookTicker(
        _str(ev, "s"),
        _int(ev, "u"),
        _fixed(ev["b"], "b"),
        _fixed(ev["B"], "B"),
        _fixed(ev["a"], "a"),
        _fixed(ev["A"], "A"),
    )


def _symbol_hint(msg: Any) -> str:
    """The symbol of a parsed message, best effort, to name it in an error."""
    if not isinstance(msg, dict):
        return ""
    data = msg.get("data", msg)
    sym = data.get("s") if isinstance(data, dict) else None
    sym = sym if sym is not None else msg.get("symbol")
    return sym if isinstance(sym, str) else ""


class BinanceFeed(Feed):
    """Binance diff-depth books (L2), kept in sync by Binance's documented procedure."""

    venue: ClassVar[str] = VENUE
    book_type: ClassVar[BookType] = BookType.L2

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(symbols, check_crossed=check_crossed)
        self.stats: dict[str, SyncStats] = {}
        self.tickers: dict[str, BookTicker] = {}  # the latest bookTicker per symbol
        self._first: set[str] = set()  # symbols whose next applied diff is the first after a snapshot
        # tickers ahead of the book (the bookTicker stream runs ahead of depth@100ms), oldest first
        self._pending_tickers: dict[str, deque[BookTicker]] = {}

    # -- the Feed interface -------------------------------------------------------------------

    def key(self, raw: bytes) -> str:
        """The symbol: the first `"s"`/`"symbol"` field, else the combined stream's name."""
        m = _SYMBOL_RE.search(raw)
        if m:
            return m.group(1).decode("ascii", "replace")
        m = _STREAM_RE.search(raw)
        if m:
            return m.group(1).decode("ascii", "replace").upper()
        raise _fail("message names no symbol")

    def on_message(self, raw: bytes, recv_ts: int = 0) -> list[Event]:
        check_size(raw, VENUE)
        msg = _loads(raw)
        try:
            item = self._decode(msg, recv_ts)
        except FeedError as err:
            if err.venue:
                raise
            raise DecodeError(str(err), venue=VENUE, symbol=_symbol_hint(msg)) from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise DecodeError(
                f"bad message: {type(err).__name__} {err}", venue=VENUE, symbol=_symbol_hint(msg)
            ) from None
        if item is None:
            return []
        if isinstance(item, Diff):
            return self._on_diff(item)
        if isinstance(item, Snapshot):
            return self._on_snapshot(item)
        if isinstance(item, BookTicker):
            self._on_ticker(item)
            return []
        return item  # trades

    @staticmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """The raw messages of a Binance capture, each as it would sit on `md.raw.binance`.

        Reads hftbacktest's `<recv ns> <json>` lines (a bare REST snapshot line is wrapped with
        the symbol of the nearest event around it, else of the file name `spot_btcusdt_...`)
        and cryptofeed's `<epoch s>: <json>` lines (connection headers and sent lines are
        skipped). Given a cryptofeed websocket file `X.ws.N.M[.gz]`, the REST snapshots in the
        sibling `X.http.*` files of the same folder are merged in by receive time, each wrapped
        with the symbol of its URL (`...depth?symbol=NKNUSDT&limit=1000`).
        """
        return block_records(BinanceFeed.read_capture_blocks(path))

    @classmethod
    def read_capture_blocks(cls, path: str | Path) -> Iterator[RecordBlock]:
        path = Path(path)
        own = _wrap_bare_snapshots(_capture_blocks(path), _symbol_from_filename(path.name))
        prefix, dot_ws, _ = path.name.partition(".ws.")
        if not dot_ws:
            return own
        siblings = sorted(path.parent.glob(f"{prefix}.http.*"))
        return blocks_of(heapq.merge(block_records(own), *map(_capture_lines, siblings), key=_RECV))

    # -- decoding (no book is touched) ----------------------------------------------------------

    def _decode(self, msg: Any, recv_ts: int) -> Diff | Snapshot | BookTicker | list[Event] | None:
        if not isinstance(msg, dict):
            raise _fail(f"message must be a JSON object, got {type(msg).__name__}")
        if "snapshot" in msg:
            return self._decode_snapshot(msg, recv_ts)
        stream = ""
        ev = msg
        if "data" in msg:
            stream = msg.get("stream", "")
            ev = msg["data"]
            if not isinstance(ev, dict) or not isinstance(stream, str) or not is_text(stream):
                raise _fail("combined-stream wrapper must be {stream: str, data: object}")
        kind = ev.get("e")
        if kind is None and (stream.endswith("@bookTicker") or {"u", "b", "B", "a", "A"} <= ev.keys()):
            kind = "bookTicker"  # spot bookTicker events carry no "e"
        if kind == "depthUpdate":
            return self._decode_diff(ev, recv_ts)
        if kind in ("trade", "aggTrade"):
            return self._decode_trade(ev, kind, recv_ts)
        if kind == "bookTicker":
            return _ticker_of(ev)
        if kind == "kline":
            return None
        if "lastUpdateId" in ev:
            raise _fail('REST depth snapshot without its symbol: wrap it as {"symbol": ..., "snapshot": ...}')
        raise UnknownMessageType(f"unknown Binance event type {shown(kind)}", venue=VENUE,
                                 symbol=_symbol_hint(msg))  # fmt: skip

    def _decode_snapshot(self, msg: dict[str, Any], recv_ts: int) -> Snapshot:
        body = msg["snapshot"]
        if not isinstance(body, dict):
            raise _fail("snapshot must be the REST depth object")
        symbol, last_update_id, ts = _str(msg, "symbol"), _int(body, "lastUpdateId"), _time(body, recv_ts)
        bids = _level_events(body["bids"], "bids", _BID, symbol, ts, last_update_id, recv_ts)
        asks = _level_events(body["asks"], "asks", _ASK, symbol, ts, last_update_id, recv_ts)
        bids += asks
        return Snapshot(symbol, last_update_id, ts, recv_ts, bids)

    def _decode_diff(self, ev: dict[str, Any], recv_ts: int) -> Diff:
        first, last = _int(ev, "U"), _int(ev, "u")
        if first > last:
            raise _fail(f"depthUpdate U {first} > u {last}")
        prev = _int(ev, "pu") if "pu" in ev else None
        symbol, ts = _str(ev, "s"), _time(ev, recv_ts)
        bids = _level_events(ev["b"], "b", _BID, symbol, ts, last, recv_ts)
        bids += _level_events(ev["a"], "a", _ASK, symbol, ts, last, recv_ts)
        return Diff(symbol, first, last, prev, ts, recv_ts, bids)

    def _decode_trade(self, ev: dict[str, Any], kind: str, recv_ts: int) -> list[Event]:
        symbol = _str(ev, "s")
        trade_id = _int(ev, "t" if kind == "trade" else "a")
        price = _price(ev["p"], "p")
        size = _fixed(ev["q"], "q")
        buyer_is_maker = ev["m"]
        if type(buyer_is_maker) is not bool:
            raise _fail(f"m must be a boolean, got {buyer_is_maker!r:.20}")
        ts = _time(ev, recv_ts)
        self.book(symbol)  # refuses an unconfigured symbol
        sync = self.syncs[symbol]
        # buyer is maker: the resting order was the bid and the aggressor sold
        side, flag = (Side.BID, FLAG_AGGRESSOR_ASK) if buyer_is_maker else (Side.ASK, FLAG_AGGRESSOR_BID)
        seq = sync.last_seq if sync.live and sync.last_seq is not None else 0
        return [Event(Kind.TRADE, VENUE, symbol, ts, seq, side, price, size, trade_id, 0, flag, recv_ts)]

    # -- sync and application --------------------------------------------------------------------

    def _state(self, symbol: str) -> tuple[L2Book, BookSync, SyncStats]:
        book = self.book(symbol)
        stats = self.stats.get(symbol)
        if stats is None:
            stats = self.stats[symbol] = SyncStats()
        return book, self.syncs[symbol], stats  # type: ignore[return-value]

    def _on_diff(self, d: Diff) -> list[Event]:
        book, sync, stats = self._state(d.symbol)
        if not sync.live:
            sync.hold(d)
            stats.buffered += 1
            return []
        events = self._apply_diff(book, sync, stats, d)
        if events:
            self.check(book, d.last, d.ts)
        return events

    def _on_snapshot(self, s: Snapshot) -> list[Event]:
        """Binance: set the book to the snapshot, then apply the buffered diffs by the update rules."""
        book, sync, stats = self._state(s.symbol)
        if sync.live and sync.last_seq is not None and s.last_update_id < sync.last_seq:
            stats.stale_snapshots += 1  # older than the book we have: it would move the book back
            return []
        buffered: list[Diff] = sync.drain()
        ev = [Event(Kind.SNAPSHOT_BEGIN, VENUE, s.symbol, s.ts, s.last_update_id, recv_ts=s.recv_ts)]
        book.clear()
        _set_levels(book, s.levels)
        ev += s.levels
        ev.append(Event(Kind.SNAPSHOT_END, VENUE, s.symbol, s.ts, s.last_update_id, recv_ts=s.recv_ts))
        sync.go_live(s.last_update_id)
        stats.snapshots += 1
        self._first.add(s.symbol)
        self._catch_up_tickers(book, sync, stats, s.symbol)
        last = (s.last_update_id, s.ts)
        for i, d in enumerate(buffered):
            try:
                applied = self._apply_diff(book, sync, stats, d)
            except SequenceGap:
                for rest in buffered[i + 1 :]:  # kept for the next snapshot
                    sync.hold(rest)
                raise
            if applied:
                ev.extend(applied)
                last = (d.last, d.ts)
        self.check(book, *last)
        return ev

    def _in_sequence(self, sync: BookSync, d: Diff) -> bool | None:
        """True: apply; None: stale, drop; False: updates were missed (the documented rules)."""
        book_id = sync.last_seq if sync.last_seq is not None else -1
        first = d.symbol in self._first
        if d.prev is None:  # spot
            if d.last <= book_id:
                return None
            return d.first <= book_id + 1  # first: U <= lastUpdateId+1 <= u; later: U > u_prev+1 is a gap
        if first:  # USD-M futures
            if d.last < book_id:
                return None
            return d.first <= book_id  # U <= lastUpdateId <= u
        if d.last <= book_id:
            return None
        return d.prev == book_id

    def _apply_diff(self, book: L2Book, sync: BookSync, stats: SyncStats, d: Diff) -> list[Event]:
        verdict = self._in_sequence(sync, d)
        if verdict is None:
            stats.stale += 1
            return []
        if not verdict:
            return self._gap(book, sync, stats, d)
        events = d.levels
        _set_levels(book, events)
        sync.last_seq = d.last
        self._first.discard(d.symbol)
        stats.applied += 1
        self._catch_up_tickers(book, sync, stats, d.symbol)
        return events

    def _gap(self, book: L2Book, sync: BookSync, stats: SyncStats, d: Diff) -> list[Event]:
        """Binance: "you have missed some events. Discard your local order book and restart"."""
        book_id = sync.last_seq if sync.last_seq is not None else 0
        if d.prev is None:
            expected, got = book_id + 1, d.first  # spot: U <= u_prev + 1
        elif d.symbol in self._first:
            expected, got = book_id, d.first  # futures, first diff: U <= lastUpdateId
        else:
            expected, got = book_id, d.prev  # futures: pu == u_prev
        stats.gaps += 1
        sync.lose_sync()
        book.clear()
        self._first.discard(d.symbol)
        sync.hold(d)  # the diff after the gap is the first of the new buffer
        raise SequenceGap(
            "missed depth updates", expected=expected, got=got, venue=VENUE, symbol=d.symbol, seq=d.last, ts=d.ts
        )

    # -- bookTicker consistency ------------------------------------------------------------------

    def _on_ticker(self, t: BookTicker) -> None:
        symbol = t.symbol
        book, sync, stats = self._state(symbol)
        self.tickers[symbol] = t
        stats.tickers += 1
        pending = self._pending_tickers.setdefault(symbol, deque())
        if len(pending) >= MAX_PENDING_TICKERS:
            pending.popleft()
            stats.tickers_not_comparable += 1
        pending.append(t)
        self._catch_up_tickers(book, sync, stats, symbol)

    def _catch_up_tickers(self, book: L2Book, sync: BookSync, stats: SyncStats, symbol: str) -> None:
        """Compare the tickers the book has caught up with: those whose u is the book's update id."""
        pending = self._pending_tickers.get(symbol)
        if not pending or not sync.live or sync.last_seq is None:
            return
        while pending and pending[0].u <= sync.last_seq:
            t = pending.popleft()
            if t.u < sync.last_seq:
                stats.tickers_not_comparable += 1  # its u fell inside a diff's [U, u]: no such book state here
            else:
                self._compare_ticker(book, stats, t)

    @staticmethod
    def _compare_ticker(book: L2Book, stats: SyncStats, t: BookTicker) -> None:
        best = (book.best_bid(), book.best_ask())
        if best == ((t.bid, t.bid_qty), (t.ask, t.ask_qty)):
            stats.tickers_matched += 1
        else:
            stats.tickers_mismatched += 1
            if len(stats.mismatches) < 100:
                stats.mismatches.append((t, best))


def _set_levels(book: L2Book, levels: list[Event]) -> None:
    """Apply decoded LEVEL_SET events (what `book.apply` does for each, without its dispatch)."""
    set_level = book.set_level
    for e in levels:
        set_level(e.side, e.price, e.size)


# -- capture files -----------------------------------------------------------------------------

_FILENAME_SYMBOL_RE = re.compile(r"^(?:spot|usdm|coinm|futures)_([a-z0-9]+)_", re.IGNORECASE)


def _symbol_from_filename(name: str) -> str | None:
    m = _FILENAME_SYMBOL_RE.match(name)
    return m.group(1).upper() if m else None


def _wrap_snapshot(symbol: str, body: bytes) -> bytes:
    return b'{"symbol":' + json.dumps(symbol).encode() + b',"snapshot":' + body + b"}"


def _is_bare_snapshot(body: bytes) -> bool:
    head = body.lstrip() if body[:1].isspace() else body[:20]  # no copy of a whole message per line
    return head[:20].replace(b" ", b"").startswith(b'{"lastUpdateId"')


def _bare(raws: list[bytes]) -> list[int]:
    """The indices of the bare REST snapshots among `raws` (a stream's message never is one)."""
    return [i for i, raw in enumerate(raws) if not raw.startswith(b'{"stream"') and _is_bare_snapshot(raw)]


Block = tuple[RecordBlock, list[int]]  # records, and the indices of the bare REST snapshots among them


def _capture_lines(path: Path) -> Iterator[Record]:
    """Records from one file, bare REST snapshots left bare (hftbacktest) or wrapped by URL (cryptofeed)."""
    for records, _ in _capture_blocks(path):
        yield from records.records()


def _capture_blocks(path: Path) -> Iterator[Block]:
    """`_capture_lines` a block of lines at a time. On the native path a block of hftbacktest lines alone
    (`<digits> <json>`, nearly all of its captures') is read in Rust (`_core.stamped_lines`), as is one of
    cryptofeed's received lines alone (`epoch_splitter`), any other line by line here; both give the
    same records."""
    stamped_lines = native._core.stamped_lines if native.enabled() else None
    epoch_stamped = epoch_splitter()
    checked = False
    for n, block in line_blocks(path):
        fast = stamped_lines(block) if checked and stamped_lines is not None else None
        if fast is not None:
            times, raws, bare = fast
            yield RecordBlock(times, raws), bare
            continue
        if checked and epoch_stamped is not None and (split := epoch_stamped(block)) is not None:
            yield split, _bare(split.raws)
            continue
        records: list[Record] = []
        for i, line in block_lines(n, block):
            if not checked and line.strip():
                check_first_line(path, i, line, VENUE)
                checked = True
            try:
                rec = _parse_line(line)
            except DecodeError as err:  # the file, not one message: reading stops with where and what it looked like
                yield _with_bare(records)  # the lines before it are read
                raise not_this_format(path, i, line, VENUE, why=err.args[0]) from err
            if rec is not None:
                records.append(rec)
        yield _with_bare(records)


def _with_bare(records: list[Record]) -> Block:
    block = RecordBlock.of(records)
    return block, _bare(block.raws)


def _parse_line(line: bytes) -> Record | None:
    """A capture line's record; None for a line that holds none; DecodeError saying what is wrong with it."""
    stamp, _, body = line.partition(b" ")
    if stamp.isdigit():  # hftbacktest: "<recv ns> <json>", nearly every line of its captures
        return Record(fits_int64(int(stamp), "receive time", stamp), body)
    if not line.strip():
        return None
    if line.startswith(b"https://"):
        return _parse_http_line(line)
    if line.startswith((b"wss://", b"ws://")):
        return None  # cryptofeed connection header or a line it sent
    if line.startswith(b"{"):
        return Record(0, line)
    if stamp.endswith(b":"):  # cryptofeed: "<epoch s>: <json>"
        return Record(parse_fixed(stamp[:-1], 9, field="capture time"), body)
    raise DecodeError("neither hftbacktest's `<recv ns> <json>` nor cryptofeed's `<epoch s>: <json>`")


def _parse_http_line(line: bytes) -> Record | None:
    """cryptofeed HTTP capture: `https://.../depth?symbol=NKNUSDT&limit=1000 -> <epoch s>: <json>`."""
    url, sep, rest = line.partition(b" -> ")
    stamp, sep2, body = rest.partition(b": ")
    if not sep or not sep2:
        raise DecodeError("an HTTP line that is not cryptofeed's `<url> -> <epoch s>: <json>`")
    parts = urlsplit(url.decode("ascii", "replace"))
    symbols = parse_qs(parts.query).get("symbol")
    if not parts.path.endswith("/depth") or not symbols:
        return None  # some other REST call
    return Record(parse_fixed(stamp, 9, field="capture time"), _wrap_snapshot(symbols[0], body))


def _wrap_bare_snapshots(blocks: Iterable[Block], fallback: str | None) -> Iterator[RecordBlock]:
    """Wrap each bare REST snapshot with the symbol of the event before it (else after it, else
    of the file name); records are held back while a snapshot waits, so the order is kept.

    "The event before it" is the latest record whose symbol the regex finds: the records since the last
    look are kept aside (`unread`) and searched newest first only when a snapshot needs the symbol (or
    they pile up), instead of a search of every line."""
    symbol: str | None = None
    unread: list[bytes] = []
    held: list[Record] = []
    for block, bare in blocks:
        if not bare and not held:  # nearly every block: nothing to wrap or release
            unread.extend(block.raws)
            if len(unread) >= _UNREAD:
                symbol = _latest_symbol(unread, symbol)
                unread.clear()
            yield block
            continue
        snapshots = set(bare)
        out: list[Record] = []
        for i, rec in enumerate(block.records()):
            raw = rec.raw
            if i in snapshots:
                symbol = _latest_symbol(unread, symbol)
                unread.clear()
                if symbol is not None and not held:
                    out.append(Record(rec.recv_ts, _wrap_snapshot(symbol, raw)))
                else:
                    held.append(rec)
                continue
            if held:  # no symbol yet: this record's, if it has one, releases the snapshots held
                symbol = _latest_symbol([raw], None)
                if symbol is None:
                    held.append(rec)
                    continue
                out.extend(_release(held, symbol))
                held = []
            else:
                unread.append(raw)
                if len(unread) >= _UNREAD:
                    symbol = _latest_symbol(unread, symbol)
                    unread.clear()
            out.append(rec)
        yield RecordBlock.of(out)
    if held:
        if fallback is None:
            raise DecodeError("REST snapshot in a capture that names no symbol", venue=VENUE)
        yield RecordBlock.of(list(_release(held, fallback)))


_RECV = itemgetter(0)  # a Record's recv_ts
_UNREAD = 1024  # records kept aside unsearched at most


def _latest_symbol(raws: list[bytes], symbol: str | None) -> str | None:
    """The symbol of the latest of `raws` that names one as text, else `symbol`."""
    for raw in reversed(raws):
        m = _SYMBOL_RE.search(raw)
        if m:
            try:
                return m.group(1).decode()
            except UnicodeDecodeError:  # not text: a message the feed refuses, no name to take
                continue
    return symbol


def _release(held: list[Record], symbol: str) -> Iterator[Record]:
    for rec in held:
        yield Record(rec.recv_ts, _wrap_snapshot(symbol, rec.raw)) if _is_bare_snapshot(rec.raw) else rec
