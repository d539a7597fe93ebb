"""A book's record of its own realized traded volumes, kept by its window builder: each window carries the
10/50/90% quantiles of the volumes traded over h messages after each of the book's earlier windows whose
horizon has ended (`Window.volume_record`), for h in VOLUME_HORIZONS, the served forecasts' horizons.

Why the builder keeps it: the window's rows see a second of trading at most, while a book's lot and its
activity are in its record over thousands of messages (on the four Binance instruments the network never
saw, the EWMA of that record beat the L2 volume head by 5-42% in CRPS: docs/design.md, "Model
decisions"); the builder sees every message, its state is in every `md.state` snapshot, so a worker
restored after a crash serves the record an uninterrupted run would have (a forecaster keeps no state
between batches: model.serving.forecaster), and a worker that sheds windows under overload still counts
every message.

Each window's volume is log1p of the lots traded in the h messages after its last one (EXECUTE and
TRADE, non-printable executions left out: `traded_lots`), the datasets' volume target; the quantiles
weigh each known volume 0.5^(its age in windows / HALFLIFE) over the newest KEEP (`ewma_quantiles`),
NaN until MIN_KNOWN are known. model.evaluation.baselines.volume_levels reads the same off a dataset's
targets. The Rust builder (orderbook/native/src/windows.rs) keeps the same record, bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from .events import FLAG_NON_PRINTABLE, Event
from .features import TRADE_KINDS

VOLUME_HORIZONS = (10, 100)  # messages: the served forecasts' horizons (model.serving.forecaster.HORIZONS)
HALFLIFE = 64  # windows of the book
KEEP = 8 * HALFLIFE  # the newest known volumes a quantile reads, per horizon
MIN_KNOWN = 10  # the fewest known volumes the quantiles are read off
LEVELS = np.array([0.1, 0.5, 0.9])
# the weight of a volume by its age in windows (0: the newest), one table for every reader: the same
# floats in the reference, the Rust builder and the evaluation
AGE_WEIGHTS = np.array([0.5 ** (age / HALFLIFE) for age in range(KEEP)])


def traded_lots(events: Sequence[Event]) -> int:
    """The lots a message traded: its EXECUTE and TRADE events' sizes, non-printable executions left out."""
    return sum(e.size for e in events if e.kind in TRADE_KINDS and not e.flags & FLAG_NON_PRINTABLE)


def ewma_quantiles(values: np.ndarray, halflife: float = HALFLIFE) -> np.ndarray:
    """(3,) the LEVELS quantiles of `values` (oldest first, at most KEEP), each weighed 0.5^(its age /
    `halflife`) (AGE_WEIGHTS): the smallest value whose cumulative weight, in value order (ties oldest
    first), over the total reaches the level. The cumulative sum runs in that order and the total is
    its last term, so every reader that adds in that order gets the same floats (np.cumsum adds one by
    one)."""
    n = len(values)
    if not 0 < n <= KEEP:
        raise ValueError(f"ewma_quantiles: {n} values, 1 to {KEEP} are read")
    weights = AGE_WEIGHTS if halflife == HALFLIFE else 0.5 ** (np.arange(KEEP) / halflife)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[n - 1 - order])
    cdf = cum / cum[-1]
    return values[order][np.minimum(np.searchsorted(cdf, LEVELS), n - 1)]


class VolumeRecord:
    """One book's record: `message(lots)` after each message, `quantiles()` as a window is cut, then
    `window_cut()` once it is emitted (a window read without being emitted enters no record)."""

    __slots__ = ("known", "latest", "messages", "pending", "traded")

    def __init__(self) -> None:
        self.messages = 0  # messages so far
        self.traded = 0  # lots traded in them
        # per horizon: (messages, traded) at each emitted window whose horizon has not ended, oldest first
        self.pending: list[deque[tuple[int, int]]] = [deque() for _ in VOLUME_HORIZONS]
        # per horizon: log1p of the volume traded over the horizon of each window whose horizon ended
        self.known: list[deque[float]] = [deque(maxlen=KEEP) for _ in VOLUME_HORIZONS]
        # the quantiles as of the newest known volume, None until read: a scenario path reads a window at
        # every event while its record stops changing within h messages of the cut (reading them afresh
        # was 5% of a draw)
        self.latest: np.ndarray | None = None

    def message(self, lots: int) -> None:
        self.messages += 1
        self.traded += lots
        for h, pending, known in zip(VOLUME_HORIZONS, self.pending, self.known, strict=True):
            while pending and pending[0][0] + h <= self.messages:
                known.append(math.log1p(self.traded - pending.popleft()[1]))
                self.latest = None

    def window_cut(self) -> None:
        for pending in self.pending:
            pending.append((self.messages, self.traded))

    def quantiles(self) -> np.ndarray:
        """(len(VOLUME_HORIZONS), 3) float64, NaN for a horizon with fewer than MIN_KNOWN known; the
        caller's own array."""
        if self.latest is None:
            out = np.full((len(VOLUME_HORIZONS), len(LEVELS)), np.nan)
            for k, known in enumerate(self.known):
                if len(known) >= MIN_KNOWN:
                    out[k] = ewma_quantiles(np.fromiter(known, np.float64, len(known)))
            self.latest = out
        return self.latest.copy()

    def __deepcopy__(self, memo: dict) -> VolumeRecord:
        out = memo[id(self)] = VolumeRecord.__new__(VolumeRecord)
        out.messages, out.traded, out.latest = self.messages, self.traded, self.latest  # latest: never written
        out.pending = [deque(p) for p in self.pending]
        out.known = [deque(k, maxlen=KEEP) for k in self.known]
        return out
