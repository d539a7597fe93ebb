"""A recorded stream through the worker's path, offline: `megatrading score`, the alert tables and the training
data read their windows with it (model/serving/scoring.py, model/evaluation/alerts.py,
model/training/dataset.py), so that all of them see the windows the worker makes.

    stats = WindowStats()
    for part in replay_stream("binance", records, headlines, stats=stats):
        part.windows                    # the stream's windows, in its order; `stats` counts records and rejects
    for part in replay_stream("itch", records, states=True):
        part.states["AAPL"]             # the book after each of AAPL's messages (BookStates)

On a venue the native path decodes (where it is on), NativeVenueWindows takes BATCH records a call, as the
worker's native path does, a call cut before each record a headline joins at (`_news_cuts`); otherwise a
VenueWindows takes them one at a time (process_records). Both join a headline at the first record whose clock
reaches it, and give the same windows and book states (tests/test_scoring.py, tests/test_dataset.py).

A call the native path panics on (a bug of orderbook/native that some record meets) is redone on the reference
path from the state before it, as the worker redoes such a batch (streams/partition.py), and the stream goes on
on the native path after it: the same windows and states, a WARNING naming the records.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import NamedTuple

import numpy as np

from . import native
from .book import Book
from .events import Event, Side
from .features import depth_levels
from .native.convert import native_windows, reference_windows
from .native.venue_windows import SUPPORTED, NativeVenueWindows
from .news import Headline, PendingHeadlines
from .venue_windows import VenueWindows, WindowStats, process_record
from .venues import RawRecord
from .volume_record import traded_lots
from .windows import Window, WindowConfig

log = logging.getLogger(__name__)
BATCH = 2000  # records a NativeVenueWindows.process call, as the worker's replay takes them
DEPTH_LEVELS = 5  # best levels per side a state's depth sums (windows.rs STATE_DEPTH_LEVELS)
_I64 = np.iinfo(np.int64)


class BookStates(NamedTuple):
    """One symbol's book after each of its messages that reached its window builder (every message with
    events of it, once the builder exists), in order: what the training data reads its targets from."""

    tick: int  # the builder's: what `spread` is measured in
    spread: np.ndarray  # float64, ask - bid in ticks; NaN where a side is empty
    mid2: np.ndarray  # float64, twice the mid in price units; NaN where a side is empty
    depth: np.ndarray  # float64, the sizes of the best DEPTH_LEVELS levels of both sides
    traded: np.ndarray  # int64, the lots the message traded (volume_record.traded_lots), saturated at int64
    emitted: np.ndarray  # bool, the message completed a window


class Replayed(NamedTuple):
    """A part of the stream: its windows, and where asked its book states per symbol."""

    windows: list[Window]
    states: dict[str, BookStates]


Part = list[tuple[int, RawRecord]]  # records with their index in the stream


def replay_stream(
    venue: str,
    records: Iterable[RawRecord],
    headlines: Sequence[Headline] = (),
    *,
    config: WindowConfig | None = None,
    ticks: dict[str, int] | None = None,
    states: bool = False,
    stats: WindowStats | None = None,
) -> Iterator[Replayed]:
    """The stream's windows part by part, with the worker's `config` (None: its default) and the `ticks`
    known per symbol (else the worker's rule); `states`: each part's BookStates too; `stats` (filled before
    each part is handed out): the records, events, windows and rejects, as the worker would count them."""
    stats = stats if stats is not None else WindowStats()
    pending = PendingHeadlines(headlines)
    numbered = enumerate(records)
    chunks = iter(lambda: list(islice(numbered, BATCH)), [])
    if venue not in SUPPORTED or not native.enabled():
        vw = VenueWindows(venue, config, ticks=ticks)
        for chunk in chunks:
            part = _record_by_record(vw, chunk, pending, states)
            vars(stats).update(vars(vw.stats))
            yield part
        return
    nvw = _native(NativeVenueWindows(venue, config, ticks=ticks), states)
    for chunk in chunks:
        try:
            cuts = _news_cuts(nvw, chunk, pending)
        except BaseException as err:  # the clocks' decode met the bug a `process` call would meet
            if not native.is_panic(err):
                raise
            nvw, part = _on_reference_path(nvw.__getstate__(), chunk, pending, err, states)
            vars(stats).update(vars(nvw.stats))
            yield part
            continue
        for due, records_ in cuts:
            for h in due:
                nvw.add_news(h.ts, h.symbols, h.headline)
            nvw, part = _native_part(nvw, records_, pending, states)
            vars(stats).update(vars(nvw.stats))
            yield part


def _native(nvw: NativeVenueWindows, states: bool) -> NativeVenueWindows:
    if states:
        nvw.keep_states()
    return nvw


def _news_cuts(nvw: NativeVenueWindows, chunk: Part, pending: PendingHeadlines) -> list[tuple[list[Headline], Part]]:
    """`chunk` cut before each record a headline joins at, each part with the headlines to join before it.
    A record's clock is its `ts` where it has one, else the latest time of its events (process_records'
    rule), which `NativeVenueWindows.clocks` finds on a copy of the feed: a few milliseconds a chunk, and
    none once no headline is left."""
    if pending.next_ts() is None:
        return [([], chunk)]
    keys = [r.key for _, r in chunk] if nvw.keyed else None
    clocks = nvw.clocks([r.value for _, r in chunk], keys)
    for j, (_, rec) in enumerate(chunk):
        if rec.ts is not None:
            clocks[j] = rec.ts
    out: list[tuple[list[Headline], Part]] = []
    due: list[Headline] = []
    start = 0
    while (next_ts := pending.next_ts()) is not None:
        # the first record from `start` whose clock reaches the next headline (NO_CLOCK never does); never
        # `start` itself after a cut, as every headline up to its clock has joined
        hits = np.flatnonzero(clocks[start:] >= next_ts)
        if not len(hits):
            break
        j = start + int(hits[0])
        if j > start:
            out.append((due, chunk[start:j]))
        due, start = pending.due(int(clocks[j])), j
    out.append((due, chunk[start:]))
    return out


def _native_part(
    nvw: NativeVenueWindows, part: Part, pending: PendingHeadlines, states: bool
) -> tuple[NativeVenueWindows, Replayed]:
    """The part through `nvw` (one call); where the compiled code panics, the part again on the reference
    path from the state before."""
    before = nvw.__getstate__()  # a copy of the compiled state (under a millisecond for a few books)
    try:
        keys = [r.key for _, r in part] if nvw.keyed else None
        windows = nvw.process([r.value for _, r in part], [(0, i) for i, _ in part], keys=keys).windows
    except BaseException as err:
        if not native.is_panic(err):
            raise
        return _on_reference_path(before, part, pending, err, states)
    kept = nvw.take_states() if states else {}
    ticks = {name: nvw.builders[name].tick for name in kept}
    return nvw, Replayed(windows, {name: BookStates(ticks[name], **s) for name, s in kept.items()})


def _on_reference_path(
    state: dict, part: Part, pending: PendingHeadlines, err: BaseException, states: bool
) -> tuple[NativeVenueWindows, Replayed]:
    """Records the native path panicked on, on the reference path from the native `state` before them
    (the headlines joined by process_records' rule: none falls inside a part, a whole chunk's do), then
    the state back on the native path for the next records."""
    log.warning("the native %s path panicked on records %d-%d (%s: a bug of orderbook/native, report them): "
                "they are replayed on the reference path", state["venue"], part[0][0], part[-1][0], err)  # fmt: skip
    vw = reference_windows(state)
    replayed = _record_by_record(vw, part, pending, states)
    return _native(native_windows(vw), states), replayed


def _record_by_record(vw: VenueWindows, part: Part, pending: PendingHeadlines, states: bool) -> Replayed:
    """The part through `vw` a record at a time; where asked, the book states read off its Python books."""
    windows: list[Window] = []
    kept: dict[str, list[tuple[float, float, float, int, bool]]] = {}
    ticks: dict[str, int] = {}  # the builder's, as it was: a decoder bug may have dropped it since
    for i, rec in part:
        done = process_record(vw, i, rec, pending)
        windows += done.windows
        if not states or not done.events:
            continue
        by_symbol: dict[str, list[Event]] = {}
        for e in done.events:
            by_symbol.setdefault(e.symbol, []).append(e)
        emitted = {w.symbol for w in done.windows}
        for name, events in by_symbol.items():
            builder = vw.builders.get(name)
            if builder is not None:
                ticks[name] = builder.tick
                state = _book_state(vw.feed.books[name], builder.tick, events, name in emitted)
                kept.setdefault(name, []).append(state)
    out = {}
    for name, rows in kept.items():
        spread, mid2, depth, traded, emitted_ = (np.array(c) for c in zip(*rows, strict=True))
        out[name] = BookStates(ticks[name], spread.astype(np.float64), mid2.astype(np.float64),
                               depth.astype(np.float64), traded.astype(np.int64), emitted_.astype(bool))  # fmt: skip
    return Replayed(windows, out)


def _book_state(book: Book, tick: int, events: list[Event], emitted: bool) -> tuple[float, float, float, int, bool]:
    """A Python book's state as windows.rs `BookStates::record` reads a native one."""
    spread, mid2 = book.spread(), book.mid2()
    depth = depth_levels(book, Side.BID, DEPTH_LEVELS) + depth_levels(book, Side.ASK, DEPTH_LEVELS)
    traded = min(max(traded_lots(events), _I64.min), _I64.max)
    return (
        np.nan if spread is None else spread / tick,
        np.nan if mid2 is None else float(mid2),
        float(depth),
        traded,
        emitted,
    )


__all__ = ["BATCH", "BookStates", "Replayed", "replay_stream"]
