"""A stream through the worker's pipeline, its state taken as the worker's snapshot record and read back on
either path at chosen points: what the native venues' tests compare with the all-Python run."""

from __future__ import annotations

from typing import Any

from orderbook.native.venue_windows import NativeVenueWindows
from orderbook.windows import WindowConfig
from streams import snapshots
from streams.pipeline import VenuePipeline
from tests.test_snapshot import Item

CONFIG = WindowConfig(n_events=32, n_rows=8, every_events=16)
WHERE = {"group": "g", "topic": "md.raw.x", "partition": 0}


def run(venue: str, items: list[Item], *, native: bool | None, cuts: dict[int, bool | None] | None = None) -> Any:
    """The stream through a VenuePipeline (`native` as the worker passes it); at each cut its snapshot record
    (snapshots.encode) is read back (snapshots.decode) onto the path `cuts[i]` asks for (None: the worker's
    choice, the native path where the module is on) and goes on. (windows, rejects, stats)."""
    pipe = VenuePipeline(venue, CONFIG, native=native)
    windows, rejects, news_ts = [], [], 0
    for i, item in enumerate(items):
        if cuts and i in cuts:
            _, value = snapshots.encode(WHERE["group"], WHERE["topic"], 0, pipe)
            pipe = snapshots.decode(value, **WHERE, venue=venue, config=CONFIG, max_bytes=None, native=cuts[i])
            assert isinstance(pipe.core, NativeVenueWindows) is (cuts[i] is not False)
        if item.news:
            pipe.add_news(news_ts, [item.news[0]], item.news[1])
            continue
        ws, rs = pipe.process(item.key, item.raw, 0, i)
        windows += ws
        rejects += [(r.reason, r.error, r.offset, r.index, r.value) for r in rs]
        if ws:
            news_ts = ws[-1].ts
    return windows, rejects, pipe.stats
