"""The forecaster interface and the forecast record every model publishes (DESIGN.md, Redis layout).

A forecaster maps a batch of windows to predictions; `forecast_record` adds what the book
and the window know (venue, symbol, times, best bid/ask) so that every model, the baseline
and the generative one alike, publishes the same fields. Horizons are counted in book
messages ahead of the window's last one (`_h10`, `_h100` in the field names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from orderbook.windows import Window

SCHEMA = 2  # 2: `news_ts`, the newest headline the window held
HORIZONS = (10, 100)
QUANTILES = (10, 50, 90)

Prediction = dict[str, float]


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


class Forecaster(ABC):
    """Batches of windows in, one prediction per window out (PREDICTION_FIELDS, finite floats)."""

    name: str = "forecaster"
    version: str = "0"

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.version}"

    def warm_up(self, example: Window) -> None:  # noqa: B027 - optional hook
        """Run once before the first real batch (compile, allocate); the default does nothing."""

    @abstractmethod
    def predict(self, windows: Sequence[Window]) -> list[Prediction]:
        """One prediction per window, in order. Must not keep per-window state between calls
        that a restarted worker could not rebuild: forecasts after a crash must equal those
        of an uninterrupted run."""

    def explain(self, window: Window, prediction: Prediction) -> str:
        """Why the anomaly score is what it is (a short, human-readable reason)."""
        return ""


def forecast_record(window: Window, prediction: Prediction, model_id: str, emitted_ts: int, reason: str = "") -> dict:
    """The published forecast: plain values, ready for a Redis hash and msgpack."""
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
    for name in PREDICTION_FIELDS:
        rec[name] = float(prediction[name])
    rec["reason"] = reason
    rec["schema"] = SCHEMA
    return rec


def forecast_records(
    forecaster: Forecaster,
    windows: Sequence[Window],
    predictions: Sequence[Prediction],
    emitted_ts: int,
    explain_above: float,
) -> list[dict]:
    """The records a worker publishes for a batch; anomalies at or above `explain_above`
    carry the forecaster's reason (the alert threshold: an alert always says why)."""
    model = forecaster.model_id
    return [
        forecast_record(
            w, p, model, emitted_ts, forecaster.explain(w, p) if p["anomaly_score"] >= explain_above else ""
        )
        for w, p in zip(windows, predictions, strict=True)
    ]


def load_forecaster(spec: str, device: str = "auto") -> Forecaster:
    """`baseline`, or `generative:CHECKPOINT_DIR` (torch; CUDA when there is one, else CPU)."""
    if spec == "baseline":
        from model.serving.baseline import BaselineForecaster

        return BaselineForecaster()
    if spec.startswith("generative:"):
        from model.serving.orderflow import GenerativeForecaster

        return GenerativeForecaster(spec.split(":", 1)[1], device=device)
    raise ValueError(f"unknown model {spec!r} (baseline or generative:CHECKPOINT_DIR)")
