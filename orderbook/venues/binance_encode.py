"""Binance spot messages written in Binance's own wire format, for simulated order flow.

The inverse of what `BinanceFeed` decodes (see `orderbook/venues/binance.py`): bytes that a
Binance websocket client or the REST depth endpoint would have produced, so a simulated day
travels the same path as a recorded one (`md.raw.binance`, `megatrading book`). Pure: no I/O.

Field names, their order and the string formats follow the Binance spot API docs ("Diff.
Depth Stream", "Trade Streams", "Order Book" REST) and the hftbacktest captures in
`shared/data/binance-hftbacktest` (`{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",
"E":1723161255208,"s":"BTCUSDT","U":...,"u":...,"b":[["61737.63000000","0.00000000"]],"a":[...]}}`):
prices and quantities are decimal strings with 8 places (integers here are in 1e-8 units, as
`BinanceFeed` parses them), times are integer milliseconds, JSON without spaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..events import Side
from ..numbers import format_fixed

DECIMALS = 8  # BinanceFeed's units: 1e-8 quote per price unit, 1e-8 base per lot
MS = 1_000_000  # ns per ms
DEPTH_STREAM = "depth@100ms"

Level = tuple[int, int]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _rows(levels: Iterable[Level]) -> list[list[str]]:
    """[(price, size)] in 1e-8 units -> Binance's `[["61837.63000000", "3.78826000"], ...]`."""
    return [[format_fixed(p, DECIMALS), format_fixed(q, DECIMALS)] for p, q in levels]


def _stream(symbol: str, name: str, data: dict[str, Any]) -> bytes:
    """The combined-stream wrapper (`/stream?streams=...`): stream names are lower case."""
    return _dumps({"stream": f"{symbol.lower()}@{name}", "data": data})


def snapshot_message(symbol: str, bids: Sequence[Level], asks: Sequence[Level], last_update_id: int) -> bytes:
    """A REST depth snapshot (`GET /api/v3/depth`) in the wrapper `BinanceFeed` expects:
    `{"symbol": "BTCUSDT", "snapshot": {"lastUpdateId": ..., "bids": [...], "asks": [...]}}`.

    Bids best (highest) first and asks best (lowest) first, as the REST endpoint sorts them.
    """
    body = {
        "lastUpdateId": last_update_id,
        "bids": _rows(sorted(bids, key=lambda lv: -lv[0])),
        "asks": _rows(sorted(asks)),
    }
    return _dumps({"symbol": symbol, "snapshot": body})


def depth_update(
    symbol: str, changes: Sequence[tuple[int, int, int]], first_id: int, last_id: int, ts_ns: int
) -> bytes:
    """A `depthUpdate` (diff depth, `<symbol>@depth@100ms`) in the combined-stream wrapper.

    `changes` are `(side, price, size)` with side 1 (bid) / -1 (ask) as `orderbook.events.Side`
    and the absolute size at that price (0 removes the level). `U`/`u` are `first_id`/`last_id`;
    the event time `E` is `ts_ns` truncated to the millisecond.
    """
    if first_id > last_id:
        raise ValueError(f"first update id {first_id} > last update id {last_id}")
    bids: list[Level] = []
    asks: list[Level] = []
    for side, price, size in changes:
        if side == Side.BID:
            bids.append((price, size))
        elif side == Side.ASK:
            asks.append((price, size))
        else:
            raise ValueError(f"side must be 1 (bid) or -1 (ask), got {side!r}")
    data = {
        "e": "depthUpdate",
        "E": ts_ns // MS,
        "s": symbol,
        "U": first_id,
        "u": last_id,
        "b": _rows(bids),
        "a": _rows(asks),
    }
    return _stream(symbol, DEPTH_STREAM, data)


def trade_message(
    symbol: str,
    trade_id: int,
    price: int,
    size: int,
    buyer_is_maker: bool,
    ts_ns: int,
    *,
    event_ts_ns: int | None = None,
) -> bytes:
    """A `trade` event (`<symbol>@trade`) in the combined-stream wrapper.

    `m` (buyer is maker) true means the resting order was the bid and the aggressor sold.
    The trade time `T` is `ts_ns` in ms; the event time `E` (when Binance pushed it, often a
    millisecond later) is `event_ts_ns` where given, else the trade time. `M` ("ignore" in
    the docs) is always true in the captures and is written so.
    """
    ms = ts_ns // MS
    data = {
        "e": "trade",
        "E": ms if event_ts_ns is None else event_ts_ns // MS,
        "s": symbol,
        "t": trade_id,
        "p": format_fixed(price, DECIMALS),
        "q": format_fixed(size, DECIMALS),
        "T": ms,
        "m": bool(buyer_is_maker),
        "M": True,
    }
    return _stream(symbol, "trade", data)
