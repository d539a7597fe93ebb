"""The per-worker processing of one venue: raw record -> feed (decode, book) -> windows.

Plain code, no Kafka and no asyncio, so the agent in `streams/app.py` stays a short loop
and everything that needs a test is tested here. A record that the feed rejects becomes a
`Rejected` (headed for `md.dlq` with its reason); the worker goes on with the next one.

A worker keeps one pipeline per source partition. After a crash or a rebalance it is
restored from the partition's newest state snapshot (streams/snapshots.py) and the records
after it are fed again with `warm=True` up to the committed offset (streams/recovery.py): the
books, features and window counters come back exactly as they were, and no window is emitted
for records whose forecasts were already written.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from orderbook.errors import DecodeError, FeedError, OversizedMessage
from orderbook.venue_windows import VenueWindows
from orderbook.windows import Window, WindowBuilder, WindowConfig


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
    """One venue's books and window builders (orderbook.venue_windows), fed one Kafka record at
    a time, with what the worker adds: a record size limit, rejections with their reason, the
    position reached in each partition."""

    def __init__(
        self,
        venue: str,
        config: WindowConfig | None = None,
        *,
        symbols: set[str] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.venue = venue
        self.max_bytes = max_bytes
        self.core = VenueWindows(venue, config, symbols=symbols)
        self.position: dict[int, int] = {}  # partition -> next offset to process
        self.stats = PipelineStats()

    @property
    def builders(self) -> dict[str, WindowBuilder]:
        return self.core.builders

    def process(
        self, key: bytes | None, value: bytes, partition: int, offset: int, *, warm: bool = False
    ) -> tuple[list[Window], Rejected | None]:
        """Apply one record; the windows it completed (none when `warm`) and a rejection, if any."""
        self.position[partition] = offset + 1
        self.stats.records += 1
        try:
            if self.max_bytes is not None and len(value) > self.max_bytes:
                raise OversizedMessage(f"record of {len(value)} bytes exceeds {self.max_bytes}", venue=self.venue)
            events = self.core.decode(key, value)
        except FeedError as err:
            return [], self._reject(err.reason, str(err), key, value, partition, offset)
        except Exception as err:  # a decoder bug must not stop the worker: dead-letter it, loudly
            return [], self._reject("internal_error", f"{type(err).__name__}: {err}", key, value, partition, offset)
        self.stats.events += len(events)
        windows = self.core.push(events, offset=(partition, offset))
        if warm:
            return [], None
        self.stats.windows += len(windows)
        return windows, None

    def _reject(
        self, reason: str, error: str, key: bytes | None, value: bytes, partition: int, offset: int
    ) -> Rejected:
        self.stats.rejected[reason] += 1
        return Rejected(reason, error, key, value, partition, offset)

    def add_news(self, ts: int, symbols: list[str], headline: str) -> None:
        self.core.add_news(ts, symbols, headline)

    def reset(self) -> None:
        """Forget every book. A feed keeps per-symbol state beyond its books (ITCH order routing,
        Binance pending tickers...), so after a rebalance the pipeline starts afresh and the
        worker replays the partitions it owns (`warm=True`) instead of pruning symbols."""
        self.core.reset()
        self.position.clear()


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
