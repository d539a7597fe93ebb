"""Mid-price direction at 10 and 100 messages, judged as the field judges it (issue 13).

The classes (FI-2010, Ntakaris et al. 2018; DeepLOB, Zhang, Zohren & Roberts 2019): down, stationary,
up, from the dataset's `mid_h{H}` target (mid at i+H less mid at i, in ticks). The threshold is fixed,
chosen once and not tuned per file: THRESHOLD_TICKS = 0.5, i.e. |move| < 0.5 tick is stationary, a move
of at least 0.5 tick either way is up / down. The mid lives on a half-tick grid (mid = (bid + ask) / 2),
so "stationary" is "the mid did not move" and the smallest move, one side by one tick, counts as a move.

Methods, each giving (B, 3) class probabilities (down, stationary, up):

- `model`: the checkpoint's direction head (model/network/direction.py: down / stationary / up on the
  network's window state, fitted on the training windows after fine-tuning), what the served p_up_h /
  p_down_h are (stationary = 1 - both).
- `model (mid quantiles)`: the checkpoint's three mid quantiles (q10, q50, q90) read as the
  piecewise-linear CDF F (model.serving.orderflow.prob_above_zero's), cut half-way between the grid
  points: down = F(-THRESHOLD/2), up = 1 - F(THRESHOLD/2), stationary = the rest (a continuity
  correction: the targets are discrete, the CDF is not). What p_up / p_down were before the head.
- A checkpoint without a fitted head (written before it existed): `model` is the quantile reading above
  and `model (served p_up/p_down)` its served pair, P(X > 0) and P(X < 0) of a continuous CDF, which sum
  to 1 (stationary 0): shown so the table says what those fields are worth as a three-class forecast.
- `prior`: the training windows' class frequencies, for every window (chance).
- `queue imbalance LR` (Gould & Bonart 2016): multinomial logistic regression on the best-level queue
  imbalance (Q_b - Q_a) / (Q_b + Q_a) of the window's newest book-state row.
- `multi-level OFI LR` (Cont, Kukanov & Stoikov 2014; Xu, Gould & Howison 2019): multinomial logistic
  regression on the rows' depth-normalized multi-level OFI, levels 1..L (L = the `ofi_*` columns the rows
  carry, 10 by default): the newest row's value (OFI summed with a 1 s half-life up to the window's end)
  and its mean over the window's rows (the OFI over the window's span), standardized on the training set.
- `DeepLOB-style CNN+LSTM` (after Zhang, Zohren & Roberts 2019, small): the rows do not hold raw top-10
  prices and sizes, so it reads the window's book-state rows as they are (T = 32 rows of the FeatureState
  columns, normalized by the training set's feature mean/std, the absolute `mid` column left out, plus
  the row mask as one more channel; padded rows 0): two causal temporal convolutions (kernel 4, 16
  channels, LeakyReLU), an inception module (kernels 1, 3, 5 and a max-pool branch, 8 channels each), an LSTM
  (32 units) whose last state feeds a linear layer to the 3 classes; cross-entropy, Adam (1e-3), batch
  64, DEEPLOB_STEPS steps on CPU, seeded. DeepLOB's (1 x 2) convolutions that pair a level's price with
  its size have no counterpart in these rows and are left out.

The baselines are fitted on training windows (a training dataset file: `direction_train`, else the
first model's training file where it is here) and scored on the evaluated (held-out) windows; with no
training file, they are cross-fitted over the evaluated seeds (two folds of alternate seeds: each seed
scored by the fit on the other fold), which is still held out by seed. Metrics per source (seed) and
horizon, and over all windows: macro F1 (argmax class), macro one-vs-rest AUC (over the classes present
with both outcomes), multiclass Brier score (sum over the 3 classes of (p - 1{class})^2, averaged), each
with a 95% percentile bootstrap interval over windows (BOOTSTRAP resamples, seeded).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.evaluation.metrics import auroc
from model.inputs import FeatureNorm
from model.network.direction import DIRECTIONS, THRESHOLD_TICKS, direction_labels
from orderbook.features import FEATURE_NAMES

CLASSES = DIRECTIONS
HORIZONS = (10, 100)
BOOTSTRAP = 200
MODEL = "model"
SERVED = "model (served p_up/p_down)"
QUANTILE_READING = "model (mid quantiles)"
AFTER_EARNINGS = "after earnings headlines"
EARNINGS_NEWS = (1, 2)  # model.training.dataset.NEWS_KINDS' negative and positive: "XYZ misses / beats Q3 earnings"
PRIOR = "prior"
QI = "queue imbalance LR"
OFI = "multi-level OFI LR"
DEEPLOB = "DeepLOB-style CNN+LSTM"
DEEPLOB_STEPS = 400


# --------------------------------------------------------------------------- classes and metrics


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over the classes that occur (as outcome or as argmax) of 2TP / (2TP + FP + FN)."""
    y, pred = np.asarray(y), np.asarray(p).argmax(1)
    f1 = []
    for c in np.union1d(y, pred):
        tp = np.sum((pred == c) & (y == c))
        f1.append(2 * tp / (2 * tp + np.sum((pred == c) & (y != c)) + np.sum((pred != c) & (y == c))))
    return float(np.mean(f1)) if f1 else math.nan


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes with both outcomes present; NaN if none has."""
    y, p = np.asarray(y), np.asarray(p)
    aucs = [auroc(p[:, c], y == c) for c in range(p.shape[1]) if 0 < np.sum(y == c) < len(y)]
    return float(np.mean(aucs)) if aucs else math.nan


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Multiclass Brier score: mean over windows of sum_c (p_c - 1{y = c})^2 (0 perfect, 2 worst)."""
    y, p = np.asarray(y), np.asarray(p, np.float64)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if len(y) else math.nan


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"macro F1": macro_f1, "AUC": macro_auc, "Brier": brier}


