"""The baseline forecaster: finite, ordered quantiles; the anomaly score reacts to a burst."""

import math

import numpy as np
import pytest

from model.serving.baseline import BaselineForecaster, robust_z
from model.serving.forecaster import HORIZONS, PREDICTION_FIELDS, RECORD_FIELDS, forecast_record
from model.sim.itch_day import itch_day_stream
from orderbook.book import L2Book
from orderbook.errors import FeedError
from orderbook.events import Event, Kind, Side
from orderbook.features import FeatureState
from orderbook.venues.itch import ItchFeed
from orderbook.windows import WindowBuilder, WindowConfig


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
    for p in preds:
        assert set(PREDICTION_FIELDS) <= set(p)
        assert all(math.isfinite(v) for v in p.values())
        assert 0.0 <= p["anomaly_score"] <= 1.0
        for h in HORIZONS:
            for field in ("spread", "depth", "mid"):
                assert p[f"{field}_q10_h{h}"] <= p[f"{field}_q50_h{h}"] + 1e-9 <= p[f"{field}_q90_h{h}"] + 2e-9
            assert p[f"p_up_h{h}"] + p[f"p_down_h{h}"] <= 1.0


def test_forecast_record_carries_book_and_window_metadata():
    w = itch_windows()[-1]
    rec = forecast_record(w, BaselineForecaster().predict([w])[0], "baseline:1", emitted_ts=123)
    assert tuple(rec) == RECORD_FIELDS
    assert rec["best_bid"] == w.best_bid > 0 and rec["best_ask"] == w.best_ask > w.best_bid
    assert rec["symbol"] == "AAPL" and rec["venue"] == "itch" and rec["seq"] == w.seq


def _l2_stream(n_msgs, gap_ns, start_ts=0, seq0=0):
    """Steady level updates `gap_ns` apart around a fixed book."""
    for i in range(n_msgs):
        side = Side.BID if i % 2 else Side.ASK
        price = 100 - (i % 3) if side == Side.BID else 101 + (i % 3)
        yield [Event(Kind.LEVEL_SET, "t", "X", start_ts + i * gap_ns, seq0 + i, side, price, 5 + i % 7)]


def test_anomaly_score_rises_on_a_message_burst():
    book = L2Book("t", "X")
    builder = WindowBuilder(WindowConfig(every_events=1, n_rows=32), FeatureState(window_ns=100_000_000))
    calm = None
    for events in _l2_stream(400, gap_ns=50_000_000):  # 20 msg/s
        for e in events:
            book.apply(e)
        calm = builder.push(book, events)
    burst = None
    start = 400 * 50_000_000
    for events in _l2_stream(8, gap_ns=100_000, start_ts=start, seq0=400):  # 10k msg/s: the onset
        for e in events:
            book.apply(e)
        burst = builder.push(book, events)
    f = BaselineForecaster()
    calm_score = f.predict([calm])[0]["anomaly_score"]
    burst_score = f.predict([burst])[0]["anomaly_score"]
    assert calm_score < 0.5 < 0.99 < burst_score
    assert "message_rate" in f.explain(burst, f.predict([burst])[0])


@pytest.mark.parametrize(("hist", "value", "sign"), [([1, 2, 3, 4, 5], 50, 1), ([1, 2, 3, 4, 5], -50, -1)])
def test_robust_z_sign(hist, value, sign):
    assert np.sign(robust_z(np.array(hist, float), value)) == sign
