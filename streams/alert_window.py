"""The window that raised an alert, as the dashboard shows it: `mt:window:{venue}:{symbol}:{window}`
(streams/sink.py, docs/design.md "Redis layout"), compact JSON.

A forecast names its window only by its book's event count; the window's own events and book rows
live in the worker's memory and are gone a moment later. For an alert (rare: the score's top tail)
the worker keeps them: the real event tokens as the window holds them (event time ns, kind and side
by name, price in ticks relative to the prevailing mid, clipped as the model saw it, size in lots),
the book series (the window's feature rows, `SERIES_COLUMNS` of orderbook/features.py's), the
headlines in the window, the reason, and where the model gives them (`drivers`, the order-flow
model's) the most surprising event and the book columns that drove the score.

Built on the model thread (streams/batcher.py), for alerts only: `drivers` is a forward and a
backward pass of the model, which no event loop may wait on, and nothing is built for the windows
below the threshold. The content is a function of the window and the model alone, so a replay after
a crash builds the same JSON (and the sink's script writes nothing for a forecast it already holds).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.serving.forecaster import Forecaster
from orderbook.events import Kind, Side
from orderbook.features import FEATURE_NAMES
from orderbook.windows import Window

VERSION = 1  # the payload's layout: a reader checks it before reading the rest
EVENT_COLUMNS = ("ts", "kind", "side", "price_ticks", "size")
# the book series kept: the top of the book (mid in venue price units, spread in ticks), depth at 5
# levels (log1p of lots, as the rows hold it) and the top queue imbalance; the rest of a row is flow
# statistics the drivers name when they matter
SERIES_COLUMNS = ("valid", "mid", "spread_ticks", "log_depth_bid_5", "log_depth_ask_5", "queue_imbalance")
_SERIES_AT = [FEATURE_NAMES.index(c) for c in SERIES_COLUMNS]
_KINDS = {k.value: k.name for k in Kind}
_SIDES = {s.value: s.name for s in Side}

Surprising = tuple[int, float] | None  # (slot index in the window's N events, its nll in nats)
Drivers = Sequence[tuple[str, float]]  # (book column, share of the score's attribution)


def model_drivers(model: Forecaster, window: Window) -> tuple[Surprising, Drivers]:
    """The model's most surprising event of the window and the columns that drove its score, where the
    model has `drivers` (the order-flow model; the baseline has none: (None, [])). On the model thread
    only: it may cost a forward and a backward pass."""
    drivers = getattr(model, "drivers", None)
    if drivers is None:
        return None, []
    surprising, columns = drivers(window)
    return surprising, list(columns)


def _f32(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back the same float32 (JSON stays small)."""
    return [float(str(v)) for v in values.astype(np.float32)]


def payload(window: Window, reason: str, model_id: str, surprising: Surprising = None, drivers: Drivers = ()) -> str:
    """The alert window's JSON (the module docstring)."""
    real = np.flatnonzero(window.mask)  # left-padded: the real slots are the last ones
    events = [
        [ts, _KINDS.get(k, str(k)), _SIDES.get(s, str(s)), p, n]
        for ts, k, s, p, n in zip(
            window.event_ts[real].tolist(),
            window.kind[real].tolist(),
            window.side[real].tolist(),
            window.price[real].tolist(),
            window.size[real].tolist(),
            strict=True,
        )
    ]
    surprise: dict[str, Any] | None = None
    if surprising is not None and 0 <= surprising[0] < len(window.mask) and window.mask[surprising[0]]:
        surprise = {"event": int(np.searchsorted(real, surprising[0])), "nll": round(float(surprising[1]), 4)}
    rows = window.features[window.row_mask]
    # a window of another feature layout (not FEATURE_NAMES) has no columns this page can name
    series = [_f32(r) for r in rows[:, _SERIES_AT]] if rows.shape[1] == len(FEATURE_NAMES) else []
    out = {
        "version": VERSION,
        "venue": window.venue,
        "symbol": window.symbol,
        "window": int(window.n_seen),
        "seq": int(window.seq),
        "ts": int(window.ts),
        "start_ts": int(window.start_ts),
        "best_bid": int(window.best_bid),
        "best_ask": int(window.best_ask),
        "model": model_id,
        "reason": reason,
        "events": {"columns": list(EVENT_COLUMNS), "rows": events},
        "series": {"columns": list(SERIES_COLUMNS) if series else [], "rows": series},
        "surprising": surprise,
        "drivers": [{"feature": name, "share": round(float(share), 4)} for name, share in drivers],
        "news": [[ts, text] for ts, text in window.news],
    }
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))
