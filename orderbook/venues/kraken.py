"""Kraken websocket: L2 books (v1 channel arrays and v2 objects), trades, CRC32 book checksums.

A raw message is one websocket text frame exactly as Kraken sends it (the value on
`md.raw.kraken`):

- v1 (docs.kraken.com, "Spot Websockets (v1)"): a book snapshot
  `[channelID, {"as": [[price, volume, ts], ...], "bs": [...]}, "book-1000", "XBT/USD"]`;
  an update `[channelID, {"a": [...]}, "book-1000", pair]`, with "b", with both in one
  dict, or as two dicts `[channelID, {"a": [...]}, {"b": [...], "c": "<crc32>"}, ...]`.
  Update levels may carry a fourth element "r" (republished to refill the subscribed
  depth): it is an ordinary level set. Trades `[channelID, [[price, volume, time, side,
  orderType, misc], ...], "trade", pair]`. Event dicts (heartbeat, systemStatus,
  subscriptionStatus, pong) and ticker/spread/ohlc arrays return [].
- v2 ("Spot Websockets (v2)"): `{"channel": "book", "type": "snapshot"|"update", "data":
  [{"symbol", "bids": [{"price", "qty"}], "asks": [...], "checksum", "timestamp"}]}`,
  `{"channel": "trade", ...}`, the `instrument` channel (which gives each pair's
  `price_precision` and `qty_precision`), heartbeats, status and method responses.
  v2 prints prices as JSON numbers: every number is parsed from its JSON text
  (`parse_float=str`), never through a binary float.

Units: a pair's price is an integer in units of 10^-p and its size in units of 10^-q, where
p and q are the decimals Kraken prints for that pair ("0.000022900" -> p = 9; v1 volumes
print 8 decimals). They are read, in this order, from the constructor's `precisions`, from a
v2 `instrument` message, or from the widest decimals printed in the pair's latest snapshot
(Kraken prints every level at the pair's full precision, trailing zeros included; the v2
docs' own example prints "45281.0" and "0.10000000"). `feed.precision[pair]` says which.

Checksum ("Book checksum (WebSocket v1)" and "(v2)"): after applying a whole message, the
top 10 asks (low to high) then the top 10 bids (high to low), each price then size printed
at the pair's precision with '.' removed and leading zeros stripped, concatenated; CRC32 as
an unsigned 32-bit integer. With prices and sizes stored as integers at exactly that
precision, the printed string without '.' and leading zeros is `str(int)`, so the string is
built from the book's integers. v1 sends it on updates only, v2 on snapshots and updates;
every one received is checked. A mismatch drops the book to AWAITING_SNAPSHOT and raises
ChecksumMismatch. Kraken has no replay procedure (no sequence numbers, no REST snapshot to
splice buffered updates onto): a fresh snapshot, which the client gets by resubscribing,
replaces the whole book. Updates that arrive for a book awaiting its snapshot are
therefore not buffered: they are dropped, counted in `feed.skipped[pair]`, and raise
OutOfSync (so a worker dead-letters them with that reason instead of losing them quietly).

Depth: the docs say to "truncate your book to the subscribed depth" after each update,
since Kraken sends no deletion for a level pushed out of scope. v1 names the depth in the
channel ("book-10" -> 10); v2 names it only in the subscription, so the feed takes it from
a `subscribe` response for the pair, else the constructor's `depth` (Kraken's default, 10).
Discarded levels are returned as LEVEL_SET events of size 0, so that a consumer applying the
events keeps the same book.

Sequence and time: Kraken books carry no sequence number, so `Event.seq` is the pair's
message count: the 1-based number of book and trade messages this feed has been handed for
that pair (snapshots; updates applied, dropped while awaiting a snapshot or rejected for a
bad number; trades). `Event.ts` is the latest level timestamp in the message, on every event
of the message (v1: "1618678133.365913" seconds -> ns exactly; v2: the RFC 3339 `timestamp`,
0 on a snapshot without one). Trades: `Event.side` is the resting side that was hit (as ITCH's executions) and
`flags` names the aggressor (v1 side "b" / v2 "buy" -> FLAG_AGGRESSOR_BID, resting ASK).
"""

from __future__ import annotations

import calendar
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

