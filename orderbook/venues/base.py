"""What every venue module provides: a `Feed` (bytes in, events out, books kept in sync)
and a reader of that venue's recorded captures. No I/O beyond reading a file."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import native
from ..book import Book, BookType, L2Book, L3Book
from ..errors import CaptureError, CrossedBook, DecodeError, UnknownSymbol, is_text, not_configured
from ..events import Event
from ..features import infer_tick
from ..sync import BookSync

MIN_LEVELS_FOR_TICK = 3
"""Levels a side needs before a venue without a fixed tick has its tick inferred from the book."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"JSON constant {name} is not allowed")


_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)  # json.loads would build one per call


def loads_strict(raw: bytes, venue: str = "") -> Any:
    """A message's JSON as the native decoders read it (orderbook/native/src/json.rs): strict UTF-8, NaN and
    Infinity literals refused (json would accept them); DecodeError (naming `venue`) for anything else."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # json.loads refuses a BOM with its own message: keep it
            return json.loads(text, parse_constant=_reject_constant)
        return _STRICT_JSON.decode(text)
    except DecodeError as err:
        raise DecodeError(err.args[0], venue=venue) from None
    except UnicodeDecodeError as err:
        raise DecodeError(f"not UTF-8: {err}", venue=venue) from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, int digit limit, deep nesting
        raise DecodeError(f"not JSON: {err}", venue=venue) from None


class Record(NamedTuple):
    """One raw message of a capture file, as it would sit on a `md.raw.<venue>` topic, with its capture time."""

    recv_ts: int  # ns since the epoch when the capture says, else 0
    raw: bytes


_record = partial(tuple.__new__, Record)  # Record((recv_ts, raw)) without NamedTuple's Python __new__


class RecordBlock(NamedTuple):
    """Records of a capture a block at a time, as columns: what a native feed takes whole, with no Python
    object a record where the lines were split in Rust."""

    recv: np.ndarray  # (n,) int64: each record's receive time, ns since the epoch (0 where the capture has none)
    raws: list[bytes]
    made_of: list[Record] | None = None  # the records it was made of, where a reader read them one by one

    @classmethod
    def of(cls, records: list[Record]) -> RecordBlock:
        return cls(np.fromiter((r.recv_ts for r in records), np.int64, len(records)), [r.raw for r in records], records)

    def records(self) -> list[Record]:
        if self.made_of is not None:
            return self.made_of
        return list(map(_record, zip(self.recv.tolist(), self.raws, strict=True)))


RECORD_BLOCK = 4096  # records a block where a reader gives them one by one


def take(records: Iterator[Record], n: int) -> tuple[list[Record], Exception | None]:
    """Up to `n` records, and the error that stopped the reading where one did (the records before it are
    read: whoever takes them meets them before the error, as a reader one by one does)."""
    out: list[Record] = []
    try:
        for rec in records:
            out.append(rec)
            if len(out) >= n:
                break
    except Exception as err:
        return out, err
    return out, None


def blocks_of(records: Iterable[Record], n: int = RECORD_BLOCK) -> Iterator[RecordBlock]:
    """`records` in blocks of `n`; the records before an error the reading stops with come in a block
    before it."""
    it = iter(records)
    while True:
        block, error = take(it, n)
        if block:
            yield RecordBlock.of(block)
        if error is not None:
            raise error
        if len(block) < n:
            return


def block_records(blocks: Iterable[RecordBlock]) -> Iterator[Record]:
    """The records of `blocks`, one by one."""
    for block in blocks:
        yield from block.records()


def cryptofeed_blocks(path: str | Path, venue: str, received: Callable[[bytes], Record]) -> Iterator[RecordBlock]:
    """A cryptofeed recording's records a block of lines at a time: its first line checked (`check_first_line`),
    connection headers (`<url> <-> <epoch s>`), sent lines (`<url> <- ...`) and blank lines skipped, every
    other line the venue's `received(line)`. On the native path a block of received lines alone is split in
    Rust (`epoch_splitter`) to the same records."""
    split = epoch_splitter()
    checked = False
    for n, block in line_blocks(path):
        if checked and split is not None and (fast := split(block)) is not None:
            yield fast
            continue
        records = []
        for i, line in block_lines(n, block):
            if not checked and line.strip():
                check_first_line(path, i, line, venue)
                checked = True
            if line.strip() and not line.startswith((b"wss://", b"ws://", b"https://", b"http://")):
                records.append(received(line))
        yield RecordBlock.of(records)


def first_line(path: str | Path) -> tuple[int, bytes] | None:
    """(number, line) of a text capture's first line that is not blank; None where every line is."""
    return next(((n, line) for n, line in numbered_lines(path) if line.strip()), None)


