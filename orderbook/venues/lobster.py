"""LOBSTER message files: decoder, the order-by-order feed, and a writer of message/orderbook files.

A raw message is one row of a LOBSTER message file (lobsterdata.com/info/DataStructure.php),
CSV text `time,type,order_id,size,price,direction`, e.g. `34200.004241176,1,16113575,18,5853300,1`:

- time: seconds after midnight with up to 9 decimals, read exactly into ns (no float);
- type: 1 submission, 2 cancellation (partial), 3 deletion, 4 execution of a visible order,
  5 execution of a hidden order, 6 cross trade, 7 trading halt indicator;
- price: dollar price times 10000 (our price unit; the tick is 100 of them); size: shares (our lot);
- direction: 1 buy, -1 sell; for executions the side of the resting order (1: a bid was
  hit, the aggressor sold);
- type 7 rows: price -1 halted, 0 quotation only (quoting resumes), 1 trading resumes.

Rows carry no symbol: a LOBSTER file is one ticker, named in its file name
(`AAPL_2012-06-21_34200000_57600000_message_10.csv`, see `symbol_from_filename`). The feed's
`symbol` defaults to "LOBSTER"; pass `LobsterFeed(symbol="AAPL")`, or `on_message(raw,
symbol="AAPL")` where rows of several tickers share a feed. On `md.raw.lobster` the record's key
names the book (`on_record`), and a capture file is keyed by `--symbol` or its name (`capture_key`).
`Event.seq` is the row index within that symbol's stream, starting at 1.

Prices are in LOBSTER's unit, 1/10000 dollar; US equities priced at $1 or more trade in cents (Reg NMS
Rule 612), so the tick is 100 units (`LobsterFeed.tick`).

The orderbook file's layout (`orderbook_row`): per level, ask price, ask size, bid price, bid size;
a missing level is ASK_EMPTY/BID_EMPTY with size 0. `megatrading book` prints every venue's books so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from ..book import Book, BookType, L3Book
from ..errors import DecodeError, OversizedMessage, UnknownMessageType, UnknownOrder, check_size
from ..events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, FLAG_CROSS, FLAG_HIDDEN, Event, Kind, Side, Status
from ..numbers import INT64_MAX, INT64_MIN, format_fixed, parse_fixed
from .base import Feed, Record, check_first_line, numbered_lines

VENUE = "lobster"
DEFAULT_SYMBOL = "LOBSTER"
CENT = 100  # price units (1/10000 $) per cent

ASK_EMPTY = 9_999_999_999
BID_EMPTY = -9_999_999_999
"""LOBSTER's placeholders for an empty level in its orderbook file."""

SUBMIT, CANCEL, DELETE, EXECUTE, HIDDEN, CROSS, HALT = range(1, 8)
_KINDS = {SUBMIT: Kind.ADD, CANCEL: Kind.CANCEL, DELETE: Kind.DELETE, EXECUTE: Kind.EXECUTE}
_SIDES = {1: Side.BID, -1: Side.ASK}
_HALT = {-1: Status.HALTED, 0: Status.QUOTATION_ONLY, 1: Status.TRADING}
_HALT_PRICE = {v: k for k, v in _HALT.items()}
_AGGRESSOR = {Side.BID: FLAG_AGGRESSOR_ASK, Side.ASK: FLAG_AGGRESSOR_BID}
_INT = re.compile(rb"-?[0-9]+")
_FILENAME = re.compile(
    r"^(?P<symbol>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_(message|orderbook)_"
)


def symbol_from_filename(path: str | Path) -> str | None:
    """`AAPL_2012-06-21_34200000_57600000_message_10.csv` -> "AAPL" (LOBSTER's naming scheme)."""
    m = _FILENAME.match(Path(path).name)
    return m["symbol"] if m else None


def orderbook_row(book: Book, levels: int) -> list[int]:
    """The top `levels` of a book as a row of LOBSTER's orderbook file: ask px, ask size, bid px, bid size per level."""
    bids, asks = book.top(levels)
    row: list[int] = []
    for i in range(levels):
        row.extend(asks[i] if i < len(asks) else (ASK_EMPTY, 0))
        row.extend(bids[i] if i < len(bids) else (BID_EMPTY, 0))
    return row


def _int(field: bytes, name: str, seq: int, symbol: str) -> int:
    """An integer field; one an event's int64 cannot hold is refused, as the native decoder refuses it."""
    if not _INT.fullmatch(field):
        raise DecodeError(f"LOBSTER {name} {field!r:.40} is not an integer", venue=VENUE, symbol=symbol, seq=seq)
    neg = field[:1] == b"-"
    digits = field[neg:].lstrip(b"0") or b"0"
    # the digits counted before int() reads them: it refuses 4,300 with a ValueError, no FeedError
    value = 0 if len(digits) > 19 else -int(digits) if neg else int(digits)
    if len(digits) > 19 or not INT64_MIN <= value <= INT64_MAX:
        raise DecodeError(f"LOBSTER {name} {field!r:.40} does not fit int64", venue=VENUE, symbol=symbol, seq=seq)
    return value


