"""Drift statistics (model/serving/drift.py): the PSI math, a tracker fed one regime then another
(real Binance windows, then the same windows with a feature scaled), calibrated scores that hold,
rise, or sit high or low from a book's start."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from model.serving.drift import (
    DRIFT,
    MODERATE,
    PSI_EPS,
    STABLE,
    WARMING,
    BinRing,
    DriftTracker,
    bin_counts,
    describe,
    feature_bins,
    fractions,
    psi,
    reference_edges,
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


def uniform_psi(scores: np.ndarray) -> float:
    """The surprise statistic before 2026-12-05: the scores' deciles against uniform."""
    return float(psi(np.full(10, 0.1), fractions(np.histogram(scores, 10, (0.0, 1.0))[0])))


def scores_only(tracker: DriftTracker, scores: np.ndarray, symbol: str = "AAPL"):
    tracker.observe("itch", symbol, np.zeros((0, len(tracker.cols)), np.float32), scores)
    stats, changes = tracker.report()
    return stats["itch", symbol], changes


def test_a_book_easier_than_the_training_flow_is_stable_and_a_rise_in_its_surprise_drifts():
    """Scores piled low from the start (a real Binance book's, 0.15-0.31 on average) are no drift:
    against uniform they scored a PSI over 1. Once the model is surprised more often than it was at
    the book's start, the book drifts on the surprise PSI."""
    rng = np.random.default_rng(4)
    tracker = DriftTracker(FEATURE_NAMES)  # the worker's: the last 512 windows, the first 1024
    stat, _ = scores_only(tracker, rng.beta(1.0, 4.0, size=300))
    assert stat.state == WARMING and stat.surprise_psi is None and stat.surprise_level is None  # 300 of 512
    stat, _ = scores_only(tracker, rng.beta(1.0, 4.0, size=900))
    assert stat.surprise_psi is None and stat.surprise_level == pytest.approx(0.2, abs=0.03)  # 176 of 512 after
    assert stat.state == STABLE  # the reference: the level alone judges until the PSI is known
    for _ in range(4):
        easy = rng.beta(1.0, 4.0, size=512)
        stat, changes = scores_only(tracker, easy)
        assert stat.surprise_psi < 0.1 and stat.state == STABLE and not changes
        assert uniform_psi(easy) > 1.0
    stat, changes = scores_only(tracker, rng.beta(4.0, 1.0, size=512))  # the model surprised more often
    assert stat.surprise_psi > 0.25 and stat.surprise_level > 0.7 and stat.state == DRIFT
    assert stat.feature_psi_max is None
    assert [(c.symbol, c.drifting, c.statistic) for c in changes] == [("AAPL", True, "surprise")]
    assert describe(changes[0], 512, 1024) == (f"drift: itch AAPL drifting: surprise PSI {stat.surprise_psi:.3f} "
                                               "of its last 512 windows against its first 1024")  # fmt: skip
    assert tracker.drifting == 1 and '"state":"drift"' in stat.to_json() and '"surprise_level":' in stat.to_json()


def test_a_book_unlike_the_training_flow_from_its_start_drifts_on_the_surprise_level():
    """Scores piled at the top from the book's first window (a regime the model never saw: 0.92-0.98 on
    the adaptation bench's regime B) hold against the book's own start, and the level says it."""
    rng = np.random.default_rng(6)
    tracker = DriftTracker(FEATURE_NAMES, windows=256, reference=256)
    stat, changes = scores_only(tracker, rng.beta(9.0, 1.0, size=256))
    assert stat.surprise_psi is None and stat.surprise_level > 0.8 and stat.state == DRIFT
    assert [(c.drifting, c.statistic) for c in changes] == [(True, "surprise level")]
    assert describe(changes[0], 256, 256).startswith(
        f"drift: itch AAPL drifting: mean calibrated surprise {stat.surprise_level:.3f} over its last 256 windows"
    )
    stat, changes = scores_only(tracker, rng.beta(9.0, 1.0, size=256))
    assert stat.surprise_psi < 0.1 and stat.state == DRIFT and not changes
    for _ in range(2):  # back to flow like the training flow: the PSI rises, the level falls
        stat, changes = scores_only(tracker, rng.uniform(size=256))
    assert stat.surprise_psi > 0.25 and stat.surprise_level < 0.7 and stat.state == DRIFT
    # a book between the level's thresholds and never past one stays moderate
    between = DriftTracker(FEATURE_NAMES, windows=256, reference=256)
    stat, changes = scores_only(between, rng.beta(3.0, 1.0, size=256))
    assert 0.7 < stat.surprise_level < 0.8 and stat.state == MODERATE and not changes


