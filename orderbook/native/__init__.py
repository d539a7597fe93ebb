"""The compiled hot path: books and venue decoders in Rust (`orderbook/native/src`), behind this face.

The pure-Python books and feeds (`orderbook/book.py`, `orderbook/venues/`) stay the readable
reference; this path equals them event for event (tests/test_native_*.py). It works on batches,
because a Python call per event costs more than the work itself: arrays or a buffer in, arrays out.

    from orderbook import native
    native.enabled(), native.describe()          # which path runs, and why (for the logs)
    book = native.L2Book("binance", "BTCUSDT")
    tops = book.apply_levels(sides, prices, sizes, marks)   # int8/int64/int64 -> (len(marks), 4) int64
    feed = native.ItchFeed()
    batch = feed.decode_apply(framed)            # Batch: events (EVENT_ROW array), rejects, symbols
    batch = native.BinanceFeed().on_messages(raw_messages, recv_ts)
    batch = native.LobsterFeed().on_messages(rows, keys)   # a LOBSTER row names no symbol: its key does
    batch = native.KrakenFeed().on_messages(raw_messages, recv_ts)
    batch = native.CoinbaseFeed().on_messages(raw_messages, recv_ts)   # order ids as u64 (see the class)
    batch.to_events(), batch.errors()            # the reference's Event objects and FeedErrors

`MT_NATIVE=0` turns the native path off wherever a caller chooses by `enabled()`; the classes stay
importable while built. `L2Book` / `L3Book` are the Rust classes themselves (their docstrings say
what each method takes); the feeds are wrapped here so that a batch comes back as a `Batch`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import (
    BookError,
    ChecksumMismatch,
    CrossedBook,
    DecodeError,
    DuplicateOrder,
    FeedError,
    OutOfSync,
    OversizedMessage,
    SequenceGap,
    UnknownMessageType,
    UnknownOrder,
    UnknownSymbol,
    VenueErrorMessage,
)
from ..events import Event, Kind, Side

try:
    from . import _core
except ImportError as err:  # not built: the Python reference path runs, and `describe` says why
    _core = None
    _IMPORT_ERROR = f"{type(err).__name__}: {err}"
else:
    _IMPORT_ERROR = ""

ENV = "MT_NATIVE"

REASONS: tuple[type[FeedError], ...] = (
    DecodeError,
    UnknownMessageType,
    OversizedMessage,
    UnknownSymbol,
    BookError,
    UnknownOrder,
    DuplicateOrder,
    CrossedBook,
    OutOfSync,
    SequenceGap,
    ChecksumMismatch,
    VenueErrorMessage,
)
"""Reject reason code -> the FeedError class the reference raises (the order of errors.rs's Reason)."""

EVENT_ROW = np.dtype(
    {
        "names": [
            "kind",
            "side",
            "flags",
            "symbol",
            "ts",
            "seq",
            "price",
            "size",
            "order_id",
            "new_order_id",
            "recv_ts",
            "msg",
        ],
        "formats": ["i1", "i1", "=i2", "=i4", "=i8", "=i8", "=i8", "=i8", "=u8", "=u8", "=i8", "=i4"],
        "offsets": [0, 1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64],
        "itemsize": 72,
    }
)
"""One native event (batch.rs's row): `orderbook.events.Event`'s fields, `symbol` an index into the
batch's symbol table (-1: none) and `msg` the index of the message in the batch that produced it."""


def available() -> bool:
    """The compiled module is built and imports."""
    return _core is not None


def enabled() -> bool:
    """The native path is to be used: built, and not turned off with MT_NATIVE=0."""
    return available() and os.environ.get(ENV, "1") != "0"


def describe() -> str:
    """One line for the logs: which path runs, and why."""
    if not available():
        return f"python reference path (orderbook.native._core is not built: {_IMPORT_ERROR})"
    if not enabled():
        return f"python reference path ({ENV}=0)"
    return f"native path (Rust, orderbook.native._core {_core.__version__})"


def panic(message: str) -> None:
    """Panic in the compiled code, as a bug there would (pyo3's PanicException, a BaseException): the
    worker's answer to one is tested with it (streams/failpoints.py's poison record)."""
    _core.panic(message)


def rows_csv(rows: np.ndarray, first: int) -> str:
    """An (n, k) int64 array's columns from `first` on as CSV lines (',' between, '\\n' after each), the
    integers as `str` prints them: `megatrading book`'s output (orderbook.rebuild.RowBlock.csv)."""
    return _core.rows_csv(np.ascontiguousarray(rows, dtype=np.int64), first).decode("ascii")


def is_panic(err: BaseException) -> bool:
    """Whether `err` is a panic of the compiled code: pyo3's PanicException, a BaseException (so that a bare
    `except Exception` does not swallow it)."""
    return type(err).__name__ == "PanicException"


if _core is not None:
    L2Book = _core.L2Book
    L3Book = _core.L3Book


@dataclass(frozen=True)
class Batch:
    """What one native feed call did: the events it applied and the messages it refused.

    Its arrays are the caller's to keep (and write) for as long as it likes: a later call never
    touches them. A large batch's event rows (1 MiB and more) are recycled for a later batch only
    once no array views them any more (batch.rs's row pool), which spares that batch the kernel's
    faulting in and zeroing of fresh pages.
    """

    venue: str
    # EVENT_ROW records, in the order the reference returns them; a refused message's are those it left
    # applied (a crossed Binance diff or snapshot; a Kraken book that crossed or failed its checksum, and the
    # other books of its message), which `by_message` replaces with its error
    events: np.ndarray
    # columns msg, reason (REASONS index), symbol, seq (-1: None), ts, expected, got (a gap's, a checksum's); text
    rejects: dict[str, Any]
    symbols: Sequence[str]  # the feed's symbol table: `symbol` columns index it

    def __len__(self) -> int:
        return len(self.events)

    def symbol(self, index: int) -> str:
        return self.symbols[index] if index >= 0 else ""

    def to_events(self) -> list[Event]:
        """The events as the reference's `Event` objects (slow: for tests and small batches)."""
        return [_event(self, row) for row in self.events.tolist()]

    def by_message(self, n: int) -> list[list[Event] | FeedError]:
        """Message i of the batch -> the events it gave, or the error it was refused with."""
        out: list[list[Event] | FeedError] = [[] for _ in range(n)]
        for e, i in zip(self.to_events(), self.events["msg"].tolist(), strict=True):
            out[i].append(e)  # type: ignore[union-attr]
        for i, err in self.errors():
            out[i] = err
        return out

    def errors(self) -> list[tuple[int, FeedError]]:
        """(message index, the FeedError the reference raises for it), per refused message."""
        r = self.rejects
        columns = zip(
            *(r[k].tolist() for k in ("msg", "reason", "symbol", "seq", "ts", "expected", "got")),
            r["text"],
            strict=True,
        )
        out = []
        for msg, reason, symbol, seq, ts, expected, got, text in columns:
            where = {"venue": self.venue, "symbol": self.symbol(symbol), "seq": None if seq < 0 else seq, "ts": ts}
            cls = REASONS[reason]
            if cls is SequenceGap or cls is ChecksumMismatch:
                err: FeedError = cls(text, expected=expected, got=got, **where)
            else:
                err = cls(text, **where)
            out.append((msg, err))
        return out


def _event(batch: Batch, row: tuple) -> Event:
    kind, side, flags, symbol, ts, seq, price, size, order_id, new_order_id, recv_ts, _ = row
    return Event(
        Kind(kind),
        batch.venue,
        batch.symbol(symbol),
        ts,
        seq,
        Side(side),
        price,
        size,
        order_id,
        new_order_id,
        flags,
        recv_ts,
    )


class _Feed:
    """A native feed's batches as `Batch`es, its symbol table kept in step."""

    venue = ""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.symbols: list[str] = []

    def _batch(self, result: tuple[np.ndarray, dict[str, Any]]) -> Batch:
        rows, rejects = result
        self.symbols += self.core.symbol_names(len(self.symbols))
        return Batch(self.venue, rows.view(EVENT_ROW), rejects, self.symbols)

    def book_dict(self, symbol: str) -> dict[str, dict[int, int]] | None:
        """A symbol's book as `Book.to_dict()` gives it, None if the feed has no book for it."""
        return self.core.book_dict(symbol)

    def book_symbols(self) -> list[str]:
        return self.core.book_symbols()

    # -- state (snapshots to `md.state`, pickle, copy) ------------------------------------------

    STATE_VERSION = 1

    def __getstate__(self) -> dict[str, Any]:
        """The whole feed as plain values (msgpack-able: int, bool, str, bytes, None, lists, dicts).

        {"version": 1, "venue": "itch" | "binance" | "lobster" | "kraken" | "coinbase", "symbols": the wrapper's
        symbol table (the one its `Batch`es index), "core": the Rust feed's `__getstate__()`}. The core's state holds
        every book (L3: each order with its id, level by level, each queue in time priority; L2:
        the levels), the symbol table and its ids, the symbol filter and `check_crossed`; ITCH's
        locate table, placeholders, message count (the next seq) and system event; Binance's
        per-symbol sync (live, last update id, diffs buffered for a snapshot, pending book
        tickers, SyncStats counters); LOBSTER's rows per symbol; Kraken's precisions, depths, sync and
        counters per pair; Coinbase's book type, order UUIDs, sync, buffered messages, staged snapshot parts
        and early matches per product. Its own docstrings (`_core.ItchFeed.__getstate__`, ...)
        give the layout. `feed.__setstate__(state)` on a fresh feed (or pickle / copy.deepcopy)
        continues exactly where this one was: same later batches, same books.
        """
        return {
            "version": self.STATE_VERSION,
            "venue": self.venue,
            "symbols": list(self.symbols),
            "core": self.core.__getstate__(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Replace the feed with a `__getstate__` state; ValueError (feed unchanged) for another
        version or venue, or a malformed state."""
        if not isinstance(state, dict) or state.get("version") != self.STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{type(self).__name__} state: version {version!r}, this build reads {self.STATE_VERSION}")
        if state.get("venue") != self.venue:
            raise ValueError(f"{type(self).__name__} state: of venue {state.get('venue')!r}, not {self.venue!r}")
        symbols = state.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValueError(f"{type(self).__name__} state: 'symbols' is not a list of str")
        core = self._core_class()()
        core.__setstate__(state.get("core"))
        # the wrapper's table is the core's as far as its batches went: never anything else
        if core.symbol_names(0)[: len(symbols)] != symbols:
            raise ValueError(f"{type(self).__name__} state: 'symbols' is not the start of the core's symbol table")
        self.core = core
        self.symbols = list(symbols)

    @staticmethod
    def _core_class() -> Any:
        raise NotImplementedError


class _MessageFeed(_Feed):
    """A feed of raw messages that name their symbols (Binance, Kraken, Coinbase)."""

    def on_messages(self, messages: list[bytes], recv_ts: np.ndarray | None = None) -> Batch:
        """Raw messages (values of the venue's `md.raw` topic), optional int64 receive times."""
        return self._batch(self.core.on_messages(messages, recv_ts))

    def rebuild(
        self, messages: list[bytes], levels: int, target: str | None = None, recv_ts: np.ndarray | None = None
    ) -> tuple[Batch, np.ndarray, str | None]:
        """`megatrading book`'s rows of raw messages in order (`orderbook.rebuild.rebuild_binance`, ...): applied
        as `on_messages` applies them, and after each message that gave an event of `target`'s book (None:
        the first book an event names), or was refused as crossed, the row [symbol id, ts, seq, LOBSTER
        orderbook row of `levels`]. (batch, rows, the target once known)."""
        result, rows, name = self.core.rebuild(messages, levels, target, recv_ts)
        return self._batch(result), rows, name


class _Orders:
    """An order-by-order feed's books read order by order (ITCH, LOBSTER, Coinbase's L3 products)."""

    core: Any

    def orders(self, symbol: str) -> dict[int, tuple[int, int, int]] | None:
        """A symbol's resting orders: {id: (side, price, size)}; None where it has no order-by-order book."""
        return self.core.orders(symbol)

    def queue(self, symbol: str, side: Side, price: int) -> list[tuple[int, int]]:
        """A level's orders in time priority, as (id, size)."""
        return self.core.queue(symbol, int(side), price)


class ItchFeed(_Orders, _Feed):
    """ITCH 5.0 decode + apply: `orderbook.venues.itch.ItchFeed` over batches."""

    venue = "itch"

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(_core.ItchFeed(sorted(symbols) if symbols is not None else None, check_crossed))

    @staticmethod
    def _core_class() -> Any:
        return _core.ItchFeed

    def decode_apply(self, framed: bytes, recv_ts: int = 0) -> Batch:
        """Every message of a framed buffer (the 2-byte length prefix of NASDAQ's day files)."""
        return self._batch(self.core.decode_apply(framed, recv_ts))

    def on_messages(self, messages: list[bytes], recv_ts: np.ndarray | None = None) -> Batch:
        """Unframed messages (values of `md.raw.itch`), optional int64 receive times."""
        return self._batch(self.core.on_messages(messages, recv_ts))

    def rebuild(
        self, framed: bytes, levels: int, target: str | None = None, last: bool = True
    ) -> tuple[Batch, np.ndarray, str | None, int]:
        """`megatrading book`'s rows of a framed buffer (`orderbook.rebuild.rebuild_itch`): its whole frames
        (all of it where `last`) decoded and applied as `decode_apply` does, and after each message that gave
        an event of `target`'s book (None: the first book an event names), or was refused as crossed, the
        row [symbol id, ts, seq, LOBSTER orderbook row of `levels`]. (batch, rows, the target once known,
        the bytes read)."""
        result, rows, name, used = self.core.rebuild(framed, levels, target, last)
        return self._batch(result), rows, name, used

    @property
    def locates(self) -> dict[int, str]:
        return dict(self.core.locates())

    @property
    def messages(self) -> int:
        return self.core.messages

    @property
    def system_event(self) -> str:
        return self.core.system_event


class BinanceFeed(_MessageFeed):
    """Binance depth decode + apply (JSON included): `orderbook.venues.binance.BinanceFeed` over batches."""

    venue = "binance"

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(_core.BinanceFeed(sorted(symbols) if symbols is not None else None, check_crossed))

    @staticmethod
    def _core_class() -> Any:
        return _core.BinanceFeed

    def sync(self, symbol: str) -> tuple[bool, int | None, int, int, int] | None:
        """A symbol's BookSync: (live, last_seq, resyncs, snapshots, buffered diffs)."""
        return self.core.sync(symbol)

    def stats(self, symbol: str) -> dict[str, int] | None:
        """A symbol's SyncStats counters (no `mismatches` list), None where the reference has none."""
        return self.core.stats(symbol)


class LobsterFeed(_Orders, _Feed):
    """LOBSTER message rows decode + apply: `orderbook.venues.lobster.LobsterFeed` over batches."""

    venue = "lobster"

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        super().__init__(_core.LobsterFeed(sorted(symbols) if symbols is not None else None, check_crossed))

    @staticmethod
    def _core_class() -> Any:
        return _core.LobsterFeed

    def on_messages(self, messages: list[bytes], keys: list[bytes | None], recv_ts: np.ndarray | None = None) -> Batch:
        """Records of `md.raw.lobster`: message rows and their keys (the symbol; None is refused, as
        `LobsterFeed.on_record` refuses it), optional int64 receive times."""
        return self._batch(self.core.on_messages(messages, keys, recv_ts))

    def rebuild(
        self, messages: list[bytes], key: str, levels: int, target: str | None = None, recv_ts: np.ndarray | None = None
    ) -> tuple[Batch, np.ndarray, str | None]:
        """`megatrading book`'s rows of one ticker's rows in order, each keyed `key`
        (`orderbook.rebuild.rebuild_lobster`): as `BinanceFeed.rebuild`."""
        result, rows, name = self.core.rebuild(messages, key.encode(), levels, target, recv_ts)
        return self._batch(result), rows, name

    @property
    def rows(self) -> dict[str, int]:
        """Rows seen per symbol (`LobsterFeed.rows`)."""
        return dict(self.core.rows())


class KrakenFeed(_MessageFeed):
    """Kraken websocket books and trades decode + apply (v1 and v2, JSON included, every checksum checked):
    `orderbook.venues.kraken.KrakenFeed` over batches."""

    venue = "kraken"

    def __init__(
        self,
        symbols: set[str] | None = None,
        *,
        check_crossed: bool = True,
        precisions: dict[str, tuple[int, int]] | None = None,
        depth: int = 10,
    ) -> None:
        core = _core.KrakenFeed(sorted(symbols) if symbols is not None else None, check_crossed, precisions, depth)
        super().__init__(core)

    @staticmethod
    def _core_class() -> Any:
        return _core.KrakenFeed

    def sync(self, symbol: str) -> tuple[bool, int | None, int, int] | None:
        """A pair's BookSync: (live, last_seq, resyncs, snapshots)."""
        return self.core.sync(symbol)

    def counters(self, symbol: str) -> tuple[int, int, int, int] | None:
        """A pair's (messages, skipped, checksums checked, checksums matched): the reference's Counters."""
        return self.core.counters(symbol)

    @property
    def precision(self) -> dict[str, tuple[int, int, str]]:
        """pair -> (price decimals, size decimals, where they were learnt), as `KrakenFeed.precision`."""
        return dict(self.core.precision())

    @property
    def v2_depth(self) -> dict[str, int]:
        return dict(self.core.v2_depth())


class CoinbaseFeed(_Orders, _MessageFeed):
    """Coinbase level2 and full channels decode + apply (JSON included, REST snapshots in parts):
    `orderbook.venues.coinbase.CoinbaseFeed` over batches.

    An event row's order id is a u64 where the reference's is Coinbase's UUID string: an order gets the
    feed's next id when it comes to rest and keeps it while it rests (ids are never reused); a level-2
    product's trade gets a fresh one for its maker. With `order_names`, the feed remembers every id's UUID
    (`order_name`) and its batches give the reference's string ids back (`Batch.to_events`): for tests
    and tools, since the table grows with every order seen.
    """

    venue = "coinbase"

    def __init__(
        self, symbols: set[str] | None = None, *, check_crossed: bool = True, order_names: bool = False
    ) -> None:
        wanted = sorted(symbols) if symbols is not None else None
        super().__init__(_core.CoinbaseFeed(wanted, check_crossed, order_names))
        self.order_names: dict[int, str] | None = {} if order_names else None

    @staticmethod
    def _core_class() -> Any:
        return _core.CoinbaseFeed

    def _batch(self, result: tuple[np.ndarray, dict[str, Any]]) -> Batch:
        batch = super()._batch(result)
        if self.order_names is None:
            return batch
        self.order_names.update(self.core.take_order_names())
        return _NamedBatch(batch.venue, batch.events, batch.rejects, batch.symbols, self.order_names)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        names = self.core.take_order_names()  # the resting orders' UUIDs, where the state keeps the names
        self.order_names = None if names is None else dict(names)

    def book_type(self, symbol: str) -> str | None:
        """ "L2" or "L3" (fixed by a product's first book message), None for a product with no book."""
        return self.core.book_type(symbol)

    def sync(self, symbol: str) -> tuple[bool, int | None, int, int, int] | None:
        """A product's BookSync: (live, last_seq, resyncs, snapshots, buffered messages)."""
        return self.core.sync(symbol)

    @property
    def l2_counts(self) -> dict[str, int]:
        """Level-2 messages per product (their events' seq), as `CoinbaseFeed.l2_counts`."""
        return dict(self.core.l2_counts())


@dataclass(frozen=True)
class _NamedBatch(Batch):
    """A Coinbase batch whose events carry the UUIDs their ids stand for (`CoinbaseFeed(order_names=True)`)."""

    names: dict[int, str] | None = None

    def to_events(self) -> list[Event]:
        events = super().to_events()
        names = self.names or {}
        for e in events:
            e.order_id = names.get(e.order_id, e.order_id) if e.order_id else 0  # type: ignore[call-overload]
            e.new_order_id = names.get(e.new_order_id, e.new_order_id) if e.new_order_id else 0  # type: ignore[call-overload]
        return events
