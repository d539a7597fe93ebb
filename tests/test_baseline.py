"""The baseline forecaster: finite, ordered quantiles; the anomaly score reacts to a burst."""

import math
import warnings

import numpy as np
import pytest

from model.serving.baseline import BaselineForecaster, nanquantile_rows, robust_z
from model.serving.forecaster import (
    HORIZONS,
    PREDICTION_FIELDS,
    RECORD_FIELDS,
    forecast_record,
    forecast_records,
    prediction_dtype,
    predictions_of,
)
from model.sim.itch_day import itch_day_stream
from orderbook.book import L2Book
from orderbook.errors import FeedError
from orderbook.events import Event, Kind, Side
from orderbook.features import FeatureState
from orderbook.venues.itch import ItchFeed
from orderbook.windows import Window, WindowBuilder, WindowConfig


def itch_windows(n=6000, symbol="AAPL"):
    feed = ItchFeed()
    builder = WindowBuilder(WindowConfig(every_events=64), FeatureState(tick=100))
    out = []
    for raw in itch_day_stream(3, n).messages:
        try:
            events = feed.on_message(raw)
        except FeedError:
            continue
        mine = [e for e in events if e.symbol == symbol]
        if mine and (w := builder.push(feed.books[symbol], mine)) is not None:
            out.append(w)
    return out


def test_predictions_are_finite_and_quantiles_ordered():
    windows = itch_windows()
    assert len(windows) > 10
    preds = BaselineForecaster().predict(windows)
    assert len(preds) == len(windows)
    for p in preds:
        assert all(math.isfinite(p[name]) for name in PREDICTION_FIELDS)
        assert 0.0 <= p["anomaly_score"] <= 1.0
        for h in HORIZONS:
            for field in ("spread", "depth", "mid"):
                assert p[f"{field}_q10_h{h}"] <= p[f"{field}_q50_h{h}"] + 1e-9 <= p[f"{field}_q90_h{h}"] + 2e-9
            assert p[f"p_up_h{h}"] + p[f"p_down_h{h}"] <= 1.0


def test_predictions_are_a_structured_array_of_exactly_the_published_fields():
    windows = itch_windows()[:5]
    f = BaselineForecaster()
    preds = f.predict(windows)
    assert preds.dtype == f.dtype == prediction_dtype()
    assert preds.dtype.names == PREDICTION_FIELDS and all(preds.dtype[n] == np.float64 for n in PREDICTION_FIELDS)
    assert f.predict([]).dtype == f.dtype and len(f.predict([])) == 0


def test_a_prediction_field_missing_or_not_declared_is_refused():
    columns = {name: np.zeros(2) for name in PREDICTION_FIELDS}
    with pytest.raises(ValueError, match="undeclared \\['anomaly_class'\\]"):
        predictions_of(columns | {"anomaly_class": np.zeros(2)}, prediction_dtype())
    del columns["p_up_h10"]
    with pytest.raises(ValueError, match="missing \\['p_up_h10'\\]"):
        predictions_of(columns, prediction_dtype())


def test_forecast_record_carries_book_and_window_metadata():
    w = itch_windows()[-1]
    pred = BaselineForecaster().predict([w])[0]
    rec = forecast_record(w, pred, "baseline:1", emitted_ts=123)
    assert tuple(rec) == RECORD_FIELDS
    assert rec["best_bid"] == w.best_bid > 0 and rec["best_ask"] == w.best_ask > w.best_bid
    assert rec["symbol"] == "AAPL" and rec["venue"] == "itch" and rec["seq"] == w.seq
    # published as plain Python floats (msgpack, Redis), the prediction's float64 values exactly
    assert all(type(rec[n]) is float and rec[n] == pred[n] for n in PREDICTION_FIELDS)


