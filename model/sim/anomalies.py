"""Injected market manipulation and stress, each with its label (the ground truth evaluation lacks).

Each kind is an agent acting on one symbol's book over [start, end), or a window of changed flow
(intensity x scales sizes and rates; one x for every window, or each window's own, drawn uniformly
from a range: see `parse_intensity`):

- spoofing: a large order (25 x lots) at or one tick behind the best on one side, cancelled 0.3-1.5 s
  later before it trades, while a small order rests at the opposite best; repeated.
- layering: the same with 3 + 2x orders on consecutive levels behind the best.
- quote_stuffing: add + delete pairs deep in the book at 200 x pairs per second.
- momentum_ignition: marketable orders in one direction, 5 x per second, walking the book, then the
  reversal (the agent unwinds) for the last 40 % of the window.
- flash_crash: liquidity withdrawal: 85 % of one side's orders cancelled at the start, limit flow cut
  to 30 %, then sweeping market orders into that side every 0.5 s.
- regime_shift: a sudden persistent change: market rate x(1 + 1.5x), cancels x(1 + x), bigger orders,
  wider spread; with the efficient price (model/sim/engine.py), its volatility x(1 + x).

After SEC/ESMA descriptions of spoofing and layering (e.g. SEC v. Milrud 2015), quote stuffing
(Egginton, Van Ness & Van Ness 2016), momentum ignition (ESMA 2012 guidelines), and the 6 May 2010
flash crash (CFTC-SEC report: liquidity withdrawal, then sweeping sell orders).

`labels.csv` has columns `symbol,start_ns,end_ns,kind,params` (params is JSON), times on the written
stream's own clock. Windows of one symbol never overlap each other nor a news halt.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from model.sim.engine import SEC, Effect, Interval, SymbolSim, SymbolSpec
from orderbook.events import Side

KINDS = ("spoofing", "layering", "quote_stuffing", "momentum_ignition", "flash_crash", "regime_shift")
DURATION_S: dict[str, tuple[float, float]] = {  # window length range per kind
    "spoofing": (20.0, 60.0),
    "layering": (20.0, 60.0),
    "quote_stuffing": (2.0, 8.0),
    "momentum_ignition": (10.0, 30.0),
    "flash_crash": (5.0, 20.0),
    "regime_shift": (900.0, 2400.0),
}
NEVER = 1 << 62


@dataclass(frozen=True)
class Label:
    symbol: str
    start_ns: int
    end_ns: int
    kind: str
    params: dict

    def row(self, clock_offset: int = 0) -> list:
        return [
            self.symbol,
            self.start_ns + clock_offset,
            self.end_ns + clock_offset,
            self.kind,
            json.dumps(self.params, sort_keys=True),
        ]


class Agent:
    """An injected trader on one symbol: `act` at `next_t`, which it then moves on."""

    def __init__(self, label: Label, seed: int) -> None:
        self.label = label
        self.symbol = label.symbol
        self.start, self.end = label.start_ns, label.end_ns
        self.x = float(label.params.get("intensity", 1.0))
        self.rng = random.Random(f"{seed}:{label.symbol}:{label.start_ns}:{label.kind}")
        self.next_t = self.start
        self.live: list[int] = []

    def _secs(self, lo: float, hi: float) -> int:
        return int((lo + (hi - lo) * self.rng.random()) * SEC) + 1

    def _cancel_live(self, sim: SymbolSim, t: int) -> None:
        for oid in self.live:
            if oid in sim.orders:
                sim.delete(t, oid)
        self.live = []

    def act(self, sim: SymbolSim, t: int) -> None:
        if t >= self.end:
            self._cancel_live(sim, t)
            self.next_t = NEVER
            return
        self.step(sim, t)
        self.next_t = min(self.next_t, self.end)

    def skip(self, t: int) -> None:
        self.next_t = min(t + SEC, self.end) if t < self.end else NEVER

    def step(self, sim: SymbolSim, t: int) -> None:
        raise NotImplementedError


class Spoofer(Agent):
    """Large orders on `side` near the best, cancelled before they trade; a small genuine order opposite."""

    levels = 1

    def __init__(self, label: Label, seed: int) -> None:
        super().__init__(label, seed)
        self.side = Side.BID if label.params["side"] == "bid" else Side.ASK
        self.n_levels = int(label.params.get("levels", self.levels))

    def step(self, sim: SymbolSim, t: int) -> None:
        if self.live:
            self._cancel_live(sim, t)
            self.next_t = t + self._secs(0.2, 1.0)
            return
        tick, lot, s = sim.spec.tick, sim.spec.lot, self.side
        big = int(25 * self.x) * lot or lot
        first = 0 if self.n_levels == 1 and self.rng.random() < 0.5 else 1
        for k in range(first, first + self.n_levels):
            price = sim.best[s] - k * tick if s == Side.BID else sim.best[s] + k * tick
            if price > 0:
                self.live.append(sim.add(t, s, price, big))
        other = Side.ASK if s == Side.BID else Side.BID
        sim.add(t, other, sim.best[other], lot)  # the genuine order the spoof is meant to fill
        self.next_t = t + self._secs(0.3, 1.5)


class Layerer(Spoofer):
    levels = 3


class QuoteStuffer(Agent):
    """Bursts of add + delete deep in the book."""

    def step(self, sim: SymbolSim, t: int) -> None:
        period = int(SEC / (200 * self.x)) + 1
        if self.live:
            self._cancel_live(sim, t)
            self.next_t = t + period // 2 + 1
            return
        side = Side.BID if self.rng.random() < 0.5 else Side.ASK
        k = 5 + int(self.rng.random() * 6)
        tick = sim.spec.tick
        price = sim.best[side] - k * tick if side == Side.BID else sim.best[side] + k * tick
        if price > 0:
            self.live.append(sim.add(t, side, price, sim.spec.lot))
        self.next_t = t + period // 2 + 1


class MomentumIgniter(Agent):
    """Aggressive orders one way, then the reversal for the last 40 % of the window."""

    def __init__(self, label: Label, seed: int) -> None:
        super().__init__(label, seed)
        self.sign = 1 if label.params["direction"] == "up" else -1
        self.turn = self.start + int((self.end - self.start) * 0.6)

    def step(self, sim: SymbolSim, t: int) -> None:
        sign = self.sign if t < self.turn else -self.sign
        size = int(3 * self.x + 1) * sim.spec.lot
        sim.market(t, Side.BID if sign > 0 else Side.ASK, size, walk=True, keep=3)
        self.next_t = t + int(SEC / (5 * self.x) * (0.5 + self.rng.random())) + 1


class FlashCrash(Agent):
    """Liquidity withdrawn from `side`, then sweeps into it."""

    def __init__(self, label: Label, seed: int) -> None:
        super().__init__(label, seed)
        self.side = Side.BID if label.params["side"] == "bid" else Side.ASK
        self.withdrawn = False

    def step(self, sim: SymbolSim, t: int) -> None:
        s = self.side
        if not self.withdrawn:
            self.withdrawn = True
            keep = 3
            for oid in [oid for oid, o in sim.orders.items() if o[0] == s]:
                if sim.count[s] > keep and self.rng.random() < 0.85:
                    sim.delete(t, oid)
            self.next_t = t + SEC // 4
            return
        aggressor = Side.ASK if s == Side.BID else Side.BID  # sellers hit the thinned bids
        sim.market(t, aggressor, int(10 * self.x) * sim.spec.lot, walk=True, keep=2)
        self.next_t = t + SEC // 2


AGENTS: dict[str, type[Agent]] = {
    "spoofing": Spoofer,
    "layering": Layerer,
    "quote_stuffing": QuoteStuffer,
    "momentum_ignition": MomentumIgniter,
    "flash_crash": FlashCrash,
}


def window_effect(kind: str, x: float) -> Effect | None:
    """The change of the natural flow during a window (None: the agent alone acts)."""
    if kind == "flash_crash":
        return Effect(lim=0.3, gap=3)
    if kind == "regime_shift":
        return Effect(mkt=1.0 + 1.5 * x, can_bid=1.0 + x, can_ask=1.0 + x, size=1.5, gap=1, excite=1.2, vol=1.0 + x)
    return None


@dataclass
class Schedule:
    agents: list[Agent] = field(default_factory=list)
    windows: list[tuple[Label, Interval]] = field(default_factory=list)


def parse_anomalies(text: str, rate: float) -> dict[str, float]:
    """`--anomalies` syntax: `all`, `none`, or `kind[=per_hour],...`; a kind without a rate takes `rate`."""
    text = text.strip()
    if not text or text == "none":
        return {}
    if text == "all":
        return dict.fromkeys(KINDS, rate)
    out = {}
    for part in text.split(","):
        kind, _, r = part.strip().partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; known: {', '.join(KINDS)}")
        out[kind] = float(r) if r else rate
        if out[kind] < 0:
            raise ValueError(f"anomaly rate for {kind} must be >= 0")
    return out


def _params(kind: str, rng: random.Random, x: float) -> dict:
    p: dict = {"intensity": x}
    if kind in ("spoofing", "layering", "flash_crash"):
        p["side"] = "bid" if rng.random() < 0.5 else "ask"
    if kind == "layering":
        p["levels"] = 3 + int(2 * x)
    if kind == "momentum_ignition":
        p["direction"] = "up" if rng.random() < 0.5 else "down"
    return p


Intensity = float | tuple[float, float]  # one x, or a window's x drawn uniformly from (lo, hi)


def parse_intensity(text: str) -> Intensity:
    """`--anomaly-intensity` syntax: `X`, or `LO:HI` for each window's own x drawn uniformly from that
    range (a detector trained on one x learns that x: real manipulation comes in every size)."""
    lo, sep, hi = text.strip().partition(":")
    try:
        x = (float(lo), float(hi)) if sep else float(lo)
    except ValueError:
        raise ValueError(f"anomaly intensity {text!r}: use X or LO:HI, e.g. 1 or 0.4:1") from None
    bounds = x if isinstance(x, tuple) else (x, x)
    if not 0 < bounds[0] <= bounds[1] or not all(math.isfinite(b) for b in bounds):
        raise ValueError(f"anomaly intensity {text!r}: want 0 < LO <= HI")
    return x


def schedule_anomalies(
    seed: int,
    specs: list[SymbolSpec],
    start: int,
    end: int,
    rates: dict[str, float],
    intensity: Intensity,
    news: Iterable = (),
) -> tuple[list[Label], Schedule]:
    """Windows at Poisson times (`rates`: per symbol per hour), non-overlapping per symbol and clear of
    halts; the first minute and the last window length of the stream are left alone. A range of
    `intensity` draws each window's x (one more draw per window: a single x keeps the schedule of a
    seed as it was)."""
    rng = random.Random(f"anomalies:{seed}")
    busy: dict[str, list[tuple[int, int]]] = {s.name: [] for s in specs}
    for n in news:
        if n.kind == "halt" and n.symbol in busy:
            busy[n.symbol].append((n.ts - 60 * SEC, n.ts + 3600 * SEC))
    labels: list[Label] = []
    sched = Schedule()
    for spec in specs:
        for kind in KINDS:
            r = rates.get(kind, 0.0)
            if r <= 0:
                continue
            t = start + 60 * SEC
            while True:
                t += int(-math.log(1.0 - rng.random()) * 3600 / r * SEC) + 1
                lo, hi = DURATION_S[kind]
                length = int((lo + (hi - lo) * rng.random()) * SEC)
                x = intensity
                if isinstance(intensity, tuple):
                    x = intensity[0] + (intensity[1] - intensity[0]) * rng.random()
                params = _params(kind, rng, x)
                if t + length >= end:
                    break
                margin = 5 * SEC
                if any(t - margin < b and a < t + length + margin for a, b in busy[spec.name]):
                    continue
                busy[spec.name].append((t, t + length))
                label = Label(spec.name, t, t + length, kind, params)
                labels.append(label)
                eff = window_effect(kind, x)
                if eff is not None:
                    sched.windows.append((label, Interval(t, t + length, eff, f"anomaly:{kind}")))
                if kind in AGENTS:
                    sched.agents.append(AGENTS[kind](label, seed))
    labels.sort(key=lambda lab: (lab.start_ns, lab.symbol))
    return labels, sched


def write_labels(labels: Iterable[Label], path: Path, clock_offset: int = 0) -> int:
    """labels.csv with its header; the number of labels."""
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", "start_ns", "end_ns", "kind", "params"])
        for lab in labels:
            w.writerow(lab.row(clock_offset))
            n += 1
    return n
