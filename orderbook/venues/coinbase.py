"""Coinbase Exchange websocket feed: the `level2` channel (L2 books) and the `full` channel (L3 books).

Raw message (topic `md.raw.coinbase`, key = product id): one websocket JSON message as Coinbase sends
it, or a REST book snapshot wrapped by `snapshot_messages` (see "Snapshots on the topic" below).

Units: prices and sizes are exact decimal strings; both are parsed at 8 decimals (Coinbase prints at
most 8 and trims trailing zeros in sizes), so a price unit is 1e-8 quote currency and a size lot is
1e-8 base currency. `"0.7910"` -> 79_100_000 units, `"450.0"` -> 45_000_000_000 lots. A product's tick
(its quote_increment) is a multiple of the unit, inferred from its book (`Feed.window_tick`).

A product keeps either an L2 or an L3 book, decided by the first book message seen for it:
`snapshot`, `l2update` or `l2_snapshot` -> L2; a full-channel message (`received`, `open`, `done`,
`change`, `activate`) or `l3_snapshot` -> L3. A later message of the other kind is a BookError.

level2 channel (docs: "Level2 Channel"): `snapshot` then `l2update`s whose `changes` are
`[side, price, size]` with the absolute size at that price, "0" removing the level. The channel carries
no sequence number, so `Event.seq` of level-2 events is a per-product count of level-2 messages
(the snapshot is 1) and nothing can be replayed: an `l2update` before the product's snapshot is
dropped with OutOfSync.

Trades: `match` (and `last_match`, the one sent on subscribing to `matches`) carry the product's
`sequence`. On an L2 product they are Kind.TRADE events with seq = sequence. Coinbase's `side` on a
match is the MAKER's side ("If the side is sell this indicates the maker was a sell order and the
match is considered an up-tick"), so Event.side is the maker side and the aggressor flag is the
opposite: maker "sell" -> FLAG_AGGRESSOR_BID. A match for a product with no book yet is kept aside
(it may belong to the full channel and be needed after the snapshot) and returns nothing.

full channel (docs: "Full Channel", "Sequence Numbers"): every message of a product carries a
`sequence` that increases by one; `sequence <= last` is a duplicate or stale message and is dropped,
`sequence > last + 1` means messages were lost: the book drops to AWAITING_SNAPSHOT
(BookSync.lose_sync) and SequenceGap is raised. While a book awaits its snapshot, full-channel
messages are buffered; the REST level-3 snapshot (`/products/<id>/book?level=3`) then replaces the
book, buffered messages with `sequence <= snapshot.sequence` are dropped and the rest replayed, each
subject to the same rule. Per message type:
- `received`, `activate`: no book change (the sequence is consumed).
- `open`: the order rests: ADD `remaining_size` at `price`, order id = the UUID string.
- `match`: EXECUTE `size` on `maker_order_id` (also the trade print; flags as above).
- `change`: `new_size` -> CHANGE in place keeping queue priority (the docs: "Orders can only decrease
  in size"); a `new_price` different from the resting price, or a larger size, is taken as losing
  priority: REPLACE with the same id at the back of the queue. `new_funds` changes (market orders)
  and changes of orders not on the book ("received but not yet open ... can be ignored") do nothing.
- `done`: DELETE when the order is on the book; when a match already took its whole size the `done`
  only confirms it; otherwise the order never rested (market order, or filled or cancelled on
  arrival: "done messages for orders which are not on the book should be ignored") and it is ignored.
  A `remaining_size` that disagrees with the book raises BookError after the order is removed.
Any BookError while applying a full-channel message (unknown maker, duplicate open, size mismatch)
means the book has drifted from the venue's: it drops to AWAITING_SNAPSHOT before the error is raised.

Other messages: `subscriptions`, `heartbeat`, `ticker`, `status` return []; `error` (a rejected
subscription or request) raises VenueErrorMessage so it is counted and dead-lettered, never silent.

Snapshots on the topic: a REST body travels as one or more messages
`{"type": "l3_snapshot" | "l2_snapshot", "product_id", "sequence", "part", "parts", "bids", "asks"}`
(entries as REST gives them: `[price, size, order_id]` for level 3, `[price, size, num_orders]` for
level 2). A BTC-USD level-3 body is about 7 MB, past both MAX_MESSAGE_BYTES (4 MB) and Kafka's default
1 MB record limit, so `snapshot_messages` splits it into parts of at most SNAPSHOT_PART_ENTRIES
entries; parts are staged and the book is replaced when the last one arrives (`part`/`parts` may be
left out for a single message). The level-2 REST sequence cannot be matched to level2 websocket
updates (they carry none): an `l2_snapshot` sets an L2 book as it stands.
"""

