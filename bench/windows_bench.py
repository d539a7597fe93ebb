"""Features + windows per message: the Python WindowBuilder against the native one, same events, one run.

Issue 12 puts features + windows at a third of a worker's per-message work. This times that part
alone, on real events, along four paths side by side:

- `python push`: `orderbook.windows.WindowBuilder.push(book, events)` with `FeatureState`, the
  reference, on `orderbook.book` books;
- `native push, py book`: `orderbook.native._core.WindowBuilder.push` on the same Python books (what
  a worker that keeps the Python feeds would call): per message, the events are read from their
  `Event` objects and the book through its methods;
- `native push, native book`: the same on native `L2Book` / `L3Book`s, read in place;
- `native batch`: `push_batch(columns, native_book)`, `--batch` messages per call, the events as
  numpy columns: the call also applies them to the book (the other paths' books are applied
  outside the timed part, so this column does more work than the others).

The push paths time each `push` call alone (perf_counter_ns around it; the books are brought up
to date outside). Every path must emit the same number of windows (checked). WindowConfig: the
worker's defaults (`streams.config.Settings().window`).

Workload (pre-decoded once by the reference feeds, each symbol's messages from the moment its tick
is known, as `VenueWindows` starts a builder): the six Binance captures of
../shared/data/binance-hftbacktest (depth diffs, trades; L2 books with the REST snapshot's 1,000
levels a side) and a simulated ITCH day (model/sim/itch_day.py, L3 books). Passes are interleaved
(path after path, `--passes` times); the best pass of each path is reported.

    .venv/bin/python bench/windows_bench.py [--data DIR] [--passes P] [--batch B] [--itch-messages N] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.sim.itch_day import itch_day_stream  # noqa: E402
from orderbook import native  # noqa: E402
from orderbook.book import L2Book, L3Book  # noqa: E402
from orderbook.errors import FeedError  # noqa: E402
from orderbook.events import Event, Side  # noqa: E402
from orderbook.features import FeatureState  # noqa: E402
from orderbook.venues import feed_class  # noqa: E402
from orderbook.windows import WindowBuilder, WindowConfig  # noqa: E402
from streams.config import Settings  # noqa: E402

BINANCE = [
    "spot_btcusdt_20240808.gz",
    "spot_ethusdt_20240808.gz",
    "usdm_btcusdt_20240808.gz",
    "usdm_ethusdt_20240808.gz",
    "cm_btcusd_perp_20240808.gz",
    "cm_ethusd_perp_20240808.gz",
]
PATHS = ("python push", "native push, py book", "native push, native book", "native batch")


@dataclass
class Stream:
    """One symbol's messages from its builder's start, and its book at that start."""

    name: str
    tick: int
    start: L2Book | L3Book
    messages: list[list[Event]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(len(m) for m in self.messages)


def decode(name: str, venue: str, raws: Any, limit: int | None) -> list[Stream]:
    """Each symbol's messages through the reference feed, from the first one after which its tick is
    known (when VenueWindows starts its builder), and its book just before that message. That book
    comes from a shadow book per symbol that only the events reach (tests/test_native_windows.py
    holds such a book equal to the feed's on every capture)."""
    feed = feed_class(venue)()
    streams: dict[str, Stream] = {}
    shadows: dict[str, L2Book | L3Book] = {}
    n = 0
    for raw in raws:
        try:
            events = feed.on_message(raw)
        except FeedError:
            continue
        mine: dict[str, list[Event]] = {}
        for e in events:
            mine.setdefault(e.symbol, []).append(e)
        for sym, evs in mine.items():
            book = feed.books.get(sym)
            if book is None:
                continue
            shadow = shadows.setdefault(sym, type(book)(venue, sym))
            s = streams.get(sym)
            if s is None:
                tick = feed.window_tick(book)
                if tick is not None:
                    s = streams[sym] = Stream(f"{name} {sym}", tick, copy.deepcopy(shadow))
            for e in evs:
                shadow.apply(e)
            if s is not None:
                s.messages.append(evs)
                n += 1
        if limit is not None and n >= limit:
            break
    return list(streams.values())


def native_copy(book: L2Book | L3Book) -> Any:
    if isinstance(book, L2Book):
        nb = native.L2Book(book.venue, book.symbol)
        for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
            for price, size in levels.items():
                nb.set_level(int(side), price, size)
        return nb
    nb = native.L3Book(book.venue, book.symbol)
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        for price in levels:
            for oid, size in book.queue(side, price):
                nb.add(oid, int(side), price, size)
    return nb


def columns(messages: list[list[Event]], first: int = 0) -> dict[str, np.ndarray]:
    rows = [(m, e) for m, evs in enumerate(messages, start=first) for e in evs]
    return {
        "kind": np.array([e.kind for _, e in rows], np.int8),
        "side": np.array([e.side for _, e in rows], np.int8),
        "flags": np.array([e.flags for _, e in rows], np.int16),
        "ts": np.array([e.ts for _, e in rows], np.int64),
        "seq": np.array([e.seq for _, e in rows], np.int64),
        "price": np.array([e.price for _, e in rows], np.int64),
        "size": np.array([e.size for _, e in rows], np.int64),
        "order_id": np.array([e.order_id for _, e in rows], np.uint64),
        "new_order_id": np.array([e.new_order_id for _, e in rows], np.uint64),
        "msg": np.array([m for m, _ in rows], np.int64),
    }


def apply_native(book: Any, c: dict[str, np.ndarray]) -> None:
    if isinstance(book, native.L2Book):
        book.apply(c["kind"], c["side"], c["price"], c["size"])
    else:
        book.apply(c["kind"], c["order_id"], c["side"], c["price"], c["size"], c["new_order_id"])


@dataclass
class Prepared:
    """A stream with everything each path needs made before timing."""

    stream: Stream
    per_message: list[dict[str, np.ndarray]]  # each message's columns (to bring native books up to date)
    batches: list[dict[str, np.ndarray]]


def prepare(s: Stream, batch: int) -> Prepared:
    per = [columns([m]) for m in s.messages]
    batches = [columns(s.messages[i : i + batch], i) for i in range(0, len(s.messages), batch)]
    return Prepared(s, per, batches)


def run_push(p: Prepared, wb: Any, native_book: bool) -> tuple[int, int]:
    """(ns inside `wb.push`, windows) over the stream; the book (a Python one, or a native one) is
    brought up to date before each push, outside the timed part."""
    s = p.stream
    book = native_copy(s.start) if native_book else copy.deepcopy(s.start)
    push, clock = wb.push, time.perf_counter_ns
    spent = windows = 0
    for events, c in zip(s.messages, p.per_message, strict=True):
        if native_book:
            apply_native(book, c)
        else:
            for e in events:
                book.apply(e)
        t0 = clock()
        w = push(book, events)
        spent += clock() - t0
        windows += w is not None
    return spent, windows


def python_builder(s: Stream, cfg: WindowConfig) -> WindowBuilder:
    return WindowBuilder(cfg, FeatureState(tick=s.tick), "", s.name)


def native_builder(s: Stream, cfg: WindowConfig) -> Any:
    return native._core.WindowBuilder(cfg, None, "", s.name, tick=s.tick)


def run_native_batch(p: Prepared, cfg: WindowConfig) -> tuple[int, int]:
    s = p.stream
    book, wb = native_copy(s.start), native_builder(s, cfg)
    t0 = time.perf_counter_ns()
    windows = sum(len(wb.push_batch(c, book)["ts"]) for c in p.batches)
    return time.perf_counter_ns() - t0, windows


def workload(data: Path, quick: bool, itch_messages: int) -> dict[str, list[Stream]]:
    limit = 3000 if quick else None
    out: dict[str, list[Stream]] = {"binance": [], "itch": []}
    folder = data / "binance-hftbacktest"
    if not folder.is_dir():
        sys.exit(f"no {folder}: the Binance captures (see ../shared/data/SOURCES.md); --data names the folder")
    cls = feed_class("binance")
    for name in BINANCE[:1] if quick else BINANCE:
        raws = (rec.raw for rec in cls.read_capture(folder / name))
        out["binance"] += decode(name.split("_2024")[0], "binance", raws, limit)
    stream = itch_day_stream(seed=12, n=itch_messages, symbols=("AAPL", "MSFT", "SPY", "QQQ"))
    out["itch"] += decode("itch", "itch", stream.messages, None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1024, help="messages per push_batch call")
    ap.add_argument("--itch-messages", type=int, default=60_000)
    ap.add_argument("--quick", action="store_true", help="a smoke run: one capture, 3k messages, one pass")
    args = ap.parse_args(argv)
    if args.quick:
        args.passes, args.itch_messages = 1, 3000
    if not native.available():
        sys.exit(f"the native module is not built: {native.describe()}")
    cfg = Settings().window
    print(f"WindowConfig: {cfg}; {args.passes} passes, best kept; push_batch: {args.batch} messages a call")
    streams = workload(args.data, args.quick, args.itch_messages)
    runs: dict[str, Callable[[Prepared], tuple[int, int]]] = {
        PATHS[0]: lambda p: run_push(p, python_builder(p.stream, cfg), native_book=False),
        PATHS[1]: lambda p: run_push(p, native_builder(p.stream, cfg), native_book=False),
        PATHS[2]: lambda p: run_push(p, native_builder(p.stream, cfg), native_book=True),
        PATHS[3]: lambda p: run_native_batch(p, cfg),
    }
    for venue, group in streams.items():
        prepared = [prepare(s, args.batch) for s in group]
        messages = sum(len(s.messages) for s in group)
        events = sum(s.events for s in group)
        best = dict.fromkeys(PATHS, float("inf"))
        counts: dict[str, int] = {}
        for _ in range(args.passes):
            for path, run in runs.items():
                spent = wins = 0
                for p in prepared:
                    ns, w = run(p)
                    spent, wins = spent + ns, wins + w
                best[path] = min(best[path], spent / 1e9)
                counts[path] = wins
        if len(set(counts.values())) != 1:
            sys.exit(f"{venue}: the paths emitted different numbers of windows: {counts}")
        windows = counts[PATHS[0]]
        print(f"\n{venue}: {len(group)} symbols, {messages:,} messages, {events:,} events, {windows:,} windows")
        print(f"{'path':<26} {'seconds':>9} {'messages/s':>12} {'us/message':>11} {'x python':>9}")
        for path in PATHS:
            sec = best[path]
            print(
                f"{path:<26} {sec:>9.3f} {messages / sec:>12,.0f} {sec / messages * 1e6:>11.2f} "
                f"{best[PATHS[0]] / sec:>8.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
