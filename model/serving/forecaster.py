"""The forecaster interface and the forecast record every model publishes (docs/design.md, Redis layout).

A forecaster maps a batch of windows to predictions: one numpy structured array per batch, one
row per window, its dtype declaring every field (PREDICTION_FIELDS, which every model publishes,
then the model's own `extra_fields`, which it keeps for its alert explanations). `forecast` adds
the alert explanations and runs where the model runs (the worker's model thread, streams/batcher.py);
`forecast_record` adds what the book and the window know (venue, symbol, times, best bid/ask) so
that every model, the baseline and the order-flow one alike, publishes the same fields. Horizons
are counted in book messages ahead of the window's last one (`_h10`, `_h100` in the field names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from orderbook.windows import Window

SCHEMA = 2  # 2: `news_ts`, the newest headline the window held
HORIZONS = (10, 100)
QUANTILES = (10, 50, 90)

Predictions = np.ndarray  # structured, one row per window, dtype `Forecaster.dtype`
Prediction = np.void  # one row of Predictions: `prediction["spread_q50_h10"]`


def prediction_fields() -> list[str]:
    """What a forecaster must predict for each window, in publishing order."""
    names = ["anomaly_score", "anomaly_nll"]
    for h in HORIZONS:
        names += [f"spread_q{q}_h{h}" for q in QUANTILES]
        names += [f"depth_q{q}_h{h}" for q in QUANTILES]
        names += [f"volume_q50_h{h}"]
        names += [f"mid_q{q}_h{h}" for q in QUANTILES]
        names += [f"p_up_h{h}", f"p_down_h{h}"]
    return names


PREDICTION_FIELDS = tuple(prediction_fields())
RECORD_FIELDS = (
    "venue", "symbol", "event_ts", "emitted_ts", "seq", "window", "model", "best_bid", "best_ask", "news_ts",
    *PREDICTION_FIELDS, "reason", "schema",
)  # fmt: skip


def prediction_dtype(extra_fields: Sequence[tuple[str, DTypeLike]] = ()) -> np.dtype:
    """PREDICTION_FIELDS as float64 (what is published), then a model's own declared fields."""
    return np.dtype([*((name, np.float64) for name in PREDICTION_FIELDS), *extra_fields])


def predictions_of(columns: Mapping[str, np.ndarray], dtype: np.dtype) -> Predictions:
    """The structured array of a batch from its columns, which must be exactly the dtype's fields:
    a field missing or one not declared is a bug of the forecaster, not something to publish."""
    names = dtype.names or ()
    if set(columns) != set(names):
        missing, undeclared = sorted(set(names) - set(columns)), sorted(set(columns) - set(names))
        raise ValueError(f"predictions do not match their dtype: missing {missing}, undeclared {undeclared}")
    out = np.empty(len(columns[names[0]]), dtype)
    for name in names:
        out[name] = columns[name]
    return out


@dataclass(frozen=True)
class Forecasts:
    """A batch's predictions and, per window, the reason an alert gives ("" below the threshold)."""

    predictions: Predictions
    reasons: list[str]

    def __post_init__(self) -> None:
        if len(self.predictions) != len(self.reasons):
            raise ValueError(f"{len(self.predictions)} predictions but {len(self.reasons)} reasons")

    def __len__(self) -> int:
        return len(self.reasons)

    def part(self, start: int, stop: int) -> Forecasts:
        """Windows start..stop of the batch (one request's share of a micro-batch)."""
        return Forecasts(self.predictions[start:stop], self.reasons[start:stop])


class Forecaster(ABC):
    """Batches of windows in, one prediction per window out: a row of `dtype`, PREDICTION_FIELDS
    (finite floats) then the model's own `extra_fields` (name, numpy type)."""

    name: str = "forecaster"
    version: str = "0"
    extra_fields: tuple[tuple[str, DTypeLike], ...] = ()
    dtype: np.dtype = prediction_dtype()
    # False for a forecaster whose batch costs less than a hop to a thread and back (a few ms on a
    # busy 2-core machine): the worker's batcher calls it on the event loop
    blocks: bool = True
    # the prediction field (of `dtype`) holding a score calibrated on the training windows, so that it is
    # uniform on 0..1 while the flow is like the training flow (the worker's surprise drift reads it,
    # model/serving/drift.py); None: no such score (the baseline's tail probability is not calibrated so)
    calibrated_score: str | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.dtype = prediction_dtype(cls.extra_fields)

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.version}"

    def warm_up(self, example: Window) -> None:  # noqa: B027 - optional hook
        """Run once before the first real batch (compile, allocate); the default does nothing."""

    @abstractmethod
    def predict(self, windows: Sequence[Window]) -> Predictions:
        """One prediction per window, in order (a structured array of `dtype`). Must not keep
        per-window state between calls that a restarted worker could not rebuild: forecasts
        after a crash must equal those of an uninterrupted run."""

    def explain(self, window: Window, prediction: Prediction) -> str:
        """Why the anomaly score is what it is (a short, human-readable reason)."""
        return ""

    def forecast(self, windows: Sequence[Window], explain_above: float) -> Forecasts:
        """`predict`, then the reason of every window whose anomaly score is at or above `explain_above`
        (the alert threshold: an alert always says why). An explanation may cost a model pass of its
        own, so this runs where the model may block (the worker's model thread), never on an event loop."""
        predictions = self.predict(windows)
        if len(predictions) != len(windows):
            raise ValueError(f"{self.model_id}: {len(predictions)} predictions for {len(windows)} windows")
        reasons = [""] * len(windows)
        for i in np.flatnonzero(predictions["anomaly_score"] >= explain_above):
            reasons[i] = self.explain(windows[i], predictions[i])
        return Forecasts(predictions, reasons)


_PUBLISHED = list(PREDICTION_FIELDS)


def _record(window: Window, values: Sequence[float], model_id: str, emitted_ts: int, reason: str) -> dict:
    rec: dict[str, object] = {
        "venue": window.venue,
        "symbol": window.symbol,
        "event_ts": int(window.ts),
        "emitted_ts": int(emitted_ts),
        "seq": int(window.seq),
        "window": int(window.n_seen),  # orders a book's forecasts (see streams/sink.py)
        "model": model_id,
        "best_bid": int(window.best_bid),
        "best_ask": int(window.best_ask),
        # the newest headline the model saw with this window (0: none), so a reader knows
        # whether a forecast already accounts for a piece of news
        "news_ts": int(window.news_ts[window.news_mask].max()) if window.news_mask.any() else 0,
    }
    rec.update(zip(PREDICTION_FIELDS, values, strict=True))
    rec["reason"] = reason
    rec["schema"] = SCHEMA
    return rec


def forecast_record(window: Window, prediction: Prediction, model_id: str, emitted_ts: int, reason: str = "") -> dict:
    """The published forecast: plain values, ready for a Redis hash and msgpack."""
    return _record(window, prediction[_PUBLISHED].tolist(), model_id, emitted_ts, reason)


def forecast_records(model_id: str, windows: Sequence[Window], forecasts: Forecasts, emitted_ts: int) -> list[dict]:
    """The records a worker publishes for a batch (`Forecaster.forecast`'s predictions and reasons).
    Plain record building, cheap enough for the event loop: the values come out of the structured
    array as Python floats in one call per batch."""
    values = forecasts.predictions[_PUBLISHED].tolist()
    return [
        _record(w, v, model_id, emitted_ts, reason)
        for w, v, reason in zip(windows, values, forecasts.reasons, strict=True)
    ]
