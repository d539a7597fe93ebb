"""The venues. Adding one is a module here and a line in FEEDS; nothing else changes."""

from __future__ import annotations

from importlib import import_module

from ..errors import DecodeError
from ..events import Event
from .base import Feed, Record

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


def decode_record(feed: Feed, key: bytes | None, raw: bytes, recv_ts: int = 0) -> list[Event]:
    """One `md.raw.<venue>` record through its feed. LOBSTER rows carry no symbol: the record's
    key names the book there (DESIGN.md: the key is the symbol on every raw topic)."""
    if feed.venue == "lobster":
        if not key:
            raise DecodeError("LOBSTER record without a symbol key", venue="lobster")
        return feed.on_message(raw, recv_ts, symbol=key.decode(errors="replace"))  # type: ignore[call-arg]
    return feed.on_message(raw, recv_ts)


__all__ = ["FEEDS", "Feed", "Record", "decode_record", "feed_class"]
