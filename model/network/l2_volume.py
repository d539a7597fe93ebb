"""The traded-volume head of L2 books: the q10 / q50 / q90 of volume at each horizon (log1p of the lots
traded in the next h messages) for windows of a book of price levels, as a hurdle model on the newest
book row's trade statistics (OrderFlowModel.l2_volume_inputs), fitted after fine-tuning on the
training set's L2 windows, the rest of the model frozen (as the L2 depth head is). Order books (ITCH,
LOBSTER) keep the network's.

The model, per horizon, on the standardized inputs z:
- p0 = sigmoid(z @ a): the chance that nothing trades in the next h messages (a logistic regression);
- given a trade, log1p(lots) ~ Normal(z @ b, exp(z @ g)): a location-scale regression of the
  windows that traded;
- the quantile at level t: 0 where t <= p0, else the Normal's quantile at (t - p0) / (1 - p0), floored
  at 0.

Why: the target is zero-inflated and its scale is the instrument's lot (a Binance capture's lot is
1e-8 of a coin or contract: traded volume 15-24 in log1p(lots) where a simulated book's is 5). The
network read that scale off the two BTCUSDT captures it was trained on and served it on every book: on
spot ETHUSDT, which it never saw, its q50 at 10 messages averaged 8.6 where the outcome's median is
17.6, and its q90 covered 10% of the outcomes (ideal 90%). The newest row states the book's own scale:
|signed volume| over the last second (`signed_volume_log`) and its mean over the rows, the trade and
message rates, and from them the share of messages that trade, which sets p0. Left one capture out
(bench/l2_volume_probe.py; docs/design.md, "Model decisions"), volume CRPS at 10 / 100 messages on the
four Binance instruments the network never saw went from 6.2-10.0 / 4.4-7.3 (the network) to 2.2-3.6
/ 0.8-5.4. A linear quantile regression on the same inputs cannot put q10 and q50 at 0 on a book where
most windows of 10 messages trade nothing (COIN-M: 77-80%) and the rest trade 21-23: the hurdle's CRPS
is lower on 12 of the 13 captures x horizons with 200 windows or more (mean 2.26 against 2.81). The
book's own record of realized volumes, which the rows do not hold, does better than either: its EWMA
(the evaluation's classic) 1.84, and the hurdle with it as inputs 1.93 (docs/design.md says what that
means for the next step).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from model.evaluation.metrics import pinball

PARTS = ("p0", "loc", "log_scale")  # the three linear maps of each target: the coefficients' second axis
L2 = 1e-3  # the logistic regression's ridge on its standardized weights: a capture where every window
# trades (or none does) would send them to infinity
NEWTON_STEPS = 30
MIN_TRADED = 20  # windows that traded, at least, to fit the location and scale of a target on
CLIP = 10.0  # standardized inputs are clamped to +-CLIP: a book far outside the fitted ones extrapolates
# no further than that


def standardize(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, F + 1): the inputs standardized and clamped, then a column of ones (each map's intercept)."""
    z = np.clip((x - loc) / scale, -CLIP, CLIP)
    return np.concatenate([z, np.ones((len(z), 1))], 1)


