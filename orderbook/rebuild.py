"""Offline rebuild: a capture through a venue's feed, the top of the book after every message as a row of
LOBSTER's orderbook file (`megatrading book`, whatever the venue). `rebuild` takes any feed, message by
message (the reference); `rebuild_itch` an ITCH day file, `rebuild_binance` a Binance capture and
`rebuild_lobster` a LOBSTER message file on the native path (decoded, applied and the rows cut in Rust),
the same rows in blocks (`RowBlock`: `rows_of` for the Rows, `csv` for the CLI's lines without a Python
object per row)."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import numpy as np

from .errors import CrossedBook, FeedError
from .venues.base import GZIP_ERRORS, Feed, Record, RecordBlock, broken_gzip
from .venues.itch import open_day_file
from .venues.lobster import orderbook_row

if TYPE_CHECKING:
    from .native import Batch


class Row(NamedTuple):
    symbol: str
    ts: int  # exchange timestamp of the message's last event, ns
    seq: int  # venue sequence number of that event
    levels: list[int]  # a LOBSTER orderbook row (orderbook.venues.lobster.orderbook_row)


class RowBlock(NamedTuple):
    """Rows of a native rebuild call: `rows` (n, 3 + 4 levels) int64, each [symbol id, ts, seq, LOBSTER
    orderbook row...], the ids indexing `symbols`."""

    symbols: Sequence[str]
    rows: np.ndarray

    def to_rows(self) -> Iterator[Row]:
        for r in self.rows.tolist():
            yield Row(self.symbols[r[0]], r[1], r[2], r[3:])

    def csv(self, with_seq: bool) -> str:
        """The CLI's lines for these rows (`streams.cli.csv_lines`' of `to_rows`), written in Rust."""
        from . import native

        return native.rows_csv(self.rows, 1 if with_seq else 3)


def rows_of(blocks: Iterable[RowBlock]) -> Iterator[Row]:
    for block in blocks:
        yield from block.to_rows()


@dataclass
class RebuildStats:
    messages: int = 0
    rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    symbols: list[str] = field(default_factory=list)


def rebuild(
    feed: Feed,
    records: Iterable[Record],
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
) -> Iterator[Row]:
    """One row per message that touched a book: of `symbol`, or of the first symbol seen.

    Errors are counted by reason in `stats.errors` and passed to `on_error`; the feed has
    already put the book in the state its venue prescribes, so the rebuild goes on.
    """
    stats = stats if stats is not None else RebuildStats()
    seen: set[str] = set()
    for rec in records:
        stats.messages += 1
        try:
            events = feed.on_message(rec.raw, rec.recv_ts)
        except CrossedBook as err:
            # the message was applied; the row still shows what the venue sent
            stats.errors[err.reason] += 1
            if on_error:
                on_error(err)
            book = feed.books.get(err.symbol)
            if book is not None and err.symbol == (symbol or err.symbol):
                yield Row(err.symbol, err.ts, err.seq or 0, orderbook_row(book, levels))
                stats.rows += 1
            continue
        except FeedError as err:
            stats.errors[err.reason] += 1
            if on_error:
                on_error(err)
            continue
        last: dict[str, tuple[int, int]] = {}
        for e in events:
            last[e.symbol] = (e.ts, e.seq)
            if e.symbol not in seen:
                seen.add(e.symbol)
                stats.symbols.append(e.symbol)
        if symbol is None and stats.symbols:
            symbol = stats.symbols[0]
        hit = last.get(symbol) if symbol is not None else None
        if hit is not None:
            stats.rows += 1
            yield Row(symbol, hit[0], hit[1], orderbook_row(feed.books[symbol], levels))  # type: ignore[index]


CHUNK = 1 << 20  # bytes of an ITCH file read at a time on the native path


def rebuild_itch(
    path: str | Path,
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
    *,
    check_crossed: bool = True,
    chunk: int = CHUNK,
) -> Iterator[RowBlock]:
    """`rebuild` of a framed ITCH file (NASDAQ's day-file layout, raw or gzipped) on the native path
    (orderbook.native's ItchFeed, `rebuild`): the file read `chunk` bytes (in whole PIECEs) at a time,
    decoded, applied and its rows cut in Rust, with the reference's rows, stats and errors, a damaged gzip
    stream's too (tests/test_rebuild.py). A day's hundreds of millions of messages are what
    `ItchFeed.on_message` one at a time cannot take."""
    from . import native

    stats = stats if stats is not None else RebuildStats()
    feed = native.ItchFeed(check_crossed=check_crossed)
    seen = set(stats.symbols)
    first_message = stats.messages
    target, pending, read = symbol, b"", 0
    with open_day_file(path) as f:
        while True:
            data, damage = _read(f, chunk)
            read += len(data)
            buffer = pending + data if pending else data
            # levels below 0 are none, as orderbook_row's range() takes them
            batch, rows, target, used = feed.rebuild(buffer, max(levels, 0), target, last=not data and damage is None)
            pending = buffer[used:]
            stats.messages = first_message + feed.messages
            yield from _taken(batch, rows, stats, seen, on_error)
            if damage is not None:  # the frame cut by the damage is not read, as read_capture does not read it
                raise broken_gzip(path, damage, None, feed.messages, read - len(pending), unit="messages")
            if not data:
                return


RECORDS = 4096  # messages of a text capture handed to the native feed at a time


def rebuild_binance(
    path: str | Path,
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
    *,
    check_crossed: bool = True,
    chunk: int = RECORDS,
) -> Iterator[RowBlock]:
    """`rebuild` of a Binance capture on the native path: its records as `BinanceFeed.read_capture` reads
    them, `chunk` at a time through orderbook.native's BinanceFeed (`rebuild`), with the reference's
    rows, stats and errors (tests/test_rebuild.py); a capture that stops reading (a damaged gzip) gives
    the rows of every record before it, then its error, as the reference does."""
    return _rebuild_messages("binance", path, levels, symbol, stats, on_error, check_crossed, chunk)


def rebuild_kraken(
    path: str | Path,
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
    *,
    check_crossed: bool = True,
    chunk: int = RECORDS,
) -> Iterator[RowBlock]:
    """`rebuild` of a Kraken capture (cryptofeed's recording) on the native path, as `rebuild_binance`
    (tests/test_native_kraken.py)."""
    return _rebuild_messages("kraken", path, levels, symbol, stats, on_error, check_crossed, chunk)


def rebuild_coinbase(
    path: str | Path,
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
    *,
    check_crossed: bool = True,
    chunk: int = RECORDS,
) -> Iterator[RowBlock]:
    """`rebuild` of a Coinbase capture (cryptofeed's recording, or a REST snapshot file) on the native path,
    as `rebuild_binance` (tests/test_native_coinbase.py)."""
    return _rebuild_messages("coinbase", path, levels, symbol, stats, on_error, check_crossed, chunk)


def _rebuild_messages(
    venue: str,
    path: str | Path,
    levels: int,
    symbol: str | None,
    stats: RebuildStats | None,
    on_error: Callable[[FeedError], None] | None,
    check_crossed: bool,
    chunk: int,
) -> Iterator[RowBlock]:
    """A capture of a venue whose messages name their symbol through its native feed's `rebuild`."""
    from . import native
    from .venues import feed_class

    feeds = {"binance": native.BinanceFeed, "kraken": native.KrakenFeed, "coinbase": native.CoinbaseFeed}
    feed = feeds[venue](check_crossed=check_crossed)

    def step(raws: list[bytes], target: str | None, recv: np.ndarray) -> tuple[Batch, np.ndarray, str | None]:
        return feed.rebuild(raws, max(levels, 0), target, recv)

    return _rebuild_records(feed_class(venue).read_capture_blocks(path), step, symbol, stats, on_error, chunk)


def rebuild_lobster(
    path: str | Path,
    levels: int,
    symbol: str | None = None,
    stats: RebuildStats | None = None,
    on_error: Callable[[FeedError], None] | None = None,
    *,
    check_crossed: bool = True,
    chunk: int = RECORDS,
) -> Iterator[RowBlock]:
    """`rebuild` of a LOBSTER message file on the native path, as `rebuild_binance`: its rows keyed as
    `LobsterFeed.for_capture` keys them (`symbol`, else the file name's ticker, else LOBSTER)."""
    from . import native
    from .venues.lobster import DEFAULT_SYMBOL, LobsterFeed, symbol_from_filename

    feed = native.LobsterFeed(check_crossed=check_crossed)
    key = symbol or symbol_from_filename(path) or DEFAULT_SYMBOL

    def step(raws: list[bytes], target: str | None, recv: np.ndarray) -> tuple[Batch, np.ndarray, str | None]:
        return feed.rebuild(raws, key, max(levels, 0), target, recv)

    return _rebuild_records(LobsterFeed.read_capture_blocks(path), step, symbol, stats, on_error, chunk)


def _rebuild_records(
    blocks: Iterator[RecordBlock],
    step: Callable[[list[bytes], str | None, np.ndarray], tuple[Batch, np.ndarray, str | None]],
    target: str | None,
    stats: RebuildStats | None,
    on_error: Callable[[FeedError], None] | None,
    chunk: int,
) -> Iterator[RowBlock]:
    """A text capture's records (`read_capture_blocks`) `chunk` at a time through a native feed's `rebuild`
    (`step`: the raw messages, the target so far, their receive times -> batch, rows, the target once
    known). A reading error comes after the rows of every record before it, as the reference meets it."""
    stats = stats if stats is not None else RebuildStats()
    seen = set(stats.symbols)
    chunk = max(chunk, 1)
    parts: list[RecordBlock] = []  # read, not yet rebuilt: fewer than `chunk` records while the reading goes on
    held, error = 0, None
    while True:
        try:
            block = next(blocks, None)
        except Exception as err:
            block, error = None, err
        if block is not None:
            parts.append(block)
            held += len(block.raws)
            if held < chunk:
                continue
        if held:  # whole chunks, and what is left once the reading has ended
            recv = np.concatenate([b.recv for b in parts]) if len(parts) > 1 else parts[0].recv
            raws = list(chain.from_iterable(b.raws for b in parts)) if len(parts) > 1 else parts[0].raws
            whole = held if block is None else held - held % chunk
            for at in range(0, whole, chunk):
                end = min(at + chunk, whole)
                batch, rows, target = step(raws[at:end], target, recv[at:end])
                stats.messages += end - at
                yield from _taken(batch, rows, stats, seen, on_error)
            parts = [RecordBlock(recv[whole:], raws[whole:])] if whole < held else []
            held -= whole
        if block is None:
            if error is not None:
                raise error
            return


NATIVE = {"itch": rebuild_itch, "binance": rebuild_binance, "lobster": rebuild_lobster, "kraken": rebuild_kraken,
          "coinbase": rebuild_coinbase}  # fmt: skip
"""The venues whose captures `megatrading book` rebuilds on the native path: venue -> its rebuild (path,
levels, symbol, stats, on_error, *, check_crossed, chunk: bytes of an ITCH file, records of a Binance,
Kraken or Coinbase capture or a LOBSTER file)."""


def _taken(
    batch: Batch, rows: np.ndarray, stats: RebuildStats, seen: set[str], on_error: Callable[[FeedError], None] | None
) -> Iterator[RowBlock]:
    """A native rebuild call's part of the stats (symbols first named by an event of a message that was not
    refused, as the reference sees only those; errors by reason) and its rows."""
    events = batch.events
    refused = batch.rejects["msg"]
    ids = events["symbol"][~np.isin(events["msg"], refused)] if len(refused) else events["symbol"]
    if len(ids):
        firsts, at = np.unique(ids, return_index=True)
        for name in (batch.symbol(int(i)) for i in firsts[np.argsort(at)]):
            if name not in seen:
                seen.add(name)
                stats.symbols.append(name)
    for _, err in batch.errors():
        stats.errors[err.reason] += 1
        if on_error:
            on_error(err)
    stats.rows += len(rows)
    if len(rows):
        yield RowBlock(batch.symbols, rows)


PIECE = io.DEFAULT_BUFFER_SIZE  # bytes a read of a gzipped file asks for: what is lost of the stream before a damage


def _read(f: BinaryIO, size: int) -> tuple[bytes, BaseException | None]:
    """`size` bytes rounded up to whole PIECEs (fewer at the end), and the gzip error that stopped the reading
    where one did. In reads of PIECE: a read that meets a gzip stream's damage returns nothing of what it
    decompressed, so the rows stop before the damage where `ItchFeed.read_capture`'s reads (a buffer of the
    same size) stop them, and the same CaptureError follows (tests/test_rebuild.py); a read of less would
    move where the reads fall in the stream."""
    parts, got = [], 0
    while got < size:
        try:
            part = f.read1(PIECE)
        except GZIP_ERRORS as err:
            return b"".join(parts), err
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts), None
