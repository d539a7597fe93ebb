"""Offline batch scoring of a recorded or simulated stream (`megatrading score`): the forecasts the worker
would publish, one row per window.

    windows, stats = stream_windows("itch", capture_records("itch", [path]), read_news("news.jsonl"))
    rows = score_windows(windows, BaselineForecaster(), batch=256)

Records go through the worker's own path (`stream_windows`: orderbook.venue_windows or its native twin, the
same size check, decoder, tick rule and rejects; `stats` counts what the worker would dead-letter), with
the worker's default WindowConfig; then `forecaster.predict` in batches. A forecaster's prediction of a
window does not depend on the batch it is in (the Forecaster contract), so the rows equal the worker's
forecasts.

Headlines (an `md.news` JSONL file, one record per line, read by the worker's parser) join a symbol's
windows before the first record whose events are at or after the headline's time (a file's records have
no clock of their own): the order in which a live worker that keeps up would see them.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np

from model.serving.forecaster import PREDICTION_FIELDS, Forecaster, Prediction
from orderbook import native
from orderbook.errors import DecodeError
from orderbook.native.convert import native_windows, reference_windows
from orderbook.native.venue_windows import SUPPORTED, NativeVenueWindows
from orderbook.news import Headline, PendingHeadlines, parse_news
from orderbook.venue_windows import WindowStats, process_record, process_records, replay_windows
from orderbook.venues import RawRecord
from orderbook.windows import Window

T = TypeVar("T")
log = logging.getLogger(__name__)
NATIVE_BATCH = 2000  # records a NativeVenueWindows.process call, as the worker's replay takes them

COLUMNS = ("symbol", "event_ts", "seq", "anomaly_score", *(f for f in PREDICTION_FIELDS if f != "anomaly_score"))
_PREDICTED = list(COLUMNS[3:])


def read_news(path: str | Path) -> list[Headline]:
    """An `md.news` JSONL file (`megatrading simulate` writes news.jsonl), by time; ValueError naming the
    line of a record the worker's parser (orderbook.news.parse_news) refuses. Blank lines are skipped."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_news(line))
            except DecodeError as err:
                raise ValueError(f"{path}:{n}: not an md.news record ({err})") from None
    out.sort(key=lambda h: h.ts)
    return out


def stream_windows(
    venue: str, records: Iterable[RawRecord], headlines: Sequence[Headline] = ()
) -> tuple[Iterator[Window], WindowStats]:
    """A recorded stream's windows, as the worker makes them, and the stats that count its records and
    rejects (filled as the windows are read). On a venue the native path decodes (and where it is on),
    NativeVenueWindows takes NATIVE_BATCH records a call, as the worker's native path does, a call cut before
    each record a headline joins at (`_news_cuts`); otherwise replay_windows takes them one at a time
    (process_records). Both join a headline at the first record whose clock reaches it, and give the same
    windows (tests/test_native_venue_windows.py, tests/test_scoring.py).

    A call the native path panics on (a bug of orderbook/native that some record meets) is redone on the
    reference path from the state before it, as the worker redoes such a batch (streams/partition.py), and
    the stream goes on on the native path after it: the same windows, a WARNING naming the records."""
    if venue not in SUPPORTED or not native.enabled():
        vw = replay_windows(venue)
        return (w for done in process_records(vw, records, headlines) for w in done.windows), vw.stats
    stats = WindowStats()

    def windows() -> Iterator[Window]:
        nvw = NativeVenueWindows(venue)
        pending = PendingHeadlines(headlines)
        for chunk in _batched(enumerate(records), NATIVE_BATCH):
            try:
                parts = _news_cuts(nvw, chunk, pending)
            except BaseException as err:  # the clocks' decode met the bug a `process` call would meet
                if not native.is_panic(err):
                    raise
                nvw, out = _on_reference_path(nvw.__getstate__(), chunk, pending, err)
                vars(stats).update(vars(nvw.stats))
                yield from out
                continue
            for due, part in parts:
                for h in due:
                    nvw.add_news(h.ts, h.symbols, h.headline)
                nvw, out = _native_part(nvw, part, pending)
                vars(stats).update(vars(nvw.stats))
                yield from out

    return windows(), stats


Part = list[tuple[int, RawRecord]]  # records with their index in the stream


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
    nvw: NativeVenueWindows, part: Part, pending: PendingHeadlines
) -> tuple[NativeVenueWindows, list[Window]]:
    """The part's windows through `nvw` (one call); where the compiled code panics, the part again on the
    reference path from the state before."""
    before = nvw.__getstate__()  # a copy of the compiled state (under a millisecond for a few books)
    try:
        keys = [r.key for _, r in part] if nvw.keyed else None
        return nvw, nvw.process([r.value for _, r in part], [(0, i) for i, _ in part], keys=keys).windows
    except BaseException as err:
        if not native.is_panic(err):
            raise
        return _on_reference_path(before, part, pending, err)


def _on_reference_path(
    state: dict, part: Part, pending: PendingHeadlines, err: BaseException
) -> tuple[NativeVenueWindows, list[Window]]:
    """Records the native path panicked on, on the reference path from the native `state` before them
    (the headlines joined by process_records' rule: none falls inside a part, a whole chunk's do), then
    the state back on the native path for the next records."""
    log.warning("the native %s path panicked on records %d-%d (%s: a bug of orderbook/native, report them): "
                "they are replayed on the reference path", state["venue"], part[0][0], part[-1][0], err)  # fmt: skip
    vw = reference_windows(state)
    out = [w for i, r in part for w in process_record(vw, i, r, pending).windows]
    return native_windows(vw), out


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for w in items:
        batch.append(w)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def row(window: Window, prediction: Prediction) -> dict[str, object]:
    """One CSV row: the window's symbol, last event time and sequence, then PREDICTION_FIELDS."""
    out: dict[str, object] = {"symbol": window.symbol, "event_ts": int(window.ts), "seq": int(window.seq)}
    out.update(zip(_PREDICTED, prediction[_PREDICTED].tolist(), strict=True))
    return out


def score_windows(
    windows: Iterable[Window], forecaster: Forecaster, batch: int = 256, progress: Callable[[int], None] | None = None
) -> Iterator[dict[str, object]]:
    """Rows for `windows`, the forecaster called on batches of up to `batch` windows."""
    for chunk in _batched(windows, batch):
        for w, p in zip(chunk, forecaster.predict(chunk), strict=True):
            yield row(w, p)
        if progress:
            progress(len(chunk))


def write_csv(rows: Iterable[dict[str, object]], out: TextIO) -> int:
    """The rows as CSV (header COLUMNS; floats as Python's repr, which reads back exactly); the count."""
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    n = 0
    for r in rows:
        w.writerow(r)
        n += 1
    return n