def epoch_splitter() -> Callable[[bytes], RecordBlock | None] | None:
    """What splits a block of whole lines (`line_blocks`) of cryptofeed's received lines `<epoch s>: <message>`
    into their records in Rust (nearly every block of a cryptofeed recording), or None on the reference path
    (MT_NATIVE=0). It gives None where a line is another kind (a connection header, a sent or blank line) or
    its stamp of another form or 0: the venue's reader reads that block line by line, as the reference reads
    them all, to the same records."""
    return _epoch_stamped_block if native.enabled() else None


def _epoch_stamped_block(block: bytes) -> RecordBlock | None:
    split = native._core.epoch_stamped_lines(block)
    return None if split is None else RecordBlock(*split)


class RawRecord(NamedTuple):
    """One record of a `md.raw.<venue>` topic: its key (the symbol, docs/design.md) and value, and where a
    replayed source knows it (a simulated day) the stream's clock at that record."""

    key: bytes | None
    value: bytes
    ts: int | None = None


# what a gzip reader raises on a file cut short (EOFError) or damaged (a bad header, CRC or deflate data)
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def numbered_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its end) of a text capture, gzipped or not."""
    for n, block in line_blocks(path):
        yield from block_lines(n, block)


def block_lines(n: int, block: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its end) of a block `line_blocks` gives after `n` lines."""
    for i, line in enumerate(block.split(b"\n"), n + 1):
        yield i, line.rstrip(b"\r")


def line_blocks(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(lines before it, a block of whole lines) of a text capture, gzipped or not: the lines `\n`
    between them, `\r`s at their ends kept, the `\n` after the last left out.

    Read a block at a time: a gzip file's `readline` costs ~4 us a line in Python (a Binance capture's
    reading took longer than its decoding on the native path). The blocks are the size a line reader's
    buffer fills, so a damaged file stops after the same lines."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        n = offset = 0
        pending: list[bytes] = []  # the start of a line a later block ends (a long line: many blocks)
        try:
            while block := f.read1(io.DEFAULT_BUFFER_SIZE):
                end = block.rfind(b"\n")
                if end < 0:
                    pending.append(block)
                    continue
                whole = b"".join((*pending, block[:end])) if pending else block[:end]
                pending = [block[end + 1 :]]
                yield n, whole
                n += whole.count(b"\n") + 1
                offset += len(whole) + 1
        except GZIP_ERRORS as err:
            raise broken_gzip(path, err, raw.tell(), n, offset) from None
        if last := b"".join(pending):
            yield n, last


def broken_gzip(
    path: str | Path, err: BaseException, at: int | None, lines: int, offset: int, unit: str = "lines"
) -> CaptureError:
    """The error for a gzip file that stops or breaks at compressed byte `at`, after `lines` lines
    (messages, for a binary capture) and `offset` bytes of content."""
    size = os.path.getsize(path)
    what = "ends before its gzip stream does: it is truncated" if isinstance(err, EOFError) else f"is corrupt ({err})"
    where = f"at byte {at:,} of {size:,}" if at is not None else f"({size:,} bytes)"
    return CaptureError(
        path,
        f"the file {what}; reading stopped {where}, after {lines:,} {unit} ({offset:,} bytes uncompressed). "
        "Copy or download it again (`gzip -t FILE` checks a file), or give the lines before the damage "
        "(`zcat FILE > FILE.txt` keeps them)",
        line=lines + 1,
        offset=offset,
    )


