"""`md.news` records: the one parser of a headline record, and headlines waiting for a replayed stream's clock.

A record's value is JSON: `{"ts": ns, "symbols": [str, ...], "headline": str, "source": str}`; `ts` is on
the clock of the streams it concerns (ns since midnight for ITCH/LOBSTER, since the epoch for the crypto
venues). The worker parses what it reads from the topic with `parse_news`, and `megatrading score` each
line of a news file (one record per line), so both accept and refuse the same records. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from .errors import DecodeError, is_text
from .numbers import INT64_MAX


class Headline(NamedTuple):
    ts: int  # ns, on the stream's clock
    symbols: list[str]
    headline: str


def parse_news(value: bytes) -> Headline:
    """An `md.news` record; DecodeError (reason "malformed") when it is not that layout: not JSON (or
    nested past the parser's depth), a field missing, `ts` not an integer on an int64 ns clock (1e999
    is an infinity; past int64 no stream's clock reaches it), `symbols` not a list of strings or
    `headline` not a string, a string that is not Unicode text (a lone surrogate). Nothing else is
    raised: the worker parses in its heartbeat timer, which a raised error would end (an infinite `ts`
    and a deep nesting did so until 2026-12-02)."""
    try:
        doc = json.loads(value)
        ts, symbols, headline = int(doc["ts"]), doc["symbols"], doc["headline"]
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as err:
        raise DecodeError(f"news record is not the md.news JSON layout: {type(err).__name__}: {err}",
                          venue="news") from None  # fmt: skip
    if not -INT64_MAX <= ts <= INT64_MAX:
        raise DecodeError(f"news record: ts {ts} does not fit int64 ns", venue="news")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols) or not isinstance(headline, str):
        raise DecodeError("news record: symbols must be a list of strings and headline a string", venue="news")
    # the compiled window builders raised on a lone surrogate where the headline joined a window
    if not all(map(is_text, (headline, *symbols))):
        raise DecodeError("news record: a headline or symbol that is not Unicode text (a lone surrogate)", venue="news")
    return Headline(ts, symbols, headline)


class PendingHeadlines:
    """Headlines waiting for a replayed stream's clock to reach them, handed out once each, oldest first
    (headlines of one time in the order given)."""

    def __init__(self, headlines: Iterable[Headline]) -> None:
        self._waiting = sorted(headlines, key=lambda h: h.ts)
        self._next = 0

    def next_ts(self) -> int | None:
        """The time of the next headline not handed out yet; None when none is left."""
        return self._waiting[self._next].ts if self._next < len(self._waiting) else None

    def due(self, now: int) -> list[Headline]:
        """The headlines at or before `now` not handed out yet."""
        start = end = self._next
        while end < len(self._waiting) and self._waiting[end].ts <= now:
            end += 1
        self._next = end
        return self._waiting[start:end]