def decode_row(raw: bytes, *, symbol: str = DEFAULT_SYMBOL, seq: int = 0, recv_ts: int = 0) -> Event:
    """One message row as an Event, without touching a book. Malformed rows raise DecodeError
    (wrong field count, not a number, NaN, a number an int64 cannot hold, negative size or id,
    direction not +-1, a halt price not in -1/0/1); an event type outside 1..7 raises
    UnknownMessageType."""
    where = {"venue": VENUE, "symbol": symbol, "seq": seq}
    fields = raw.strip().split(b",")
    if len(fields) != 6:
        raise DecodeError(f"LOBSTER row has {len(fields)} fields, not 6: {raw[:80]!r}", **where)  # type: ignore[arg-type]
    t_text, type_text, id_text, size_text, price_text, dir_text = fields
    try:
        ts = parse_fixed(t_text, 9, field="LOBSTER time")
    except (DecodeError, ValueError) as err:  # ValueError: int() of a time of over 4,300 digits
        raise DecodeError(f"LOBSTER time {t_text[:40]!r}: {err}", **where) from None  # type: ignore[arg-type]
    etype = _int(type_text, "event type", seq, symbol)
    if not SUBMIT <= etype <= HALT:
        raise UnknownMessageType(f"LOBSTER event type {etype} is not 1..7", **where)  # type: ignore[arg-type]
    oid, size, price = (
        _int(f, n, seq, symbol) for f, n in ((id_text, "order id"), (size_text, "size"), (price_text, "price"))
    )
    direction = _int(dir_text, "direction", seq, symbol)
    if oid < 0 or size < 0:
        raise DecodeError(f"LOBSTER negative order id {oid} or size {size}", **where)  # type: ignore[arg-type]
    side = _SIDES.get(direction)
    if side is None:
        raise DecodeError(f"LOBSTER direction {direction} is neither 1 nor -1", **where)  # type: ignore[arg-type]
    e = Event(Kind.TRADE, VENUE, symbol, ts, seq, side, price, size, oid, recv_ts=recv_ts)
    if etype == HALT:
        status = _HALT.get(price)
        if status is None:
            raise DecodeError(f"LOBSTER halt row with price {price}, not -1/0/1", **where)  # type: ignore[arg-type]
        e.kind, e.side, e.price, e.flags = Kind.STATUS, Side.NONE, 0, int(status)
        return e
    if price < 0:
        raise DecodeError(f"LOBSTER negative price {price}", **where)  # type: ignore[arg-type]
    if etype in _KINDS:
        e.kind = _KINDS[etype]
        if etype == EXECUTE:
            e.flags = _AGGRESSOR[side]
    else:
        e.flags = FLAG_HIDDEN if etype == HIDDEN else FLAG_CROSS
    return e


class LobsterFeed(Feed):
    """Order-by-order book of one ticker from LOBSTER message rows.

    Submissions add, cancellations reduce, deletions remove, visible executions reduce the
    resting order; hidden executions and cross trades are TRADE events (FLAG_HIDDEN,
    FLAG_CROSS) and halt rows STATUS events, none of which change the book. A cancel,
    deletion or execution of an order the book does not hold raises UnknownOrder and
    changes nothing (LOBSTER files that start after the open refer to earlier orders).
    """

    venue = VENUE
    book_type = BookType.L3
    tick = CENT

    def __init__(
        self, symbols: set[str] | None = None, *, check_crossed: bool = True, symbol: str = DEFAULT_SYMBOL
    ) -> None:
        super().__init__(symbols, check_crossed=check_crossed)
        self.symbol = symbol
        self.rows: dict[str, int] = {}  # rows seen per symbol: the last Event.seq

    def key(self, raw: bytes) -> str:
        return self.symbol

    def on_record(self, key: bytes | None, raw: bytes, recv_ts: int = 0) -> list[Event]:
        """A `md.raw.lobster` record: its row names no symbol, so its key names the book."""
        if not key:
            raise DecodeError("LOBSTER record without a symbol key", venue=VENUE)
        return self.on_message(raw, recv_ts, symbol=key.decode(errors="replace"))

    @classmethod
    def capture_key(cls, path: str | Path, symbol: str | None = None) -> str:
        """`symbol`, else the ticker LOBSTER's file naming gives; ValueError when neither names one."""
        name = symbol or symbol_from_filename(path)
        if not name:
            raise ValueError(f"{path}: LOBSTER rows carry no symbol: pass --symbol or use LOBSTER's file naming")
        return name

    @classmethod
    def for_capture(cls, path: str | Path, symbol: str | None = None, *, check_crossed: bool = True) -> LobsterFeed:
        """A feed whose rows go to `symbol`, else to the file name's ticker, else to DEFAULT_SYMBOL."""
        return cls(check_crossed=check_crossed, symbol=symbol or symbol_from_filename(path) or DEFAULT_SYMBOL)

    def on_message(self, raw: bytes, recv_ts: int = 0, symbol: str | None = None) -> list[Event]:
        symbol = symbol or self.symbol
        seq = self.rows[symbol] = self.rows.get(symbol, 0) + 1
        try:
            check_size(raw, self.venue)
        except OversizedMessage as err:
            err.symbol, err.seq = symbol, seq
            raise
        e = decode_row(raw, symbol=symbol, seq=seq, recv_ts=recv_ts)
        book = self.book(symbol)
        book.apply(e)
        self.check(book, seq, e.ts)
        return [e]

    @staticmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """The rows of a LOBSTER message file (gzipped or not); blank lines are skipped."""
        checked = False
        for n, line in numbered_lines(path):
            if line.strip():
                if not checked:
                    check_first_line(path, n, line, "lobster")
                    checked = True
                yield Record(0, line)