def bootstrap(
    y: np.ndarray,
    p: np.ndarray,
    fn: Callable[[np.ndarray, np.ndarray], float],
    n: int = BOOTSTRAP,
    seed: int = 0,
    drawn: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(value, 2.5%, 97.5%) of `fn` over windows resampled with replacement (NaN resamples dropped).
    `drawn`: these windows' `draws` (same n and seed) where already made."""
    value = fn(y, p)
    if len(y) < 2 or n <= 0:
        return value, math.nan, math.nan
    return value, *_interval(draws(y, p, fn, n, seed) if drawn is None else drawn)


def paired_bootstrap(
    y: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    fn: Callable[[np.ndarray, np.ndarray], float],
    n: int = BOOTSTRAP,
    seed: int = 0,
    drawn: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float, float]:
    """(fn(y, p) - fn(y, q), 2.5%, 97.5%): the difference of two methods' `fn` on the same windows, its
    interval over windows resampled together for both (those `bootstrap` draws), so what both find hard
    cancels out: two marginal intervals that overlap can still hold a difference that is not chance."""
    value = fn(y, p) - fn(y, q)
    if len(y) < 2 or n <= 0:
        return value, math.nan, math.nan
    p_draws, q_draws = (draws(y, p, fn, n, seed), draws(y, q, fn, n, seed)) if drawn is None else drawn
    return value, *_interval(p_draws - q_draws)


def draws(
    y: np.ndarray, p: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], float], n: int = BOOTSTRAP, seed: int = 0
) -> np.ndarray:
    """(n,) `fn` on each resample of the windows: the same resamples for any `p` of as many windows and the
    same seed, so two methods' draws subtract into their paired difference's."""
    resamples = _resamples(len(y), n, seed)
    if fn is macro_auc:
        return _macro_auc_draws(np.asarray(y), np.asarray(p), resamples)
    return np.array([fn(y[i], p[i]) for i in resamples], np.float64)


def _macro_auc_draws(y: np.ndarray, p: np.ndarray, resamples: Iterator[np.ndarray]) -> np.ndarray:
    """`macro_auc` of each resample, the windows ranked once: a resample is each window counted as often
    as it was drawn, and a class's AUC the drawn positives' share of drawn negatives scored below them,
    ties counted half (the U statistic over average ranks that `auroc` computes, to rounding). Ranking
    every resample anew took most of `evaluate --direction-loo`'s intervals."""
    classes = []
    for c in range(p.shape[1]):
        order = np.argsort(p[:, c], kind="stable")
        scores = p[order, c]
        ties = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])  # where each run of equal scores starts
        classes.append((order, ties, (y == c)[order]))
    out = []
    for i in resamples:
        counts = np.bincount(i, minlength=len(y)).astype(np.float64)
        aucs = []
        for order, ties, positive in classes:
            drawn = counts[order]
            pos = np.add.reduceat(drawn * positive, ties)
            neg = np.add.reduceat(drawn * ~positive, ties)
            n_pos, n_neg = pos.sum(), neg.sum()
            if n_pos > 0 and n_neg > 0:
                aucs.append(float(pos @ (np.cumsum(neg) - 0.5 * neg)) / (n_pos * n_neg))
        out.append(np.mean(aucs) if aucs else math.nan)
    return np.array(out, np.float64)


