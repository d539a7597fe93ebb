"""Drift of the served flow per book (venue, symbol): pure numpy, no I/O (docs/design.md, "Drift").

Three statistics (PSI = sum_i (a_i - e_i) ln(a_i / e_i) over bins, each fraction floored at `eps`
so that an empty bin costs a finite amount):

- **Surprise drift** (`surprise_psi`): the model's calibrated surprise scores of the last N windows of
  a book against the book's own first M scores, binned like a feature (below). It says the model
  finds the book's flow more (or less) surprising than it did when the book started.
- **Surprise level** (`surprise_level`): the mean of those last N calibrated scores. The surprise is
  calibrated by the empirical CDF of the model's training windows, so the level is 0.5 on flow like
  the training flow as a whole, and near 1 on flow the model has never seen the like of. It is read
  one-sided: a book easier than the training flow (the six Binance captures end at 0.12-0.28) is no
  alarm.
  Why not the scores' PSI against uniform, as before 2026-12-05: the calibration pools every
  training book, so no single book is uniform on it. Against uniform, the six Binance captures scored
  PSI 1.4-4.2 and the simulated books 0.17-0.74 on normal flow (`bench/drift_probe.py`).
- **Feature drift** (`feature_psi_max`, `feature_psi_mean`, `feature`): per window feature, the
  distribution of the newest valid feature row of the last N windows of a book against a reference,
  the book's own first M windows; bins from the reference's deciles and its min and max, with a bin
  below the min and one above the max (so that a feature constant in the reference still shows a
  move either way). Reported: the max and the mean over features and the feature that drifted most.

Thresholds as in common practice for a PSI: < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift; the
surprise level's own (0.8 drift, 0.7 moderate). A book is `drift` from the moment a statistic exceeds
its drift threshold until every statistic is back under its moderate one (hysteresis: a book on the
boundary does not flap). The state follows the model's surprise (its PSI and level) where the
forecaster has a calibrated score, the features only where it has none (the baseline): a real
book's features move against its first minutes within the hour (feature PSI max 7-16 on the
Binance captures: depth wanders) while the model's surprise against the book's start holds (PSI
0.05-0.15), so features that drove the state kept every real book in `drift`. They stay published:
they say which input moved.

Memory per book is bounded: the references' rows until complete (at most M x (F + 1) float32), then
their bin edges and fractions, two rings of bin indices (N x F and N bytes) with running counts and
a ring of the last N scores (N float32).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

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


class Reference:
    """A statistic of a book against the book's own beginning: its first `n` rows are the reference
    (kept until complete, then only their bin edges and fractions: `reference_edges`), the rows after
    them go through a ring of the last `size` rows' bins."""

    __slots__ = ("bins", "edges", "frac", "n", "ring", "rows", "seen", "size")

    def __init__(self, n: int, size: int, bins: int) -> None:
        self.n, self.size, self.bins = n, size, bins
        self.rows: list[np.ndarray] = []
        self.seen = 0
        self.edges: np.ndarray | None = None  # (F, E)
        self.frac: np.ndarray | None = None  # (F, E + 2)
        self.ring: BinRing | None = None

    @property
    def ready(self) -> bool:
        """A full ring after a complete reference: the PSI is known."""
        return self.ring is not None and self.ring.full

    def push(self, rows: np.ndarray) -> None:
        """(k, F) new rows, oldest first."""
        if self.edges is None:
            need = self.n - self.seen
            self.rows.append(np.array(rows[:need], np.float32))
            self.seen += len(self.rows[-1])
            rows = rows[need:]
            if self.seen < self.n:
                return
            ref = np.concatenate(self.rows)
            self.rows = []
            self.edges = reference_edges(ref, self.bins)
            levels = self.edges.shape[1] + 2
            self.frac = fractions(bin_counts(feature_bins(ref, self.edges), levels))
            self.ring = BinRing(self.size, ref.shape[1], levels)
        if len(rows):
            self.ring.push(feature_bins(rows, self.edges))  # type: ignore[union-attr]


class ValueRing:
    """The last `size` values (float32), for their mean."""

    __slots__ = ("n", "values")

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size, np.float32)
        self.n = 0

    @property
    def full(self) -> bool:
        return self.n >= len(self.values)

    def push(self, values: np.ndarray) -> None:
        size = len(self.values)
        kept = values[-size:]
        self.values[(self.n + np.arange(len(kept))) % size] = kept
        self.n += len(kept)

    def mean(self) -> float:
        return float(self.values[: min(self.n, len(self.values))].mean())


@dataclass(frozen=True)
class DriftStat:
    """A book's drift as published (`mt:meta` field `drift:<venue>:<symbol>`); None: not enough windows yet."""

    surprise_psi: float | None
    surprise_level: float | None
    feature_psi_max: float | None
    feature_psi_mean: float | None
    feature: str | None  # the feature whose PSI is the max
    windows: int  # windows the tracker has seen of the book
    state: str  # warming, stable, moderate, drift

    def to_json(self) -> str:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return json.dumps({"surprise_psi": r(self.surprise_psi), "surprise_level": r(self.surprise_level),
                           "feature_psi_max": r(self.feature_psi_max),
                           "feature_psi_mean": r(self.feature_psi_mean), "feature": self.feature,
                           "windows": self.windows, "state": self.state}, separators=(",", ":"))  # fmt: skip