def encode_row(e: Event) -> bytes:
    """One LOBSTER message row for an event that is one row (every kind a LOBSTER file has
    but REPLACE, which is two rows: see LobsterWriter). Time is printed with 9 decimals."""
    time = format_fixed(e.ts, 9)
    if e.kind == Kind.STATUS:
        return f"{time},{HALT},0,0,{_HALT_PRICE[Status(e.flags)]},-1".encode()
    if e.kind == Kind.TRADE:
        if e.flags & FLAG_CROSS:
            etype, direction = CROSS, -1
        elif e.flags & FLAG_HIDDEN:
            etype, direction = HIDDEN, -1 if e.side == Side.ASK else 1
        else:
            raise ValueError(f"a {e.flags=} trade has no LOBSTER row")
        return f"{time},{etype},{e.order_id},{e.size},{e.price},{direction}".encode()
    codes = {Kind.ADD: SUBMIT, Kind.CANCEL: CANCEL, Kind.DELETE: DELETE, Kind.EXECUTE: EXECUTE}
    if e.kind not in codes or e.side == Side.NONE:
        raise ValueError(f"{e.kind.name} event (side {e.side.name}) has no single LOBSTER row")
    return f"{time},{codes[e.kind]},{e.order_id},{e.size},{e.price},{int(e.side)}".encode()


class LobsterWriter:
    """Normalized L3 events of one ticker -> LOBSTER message rows and the orderbook row after each.

    The writer keeps its own L3Book, applied operation by operation through the book API
    (not through LobsterFeed), so a rebuild of the rows it writes is an independent check.
    A REPLACE becomes a deletion of the old order and a submission of the new one (as
    itch-book's export does), each row followed by the book as it stands after that row.
    A DELETE row carries the removed order's last size and price, an EXECUTE at price 0 the
    resting price. Broken-trade prints (no LOBSTER event type) and STATUS/TRADE events of
    other kinds write nothing.
    """

    def __init__(self, levels: int = 10, symbol: str = "") -> None:
        self.levels = levels
        self.book = L3Book(VENUE, symbol)

    def rows(self, e: Event) -> list[tuple[bytes, list[int]]]:
        """(message row, orderbook row) pairs for one event; the event is applied to the writer's book."""
        b = self.book
        if e.kind == Kind.REPLACE:
            old = b.delete(e.order_id, e.seq)
            gone = Event(Kind.DELETE, e.venue, e.symbol, e.ts, e.seq, old.side, old.price, old.size, e.order_id)
            first = (encode_row(gone), orderbook_row(b, self.levels))
            b.add(e.new_order_id, old.side, e.price, e.size, e.seq)
            new = Event(Kind.ADD, e.venue, e.symbol, e.ts, e.seq, old.side, e.price, e.size, e.new_order_id)
            return [first, (encode_row(new), orderbook_row(b, self.levels))]
        if e.kind == Kind.TRADE and not e.flags & (FLAG_HIDDEN | FLAG_CROSS):
            return []
        if e.kind in (Kind.DELETE, Kind.CANCEL, Kind.EXECUTE):
            o = b.orders.get(e.order_id)
            if o is None:
                raise UnknownOrder(f"order {e.order_id} is not in the book", venue=VENUE, symbol=e.symbol, seq=e.seq)
            row = Event(e.kind, e.venue, e.symbol, e.ts, e.seq, o.side, e.price or o.price, e.size, e.order_id)
            if e.kind == Kind.DELETE:
                row.size, row.price = o.size, o.price
            b.apply(e)
            return [(encode_row(row), orderbook_row(b, self.levels))]
        if e.kind not in (Kind.ADD, Kind.TRADE, Kind.STATUS):
            raise ValueError(f"{e.kind.name} has no LOBSTER row")
        b.apply(e)
        return [(encode_row(e), orderbook_row(b, self.levels))]

    def write(self, events: Iterable[Event], messages: TextIO, orderbook: TextIO | None = None) -> int:
        """Write rows for `events` to open text files; the number of message rows written."""
        n = 0
        for e in events:
            for msg, levels in self.rows(e):
                messages.write(msg.decode() + "\n")
                if orderbook is not None:
                    orderbook.write(",".join(map(str, levels)) + "\n")
                n += 1
        return n


def write_files(events: Iterable[Event], message_path: str | Path, orderbook_path: str | Path, levels: int = 10) -> int:
    """A LOBSTER message file and its orderbook file (no headers, one row each per message)."""
    with open(message_path, "w", newline="") as m, open(orderbook_path, "w", newline="") as o:
        return LobsterWriter(levels).write(events, m, o)
