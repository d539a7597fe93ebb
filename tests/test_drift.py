"""Drift statistics (model/serving/drift.py): the PSI math, a tracker fed one regime then another
(real Binance windows, then the same windows with a feature scaled), calibrated scores uniform or
piled at the top."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from model.serving.drift import (
    DRIFT,
    PSI_EPS,
    STABLE,
    WARMING,
    BinRing,
    DriftTracker,
    bin_counts,
    feature_bins,
    fractions,
    psi,
    reference_edges,
    uniform_psi,
)
from orderbook.features import FEATURE_NAMES
from orderbook.venue_windows import VenueWindows, process_records
from orderbook.venues import capture_records

CAPTURE = "binance-hftbacktest/spot_btcusdt_20240808.gz"


def feature_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> np.ndarray:
    edges = reference_edges(reference, bins)
    levels = edges.shape[1] + 2
    ref = fractions(bin_counts(feature_bins(reference, edges), levels))
    return psi(ref, fractions(bin_counts(feature_bins(current, edges), levels)))


def test_identical_distributions_have_a_psi_of_about_zero():
    rng = np.random.default_rng(1)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    reference, current = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    assert (feature_psi(reference, current) < 0.02).all()
    assert (feature_psi(reference, reference) < 1e-12).all()


def test_a_shifted_or_scaled_distribution_crosses_the_drift_threshold():
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 1))
    small, shifted, scaled = (feature_psi(reference, c)[0] for c in (current + 0.1, current + 1.0, current * 3))
    assert small < 0.1 < 0.25 < shifted and scaled > 0.25
    # a feature constant over the reference (a discrete one) still shows a move, either way
    const = np.ones((500, 1))
    assert feature_psi(const, const)[0] == 0.0
    assert feature_psi(const, const * 2)[0] > 0.25 and feature_psi(const, const * 0)[0] > 0.25


def test_an_empty_bin_costs_what_the_epsilon_says():
    got = float(psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25]))
    want = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - PSI_EPS) * math.log(0.25 / PSI_EPS)
    assert math.isfinite(got) and got == pytest.approx(want)
    assert float(psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25], eps=1e-2)) < got  # a larger floor: a smaller cost


def test_a_bin_ring_counts_its_last_rows():
    rng = np.random.default_rng(3)
    ring, seen = BinRing(7, 2, 5), np.zeros((0, 2), np.uint8)
    for k in (0, 3, 2, 5, 9, 1, 7, 13, 2):
        rows = rng.integers(0, 5, (k, 2)).astype(np.uint8)
        ring.push(rows)
        seen = np.concatenate([seen, rows])[-7:]
        assert (ring.counts == bin_counts(seen, 5)).all() and ring.full == (ring.n >= 7)


def test_uniform_calibrated_scores_stay_stable_and_scores_piled_at_the_top_drift():
    rng = np.random.default_rng(4)
    assert uniform_psi(rng.uniform(size=5000)) < 0.01
    tracker = DriftTracker(FEATURE_NAMES, windows=512, reference=64)
    empty = np.zeros((0, len(tracker.cols)), np.float32)
    tracker.observe("itch", "AAPL", empty, rng.uniform(size=300))
    stats, _ = tracker.report()
    assert stats["itch", "AAPL"].state == WARMING and stats["itch", "AAPL"].surprise_psi is None  # 300 of 512
    for _ in range(4):
        tracker.observe("itch", "AAPL", empty, rng.uniform(size=256))
        stats, changes = tracker.report()
        assert stats["itch", "AAPL"].surprise_psi < 0.1 and stats["itch", "AAPL"].state == STABLE and not changes
    tracker.observe("itch", "AAPL", empty, rng.beta(4.0, 1.0, size=512))  # the model surprised more often
    stats, changes = tracker.report()
    stat = stats["itch", "AAPL"]
    assert stat.surprise_psi > 0.25 and stat.state == DRIFT and stat.feature_psi_max is None
    assert [(c.symbol, c.drifting, c.statistic) for c in changes] == [("AAPL", True, "surprise")]
    assert tracker.drifting == 1 and '"state":"drift"' in stat.to_json()


def test_after_a_model_swap_the_surprise_starts_anew_from_the_new_models_scores():
    rng = np.random.default_rng(5)
    tracker = DriftTracker(FEATURE_NAMES, windows=256, reference=64)
    empty = np.zeros((0, len(tracker.cols)), np.float32)
    tracker.observe("itch", "AAPL", empty, rng.beta(4.0, 1.0, size=256))  # the old model, surprised
    assert tracker.report()[0]["itch", "AAPL"].surprise_psi > 0.25
    tracker.forget_surprise()
    tracker.observe("itch", "AAPL", empty, rng.uniform(size=100))  # the new one's scores only
    stat = tracker.report()[0]["itch", "AAPL"]
    assert stat.surprise_psi is None and stat.state == WARMING  # 100 of 256: not the old model's pile
    tracker.observe("itch", "AAPL", empty, rng.uniform(size=200))
    assert tracker.report()[0]["itch", "AAPL"].surprise_psi < 0.1


@pytest.fixture(scope="module")
def binance_windows(shared_data):
    """About 1,900 windows of one real Binance book (BTCUSDT), shuffled: one regime, no time trend."""
    records = itertools.islice(capture_records("binance", [shared_data / CAPTURE]), 200_000)
    windows = [w for done in process_records(VenueWindows("binance"), records) for w in done.windows]
    assert len(windows) > 1500
    np.random.default_rng(5).shuffle(windows)
    return windows


def scaled(windows, name: str, factor: float):
    col = FEATURE_NAMES.index(name)
    out = []
    for w in windows:
        f = w.features.copy()
        f[:, col] *= factor
        out.append(dataclasses.replace(w, features=f))
    return out


def test_a_tracker_fed_one_regime_then_another_crosses_only_after_the_change(binance_windows):
    """Real windows (shuffled: the same regime throughout) stay under the threshold; the same windows
    with the realized variance four times as large cross it, naming the feature; back to the first
    regime, the book returns."""
    tracker = DriftTracker(FEATURE_NAMES, windows=256, reference=512)
    before, after = binance_windows[:1280], scaled(binance_windows[1280:1792], "realized_variance", 4.0)
    crossings = []

    def feed(windows, batch=128):
        for i in range(0, len(windows), batch):
            tracker.observe_windows(windows[i : i + batch], owner=("md.raw.binance", 0))
            stats, changes = tracker.report()
            crossings.extend(changes)
            yield stats["binance", "BTCUSDT"]

    first = list(feed(before))
    assert [s.state for s in first[:5]] == [WARMING] * 5  # 512 reference + 256 windows before a PSI
    assert all(s.feature_psi_max < 0.25 and s.state != DRIFT for s in first[5:]) and not crossings
    second = list(feed(after))
    assert second[-1].state == DRIFT and second[-1].feature == "realized_variance"
    assert second[-1].feature_psi_max > 0.25 and second[-1].surprise_psi is None  # no calibrated score given
    assert [(c.drifting, c.statistic, c.feature) for c in crossings] == [(True, "feature", "realized_variance")]
    third = list(feed(binance_windows[:256]))
    assert third[-1].state == STABLE and [c.drifting for c in crossings] == [True, False]
    assert third[-1].windows == 1280 + 512 + 256
    assert tracker.forget(("md.raw.binance", 0)) == [("binance", "BTCUSDT")] and not tracker.books


def test_the_settings_make_the_tracker_and_zero_windows_turn_it_off(tmp_path):
    from streams.app import drift_tracker
    from streams.config import Settings

    env = {"MT_HOME": str(tmp_path), "MT_DRIFT_WINDOWS": "128", "MT_DRIFT_THRESHOLD": "0.3", "MT_DRIFT_SKIP": "mid"}
    tracker = drift_tracker(Settings.load({}, environ=env))
    assert (tracker.n_windows, tracker.n_reference, tracker.threshold, tracker.moderate) == (128, 1024, 0.3, 0.1)
    assert "valid" in tracker.names and "mid" not in tracker.names
    assert drift_tracker(Settings(drift_windows=0)) is None
    with pytest.raises(ValueError, match="drift_moderate"):
        Settings(drift_moderate=0.3, drift_threshold=0.25)


def test_only_the_generative_forecaster_names_a_calibrated_score(binance_windows):
    from model.serving.baseline import BaselineForecaster
    from streams.config import SHIPPED_MODEL

    assert BaselineForecaster().calibrated_score is None
    pytest.importorskip("torch")
    if not (SHIPPED_MODEL / "model.safetensors").is_file():
        pytest.skip("no shipped checkpoint")
    from model.serving.orderflow import OrderFlowForecaster

    forecaster = OrderFlowForecaster(SHIPPED_MODEL, device="cpu")
    assert forecaster.calibrated_score == "surprise_score"
    scores = forecaster.predict(binance_windows[:64])[forecaster.calibrated_score]
    assert ((scores >= 0) & (scores <= 1)).all()