@dataclass(frozen=True)
class DriftChange:
    """A book that crossed the drift threshold (`drifting`) or came back under the moderate one."""

    venue: str
    symbol: str
    drifting: bool
    statistic: str  # "surprise", "surprise level" or "feature": the one furthest past its threshold
    value: float
    feature: str | None
    stat: DriftStat


@dataclass
class BookDrift:
    """One book's drift state (see the module docstring)."""

    owner: Hashable = None  # who feeds it (a source partition): forgotten with it
    feats: Reference | None = None  # the newest feature rows against the book's first ones
    scores: Reference | None = None  # the calibrated surprise against the book's first scores
    levels: ValueRing | None = None  # the last scores, for their mean
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
        level: float = 0.8,
        level_moderate: float = 0.7,
        skip: Sequence[str] = ("valid", "mid"),
        eps: float = PSI_EPS,
    ) -> None:
        if windows <= 0 or reference < bins or bins < 2 or not 0 < moderate <= threshold:
            raise ValueError("drift: windows > 0, reference >= bins >= 2, 0 < moderate <= threshold")
        if not 0 < level_moderate <= level <= 1:
            raise ValueError("drift: 0 < surprise level moderate <= surprise level <= 1")
        names = list(feature_names)
        self.valid_col = names.index("valid") if "valid" in names else None
        self.cols = np.array([i for i, n in enumerate(names) if n not in set(skip)], np.int64)
        self.names = [names[i] for i in self.cols]
        self.n_windows, self.n_reference, self.bins = windows, reference, bins
        self.moderate, self.threshold, self.eps = moderate, threshold, eps
        self.level, self.level_moderate = level, level_moderate
        self.books: dict[tuple[str, str], BookDrift] = {}
        self._dirty: set[tuple[str, str]] = set()

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
            book.scores = book.levels = None

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
            s = np.clip(np.nan_to_num(np.asarray(scores, np.float64), nan=0.0), 0.0, 1.0)
            if b.scores is None or b.levels is None:
                b.scores = Reference(self.n_reference, self.n_windows, self.bins)
                b.levels = ValueRing(self.n_windows)
            b.scores.push(s[:, None])
            b.levels.push(s)
        if len(rows):
            if b.feats is None:
                b.feats = Reference(self.n_reference, self.n_windows, self.bins)
            b.feats.push(rows)

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
        ready = [i for i, b in enumerate(books) if b.feats is not None and b.feats.ready]
        if ready:  # one numpy pass over every book whose window ring is full
            ref = np.stack([books[i].feats.frac for i in ready])  # type: ignore[union-attr,misc]
            cur = fractions(np.stack([books[i].feats.ring.counts for i in ready]))  # type: ignore[union-attr]
            for i, p in zip(ready, psi(ref, cur, self.eps), strict=True):
                feat_psi[i] = p
        stats: dict[tuple[str, str], DriftStat] = {}
        changes: list[DriftChange] = []
        for i, (key, b) in enumerate(zip(keys, books, strict=True)):
            s_psi = level = None
            if b.scores is not None and b.scores.ready:
                s_psi = float(psi(b.scores.frac[0], fractions(b.scores.ring.counts[0]), self.eps))  # type: ignore[index,union-attr]
            if b.levels is not None and b.levels.full:
                level = b.levels.mean()
            f_max = f_mean = None
            feature = None
            if i in feat_psi and len(self.cols):
                p = feat_psi[i]
                j = int(np.argmax(p))
                f_max, f_mean, feature = float(p[j]), float(p.mean()), self.names[j]
            # (value, statistic, drift threshold, moderate threshold): the model's surprise where it has one
            judged = ([(s_psi, "surprise", self.threshold, self.moderate),
                       (level, "surprise level", self.level, self.level_moderate)] if b.levels is not None
                      else [(f_max, "feature", self.threshold, self.moderate)])  # fmt: skip
            known = [(v / hi, v, name, hi, lo) for v, name, hi, lo in judged if v is not None]
            was = b.drifting
            if known:
                if not b.drifting and any(v > hi for _, v, _, hi, _ in known):
                    b.drifting = True
                elif b.drifting and all(v < lo for _, v, _, _, lo in known):
                    b.drifting = False
                state = DRIFT if b.drifting else MODERATE if any(v > lo for _, v, _, _, lo in known) else STABLE
            else:
                state = WARMING
            b.stat = DriftStat(s_psi, level, f_max, f_mean, feature, b.windows, state)
            stats[key] = b.stat
            if b.drifting != was:
                _, top, statistic, _, _ = max(known)  # the statistic furthest past its threshold
                changes.append(DriftChange(key[0], key[1], b.drifting, statistic, top,
                                           feature if statistic == "feature" else None, b.stat))  # fmt: skip
        return stats, changes


def describe(change: DriftChange, n_windows: int, n_reference: int) -> str:
    """The log line of a threshold crossing."""
    if change.statistic == "surprise level":
        what = (f"mean calibrated surprise {change.value:.3f} over its last {n_windows} windows (0.5 on flow "
                f"like the model's training flow)")  # fmt: skip
    else:
        what = f"{change.statistic} PSI {change.value:.3f}"
        if change.feature is not None:
            what += f" (feature {change.feature})"
        what += f" of its last {n_windows} windows against its first {n_reference}"
    if change.drifting:
        return f"drift: {change.venue} {change.symbol} drifting: {what}"
    return f"drift: {change.venue} {change.symbol} back to {change.stat.state}: largest statistic {what}"