from ..book import BookType, L2Book
from ..errors import ChecksumMismatch, DecodeError, FeedError, OutOfSync, UnknownMessageType, check_size, shown
from ..events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from ..numbers import INT64_MIN, decimals_of, fits_int64, parse_fixed
from .base import Feed, Record, RecordBlock, block_records, cryptofeed_blocks

VENUE = "kraken"
CHECKSUM_LEVELS = 10  # "the top 10 price levels regardless of subscription depth"
V1_VOLUME_DECIMALS = 8
V2_DEFAULT_DEPTH = 10  # the v2 book subscription's default depth
NS_DECIMALS = 9
MAX_EXPONENT = 30  # "1e999999999" would print a billion digits: no price or size is that far from 1
MAX_DECIMALS = 18  # a pair's decimals: an int64 holds 18 digits whole; Kraken prints at most 10
PY_INT_MAX_DIGITS = 4300  # int() refuses longer digit strings: a depth or precision that long is refused first

_V1_EVENTS = frozenset({"heartbeat", "systemStatus", "subscriptionStatus", "pong"})
_V1_IGNORED_CHANNELS = frozenset({"ticker", "spread"})  # and "ohlc-<interval>"
_V2_IGNORED_CHANNELS = frozenset({"heartbeat", "status", "ticker", "ohlc"})
_V1_PAIR = re.compile(rb',\s*"([^"\\]+)"\s*\]\s*$')
_V2_SYMBOL = re.compile(rb'"symbol"\s*:\s*"([^"\\]+)"')
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-](\d{2}):(\d{2}))", re.ASCII)
# what an exponent may look like: Decimal() also takes spaces, underscores and other scripts' digits, which
# no venue prints (and the native decoder does not read)
_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", re.ASCII)


@dataclass(frozen=True, slots=True)
class Precision:
    """Decimals of a pair's prices and sizes, and where they were learnt."""

    price: int
    size: int
    source: str  # "config", "instrument", "snapshot"; "trade" or "update" where no snapshot printed a level


@dataclass(slots=True)
class _Levels:
    """The text of a book message's levels, before the pair's precision turns it into integers."""

    symbol: str
    snapshot: bool
    levels: list[tuple[Side, str, str]]  # (side, price text, size text) in message order
    ts: int
    checksum: int | None
    depth: int


def book_checksum(book: L2Book) -> int:
    """Kraken's CRC32 over the top 10 asks (ascending) then the top 10 bids (descending).

    Each level contributes its price then its size as printed without '.' and leading zeros,
    which for integers stored at the printed precision is their decimal `str`.
    """
    bids, asks = book.top(CHECKSUM_LEVELS)
    return zlib.crc32("".join(f"{p}{s}" for p, s in asks + bids).encode("ascii"))


def _bad(message: str, symbol: str = "", seq: int | None = None) -> NoReturn:
    raise DecodeError(message, venue=VENUE, symbol=symbol, seq=seq)


def _reject_constant(name: str) -> NoReturn:
    _bad(f"{name} is not a number Kraken sends")


