"""A symbol the feed does not follow is refused with the same words on both paths, whatever its name holds:
`orderbook.errors.not_configured` (JSON's quoting, which the native decoders print too; until 2026-12-07 the
reference printed Python's repr, whose quotes and escapes the native path did not follow)."""

from __future__ import annotations

import json

import pytest

from orderbook import native
from orderbook.errors import UnknownSymbol, not_configured
from orderbook.native.check import reference_outcomes
from orderbook.venues import feed_class
from orderbook.venues.itch import encode

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())

NAMES = ["PLAIN", "A'B", 'A"B', "A'B\"C", "back\\slash", "tab\there", "bell\x07", "\x1f", "café", "日本", "\u2028"]


def _json_message(venue: str, name: str) -> bytes:
    n = json.dumps(name)
    return {
        "binance": f'{{"e":"depthUpdate","E":1,"s":{n},"U":1,"u":2,"b":[["1.0","1.0"]],"a":[]}}',
        "kraken": f'[1,{{"a":[]}},"book-10",{n}]',
        "coinbase": f'{{"type":"snapshot","product_id":{n},"bids":[["1.0","1.0"]],"asks":[]}}',
    }[venue].encode()


@pytest.mark.parametrize("venue", ["binance", "kraken", "coinbase"])
def test_a_json_venues_unknown_symbol_says_the_same_on_both_paths(venue: str) -> None:
    messages = [_json_message(venue, name) for name in NAMES]
    want = reference_outcomes(feed_class(venue)({"OTHER"}), messages)
    got = getattr(native, f"{venue.capitalize()}Feed")({"OTHER"}).on_messages(messages).by_message(len(messages))
    for name, w, g in zip(NAMES, want, got, strict=True):
        assert isinstance(w, UnknownSymbol) and isinstance(g, UnknownSymbol), (name, w, g)
        assert str(w) == str(g) and not_configured(name) in str(w), (name, str(w), str(g))


def test_itch_and_lobster_unknown_symbols_say_the_same_on_both_paths() -> None:
    for name in ("A'B\"C", "X\\Y", "PLAIN"):
        add = encode("A", locate=7, order_ref=1, side="B", shares=1, stock=name, price=100)
        stock = [encode("R", locate=7, stock=name), add]
        want = reference_outcomes(feed_class("itch")({"OTHER"}), stock)
        got = native.ItchFeed({"OTHER"}).on_messages(stock).by_message(len(stock))
        assert isinstance(want[-1], UnknownSymbol) and str(want[-1]) == str(got[-1]), (want, got)
    rows, keys = [b"34200.1,1,1,1,100,1"] * 3, [n.encode() for n in ("A'B", 'Q"', "日本")]
    want = reference_outcomes(feed_class("lobster")({"OTHER"}), rows, keys=keys)
    got = native.LobsterFeed({"OTHER"}).on_messages(rows, keys).by_message(len(rows))
    assert [str(w) for w in want] == [str(g) for g in got] and all(isinstance(w, UnknownSymbol) for w in want)