from __future__ import annotations

import calendar
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from ..book import Book, BookType, L2Book, L3Book
from ..errors import (
    BookError,
    CaptureError,
    DecodeError,
    FeedError,
    OutOfSync,
    SequenceGap,
    UnknownMessageType,
    VenueErrorMessage,
    check_size,
    is_text,
    shown,
)
from ..events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from ..numbers import INT64_MAX, INT64_MIN, fits_int64, parse_fixed
from ..sync import BookSync
from .base import (
    Feed,
    Record,
    RecordBlock,
    block_records,
    check_first_line,
    cryptofeed_blocks,
    first_line,
    loads_strict,
    numbered_lines,
)

VENUE = "coinbase"
DECIMALS = 8  # price units of 1e-8 quote currency, lots of 1e-8 base currency
SNAPSHOT_PART_ENTRIES = 10_000  # about 0.75 MB of level-3 entries per part: under Kafka's 1 MB default
MAX_EARLY_MATCHES = 1_000  # matches kept for a product whose book type is not known yet

_SIDES = {"buy": Side.BID, "sell": Side.ASK}
_FULL_TYPES = frozenset({"received", "open", "done", "match", "change", "activate"})
_IGNORED_TYPES = frozenset({"subscriptions", "heartbeat", "ticker", "status"})
_PRODUCT_RE = re.compile(rb'"product_id"\s*:\s*"([^"\\]*)"')
_TIME_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:Z|\+00:00)?", re.ASCII)
__all__ = ["CoinbaseFeed", "VenueErrorMessage", "parse_time", "snapshot_messages"]  # VenueErrorMessage: errors.py's

# --- decoding helpers: each raises DecodeError, the feed adds venue/symbol/seq --------------------


def _load(raw: bytes) -> dict[str, Any]:
    msg = loads_strict(raw)
    if not isinstance(msg, dict):
        raise DecodeError(f"expected a JSON object, got {type(msg).__name__}")
    return msg


def _text(v: object) -> bool:
    """A non-empty string that is Unicode text (an id or a name the native decoder can hold)."""
    return isinstance(v, str) and bool(v) and is_text(v)


def _count(v: object) -> bool:
    """A non-negative integer an event's int64 holds (the native decoder refuses any other)."""
    return type(v) is int and 0 <= v <= INT64_MAX


def _str(msg: dict[str, Any], key: str) -> str:
    v = msg.get(key)
    if not _text(v):
        raise DecodeError(f"{key} must be a non-empty string, got {shown(v)}")
    return v  # type: ignore[return-value]


def _int(msg: dict[str, Any], key: str, default: int | None = None) -> int:
    v = msg.get(key, default)
    if not _count(v):
        raise DecodeError(f"{key} must be a non-negative integer, got {shown(v)}")
    return v  # type: ignore[return-value]


def _side(text: object) -> Side:
    side = _SIDES.get(text) if isinstance(text, str) else None
    if side is None:
        raise DecodeError(f"side must be 'buy' or 'sell', got {text!r}")
    return side


def _px(text: object, name: str = "price") -> int:
    return parse_fixed(text, DECIMALS, field=name)  # type: ignore[arg-type]


