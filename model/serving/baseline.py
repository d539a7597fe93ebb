"""The baseline forecaster: the yardstick every model result is compared with, and the fallback.

Everything is computed from the window alone (its T feature rows and N event tokens), so
the forecast of a window does not depend on which worker saw which earlier windows: a
worker restarted after a crash publishes exactly what an uninterrupted one would.

Liquidity (spread, depth): a HAR-style level (Corsi 2009, "A simple approximate long-memory
model of realized volatility": the mean of the last row, the last 5 and all T rows, equally
weighted) and an EWMA; their average is the median forecast, and the spread of the window's
own values around it gives the 10%/90% quantiles (the empirical residual quantiles). Traded
volume over h messages: h times the EWMA of traded volume per message. Mid moves: a random
walk, the 1-message mid changes' empirical quantiles scaled by sqrt(h).

Anomaly: robust z-scores (median / MAD, Hampel 1974; the MAD floored at MAD_FLOOR) of the
last row's message, cancel and trade intensities against the window's earlier rows; the largest z, as a two-sided normal
tail probability p, gives `anomaly_nll` = -log p and `anomaly_score` = 1 - p in [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from model.serving.forecaster import HORIZONS, QUANTILES, Forecaster, Prediction, Predictions, predictions_of
from orderbook.clock import span as clock_span
from orderbook.features import FEATURE_NAMES, TRADE_KINDS
from orderbook.windows import Window

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_INTENSITIES = ("log_message_rate", "log_cancel_rate", "log_trade_rate")
_TRADE_KINDS = np.array(sorted(TRADE_KINDS), dtype=np.int8)
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_MIN_ROWS = 3
MAD_FLOOR = 0.25  # intensities are log(1 + events/s): a quarter is a ~30% change of rate


def ewma(x: np.ndarray, halflife: float) -> float:
    """Exponentially weighted mean, newest last."""
    w = 0.5 ** (np.arange(len(x))[::-1] / halflife)
    return float(np.dot(w, x) / w.sum())


def har_level(x: np.ndarray) -> float:
    """Corsi's HAR: equal weights on the last value, the last-5 mean and the whole-window mean."""
    return float((x[-1] + x[-5:].mean() + x.mean()) / 3.0)


def _last_valid(x: np.ndarray) -> np.ndarray:
    """Each row's last non-NaN value (NaN where there is none)."""
    ok = ~np.isnan(x)
    idx = x.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    return np.where(ok.any(axis=1), x[np.arange(len(x)), idx], np.nan)