def _logistic(z: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Ridge logistic regression (the intercept unpenalized) by Newton's method: (F + 1,)."""
    w = np.zeros(z.shape[1])
    ridge = np.full(z.shape[1], L2)
    ridge[-1] = 0.0
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - outcome) / len(z) + ridge * w
        hess = (z * (p * (1 - p))[:, None]).T @ z / len(z) + np.diag(ridge) + 1e-9 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def fit(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loc (F,), scale (F,), coef (H, 3, F + 1)): the inputs' standardization and, per volume target h,
    the PARTS' maps, fitted on the windows where valid[:, h]. `x` (N, F) are
    OrderFlowModel.l2_volume_inputs of the L2 windows, `y` (N, H) their volume targets."""
    ok_any = np.asarray(valid, bool).any(1)
    if not ok_any.any():
        raise ValueError("L2 volume head: no L2 window with a known volume")
    loc = x[ok_any].mean(0)
    scale = x[ok_any].std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)  # an input constant over the fit carries nothing
    z = standardize(x, loc, scale)
    coef = np.zeros((y.shape[1], len(PARTS), z.shape[1]))
    for h in range(y.shape[1]):
        ok = np.asarray(valid[:, h], bool)
        traded = ok & (y[:, h] > 0)
        if traded.sum() < MIN_TRADED:
            raise ValueError(f"L2 volume head: {int(traded.sum())} L2 windows traded at target {h}, "
                             f"fewer than {MIN_TRADED} to fit on")  # fmt: skip
        coef[h, 0] = _logistic(z[ok], (y[ok, h] <= 0).astype(np.float64))
        zt, yt = z[traded], y[traded, h]
        coef[h, 1] = np.linalg.lstsq(zt, yt, rcond=None)[0]
        residual = np.abs(yt - zt @ coef[h, 1])
        coef[h, 2] = np.linalg.lstsq(zt, np.log(residual + 1e-3), rcond=None)[0]
        # E|N(0, s)| = s sqrt(2 / pi): the intercept that makes the scale the residuals' own
        coef[h, 2, -1] += np.log(np.mean(residual / np.exp(zt @ coef[h, 2])) / np.sqrt(2.0 / np.pi))
    return loc, scale, coef


def predict(
    x: np.ndarray, loc: np.ndarray, scale: np.ndarray, coef: np.ndarray, quantiles: tuple[float, ...]
) -> np.ndarray:
    """(N, H, Q) the head's quantiles as OrderFlowModel.l2_volume_quantiles serves them."""
    z = standardize(x, loc, scale)
    p0 = 1.0 / (1.0 + np.exp(-np.einsum("nf,hf->nh", z, coef[:, 0])))
    mean = np.einsum("nf,hf->nh", z, coef[:, 1])
    sd = np.exp(np.einsum("nf,hf->nh", z, coef[:, 2]))
    out = np.zeros((len(x), coef.shape[0], len(quantiles)))
    normal = NormalDist()
    for k, t in enumerate(quantiles):
        level = np.clip((t - p0) / np.maximum(1.0 - p0, 1e-12), 1e-6, 1 - 1e-6)
        z_level = np.vectorize(normal.inv_cdf)(level)
        out[..., k] = np.where(t <= p0, 0.0, np.maximum(mean + sd * z_level, 0.0))
    return out


def out_of_fold(
    x: np.ndarray, y: np.ndarray, valid: np.ndarray, groups: np.ndarray, quantiles: tuple[float, ...]
) -> np.ndarray:
    """(N, H, Q) each window's quantiles by a head fitted on the windows of every other group (capture),
    as a new instrument is served; NaN for a group whose others are too few to fit on."""
    out = np.full((len(x), y.shape[1], len(quantiles)), np.nan)
    for g in np.unique(groups):
        k = groups == g
        try:
            loc, scale, coef = fit(x[~k], y[~k], valid[~k])
        except ValueError:
            continue
        out[k] = predict(x[k], loc, scale, coef, quantiles)
    return out


RECORD_WEIGHTS = np.round(np.arange(0.0, 1.0001, 0.05), 2)  # what `fit_record_weight` chooses from


def with_record(head: np.ndarray, record: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(N, H, Q): w x the head's quantiles + (1 - w) x the book's record's (a window's `volume_record`,
    orderbook/volume_record.py), quantile by quantile, per horizon's w; the head's alone where the record
    is not known (NaN). Both are sorted, so their combination is."""
    w = np.asarray(weight, np.float64)[None, :, None]
    known = np.isfinite(record).all(-1, keepdims=True)
    return np.where(known, w * head + (1.0 - w) * np.nan_to_num(record), head)


def fit_record_weight(
    head: np.ndarray, record: np.ndarray, y: np.ndarray, valid: np.ndarray, taus: tuple[float, ...]
) -> tuple[np.ndarray, list[int]]:
    """((H,) weights, the windows each was chosen on): per horizon the w of RECORD_WEIGHTS whose
    `with_record` has the lowest summed pinball loss over the windows whose target and record are known;
    1 (the head alone) where fewer than MIN_TRADED are. `head` should be out of sample (each capture's
    by a head fitted on the others: a head scored on its own fit looks better than it serves)."""
    weight, counts = np.ones(head.shape[1]), []
    for h in range(head.shape[1]):
        ok = np.asarray(valid[:, h], bool) & np.isfinite(record[:, h]).all(-1) & np.isfinite(head[:, h]).all(-1)
        counts.append(int(ok.sum()))
        if counts[-1] < MIN_TRADED:
            continue
        qh, rh, yh = head[ok, h], record[ok, h], y[ok, h]

        def loss(w: float, qh: np.ndarray = qh, rh: np.ndarray = rh, yh: np.ndarray = yh) -> float:
            c = w * qh + (1.0 - w) * rh
            return sum(pinball(yh, c[:, k], tau) for k, tau in enumerate(taus))

        weight[h] = min(RECORD_WEIGHTS, key=loss)
    return weight, counts
