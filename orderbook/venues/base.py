"""What every venue module provides: a `Feed` (bytes in, events out, books kept in sync)
and a reader of that venue's recorded captures. No I/O beyond reading a file."""

from __future__ import annotations

import gzip
from abc import ABC, abstractmethod
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..book import Book, BookType, L2Book, L3Book
from ..errors import CrossedBook, UnknownSymbol
from ..events import Event
from ..features import infer_tick
from ..sync import BookSync

MIN_LEVELS_FOR_TICK = 3
"""Levels a side needs before a venue without a fixed tick has its tick inferred from the book."""


class Record(NamedTuple):
    """One raw message of a capture file, as it would sit on a `md.raw.<venue>` topic, with its capture time."""

    recv_ts: int  # ns since the epoch when the capture says, else 0
    raw: bytes


class RawRecord(NamedTuple):
    """One record of a `md.raw.<venue>` topic: its key (the symbol, docs/design.md) and value, and where a
    replayed source knows it (a simulated day) the stream's clock at that record."""

    key: bytes | None
    value: bytes
    ts: int | None = None


def open_maybe_gzip(path: str | Path) -> Iterator[bytes]:
    """The lines of a text capture, gzipped or not, without their line ends."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        for line in f:
            yield line.rstrip(b"\r\n")


class Feed(ABC):
    """Decodes one venue's raw messages and keeps one book per symbol in sync.

    `on_message` applies what it decodes to `books[symbol]` and returns the events it
    applied. Errors are raised as typed `FeedError`s after the book has been put in the
    state the venue's procedure prescribes (resync on a gap, untouched on a bad message),
    so a caller may log or dead-letter the error and go on with the next message.
    """

    venue: ClassVar[str]
    book_type: ClassVar[BookType]
    tick: ClassVar[int | None] = None
    """Price units per tick where the venue fixes one tick for every instrument; None: each book's is inferred."""

    def __init__(self, symbols: set[str] | None = None, *, check_crossed: bool = True) -> None:
        self.symbols = symbols  # None: accept every symbol
        self.check_crossed = check_crossed
        self.books: dict[str, Book] = {}
        self.syncs: dict[str, BookSync] = {}

    def book(self, symbol: str) -> Book:
        b = self.books.get(symbol)
        if b is None:
            if self.symbols is not None and symbol not in self.symbols:
                raise UnknownSymbol(f"symbol {symbol!r} is not configured", venue=self.venue, symbol=symbol)
            b = (L3Book if self.book_type is BookType.L3 else L2Book)(self.venue, symbol)
            self.books[symbol] = b
            self.syncs[symbol] = BookSync(self.venue, symbol)
        return b

    def check(self, book: Book, seq: int | None, ts: int = 0) -> None:
        """Report a crossed book once a whole message has been applied."""
        if self.check_crossed and book.crossed():
            raise CrossedBook(
                f"best bid {book.best_bid()} >= best ask {book.best_ask()}",
                venue=self.venue,
                symbol=book.symbol,
                seq=seq,
                ts=ts,
            )

    @abstractmethod
    def on_message(self, raw: bytes, recv_ts: int = 0) -> list[Event]:
        """Decode one raw message, apply it to its book, return the events applied."""

    def on_record(self, key: bytes | None, raw: bytes, recv_ts: int = 0) -> list[Event]:
        """One `md.raw.<venue>` record: `on_message` of its value. The key is the symbol on every raw
        topic (docs/design.md); a venue whose messages name their symbol does not need it."""
        return self.on_message(raw, recv_ts)

    @classmethod
    def window_tick(cls, book: Book) -> int | None:
        """The tick a book's windows are measured in: the venue's fixed `tick`, else the one inferred
        from the book once a side has MIN_LEVELS_FOR_TICK levels (None until then)."""
        if cls.tick is not None:
            return cls.tick
        if len(book.bids) < MIN_LEVELS_FOR_TICK and len(book.asks) < MIN_LEVELS_FOR_TICK:
            return None
        return infer_tick(chain(book.bids.keys(), book.asks.keys()))

    @classmethod
    def capture_key(cls, path: str | Path, symbol: str | None = None) -> str | None:
        """The key every record of a capture file gets where one key serves them all: `symbol` if given;
        None where each message names its own symbol (the key is read from it, `key`)."""
        return symbol or None

    @classmethod
    def for_capture(cls, path: str | Path, symbol: str | None = None, *, check_crossed: bool = True) -> Feed:
        """A feed to read one capture file with (`symbol`: the book it holds, where its messages name none)."""
        return cls(check_crossed=check_crossed)

    @abstractmethod
    def key(self, raw: bytes) -> str:
        """The Kafka key of a raw message (its symbol), cheaply, without applying it."""

    @staticmethod
    @abstractmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """The raw messages of a recorded file of this venue, in order."""
