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
from collections.abc import Sequence

import numpy as np

from orderbook.events import Kind
from orderbook.features import FEATURE_NAMES
from orderbook.windows import Window

from .forecaster import HORIZONS, Forecaster, Prediction

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_INTENSITIES = ("log_message_rate", "log_cancel_rate", "log_trade_rate")
_TRADE_KINDS = np.array([Kind.EXECUTE, Kind.TRADE], dtype=np.int8)
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


def robust_z(history: np.ndarray, value: float, floor: float = MAD_FLOOR) -> float:
    """(value - median) / (1.4826 max(MAD, floor)). The floor keeps a quiet history (most rows
    without a trade: MAD 0) from turning the first print into an infinite surprise."""
    med = float(np.median(history))
    mad = max(float(np.median(np.abs(history - med))), floor) * _MAD_TO_SIGMA
    return (value - med) / mad


class BaselineForecaster(Forecaster):
    name = "baseline-har-ewma"
    version = "1"

    def __init__(self, halflife: float = 8.0) -> None:
        self.halflife = halflife

    def predict(self, windows: Sequence[Window]) -> list[Prediction]:
        return [self._one(w) for w in windows]

    def _one(self, w: Window) -> Prediction:
        rows = w.features[w.row_mask]
        valid = rows[rows[:, _COL["valid"]] > 0] if len(rows) else rows
        out: Prediction = {}
        self._anomaly(rows, out)
        spread = valid[:, _COL["spread_ticks"]] if len(valid) else np.zeros(1, np.float32)
        depth = np.expm1(valid[:, _COL["log_depth_bid_5"]]) + np.expm1(valid[:, _COL["log_depth_ask_5"]]) \
            if len(valid) else np.zeros(1, np.float32)  # fmt: skip
        mid = valid[:, _COL["mid"]].astype(np.float64) if len(valid) else np.zeros(1)
        tick = self._tick(w, valid)
        steps = np.diff(mid) / tick if len(mid) > 1 else np.zeros(1)
        vol_per_msg = self._volume_per_message(w, max(len(rows), 1))
        for h in HORIZONS:
            self._levels(f"spread_q{{}}_h{h}", spread, out)
            self._levels(f"depth_q{{}}_h{h}", depth, out)
            out[f"volume_q50_h{h}"] = vol_per_msg * h
            scale = math.sqrt(h)
            q10, q50, q90 = np.quantile(steps, (0.1, 0.5, 0.9))
            out[f"mid_q10_h{h}"] = float(q10) * scale
            out[f"mid_q50_h{h}"] = float(q50) * h  # the drift adds up, the noise grows as sqrt(h)
            out[f"mid_q90_h{h}"] = float(q90) * scale
            out[f"p_up_h{h}"] = float(np.mean(steps > 0))
            out[f"p_down_h{h}"] = float(np.mean(steps < 0))
        return out

    def _levels(self, template: str, x: np.ndarray, out: Prediction) -> None:
        center = 0.5 * (har_level(x) + ewma(x, self.halflife))
        lo, hi = np.quantile(x - x.mean(), (0.1, 0.9))
        out[template.format(10)] = max(center + float(lo), 0.0)
        out[template.format(50)] = max(center, 0.0)
        out[template.format(90)] = max(center + float(hi), 0.0)

    @staticmethod
    def _tick(w: Window, valid: np.ndarray) -> float:
        """Venue units per tick, from the window's spread in units and in ticks."""
        if len(valid) and w.best_ask > w.best_bid > 0:
            s = float(valid[-1, _COL["spread_ticks"]])
            if s > 0:
                return (w.best_ask - w.best_bid) / s
        return 1.0

    @staticmethod
    def _volume_per_message(w: Window, n_rows: int) -> float:
        traded = np.isin(w.kind, _TRADE_KINDS) & w.mask
        return float(w.size[traded].sum()) / n_rows

    @staticmethod
    def _anomaly(rows: np.ndarray, out: Prediction) -> None:
        z = 0.0
        if len(rows) >= _MIN_ROWS:
            for name in _INTENSITIES:
                col = rows[:, _COL[name]].astype(np.float64)
                z = max(z, robust_z(col[:-1], float(col[-1])))
        p = math.erfc(z / math.sqrt(2.0)) if z > 0 else 1.0  # two-sided normal tail
        out["anomaly_nll"] = max(0.0, -math.log(max(p, 1e-300)))
        out["anomaly_score"] = 1.0 - p

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
        span = f"events {int(window.start_ts)}..{int(window.ts)} ns"
        return f"{', '.join(parts)} over {span}" if parts else ""
