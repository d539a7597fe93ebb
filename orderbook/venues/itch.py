"""NASDAQ TotalView-ITCH 5.0: decoder, encoder, framing and the order-by-order feed.

A raw message is one ITCH 5.0 message as NASDAQ specifies it (TotalView-ITCH 5.0, section 4):
binary, big-endian, a one-byte message type, then stock locate (2), tracking number (2) and a
6-byte timestamp (nanoseconds since midnight), then the type's fields. It is the value on
`md.raw.itch`, without the 2-byte length prefix that frames messages in NASDAQ's day files
(`frame` and `read_capture` deal with that prefix).

Units: `Price(4)` is an integer in 1/10000 dollar, which is our price unit as it stands (the tick,
one cent, is 100 units: `ItchFeed.tick`); shares are lots. `Event.ts` is the ITCH timestamp (ns
since midnight), `Event.seq` is the message index within the stream: the count of messages this
feed has been handed, starting at 1, malformed ones included, so it equals the message's position
in the capture.

Symbols: the stock directory (`R`) maps a stock locate to its symbol for the day (spec 4.2.1:
"locate codes ... are assigned daily"). Messages that carry a stock field (A, F, P, Q, H, ...)
also teach the feed that mapping; a message of a locate never named (E, X, D, U, B before any
R/A) is routed to the placeholder symbol `locate:<n>`, which an `R` for that locate later
renames.
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..book import BookType, L3Book
from ..errors import BookError, DecodeError, OversizedMessage, UnknownMessageType, UnknownOrder, check_size
from ..events import (
    FLAG_AGGRESSOR_ASK,
    FLAG_AGGRESSOR_BID,
    FLAG_BROKEN,
    FLAG_CROSS,
    FLAG_HIDDEN,
    FLAG_NON_PRINTABLE,
    Event,
    Kind,
    Side,
    Status,
)
from .base import GZIP_ERRORS, Feed, Record, broken_gzip, check_first_line

VENUE = "itch"
CENT = 100  # Price(4) units (1/10000 $) per cent

"""An `E`-like execution (`C` with Printable = 'N') that must not be counted as volume: the
spec says such executions are reported again in a cross (`Q`) message."""

# Field codes: struct codes for integers (H: 2, I: 4, Q: 8 bytes), "c" one Alpha character,
# "<n>s" an Alpha field of n characters, left-justified and space-padded (spec 1.3).
Layout = tuple[tuple[str, str], ...]

HEADER: Layout = (("locate", "H"), ("tracking", "H"), ("timestamp", "ts"))

LAYOUTS: dict[str, Layout] = {
    # 4.1 system event
    "S": (("event_code", "c"),),
    # 4.2 stock related
    "R": (
        ("stock", "8s"),
        ("market_category", "c"),
        ("financial_status", "c"),
        ("round_lot_size", "I"),
        ("round_lots_only", "c"),
        ("issue_classification", "c"),
        ("issue_subtype", "2s"),
        ("authenticity", "c"),
        ("short_sale_threshold", "c"),
        ("ipo_flag", "c"),
        ("luld_tier", "c"),
        ("etp_flag", "c"),
        ("etp_leverage", "I"),
        ("inverse", "c"),
    ),
    "H": (("stock", "8s"), ("trading_state", "c"), ("reserved", "c"), ("reason", "4s")),
    "Y": (("stock", "8s"), ("reg_sho_action", "c")),
    "L": (
        ("mpid", "4s"),
        ("stock", "8s"),
        ("primary_market_maker", "c"),
        ("market_maker_mode", "c"),
        ("participant_state", "c"),
    ),
    "V": (("level1", "Q"), ("level2", "Q"), ("level3", "Q")),
    "W": (("breached_level", "c"),),
    "K": (("stock", "8s"), ("release_time", "I"), ("release_qualifier", "c"), ("ipo_price", "I")),
    "J": (("stock", "8s"), ("reference_price", "I"), ("upper_price", "I"), ("lower_price", "I"), ("extension", "I")),
    "h": (("stock", "8s"), ("market_code", "c"), ("halt_action", "c")),
    # 4.3 add order
    "A": (("order_ref", "Q"), ("side", "c"), ("shares", "I"), ("stock", "8s"), ("price", "I")),
    "F": (("order_ref", "Q"), ("side", "c"), ("shares", "I"), ("stock", "8s"), ("price", "I"), ("mpid", "4s")),
    # 4.4 modify order
    "E": (("order_ref", "Q"), ("shares", "I"), ("match", "Q")),
    "C": (("order_ref", "Q"), ("shares", "I"), ("match", "Q"), ("printable", "c"), ("price", "I")),
    "X": (("order_ref", "Q"), ("shares", "I")),
    "D": (("order_ref", "Q"),),
    "U": (("order_ref", "Q"), ("new_order_ref", "Q"), ("shares", "I"), ("price", "I")),
    # 4.5 trade messages
    "P": (("order_ref", "Q"), ("side", "c"), ("shares", "I"), ("stock", "8s"), ("price", "I"), ("match", "Q")),
    "Q": (("shares", "Q"), ("stock", "8s"), ("price", "I"), ("match", "Q"), ("cross_type", "c")),
    "B": (("match", "Q"),),
    # 4.6 NOII, 4.7 RPII, 4.8 direct listing with capital raise
    "I": (
        ("paired_shares", "Q"),
        ("imbalance_shares", "Q"),
        ("imbalance_direction", "c"),
        ("stock", "8s"),
        ("far_price", "I"),
        ("near_price", "I"),
        ("reference_price", "I"),
        ("cross_type", "c"),
        ("price_variation", "c"),
    ),
    "N": (("stock", "8s"), ("interest_flag", "c")),
    "O": (
        ("stock", "8s"),
        ("open_eligibility", "c"),
        ("min_price", "I"),
        ("max_price", "I"),
        ("near_price", "I"),
        ("near_time", "Q"),
        ("lower_collar", "I"),
        ("upper_collar", "I"),
    ),
}


def _struct_code(code: str) -> str:
    return "HI" if code == "ts" else code  # the 6-byte timestamp as its high 2 and low 4 bytes


STRUCTS: dict[str, struct.Struct] = {
    t: struct.Struct(">c" + "".join(_struct_code(c) for _, c in HEADER + layout)) for t, layout in LAYOUTS.items()
}
LENGTHS: dict[str, int] = {t: s.size for t, s in STRUCTS.items()}
"""Spec message lengths, e.g. A 36, F 40, E 31, C 36, X 23, D 19, U 35, P 44, Q 40, B 19, R 39."""


def _offset(msg_type: str, field: str) -> int:
    """Byte offset of `field` in a message of `msg_type`."""
    codes = [_struct_code(c) for n, c in HEADER + LAYOUTS[msg_type][: [n for n, _ in LAYOUTS[msg_type]].index(field)]]
    return struct.calcsize(">c" + "".join(codes))


_STOCK_OFFSET: dict[str, int] = {t: _offset(t, "stock") for t, layout in LAYOUTS.items() if ("stock", "8s") in layout}

TS_LIMIT = 1 << 48


def _err(cls: type[DecodeError], msg: str, seq: int | None = None, symbol: str = "") -> DecodeError:
    return cls(msg, venue=VENUE, symbol=symbol, seq=seq)


def decode(raw: bytes, *, seq: int | None = None) -> dict[str, Any]:
    """One message as a dict: `type`, `locate`, `tracking`, `timestamp` and the type's fields.

    Alpha fields come back as str with their space padding stripped. An unknown type byte
    raises UnknownMessageType, a length other than the spec's for that type DecodeError.
    """
    if not raw:
        raise _err(DecodeError, "empty ITCH message", seq)
    t = chr(raw[0])
    s = STRUCTS.get(t)
    if s is None:
        raise _err(UnknownMessageType, f"unknown ITCH 5.0 message type {raw[:1]!r}", seq)
    if len(raw) != s.size:
        raise _err(DecodeError, f"ITCH {t!r} message of {len(raw)} bytes, the spec says {s.size}", seq)
    values = s.unpack(raw)
    out: dict[str, Any] = {
        "type": t,
        "locate": values[1],
        "tracking": values[2],
        "timestamp": values[3] << 32 | values[4],
    }
    for (name, code), v in zip(LAYOUTS[t], values[5:], strict=True):
        if isinstance(v, bytes):
            try:
                v = v.decode("ascii")
            except UnicodeDecodeError:
                raise _err(DecodeError, f"ITCH {t!r} field {name} is not ASCII: {v!r}", seq) from None
            if code != "c":
                v = v.rstrip(" ")
        out[name] = v
    return out


def encode(msg_type: str, *, locate: int = 0, tracking: int = 0, timestamp: int = 0, **fields: Any) -> bytes:
    """The exact ITCH 5.0 bytes of one message (no length prefix).

    Fields are named as in LAYOUTS; one left out is 0, a space or blank. A field the type
    does not have, an Alpha value too long or not ASCII, or an integer out of range raises
    ValueError.
    """
    layout = LAYOUTS.get(msg_type)
    if layout is None:
        raise ValueError(f"unknown ITCH 5.0 message type {msg_type!r}")
    unknown = set(fields) - {n for n, _ in layout}
    if unknown:
        raise ValueError(f"ITCH {msg_type!r} has no field(s) {sorted(unknown)}")
    if not 0 <= timestamp < TS_LIMIT:
        raise ValueError(f"timestamp {timestamp} does not fit 6 bytes")
    values: list[Any] = [msg_type.encode("ascii"), locate, tracking, timestamp >> 32, timestamp & 0xFFFFFFFF]
    for name, code in layout:
        v = fields.get(name)
        if code[-1] in "cs":
            width = 1 if code == "c" else int(code[:-1])
            text = (v if v is not None else " ").ljust(width)
            if len(text) != width or not text.isascii():
                raise ValueError(f"ITCH {msg_type!r} field {name}={v!r} is not {width} ASCII characters")
            values.append(text.encode("ascii"))
        else:
            values.append(0 if v is None else v)
    try:
        return STRUCTS[msg_type].pack(*values)
    except struct.error as err:
        raise ValueError(f"ITCH {msg_type!r}: {err}") from None


def frame(msgs: Iterable[bytes]) -> bytes:
    """Messages with the 2-byte big-endian length prefix of NASDAQ's day files."""
    out = bytearray()
    for m in msgs:
        if len(m) > 0xFFFF:
            raise ValueError(f"an ITCH frame holds at most 65535 bytes, got {len(m)}")
        out += len(m).to_bytes(2, "big")
        out += m
    return bytes(out)


