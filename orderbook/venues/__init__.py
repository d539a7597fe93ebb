"""The venues. Adding one is a module here and a line in FEEDS; nothing else changes: what sets a venue
apart (a fixed tick, messages without a symbol, capture file naming) is an attribute of its `Feed`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path

from .base import Feed, RawRecord, Record

FEEDS: dict[str, str] = {
    "lobster": "orderbook.venues.lobster:LobsterFeed",
    "itch": "orderbook.venues.itch:ItchFeed",
    "binance": "orderbook.venues.binance:BinanceFeed",
    "coinbase": "orderbook.venues.coinbase:CoinbaseFeed",
    "kraken": "orderbook.venues.kraken:KrakenFeed",
}


def feed_class(venue: str) -> type[Feed]:
    try:
        module, name = FEEDS[venue].split(":")
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}; known: {', '.join(FEEDS)}") from None
    return getattr(import_module(module), name)


def fixed_tick(venue: str) -> int | None:
    """The tick a venue fixes for every instrument (`Feed.tick`); None for the others and for a name that
    is no venue (a simulated stream's)."""
    return feed_class(venue).tick if venue in FEEDS else None


def capture_records(venue: str, paths: Sequence[str | Path], symbol: str | None = None) -> Iterator[RawRecord]:
    """The messages of capture files, file after file, as `md.raw.<venue>` records: keyed by `symbol`,
    else as the venue's `Feed.capture_key` says (LOBSTER: the file name's ticker); no key where each
    message names its own symbol (a feed reads it from the message, not from the key)."""
    cls = feed_class(venue)
    for path in paths:
        key = cls.capture_key(path, symbol)
        raw_key = key.encode() if key is not None else None
        for rec in cls.read_capture(path):
            yield RawRecord(raw_key, rec.raw)


__all__ = ["FEEDS", "Feed", "RawRecord", "Record", "capture_records", "feed_class", "fixed_tick"]
