"""Held-out evaluation of the order-flow model beside its baselines (issue 5, `megatrading evaluate`).

Metrics (pure functions, each with its source):
- anomaly ranking: AUROC (the Mann-Whitney U statistic with mid-ranks for ties, Hanley & McNeil 1982)
  and average precision (AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, ties
  grouped: the step-wise area under the precision-recall curve, as in scikit-learn), overall (any kind
  vs normal) and per anomaly kind (windows of that kind vs normal windows; the other kinds left out);
- liquidity: pinball loss rho_tau(u) = max(tau u, (tau - 1) u), u = y - q (Koenker & Bassett 1978) per
  quantile, and CRPS from the three quantiles by the quantile-score approximation
  CRPS(F, y) = 2 int_0^1 rho_tau(y - F^-1(tau)) dtau ~ 2/K sum_k rho_tau_k(y - q_k) (Gneiting &
  Raftery 2007, sec. 4.2 / Laio & Tamea 2007); with K = 3 quantiles (0.1, 0.5, 0.9) it is a coarse
  approximation, identical for every method compared, and a point forecast's CRPS is its MAE;
- calibration: empirical coverage P(y <= q_tau) per target and quantile;
- next-event perplexity: exp(mean per-event NLL) over every real (event, next event) pair;
- an isolation forest (Liu, Ting & Zhou 2008) as the unsupervised yardstick for anomalies.

The evaluation run (`evaluate`) reads a dataset file of the contract (model/dataset.py), refuses data the
model was trained on (the seeds of the checkpoint's training file), and computes every metric on the same
windows for: each model directory given (several give an ablation side by side: a model trained without
the text or without the book series), the z-score baseline (model/baseline.py's anomaly score), the
isolation forest, and for liquidity the baseline forecaster (HAR+EWMA centre), persistence (the last
value), EWMA and HAR (model/baseline.py's formulas, with the window's own residual band as quantiles).
Baselines are recomputed from the dataset's feature rows un-normalized with the json's feature_mean/std,
in the targets' units (spread in ticks, depth and volume log1p(lots), mid in ticks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.inputs import FeatureNorm
from model.serving.baseline import intensity_anomaly, level_forecasts
from model.serving.forecaster import HORIZONS
from model.sim.anomalies import KINDS as ANOMALY_KINDS
from orderbook.features import FEATURE_NAMES, TRADE_KINDS

TAUS = (0.1, 0.5, 0.9)
TARGET_FIELDS = ("spread", "depth", "volume", "mid")
TARGETS = tuple(f"{t}_h{h}" for h in HORIZONS for t in TARGET_FIELDS)
_TRADE_KINDS = np.array(sorted(TRADE_KINDS), dtype=np.int64)
EULER_GAMMA = 0.5772156649015329


# --------------------------------------------------------------------------- ranking metrics


def _check_binary(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    return s, y


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie)/2: the Mann-Whitney U over n+ n-, with
    mid-ranks for tied scores (Hanley & McNeil 1982). NaN when a class is empty."""
    s, y = _check_binary(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s))
    # mid-ranks: every member of a run of equal scores gets the run's mean rank (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _threshold_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, true positives, false positives) counting scores >= each distinct threshold."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last index of each tie group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """AP = sum over distinct thresholds of (recall_k - recall_{k-1}) * precision_k, a tie group of
    scores entering at once (the step-wise PR area of scikit-learn's average_precision_score).
    NaN without positives."""
    s, y = _check_binary(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or len(s) == 0:
        return math.nan
    _, tp, fp = _threshold_counts(s, y)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0) through each distinct threshold."""
    s, y = _check_binary(scores, labels)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    if len(s) == 0:
        return np.zeros(1), np.zeros(1)
    _, tp, fp = _threshold_counts(s, y)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


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


# --------------------------------------------------------------------------- isolation forest


def average_path_length(n: np.ndarray | float) -> np.ndarray:
    """c(n) = 2 H(n-1) - 2 (n-1)/n, the mean unsuccessful-search path in a BST of n points, with
    H(i) ~ ln(i) + Euler's gamma; c(2) = 1, c(n <= 1) = 0 (Liu, Ting & Zhou 2008, eq. 1)."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 2.0)
    c = 2.0 * (np.log(safe - 1.0) + EULER_GAMMA) - 2.0 * (safe - 1.0) / safe
    return np.where(n > 2, c, np.where(n == 2, 1.0, 0.0))


@dataclass
class _Tree:
    feature: np.ndarray  # -1 at a leaf
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    size: np.ndarray  # points that reached the node (leaves: for the c(size) correction)
    depth: np.ndarray


def _grow(x: np.ndarray, height_limit: int, rng: np.random.Generator) -> _Tree:
    """One isolation tree: split on a random feature at a uniform value between its min and max,
    until a node holds one point, its points are all equal, or the height limit is reached."""
    feature, threshold, left, right, size, depth = [], [], [], [], [], []
    stack = [(np.arange(len(x)), 0, -1, False)]
    while stack:
        idx, d, parent, is_right = stack.pop()
        node = len(feature)
        if parent >= 0:
            (right if is_right else left)[parent] = node
        feature.append(-1), threshold.append(0.0), left.append(-1), right.append(-1)
        size.append(len(idx)), depth.append(d)
        if d >= height_limit or len(idx) <= 1:
            continue
        pts = x[idx]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        splittable = np.flatnonzero(hi > lo)
        if len(splittable) == 0:
            continue
        f = int(rng.choice(splittable))
        t = float(rng.uniform(lo[f], hi[f]))
        go_left = pts[:, f] < t
        feature[node], threshold[node] = f, t
        stack.append((idx[~go_left], d + 1, node, True))
        stack.append((idx[go_left], d + 1, node, False))
    arr = np.asarray
    return _Tree(arr(feature), arr(threshold, float), arr(left), arr(right), arr(size), arr(depth))


class IsolationForest:
    """Liu, Ting & Zhou (2008): `n_trees` random trees, each grown on a subsample of `sample_size`
    points to height ceil(log2 sample_size); an outlier is isolated in few splits. Score
    s(x) = 2^(-E[h(x)] / c(psi)) in (0, 1], higher = more anomalous, where h(x) is the depth of
    the leaf x lands in plus c(leaf size) for the points the height limit left unsplit."""

    def __init__(self, n_trees: int = 100, sample_size: int = 256, seed: int = 0) -> None:
        self.n_trees, self.sample_size, self.seed = n_trees, sample_size, seed
        self.trees: list[_Tree] = []
        self.psi = sample_size

    def fit(self, x: np.ndarray) -> IsolationForest:
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            raise ValueError("isolation forest: no points to fit")
        rng = np.random.default_rng(self.seed)
        self.psi = min(self.sample_size, len(x))
        limit = max(1, math.ceil(math.log2(max(self.psi, 2))))
        self.trees = [_grow(x[rng.choice(len(x), self.psi, replace=False)], limit, rng) for _ in range(self.n_trees)]
        return self

    def path_lengths(self, x: np.ndarray) -> np.ndarray:
        """E[h(x)] over the trees, (B,)."""
        x = np.asarray(x, dtype=np.float64)
        total = np.zeros(len(x))
        rows = np.arange(len(x))
        for t in self.trees:
            node = np.zeros(len(x), dtype=np.int64)
            while True:
                inner = t.feature[node] >= 0
                if not inner.any():
                    break
                f = np.where(inner, t.feature[node], 0)
                go_left = x[rows, f] < t.threshold[node]
                node = np.where(inner, np.where(go_left, t.left[node], t.right[node]), node)
            total += t.depth[node] + average_path_length(t.size[node])
        return total / max(len(self.trees), 1)

    def score(self, x: np.ndarray) -> np.ndarray:
        if not self.trees:
            raise RuntimeError("isolation forest: fit() first")
        c = float(average_path_length(self.psi)) or 1.0
        return np.power(2.0, -self.path_lengths(x) / c)


# --------------------------------------------------------------------------- baselines on dataset windows


def zscore_anomaly(raw: np.ndarray, row_mask: np.ndarray, names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The baseline forecaster's anomaly score on un-normalized rows (model/baseline.py)."""
    return intensity_anomaly(raw, row_mask, names)[0]


def window_vectors(features: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
    """A window as one point for the isolation forest: its last row and its mean row (normalized units)."""
    n = np.maximum(row_mask.sum(axis=1, keepdims=True), 1)
    mean = np.where(row_mask[..., None], features, 0.0).sum(axis=1) / n
    return np.concatenate([features[:, -1], mean], axis=1)


def baseline_forecasts(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], halflife: float = 8.0
) -> dict[str, dict[str, np.ndarray]]:
    """method -> target -> (B, 3) quantiles in the targets' units, recomputed from the windows.

    spread: levels of `spread_ticks`; depth: levels of top-5 bid + ask lots, log1p of the quantiles
    (a monotone map keeps quantiles); volume (baseline only, a point forecast as model/baseline.py):
    h x lots traded per message in the window's event tokens, the lots read as each size bucket's median
    (model/tokens.py), so an approximation of the worker's exact sizes; mid (persistence only: no move,
    a point forecast; the dataset holds no tick size to put the baseline's mid steps in ticks).
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
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in ("baseline", "persistence", "ewma", "har")}
    for h in HORIZONS:
        for method in out:
            out[method][f"spread_h{h}"] = np.nan_to_num(levels["spread"][method])
            out[method][f"depth_h{h}"] = np.log1p(np.maximum(np.nan_to_num(levels["depth"][method]), 0.0))
        rate = traded_lots_per_message(arrays, meta)
        out["baseline"][f"volume_h{h}"] = np.repeat(np.log1p(rate * h)[:, None], 3, axis=1)
        out["persistence"][f"mid_h{h}"] = np.zeros((len(rate), 3))
    return out


def traded_lots_per_message(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Lots of the window's EXECUTE/TRADE tokens (bucket medians) / its real rows (messages)."""
    medians = np.asarray((meta.get("tokenizer") or {}).get("size_medians", [1.0]), np.float64)
    ids = np.clip(arrays["size"] - 1, 0, len(medians) - 1)
    traded = np.isin(arrays["kind"], _TRADE_KINDS) & arrays["mask"]
    lots = np.where(traded, medians[ids], 0.0).sum(axis=1)
    return lots / np.maximum(arrays["row_mask"].sum(axis=1), 1)


# --------------------------------------------------------------------------- the model on dataset windows


@dataclass
class ModelOutputs:
    name: str
    directory: str
    anomaly: np.ndarray  # (B,) the served score: max(calibrated surprise, 1 - p(normal))
    surprise: np.ndarray  # (B,) calibrated surprise alone (0..1)
    supervised: np.ndarray  # (B,) 1 - p(normal) of the anomaly head
    quantiles: dict[str, np.ndarray]  # target -> (B, 3)
    anchor: dict[str, np.ndarray]  # target -> (B, 3): the band the head corrects (network.anchor); {} if none
    unrecalibrated: dict[str, np.ndarray]  # target -> (B, 3): the head before recalibration; {} if none fitted
    nll: np.ndarray  # (B,) summed next-event NLL of the window's real (event, next event) pairs
    n_events: np.ndarray  # (B,) how many pairs
    train_seeds: list[int] | None = None

    def perplexity(self, keep: np.ndarray | None = None) -> float:
        """exp(mean NLL per event) over the windows `keep` (bool (B,); default all); NaN if none."""
        keep = np.ones(len(self.nll), bool) if keep is None else keep
        n = int(self.n_events[keep].sum())
        return math.exp(float(self.nll[keep].sum()) / n) if n else math.nan


def training_seeds(extra: dict[str, Any]) -> list[int] | None:
    """The seeds of the windows a checkpoint was trained on (its training file's `seed` array), or
    None when that file is not here to read."""
    data = (extra.get("train") or {}).get("data")
    if not data or not Path(data).is_file():
        return None
    with np.load(data, allow_pickle=False) as z:
        return sorted(int(s) for s in np.unique(z["seed"])) if "seed" in z.files else None


def model_outputs(
    directory: str | Path,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    name: str,
    device: str = "cpu",
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
) -> ModelOutputs:
    """Run a checkpoint over the dataset windows: the served anomaly score (as model/generative.py
    combines it), the quantiles in target units, and the summed next-event NLL for the perplexity.
    The rows are re-normalized with the checkpoint's own feature mean/std; the event tokens must come
    from the checkpoint's tokenizer (otherwise the ids mean other things: ValueError)."""
    import torch

    from model.network.orderflow import ANCHORED_TARGETS, calibrated_score, next_event_nll, to_batch
    from model.network.orderflow import TARGETS as NET_TARGETS
    from model.network.orderflow import surprise as surprise_of
    from model.serving.orderflow import GenerativeForecaster, combined_anomaly_score

    gf = GenerativeForecaster(directory, device=device)
    if gf.extra.get("tokenizer") != meta.get("tokenizer"):
        raise ValueError(f"{directory}: the data was tokenized with another tokenizer than the model's; build the "
                         "held-out windows with the training set's tokenizer (one dataset, split_by_seed)")  # fmt: skip
    rows = arrays["row_mask"]
    feats = gf.norm.apply(FeatureNorm.from_meta(meta).invert(arrays["features"], rows), rows)
    n = len(arrays["label"])
    score, surp, sup, nll_w, n_w = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
    q, band, head = (np.zeros((n, len(NET_TARGETS), 3)) for _ in range(3))
    with torch.inference_mode():
        for lo in range(0, n, batch):
            sl = slice(lo, min(lo + batch, n))
            part = {
                k: arrays[k][sl]
                for k in ("kind", "side", "price", "size", "dt", "mask", "row_mask", "news", "news_mask")
            }
            b = to_batch(part | {"features": feats[sl]}, gf.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gf.bf16):
                out = gf.model(b)
            nll, valid = next_event_nll(out["next"], b)
            s = surprise_of(nll, valid, gf.k).float().cpu().numpy()
            nll_w[sl] = nll.float().sum(-1).cpu().numpy()  # padded pairs are 0 already
            n_w[sl] = valid.sum(-1).cpu().numpy()
            probs = out["anomaly"].float().softmax(-1).cpu().numpy()
            cal = calibrated_score(s, gf.calibration) if gf.calibration is not None else np.zeros_like(s)
            surp[sl], sup[sl] = cal, 1.0 - probs[:, 0]
            score[sl] = combined_anomaly_score(cal, probs[:, 0])
            q[sl] = out["quantiles"].float().cpu().numpy()  # ordered by the model
            band[sl] = gf.model.onto_support(out["anchor"].float()).cpu().numpy()  # as a zero head would serve it
            head[sl] = gf.model.onto_support(out["quantiles_head"].float()).cpu().numpy()
            if progress:
                progress(sl.stop - sl.start)
    quantiles = {t: q[:, j] for j, t in enumerate(NET_TARGETS)}
    targets = ANCHORED_TARGETS if gf.config.anchors else ()
    anchor = {t: band[:, j] for j, t in enumerate(NET_TARGETS) if t in targets}
    coef = gf.model.recal_coef.cpu()
    fitted = [j for j in range(len(NET_TARGETS)) if (coef[j, ..., 0] != 0).any() or (coef[j, ..., 1] != 1).any()]
    unrecalibrated = {NET_TARGETS[j]: head[:, j] for j in fitted}
    return ModelOutputs(name, str(directory), score, surp, sup, quantiles, anchor, unrecalibrated, nll_w, n_w,
                        training_seeds(gf.extra))  # fmt: skip


# --------------------------------------------------------------------------- the evaluation run


@dataclass
class Evaluation:
    """Every figure of a run: `anomaly[group][method] = (auroc, ap)`, `crps[target][method]`,
    `pinball[target][method] = [tau 0.1, 0.5, 0.9]`, `coverage[target][method]` (all windows),
    `perplexity[model][part]`, and `parts[part] = {"n": {target: n}, "crps": {target: {method: v}}}`
    for the windows of each part present (PARTS: simulated, real, news-driven); with several
    models, `ablations[part][model][target or "nll"]` (ablation_differences)."""

    data: str
    seeds: list[int]
    sources: list[dict[str, Any]]
    n_windows: int
    n_liquidity: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    anomaly: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    crps: dict[str, dict[str, float]] = field(default_factory=dict)
    pinball: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    coverage: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    perplexity: dict[str, dict[str, float]] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    ablations: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def anomaly_groups(label: np.ndarray) -> dict[str, np.ndarray]:
    """group -> (mask of the windows compared, positives among them): `overall` (any kind vs normal)
    and each kind present (that kind vs normal)."""
    out = {"overall": (np.ones(len(label), bool), label > 0)}
    for i, kind in enumerate(ANOMALY_KINDS, start=1):
        if (label == i).any():
            out[kind] = ((label == 0) | (label == i), label == i)
    return out


def window_crps(
    arrays: dict[str, np.ndarray], forecasts: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, np.ndarray]]:
    """method -> target -> (B,) each window's CRPS (crps_per_window), NaN where the target is missing:
    computed once, then averaged over each set of windows a table reports."""
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in forecasts}
    for t in TARGETS:
        ok = _target_ok(arrays, t)
        y = arrays[t][ok]
        for method, per_target in forecasts.items():
            if t in per_target:
                c = np.full(len(ok), np.nan)
                c[ok] = crps_per_window(y, per_target[t][ok])
                out[method][t] = c
    return out


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def liquidity_metrics(
    ev: Evaluation,
    arrays: dict[str, np.ndarray],
    forecasts: dict[str, dict[str, np.ndarray]],
    crps: dict[str, dict[str, np.ndarray]],
) -> None:
    """CRPS (from `crps`, window_crps), pinball per quantile and coverage per target and method, on
    windows with a valid target."""
    for t in TARGETS:
        ok = _target_ok(arrays, t)
        y = arrays[t][ok].astype(np.float64)
        ev.n_liquidity[t] = int(ok.sum())
        for method, per_target in forecasts.items():
            if t not in per_target:
                continue
            qs = per_target[t][ok]
            ev.crps.setdefault(t, {})[method] = _mean(crps[method][t][ok])
            ev.pinball.setdefault(t, {})[method] = [pinball(y, qs[:, k], tau) for k, tau in enumerate(TAUS)]
            ev.coverage.setdefault(t, {})[method] = [coverage(y, qs[:, k]) for k in range(len(TAUS))]


