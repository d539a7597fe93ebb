"""What every venue module provides: a `Feed` (bytes in, events out, books kept in sync)
and a reader of that venue's recorded captures. No I/O beyond reading a file."""

from __future__ import annotations

import gzip
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..book import Book, BookType, L2Book, L3Book
from ..errors import CrossedBook, UnknownSymbol
from ..events import Event
from ..sync import BookSync


class Record(NamedTuple):
    """One raw message as it would sit on a `md.raw.<venue>` topic, with its capture time."""

    recv_ts: int  # ns since the epoch when the capture says, else 0
    raw: bytes


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

    @abstractmethod
    def key(self, raw: bytes) -> str:
        """The Kafka key of a raw message (its symbol), cheaply, without applying it."""

    @staticmethod
    @abstractmethod
    def read_capture(path: str | Path) -> Iterator[Record]:
        """The raw messages of a recorded file of this venue, in order."""
