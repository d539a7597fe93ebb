"""Offline batch scoring of a recorded or simulated stream (`megatrading score`): the forecasts the worker
would publish, one row per window.

    windows, stats = stream_windows("itch", capture_records("itch", [path]), read_news("news.jsonl"))
    rows = score_windows(windows, BaselineForecaster(), batch=256)

Records go through the worker's own path (`stream_windows`: orderbook.stream_replay, on the native path or the
reference, the same size check, decoder, tick rule and rejects; `stats` counts what the worker would dead-letter), with
the worker's default WindowConfig; then `forecaster.predict` in batches. A forecaster's prediction of a
window does not depend on the batch it is in (the Forecaster contract), so the rows equal the worker's
forecasts.

Headlines (an `md.news` JSONL file, one record per line, read by the worker's parser) join a symbol's
windows before the first record whose events are at or after the headline's time (a file's records have
no clock of their own): the order in which a live worker that keeps up would see them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TextIO

from model.serving.forecaster import PREDICTION_FIELDS, Forecaster, Prediction
from orderbook.errors import DecodeError
from orderbook.news import Headline, parse_news
from orderbook.stream_replay import replay_stream
from orderbook.venue_windows import WindowStats
from orderbook.venues import RawRecord
from orderbook.windows import Window

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
    """A recorded stream's windows, as the worker makes them (orderbook.stream_replay: on the native path
    where the venue has one, a headline joined at the first record whose clock reaches it), and the stats
    that count its records and rejects (filled as the windows are read)."""
    stats = WindowStats()
    parts = replay_stream(venue, records, headlines, stats=stats)
    return (w for part in parts for w in part.windows), stats


def row(window: Window, prediction: Prediction) -> dict[str, object]:
    """One CSV row: the window's symbol, last event time and sequence, then PREDICTION_FIELDS."""
    out: dict[str, object] = {"symbol": window.symbol, "event_ts": int(window.ts), "seq": int(window.seq)}
    out.update(zip(_PREDICTED, prediction[_PREDICTED].tolist(), strict=True))
    return out


def score_windows(
    windows: Iterable[Window], forecaster: Forecaster, batch: int = 256, progress: Callable[[int], None] | None = None
) -> Iterator[dict[str, object]]:
    """Rows for `windows`, the forecaster called on batches of up to `batch` windows."""
    it = iter(windows)
    for chunk in iter(lambda: list(islice(it, batch)), []):
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
