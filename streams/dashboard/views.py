"""A forecast record as the page draws it: one point of a book's series, in human units.

A point carries what the book was at its window and its forecast for `h` = 10 book messages ahead
(`fc_*`). The page draws each forecast at the next point, where it is checked: a book's windows come
every 32 event tokens (WindowConfig), so the next forecast's realized spread and mid are the first ones
past that horizon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from orderbook.clock import clock
from streams.dashboard.units import Units

H = 10  # the horizon drawn: docs/design.md, the forecast record (h = 10 and 100 messages)
QUANTILES = (10, 50, 90)


def _f(record: Mapping[str, Any], field: str) -> float:
    return float(record[field])


def realized(record: Mapping[str, Any], units: Units) -> dict[str, Any]:
    """What the book was at the record's window: best prices (exact text and float), mid and spread."""
    bid, ask = int(record["best_bid"]), int(record["best_ask"])
    two_sided = bid > 0 and ask > 0
    out: dict[str, Any] = {
        "venue": record["venue"],
        "symbol": record["symbol"],
        "window": int(record["window"]),
        "seq": int(record["seq"]),
        "t": int(record["event_ts"]) / 1e9,
        "bid": units.price(bid) if bid > 0 else None,
        "ask": units.price(ask) if ask > 0 else None,
        "mid": units.price_float((bid + ask) / 2) if two_sided else None,
        "mid_text": units.price(Decimal(bid + ask) / 2) if two_sided else None,  # exact, half a unit kept
        "spread": units.price(ask - bid) if two_sided else None,
        "spread_px": units.price_float(ask - bid) if two_sided else None,
        "spread_ticks": (ask - bid) / units.tick if two_sided and units.tick else None,
        "score": _f(record, "anomaly_score"),
        "nll": _f(record, "anomaly_nll"),
        "model": record.get("model", ""),
        "reason": record.get("reason", ""),
    }
    return out


def forecast(record: Mapping[str, Any], units: Units) -> dict[str, float | None]:
    """The record's own h-message forecast in the units of the realized series: spread and mid as prices
    (ticks times the tick; mid: where the mid would be), depth in the venue's size unit. The page draws it
    at the next point (module docstring); None where it cannot be drawn (no tick known, a side empty)."""
    out: dict[str, float | None] = {}
    tick_px = units.price_float(units.tick) if units.tick else None
    bid, ask = int(record["best_bid"]), int(record["best_ask"])
    mid = units.price_float((bid + ask) / 2) if bid > 0 and ask > 0 else None
    for q in QUANTILES:
        spread, move = _f(record, f"spread_q{q}_h{H}"), _f(record, f"mid_q{q}_h{H}")
        out[f"fc_spread_q{q}"] = spread * tick_px if tick_px else None
        out[f"fc_mid_q{q}"] = mid + move * tick_px if tick_px and mid is not None else None
        out[f"fc_depth_q{q}"] = units.size_float(_f(record, f"depth_q{q}_h{H}"))
    return out


def point(record: Mapping[str, Any], units: Units) -> dict[str, Any]:
    """Realized and forecast; a NaN or infinite value as None (JSON has no NaN: a browser refuses it)."""
    out = realized(record, units) | forecast(record, units)
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


def series(records: Sequence[Mapping[str, Any]], units: Units) -> list[dict[str, Any]]:
    """Points of a book's records, oldest first."""
    return [point(r, units) for r in records]


def window(stored: Mapping[str, Any], units: Units) -> dict[str, Any]:
    """An alert's window (streams/alert_window.py's JSON) as the page shows it: its events with their
    time as a clock (`orderbook.clock.clock`), kinds and sides by name, prices in ticks from the mid as
    the window holds them; its book series per row (mid as a price, spread in ticks and as a price,
    top-5 depth per side in the venue's size unit); the most surprising event's index and the drivers."""
    cols = stored["events"]["columns"]
    events = []
    for i, row in enumerate(stored["events"]["rows"]):
        e = dict(zip(cols, row, strict=True))
        events.append({"i": i, "time": clock(int(e["ts"])), **e})
    scols = stored["series"]["columns"]
    tick_px = units.price_float(units.tick) if units.tick else None
    rows = []
    for i, row in enumerate(stored["series"]["rows"]):
        r = dict(zip(scols, row, strict=True))
        valid = bool(r.get("valid", 1))
        spread = r.get("spread_ticks")
        rows.append({
            "row": i - len(stored["series"]["rows"]) + 1,  # 0: the window's last message, -1 the one before...
            "mid": units.price_float(r["mid"]) if valid and "mid" in r else None,
            "spread_ticks": spread if valid else None,
            "spread_px": spread * tick_px if valid and spread is not None and tick_px else None,
            "depth_bid_5": units.size_float(math.expm1(r["log_depth_bid_5"])) if "log_depth_bid_5" in r else None,
            "depth_ask_5": units.size_float(math.expm1(r["log_depth_ask_5"])) if "log_depth_ask_5" in r else None,
        })  # fmt: skip
    return {
        "venue": stored["venue"],
        "symbol": stored["symbol"],
        "window": stored["window"],
        "span": [clock(int(stored["start_ts"])), clock(int(stored["ts"]))],
        "reason": stored.get("reason", ""),
        "model": stored.get("model", ""),
        "events": events,
        "series": rows,
        "surprising": stored.get("surprising"),
        "drivers": stored.get("drivers", []),
        "news": [{"time": clock(int(ts)), "headline": text} for ts, text in stored.get("news", [])],
    }


def levels(stored: Mapping[str, Any], units: Units, now_ns: int) -> dict[str, Any]:
    """A book's published levels (`mt:book`, streams/sink.py) as the page's ladder shows them: each side best
    first, with its price as the best bid and ask are shown (`Units.price`, exact), its size and the size
    summed from the best level down (`Units.size`, exact); the book's last event time, and how long ago
    the worker wrote it (`age_s`, by this server's clock)."""

    def side(rows: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
        out, total = [], 0
        for price, size in rows:
            total += int(size)
            out.append({"price": units.price(int(price)), "size": units.size(int(size)), "cum": units.size(total)})
        return out

    return {
        "window": int(stored["window"]),
        "seq": int(stored["seq"]),
        "t": int(stored["ts"]) / 1e9,
        "time": clock(int(stored["ts"])),
        "age_s": round((now_ns - int(stored["emitted_ts"])) / 1e9, 3),
        "bids": side(stored["bids"]),
        "asks": side(stored["asks"]),
    }