class _Draws:
    """Each (method, metric, windows) resampled once: a method's interval and its paired differences with
    every rival scored on the same windows share one set of draws."""

    def __init__(self, y: np.ndarray, n: int) -> None:
        self.y, self.n = y, n
        self._seen: dict[tuple[str, str, bytes], np.ndarray] = {}

    def __call__(self, method: str, p: np.ndarray, metric: str, keep: np.ndarray) -> np.ndarray:
        key = (method, metric, np.packbits(keep).tobytes())
        if key not in self._seen:
            self._seen[key] = draws(self.y[keep], p[keep], METRICS[metric], self.n)
        return self._seen[key]


def _resamples(windows: int, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, windows, windows) for _ in range(n))


def _interval(values: np.ndarray) -> tuple[float, float]:
    kept = values[~np.isnan(values)]
    if not kept.size:
        return math.nan, math.nan
    lo, hi = np.percentile(kept, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- the model's probabilities


def quantile_cdf(q: np.ndarray, x: float) -> np.ndarray:
    """F(x) per row of `q` (B, 3: q10, q50, q90): linear between (q10, .1), (q50, .5), (q90, .9), flat
    at .1 / .9 outside (model.serving.orderflow.prob_above_zero's CDF); tied quantiles are pulled apart
    by a hair so that a point forecast steps from .1 to .9 at its value."""
    xs = np.maximum.accumulate(np.asarray(q, np.float64), axis=1) + np.array([0.0, 1e-9, 2e-9])
    ps = (0.1, 0.5, 0.9)
    out = np.where(x < xs[:, 0], 0.1, 0.9)
    for k in range(2):
        a, b = xs[:, k], xs[:, k + 1]
        inside = (x >= a) & (x < b)
        out = np.where(inside, ps[k] + (ps[k + 1] - ps[k]) * (x - a) / (b - a), out)
    return out


def model_probs(q: np.ndarray, threshold: float = THRESHOLD_TICKS) -> np.ndarray:
    """(B, 3) down / stationary / up from the mid quantiles, cut at +-threshold/2 (module doc)."""
    down = quantile_cdf(q, -threshold / 2)
    up = 1.0 - quantile_cdf(q, threshold / 2)
    return np.stack([down, 1.0 - up - down, up], axis=1)


def served_probs(q: np.ndarray) -> np.ndarray:
    """(B, 3) from the served p_up / p_down (prob_above_zero), stationary = 1 - both (clipped at 0)."""
    from model.serving.orderflow import prob_above_zero

    q = np.asarray(q, np.float64)
    up, down = prob_above_zero(q[:, 0], q[:, 1], q[:, 2])
    return np.stack([down, np.clip(1.0 - up - down, 0.0, None), up], axis=1)


# --------------------------------------------------------------------------- the baselines' inputs


def newest_rows(raw: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
    """(B, F) each window's newest real book-state row (zeros where a window has none)."""
    has = row_mask.any(1)
    last = row_mask.shape[1] - 1 - np.argmax(row_mask[:, ::-1], axis=1)
    out = raw[np.arange(len(raw)), last]
    return np.where(has[:, None] & np.isfinite(out), out, 0.0)


def qi_inputs(raw: np.ndarray, row_mask: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(B, 1): the newest row's best-level queue imbalance."""
    return newest_rows(raw, row_mask)[:, [list(names).index("queue_imbalance")]]


def ofi_inputs(raw: np.ndarray, row_mask: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(B, 2L): the newest row's ofi_1..ofi_L, then their mean over the window's rows."""
    cols = [i for i, n in enumerate(names) if n.startswith("ofi_")]
    if not cols:
        raise ValueError("the book-state rows carry no ofi_* columns")
    newest = newest_rows(raw, row_mask)[:, cols]
    x = np.where(row_mask[..., None], raw[..., cols], 0.0)
    mean = x.sum(1) / np.maximum(row_mask.sum(1), 1)[:, None]
    return np.concatenate([newest, np.nan_to_num(mean)], axis=1)


def window_inputs(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """method -> (B, d) inputs of each baseline, from a dataset's normalized rows (undone to their units)."""
    names = meta.get("feature_names") or FEATURE_NAMES
    raw = FeatureNorm.from_meta(meta).invert(arrays["features"], arrays["row_mask"])
    return {QI: qi_inputs(raw, arrays["row_mask"], names), OFI: ofi_inputs(raw, arrays["row_mask"], names)}


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Multinomial logistic regression (standardized inputs, L2, C=1) fitted on the training windows:
    (B_test, 3) probabilities; a class the training set lacks gets 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((len(x_test), len(CLASSES)))
    present = np.unique(y_train)
    if len(present) < 2:
        out[:, present] = 1.0
        return out
    scaler = StandardScaler().fit(x_train)
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x_train), y_train)
    out[:, lr.classes_] = lr.predict_proba(scaler.transform(x_test))
    return out


def deeplob_inputs(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], norm_meta: dict[str, Any] | None = None
) -> np.ndarray:
    """(B, T, F) float32: the rows in their units, normalized by `norm_meta`'s feature mean/std (default
    `meta`'s), the `mid` column dropped, the row mask appended; padded rows 0."""
    names = list(meta.get("feature_names") or FEATURE_NAMES)
    rows = arrays["row_mask"]
    raw = FeatureNorm.from_meta(meta).invert(arrays["features"], rows)
    x = FeatureNorm.from_meta(norm_meta or meta).apply(np.nan_to_num(raw), rows)
    keep = [i for i, n in enumerate(names) if n != "mid"]
    return np.concatenate([x[..., keep], rows[..., None].astype(np.float32)], axis=2)


def _deeplob_net(n_in: int) -> Any:
    import torch
    from torch import nn

    class Inception(nn.Module):
        def __init__(self, c_in: int, c: int) -> None:
            super().__init__()
            self.branches = nn.ModuleList(
                [nn.Sequential(nn.Conv1d(c_in, c, 1), nn.LeakyReLU(0.01))]
                + [
                    nn.Sequential(nn.Conv1d(c_in, c, 1), nn.LeakyReLU(0.01), nn.Conv1d(c, c, k, padding=k // 2))
                    for k in (3, 5)
                ]
                + [nn.Sequential(nn.MaxPool1d(3, 1, 1), nn.Conv1d(c_in, c, 1))]
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.leaky_relu(torch.cat([b(x) for b in self.branches], 1), 0.01)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.ConstantPad1d((3, 0), 0.0),  # causal: a row sees itself and the 3 before it
                nn.Conv1d(n_in, 16, 4),
                nn.LeakyReLU(0.01),
                nn.ConstantPad1d((3, 0), 0.0),
                nn.Conv1d(16, 16, 4),
                nn.LeakyReLU(0.01),
            )
            self.inception = Inception(16, 8)
            self.lstm = nn.LSTM(32, 32, batch_first=True)
            self.out = nn.Linear(32, len(CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, F)
            h = self.inception(self.conv(x.transpose(1, 2))).transpose(1, 2)
            _, (last, _) = self.lstm(h)
            return self.out(last[-1])

    return Net()


def deeplob_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, steps: int = DEEPLOB_STEPS, seed: int = 0
) -> np.ndarray:
    """Train the DeepLOB-style net (module doc) for `steps` Adam steps on (x_train, y_train); (B_test, 3)
    softmax probabilities."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _deeplob_net(x_train.shape[2])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train)
    net.train()
    for _ in range(steps if len(xt) else 0):
        idx = torch.randint(0, len(xt), (min(64, len(xt)),), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    out = []
    with torch.inference_mode():
        for lo in range(0, len(x_test), 1024):
            out.append(net(torch.from_numpy(np.ascontiguousarray(x_test[lo : lo + 1024]))).softmax(-1).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(CLASSES)))


def prior_probs(y_train: np.ndarray, n: int) -> np.ndarray:
    freq = np.bincount(y_train, minlength=len(CLASSES)) / max(len(y_train), 1)
    return np.tile(freq, (n, 1))


def _valid(arrays: dict[str, np.ndarray], h: int, horizons: Sequence[int]) -> np.ndarray:
    return arrays["target_mask"][:, list(horizons).index(h)] & np.isfinite(arrays[f"mid_h{h}"])


def baseline_probs(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    h: int,
    train: tuple[dict[str, np.ndarray], dict[str, Any]] | None,
    deeplob_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """method -> (B, 3) for the evaluated windows at horizon `h` (rows of windows without a target are
    NaN): fitted on `train` (arrays, meta), else cross-fitted over the evaluated seeds (module doc);
    {} when neither is possible (one seed and no training file). `deeplob_steps` 0: no DeepLOB
    (None: DEEPLOB_STEPS)."""
    deeplob_steps = DEEPLOB_STEPS if deeplob_steps is None else deeplob_steps
    horizons = meta.get("horizons") or HORIZONS
    x_eval = window_inputs(arrays, meta)
    if deeplob_steps:
        x_eval[DEEPLOB] = deeplob_inputs(arrays, meta, train[1] if train is not None else None)
    n = len(arrays["label"])
    out = {m: np.full((n, len(CLASSES)), np.nan) for m in (PRIOR, *x_eval)}
    ok = _valid(arrays, h, horizons)
    if train is not None:
        t_arrays, t_meta = train
        t_ok = _valid(t_arrays, h, t_meta.get("horizons") or HORIZONS)
        y_t = direction_labels(t_arrays[f"mid_h{h}"][t_ok])
        x_t = window_inputs(t_arrays, t_meta)
        if deeplob_steps:
            x_t[DEEPLOB] = deeplob_inputs(t_arrays, t_meta)
        folds = [(ok, y_t, {m: x[t_ok] for m, x in x_t.items()})]
    else:
        seeds = np.unique(arrays["seed"])
        if len(seeds) < 2:
            return {}
        folds = []
        for k in range(2):
            test_seeds = seeds[k::2]
            test = ok & np.isin(arrays["seed"], test_seeds)
            fit = ok & ~np.isin(arrays["seed"], test_seeds)
            folds.append((test, direction_labels(arrays[f"mid_h{h}"][fit]), {m: x[fit] for m, x in x_eval.items()}))
    for test, y_fit, x_fit in folds:
        out[PRIOR][test] = prior_probs(y_fit, int(test.sum()))
        for m in (QI, OFI):
            out[m][test] = fit_predict(x_fit[m], y_fit, x_eval[m][test])
        if deeplob_steps:
            out[DEEPLOB][test] = deeplob_fit_predict(x_fit[DEEPLOB], y_fit, x_eval[DEEPLOB][test], deeplob_steps)
    return out


# --------------------------------------------------------------------------- the table


def direction_rows(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    model_quantiles: dict[str, dict[str, np.ndarray]] | None = None,
    train: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None,
    n_boot: int = BOOTSTRAP,
    deeplob_steps: int | None = None,
    model_direction: dict[str, dict[str, np.ndarray]] | None = None,
    extra: dict[int, dict[str, np.ndarray]] | None = None,
    compare: dict[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (source, horizon, method): source ("all", each seed present, and AFTER_EARNINGS: the
    windows holding an earnings headline, where there are any), n, the class
    shares, and each METRICS value with its 95% bootstrap interval. `model_quantiles`: model name ->
    {"mid_h10": (B, 3), ...} (ModelOutputs.quantiles); `model_direction`: model name -> its direction
    head's {"mid_h10": (B, 3) probabilities, ...} where fitted (ModelOutputs.direction).
    `deeplob_steps`: baseline_probs. `extra`: horizon -> more methods' (B, 3) probabilities, NaN rows
    where a method gives none (the left-one-out methods of model.evaluation.direction_folds). `compare`:
    method -> rivals; that method's rows get f"{metric} - {rival}" = [difference, lo, hi] for each rival
    (paired_bootstrap, on the windows both score)."""
    horizons = meta.get("horizons") or HORIZONS
    names = {s.get("seed"): s.get("name") for s in meta.get("sources", [])}
    groups = {"all": np.ones(len(arrays["label"]), bool)}
    seeds = np.unique(arrays["seed"])
    if len(seeds) > 1:
        groups |= {f"{names.get(int(s), 'seed')} ({int(s)})": arrays["seed"] == s for s in seeds}
    # the windows after an earnings headline (the simulator's positive and negative kinds, which move
    # the price their way): does the signal read the text, not only the book?
    earnings = np.isin(arrays["news_kind"], EARNINGS_NEWS) if "news_kind" in arrays else None
    if earnings is not None and earnings.any():
        groups[AFTER_EARNINGS] = earnings
    rows = []
    for h in (h for h in HORIZONS if h in horizons):
        ok = _valid(arrays, h, horizons)
        y_all = direction_labels(arrays[f"mid_h{h}"])
        probs: dict[str, np.ndarray] = {}
        for name, qs in (model_quantiles or {}).items():
            target = f"mid_h{h}"
            if target not in qs:
                continue
            head = (model_direction or {}).get(name, {}).get(target)
            if head is not None:
                probs[name if name != "model" else MODEL] = head
                probs[f"{name} (mid quantiles)" if name != "model" else QUANTILE_READING] = model_probs(qs[target])
            else:
                probs[name if name != "model" else MODEL] = model_probs(qs[target])
                probs[f"{name} (served p_up/p_down)" if name != "model" else SERVED] = served_probs(qs[target])
        probs |= baseline_probs(arrays, meta, h, train, deeplob_steps)
        probs |= (extra or {}).get(h, {})
        for group, keep in groups.items():
            sel = ok & keep
            y = y_all[sel]
            shares = np.bincount(y, minlength=3) / max(len(y), 1)
            resampled = _Draws(y, n_boot)
            for method, p in probs.items():
                ps = p[sel]
                scored = np.isfinite(ps).all(1)
                row: dict[str, Any] = {"source": group, "horizon": h, "method": method, "n": int(scored.sum())}
                row |= {f"share {c}": float(s) for c, s in zip(CLASSES, shares, strict=True)}
                for mname, fn in METRICS.items():
                    v, lo, hi = (
                        bootstrap(y[scored], ps[scored], fn, n_boot, drawn=resampled(method, ps, mname, scored))
                        if scored.any()
                        else (math.nan,) * 3
                    )
                    row |= {mname: v, f"{mname} lo": lo, f"{mname} hi": hi}
                for rival in (compare or {}).get(method, ()):
                    if rival not in probs:
                        continue
                    qs = probs[rival][sel]
                    both = scored & np.isfinite(qs).all(1)
                    for mname, fn in METRICS.items():
                        d = (math.nan,) * 3
                        if both.any():
                            pair = (resampled(method, ps, mname, both), resampled(rival, qs, mname, both))
                            d = paired_bootstrap(y[both], ps[both], qs[both], fn, n_boot, drawn=pair)
                        row[f"{mname} - {rival}"] = list(d)
                rows.append(row)
    return rows


def _fmt(v: float, lo: float, hi: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else f"{v:.3f}"


def direction_markdown(rows: list[dict[str, Any]], fitted_on: str) -> str:
    lines = [
        "# Mid-price direction (down / stationary / up)",
        "",
        f"Stationary: |mid move| < {THRESHOLD_TICKS} tick at the horizon (messages of the window's symbol); "
        "the mid moves on a half-tick grid, so stationary is an unchanged mid. Metrics with 95% bootstrap "
        f"intervals ({BOOTSTRAP} resamples of the windows). Baselines fitted on: {fitted_on}.",
        "",
        "| source | h | method | n | down / stat / up | macro F1 | AUC (OvR macro) | Brier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shares = " / ".join(f"{r[f'share {c}']:.2f}" for c in CLASSES)
        cells = [_fmt(r[m], r[f"{m} lo"], r[f"{m} hi"]) for m in METRICS]
        head = f"| {r['source']} | {r['horizon']} | {r['method']} | {r['n']} | {shares} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_direction(out_dir: str | Path, rows: list[dict[str, Any]], fitted_on: str, appendix: str = "") -> None:
    """direction.md (then `appendix`, more markdown) and direction.csv into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "direction.md").write_text(direction_markdown(rows, fitted_on) + appendix)
    if rows:
        with open(out / "direction.csv", "w", newline="") as f:
            # the columns every row has; the paired differences of some methods are in metrics.json
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if all(k in r for r in rows)], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
