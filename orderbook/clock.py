"""Venue times as a person reads them. Venues stamp nanoseconds two ways: since the Unix epoch
(Binance, Coinbase, Kraken) or since the venue's own midnight (ITCH, LOBSTER); a stamp under a day
can only be the second kind."""

from __future__ import annotations

import datetime as dt

DAY_NS = 86_400 * 10**9


def clock(ns: int) -> str:
    """`2024-08-08 12:00:00.123` (UTC), `09:30:00.123` on a venue's day clock, `-` for none."""
    if ns <= 0:
        return "-"
    ms = f".{ns % 10**9 // 10**6:03d}"
    if ns < DAY_NS:
        s = ns // 10**9
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{ms}"
    return dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + ms


def clock_unit(ns: int) -> str:
    """What `clock(ns)` shows: the venue's clock or UTC."""
    return "venue clock" if 0 < ns < DAY_NS else "UTC"


def span(start_ns: int, end_ns: int) -> str:
    """`12:00:01.250-12:00:03.500 UTC (2.25 s)`: a window's events as a person reads them; the end
    drops the date it shares with the start."""
    if end_ns <= 0:
        return "-"
    start, end = clock(start_ns), clock(end_ns)
    if start[:11] == end[:11] and len(end) > 12:  # same UTC day: show the day once
        end = end[11:]
    seconds = max(end_ns - start_ns, 0) / 1e9
    length = f"{seconds:.3g} s" if seconds >= 0.001 else f"{max(end_ns - start_ns, 0) / 1e3:.3g} us"
    return f"{start}-{end} {clock_unit(end_ns)} ({length})"
