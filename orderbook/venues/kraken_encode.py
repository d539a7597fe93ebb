"""Kraken websocket v1 messages written as the v2 API sends them, to test and fuzz the v2 decoding on real flow.

Kraken's v2 API ("Spot Websockets (v2)") carries the same books as v1 in objects: `{"channel": "book", "type":
"snapshot"|"update", "data": [{"symbol", "asks": [{"price", "qty"}], "bids": [...], "checksum", "timestamp"}]}`,
prices and sizes as JSON numbers (written here as their v1 text, unquoted: the same decimals, so the same
checksums), times in RFC 3339; trades as `{"channel": "trade", "data": [{"symbol", "side", "price", "qty",
"timestamp"}]}`. The depth a v1 channel names (`book-1000`) is told by a subscribe response per pair, as v2
tells it. Pure: no I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def _iso(seconds: str) -> str:
    """v1's "1618678134.187685" (seconds) as RFC 3339, every printed decimal kept."""
    whole, _, frac = seconds.partition(".")
    return datetime.fromtimestamp(int(whole), UTC).strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _v2_levels(rows: list[list[str]]) -> str:
    # v2 prints prices and sizes as JSON numbers: written as their text, unquoted
    return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q, *_ in rows) + "]"


def as_v2(messages: list[bytes]) -> list[bytes]:
    """The v1 capture as the v2 API sends it: a subscribe response naming the depth per pair, then each book
    message as an object (numbers unquoted, times in RFC 3339, the checksum where v1 had one), trades as v2
    trades; the rest as it was."""
    out: list[bytes] = []
    depths: set[str] = set()
    for raw in messages:
        msg = json.loads(raw) if raw[:1] == b"[" else None
        if not isinstance(msg, list) or not str(msg[-2]).startswith(("book-", "trade")):
            out.append(raw)
            continue
        pair, channel = msg[-1], msg[-2]
        if channel == "trade":
            sides = {"b": "buy", "s": "sell"}
            trades = ",".join(f'{{"symbol":{json.dumps(pair)},"side":"{sides[t[3]]}","price":{t[0]},"qty":{t[1]},'
                              f'"timestamp":"{_iso(t[2])}"}}' for t in msg[1])  # fmt: skip
            out.append(f'{{"channel":"trade","data":[{trades}]}}'.encode())
            continue
        if pair not in depths:
            depths.add(pair)
            result = {"channel": "book", "symbol": pair, "depth": int(channel[5:]), "snapshot": True}
            out.append(json.dumps({"method": "subscribe", "result": result, "success": True}).encode())
        merged: dict[str, Any] = {}
        for payload in msg[1:-2]:
            merged.update(payload)
        snapshot = "as" in merged
        rows = [r for k in ("as", "bs", "a", "b") for r in merged.get(k, [])]
        ts = max((Decimal(r[2]) for r in rows), default=None)
        item = (f'{{"symbol":{json.dumps(pair)},"asks":{_v2_levels(merged.get("as" if snapshot else "a", []))},'
                f'"bids":{_v2_levels(merged.get("bs" if snapshot else "b", []))}'
                + (f',"checksum":{merged["c"]}' if "c" in merged else "")
                + (f',"timestamp":"{_iso(str(ts))}"' if ts is not None else "") + "}")  # fmt: skip
        kind = "snapshot" if snapshot else "update"
        out.append(f'{{"channel":"book","type":"{kind}","data":[{item}]}}'.encode())
    return out
