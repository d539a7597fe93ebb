"""The venues. Adding one is a module here and a line in FEEDS; nothing else changes."""

from __future__ import annotations

from importlib import import_module

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


__all__ = ["FEEDS", "Feed", "Record", "feed_class"]
