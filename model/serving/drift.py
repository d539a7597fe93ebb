"""Drift of the served flow per book (venue, symbol): pure numpy, no I/O (docs/design.md, "Drift").

Two population-stability indices (PSI = sum_i (a_i - e_i) ln(a_i / e_i) over bins, each fraction
floored at `eps` so that an empty bin costs a finite amount):

- **Surprise drift**: the deciles of the last N calibrated surprise scores of a book against the
  uniform distribution. The generative model's surprise is calibrated by the empirical CDF of its
  training windows, so on flow like the training flow it is uniform on 0..1; flow the model finds
  more surprising piles its scores at the top. Only for a forecaster that names such a score
  (`Forecaster.calibrated_score`); none for the baseline.
- **Feature drift**: per window feature, the distribution of the newest valid feature row of the
  last N windows of a book against a reference, the book's own first M windows; bins from the
  reference's deciles and its min and max, with a bin below the min and one above the max (so
  that a feature constant in the reference still shows a move either way). Reported: the max and
  the mean over features and the feature that drifted most.

Thresholds as in common practice: PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift. A book is
`drift` from the moment a statistic exceeds the drift threshold until every statistic is back
under the moderate one (hysteresis: a book on the boundary does not flap).

Memory per book is bounded: the reference's rows until it is complete (at most M x F float32), then
its bin edges and fractions, and two rings of bin indices (N x F and N bytes) with running counts.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from orderbook.windows import Window

PSI_EPS = 1e-4
WARMING, STABLE, MODERATE, DRIFT = "warming", "stable", "moderate", "drift"


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPS) -> np.ndarray:
    """PSI over the last axis of two arrays of bin fractions (each fraction floored at `eps`)."""
    e = np.maximum(np.asarray(expected, np.float64), eps)
    a = np.maximum(np.asarray(actual, np.float64), eps)
    return ((a - e) * np.log(a / e)).sum(-1)


def fractions(counts: np.ndarray) -> np.ndarray:
    """Counts over the last axis as fractions (all zero where there are none)."""
    c = np.asarray(counts, np.float64)
    return c / np.maximum(c.sum(-1, keepdims=True), 1.0)


def score_bins(scores: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Scores in 0..1 -> their bin (decile for 10), uint8; out of range or NaN scores are clipped."""
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=0.0)
    return np.clip((s * n_bins).astype(np.int64), 0, n_bins - 1).astype(np.uint8)


def uniform_psi(scores: np.ndarray, n_bins: int = 10, eps: float = PSI_EPS) -> float:
    """PSI of scores' bins against the uniform distribution a calibrated score has on training flow."""
    counts = np.bincount(score_bins(scores, n_bins), minlength=n_bins)
    return float(psi(np.full(n_bins, 1.0 / n_bins), fractions(counts), eps))