def _loads(raw: bytes) -> Any:
    """JSON with every number kept as its exact text (v2 prints prices as JSON numbers)."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_float=str, parse_int=str, parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        _bad(f"not UTF-8 text: {err}")
    except (json.JSONDecodeError, RecursionError) as err:
        _bad(f"not a JSON message: {err}")


def _text(value: Any, field: str) -> str:
    """A number's text: a quoted decimal (v1) or a JSON number's exact text (v2)."""
    if not isinstance(value, str):
        _bad(f"{field} must be a decimal, got {type(value).__name__}")
    if "e" in value or "E" in value:  # an exponent is exact as a Decimal; print it plainly
        if not _EXPONENT.fullmatch(value):
            _bad(f"{field} {value!r} is not a number")
        try:
            d = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
            _bad(f"{field} {value!r} is not a number")
        if not d.is_finite() or not -MAX_EXPONENT <= d.adjusted() <= MAX_EXPONENT:
            _bad(f"{field} {value!r} is not a finite number of a sane size")
        value = format(d, "f")
    return value


def _epoch_ns(value: Any) -> int:
    """v1 level/trade time "1618678133.365913" (seconds) -> ns, exactly."""
    return parse_fixed(_text(value, "timestamp"), NS_DECIMALS, field="timestamp")


def _rfc3339_ns(value: Any) -> int:
    """v2 time "2023-10-06T17:35:55.440295Z" -> ns since the epoch, exactly; outside what an event's int64
    ns hold (1677-09-21 to 2262-04-11), refused, as an offset's minutes past 59 are (RFC 3339's time-minute)."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        _bad(f"timestamp {value!r} is not RFC 3339")
    base, frac, tz, _, minutes = m.groups()
    try:
        if minutes is not None and int(minutes) > 59:
            raise ValueError
        dt = datetime.fromisoformat(base + ("+00:00" if tz == "Z" else tz))
        seconds = calendar.timegm(dt.utctimetuple())  # OverflowError: the UTC time leaves years 1-9999
    except (ValueError, OverflowError):
        _bad(f"timestamp {value!r} is not a valid date")
    ns = seconds * 10**NS_DECIMALS + int((frac or "0").ljust(NS_DECIMALS, "0"))
    if ns < INT64_MIN:
        _bad(f"timestamp {value!r} is before what int64 ns hold")
    return fits_int64(ns, "timestamp", value)


def _checksum_field(value: Any) -> int:
    if not isinstance(value, str) or not value.isdigit() or not value.isascii() or int(value) >= 2**32:
        _bad(f"checksum {value!r} is not an unsigned 32-bit integer")
    return int(value)


def _positive_int(text: str) -> int | None:
    """ASCII digits (at most PY_INT_MAX_DIGITS) of a value above 0, else None."""
    if not text.isascii() or not text.isdigit() or len(text) > PY_INT_MAX_DIGITS or int(text) <= 0:
        return None
    return int(text)


def _depth_of(channel: str) -> int:
    """v1 "book-1000" -> 1000: the subscribed depth rides in the channel name."""
    depth = _positive_int(channel[5:])
    if depth is None:
        _bad(f"book channel {channel!r} names no depth")
    return depth


def _decimals(value: object, what: str, symbol: str = "", seq: int | None = None, ts: int = 0) -> int:
    """A count of decimals (an int, or the ASCII digits of one) that a pair's numbers are read at."""
    n = None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= PY_INT_MAX_DIGITS:
        n = int(value)
    elif type(value) is int:
        n = value
    if n is None or not 0 <= n <= MAX_DECIMALS:
        raise DecodeError(f"{what} {value!r:.40}: at most {MAX_DECIMALS} decimals are read", venue=VENUE,
                          symbol=symbol, seq=seq, ts=ts)  # fmt: skip
    return n


