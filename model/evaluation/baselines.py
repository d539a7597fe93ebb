"""The classic baselines the model is evaluated beside, recomputed on dataset windows.

- anomalies: the baseline forecaster's z-score (model.serving.baseline's intensity score) and an
  isolation forest (Liu, Ting & Zhou 2008; scikit-learn's, with a fixed random_state) fitted on the
  evaluated windows themselves, no labels: the unsupervised yardstick;
- liquidity: the baseline forecaster (HAR+EWMA centre), persistence (the last value), EWMA and HAR
  (model.serving.baseline's formulas, with the window's own residual band as quantiles); for the traded
  volume, persistence and EWMA of the book's own realized volumes (`volume_levels`).

They work from the dataset's feature rows un-normalized with the json's feature_mean/std, in the
targets' units (spread in ticks, depth and volume log1p(lots), mid in ticks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.inputs import FeatureNorm
from model.serving.baseline import intensity_anomaly, level_forecasts
from model.serving.forecaster import HORIZONS
from orderbook.features import FEATURE_NAMES, TRADE_KINDS
from orderbook.volume_record import HALFLIFE as VOLUME_HALFLIFE
from orderbook.volume_record import KEEP as VOLUME_KEEP
from orderbook.volume_record import MIN_KNOWN as VOLUME_MIN_KNOWN
from orderbook.volume_record import ewma_quantiles

LIQUIDITY_BASELINES = ("baseline", "persistence", "ewma", "har")
_TRADE_KINDS = np.array(sorted(TRADE_KINDS), dtype=np.int64)


def zscore_anomaly(raw: np.ndarray, row_mask: np.ndarray, names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The baseline forecaster's anomaly score on un-normalized rows (model.serving.baseline)."""
    return intensity_anomaly(raw, row_mask, names)[0]


def window_vectors(features: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
    """A window as one point for the isolation forest: its last row and its mean row (normalized units)."""
    n = np.maximum(row_mask.sum(axis=1, keepdims=True), 1)
    mean = np.where(row_mask[..., None], features, 0.0).sum(axis=1) / n
    return np.concatenate([features[:, -1], mean], axis=1)


def isolation_forest_scores(
    vectors: np.ndarray, n_trees: int = 100, sample_size: int = 256, seed: int = 0
) -> np.ndarray:
    """(B,) anomaly score of each point in (0, 1], higher = more anomalous: 2^(-E[h(x)] / c(psi)) of an
    isolation forest (Liu, Ting & Zhou 2008) of `n_trees` trees, each grown on `sample_size` points,
    fitted on `vectors` themselves. scikit-learn's score_samples is this score negated."""
    from sklearn.ensemble import IsolationForest

    x = np.asarray(vectors, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("isolation forest: no points to fit")
    forest = IsolationForest(n_estimators=n_trees, max_samples=min(sample_size, len(x)), random_state=seed)
    return -forest.fit(x).score_samples(x)


def baseline_forecasts(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], halflife: float = 8.0
) -> dict[str, dict[str, np.ndarray]]:
    """method -> target -> (B, 3) quantiles in the targets' units, recomputed from the windows.

    spread: levels of `spread_ticks`; depth: levels of top-5 bid + ask lots, log1p of the quantiles
    (a monotone map keeps quantiles); volume: the baseline's, a point forecast as model.serving.baseline:
    h x lots traded per message in the window's event tokens, the lots read as each size bucket's median
    (model.network.tokens), so an approximation of the worker's exact sizes; its persistence and EWMA
    from the book's own realized volumes (`volume_levels`; the baseline's point where the book has too few
    yet, and absent for a dataset without `message`, written before 2026-12-04); mid (persistence only: no
    move, a point forecast; the dataset holds no tick size to put the baseline's mid steps in ticks).
    """
    names = meta.get("feature_names") or list(FEATURE_NAMES)
    col = {n: i for i, n in enumerate(names)}
    raw = FeatureNorm.from_meta(meta).invert(arrays["features"], arrays["row_mask"])
    valid = arrays["row_mask"] & (np.nan_to_num(raw[..., col["valid"]]) > 0.5)
    spread = np.where(valid, raw[..., col["spread_ticks"]], np.nan)
    depth = np.where(
        valid, np.expm1(raw[..., col["log_depth_bid_5"]]) + np.expm1(raw[..., col["log_depth_ask_5"]]), np.nan
    )
    levels = {"spread": level_forecasts(spread, halflife), "depth": level_forecasts(depth, halflife)}
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in LIQUIDITY_BASELINES}
    for h in HORIZONS:
        for method in out:
            out[method][f"spread_h{h}"] = np.nan_to_num(levels["spread"][method])
            out[method][f"depth_h{h}"] = np.log1p(np.maximum(np.nan_to_num(levels["depth"][method]), 0.0))
        rate = traded_lots_per_message(arrays, meta)
        point = np.repeat(np.log1p(rate * h)[:, None], 3, axis=1)
        out["baseline"][f"volume_h{h}"] = point
        if "message" in arrays and "symbol" in arrays:
            last, ewma = volume_levels(arrays, h)
            known = np.isfinite(ewma[:, 0])
            out["persistence"][f"volume_h{h}"] = np.where(known[:, None], last, point)
            out["ewma"][f"volume_h{h}"] = np.where(known[:, None], ewma, point)
        out["persistence"][f"mid_h{h}"] = np.zeros((len(rate), 3))
    return out


