"""The per-worker processing of one venue: raw record -> feed (decode, book) -> windows.

Plain code, no Kafka and no asyncio, so the agent in `streams/app.py` stays a short loop
and everything that needs a test is tested here. A record that the feed rejects becomes a
`Rejected` (headed for `md.dlq` with its reason); the worker goes on with the next one.

Books are rebuilt after a crash or a rebalance by feeding a partition's records again from
its start up to the committed offset with `warm=True`: the books, features and window
counters come back exactly as they were, and no window is emitted for records whose
forecasts were already written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from orderbook.book import Book
from orderbook.errors import DecodeError, FeedError, OversizedMessage, check_size
from orderbook.events import Event
from orderbook.features import FeatureState, book_tick
from orderbook.venues import Feed, decode_record, feed_class
from orderbook.windows import Window, WindowBuilder, WindowConfig

NEWS_KEPT = 64  # headlines remembered per symbol for books built later


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the pipeline could not use, with why: what `md.dlq` carries."""

    reason: str
    error: str
    key: bytes | None
    value: bytes
    partition: int
    offset: int


@dataclass
class PipelineStats:
    records: int = 0
    events: int = 0
    windows: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class VenuePipeline:
    """One venue's books and window builders, fed one raw record at a time."""

    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        max_bytes: int | None = None,
        feed_factory: Callable[[], Feed] | None = None,
    ) -> None:
        self.venue = venue
        self.config = config or WindowConfig()
        self.symbols = symbols
        self.max_bytes = max_bytes
        self._feed_factory = feed_factory or (lambda: feed_class(venue)(symbols))
        self.feed = self._feed_factory()
        self.builders: dict[str, WindowBuilder] = {}
        self.partition_of: dict[str, int] = {}  # symbol -> the partition its records come from
        self.position: dict[int, int] = {}  # partition -> next offset to process
        self.stats = PipelineStats()
        # every headline seen, per symbol (bounded): it outlives `reset`, news is not replayed
        self.news: dict[str, list[tuple[int, str]]] = defaultdict(list)

    # ---- records

    def process(
        self, key: bytes | None, value: bytes, partition: int, offset: int, *, warm: bool = False
    ) -> tuple[list[Window], Rejected | None]:
        """Apply one record; the windows it completed (none when `warm`) and a rejection, if any."""
        self.position[partition] = offset + 1
        self.stats.records += 1
        try:
            if self.max_bytes is not None and len(value) > self.max_bytes:
                raise OversizedMessage(f"record of {len(value)} bytes exceeds {self.max_bytes}", venue=self.venue)
            check_size(value, self.venue)
            events = decode_record(self.feed, key, value)
        except FeedError as err:
            return [], self._reject(err.reason, str(err), key, value, partition, offset)
        except Exception as err:  # a decoder bug must not stop the worker: dead-letter it, loudly
            return [], self._reject("internal_error", f"{type(err).__name__}: {err}", key, value, partition, offset)
        self.stats.events += len(events)
        windows = []
        for symbol, mine in _by_symbol(events).items():
            self.partition_of[symbol] = partition
            book = self.feed.books.get(symbol)
            if book is None:
                continue
            builder = self.builders.get(symbol) or self._builder(symbol, book)
            if builder is None:
                continue
            w = builder.push(book, mine, offset=(partition, offset))
            if w is not None and not warm:
                windows.append(w)
        self.stats.windows += len(windows)
        return windows, None

    def _reject(
        self, reason: str, error: str, key: bytes | None, value: bytes, partition: int, offset: int
    ) -> Rejected:
        self.stats.rejected[reason] += 1
        return Rejected(reason, error, key, value, partition, offset)

    def _builder(self, symbol: str, book: Book) -> WindowBuilder | None:
        """A symbol's window builder, created once its tick size is known."""
        tick = book_tick(self.venue, book)
        if tick is None:
            return None  # warming up: too few prices to infer the tick from
        builder = WindowBuilder(self.config, FeatureState(tick=tick), self.venue, symbol)
        for ts, headline in self.news.get(symbol, ()):
            builder.add_news(ts, headline)
        self.builders[symbol] = builder
        return builder

    # ---- news

    def add_news(self, ts: int, symbols: list[str], headline: str) -> None:
        for symbol in symbols:
            kept = self.news[symbol]
            kept.append((ts, headline))
            del kept[:-NEWS_KEPT]
            builder = self.builders.get(symbol)
            if builder is not None:
                builder.add_news(ts, headline)

    # ---- rebalance

    def reset(self) -> None:
        """Forget every book. A feed keeps per-symbol state beyond its books (ITCH order routing,
        Binance pending tickers...), so after a rebalance the pipeline starts afresh and the
        worker replays the partitions it owns (`warm=True`) instead of pruning symbols."""
        self.feed = self._feed_factory()
        self.builders.clear()
        self.partition_of.clear()
        self.position.clear()


def _by_symbol(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.symbol, []).append(e)
    return out


def parse_news(value: bytes) -> tuple[int, list[str], str]:
    """An `md.news` record: `{"ts": ns, "symbols": [...], "headline": str, "source": str}`."""
    try:
        doc = json.loads(value)
        ts, symbols, headline = int(doc["ts"]), doc["symbols"], doc["headline"]
    except (ValueError, KeyError, TypeError) as err:
        raise DecodeError(f"news record is not the md.news JSON layout: {err}", venue="news") from None
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols) or not isinstance(headline, str):
        raise DecodeError("news record: symbols must be a list of strings and headline a string", venue="news")
    return ts, symbols, headline