def _opt_px(msg: dict[str, Any], key: str) -> int | None:
    v = msg.get(key)
    return None if v is None else _px(v, key)


@lru_cache(maxsize=4096)
def _epoch_s(head: str) -> int:
    return calendar.timegm(datetime.fromisoformat(head).timetuple())


def parse_time(text: object) -> int:
    """Coinbase's ISO-8601 UTC time (`2021-04-17T16:43:37.075687Z`) -> ns since the epoch, exactly;
    a time outside what an event's int64 ns hold (1677-09-21 to 2262-04-11) is refused."""
    m = _TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise DecodeError(f"time {text!r} is not an ISO-8601 UTC timestamp")
    try:
        seconds = _epoch_s(m.group(1))
    except ValueError:
        raise DecodeError(f"time {text!r} is not a valid date") from None
    ns = seconds * 10**9 + int((m.group(2) or "").ljust(9, "0"))
    if ns < INT64_MIN:
        raise DecodeError(f"time {text!r} does not fit int64")
    return fits_int64(ns, "time", text)


def _opt_time(msg: dict[str, Any]) -> int:
    return parse_time(msg["time"]) if msg.get("time") is not None else 0


def _levels(entries: object, name: str, width: int) -> list[tuple[int, int]]:
    """`[[price, size, ...], ...]` -> [(price units, lots)]; `width` entries per row (extras unchecked here)."""
    if not isinstance(entries, list):
        raise DecodeError(f"{name} must be a list")
    out = []
    for row in entries:
        if not isinstance(row, list) or len(row) != width:
            raise DecodeError(f"{name} entry {row!r:.80} is not a list of {width}")
        out.append((_px(row[0]), _px(row[1], "size")))
    return out


# --- the decoded forms ------------------------------------------------------------------------------


@dataclass(slots=True)
class FullOp:
    """One decoded full-channel message (buffered as such while a book awaits its snapshot)."""

    type: str
    product: str
    seq: int
    ts: int
    recv_ts: int = 0
    order_id: str = ""
    side: Side = Side.NONE
    price: int | None = None
    size: int | None = None  # open: remaining_size; match: size; change: new_size; done: remaining_size
    new_price: int | None = None  # change (order modify) only


@dataclass
class _StagedSnapshot:
    """REST snapshot parts received so far (see the module docstring)."""

    book_type: BookType
    seq: int
    parts: int
    ts: int
    recv_ts: int
    next_part: int = 0  # the part expected next
    bids: list[tuple[int, int, str]] = field(default_factory=list)
    asks: list[tuple[int, int, str]] = field(default_factory=list)


def _decode_full(msg: dict[str, Any], typ: str, recv_ts: int) -> FullOp:
    op = FullOp(typ, _str(msg, "product_id"), _int(msg, "sequence"), parse_time(msg.get("time")), recv_ts)
    if typ == "open":
        op.order_id, op.side = _str(msg, "order_id"), _side(msg.get("side"))
        op.price, op.size = _px(msg.get("price")), _px(msg.get("remaining_size"), "remaining_size")
    elif typ == "match":
        op.order_id, op.side = _str(msg, "maker_order_id"), _side(msg.get("side"))
        op.price, op.size = _px(msg.get("price")), _px(msg.get("size"), "size")
    elif typ == "done":
        op.order_id, op.side = _str(msg, "order_id"), _side(msg.get("side"))
        op.price, op.size = _opt_px(msg, "price"), _opt_px(msg, "remaining_size")  # absent for market orders
    elif typ == "change":
        op.order_id, op.side = _str(msg, "order_id"), _side(msg.get("side"))
        op.price, op.size, op.new_price = _opt_px(msg, "price"), _opt_px(msg, "new_size"), _opt_px(msg, "new_price")
    return op


def _trade_flags(maker_side: Side) -> int:
    # the maker rested on `maker_side`: the aggressor took the other side
    return FLAG_AGGRESSOR_ASK if maker_side == Side.BID else FLAG_AGGRESSOR_BID