def volume_records(arrays: dict[str, np.ndarray], horizons: Sequence[int]) -> np.ndarray:
    """(B, len(horizons), 3) each window's record of its book's realized volumes over each horizon (a
    window's `volume_record`), read off the dataset's targets: `volume_levels`' EWMA, NaN where unknown."""
    return np.stack([volume_levels(arrays, h)[1] for h in horizons], 1)


def volume_levels(
    arrays: dict[str, np.ndarray], h: int, halflife: float = VOLUME_HALFLIFE
) -> tuple[np.ndarray, np.ndarray]:
    """(persistence, EWMA), each (B, 3), of the traded volume over h messages, read off the same book's
    (source and symbol) earlier windows whose horizon had ended by this window's last message (`message`
    + h <= its own): the record each window builder keeps of its book (orderbook/volume_record.py, a
    window's `volume_record`), read off the dataset's targets. Persistence: the latest of them, a point
    forecast; EWMA: volume_record.ewma_quantiles of the newest VOLUME_KEEP (`halflife` in windows). NaN
    (both) where fewer than VOLUME_MIN_KNOWN are known: the book's first windows. Why: the volume's scale
    is the instrument's lot and its level the instrument's activity, which the window's rows state over a
    second at most; a new instrument's own record holds both (docs/design.md, "Model decisions")."""
    y = arrays[f"volume_h{h}"].astype(np.float64)  # known wherever the stream reached the horizon
    last, ewma = np.full((len(y), 3), np.nan), np.full((len(y), 3), np.nan)
    book = np.unique(np.char.add(arrays["seed"].astype(str), np.char.add("/", arrays["symbol"].astype(str))),
                     return_inverse=True)[1]  # fmt: skip
    for key in np.unique(book):
        idx = np.flatnonzero(book == key)
        idx = idx[np.argsort(arrays["message"][idx], kind="stable")]
        message = arrays["message"][idx]
        ended = np.searchsorted(message + h, message, side="right")  # windows 0..ended-1 are realized
        for i, n in zip(idx, ended, strict=True):
            if n < VOLUME_MIN_KNOWN:
                continue
            values = y[idx[max(0, n - VOLUME_KEEP) : n]]
            last[i] = values[-1]
            ewma[i] = ewma_quantiles(values, halflife)
    return last, ewma


def traded_lots_per_message(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Lots of the window's EXECUTE/TRADE tokens (bucket medians) / its real rows (messages)."""
    medians = np.asarray((meta.get("tokenizer") or {}).get("size_medians", [1.0]), np.float64)
    ids = np.clip(arrays["size"] - 1, 0, len(medians) - 1)
    traded = np.isin(arrays["kind"], _TRADE_KINDS) & arrays["mask"]
    lots = np.where(traded, medians[ids], 0.0).sum(axis=1)
    return lots / np.maximum(arrays["row_mask"].sum(axis=1), 1)
