"""One venue's feed and per-symbol window builders: raw records in, windows out.

The one loop that turns `md.raw.<venue>` records into the model's windows, shared by the
streaming worker (streams/pipeline.py), offline scoring (model/scoring.py) and the training
data (model/dataset.py), so that all three see exactly the same windows. Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from .book import Book
from .errors import check_size
from .events import Event
from .features import FeatureState, book_tick
from .venues import Feed, decode_record, feed_class
from .windows import Window, WindowBuilder, WindowConfig

NEWS_KEPT = 64  # headlines remembered per symbol, for books whose builder comes later


class VenueWindows:
    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        ticks: dict[str, int] | None = None,
    ) -> None:
        self.venue = venue
        self.config = config or WindowConfig()
        self.symbols = symbols
        self.ticks = ticks or {}  # a symbol's tick where the caller knows it, else book_tick's rule
        self.feed: Feed = feed_class(venue)(symbols)
        self.builders: dict[str, WindowBuilder] = {}
        self.news: dict[str, list[tuple[int, str]]] = {}

    def reset(self) -> None:
        """Forget every book (the news stays: it is not replayed with the records)."""
        self.feed = feed_class(self.venue)(self.symbols)
        self.builders.clear()

    def decode(self, key: bytes | None, value: bytes) -> list[Event]:
        """A record's events, applied to its book; raises the feed's typed errors."""
        check_size(value, self.venue)
        return decode_record(self.feed, key, value)

    def push(self, events: list[Event], offset: Any = None) -> list[Window]:
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
        tick = self.ticks.get(symbol) or book_tick(self.venue, book)
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
            kept = self.news.setdefault(symbol, [])
            i = bisect.bisect_left(kept, item)
            if i == len(kept) or kept[i] != item:
                kept.insert(i, item)
                del kept[:-NEWS_KEPT]
            builder = self.builders.get(symbol)
            if builder is not None:
                builder.add_news(ts, headline)