def _l2_stream(n_msgs, gap_ns, start_ts=0, seq0=0):
    """Steady level updates `gap_ns` apart around a fixed book."""
    for i in range(n_msgs):
        side = Side.BID if i % 2 else Side.ASK
        price = 100 - (i % 3) if side == Side.BID else 101 + (i % 3)
        yield [Event(Kind.LEVEL_SET, "t", "X", start_ts + i * gap_ns, seq0 + i, side, price, 5 + i % 7)]


def calm_then_burst() -> tuple[list[Window], list[Window]]:
    """A book's windows at 20 msg/s, then those of a burst's onset at 10k msg/s (one window per message)."""
    book = L2Book("t", "X")
    builder = WindowBuilder(WindowConfig(every_events=1, n_rows=32), FeatureState(window_ns=100_000_000))

    def windows(stream) -> list[Window]:
        out = []
        for events in stream:
            for e in events:
                book.apply(e)
            if (w := builder.push(book, events)) is not None:
                out.append(w)
        return out

    calm = windows(_l2_stream(400, gap_ns=50_000_000))
    burst = windows(_l2_stream(8, gap_ns=100_000, start_ts=400 * 50_000_000, seq0=400))
    return calm, burst


def test_anomaly_score_rises_on_a_message_burst():
    calm_windows, burst_windows = calm_then_burst()
    calm, burst = calm_windows[-1], burst_windows[-1]
    f = BaselineForecaster()
    calm_score = f.predict([calm])[0]["anomaly_score"]
    burst_score = f.predict([burst])[0]["anomaly_score"]
    assert calm_score < 0.5 < 0.99 < burst_score
    assert "message_rate" in f.explain(burst, f.predict([burst])[0])


def test_forecast_explains_exactly_the_windows_at_or_above_the_threshold():
    calm, burst = calm_then_burst()
    windows = calm[-20:] + burst
    f = BaselineForecaster()
    scores = f.predict(windows)["anomaly_score"]
    forecasts = f.forecast(windows, explain_above=0.99)
    assert np.array_equal(forecasts.predictions, f.predict(windows))
    alerts = scores >= 0.99
    assert 0 < alerts.sum() < len(windows)
    assert all(forecasts.reasons[i] for i in np.flatnonzero(alerts))  # an alert says why
    assert forecasts.reasons == [
        f.explain(w, p) if a else "" for w, p, a in zip(windows, forecasts.predictions, alerts, strict=True)
    ]
    recs = forecast_records(f.model_id, windows, forecasts, emitted_ts=5)
    assert [r["reason"] for r in recs] == forecasts.reasons
    assert recs == [
        forecast_record(w, p, f.model_id, 5, r)
        for w, p, r in zip(windows, forecasts.predictions, forecasts.reasons, strict=True)
    ]


@pytest.mark.parametrize(("hist", "value", "sign"), [([1, 2, 3, 4, 5], 50, 1), ([1, 2, 3, 4, 5], -50, -1)])
def test_robust_z_sign(hist, value, sign):
    assert np.sign(robust_z(np.array(hist, float), value)) == sign


def test_nanquantile_rows_equals_numpy_bit_for_bit() -> None:
    """The one-sort quantile the forecaster serves equals np.nanquantile exactly: rows with NaN gaps,
    all-NaN rows, ties, infinities, one-value rows."""
    rng = np.random.default_rng(12)
    qs = (0.1, 0.5, 0.9)
    for _ in range(3000):
        b, t = int(rng.integers(1, 8)), int(rng.integers(1, 40))
        x = rng.normal(size=(b, t)) * 10.0 ** int(rng.integers(-3, 4))
        x[rng.random((b, t)) < rng.random()] = np.nan
        if rng.random() < 0.2:
            x = np.round(x, 1)  # ties
        if rng.random() < 0.05:
            x[0] = np.inf
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = np.nanquantile(x, qs, axis=1)
            got = nanquantile_rows(x, qs)
        assert np.array_equal(got, want, equal_nan=True), (x, got, want)
