"""Scoring rules and statistics of the held-out evaluation: pure functions of arrays (numpy; the ranking
metrics are scikit-learn's).

- anomaly ranking: AUROC (the Mann-Whitney U statistic from average ranks, tied scores counted half,
  Hanley & McNeil 1982) and average precision (the step-wise area under the precision-recall curve, a
  tie group of scores entering at once: scikit-learn's `average_precision_score`);
- liquidity: pinball loss rho_tau(u) = max(tau u, (tau - 1) u), u = y - q (Koenker & Bassett 1978) per
  quantile, and CRPS from K quantiles by the quantile-score approximation
  CRPS(F, y) = 2 int_0^1 rho_tau(y - F^-1(tau)) dtau ~ 2/K sum_k rho_tau_k(y - q_k) (Gneiting &
  Raftery 2007, sec. 4.2 / Laio & Tamea 2007): with few quantiles a coarse approximation, identical for
  every method compared, and a point forecast's CRPS is its MAE;
- calibration: empirical coverage P(y <= q_tau);
- next-event perplexity: exp(mean per-event NLL);
- paired differences of two methods on the same windows, and a model's gain over the best of several,
  with bootstrap intervals.

scikit-learn and scipy are imported by the ranking functions alone: the model's recalibration and
training use the pinball loss and the CRPS from here, and the served model should not load them. AUROC
is the U statistic over scipy's ranks rather than scikit-learn's `roc_auc_score`: the same value to
float rounding (tests/test_evaluate.py), but the direction bootstrap calls it ~10^4 times per
evaluation, and scikit-learn's input checks cost ~2 ms a call, 15x the ranking itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

TAUS = (0.1, 0.5, 0.9)


# --------------------------------------------------------------------------- ranking metrics


def _check_binary(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    return s, y


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie)/2: (rank sum of the positives - n1(n1+1)/2)
    / (n1 n0), ties given their average rank. NaN when a class is empty; NaN scores are refused."""
    from scipy.stats import rankdata

    s, y = _check_binary(scores, labels)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: a ranking of them is undefined")
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    return float((rankdata(s)[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """AP = sum over distinct thresholds of (recall_k - recall_{k-1}) * precision_k, a tie group of
    scores entering at once (scikit-learn's average_precision_score). NaN without positives."""
    from sklearn.metrics import average_precision_score

    s, y = _check_binary(scores, labels)
    if not y.any():
        return math.nan
    return float(average_precision_score(y, s))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0) through each distinct threshold
    (scikit-learn's roc_curve, every threshold kept). A class that is empty gives rates of 0."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    s, y = _check_binary(scores, labels)
    if len(s) == 0:
        return np.zeros(1), np.zeros(1)
    with warnings.catch_warnings():
        # an empty class: its rate is 0 / 0, drawn as 0 rather than left out of the plot
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, _ = sklearn_roc_curve(y, s, drop_intermediate=False)
    return np.nan_to_num(fpr, nan=0.0), np.nan_to_num(tpr, nan=0.0)


# --------------------------------------------------------------------------- forecast metrics


def pinball(y: np.ndarray, q: np.ndarray, tau: float) -> float:
    """Mean pinball loss rho_tau(y - q) = max(tau u, (tau - 1) u) (Koenker & Bassett 1978); NaN if empty."""
    u = np.asarray(y, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    if u.size == 0:
        return math.nan
    return float(np.mean(np.maximum(tau * u, (tau - 1.0) * u)))


def crps_per_window(y: np.ndarray, qs: np.ndarray, taus: Sequence[float] = TAUS) -> np.ndarray:
    """(B,) CRPS of each forecast approximated from its K quantiles: 2/K sum_k pinball_tau_k
    (Gneiting & Raftery 2007, CRPS = 2 int_0^1 QS_tau dtau). `qs` (B, K), columns in the order of `taus`."""
    qs = np.asarray(qs, dtype=np.float64)
    if qs.ndim != 2 or qs.shape[1] != len(taus):
        raise ValueError(f"quantiles of shape {qs.shape}: want (B, {len(taus)})")
    u = np.asarray(y, dtype=np.float64)[:, None] - qs
    tau = np.asarray(taus, dtype=np.float64)
    return 2.0 / len(taus) * np.maximum(tau * u, (tau - 1.0) * u).sum(axis=1)


def crps_quantiles(y: np.ndarray, qs: np.ndarray, taus: Sequence[float] = TAUS) -> float:
    """Mean CRPS over the forecasts (crps_per_window); NaN if none."""
    c = crps_per_window(y, qs, taus)
    return float(c.mean()) if c.size else math.nan


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over paired observations with a 95% percentile-bootstrap interval (the pairs
    resampled together, so what both forecasts find hard cancels out); NaNs if none."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [d[rng.integers(0, d.size, size=(min(200, n_boot - i), d.size))].mean(axis=1) for i in range(0, n_boot, 200)]
    )
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def gain_intervals(models: np.ndarray, references: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(M, 2): the 95% percentile-bootstrap interval of each model's gain 1 - mean(model) / min_r
    mean(reference r), from `models` (M, N) and `references` (R, N) scores of the same N windows. Every
    resample draws the windows once for all methods (paired: a window every method finds hard moves
    them alike), as multinomial counts, so a resample's means are one matrix product. Windows where a
    score is not finite are left out; NaNs with fewer than two, or where a resample's best reference
    scores 0."""
    c = np.concatenate([models, references]).astype(np.float64)
    c = c[:, np.isfinite(c).all(axis=0)]
    m, n = len(models), c.shape[1]
    if n < 2:
        return np.full((m, 2), math.nan)
    rng = np.random.default_rng(seed)
    gains = []
    for i in range(0, n_boot, 100):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, n_boot - i))
        means = counts @ c.T / n  # (resamples, M + R)
        with np.errstate(divide="ignore", invalid="ignore"):
            gains.append(1 - means[:, :m] / means[:, m:].min(axis=1, keepdims=True))
    g = np.concatenate(gains)
    ci = np.full((m, 2), math.nan)
    defined = np.isfinite(g).all(axis=0)  # not where a resample's best reference scores 0
    ci[defined] = np.percentile(g[:, defined], [2.5, 97.5], axis=0).T
    return ci


COVERAGE_TOLERANCE = 1e-4  # relative: float32 feature rows un-normalized put a 5-tick spread at 4.9999998


def coverage(y: np.ndarray, q: np.ndarray) -> float:
    """Empirical P(y <= q): a calibrated tau-quantile covers a fraction tau. NaN if empty. Ties
    count as covered within COVERAGE_TOLERANCE: spreads are whole ticks, so most forecasts that
    say "no change" tie with the outcome, and float rounding must not decide which side they fall."""
    y = np.asarray(y, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return float(np.mean(y <= q + COVERAGE_TOLERANCE * np.maximum(1.0, np.abs(q)))) if y.size else math.nan


def perplexity(nll: np.ndarray, valid: np.ndarray) -> float:
    """exp(mean NLL per real event), in nats (the per-event perplexity of the factorized likelihood)."""
    v = np.asarray(valid, dtype=bool)
    n = int(v.sum())
    return float(math.exp(float(np.asarray(nll, dtype=np.float64)[v].sum()) / n)) if n else math.nan