def _open_binary(path: str | Path) -> io.BufferedIOBase:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return io.BufferedReader(gzip.open(path, "rb")) if gz else open(path, "rb")  # type: ignore[return-value]


def open_day_file(path: str | Path) -> io.BufferedIOBase:
    """A framed ITCH file (raw or gzipped) open for reading, checked as `ItchFeed.read_capture` checks it: a
    text capture given as ITCH is a CaptureError saying which."""
    f = _open_binary(path)
    try:
        check_first_line(path, 1, f.peek(256)[:256].partition(b"\n")[0], VENUE)  # type: ignore[attr-defined]
    except GZIP_ERRORS as err:  # damaged within its first bytes: what read_capture says of it
        f.close()
        raise broken_gzip(path, err, None, 0, 0, unit="messages") from None
    except BaseException:
        f.close()
        raise
    return f


_SIDES = {"B": Side.BID, "S": Side.ASK}
_STATES = {"H": Status.HALTED, "P": Status.HALTED, "Q": Status.QUOTATION_ONLY, "T": Status.TRADING}
_AGGRESSOR = {Side.BID: FLAG_AGGRESSOR_ASK, Side.ASK: FLAG_AGGRESSOR_BID}  # the taker hit the other side

# --- the fast path ----------------------------------------------------------------------------
# `ItchFeed.on_message` first tries a handler per frequent type (A F E C X D U P) that unpacks the message
# once with its Struct and applies it; whatever it does not expect (a wrong length, a byte that
# is not ASCII, an unknown order, a side or flag outside the spec) it hands, untouched, to the
# general path (`decode` + the dict handlers), which raises exactly the error it always did.
_A_STRUCT, _F_STRUCT, _E_STRUCT, _C_STRUCT = STRUCTS["A"], STRUCTS["F"], STRUCTS["E"], STRUCTS["C"]
_X_STRUCT, _D_STRUCT, _U_STRUCT, _P_STRUCT = STRUCTS["X"], STRUCTS["D"], STRUCTS["U"], STRUCTS["P"]
_SIDE_BYTES = {b"B": Side.BID, b"S": Side.ASK}
# enum members as module globals: `Kind.ADD` is a class attribute lookup through the enum
# metaclass on every read, a global is one dict lookup
_ADD, _EXECUTE, _CANCEL, _DELETE, _REPLACE = Kind.ADD, Kind.EXECUTE, Kind.CANCEL, Kind.DELETE, Kind.REPLACE
_TRADE = Kind.TRADE
_AGGRESSOR_NON_PRINTABLE = {side: flag | FLAG_NON_PRINTABLE for side, flag in _AGGRESSOR.items()}
_MAX_STOCK_NAMES = 1 << 16  # stock-field bytes -> symbol cache; a real day has about 12k stocks


