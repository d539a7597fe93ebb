"""Quantile recalibration in the targets' own units, fitted after fine-tuning (numpy, no torch).

The quantile head is trained on standardized residuals (network.OrderFlowModel.anchor): every
window weighs the same, which keeps training stable across instruments whose spreads differ
100x (depth's are weighed back into its units in training and not recalibrated:
network.RECALIBRATED_TARGETS). The served quantiles are judged in ticks and lots, where a few wide-spread windows carry
most of the loss. This step maps each head quantile q to a + b*q, (a, b) fitted per target,
quantile and bin by linear quantile regression (Koenker & Bassett 1978) on the training windows,
in the target's units and on its support. A window's bin is its level (the band's median: at the
target's floor, or in one of three equal-count bins above it) and, above the floor, whether its
band reaches far above that level (upper end more than WIDE_RATIO x the level above it: the rows
held a blow-out the current spread has left): a blown-out spread collapses within 100 messages,
which the band's upper end, dragged up by the blow-out, does not know. At the floor that flag
is not a bin (the floor's two bins share one map, fitted on all its windows): there what follows
a blow-out depends on the source, not on the flag. On the demo's training set a one-tick book
whose band held a blow-out was wider again 10 messages later in 1.8% of the real captures' windows
and in 54% of the simulator's, and the pooled bin's map served a q90 of 5 ticks to every such
window of the unseen real one-tick books, which widened again in 0-1.8% (docs/design.md, "Model
decisions"). The mid move has no band: its bins are its
spread's (network.RECAL_BAND), as how far a mid moves is bound to the spread; in 10 messages the
mid of a narrow book mostly does not move, and the maps can say so (q10 = q50 = q90 = 0) where the
head, trained on standardized residuals, spreads them over several ticks. What the maps found on
the demo's data, and what they gained: docs/design.md, "Model decisions". The quantiles' maps are
fitted apart and may cross; the model serves them sorted (`apply` here does the same).

After a headline the bins above are the wrong question: the head is trained on standardized
residuals, and how far the mid and the spread move in the seconds after news is not in their band's
scale. A window whose newest headline is younger than NEWS_AGE_EDGES[-1] seconds (a model that reads
the headlines and their ages) takes the map of its headline's age bin instead, the mid's split further
by the side its head's median points to (down / flat / up: an earnings step moves the mid one way, and
the map's shift must follow it); fitted on the training windows of that bin (`fit_news`), a bin with
fewer than MIN_BIN_WINDOWS keeping its level map. On the demo's held-out news-driven windows
(2026-12-04) the served CRPS at 100 messages fell 9.5% for the mid and 19.4% for the spread, where
correcting the no-headline model the same way by its residuals could do 11.2% and 4.1% at most
(docs/design.md, "Headlines and price discovery").

Books of price levels (the captures' L2 feeds) blow out and close again at their own pace: on the
Binance books a spread wider than one tick is as wide 10 messages later in most windows, where the
simulator's (most of the training windows) close sooner, and the pooled maps carry the simulator's
pace. Such windows may take maps of their own (`fit_l2`: the same bins and edges, fitted on real L2
windows alone, as the L2 direction and depth heads are; a bin with fewer than MIN_BIN_WINDOWS keeps
the pooled map), fitted when asked (`train --stage l2-recalibration` on the captures' files). On the
demo (2026-12-04) they took spot ETHUSDT's spread at 100 messages from +18.7% to +24.0% over the best
classic baseline and its mid from +24.7% to +34.8%, new to them; what they did elsewhere: docs/design.md,
"Model decisions".

Last, the spread's served quantiles (recalibrated and sorted) are combined with the EWMA's band, w q +
(1 - w) e quantile by quantile (`combine_classic`; Vincentization), w per target chosen from a grid on
the training windows that are not of books of price levels (`fit_classic_weight`). The maps read the
head's quantile alone; the EWMA's band, its ends the window's own deviations from its mean, carries
what they miss: on the demo's held-out simulated windows +5.9% / +9.3% over the best classic baseline
at 10 / 100 messages became +7.7% / +11.0% (w 0.65 at both, 2026-12-05; docs/design.md, "Model
decisions"). Not on books of price levels: on a one-tick book the EWMA's band is far
worse than the served quantiles (0.262 against 0.101 ticks on spot ETHUSDT at 10 messages).

The fit is exact per slope: for a fixed b the pinball-optimal a is the tau-quantile of y - b*q
(rounding onto the support aside), so a grid over b and one quantile per grid point solve it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.evaluation.metrics import pinball

LEVEL_BINS = 4
N_BINS = 2 * LEVEL_BINS  # x (band within / reaching far above its level)
WIDE_RATIO = 2.0
SLOPES = np.linspace(0.0, 2.0, 81)
MIN_BIN_WINDOWS = 50  # a bin with fewer training windows keeps the identity map (a news bin: its level map)
NEWS_AGE_EDGES = (1.0, 5.0, 15.0, 40.0)  # seconds since the newest headline: age bins [0, 1) ... [15, 40)
NEWS_SIDES = 3  # the mid head's median below -SIDE_TICKS, within, above +SIDE_TICKS; other targets: within
SIDE_TICKS = 0.5
N_NEWS_BINS = len(NEWS_AGE_EDGES) * NEWS_SIDES

Support = Callable[[np.ndarray], np.ndarray]

# what a finetune run does with a recalibration it starts from (model/training/train.py `train`): refit
# bins and maps, refit the maps in the kept bins, or keep it whole (what `adapt` does by default)
MODES = ("refit", "maps", "keep")


def identity_maps(k_targets: int, n_bins: int, n_q: int) -> np.ndarray:
    """(K, n_bins, Q, 2) maps a + b*q that leave every quantile as it is (a = 0, b = 1)."""
    coef = np.zeros((k_targets, n_bins, n_q, 2), np.float32)
    coef[..., 1] = 1.0
    return coef


def fit_linear_map(q: np.ndarray, y: np.ndarray, tau: float, support: Support) -> tuple[float, float]:
    """(a, b) minimizing the mean pinball loss at `tau` of support(a + b*q) against y, b on the
    SLOPES grid; the identity (0, 1) wins ties, so a map that does not help is not taken."""
    best = (pinball(y, support(q), tau), 0.0, 1.0)
    for b in SLOPES:
        a = float(np.quantile(y - b * q, tau))
        loss = pinball(y, support(a + b * q), tau)
        if loss < best[0] - 1e-12:
            best = (loss, a, float(b))
    return best[1], best[2]


def level_edges(level: np.ndarray, floor_edge: float) -> np.ndarray:
    """(LEVEL_BINS - 1,) inner edges: `floor_edge` first (levels below it sit at the target's floor:
    a one-tick spread can only widen, and a liquid market's rarely does), then equal-count bins of
    the levels above it; repeated edges dropped and the rest padded with +inf (a bin that ends up
    empty keeps the identity map)."""
    above = level[level >= floor_edge]
    inner = np.linspace(0.0, 1.0, LEVEL_BINS)[1:-1]
    edges = np.unique(np.quantile(above, inner)) if len(above) else np.zeros(0)
    edges = np.concatenate([[floor_edge], edges[edges > floor_edge]])
    return np.concatenate([edges, np.full(LEVEL_BINS - 1 - len(edges), np.inf)]).astype(np.float32)


def bin_of(band: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) bin of each window from its band (N, 3) (lower end, level, upper end) and its target's
    level edges: 2 x level bin + (upper end more than WIDE_RATIO x |level| above the level)."""
    level = band[:, 1]
    wide = band[:, 2] - level > WIDE_RATIO * np.abs(level)
    return 2 * np.searchsorted(edges, level, side="right") + wide


def fit(
    raw: np.ndarray,
    band: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    taus: tuple[float, ...],
    supports: list[Support | None],
    floor_edges: list[float],
    edges: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """From the head's quantiles `raw` (N, K, Q) in target units, the bands (N, K, 3) they were read
    against, the outcomes `y` (N, K) and `valid` (N, K): `edges` (K, LEVEL_BINS - 1) and `coef`
    (K, N_BINS, Q, 2), coef[..., 0] + coef[..., 1] * q per bin (the floor's two bins the same map;
    bin_of still tells them apart, so a checkpoint fitted before they were merged serves as it did).
    Per target: its support (None: the identity map is kept) and the level below which it sits at its
    floor (`level_edges`). `edges` given (K, LEVEL_BINS - 1): the bins are kept and only their maps
    refitted, for a target whose edges are fitted (any finite); `adapt` keeps its parent's, so that
    recent windows of other levels do not move the earlier flow's windows into other bins."""
    k_targets, n_q = raw.shape[1], raw.shape[2]
    kept = edges
    edges = np.full((k_targets, LEVEL_BINS - 1), np.inf, np.float32)
    coef = identity_maps(k_targets, N_BINS, n_q)
    for j in range(k_targets):
        if supports[j] is None or not valid[:, j].any():
            continue
        ok = valid[:, j]
        if kept is not None and np.isfinite(kept[j]).any():
            edges[j] = kept[j]
        else:
            edges[j] = level_edges(band[ok, j, 1], floor_edges[j])
        _fit_level_maps(coef[j], raw[:, j], band[:, j], y[:, j], ok, edges[j], taus, supports[j])
    return edges, coef


def _fit_level_maps(
    coef: np.ndarray,
    raw: np.ndarray,
    band: np.ndarray,
    y: np.ndarray,
    ok: np.ndarray,
    edges: np.ndarray,
    taus: tuple[float, ...],
    support: Support,
) -> np.ndarray:
    """One target's level maps into `coef` (N_BINS, Q, 2), in place, in the bins of its `edges`, the
    floor's two bins one map (module docstring); returns (N_BINS,) bool: the bins fitted (`_fit_bins`)."""
    bins = bin_of(band, edges)
    bins[bins == 1] = 0
    fitted = _fit_bins(coef, raw, y, ok, bins, taus, support)
    coef[1], fitted[1] = coef[0], fitted[0]
    return fitted


def _fit_bins(
    coef: np.ndarray,
    raw: np.ndarray,
    y: np.ndarray,
    ok: np.ndarray,
    bins: np.ndarray,
    taus: tuple[float, ...],
    support: Support,
) -> np.ndarray:
    """Fit one target's map per bin into `coef` (n_bins, Q, 2), in place, from its quantiles `raw` (N, Q),
    outcomes `y` (N,) and the windows `ok` (N,) of each bin; returns (n_bins,) bool: the bins with
    MIN_BIN_WINDOWS windows at least, which got a map (the others keep theirs)."""
    fitted = np.zeros(len(coef), bool)
    for b in range(len(coef)):
        sel = ok & (bins == b)
        if sel.sum() < MIN_BIN_WINDOWS:
            continue
        for k, tau in enumerate(taus):
            coef[b, k] = fit_linear_map(raw[sel, k].astype(np.float64), y[sel].astype(np.float64), tau, support)
        fitted[b] = True
    return fitted


def fit_l2(
    raw: np.ndarray,
    band: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    taus: tuple[float, ...],
    supports: list[Support | None],
    edges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The level maps of books of price levels (module docstring, "L2 books"): `coef` (K, N_BINS, Q, 2)
    and `fitted` (K, N_BINS) bool, fitted on the L2 windows given (raw, band, y, valid as `fit` takes
    them) in the bins of the pooled maps' `edges` (K, LEVEL_BINS - 1); a bin with fewer than
    MIN_BIN_WINDOWS windows is not fitted, and serves the pooled map."""
    k_targets, n_q = raw.shape[1], raw.shape[2]
    coef = identity_maps(k_targets, N_BINS, n_q)
    fitted = np.zeros((k_targets, N_BINS), bool)
    for j in range(k_targets):
        if supports[j] is None or not np.isfinite(edges[j]).any():
            continue
        fitted[j] = _fit_level_maps(coef[j], raw[:, j], band[:, j], y[:, j], valid[:, j], edges[j], taus, supports[j])
    return coef, fitted


def news_bin_of(age: np.ndarray, median: np.ndarray, sided: bool) -> np.ndarray:
    """(N,) news bin of each window from the age (N,) in seconds of its newest headline (inf: none)
    and its head's median (N,) of the target: age bin x NEWS_SIDES + side (1, flat, unless `sided`);
    -1 where no headline is younger than NEWS_AGE_EDGES[-1]."""
    side = 1 + (median > SIDE_TICKS).astype(np.int64) - (median < -SIDE_TICKS) if sided else 1
    news = np.searchsorted(NEWS_AGE_EDGES, age, side="right") * NEWS_SIDES + side
    return np.where(age < NEWS_AGE_EDGES[-1], news, -1)


def fit_news(
    raw: np.ndarray,
    age: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    taus: tuple[float, ...],
    supports: list[Support | None],
    sided: list[bool],
) -> tuple[np.ndarray, np.ndarray]:
    """The maps of the news bins (module docstring): `coef` (K, N_NEWS_BINS, Q, 2) and `fitted`
    (K, N_NEWS_BINS) bool, from the head's quantiles `raw` (N, K, Q), each window's headline age (N,)
    (inf: none), the outcomes and, per target, its support (None: no news bins) and whether its bins
    take the median's side."""
    k_targets, n_q = raw.shape[1], raw.shape[2]
    coef = identity_maps(k_targets, N_NEWS_BINS, n_q)
    fitted = np.zeros((k_targets, N_NEWS_BINS), bool)
    for j in range(k_targets):
        if supports[j] is None:
            continue
        bins = news_bin_of(age, raw[:, j, 1], sided[j])
        fitted[j] = _fit_bins(coef[j], raw[:, j], y[:, j], valid[:, j], bins, taus, supports[j])
    return coef, fitted


def apply(
    raw: np.ndarray,
    band: np.ndarray,
    edges: np.ndarray,
    coef: np.ndarray,
    news: tuple[np.ndarray, np.ndarray, np.ndarray, list[bool]] | None = None,
    l2: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The fitted map on (N, K, Q) quantiles, sorted along Q as served (the maps of the quantiles are
    fitted apart and may cross), before the support projection: the numpy twin of
    OrderFlowModel.recalibrate and the sort in its forward. `l2`: (L2 windows (N,) bool, coef, fitted)
    of `fit_l2`: such a window in a fitted bin takes that map. `news`: (age (N,), news coef, fitted,
    sided) of `fit_news`: a window in a fitted news bin takes its map, over either."""
    out = np.empty(raw.shape, np.float64)
    for j in range(raw.shape[1]):
        bins = bin_of(band[:, j], edges[j])
        maps = coef[j, bins]  # (N, Q, 2)
        if l2 is not None:
            book, l2_coef, l2_fitted = l2
            maps = np.where((book & l2_fitted[j, bins])[:, None, None], l2_coef[j, bins], maps)
        if news is not None:
            age, news_coef, fitted, sided = news
            nb = news_bin_of(age, raw[:, j, 1], sided[j])
            use = (nb >= 0) & fitted[j, np.maximum(nb, 0)]
            maps = np.where(use[:, None, None], news_coef[j, np.maximum(nb, 0)], maps)
        out[:, j] = maps[..., 0] + maps[..., 1] * raw[:, j]
    return np.sort(out, axis=2)


CLASSIC_WEIGHTS = np.round(np.arange(0.0, 1.0001, 0.05), 2)  # what `fit_classic_weight` chooses from


def combine_classic(
    q: np.ndarray, classic: np.ndarray, weight: np.ndarray, level_book: np.ndarray | None = None
) -> np.ndarray:
    """w q + (1 - w) e of the sorted served quantiles q (N, K, Q) and the EWMA's band e (N, K, Q; NaN where
    unknown), w (K,) per target, where e is known and the window is not of a book of price levels: the
    numpy twin of OrderFlowModel.combine_classic."""
    use = np.isfinite(classic).all(-1)
    if level_book is not None:
        use &= ~np.asarray(level_book, bool)[:, None]
    w = np.asarray(weight, np.float64)[None, :, None]
    return np.where(use[..., None], w * q + (1.0 - w) * np.nan_to_num(classic), q)


def fit_classic_weight(
    q: np.ndarray,
    classic: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    taus: tuple[float, ...],
    supports: list[Support | None],
    targets: list[int],
) -> tuple[np.ndarray, dict[int, int]]:
    """(K,) weights and the windows each was fitted on: per target index of `targets`, the w of
    CLASSIC_WEIGHTS whose combination w q + (1 - w) e, on the target's support, has the lowest summed
    pinball loss over the windows whose target and band are known (the caller leaves out what the
    combination does not serve: books of price levels); 1 for the other targets and a target with
    fewer than MIN_BIN_WINDOWS windows. q: the sorted served quantiles (N, K, Q), e: `classic` (N, K, Q)."""
    weight = np.ones(q.shape[1])
    counts: dict[int, int] = {}
    for j in targets:
        ok = valid[:, j] & np.isfinite(classic[:, j]).all(-1)
        counts[j] = int(ok.sum())
        support = supports[j]
        if counts[j] < MIN_BIN_WINDOWS or support is None:
            continue
        qj, ej, yj = q[ok, j], classic[ok, j], y[ok, j]

        def loss(w: float, qj: np.ndarray = qj, ej: np.ndarray = ej, yj: np.ndarray = yj,
                 support: Support = support) -> float:  # fmt: skip
            c = support(w * qj + (1.0 - w) * ej)
            return sum(pinball(yj, c[:, k], tau) for k, tau in enumerate(taus))

        weight[j] = min(CLASSIC_WEIGHTS, key=loss)
    return weight, counts