# --- the feed -------------------------------------------------------------------------------------------


class CoinbaseFeed(Feed):
    """Coinbase Exchange `level2` (L2 books) and `full` (L3 books) channels; see the module docstring."""

    venue: ClassVar[str] = VENUE
    book_type: ClassVar[BookType] = BookType.L2  # default for `book()` on a product not seen yet

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(symbols, check_crossed=check_crossed)
        self.l2_counts: dict[str, int] = {}  # level-2 messages per product: the seq of L2 events
        self._staged: dict[str, _StagedSnapshot] = {}
        self._early: dict[str, deque[FullOp]] = {}  # matches seen before the product's book type

    # books -------------------------------------------------------------------------------------------

    def book(self, symbol: str) -> Book:
        b = self.books.get(symbol)
        return b if b is not None else self._book(symbol, self.book_type)

    def _book(self, symbol: str, book_type: BookType) -> Book:
        """The product's book, created as `book_type` on first sight; a product never changes type."""
        b = self.books.get(symbol)
        if b is not None:
            if b.book_type is not book_type:
                raise BookError(
                    f"{symbol} keeps an {b.book_type.name} book; a {book_type.name} message cannot apply",
                    venue=VENUE,
                    symbol=symbol,
                )
            return b
        self.check_symbol(symbol)
        b = L3Book(VENUE, symbol) if book_type is BookType.L3 else L2Book(VENUE, symbol)
        self.books[symbol] = b
        sync = self.syncs[symbol] = BookSync(VENUE, symbol)
        early = self._early.pop(symbol, ())
        if book_type is BookType.L3:
            for op in early:  # they precede every later full-channel message: buffer them first
                sync.hold(op)
        return b

    # the entry points --------------------------------------------------------------------------------

    def key(self, raw: bytes) -> str:
        m = _PRODUCT_RE.search(raw)
        return m.group(1).decode("utf-8", "replace") if m else ""

    def on_message(self, raw: bytes, recv_ts: int = 0) -> list[Event]:
        check_size(raw, VENUE)
        msg: dict[str, Any] = {}
        try:
            msg = _load(raw)
            return self._dispatch(msg, recv_ts)
        except DecodeError as err:
            if err.venue:
                raise
            raise type(err)(str(err), venue=VENUE, **_where(msg)) from None
        except FeedError:
            raise
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
            # decoding happens before any book change, so the book is untouched
            raise DecodeError(f"malformed message: {err!r}", venue=VENUE, **_where(msg)) from None

    def _dispatch(self, msg: dict[str, Any], recv_ts: int) -> list[Event]:
        typ = msg.get("type")
        if not isinstance(typ, str):
            raise DecodeError(f"message has no type: {str(msg)[:80]}")
        if typ in _IGNORED_TYPES:
            return []
        if typ in ("match", "last_match"):
            return self._on_match(msg, typ, recv_ts)
        if typ in _FULL_TYPES:
            return self._on_full(_decode_full(msg, typ, recv_ts))
        if typ == "snapshot":
            return self._on_l2_snapshot(msg, recv_ts)
        if typ == "l2update":
            return self._on_l2update(msg, recv_ts)
        if typ in ("l2_snapshot", "l3_snapshot"):
            return self._on_rest_snapshot(msg, typ, recv_ts)
        if typ == "error":
            text = f"{_said(msg.get('message'))}: {_said(msg.get('reason'))}"
            raise VenueErrorMessage(f"Coinbase error message {text[:200]}", venue=VENUE, **_where(msg))
        raise UnknownMessageType(f"unknown message type {shown(typ)}")

    # level2 ------------------------------------------------------------------------------------------

    def _next_l2_seq(self, product: str) -> int:
        n = self.l2_counts.get(product, 0) + 1
        self.l2_counts[product] = n
        return n

    def _on_l2_snapshot(self, msg: dict[str, Any], recv_ts: int) -> list[Event]:
        """Level2 `snapshot`: the whole book; it makes the product's L2 book live."""
        product = _str(msg, "product_id")
        bids, asks = _levels(msg.get("bids"), "bids", 2), _levels(msg.get("asks"), "asks", 2)
        ts = _opt_time(msg)
        book = self._book(product, BookType.L2)
        return self._set_l2(book, bids, asks, ts, recv_ts)

    def _set_l2(
        self, book: Book, bids: list[tuple[int, int]], asks: list[tuple[int, int]], ts: int, recv_ts: int
    ) -> list[Event]:
        seq = self._next_l2_seq(book.symbol)
        ev = self._event_factory(book.symbol, ts, seq, recv_ts)
        events = [ev(Kind.SNAPSHOT_BEGIN)]
        events += [ev(Kind.LEVEL_SET, Side.BID, p, s) for p, s in bids]
        events += [ev(Kind.LEVEL_SET, Side.ASK, p, s) for p, s in asks]
        events.append(ev(Kind.SNAPSHOT_END))
        for e in events:
            book.apply(e)
        self.syncs[book.symbol].go_live(seq)
        self.check(book, seq, ts)
        return events

    def _on_l2update(self, msg: dict[str, Any], recv_ts: int) -> list[Event]:
        """`l2update`: absolute sizes per price; no sequence, so an update before the snapshot is lost."""
        product = _str(msg, "product_id")
        ts = parse_time(msg.get("time"))
        changes = msg.get("changes")
        if not isinstance(changes, list):
            raise DecodeError("changes must be a list")
        levels = []
        for ch in changes:
            if not isinstance(ch, list) or len(ch) != 3:
                raise DecodeError(f"change {ch!r:.80} is not [side, price, size]")
            levels.append((_side(ch[0]), _px(ch[1]), _px(ch[2], "size")))
        book = self._book(product, BookType.L2)
        seq = self._next_l2_seq(product)
        sync = self.syncs[product]
        if not sync.live:
            raise OutOfSync("l2update before the product's snapshot: dropped", venue=VENUE, symbol=product, seq=seq)
        ev = self._event_factory(product, ts, seq, recv_ts)
        events = [ev(Kind.LEVEL_SET, side, p, s) for side, p, s in levels]
        for e in events:
            book.apply(e)
        sync.last_seq = seq
        self.check(book, seq, ts)
        return events

    # trades ------------------------------------------------------------------------------------------

    def _on_match(self, msg: dict[str, Any], typ: str, recv_ts: int) -> list[Event]:
        op = _decode_full(msg, "match", recv_ts)
        book = self.books.get(op.product)
        if book is None:
            self.check_symbol(op.product)
            if typ == "match":  # may be a full-channel message the snapshot replay will need
                self._early.setdefault(op.product, deque(maxlen=MAX_EARLY_MATCHES)).append(op)
            return []
        if book.book_type is BookType.L3:
            # `last_match` comes from the matches channel and predates the subscription
            return [] if typ == "last_match" else self._on_full(op)
        e = Event(
            Kind.TRADE,
            VENUE,
            op.product,
            op.ts,
            op.seq,
            op.side,
            op.price or 0,
            op.size or 0,
            op.order_id,
            flags=_trade_flags(op.side),
            recv_ts=recv_ts,
        )
        return [e]

    # full channel --------------------------------------------------------------------------------------

    def _on_full(self, op: FullOp) -> list[Event]:
        """Coinbase's sequence rule: stale -> drop, next -> apply, beyond -> lose sync and resync."""
        book = self._book(op.product, BookType.L3)
        sync = self.syncs[op.product]
        if not sync.live:
            sync.hold(op)
            return []
        assert sync.last_seq is not None
        if op.seq <= sync.last_seq:
            return []
        if op.seq != sync.last_seq + 1:
            expected = sync.last_seq + 1
            sync.lose_sync()
            sync.hold(op)  # after the gap: replayed if the next snapshot is older than it
            raise SequenceGap(
                "full channel sequence gap", expected=expected, got=op.seq, venue=VENUE, symbol=op.product
            )
        events = self._apply_full(book, op)  # type: ignore[arg-type]
        self.check(book, op.seq, op.ts)
        return events

    def _apply_full(self, book: L3Book, op: FullOp) -> list[Event]:
        sync = self.syncs[op.product]
        try:
            events = self._full_events(book, op)
        except BookError:
            sync.lose_sync()  # the book no longer matches the venue's: only a snapshot repairs it
            raise
        sync.last_seq = op.seq
        return events

    def _full_events(self, book: L3Book, op: FullOp) -> list[Event]:
        """Apply one in-sequence full-channel message; returns the events applied."""
        ev = self._event_factory(op.product, op.ts, op.seq, op.recv_ts)
        oid, resting = op.order_id, book.orders.get(op.order_id)
        if op.type == "open":
            e = ev(Kind.ADD, op.side, op.price or 0, op.size or 0, oid)
        elif op.type == "match":
            if resting is not None and (resting.price != op.price or resting.side != op.side):
                raise BookError(
                    f"match at {op.price} {op.side.name} on maker {oid} resting at {resting.price} {resting.side.name}",
                    venue=VENUE,
                    symbol=op.product,
                    seq=op.seq,
                )
            e = ev(Kind.EXECUTE, op.side, op.price or 0, op.size or 0, oid, _trade_flags(op.side))
            book.apply(e)  # UnknownOrder when the maker is not on the book
            return [e]
        elif op.type == "done":
            return self._done(book, op, ev)
        elif op.type == "change":
            if resting is None or op.size is None:
                return []  # not on the book (received, not open) or a market order's funds
            new_price = op.new_price if op.new_price is not None else resting.price
            if new_price != resting.price or op.size > resting.size:
                e = ev(Kind.REPLACE, resting.side, new_price, op.size, oid)
                e.new_order_id = oid
            else:
                e = ev(Kind.CHANGE, resting.side, resting.price, op.size, oid)
        else:  # received, activate: nothing rests yet
            return []
        book.apply(e)
        return [e]

    def _done(self, book: L3Book, op: FullOp, ev: Callable[..., Event]) -> list[Event]:
        resting = book.orders.get(op.order_id)
        if resting is None:
            # filled by a match already, or never rested: Coinbase says to ignore it either way
            return []
        e = ev(Kind.DELETE, resting.side, resting.price, resting.size, op.order_id)
        left = resting.size
        book.apply(e)
        if op.size is not None and op.size != left:
            raise BookError(
                f"done for {op.order_id} with remaining_size {op.size}, the book had {left}",
                venue=VENUE,
                symbol=op.product,
                seq=op.seq,
            )
        return [e]

    # REST snapshots ------------------------------------------------------------------------------------

    def _on_rest_snapshot(self, msg: dict[str, Any], typ: str, recv_ts: int) -> list[Event]:
        product = _str(msg, "product_id")
        seq, part, parts = _int(msg, "sequence"), _int(msg, "part", 0), _int(msg, "parts", 1)
        book_type = BookType.L3 if typ == "l3_snapshot" else BookType.L2
        self._book(product, book_type)
        staged = self._stage(product, book_type, seq, part, parts, _opt_time(msg), recv_ts)
        try:
            for side in ("bids", "asks"):
                getattr(staged, side).extend(_snapshot_entries(msg.get(side), side, book_type))
        except DecodeError:
            self._staged.pop(product, None)
            raise
        staged.next_part += 1
        if staged.next_part < parts:
            return []
        del self._staged[product]
        if book_type is BookType.L2:
            return self._set_l2(
                self.books[product],
                [(p, s) for p, s, _ in staged.bids],
                [(p, s) for p, s, _ in staged.asks],
                staged.ts,
                recv_ts,
            )
        return self._set_l3(self.books[product], staged)  # type: ignore[arg-type]

    def _stage(
        self, product: str, book_type: BookType, seq: int, part: int, parts: int, ts: int, recv_ts: int
    ) -> _StagedSnapshot:
        if parts < 1 or part >= parts:
            raise DecodeError(f"snapshot part {part} of {parts}")
        if part == 0:
            staged = self._staged[product] = _StagedSnapshot(book_type, seq, parts, ts, recv_ts)
            return staged
        staged = self._staged.get(product)  # type: ignore[assignment]
        if staged is None or (staged.seq, staged.parts, staged.next_part, staged.book_type) != (
            seq,
            parts,
            part,
            book_type,
        ):
            self._staged.pop(product, None)
            raise DecodeError(f"snapshot part {part}/{parts} of sequence {seq} does not follow the parts received")
        return staged

    def _set_l3(self, book: L3Book, staged: _StagedSnapshot) -> list[Event]:
        """Replace the book with a level-3 snapshot, then replay the buffer past its sequence."""
        product, seq = book.symbol, staged.seq
        sync = self.syncs[product]
        pending = sync.drain()
        ev = self._event_factory(product, staged.ts, seq, staged.recv_ts)
        events = [ev(Kind.SNAPSHOT_BEGIN)]
        events += [ev(Kind.ADD, Side.BID, p, s, oid) for p, s, oid in staged.bids]
        events += [ev(Kind.ADD, Side.ASK, p, s, oid) for p, s, oid in staged.asks]
        events.append(ev(Kind.SNAPSHOT_END))
        try:
            for e in events:
                book.apply(e)
        except BookError:
            sync.lose_sync()  # a half-built book is no book: wait for the next snapshot
            book.clear()
            for op in pending:  # still needed on top of the next snapshot
                sync.hold(op)
            raise
        sync.go_live(seq)
        events += self._replay(book, sync, pending)
        self.check(book, sync.last_seq, staged.ts)
        return events

    def _replay(self, book: L3Book, sync: BookSync, pending: list[FullOp]) -> list[Event]:
        events: list[Event] = []
        for i, op in enumerate(pending):
            assert sync.last_seq is not None
            if op.seq <= sync.last_seq:
                continue  # already in the snapshot
            if op.seq != sync.last_seq + 1:
                expected = sync.last_seq + 1
                sync.lose_sync()
                for later in pending[i:]:
                    sync.hold(later)
                raise SequenceGap(
                    "buffered messages do not follow the snapshot",
                    expected=expected,
                    got=op.seq,
                    venue=VENUE,
                    symbol=book.symbol,
                )
            events += self._apply_full(book, op)
        return events

    # helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def _event_factory(product: str, ts: int, seq: int, recv_ts: int) -> Callable[..., Event]:
        """Events of one message: they share product, times and sequence."""

        def ev(
            kind: Kind, side: Side = Side.NONE, price: int = 0, size: int = 0, oid: str = "", flags: int = 0
        ) -> Event:
            return Event(kind, VENUE, product, ts, seq, side, price, size, oid or 0, flags=flags, recv_ts=recv_ts)

        return ev

    @staticmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """cryptofeed's capture (`<epoch s>: <json>` lines; header `<->` and sent `<-` lines skipped),
        or a REST snapshot file (its first line JSON: one JSON body, gzip or not), yielded as
        `snapshot_messages` parts."""
        return block_records(_capture_blocks(path))

    @classmethod
    def read_capture_blocks(cls, path: str | Path) -> Iterator[RecordBlock]:
        return _capture_blocks(path)