class ItchFeed(Feed):
    """Order-by-order books for every stock of an ITCH 5.0 stream (one `L3Book` per symbol).

    Messages that change a book: A/F add (F's MPID attribution is not kept), E and C execute
    (C at its own price; a non-printable C carries FLAG_NON_PRINTABLE), X partial cancel, D
    delete, U replace (spec 4.4.5: the new reference takes the old one's side and loses its
    priority). Prints that leave the book alone become TRADE events: P (non-displayed order,
    FLAG_HIDDEN), Q (cross, FLAG_CROSS), B (broken trade, FLAG_BROKEN). H becomes STATUS with
    `flags` a Status ('H'/'P' halted, 'Q' quotation only, 'T' trading). S and R update the
    feed's state; the other known types (L V W K J h Y I N O) are decoded and return [].

    E/C/X/D/U on a reference the book does not hold raise UnknownOrder and change nothing
    (itch-book skips them likewise).
    """

    venue = VENUE
    book_type = BookType.L3
    tick = CENT  # stocks at $1 or more quote in cents (Reg NMS Rule 612)

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(symbols, check_crossed=check_crossed)
        self.locates: dict[int, str] = {}
        self.messages = 0  # messages handed to on_message: the next Event.seq minus one
        self.system_event = ""  # last S event code (O start of messages, Q market open, ...)
        self._handlers: dict[str, Callable[[dict[str, Any], int, int], list[Event]]] = {
            "A": self._add,
            "F": self._add,
            "E": self._execute,
            "C": self._execute,
            "X": self._cancel,
            "D": self._delete,
            "U": self._replace,
            "P": self._trade,
            "Q": self._trade,
            "B": self._trade,
            "H": self._status,
            "R": self._directory,
            "S": self._system,
        }
        self._stock_names: dict[bytes, str] = {}  # raw 8-byte stock field -> symbol, ASCII checked
        # type byte -> fast handler; it returns None where the general path must decide
        self._fast: dict[int, Callable[[bytes, int, int], list[Event] | None]] = {
            ord("A"): self._fast_add,
            ord("F"): self._fast_add_attributed,
            ord("E"): self._fast_execute,
            ord("C"): self._fast_execute_at_price,
            ord("X"): self._fast_cancel,
            ord("D"): self._fast_delete,
            ord("U"): self._fast_replace,
            ord("P"): self._fast_hidden_trade,
        }

    # --- symbols ---------------------------------------------------------------------------

    def symbol_of(self, locate: int) -> str:
        return self.locates.get(locate) or f"locate:{locate}"

    def _learn(self, locate: int, stock: str) -> None:
        """Record locate -> symbol; a book kept under the placeholder moves to the real name."""
        if not stock or self.locates.get(locate) == stock:
            return
        self.locates[locate] = stock
        placeholder = f"locate:{locate}"
        if placeholder in self.books and stock not in self.books:
            book = self.books[stock] = self.books.pop(placeholder)
            self.syncs[stock] = self.syncs.pop(placeholder)
            book.symbol = self.syncs[stock].symbol = stock

    def key(self, raw: bytes) -> str:
        """The symbol: the stock field where the message has one, else its locate's symbol. A stock
        directory message (R) teaches the feed its locate, so that the deletes, executions and
        replaces that follow, which carry only the locate, get their stock's key and land in its
        partition (a key "locate:N" would send them to another one, where no book holds their order)."""
        try:
            t = chr(raw[0])
            off = _STOCK_OFFSET.get(t)
            if off is not None and len(raw) == LENGTHS[t]:
                stock = raw[off : off + 8].decode("ascii").rstrip(" ")
                if t == "R" and stock:
                    self.locates.setdefault(int.from_bytes(raw[1:3], "big"), stock)
                return stock
            return self.symbol_of(int.from_bytes(raw[1:3], "big"))
        except (IndexError, UnicodeDecodeError):
            raise _err(DecodeError, f"not an ITCH message: {raw[:16]!r}") from None

    # --- messages ----------------------------------------------------------------------------

    def on_message(self, raw: bytes, recv_ts: int = 0) -> list[Event]:
        self.messages += 1
        seq = self.messages
        fast = self._fast.get(raw[0]) if raw else None
        if fast is not None:
            events = fast(raw, seq, recv_ts)
            if events is not None:
                return events
        return self._on_message_general(raw, seq, recv_ts)

    def _on_message_general(self, raw: bytes, seq: int, recv_ts: int) -> list[Event]:
        """Every message type and every malformed message: decode to a dict, then its handler."""
        try:
            check_size(raw, self.venue)
        except OversizedMessage as err:
            err.seq = seq
            raise
        m = decode(raw, seq=seq)
        handler = self._handlers.get(m["type"])
        if handler is None:
            if "stock" in m:
                self._learn(m["locate"], m["stock"])
            return []  # L V W K J h Y I N O: known, valid, nothing for the book
        events = handler(m, seq, recv_ts)
        if events:
            self.check(self.books[events[0].symbol], seq, events[0].ts)
        return events

    # --- the fast path: A F E C X D U P, valid and routable; None hands a message to the general path

    def _stock_name(self, field: bytes) -> str | None:
        """The symbol of an 8-byte stock field (padding stripped), None if it is not ASCII."""
        name = self._stock_names.get(field)
        if name is None:
            if not field.isascii():
                return None
            if len(self._stock_names) >= _MAX_STOCK_NAMES:
                self._stock_names.clear()
            name = self._stock_names[field] = field.decode("ascii").rstrip(" ")
        return name

    def _fast_add(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        if len(raw) != 36:
            return None
        _, locate, _, hi, lo, ref, side_byte, shares, stock_field, price = _A_STRUCT.unpack(raw)
        return self._add_fast(locate, hi << 32 | lo, ref, side_byte, shares, stock_field, price, seq, recv_ts)

    def _fast_add_attributed(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        """F: A with an MPID, which is checked (ASCII, as `decode` does) and not kept."""
        if len(raw) != 40:
            return None
        _, locate, _, hi, lo, ref, side_byte, shares, stock_field, price, mpid = _F_STRUCT.unpack(raw)
        if not mpid.isascii():
            return None
        return self._add_fast(locate, hi << 32 | lo, ref, side_byte, shares, stock_field, price, seq, recv_ts)

    def _add_fast(
        self,
        locate: int,
        ts: int,
        ref: int,
        side_byte: bytes,
        shares: int,
        stock_field: bytes,
        price: int,
        seq: int,
        recv_ts: int,
    ) -> list[Event] | None:
        side = _SIDE_BYTES.get(side_byte)
        stock = self._stock_name(stock_field)
        if side is None or stock is None or price == 0:
            return None
        if self.locates.get(locate) != stock:
            self._learn(locate, stock)
        symbol = self.locates.get(locate) or f"locate:{locate}"
        book = self.books.get(symbol)
        if book is None:
            book = self.book(symbol)
        e = Event(_ADD, VENUE, symbol, ts, seq, side, price, shares, ref, 0, 0, recv_ts)
        book.add(ref, side, price, shares, seq)  # what L3Book.apply does for ADD
        self.check(book, seq, ts)
        return [e]

    def _resting_fast(self, locate: int, ref: int) -> tuple[L3Book, Any] | tuple[None, None]:
        """The book and resting order of a reference, (None, None) where the general path must speak."""
        book = self.books.get(self.locates.get(locate) or f"locate:{locate}")
        order = book.orders.get(ref) if book is not None else None  # type: ignore[union-attr]
        return (book, order) if order is not None else (None, None)  # type: ignore[return-value]

    def _fast_execute(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        """E executes at the resting order's price (spec 4.4.1)."""
        if len(raw) != 31:
            return None
        _, locate, _, hi, lo, ref, shares, _ = _E_STRUCT.unpack(raw)
        book, order = self._resting_fast(locate, ref)
        if book is None:
            return None
        ts = hi << 32 | lo
        side = order.side
        e = Event(_EXECUTE, VENUE, book.symbol, ts, seq, side, order.price, shares, ref, 0, _AGGRESSOR[side], recv_ts)
        book.reduce(ref, shares, seq)
        self.check(book, seq, ts)
        return [e]

    def _fast_execute_at_price(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        """C executes at its own price (spec 4.4.2); Printable 'N' is flagged FLAG_NON_PRINTABLE."""
        if len(raw) != 36:
            return None
        _, locate, _, hi, lo, ref, shares, _, printable, price = _C_STRUCT.unpack(raw)
        flags_of = _AGGRESSOR if printable == b"Y" else _AGGRESSOR_NON_PRINTABLE if printable == b"N" else None
        book, order = self._resting_fast(locate, ref)
        if book is None or flags_of is None:
            return None
        ts = hi << 32 | lo
        side = order.side
        e = Event(_EXECUTE, VENUE, book.symbol, ts, seq, side, price, shares, ref, 0, flags_of[side], recv_ts)
        book.reduce(ref, shares, seq)
        self.check(book, seq, ts)
        return [e]

    def _fast_cancel(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        if len(raw) != 23:
            return None
        _, locate, _, hi, lo, ref, shares = _X_STRUCT.unpack(raw)
        book, order = self._resting_fast(locate, ref)
        if book is None:
            return None
        ts = hi << 32 | lo
        e = Event(_CANCEL, VENUE, book.symbol, ts, seq, order.side, order.price, shares, ref, 0, 0, recv_ts)
        book.reduce(ref, shares, seq)
        self.check(book, seq, ts)
        return [e]

    def _fast_delete(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        if len(raw) != 19:
            return None
        _, locate, _, hi, lo, ref = _D_STRUCT.unpack(raw)
        book, order = self._resting_fast(locate, ref)
        if book is None:
            return None
        ts = hi << 32 | lo
        e = Event(_DELETE, VENUE, book.symbol, ts, seq, order.side, order.price, order.size, ref, 0, 0, recv_ts)
        book.delete(ref, seq)
        self.check(book, seq, ts)
        return [e]

    def _fast_replace(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        if len(raw) != 35:
            return None
        _, locate, _, hi, lo, ref, new_ref, shares, price = _U_STRUCT.unpack(raw)
        book, order = self._resting_fast(locate, ref)
        if book is None or price == 0:
            return None
        ts = hi << 32 | lo
        e = Event(_REPLACE, VENUE, book.symbol, ts, seq, order.side, price, shares, ref, new_ref, 0, recv_ts)
        book.replace(ref, new_ref, price, shares, seq)
        self.check(book, seq, ts)
        return [e]

    def _fast_hidden_trade(self, raw: bytes, seq: int, recv_ts: int) -> list[Event] | None:
        """P (spec 4.5.1): a print against a non-displayed order; the book is not touched."""
        if len(raw) != 44:
            return None
        _, locate, _, hi, lo, ref, side_byte, shares, stock_field, price, _ = _P_STRUCT.unpack(raw)
        side = _SIDE_BYTES.get(side_byte)
        stock = self._stock_name(stock_field)
        if side is None or stock is None:
            return None
        if self.locates.get(locate) != stock:
            self._learn(locate, stock)
        symbol = self.locates.get(locate) or f"locate:{locate}"
        book = self.books.get(symbol)
        if book is None:
            book = self.book(symbol)
        ts = hi << 32 | lo
        e = Event(_TRADE, VENUE, symbol, ts, seq, side, price, shares, ref, 0, FLAG_HIDDEN, recv_ts)
        self.check(book, seq, ts)
        return [e]

    # --- the general path's handlers -----------------------------------------------------------

    def _event(self, kind: Kind, symbol: str, m: dict[str, Any], seq: int, recv_ts: int, **kw: Any) -> Event:
        return Event(kind, self.venue, symbol, m["timestamp"], seq, recv_ts=recv_ts, **kw)

    def _side(self, m: dict[str, Any], seq: int) -> Side:
        side = _SIDES.get(m["side"])
        if side is None:
            raise _err(DecodeError, f"ITCH {m['type']!r} side {m['side']!r} is neither 'B' nor 'S'", seq)
        return side

    def _resting(self, m: dict[str, Any], seq: int) -> tuple[L3Book, Any]:
        """The book and order an E/C/X/D/U refers to; UnknownOrder (nothing created) if none."""
        symbol = self.symbol_of(m["locate"])
        book = self.books.get(symbol)
        if book is None and self.symbols is not None:
            book = self.book(symbol)  # raises UnknownSymbol for a stock the feed does not follow
        order = book.orders.get(m["order_ref"]) if book is not None else None
        if order is None:
            raise UnknownOrder(f"order {m['order_ref']} is not in the book", venue=self.venue, symbol=symbol, seq=seq)
        return book, order  # type: ignore[return-value]

    def _add(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        self._learn(m["locate"], m["stock"])
        symbol = self.symbol_of(m["locate"])
        side = self._side(m, seq)
        if m["price"] == 0:
            # itch-book rejects zero-priced adds too; a resting order at $0 is not a quote
            raise BookError(f"order {m['order_ref']} added at price 0", venue=self.venue, symbol=symbol, seq=seq)
        book = self.book(symbol)
        e = self._event(Kind.ADD, symbol, m, seq, recv_ts, side=side, price=m["price"], size=m["shares"])
        e.order_id = m["order_ref"]
        book.apply(e)
        return [e]

    def _execute(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        """E executes at the resting order's price (spec 4.4.1); C at its own (4.4.2)."""
        book, order = self._resting(m, seq)
        flags = _AGGRESSOR[order.side]
        if m["type"] == "C":
            if m["printable"] not in ("Y", "N"):
                raise _err(DecodeError, f"ITCH 'C' printable flag {m['printable']!r}", seq, book.symbol)
            if m["printable"] == "N":
                flags |= FLAG_NON_PRINTABLE
        price = m["price"] if m["type"] == "C" else order.price
        e = self._event(Kind.EXECUTE, book.symbol, m, seq, recv_ts, side=order.side, price=price, size=m["shares"])
        e.order_id, e.flags = m["order_ref"], flags
        book.apply(e)
        return [e]

    def _cancel(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        book, order = self._resting(m, seq)
        e = self._event(Kind.CANCEL, book.symbol, m, seq, recv_ts, side=order.side, price=order.price, size=m["shares"])
        e.order_id = m["order_ref"]
        book.apply(e)
        return [e]

    def _delete(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        """D removes what is left; the event carries the order's last price and size."""
        book, order = self._resting(m, seq)
        e = self._event(Kind.DELETE, book.symbol, m, seq, recv_ts, side=order.side, price=order.price, size=order.size)
        e.order_id = m["order_ref"]
        book.apply(e)
        return [e]

    def _replace(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        book, order = self._resting(m, seq)
        if m["price"] == 0:
            raise BookError(
                f"order {m['order_ref']} replaced at price 0", venue=self.venue, symbol=book.symbol, seq=seq
            )
        e = self._event(Kind.REPLACE, book.symbol, m, seq, recv_ts, side=order.side, price=m["price"], size=m["shares"])
        e.order_id, e.new_order_id = m["order_ref"], m["new_order_ref"]
        book.apply(e)
        return [e]

    def _trade(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        t = m["type"]
        if "stock" in m:
            self._learn(m["locate"], m["stock"])
        symbol = self.symbol_of(m["locate"])
        if t == "P":
            # spec 4.5.1: the side of the non-displayed resting order (NASDAQ sends 'B' throughout)
            kw: dict[str, Any] = {"side": self._side(m, seq), "flags": FLAG_HIDDEN, "order_id": m["order_ref"]}
            kw |= {"price": m["price"], "size": m["shares"]}
        elif t == "Q":
            kw = {"flags": FLAG_CROSS, "price": m["price"], "size": m["shares"]}
        else:
            kw = {"flags": FLAG_BROKEN}  # B names only the match number of the voided print
        self.book(symbol)
        return [self._event(Kind.TRADE, symbol, m, seq, recv_ts, **kw)]

    def _status(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        """H (spec 4.2.3). Books are not gated on it: NASDAQ keeps order maintenance flowing."""
        self._learn(m["locate"], m["stock"])
        symbol = self.symbol_of(m["locate"])
        state = _STATES.get(m["trading_state"])
        if state is None:
            raise _err(DecodeError, f"ITCH 'H' trading state {m['trading_state']!r}", seq, symbol)
        self.book(symbol)
        return [self._event(Kind.STATUS, symbol, m, seq, recv_ts, flags=int(state))]

    def _directory(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        self._learn(m["locate"], m["stock"])
        return []

    def _system(self, m: dict[str, Any], seq: int, recv_ts: int) -> list[Event]:
        self.system_event = m["event_code"]
        return []

    @staticmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """The messages of a framed ITCH file (NASDAQ day file layout, raw or gzipped).

        A zero length prefix is skipped. A frame cut short by the end of the file is yielded
        as it is, so the feed rejects it as malformed instead of the reader losing it silently.
        """
        count = offset = 0
        with open_day_file(path) as f:  # a text capture given as ITCH: says which, not 700 "unknown message type"s
            try:
                while prefix := f.read(2):
                    n = int.from_bytes(prefix, "big")
                    if len(prefix) < 2:
                        yield Record(0, prefix)
                        return
                    if n == 0:
                        offset += 2
                        continue
                    raw = f.read(n)
                    count += 1
                    offset += 2 + len(raw)  # a frame's bytes once it is read whole (a gzip error loses it)
                    yield Record(0, raw)
            except GZIP_ERRORS as err:
                raise broken_gzip(path, err, None, count, offset, unit="messages") from None
