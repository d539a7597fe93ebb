"""The order-flow model served behind the forecaster interface: a tiny model trained here on
simulated windows, loaded from its checkpoint, scoring the worker's own windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network.orderflow import ANOMALY_CLASSES  # noqa: E402
from model.serving.forecaster import HORIZONS, PREDICTION_FIELDS, forecast_records  # noqa: E402
from model.serving.orderflow import OrderFlowForecaster, prob_above_zero  # noqa: E402
from model.sim.engine import SimConfig  # noqa: E402
from model.training.dataset import build, save, sim_source  # noqa: E402
from model.training.train import train  # noqa: E402
from streams.pipeline import simulated_windows  # noqa: E402

SEC = 1_000_000_000
CFG = SimConfig(n_symbols=2, duration_ns=300 * SEC, seed=5, anomaly_rates={"quote_stuffing": 6.0})


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    path, _ = save(build([sim_source(CFG)]), d / "train.npz")
    train("pretrain", path, d / "ckpt", steps=6, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return d / "ckpt"


def live_windows(seed: int = 6):
    """Windows as the worker cuts them, from a simulated stream the model never saw."""
    return simulated_windows(SimConfig(n_symbols=2, duration_ns=120 * SEC, seed=seed))


def test_serves_finite_ordered_forecasts_for_live_windows(checkpoint_dir):
    f = OrderFlowForecaster(checkpoint_dir, device="cpu")
    windows = live_windows()
    assert len(windows) > 20
    preds = f.predict(windows[:64])
    assert len(preds) == len(windows[:64])
    for p in preds:
        assert all(math.isfinite(p[name]) for name in PREDICTION_FIELDS)
        assert 0.0 <= p["anomaly_score"] <= 1.0 and p["anomaly_nll"] > 0
        for h in HORIZONS:
            for field in ("spread", "depth", "mid"):
                assert p[f"{field}_q10_h{h}"] <= p[f"{field}_q50_h{h}"] <= p[f"{field}_q90_h{h}"]
    recs = forecast_records(f.model_id, windows[:4], f.forecast(windows[:4], explain_above=0.0), 1)
    assert all(r["model"].startswith("orderflow-gpt:") and "surprise" in r["reason"] for r in recs)


def test_predictions_declare_every_field_the_explanation_reads(checkpoint_dir):
    f = OrderFlowForecaster(checkpoint_dir, device="cpu")
    preds = f.predict(live_windows()[:8])
    assert preds.dtype == f.dtype
    assert preds.dtype.names == (*PREDICTION_FIELDS, "anomaly_class", "anomaly_class_p", "surprise_score")
    assert all(preds.dtype[name] == np.float64 for name in PREDICTION_FIELDS)  # published as float64
    # the most likely anomalous kind: never `normal` (index 0)
    assert np.issubdtype(preds["anomaly_class"].dtype, np.integer)
    assert ((preds["anomaly_class"] >= 1) & (preds["anomaly_class"] < len(ANOMALY_CLASSES))).all()
    assert ((preds["anomaly_class_p"] >= 0) & (preds["anomaly_class_p"] <= 1)).all()
    assert ((preds["surprise_score"] >= 0) & (preds["surprise_score"] <= 1)).all()


def test_the_same_window_gets_the_same_forecast_alone_or_in_a_batch(checkpoint_dir):
    f = OrderFlowForecaster(checkpoint_dir, device="cpu")
    windows = live_windows()[:16]
    alone = f.predict(windows[3:4])[0]
    batched = f.predict(windows)[3]
    assert all(abs(alone[k] - batched[k]) <= 1e-4 * max(1.0, abs(alone[k])) for k in f.dtype.names)


def test_prob_above_zero_reads_the_quantiles():
    up, down = prob_above_zero(np.array([-2.0, 1.0, -3.0]), np.array([0.0, 2.0, -2.0]), np.array([2.0, 3.0, -1.0]))
    assert up[0] == pytest.approx(0.5) and up[1] == pytest.approx(0.9) and up[2] == pytest.approx(0.1)
    assert np.allclose(up + down, 1.0)


def test_an_alert_names_its_span_its_most_surprising_event_and_the_driving_features(checkpoint_dir):
    from orderbook.clock import span
    from orderbook.features import FEATURE_NAMES

    f = OrderFlowForecaster(checkpoint_dir, device="cpu")
    w = live_windows()[10]
    (event, nll), columns = f.drivers(w)
    assert w.mask[event] and nll > 0  # a real event of the window, scored given the ones before it
    assert len(columns) == 3 and all(name in FEATURE_NAMES for name, _ in columns)
    shares = [share for _, share in columns]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-6
    with torch.inference_mode():  # as a scoring loop may call it
        reason = f.explain(w, f.predict([w])[0])
    assert f"events {span(int(w.start_ts), int(w.ts))}: " in reason and "most surprising event" in reason
    assert f"driven by {columns[0][0]}" in reason


def test_an_alert_asks_for_its_drivers_twice_and_the_model_runs_once(checkpoint_dir, monkeypatch):
    f = OrderFlowForecaster(checkpoint_dir, device="cpu")
    w, other = live_windows()[10:12]
    calls = []
    real = f._drivers
    monkeypatch.setattr(f, "_drivers", lambda window, top: calls.append(window) or real(window, top))
    first = f.drivers(w)
    assert f.drivers(w) == first and len(calls) == 1  # the reason, then the window kept for the alert
    f.drivers(other)
    f.drivers(w)
    assert len(calls) == 3  # another window in between: computed again
