"""One venue's feed and per-symbol window builders: raw records in, windows out.

The one path from `md.raw.<venue>` records to the model's windows, shared by the streaming worker
(streams/pipeline.py adds the Kafka positions and the `md.dlq` record), offline scoring
(model/serving/scoring.py) and the training data (model/training/dataset.py), so that all three see
exactly the same windows and reject the same records for the same reasons. Pure: no I/O.

    vw = VenueWindows("itch")
    done = vw.process(key, value, offset=(partition, offset))  # Processed(events, windows, reject)
    vw.stats                                                   # records, events, windows, rejected by reason
    for done in process_records(vw, records, headlines): ...   # a recorded stream, headlines joined by time
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .book import Book
from .errors import MAX_MESSAGE_BYTES, FeedError, OversizedMessage
from .events import Event
from .features import FeatureState
from .news import Headline, PendingHeadlines
from .venues import Feed, RawRecord, feed_class
from .windows import Window, WindowBuilder, WindowConfig

NEWS_KEPT = 64  # headlines remembered per symbol, for books whose builder comes later
INTERNAL_ERROR = "internal_error"  # the reject reason of a decoder bug (an exception that is no FeedError)


@dataclass
class WindowStats:
    """What a VenueWindows has processed (a restored one: since the state it was restored from began)."""

    records: int = 0  # records processed, rejected ones included
    events: int = 0  # events decoded from them
    windows: int = 0  # windows emitted (none while warm)
    rejected: Counter[str] = field(default_factory=Counter)  # rejected records by reason


class Reject(NamedTuple):
    """Why a record was not used: what `md.dlq` carries."""

    reason: str  # the FeedError's reason, or INTERNAL_ERROR
    error: str  # the error's text (the FeedError names venue, symbol and sequence where known)


class Processed(NamedTuple):
    """What one record did: the events applied to its book, the windows they completed, or why it was rejected."""

    events: list[Event]
    windows: list[Window]
    reject: Reject | None = None


class VenueWindows:
    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        ticks: dict[str, int] | None = None,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.venue = venue
        self.config = config or WindowConfig()
        self.symbols = symbols
        self.ticks = ticks or {}  # a symbol's tick where the caller knows it, else the feed's window_tick
        self.max_bytes = max_bytes  # the largest record value processed; a longer one is rejected unread
        self.feed: Feed = feed_class(venue)(symbols)
        self.builders: dict[str, WindowBuilder] = {}
        self.news: dict[str, list[tuple[int, str]]] = {}
        self.stats = WindowStats()

    def reset(self) -> None:
        """Forget every book (the news stays: it is not replayed with the records; so do the stats)."""
        self.feed = feed_class(self.venue)(self.symbols)
        self.builders.clear()

    def process(
        self,
        key: bytes | None,
        value: bytes,
        offset: Any = None,
        *,
        warm: bool = False,
        news: PendingHeadlines | None = None,
    ) -> Processed:
        """One record: its size checked, decoded into its book, its events to their symbols' window builders.

        A record the feed rejects (a FeedError, once the feed has put the book where its venue says) or
        that trips a decoder or window-building bug (INTERNAL_ERROR: it must not stop the stream) comes
        back with its Reject, no events and no windows; the next record goes on. `offset`: the record's
        position, carried by the windows it completes. `warm`: the state is being rebuilt from records
        whose windows were emitted before, so the windows are built but neither returned nor counted.
        `news`: headlines waiting for the stream's clock; those at or before the record's latest event
        join before its windows are built (the order in which a worker that keeps up sees them).
        """
        self.stats.records += 1
        try:
            if len(value) > self.max_bytes:
                raise OversizedMessage(f"record of {len(value)} bytes exceeds {self.max_bytes}", venue=self.venue)
            events = self.feed.on_record(key, value)
        except FeedError as err:
            return self._reject(err.reason, str(err))
        except Exception as err:
            return self._reject(INTERNAL_ERROR, f"{type(err).__name__}: {err}")
        self.stats.events += len(events)
        if news is not None and events:
            for h in news.due(max(e.ts for e in events)):
                self.add_news(h.ts, h.symbols, h.headline)
        try:
            windows = self._push(events, offset)
        except Exception as err:
            # a window-building bug an input reached (a value the decoders should have refused: make fuzz
            # found a year-3021 Coinbase time): raised, it would fail the partition's batch again at every
            # retry. The record is dead-lettered as a bug and its symbols' window histories start over
            # (a builder it broke midway is not trusted); their books, which the feed updated, go on.
            for symbol in {e.symbol for e in events}:
                self.builders.pop(symbol, None)
            return self._reject(INTERNAL_ERROR, f"building windows: {type(err).__name__}: {err}")
        if warm:
            return Processed(events, [])
        self.stats.windows += len(windows)
        return Processed(events, windows)

    def refuse(self, reason: str, error: str) -> Processed:
        """A record rejected before any of it reached the feed (a frame that cannot be split),
        counted as `process` counts a record and its reject."""
        self.stats.records += 1
        return self._reject(reason, error)

    def _reject(self, reason: str, error: str) -> Processed:
        self.stats.rejected[reason] += 1
        return Processed([], [], Reject(reason, error))

    def _push(self, events: list[Event], offset: Any) -> list[Window]:
        """Decoded events to their symbols' window builders; the windows they completed."""
        by_symbol: dict[str, list[Event]] = {}
        for e in events:
            by_symbol.setdefault(e.symbol, []).append(e)
        out = []
        for symbol, mine in by_symbol.items():
            book = self.feed.books.get(symbol)
            if book is None:
                continue
            builder = self.builders.get(symbol) or self._builder(symbol, book)
            if builder is None:
                continue
            w = builder.push(book, mine, offset=offset)
            if w is not None:
                out.append(w)
        return out

    def _builder(self, symbol: str, book: Book) -> WindowBuilder | None:
        """A symbol's builder, created once its tick is known (None while the book warms up)."""
        tick = self.ticks.get(symbol) or self.feed.window_tick(book)
        if tick is None:
            return None
        builder = WindowBuilder(self.config, FeatureState(tick=tick), self.venue, symbol)
        for ts, headline in self.news.get(symbol, ()):
            builder.add_news(ts, headline)
        self.builders[symbol] = builder
        return builder

    def add_news(self, ts: int, symbols: Iterable[str], headline: str) -> None:
        """Join a headline to its symbols. Idempotent per symbol: the same (ts, headline) again changes
        nothing. Each symbol keeps its NEWS_KEPT latest headlines by ts, sorted."""
        item = (ts, headline)
        for symbol in symbols:
            builder = self.builders.get(symbol)
            if builder is not None:
                builder.add_news(ts, headline)  # first: a headline a builder refuses is not kept for its successors
            kept = self.news.setdefault(symbol, [])
            i = bisect.bisect_left(kept, item)
            if i == len(kept) or kept[i] != item:
                kept.insert(i, item)
                del kept[:-NEWS_KEPT]


def process_records(
    vw: VenueWindows, records: Iterable[RawRecord], headlines: Iterable[Headline] = ()
) -> Iterator[Processed]:
    """A recorded stream through `vw.process`, record after record (offsets (0, index), as on one
    partition), the headlines joined when the stream's clock reaches them: a record's clock is its `ts`
    where it has one (the headlines up to it join before the record is processed), else its latest
    event's time (they join once it is decoded, before its windows are built)."""
    pending = PendingHeadlines(headlines)
    for i, rec in enumerate(records):
        yield process_record(vw, i, rec, pending)


def process_record(vw: VenueWindows, index: int, rec: RawRecord, pending: PendingHeadlines) -> Processed:
    """Record `index` of `process_records`' stream, the headlines of `pending` joined by its rule."""
    if rec.ts is None:
        return vw.process(rec.key, rec.value, (0, index), news=pending)
    for h in pending.due(rec.ts):
        vw.add_news(h.ts, h.symbols, h.headline)
    return vw.process(rec.key, rec.value, (0, index))