def _capture_blocks(path: str | Path) -> Iterator[RecordBlock]:
    """`CoinbaseFeed.read_capture`'s records a block of lines at a time."""
    first = first_line(path)
    if first is None or not first[1].startswith(b"{"):
        yield from cryptofeed_blocks(path, VENUE, _received)
        return
    n, line = first  # a REST body, maybe pretty-printed over several lines
    check_first_line(path, n, line, VENUE)
    yield RecordBlock.of(_rest_snapshot(path, n, b"\n".join(x for i, x in numbered_lines(path) if i >= n)))


def _received(line: bytes) -> Record:
    """A received line `<epoch s>: <json>` as its record; any other (a stamp of 0 too) as a message of its own,
    which the feed will say what is wrong with."""
    stamp, sep, raw = line.partition(b": ")
    try:
        recv_ts = parse_fixed(stamp, 9, field="capture time") if sep else 0
    except DecodeError:
        recv_ts = 0
    return Record(recv_ts, raw if sep and recv_ts else line)


def _rest_snapshot(path: str | Path, line: int, text: bytes) -> list[Record]:
    """A REST snapshot file's body (`text`, from its first line `line` on) as `snapshot_messages` parts, or a
    CaptureError saying why it is not one."""
    try:
        body = json.loads(text)  # an object: the text starts with `{`
        recv_ts = parse_time(body["captured_at"]) if body.get("captured_at") else 0
        return [Record(recv_ts, raw) for raw in snapshot_messages(body)]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, DecodeError) as err:
        raise CaptureError(
            path,
            f"its first line is JSON, so it is read as a REST book snapshot (one JSON object, maybe over several "
            f"lines), but it is not one: {type(err).__name__} {err}"[:400],
            line=line,
        ) from None