def _target_ok(arrays: dict[str, np.ndarray], target: str) -> np.ndarray:
    h = int(target.rsplit("_h", 1)[1])
    return arrays["target_mask"][:, HORIZONS.index(h)] & np.isfinite(arrays[target])


# the evaluated windows' parts, each reported on its own where present
PARTS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "simulated": lambda a: a["seed"] >= 0,
    "real": lambda a: a["seed"] < 0,
    "news-driven": lambda a: a["news_kind"] > 0,  # a headline of the symbol inside the window's span
}


def part_metrics(
    arrays: dict[str, np.ndarray], crps: dict[str, dict[str, np.ndarray]], keep: np.ndarray
) -> dict[str, Any]:
    """{"windows": n, "n": {target: n}, "crps": {target: {method: CRPS}}} over the windows `keep`
    (`crps`: window_crps)."""
    out: dict[str, Any] = {"windows": int(keep.sum()), "n": {}, "crps": {}}
    for t in TARGETS:
        ok = _target_ok(arrays, t) & keep
        out["n"][t] = int(ok.sum())
        out["crps"][t] = {m: _mean(per[t][ok]) for m, per in crps.items() if t in per}
    return out


def ablation_differences(
    arrays: dict[str, np.ndarray], outputs: Sequence[ModelOutputs], crps: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """part ("all" and each of PARTS present) -> model (each after the first) -> target -> [mean,
    lo, hi]: per window, the model's CRPS (`crps`: window_crps) less the first model's, with its 95%
    bootstrap interval; and "nll": the same for the next-event NLL per event (nats). For ablations
    evaluated beside the full model: above 0, the part left out helps; an interval clear of 0,
    beyond the noise of the evaluated windows (not of training: two training seeds of one recipe
    differ too)."""
    full, *others = outputs
    parts = {"all": np.ones(len(arrays["label"]), bool)} | {p: f(arrays) for p, f in PARTS.items()}
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for part, keep in parts.items():
        if not keep.any():
            continue
        per_event = np.maximum(full.n_events[keep], 1)
        for o in others:
            diff = {}
            for t in TARGETS:
                ok = _target_ok(arrays, t) & keep
                diff[t] = list(paired_difference(crps[o.name][t][ok], crps[full.name][t][ok]))
            diff["nll"] = list(paired_difference(o.nll[keep] / per_event, full.nll[keep] / per_event))
            out.setdefault(part, {})[o.name] = diff
    return out


def evaluate(
    data_path: str | Path,
    model_dirs: Sequence[str | Path],
    out_dir: str | Path,
    seeds: Iterable[int] | None = None,
    device: str = "cpu",
    batch: int = 256,
    names: Sequence[str] | None = None,
    allow_seen: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Evaluate each model of `model_dirs` (none: the baselines alone) on the windows of `data_path`
    (restricted to `seeds` if given) beside the baselines; writes evaluation.md, metrics.json, roc.png
    and calibration.png into `out_dir`. A window whose seed the model was trained on is refused
    (ValueError) unless `allow_seen`: the figures are for held-out data only."""
    from model.training.dataset import load, subset

    ds = load(Path(data_path))
    if seeds is not None:
        ds = subset(ds, np.isin(ds.arrays["seed"], np.fromiter(seeds, np.int64)))
    arrays, meta = ds.arrays, ds.meta
    if len(ds) == 0:
        raise ValueError(f"{data_path}: no windows to evaluate")
    present = sorted(int(s) for s in np.unique(arrays["seed"]))
    ev = Evaluation(str(data_path), present, [s for s in meta.get("sources", []) if s.get("seed") in present], len(ds))
    label = arrays["label"]
    ev.counts = {"normal": int((label == 0).sum())} | {
        k: int((label == i).sum()) for i, k in enumerate(ANOMALY_KINDS, 1)
    }
    names = list(names) if names else _model_names(model_dirs)
    outputs = [
        model_outputs(d, arrays, meta, n, device, batch, progress) for d, n in zip(model_dirs, names, strict=True)
    ]
    for o in outputs:
        seen = sorted(set(o.train_seeds or ()) & set(present))
        if seen and not allow_seen:
            raise ValueError(f"{o.directory} was trained on seeds {seen} of the evaluation data: not held out")
        ev.models.append({"name": o.name, "directory": o.directory, "train_seeds": o.train_seeds})
        ev.perplexity[o.name] = {"all": o.perplexity()} | {p: o.perplexity(f(arrays)) for p, f in PARTS.items()}
    raw = FeatureNorm.from_meta(meta).invert(arrays["features"], arrays["row_mask"])
    scores = {o.name: o.anomaly for o in outputs}
    if len(outputs) == 1:
        scores |= {f"{outputs[0].name} surprise": outputs[0].surprise, f"{outputs[0].name} head": outputs[0].supervised}
    scores["z-score"] = zscore_anomaly(raw, arrays["row_mask"], meta.get("feature_names") or FEATURE_NAMES)
    vectors = window_vectors(arrays["features"], arrays["row_mask"])
    scores["isolation forest"] = IsolationForest(seed=0).fit(vectors).score(vectors)
    for group, (keep, pos) in anomaly_groups(label).items():
        ev.anomaly[group] = {
            m: (auroc(s[keep], pos[keep]), average_precision(s[keep], pos[keep])) for m, s in scores.items()
        }
    forecasts = {o.name: o.quantiles for o in outputs}
    # what the network adds: its anchor alone (the band a head that outputs 0 would serve); what
    # the recalibration adds: the head's quantiles before it
    forecasts |= {f"{o.name} anchor": o.anchor for o in outputs[:1] if o.anchor}
    forecasts |= {f"{o.name} unrecalibrated": o.unrecalibrated for o in outputs[:1] if o.unrecalibrated}
    forecasts |= baseline_forecasts(arrays, meta)
    crps = window_crps(arrays, forecasts)
    liquidity_metrics(ev, arrays, forecasts, crps)
    for part, select in PARTS.items():
        keep = select(arrays)
        if keep.any():
            ev.parts[part] = part_metrics(arrays, crps, keep)
    if len(outputs) > 1:
        ev.ablations = ablation_differences(arrays, outputs, crps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_no_nan(ev.to_json()), indent=1, default=_json_default) + "\n")
    (out / "evaluation.md").write_text(markdown(ev, [o.name for o in outputs]))
    plot_roc(out / "roc.png", scores, label)
    plot_calibration(out / "calibration.png", ev)
    return ev


def _model_names(dirs: Sequence[str | Path]) -> list[str]:
    if len(dirs) == 1:
        return ["model"]
    names = [Path(d).name or str(d) for d in dirs]
    return names if len(set(names)) == len(names) else [f"model{i + 1}:{n}" for i, n in enumerate(names)]


def _no_nan(x: Any) -> Any:
    """NaN (an undefined metric) as null: strict JSON has no NaN."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON: {type(x)}")


# --------------------------------------------------------------------------- report


def _f(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(v: Sequence[float]) -> str:
    mean, lo, hi = v
    return "—" if math.isnan(mean) else f"{mean:+.4g} [{lo:+.3g}, {hi:+.3g}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


LIQUIDITY_BASELINES = ("baseline", "persistence", "ewma", "har")


def _part_methods(crps: dict[str, dict[str, float]]) -> list[str]:
    """The first model's parts served alone: its anchor band, its head before recalibration."""
    return [m for m in next(iter(crps.values()), {}) if m.endswith((" anchor", " unrecalibrated"))]


def _crps_table(crps: dict[str, dict[str, float]], n: dict[str, int], models: Sequence[str]) -> list[str]:
    """Rows of targets: n, CRPS of each model and baseline, each model's gain over the best of
    persistence, EWMA and HAR."""
    cols = [*models, *_part_methods(crps), *LIQUIDITY_BASELINES]
    rows = []
    for t in TARGETS:
        per = crps.get(t, {})
        best = min((per[m] for m in ("persistence", "ewma", "har") if m in per), default=math.nan)
        gain = [f"{100 * (1 - per[m] / best):+.1f}%" if m in per and best > 0 else "—" for m in models]
        rows.append([t, str(n.get(t, 0))] + [_f(per.get(c, math.nan)) for c in cols] + gain)
    return _table(["target", "n", *cols, *(f"gain {m}" for m in models)], rows)


def markdown(ev: Evaluation, models: Sequence[str]) -> str:
    """evaluation.md: what was evaluated, then one table per metric family, each model beside the baselines."""
    src = ", ".join(f"{s['name']} (seed {s['seed']})" for s in ev.sources) or ", ".join(map(str, ev.seeds))
    lines = [
        "# Evaluation on held-out data",
        "",
        f"Data: `{ev.data}`, {ev.n_windows} windows, seeds {ev.seeds}: {src}.",
        "Window counts: " + ", ".join(f"{k} {v}" for k, v in ev.counts.items() if v) + ".",
    ]
    for m in ev.models:
        seen = "unknown (training file not found)" if m["train_seeds"] is None else m["train_seeds"]
        lines.append(f"Model `{m['name']}`: `{m['directory']}`, trained on seeds {seen}.")
    lines += ["", "## Anomalies: AUROC / average precision", "",
              "Each kind: its windows against the normal windows. `surprise` and `head` are the two parts of the "
              "model's score (calibrated next-event surprise, supervised head); the isolation forest is fitted on "
              "the evaluated windows themselves (last and mean feature row), no labels.", ""]  # fmt: skip
    methods = list(next(iter(ev.anomaly.values())).keys()) if ev.anomaly else []
    rows = []
    for group, per in ev.anomaly.items():
        n = ev.counts.get(group, sum(v for k, v in ev.counts.items() if k != "normal"))
        rows.append([group, str(n)] + [f"{_f(per[m][0])} / {_f(per[m][1])}" for m in methods])
    lines += _table(["kind vs normal", "positives", *methods], rows)
    cols = [*models, *_part_methods(ev.crps), *LIQUIDITY_BASELINES]
    lines += ["", "## Liquidity: CRPS (lower is better)", "",
              "CRPS ~ 2/3 x (pinball at q10 + q50 + q90) (Gneiting & Raftery 2007); point forecasts (persistence, "
              "the baseline's volume) have equal quantiles, so their CRPS is the MAE. Units: spread and mid in ticks, "
              "depth and volume log1p(lots). Windows whose target is missing (stream end, one-sided book) are "
              "left out. `gain` = 1 - model / best of persistence, EWMA, HAR. `anchor`: the band the model's "
              "quantile head corrects (network.OrderFlowModel.anchor), served alone: what the network adds is "
              "the difference. `unrecalibrated`: the head's quantiles before the recalibration fitted after training "
              "(model/recalibration.py).", ""]  # fmt: skip
    lines += _crps_table(ev.crps, ev.n_liquidity, models)
    for part, per in ev.parts.items():
        lines += ["", f"### CRPS on the {part} windows ({per['windows']})", ""]
        lines += _crps_table(per["crps"], per["n"], models)
    lines += ["", "## Liquidity: pinball loss at q10 / q50 / q90", ""]
    rows = [
        [t] + ["/".join(_f(v) for v in ev.pinball.get(t, {}).get(c, [math.nan] * 3)) for c in cols] for t in TARGETS
    ]
    lines += _table(["target", *cols], rows)
    lines += ["", "## Calibration: empirical coverage of q10 / q50 / q90 (ideal 0.1 / 0.5 / 0.9)", ""]
    rows = [
        [t] + ["/".join(_f(v, 2) for v in ev.coverage.get(t, {}).get(c, [math.nan] * 3)) for c in cols] for t in TARGETS
    ]
    lines += _table(["target", *cols], rows)
    if ev.perplexity:
        lines += [
            "",
            "## Next-event perplexity: exp(mean NLL per event; an event's NLL sums its five fields, nats)",
            "",
        ]
        parts = ["all", *PARTS]
        rows = [[m, *(_f(per.get(p, math.nan)) for p in parts)] for m, per in ev.perplexity.items()]
        lines += _table(["model", *(f"{p} windows" for p in parts)], rows)
    if ev.ablations:
        lines += ["", f"## Ablations: paired differences against `{models[0]}`", "",
                  f"Per window, each model's CRPS (and next-event NLL per event, nats) less `{models[0]}`'s: the mean "
                  "and its 95% bootstrap interval. Above 0, the part the model leaves out helps; an interval clear "
                  "of 0 is a difference beyond the noise of these windows; it says nothing of training's noise (a "
                  "model trained with another seed differs as well, by as much on some targets).", ""]  # fmt: skip
        for part, per_model in ev.ablations.items():
            names = list(per_model)
            rows = [[k] + [_interval(per_model[m][k]) for m in names] for k in [*TARGETS, "nll"]]
            lines += [f"### {part} windows", "", *_table(["target", *names], rows), ""]
    lines += [
        "",
        "Plots: roc.png (ROC per kind), calibration.png (coverage per target). All figures: metrics.json.",
        "",
    ]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: Path, scores: dict[str, np.ndarray], label: np.ndarray) -> None:
    """One panel per group (overall, each kind present), one ROC curve per scoring method."""
    plt = _pyplot()
    groups = anomaly_groups(label)
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    for ax, (group, (keep, pos)) in zip(axes.flat, groups.items(), strict=False):
        for method, s in scores.items():
            fpr, tpr = roc_curve(s[keep], pos[keep])
            ax.plot(fpr, tpr, label=f"{method} ({_f(auroc(s[keep], pos[keep]), 2)})", linewidth=1)
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5, linestyle=":")
        ax.set_title(f"{group} (n+={int(pos[keep].sum())})")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_calibration(path: Path, ev: Evaluation) -> None:
    """Reliability of the quantiles: empirical coverage against the nominal level, per target."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5), squeeze=False)
    for ax, t in zip(axes.flat, TARGETS, strict=False):
        ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5, linestyle=":")
        for method, cov in ev.coverage.get(t, {}).items():
            ax.plot(TAUS, cov, marker="o", linewidth=1, label=method)
        ax.set_title(f"{t} (n={ev.n_liquidity.get(t, 0)})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal quantile")
        ax.set_ylabel("P(y <= q)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
