"""Offline batch scoring of a recorded or simulated stream (`megatrading score`): the forecasts the worker
would publish, one row per window.

    windows = stream_windows(read_records([path], "itch"), "itch", news=read_news("news.jsonl"))
    rows = score_windows(windows, BaselineForecaster(), batch=256)

Records go through the venue's feed, books, features and window builders as streams/pipeline.py's
VenuePipeline does it (re-implemented here because model/ may not import streams/): the same size
check, decoder and tick rule (orderbook.venues.decode_record, orderbook.features.book_tick), rejected
records skipped as the worker dead-letters them, the worker's default WindowConfig; then
`forecaster.predict` in batches. A forecaster's prediction of a window does not depend on the batch
it is in (the Forecaster contract), so the rows equal the worker's forecasts.

Headlines (an `md.news` JSONL file) join a symbol's windows before the first record whose events are
at or after the headline's time: the order in which a live worker that keeps up would see them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from model.serving.forecaster import PREDICTION_FIELDS, Forecaster, Prediction
from orderbook.errors import FeedError
from orderbook.events import Event
from orderbook.venue_windows import VenueWindows
from orderbook.venues import feed_class
from orderbook.windows import Window, WindowConfig

COLUMNS = ("symbol", "event_ts", "seq", "anomaly_score", *(f for f in PREDICTION_FIELDS if f != "anomaly_score"))
_PREDICTED = list(COLUMNS[3:])
Record = tuple[bytes | None, bytes]  # (key, value) as on md.raw.<venue>


@dataclass
class ScoreStats:
    records: int = 0
    windows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


def read_news(path: str | Path) -> list[tuple[int, list[str], str]]:
    """An `md.news` JSONL file (`megatrading simulate` writes news.jsonl): (ts, symbols, headline), by time."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                out.append((int(doc["ts"]), [str(s) for s in doc["symbols"]], str(doc["headline"])))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{n}: not an md.news record ({err})") from None
    out.sort(key=lambda x: x[0])
    return out


def read_records(paths: Sequence[str | Path], venue: str, symbol: str | None = None) -> Iterator[Record]:
    """The records of capture files, file after file, keyed as `megatrading replay` keys them (LOBSTER:
    the symbol from `symbol` or LOBSTER's file naming; other venues carry it in the message)."""
    cls = feed_class(venue)
    for path in paths:
        key = None
        if venue == "lobster":
            from orderbook.venues.lobster import symbol_from_filename

            name = symbol or symbol_from_filename(path)
            if not name:
                raise ValueError(f"{path}: LOBSTER rows carry no symbol: pass --symbol or use LOBSTER's file naming")
            key = name.encode()
        for rec in cls.read_capture(path):
            yield key, rec.raw


class StreamWindows(VenueWindows):
    """The worker's window loop (orderbook.venue_windows), counting what it would dead-letter."""

    def __init__(self, venue: str, config: WindowConfig | None = None) -> None:
        super().__init__(venue, config)
        self.stats = ScoreStats()

    def decode(self, key: bytes | None, value: bytes) -> list[Event] | None:  # type: ignore[override]
        """The record's events, or None (counted by reason) where the worker would dead-letter it."""
        self.stats.records += 1
        try:
            return super().decode(key, value)
        except FeedError as err:
            reason = err.reason
        except Exception:  # the worker dead-letters a decoder bug as internal_error and goes on
            reason = "internal_error"
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        return None

    def push(self, events: list[Event], offset: Any = None) -> list[Window]:
        out = super().push(events, offset=(0, offset))
        self.stats.windows += len(out)
        return out


def stream_windows(
    records: Iterable[Record],
    venue: str,
    news: Sequence[tuple[int, list[str], str]] = (),
    config: WindowConfig | None = None,
    state: StreamWindows | None = None,
) -> Iterator[Window]:
    """Every window the worker would emit for `records`, in order; headlines joined by event time."""
    sw = state or StreamWindows(venue, config)
    pending = sorted(news, key=lambda n: n[0])
    i = 0
    for offset, (key, value) in enumerate(records):
        events = sw.decode(key, value)
        if not events:
            continue
        latest = max(e.ts for e in events)
        while i < len(pending) and pending[i][0] <= latest:
            sw.add_news(*pending[i])
            i += 1
        yield from sw.push(events, offset)


def _batched(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for w in windows:
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