class KrakenFeed(Feed):
    """Kraken v1 and v2 websocket books and trades; one L2 book per pair, checked by CRC32."""

    venue = VENUE
    book_type = BookType.L2

    def __init__(
        self,
        symbols: set[str] | None = None,
        *,
        check_crossed: bool = True,
        precisions: dict[str, tuple[int, int]] | None = None,
        depth: int = V2_DEFAULT_DEPTH,
    ) -> None:
        """`precisions`: pair -> (price decimals, size decimals), for pairs whose snapshots
        might print fewer decimals than the pair has. `depth`: the v2 book subscription depth
        where no subscribe response names it."""
        super().__init__(symbols, check_crossed=check_crossed)
        try:
            self.precision: dict[str, Precision] = {
                s: Precision(_decimals(p, "price decimals"), _decimals(q, "size decimals"), "config")
                for s, (p, q) in (precisions or {}).items()
            }
        except DecodeError as err:
            raise ValueError(f"precisions: {err}") from None
        self.v2_depth: dict[str, int] = {}
        self.default_depth = depth
        self.messages: Counter[str] = Counter()  # per pair: the Event.seq counter
        self.skipped: Counter[str] = Counter()  # updates dropped while awaiting a snapshot
        self.checksums_checked: Counter[str] = Counter()
        self.checksums_matched: Counter[str] = Counter()

    # -- the Feed interface -------------------------------------------------------------

    def on_message(self, raw: bytes, recv_ts: int = 0) -> list[Event]:
        check_size(raw, VENUE)
        msg = _loads(raw)
        try:
            if isinstance(msg, list):
                return self._on_v1(msg, recv_ts)
            if isinstance(msg, dict):
                if "channel" in msg or "method" in msg:
                    return self._on_v2(msg, recv_ts)
                if "event" in msg:
                    return self._on_v1_event(msg)
            raise UnknownMessageType(f"not a Kraken message: a JSON {type(msg).__name__}", venue=VENUE)
        except FeedError as err:
            if err.venue:
                raise
            raise DecodeError(str(err), venue=VENUE) from None  # numbers.parse_fixed's, which names no venue
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
            raise DecodeError(f"malformed message: {err!r}", venue=VENUE) from err

    def key(self, raw: bytes) -> str:
        """The pair, found with a regex instead of a parse: v1's last element, v2's "symbol"."""
        m = _V1_PAIR.search(raw[-200:]) if raw[:1] == b"[" else _V2_SYMBOL.search(raw)
        return m.group(1).decode("utf-8", "replace") if m else ""

    @staticmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """cryptofeed's recording: `wss://... <-> <epoch>` headers and `wss://... <- ...` sent
        lines are skipped; each received line `<epoch s>: <json>` is one Record."""
        return block_records(KrakenFeed.read_capture_blocks(path))

    @classmethod
    def read_capture_blocks(cls, path: str | Path) -> Iterator[RecordBlock]:
        return cryptofeed_blocks(path, VENUE, _received)

    # -- v1 ----------------------------------------------------------------------------

    def _on_v1_event(self, msg: dict[str, Any]) -> list[Event]:
        event = msg["event"]
        if event not in _V1_EVENTS:
            raise UnknownMessageType(f"unknown v1 event {shown(event)}", venue=VENUE)
        pair, channel = msg.get("pair"), msg.get("channelName")
        if (
            event == "subscriptionStatus"
            and msg.get("status") == "unsubscribed"
            and isinstance(channel, str)
            and channel.startswith("book")
            and pair in self.syncs
        ):
            self.syncs[pair].lose_sync()  # no more updates will come: the book is no longer kept
        return []

    def _on_v1(self, msg: list[Any], recv_ts: int) -> list[Event]:
        if len(msg) < 4 or not isinstance(msg[-2], str) or not isinstance(msg[-1], str):
            _bad("a v1 channel message is [channelID, payload..., channelName, pair]")
        channel, pair = msg[-2], msg[-1]
        if channel.startswith("book-"):
            return self._on_book(self._v1_levels(msg[1:-2], channel, pair), recv_ts)
        if channel == "trade":
            return self._v1_trades(msg[1:-2], pair, recv_ts)
        if channel in _V1_IGNORED_CHANNELS or channel.startswith("ohlc-"):
            return []
        raise UnknownMessageType(f"unknown v1 channel {shown(channel)}", venue=VENUE, symbol=pair)

    def _v1_levels(self, payloads: list[Any], channel: str, pair: str) -> _Levels:
        """The levels of a v1 book message, in message order; "c" from whichever dict has it."""
        depth = _depth_of(channel)
        if not payloads or len(payloads) > 2 or not all(isinstance(p, dict) for p in payloads):
            _bad("a v1 book message carries one or two dicts of levels", pair)
        snapshot = "as" in payloads[0] or "bs" in payloads[0]
        allowed = {"as", "bs"} if snapshot else {"a", "b", "c"}
        levels: list[tuple[Side, str, str]] = []
        ts = 0
        checksum: int | None = None
        for payload in payloads:
            if not payload or not set(payload) <= allowed:
                _bad(f"unexpected book keys {sorted(payload)} in a {'snapshot' if snapshot else 'update'}", pair)
            for key, rows in payload.items():
                if key == "c":
                    if checksum is not None:
                        _bad("two checksums in one message", pair)
                    checksum = _checksum_field(rows)
                    continue
                side = Side.ASK if key[0] == "a" else Side.BID
                ts = max(ts, self._v1_side(rows, side, levels, pair))
        return _Levels(pair, snapshot, levels, ts, checksum, depth)

    @staticmethod
    def _v1_side(rows: Any, side: Side, out: list[tuple[Side, str, str]], pair: str) -> int:
        """Append `[price, volume, timestamp(, "r")]` rows; return their latest timestamp."""
        if not isinstance(rows, list):
            _bad(f"levels must be a list, got {type(rows).__name__}", pair)
        ts = 0
        for row in rows:
            if not isinstance(row, list) or len(row) not in (3, 4) or (len(row) == 4 and row[3] != "r"):
                _bad(f"a level is [price, volume, timestamp] or a republish with 'r', got {row!r}"[:200], pair)
            out.append((side, _text(row[0], "price"), _text(row[1], "volume")))
            ts = max(ts, _epoch_ns(row[2]))
        return ts

    def _v1_trades(self, payloads: list[Any], pair: str, recv_ts: int) -> list[Event]:
        if len(payloads) != 1 or not isinstance(payloads[0], list):
            _bad("a v1 trade message is [channelID, [[price, volume, time, side, type, misc], ...], 'trade', pair]")
        rows = []
        for row in payloads[0]:
            if not isinstance(row, list) or len(row) < 4 or row[3] not in ("b", "s"):
                _bad(f"a trade is [price, volume, time, side 'b'|'s', ...], got {row!r}"[:200], pair)
            rows.append((row[3] == "b", _text(row[0], "price"), _text(row[1], "volume"), _epoch_ns(row[2])))
        return self._on_trades(pair, rows, recv_ts)

    # -- v2 ----------------------------------------------------------------------------

    def _on_v2(self, msg: dict[str, Any], recv_ts: int) -> list[Event]:
        if "method" in msg:
            self._v2_method(msg)
            return []
        channel, data = msg["channel"], msg.get("data")
        if channel in _V2_IGNORED_CHANNELS:
            return []
        if channel == "instrument":
            self._v2_instruments(data)
            return []
        if channel not in ("book", "trade"):
            raise UnknownMessageType(f"unknown v2 channel {shown(channel)}", venue=VENUE)
        if not isinstance(data, list):
            _bad(f"v2 {channel} data must be a list")
        if channel == "trade":
            return self._v2_trades(data, recv_ts)
        kind = msg.get("type")
        if kind not in ("snapshot", "update"):
            raise UnknownMessageType(f"unknown v2 book message type {shown(kind)}", venue=VENUE)
        decoded = [self._v2_levels(item, kind == "snapshot") for item in data]
        return self._on_books(decoded, recv_ts)

    def _v2_method(self, msg: dict[str, Any]) -> None:
        """A subscribe response names the book depth the client must truncate to."""
        result = msg.get("result")
        if msg.get("method") == "subscribe" and msg.get("success") is True and isinstance(result, dict):
            depth, symbol = result.get("depth"), result.get("symbol")
            if result.get("channel") == "book" and isinstance(symbol, str) and isinstance(depth, str):
                value = _positive_int(depth)
                if value is None:
                    _bad(f"book depth {depth!r} is not a positive integer", symbol)
                self.v2_depth[symbol] = value

    def _v2_instruments(self, data: Any) -> None:
        """`instrument` channel: each pair's price_precision and qty_precision."""
        if not isinstance(data, dict) or not isinstance(data.get("pairs", []), list):
            _bad("v2 instrument data must hold a list of pairs")
        for pair in data.get("pairs", []):
            symbol, p, q = pair["symbol"], pair["price_precision"], pair["qty_precision"]
            if not isinstance(symbol, str):
                _bad(f"instrument {symbol!r} must be a string")
            prec = Precision(_decimals(p, "price_precision"), _decimals(q, "qty_precision"), "instrument")
            if self.precision.get(symbol, Precision(0, 0, "")).source != "config":
                self.precision[symbol] = prec

    def _v2_levels(self, item: Any, snapshot: bool) -> _Levels:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
            _bad("v2 book data items are objects with a symbol")
        symbol = item["symbol"]
        levels: list[tuple[Side, str, str]] = []
        for key, side in (("asks", Side.ASK), ("bids", Side.BID)):
            rows = item.get(key, [])
            if not isinstance(rows, list):
                _bad(f"{key} must be a list", symbol)
            for row in rows:
                if not isinstance(row, dict):
                    _bad(f"a v2 level is {{'price', 'qty'}}, got {row!r}"[:200], symbol)
                levels.append((side, _text(row["price"], "price"), _text(row["qty"], "qty")))
        ts = _rfc3339_ns(item["timestamp"]) if "timestamp" in item else 0
        checksum = _checksum_field(item["checksum"]) if "checksum" in item else None
        depth = self.v2_depth.get(symbol, self.default_depth)
        return _Levels(symbol, snapshot, levels, ts, checksum, depth)

    def _v2_trades(self, data: list[Any], recv_ts: int) -> list[Event]:
        by_pair: dict[str, list[tuple[bool, str, str, int]]] = {}
        for t in data:
            if not isinstance(t, dict) or t.get("side") not in ("buy", "sell") or not isinstance(t.get("symbol"), str):
                _bad(f"a v2 trade has a symbol and a side 'buy'|'sell', got {t!r}"[:200])
            row = (t["side"] == "buy", _text(t["price"], "price"), _text(t["qty"], "qty"), _rfc3339_ns(t["timestamp"]))
            by_pair.setdefault(t["symbol"], []).append(row)
        return [e for pair, rows in by_pair.items() for e in self._on_trades(pair, rows, recv_ts)]

    # -- books -------------------------------------------------------------------------

    def _on_books(self, decoded: list[_Levels], recv_ts: int) -> list[Event]:
        """Several books in one v2 message: each is applied; the first error is raised last."""
        events: list[Event] = []
        first_error: FeedError | None = None
        for msg in decoded:
            try:
                events.extend(self._on_book(msg, recv_ts))
            except FeedError as err:
                first_error = first_error or err
        if first_error is not None:
            raise first_error
        return events

    def _on_book(self, msg: _Levels, recv_ts: int) -> list[Event]:
        book = self.book(msg.symbol)
        assert isinstance(book, L2Book)
        self.messages[msg.symbol] += 1
        seq = self.messages[msg.symbol]
        sync = self.syncs[msg.symbol]
        if msg.snapshot:
            self._learn_precision(msg, seq)
        elif not sync.live:
            self.skipped[msg.symbol] += 1  # no replay exists: the next snapshot replaces the book
            raise OutOfSync("book update while awaiting a snapshot: not applied", venue=VENUE, symbol=msg.symbol,
                            seq=seq, ts=msg.ts)  # fmt: skip
        levels = self._parse_levels(msg, seq)  # every level parsed before the book is touched
        events = self._apply(book, msg, levels, seq, recv_ts)
        if msg.snapshot:
            sync.go_live(seq)
        else:
            sync.last_seq = seq
        if msg.checksum is not None:
            self._verify(book, msg, seq)
        self.check(book, seq, msg.ts)
        return events

    def _learn_precision(self, msg: _Levels, seq: int) -> None:
        """A snapshot prints every level at the pair's precision: the widest decimals are it."""
        known = self.precision.get(msg.symbol)
        if known is not None and known.source in ("config", "instrument"):
            return
        if not msg.levels:
            return  # an empty book teaches nothing; keep what an earlier snapshot said
        price = max(decimals_of(p) for _, p, _ in msg.levels)
        size = max(decimals_of(s) for _, _, s in msg.levels)
        self.precision[msg.symbol] = self._printed(msg.symbol, price, size, "snapshot", seq, msg.ts)

    @staticmethod
    def _printed(symbol: str, price: int, size: int, source: str, seq: int, ts: int) -> Precision:
        """The precision the decimals printed say, refused past MAX_DECIMALS (no int64 value has more)."""
        where = {"symbol": symbol, "seq": seq, "ts": ts}
        return Precision(_decimals(price, "price decimals", **where), _decimals(size, "size decimals", **where), source)

    def _parse_levels(self, msg: _Levels, seq: int) -> list[tuple[Side, int, int]]:
        prec = self.precision.get(msg.symbol)
        if prec is None:  # only an empty snapshot leaves it unknown: the first update that prints levels fixes it
            price = max((decimals_of(p) for _, p, _ in msg.levels), default=0)
            size = max((decimals_of(s) for _, _, s in msg.levels), default=V1_VOLUME_DECIMALS)
            prec = self._printed(msg.symbol, price, size, "update", seq, msg.ts)
            if msg.levels:
                self.precision[msg.symbol] = prec
        try:
            return [
                (side, parse_fixed(p, prec.price, field="price"), parse_fixed(s, prec.size, field="size"))
                for side, p, s in msg.levels
            ]
        except (DecodeError, ValueError) as err:  # ValueError: int() of a number of over 4,300 digits
            raise DecodeError(str(err), venue=VENUE, symbol=msg.symbol, seq=seq, ts=msg.ts) from None

    def _apply(
        self, book: L2Book, msg: _Levels, levels: Iterable[tuple[Side, int, int]], seq: int, recv_ts: int
    ) -> list[Event]:
        """Apply in message order ("do not sort by timestamp"), then truncate to the depth."""

        def event(kind: Kind, side: Side = Side.NONE, price: int = 0, size: int = 0) -> Event:
            return Event(kind, VENUE, msg.symbol, msg.ts, seq, side, price, size, recv_ts=recv_ts)

        events = [event(Kind.SNAPSHOT_BEGIN)] if msg.snapshot else []
        events += [event(Kind.LEVEL_SET, side, price, size) for side, price, size in levels]
        for e in events:
            book.apply(e)
        for side, book_side in ((Side.ASK, book.asks), (Side.BID, book.bids)):
            while len(book_side) > msg.depth:  # the worst level is the last one on both sides
                price, _ = book_side.popitem(-1)
                events.append(event(Kind.LEVEL_SET, side, price, 0))
        if msg.snapshot:
            events.append(event(Kind.SNAPSHOT_END))
        return events

    def _verify(self, book: L2Book, msg: _Levels, seq: int) -> None:
        self.checksums_checked[msg.symbol] += 1
        ours = book_checksum(book)
        if ours != msg.checksum:
            self.syncs[msg.symbol].lose_sync()
            raise ChecksumMismatch(
                "CRC32 of the top 10 levels differs; the book awaits a fresh snapshot",
                expected=msg.checksum,  # type: ignore[arg-type]
                got=ours,
                venue=VENUE,
                symbol=msg.symbol,
                seq=seq,
                ts=msg.ts,
            )
        self.checksums_matched[msg.symbol] += 1

    # -- trades ------------------------------------------------------------------------

    def _trade_precision(self, pair: str, prices: list[str], size_decimals: list[int], seq: int) -> Precision:
        """The book's precision where known; else what the trade prints (Kraken prints a
        pair's trades at the same precision as its book), kept for the pair's next trades."""
        prec = self.precision.get(pair)
        if prec is None:
            price, size = max(decimals_of(p) for p in prices), max(V1_VOLUME_DECIMALS, *size_decimals)
            prec = self.precision[pair] = self._printed(pair, price, size, "trade", seq, 0)
        return prec

    def _on_trades(self, pair: str, rows: list[tuple[bool, str, str, int]], recv_ts: int) -> list[Event]:
        self.book(pair)  # the symbol filter applies to trades too
        self.messages[pair] += 1
        seq = self.messages[pair]
        if not rows:
            return []
        prec = self._trade_precision(pair, [p for _, p, _, _ in rows], [decimals_of(s) for _, _, s, _ in rows], seq)
        events = []
        for buy, price, size, ts in rows:
            try:
                px, qty = parse_fixed(price, prec.price, field="price"), parse_fixed(size, prec.size, field="size")
            except (DecodeError, ValueError) as err:  # ValueError: int() of a number of over 4,300 digits
                raise DecodeError(str(err), venue=VENUE, symbol=pair, seq=seq, ts=ts) from None
            side, flag = (Side.ASK, FLAG_AGGRESSOR_BID) if buy else (Side.BID, FLAG_AGGRESSOR_ASK)
            events.append(Event(Kind.TRADE, VENUE, pair, ts, seq, side, px, qty, flags=flag, recv_ts=recv_ts))
        return events


def _received(line: bytes) -> Record:
    """A received line `<epoch s>: <json>` as its record; any other as a message of its own, which the feed
    will say what is wrong with."""
    stamp, sep, body = line.partition(b": ")
    try:
        recv_ns = parse_fixed(stamp, NS_DECIMALS, field="receive time") if sep else 0
    except (DecodeError, UnicodeDecodeError):
        recv_ns, body = 0, line
    return Record(recv_ns, body if sep else line)