def _snapshot_entries(entries: object, name: str, book_type: BookType) -> list[tuple[int, int, str]]:
    """REST entries: level 3 `[price, size, order_id]`, level 2 `[price, size, num_orders]`."""
    levels = _levels(entries, name, 3)
    out = []
    for (price, size), row in zip(levels, entries, strict=True):  # type: ignore[call-overload]
        extra = row[2]
        if book_type is BookType.L3:
            if not _text(extra):
                raise DecodeError(f"{name} entry {row!r:.80} has no order id")
            out.append((price, size, extra))
        else:
            if not _count(extra):
                raise DecodeError(f"{name} entry {row!r:.80} has no order count")
            out.append((price, size, ""))
    return out


def _where(msg: dict[str, Any]) -> dict[str, Any]:
    product, seq = msg.get("product_id"), msg.get("sequence")
    return {"symbol": product if _text(product) else "", "seq": seq if _count(seq) else None}


def _said(value: object) -> str:
    """What an `error` message says in a field: its text as sent, else as `shown` words it."""
    return value if isinstance(value, str) and is_text(value) else shown(value)


def snapshot_messages(
    body: dict[str, Any], product_id: str | None = None, part_entries: int = SNAPSHOT_PART_ENTRIES
) -> list[bytes]:
    """A REST `/products/<id>/book?level=2|3` body as `md.raw.coinbase` messages (see the module docstring).

    The level comes from `body["level"]` where present, else from the entries (an order id string ->
    level 3). Entries keep their order, which is the queue order within a price level."""
    product = product_id or body.get("product_id") or body.get("product")
    bids, asks = body.get("bids") or [], body.get("asks") or []
    level = body.get("level")
    if level is None:
        first = (bids or asks or [[None, None, 0]])[0]
        level = 3 if isinstance(first[2], str) else 2
    entries = [("bids", e) for e in bids] + [("asks", e) for e in asks]
    parts = max(1, -(-len(entries) // part_entries))
    out = []
    for k in range(parts):
        chunk = entries[k * part_entries : (k + 1) * part_entries]
        msg: dict[str, Any] = {
            "type": f"l{level}_snapshot",
            "product_id": product,
            "sequence": body.get("sequence"),
            "part": k,
            "parts": parts,
        }
        if body.get("time"):
            msg["time"] = body["time"]
        msg["bids"] = [e for side, e in chunk if side == "bids"]
        msg["asks"] = [e for side, e in chunk if side == "asks"]
        out.append(json.dumps(msg, separators=(",", ":")).encode())
    return out
