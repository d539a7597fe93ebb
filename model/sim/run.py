"""A simulated multi-symbol market: every symbol's flow (model.sim.engine) with its news (model.sim.news)
and injected manipulation (model.sim.anomalies), merged into one time-ordered stream."""

from __future__ import annotations

import heapq
from collections.abc import Callable

from model.sim.anomalies import schedule_anomalies
from model.sim.engine import SimConfig, SimResult, SymbolSim
from model.sim.news import news_windows, schedule_news


def simulate(cfg: SimConfig, progress: Callable[[int], None] | None = None) -> SimResult:
    """Run every symbol, then merge their events by time (stable: ties keep symbol order)."""
    specs = cfg.specs()
    start, end = cfg.start_ns, cfg.start_ns + cfg.duration_ns
    news = cfg.news if cfg.news is not None else schedule_news(cfg.seed, specs, start, end, cfg.news_rate)
    labels, agents = schedule_anomalies(cfg.seed, specs, start, end, cfg.anomaly_rates, cfg.anomaly_intensity, news)
    streams, snaps, finals, regimes = [], {}, {}, {}
    for i, spec in enumerate(specs):
        windows = news_windows(news, spec.name, cfg.news_effect_s, cfg.halt_s, cfg.news_jump)
        windows += [w for lab, w in agents.windows if lab.symbol == spec.name]
        sim = SymbolSim(i, spec, len(specs), cfg.seed, cfg.flow, start, end, windows, cfg.snapshot_every)
        sim.agents = [a for a in agents.agents if a.symbol == spec.name]
        streams.append(sim.run())
        snaps[spec.name] = sim.snapshots
        finals[spec.name] = sim.snapshot(end)
        regimes[spec.name] = sim.regimes
        if progress:
            progress(len(sim.out))
    events = list(heapq.merge(*streams, key=lambda e: e.ts))
    for n, e in enumerate(events, start=1):
        e.seq = n
    return SimResult(cfg, specs, events, news, labels, regimes, snaps, finals)