def test_after_a_model_swap_the_surprise_starts_anew_from_the_new_models_scores():
    rng = np.random.default_rng(5)
    tracker = DriftTracker(FEATURE_NAMES)
    stat, _ = scores_only(tracker, rng.beta(9.0, 1.0, size=1600))  # the old model, surprised
    assert stat.surprise_psi is not None and stat.surprise_level > 0.8
    tracker.forget_surprise()
    stat, _ = scores_only(tracker, rng.uniform(size=300))  # the new one's scores only
    assert stat.surprise_psi is None and stat.surprise_level is None and stat.state == WARMING  # 300 of 512
    stat, _ = scores_only(tracker, rng.uniform(size=1300))
    assert stat.surprise_psi < 0.1 and stat.surprise_level == pytest.approx(0.5, abs=0.05) and stat.state == STABLE


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


def test_with_a_calibrated_score_the_state_follows_the_models_surprise_not_the_features(binance_windows):
    """The same change of the realized variance, with the model's scores holding: the feature PSI is
    published past the threshold and names the feature, the book does not drift (a real book's
    features move against its first minutes within the hour while the model's surprise holds)."""
    rng = np.random.default_rng(7)
    tracker = DriftTracker(FEATURE_NAMES, windows=256, reference=512)
    before, after = binance_windows[:1280], scaled(binance_windows[1280:1792], "realized_variance", 4.0)
    for windows in (before, after):
        for i in range(0, len(windows), 128):
            batch = windows[i : i + 128]
            tracker.observe_windows(batch, rng.beta(1.0, 3.0, size=len(batch)), owner=("md.raw.binance", 0))
            stats, changes = tracker.report()
            assert not changes
    stat = stats["binance", "BTCUSDT"]
    assert stat.feature_psi_max > 0.25 and stat.feature == "realized_variance"
    assert stat.surprise_psi < 0.25 and stat.surprise_level < 0.7 and stat.state != DRIFT  # 256 against 512: noisier


def test_the_settings_make_the_tracker_and_zero_windows_turn_it_off(tmp_path):
    from streams.app import drift_tracker
    from streams.config import Settings

    env = {"MT_HOME": str(tmp_path), "MT_DRIFT_WINDOWS": "128", "MT_DRIFT_THRESHOLD": "0.3", "MT_DRIFT_SKIP": "mid"}
    tracker = drift_tracker(Settings.load({}, environ=env))
    assert (tracker.n_windows, tracker.n_reference, tracker.threshold, tracker.moderate) == (128, 1024, 0.3, 0.1)
    assert (tracker.level, tracker.level_moderate) == (0.8, 0.7)
    assert "valid" in tracker.names and "mid" not in tracker.names
    assert drift_tracker(Settings(drift_windows=0)) is None
    with pytest.raises(ValueError, match="drift_moderate"):
        Settings(drift_moderate=0.3, drift_threshold=0.25)
    with pytest.raises(ValueError, match="drift_surprise_level"):
        Settings(drift_surprise_level=0.6)


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


def test_the_shipped_models_surprise_drifts_on_a_regime_it_never_saw_and_holds_on_a_real_book(binance_windows):
    """The shipped model's own scores through the worker's tracker: real Binance windows (a capture it
    trained on, normal flow) stay out of `drift`; a simulated regime it never saw (bench/adapt_bench.py's
    regime B: 4-10x the activity, sizes ~ k^-1.6 up to 400 lots, 0.3 market orders per limit order, thin
    books) drifts on the surprise level from its first full ring, with no reference of the book before."""
    pytest.importorskip("torch")
    from streams.config import SHIPPED_MODEL

    if not (SHIPPED_MODEL / "model.safetensors").is_file():
        pytest.skip("no shipped checkpoint")
    from model.serving.orderflow import OrderFlowForecaster
    from model.sim.engine import SEC, FlowParams, SimConfig, default_symbols
    from model.training.dataset import sim_source

    forecaster = OrderFlowForecaster(SHIPPED_MODEL, device="cpu")

    def tracked(windows) -> tuple[object, list]:
        tracker, crossings = DriftTracker(FEATURE_NAMES, windows=256, reference=512), []
        for i in range(0, len(windows), 128):
            batch = windows[i : i + 128]
            tracker.observe_windows(batch, forecaster.predict(batch)[forecaster.calibrated_score])
            stats, changes = tracker.report()
            crossings += changes
        (stat,) = stats.values()
        return stat, crossings

    real, crossings = tracked(binance_windows[:1024])
    assert real.surprise_level < 0.5 and real.surprise_psi < 0.25 and real.state != DRIFT and not crossings
    regime_b = SimConfig(
        n_symbols=1, duration_ns=600 * SEC, seed=601, symbols=default_symbols(1, (600_000, 600_000)),
        flow=FlowParams(size_tail=1.6, size_max_lots=400, market_to_limit=0.3, resting_orders=60,
                        placement_decay=0.8, hawkes_branching=0.75),
    )  # fmt: skip
    source = sim_source(regime_b)
    windows = [w for done in process_records(VenueWindows("itch"), iter(source.records)) for w in done.windows]
    assert len(windows) >= 256
    b, crossings = tracked(windows[:512])
    assert b.surprise_level > 0.8 and b.state == DRIFT
    assert [(c.drifting, c.statistic) for c in crossings] == [(True, "surprise level")]