def not_this_format(path: str | Path, line_no: int, line: bytes, venue: str, why: str = "") -> CaptureError:
    """The error for a line a `venue` capture cannot hold, saying what it looks like where that can be told."""
    guess = looks_like(line)
    hint = f"; it looks like {guess}" if guess and not guess.startswith(_VENUE_NAMES.get(venue, venue)) else ""
    if line_no > 1 and not hint:  # the lines before were this format: the file more likely is damaged
        hint = "; the lines before it were read: the file may be damaged (`gzip -t FILE` checks a gzip file)"
    return CaptureError(
        path,
        f"line {line_no} is not a line of {_VENUE_NAMES.get(venue, venue)} capture{f' ({why})' if why else ''}: "
        f"{line[:80]!r}{hint}. "
        "Check --format/--venue (itch, lobster, binance, coinbase, kraken)",
        line=line_no,
    )


def check_first_line(path: str | Path, line_no: int, line: bytes, venue: str) -> None:
    """Raise CaptureError when a capture's first line is plainly another format's (a Kraken file given
    as Binance): otherwise every message would be rejected one by one, or published to the wrong topic."""
    guess = looks_like(line)
    if guess is not None and not guess.startswith(_VENUE_NAMES[venue]):
        raise not_this_format(path, line_no, line, venue)


_VENUE_NAMES = {"binance": "a Binance", "coinbase": "a Coinbase", "kraken": "a Kraken", "lobster": "a LOBSTER",
                "itch": "an ITCH"}  # fmt: skip
_LOBSTER_ROW = re.compile(rb"^\d+(\.\d+)?,[1-7],-?\d+,-?\d+,-?\d+,-?1$")
_CRYPTOFEED = re.compile(rb"^\d+(\.\d+)?: ")


def looks_like(line: bytes) -> str | None:
    """What a capture line appears to be ("a Binance capture (hftbacktest)", "a LOBSTER message row"),
    from a few signatures; None when it cannot tell."""
    head = line.lstrip()
    if _LOBSTER_ROW.match(head):
        return "a LOBSTER message row (--format lobster)"
    for scheme, venue in ((b"wss://ws.kraken", "kraken"), (b"wss://ws-feed", "coinbase"),
                          (b"wss://stream.binance", "binance"), (b"https://api.binance", "binance")):  # fmt: skip
        if head.startswith(scheme):
            return f"{_VENUE_NAMES[venue]} capture (cryptofeed; --format {venue})"
    stamp, sp, body = head.partition(b" ")
    if sp and stamp.isdigit() and len(stamp) >= 16 and body.startswith((b"{", b"[")):
        return "a Binance capture (hftbacktest; --format binance)"
    m = _CRYPTOFEED.match(head)
    body = head[m.end() :] if m else head
    if body.startswith((b"{", b"[")):
        if b'"product_id"' in body:
            venue = "coinbase"
        elif b'"lastUpdateId"' in body or b'"e":"depthUpdate"' in body or b"@depth" in body:
            venue = "binance"
        elif body.startswith(b"[") or b'"channel":"book"' in body or b'"channelName"' in body:
            venue = "kraken"
        else:
            return None
        return f"{_VENUE_NAMES[venue]} capture ({'cryptofeed' if m else 'JSON'}; --format {venue})"
    if sum(b < 9 or 13 < b < 32 or b > 126 for b in line[:200]) > 8:
        return "an ITCH file or other binary data (--format itch)"
    return None


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
            self.check_symbol(symbol)
            b = (L3Book if self.book_type is BookType.L3 else L2Book)(self.venue, symbol)
            self.books[symbol] = b
            self.syncs[symbol] = BookSync(self.venue, symbol)
        return b

    def check_symbol(self, symbol: str) -> None:
        """A symbol that is to get a book: Unicode text (no book, window or forecast could carry a name with
        a lone surrogate, which JSON's escapes spell), and one the feed follows."""
        if not is_text(symbol):
            raise DecodeError(f"symbol {symbol!r:.40} is not Unicode text (a lone surrogate)", venue=self.venue)
        if self.symbols is not None and symbol not in self.symbols:
            raise UnknownSymbol(not_configured(symbol), venue=self.venue, symbol=symbol)

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

    @classmethod
    def read_capture_blocks(cls, path: str | Path) -> Iterator[RecordBlock]:
        """`read_capture`'s records a block at a time (those before a reading error in a block before it),
        for a native feed to take whole. A reader that splits its lines a block at a time hands its blocks
        on instead."""
        return blocks_of(cls.read_capture(path))