def nanquantile_rows(x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """`np.nanquantile(x, qs, axis=1)` (method "linear") of a (B, T) array, bit for bit, in one sort:
    numpy takes a row at a time through `apply_along_axis` once any row holds a NaN, which was a
    tenth of a worker's time. The index, weight and interpolation are numpy's own formulas
    ("linear"'s virtual index, `_lerp`), so not one rounding differs (tests/test_baseline.py).
    Shape (len(qs), B); NaN for an all-NaN row."""
    s = np.sort(x, axis=1)  # NaNs sort last
    n = np.sum(~np.isnan(x), axis=1)
    rows = np.arange(len(x))
    out = np.full((len(qs), len(x)), np.nan)
    some = n > 0
    for i, q in enumerate(qs):
        virtual = (n - 1) * q
        below = np.floor(virtual)
        gamma = virtual - below
        lo = np.clip(below, 0, np.maximum(n - 1, 0)).astype(np.intp)
        hi = np.clip(below + 1, 0, np.maximum(n - 1, 0)).astype(np.intp)
        a, b = s[rows, lo], s[rows, hi]
        diff = b - a
        value = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        out[i] = np.where(some, value, np.nan)
    return out


def level_forecasts(x: np.ndarray, halflife: float = 8.0) -> dict[str, np.ndarray]:
    """q10/q50/q90 (B, 3) of a level series (B, T) with NaN gaps, per method: `persistence` (the
    last value, a point forecast), `ewma`, `har` (Corsi 2009: mean of the last value, the last-5
    mean and the window mean) and `baseline` (the average of HAR and EWMA: what this forecaster
    serves). The band is the window's own 10%/90% residuals around its mean, never inverted,
    floored at 0. NaN where the window has no value. Evaluation compares against the same code."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (one-sided books)
        mean = np.nanmean(x, axis=1)
        last = _last_valid(x)
        har = (np.where(np.isnan(last), mean, last) + np.nanmean(x[:, -5:], axis=1) + mean) / 3.0
        w = 0.5 ** (np.arange(x.shape[1])[::-1] / halflife)
        w = np.where(np.isnan(x), 0.0, w)
        ew = np.nansum(w * np.nan_to_num(x), axis=1) / np.maximum(w.sum(axis=1), 1e-12)
        lo, hi = nanquantile_rows(x - mean[:, None], (0.1, 0.9))
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)

    def band(center: np.ndarray) -> np.ndarray:
        return np.maximum(np.stack([center + lo, center, center + hi], axis=1), 0.0)

    return {
        "persistence": np.stack([last, last, last], axis=1),
        "ewma": band(ew),
        "har": band(har),
        "baseline": band(0.5 * (har + ew)),
    }


def intensity_anomaly(
    feats: np.ndarray, rows: np.ndarray, names: Sequence[str] = FEATURE_NAMES
) -> tuple[np.ndarray, np.ndarray]:
    """(score, nll) per window: the largest robust z of the last row's intensities against the
    earlier rows; p its two-sided normal tail, score 1 - p, nll -log p."""
    col = {n: i for i, n in enumerate(names)}
    x = np.where(rows[..., None], feats[..., [col[n] for n in _INTENSITIES]], np.nan)  # (B, T, 3)
    hist, value = x[:, :-1], x[:, -1]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows still warming up
        med = np.nanmedian(hist, axis=1)
        mad = np.maximum(np.nanmedian(np.abs(hist - med[:, None]), axis=1), MAD_FLOOR) * _MAD_TO_SIGMA
        z = np.nanmax((value - med) / mad, axis=1)
    z = np.where((rows.sum(axis=1) >= _MIN_ROWS) & (z > 0), z, 0.0)
    p = np.array([math.erfc(v / math.sqrt(2.0)) for v in z])
    return 1.0 - p, np.maximum(0.0, -np.log(np.maximum(p, 1e-300)))


def robust_z(history: np.ndarray, value: float, floor: float = MAD_FLOOR) -> float:
    """(value - median) / (1.4826 max(MAD, floor)). The floor keeps a quiet history (most rows
    without a trade: MAD 0) from turning the first print into an infinite surprise."""
    med = float(np.median(history))
    mad = max(float(np.median(np.abs(history - med))), floor) * _MAD_TO_SIGMA
    return (value - med) / mad


class BaselineForecaster(Forecaster):
    """The batch is computed at once, column-wise over (windows, rows): per-window Python
    loops made this forecaster a third of a worker's time."""

    name = "baseline-har-ewma"
    version = "1"
    blocks = False  # column-wise numpy: ~1 ms for a 256-window batch, under a thread hop's cost

    def __init__(self, halflife: float = 8.0) -> None:
        self.halflife = halflife

    def predict(self, windows: Sequence[Window]) -> Predictions:
        if not windows:
            return np.zeros(0, self.dtype)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of windows still warming up
            columns = self._columns(windows)
        # a window still warming up has no value to give: 0, never NaN or inf, is published
        finite = {
            n: np.nan_to_num(np.asarray(c, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for n, c in columns.items()
        }
        return predictions_of(finite, self.dtype)

    def _columns(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        feats = np.stack([w.features for w in windows]).astype(np.float64)  # (B, T, F)
        rows = np.stack([w.row_mask for w in windows])
        valid = rows & (feats[..., _COL["valid"]] > 0)
        nan = np.nan
        spread = np.where(valid, feats[..., _COL["spread_ticks"]], nan)
        depth = np.where(
            valid, np.expm1(feats[..., _COL["log_depth_bid_5"]]) + np.expm1(feats[..., _COL["log_depth_ask_5"]]), nan
        )
        mid = np.where(valid, feats[..., _COL["mid"]], nan)
        out: dict[str, np.ndarray] = {}
        out["anomaly_score"], out["anomaly_nll"] = self._anomaly(feats, rows)
        tick = self._ticks(windows, spread)
        steps = np.diff(mid, axis=1) / tick[:, None]
        n_steps = np.maximum(np.sum(~np.isnan(steps), axis=1), 1)
        q_steps = nanquantile_rows(steps, (0.1, 0.5, 0.9))
        p_up, p_down = np.sum(steps > 0, axis=1) / n_steps, np.sum(steps < 0, axis=1) / n_steps
        vol_per_msg = self._volume_per_message(windows, rows)
        spread_q, depth_q = self._levels(spread), self._levels(depth)
        for h in HORIZONS:
            for q, s_q, d_q in zip(QUANTILES, spread_q, depth_q, strict=True):
                out[f"spread_q{q}_h{h}"] = s_q
                out[f"depth_q{q}_h{h}"] = d_q
            out[f"volume_q50_h{h}"] = vol_per_msg * h
            scale = math.sqrt(h)
            out[f"mid_q10_h{h}"] = q_steps[0] * scale
            out[f"mid_q50_h{h}"] = q_steps[1] * h  # the drift adds up, the noise grows as sqrt(h)
            out[f"mid_q90_h{h}"] = q_steps[2] * scale
            out[f"p_up_h{h}"] = p_up
            out[f"p_down_h{h}"] = p_down
        return out

    def _levels(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q10, q50, q90 of a level series (B, T) with NaN gaps (level_forecasts' `baseline`)."""
        q = level_forecasts(x, self.halflife)["baseline"]
        return q[:, 0], q[:, 1], q[:, 2]

    @staticmethod
    def _ticks(windows: Sequence[Window], spread: np.ndarray) -> np.ndarray:
        """Venue units per tick, from each window's spread in units and in ticks (1 where unknown)."""
        units = np.array([w.best_ask - w.best_bid if w.best_ask > w.best_bid > 0 else 0 for w in windows], float)
        in_ticks = _last_valid(spread)
        ok = (units > 0) & (in_ticks > 0)
        return np.where(ok, units / np.where(ok, in_ticks, 1.0), 1.0)

    @staticmethod
    def _volume_per_message(windows: Sequence[Window], rows: np.ndarray) -> np.ndarray:
        kind = np.stack([w.kind for w in windows])
        traded = np.isin(kind, _TRADE_KINDS) & np.stack([w.mask for w in windows])
        size = np.stack([w.size for w in windows])
        return np.where(traded, size, 0).sum(axis=1) / np.maximum(rows.sum(axis=1), 1)

    @staticmethod
    def _anomaly(feats: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return intensity_anomaly(feats, rows)

    def explain(self, window: Window, prediction: Prediction) -> str:
        rows = window.features[window.row_mask]
        if len(rows) < _MIN_ROWS:
            return ""
        parts = []
        for name in _INTENSITIES:
            col = rows[:, _COL[name]].astype(np.float64)
            z = robust_z(col[:-1], float(col[-1]))
            if z > 2.0:
                parts.append(f"{name.removeprefix('log_')} z={z:.1f}")
        span = f"events {clock_span(int(window.start_ts), int(window.ts))}"
        return f"{', '.join(parts)} over {span}" if parts else ""
