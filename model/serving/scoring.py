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
windows before the first record whose events are at or after the headline's time: the order in which a
live worker that keeps up would see them. A window shows the headlines of its own time span, and every
window made before a headline joins ends before its time (a file's records have no clock: a headline joins
at the first record with an event at or after it), so joining them all before the first record gives the
same windows wherever no symbol has more headlines than its window builder keeps (`NEWS_AHEAD`): that is
how the native path takes them.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from model.serving.forecaster import PREDICTION_FIELDS, Forecaster, Prediction
from orderbook import native
from orderbook.errors import DecodeError
from orderbook.native.convert import native_windows, reference_windows
from orderbook.native.venue_windows import SUPPORTED, NativeVenueWindows
from orderbook.news import Headline, parse_news
from orderbook.venue_windows import NEWS_KEPT, WindowStats, process_records, replay_windows
from orderbook.venues import RawRecord
from orderbook.windows import Window, WindowConfig

T = TypeVar("T")
log = logging.getLogger(__name__)
NATIVE_BATCH = 2000  # records a NativeVenueWindows.process call, as the worker's replay takes them
# headlines a symbol may have for all of them to join before the first record: below both caps on what is kept
# (a builder's newest `news_kept`, VenueWindows' NEWS_KEPT for builders made later), none is ever dropped, and
# a window, which shows the headlines of its own span, is the same as with each joined at its time
NEWS_AHEAD = min(NEWS_KEPT, WindowConfig().news_kept)

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
    NativeVenueWindows takes NATIVE_BATCH records a call, as the worker's native path does, the headlines
    joined before the first (where no symbol has more than NEWS_AHEAD); otherwise replay_windows takes them
    one at a time, joining the headlines at each record's clock (process_records). The two give the same
    windows (tests/test_native_venue_windows.py, tests/test_scoring.py).

    A call the native path panics on (a bug of orderbook/native that some record meets) is redone on the
    reference path from the state before it, as the worker redoes such a batch (streams/partition.py), and
    the stream goes on on the native path after it: the same windows, a WARNING naming the records."""
    if venue not in SUPPORTED or not native.enabled() or not joins_ahead(headlines):
        vw = replay_windows(venue)
        return (w for done in process_records(vw, records, headlines) for w in done.windows), vw.stats
    stats = WindowStats()

    def windows() -> Iterator[Window]:
        nvw = NativeVenueWindows(venue)
        for h in headlines:
            nvw.add_news(h.ts, h.symbols, h.headline)
        for chunk in _batched(enumerate(records), NATIVE_BATCH):
            before = nvw.__getstate__()  # a copy of the compiled state (under a millisecond for a few books)
            try:
                keys = [r.key for _, r in chunk] if nvw.keyed else None
                out = nvw.process([r.value for _, r in chunk], [(0, i) for i, _ in chunk], keys=keys).windows
            except BaseException as err:
                if not native.is_panic(err):
                    raise
                log.warning("the native %s path panicked on records %d-%d (%s: a bug of orderbook/native, report "
                            "them): they are replayed on the reference path", venue, chunk[0][0], chunk[-1][0],
                            err)  # fmt: skip
                vw = reference_windows(before)
                out = [w for i, r in chunk for w in vw.process(r.key, r.value, (0, i)).windows]
                nvw = native_windows(vw)
            vars(stats).update(vars(nvw.stats))
            yield from out

    return windows(), stats


def joins_ahead(headlines: Sequence[Headline]) -> bool:
    """Whether the headlines may all join before the first record: no symbol has more than NEWS_AHEAD."""
    per_symbol = Counter(s for s, _, _ in {(s, h.ts, h.headline) for h in headlines for s in h.symbols})
    return max(per_symbol.values(), default=0) <= NEWS_AHEAD


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