def reference_edges(reference: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """(F, n_bins + 1) bin edges per feature: the reference's min, deciles (for 10 bins) and max,
    repeated edges (a discrete or constant feature) replaced by +inf at the end."""
    ref = np.asarray(reference, np.float64)
    edges = np.quantile(ref, np.linspace(0.0, 1.0, n_bins + 1), axis=0).T.copy()  # (F, E), ascending
    dup = np.zeros_like(edges, dtype=bool)
    dup[:, 1:] = np.diff(edges, axis=1) <= 0
    edges[dup] = np.inf
    return np.sort(edges, axis=1)


def feature_bins(rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(n, F) rows -> (n, F) uint8 bins of `edges` (F, E): 0 below the min, 1 at the min, then one bin
    per interval (e_j, e_j+1], and the last (E + 1) above the max. Non-finite values are clipped first."""
    x = np.nan_to_num(np.asarray(rows, np.float64), nan=0.0, posinf=np.finfo(np.float64).max / 2,
                      neginf=-np.finfo(np.float64).max / 2)  # fmt: skip
    below = (x[:, :, None] > edges[None]).sum(-1)  # edges strictly under x
    return (below + (x >= edges[None, :, 0])).astype(np.uint8)


def bin_counts(bins: np.ndarray, n_levels: int) -> np.ndarray:
    """(n, F) bin indices -> (F, n_levels) counts."""
    n_cols = bins.shape[1]
    flat = bins.astype(np.int64) + np.arange(n_cols, dtype=np.int64) * n_levels
    return np.bincount(flat.ravel(), minlength=n_cols * n_levels).reshape(n_cols, n_levels)


class BinRing:
    """The last `size` rows of bin indices (uint8, `cols` columns) and their counts per column,
    updated as rows come and go."""

    __slots__ = ("bins", "counts", "levels", "n")

    def __init__(self, size: int, cols: int, levels: int) -> None:
        self.bins = np.zeros((size, cols), np.uint8)
        self.counts = np.zeros((cols, levels), np.int64)
        self.n = 0  # rows pushed since the start
        self.levels = levels

    @property
    def full(self) -> bool:
        return self.n >= len(self.bins)

    def push(self, rows: np.ndarray) -> None:
        size = len(self.bins)
        if len(rows) >= size:  # only the newest `size` stay: the ring is theirs
            self.n += len(rows) - size
            self.bins[(self.n + np.arange(size)) % size] = rows[-size:]
            self.counts = bin_counts(rows[-size:], self.levels)
            self.n += size
            return
        pos = (self.n + np.arange(len(rows))) % size
        old = self.bins[pos if self.full else pos[pos < self.n]]
        if len(old):
            self.counts -= bin_counts(old, self.levels)
        self.bins[pos] = rows
        self.counts += bin_counts(rows, self.levels)
        self.n += len(rows)


@dataclass(frozen=True)
class DriftStat:
    """A book's drift as published (`mt:meta` field `drift:<venue>:<symbol>`); None: not enough windows yet."""

    surprise_psi: float | None
    feature_psi_max: float | None
    feature_psi_mean: float | None
    feature: str | None  # the feature whose PSI is the max
    windows: int  # windows the tracker has seen of the book
    state: str  # warming, stable, moderate, drift

    def to_json(self) -> str:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return json.dumps({"surprise_psi": r(self.surprise_psi), "feature_psi_max": r(self.feature_psi_max),
                           "feature_psi_mean": r(self.feature_psi_mean), "feature": self.feature,
                           "windows": self.windows, "state": self.state}, separators=(",", ":"))  # fmt: skip


@dataclass(frozen=True)
class DriftChange:
    """A book that crossed the drift threshold (`drifting`) or came back under the moderate one."""

    venue: str
    symbol: str
    drifting: bool
    statistic: str  # "surprise" or "feature": the larger of the two
    value: float
    feature: str | None
    stat: DriftStat


@dataclass
class BookDrift:
    """One book's drift state (see the module docstring)."""

    owner: Hashable = None  # who feeds it (a source partition): forgotten with it
    ref_rows: list[np.ndarray] = field(default_factory=list)  # the reference period, until complete
    ref_n: int = 0
    edges: np.ndarray | None = None  # (F, E)
    ref_frac: np.ndarray | None = None  # (F, E + 2)
    feats: BinRing | None = None
    scores: BinRing | None = None
    windows: int = 0
    drifting: bool = False
    stat: DriftStat | None = None


class DriftTracker:
    """Drift per book, fed a batch of scored windows at a time (`observe_windows`), read once in a
    while (`report`: the books that got windows since the last report, and the threshold crossings)."""

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        windows: int = 512,
        reference: int = 1024,
        bins: int = 10,
        moderate: float = 0.1,
        threshold: float = 0.25,
        skip: Sequence[str] = ("valid", "mid"),
        eps: float = PSI_EPS,
    ) -> None:
        if windows <= 0 or reference < bins or bins < 2 or not 0 < moderate <= threshold:
            raise ValueError("drift: windows > 0, reference >= bins >= 2, 0 < moderate <= threshold")
        names = list(feature_names)
        self.valid_col = names.index("valid") if "valid" in names else None
        self.cols = np.array([i for i, n in enumerate(names) if n not in set(skip)], np.int64)
        self.names = [names[i] for i in self.cols]
        self.n_windows, self.n_reference, self.bins = windows, reference, bins
        self.moderate, self.threshold, self.eps = moderate, threshold, eps
        self.books: dict[tuple[str, str], BookDrift] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._uniform = np.full(bins, 1.0 / bins)

    @property
    def drifting(self) -> int:
        """Books in the `drift` state."""
        return sum(b.drifting for b in self.books.values())

    # ---- in

    def newest_rows(self, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
        """(B, F) the newest valid feature row of each window (its tracked columns) and (B,) whether it has one."""
        feats = np.stack([w.features for w in windows])  # (B, T, F)
        ok = np.stack([w.row_mask for w in windows]).astype(bool)
        if self.valid_col is not None:
            ok &= feats[:, :, self.valid_col] > 0
        last = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
        rows = feats[np.arange(len(windows)), last][:, self.cols]
        return rows, ok.any(1)

    def forget_surprise(self) -> None:
        """Start every book's surprise drift anew (a new model was swapped in): the scores held are the
        previous model's, calibrated on its training windows, and say nothing of the new one's. The
        feature drift, the flow's own, goes on."""
        for book in self.books.values():
            book.scores = None

    def observe_windows(self, windows: Sequence[Window], scores: np.ndarray | None = None,
                        owner: Hashable = None) -> None:  # fmt: skip
        """A batch of windows (any books, each book's in order) and their calibrated scores (None: the
        forecaster has none): grouped by book with numpy, each book's rows pushed at once."""
        if not windows:
            return
        rows, has = self.newest_rows(windows)
        keys = np.array([f"{w.venue}\x1f{w.symbol}" for w in windows])
        uniq, inv = np.unique(keys, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        for key, idx in zip(uniq, np.split(order, np.cumsum(np.bincount(inv))[:-1]), strict=True):
            venue, symbol = str(key).split("\x1f", 1)
            sel = idx[has[idx]]
            self.observe(venue, symbol, rows[sel], None if scores is None else scores[idx], owner, len(idx))

    def observe(self, venue: str, symbol: str, rows: np.ndarray, scores: np.ndarray | None = None,
                owner: Hashable = None, windows: int | None = None) -> None:  # fmt: skip
        """A book's new windows: their (k, F) tracked feature rows (valid ones only) and scores."""
        key = (venue, symbol)
        b = self.books.get(key)
        if b is None:
            b = self.books[key] = BookDrift(owner=owner)
        b.owner = owner if owner is not None else b.owner
        b.windows += len(rows) if windows is None else windows
        self._dirty.add(key)
        if scores is not None and len(scores):
            if b.scores is None:
                b.scores = BinRing(self.n_windows, 1, self.bins)
            b.scores.push(score_bins(scores, self.bins)[:, None])
        if not len(rows):
            return
        if b.edges is None:
            need = self.n_reference - b.ref_n
            b.ref_rows.append(np.array(rows[:need], np.float32))
            b.ref_n += len(b.ref_rows[-1])
            rows = rows[need:]
            if b.ref_n < self.n_reference:
                return
            ref = np.concatenate(b.ref_rows)
            b.ref_rows = []
            b.edges = reference_edges(ref, self.bins)
            levels = b.edges.shape[1] + 2
            b.ref_frac = fractions(bin_counts(feature_bins(ref, b.edges), levels))
            b.feats = BinRing(self.n_windows, len(self.cols), levels)
        if len(rows):
            b.feats.push(feature_bins(rows, b.edges))  # type: ignore[union-attr]

    def forget(self, owner: Hashable) -> list[tuple[str, str]]:
        """Drop the books `owner` fed (a partition that went to another worker); returns their keys."""
        gone = [k for k, b in self.books.items() if b.owner == owner]
        for k in gone:
            del self.books[k]
            self._dirty.discard(k)
        return gone

    def touch(self, keys: Sequence[tuple[str, str]]) -> None:
        """Report these books again next time (their last report was not delivered)."""
        self._dirty.update(k for k in keys if k in self.books)

    # ---- out

    def report(self) -> tuple[dict[tuple[str, str], DriftStat], list[DriftChange]]:
        """The drift of every book that got windows since the last report, and the books that crossed
        the threshold (or came back) since."""
        keys = [k for k in self._dirty if k in self.books]
        self._dirty.clear()
        books = [self.books[k] for k in keys]
        feat_psi: dict[int, np.ndarray] = {}
        ready = [i for i, b in enumerate(books) if b.feats is not None and b.feats.full]
        if ready:  # one numpy pass over every book whose window ring is full
            ref = np.stack([books[i].ref_frac for i in ready])  # type: ignore[misc]
            cur = fractions(np.stack([books[i].feats.counts for i in ready]))  # type: ignore[union-attr]
            for i, p in zip(ready, psi(ref, cur, self.eps), strict=True):
                feat_psi[i] = p
        stats: dict[tuple[str, str], DriftStat] = {}
        changes: list[DriftChange] = []
        for i, (key, b) in enumerate(zip(keys, books, strict=True)):
            s_psi = None
            if b.scores is not None and b.scores.full:
                s_psi = float(psi(self._uniform, fractions(b.scores.counts[0]), self.eps))
            f_max = f_mean = None
            feature = None
            if i in feat_psi and len(self.cols):
                p = feat_psi[i]
                j = int(np.argmax(p))
                f_max, f_mean, feature = float(p[j]), float(p.mean()), self.names[j]
            candidates = [(v, n) for v, n in ((s_psi, "surprise"), (f_max, "feature")) if v is not None]
            was = b.drifting
            if candidates:
                top, statistic = max(candidates)
                if not b.drifting and top > self.threshold:
                    b.drifting = True
                elif b.drifting and top < self.moderate:
                    b.drifting = False
                state = DRIFT if b.drifting else MODERATE if top > self.moderate else STABLE
            else:
                state = WARMING
            b.stat = DriftStat(s_psi, f_max, f_mean, feature, b.windows, state)
            stats[key] = b.stat
            if b.drifting != was:
                changes.append(DriftChange(key[0], key[1], b.drifting, statistic, top,
                                           feature if statistic == "feature" else None, b.stat))  # fmt: skip
        return stats, changes


def describe(change: DriftChange, n_windows: int, n_reference: int) -> str:
    """The log line of a threshold crossing."""
    what = f"{change.statistic} PSI {change.value:.3f}"
    if change.feature is not None:
        what += f" (feature {change.feature})"
    against = "the uniform calibration" if change.statistic == "surprise" else f"its first {n_reference} windows"
    if change.drifting:
        return (f"drift: {change.venue} {change.symbol} drifting: {what} over its last {n_windows} windows "
                f"against {against}")  # fmt: skip
    return f"drift: {change.venue} {change.symbol} back to {change.stat.state}: largest statistic {what}"
