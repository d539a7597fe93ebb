"""An alert's window in Redis (`mt:window:{venue}:{symbol}:{window}`, streams/alert_window.py): built on
the model thread for alerts only, written in the forecast's own script (streams/sink.py), once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence

import numpy as np
import pytest
import redis
from test_baseline import calm_then_burst

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import Forecaster, forecast_records
from model.sim.engine import SEC, SimConfig
from orderbook.events import Kind, Side
from orderbook.windows import Window
from streams import alert_window
from streams.batcher import MicroBatcher, Scored
from streams.pipeline import simulated_windows
from streams.sink import WINDOW, WINDOW_TTL_S, RedisSink


def sim_windows(seconds: int = 300, seed: int = 3) -> list[Window]:
    """An ITCH book's windows from the simulator, through the worker's own pipeline."""
    return simulated_windows(SimConfig(n_symbols=1, duration_ns=seconds * SEC, seed=seed))


def score(forecaster: Forecaster, windows: Sequence[Window], explain_above: float) -> Scored:
    async def main() -> Scored:
        batcher = MicroBatcher(forecaster, explain_above=explain_above, max_wait=0.01)
        try:
            return await batcher.submit(windows)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def records(scored: Scored) -> list[dict]:
    (model_id, a, b), *_ = scored.runs()
    return forecast_records(model_id, scored.windows[a:b], scored.forecasts.part(a, b), 1)


@pytest.fixture
def r(infra):
    client = redis.Redis.from_url(infra.redis.url, db=9)
    client.flushdb()
    return client


def test_an_alert_writes_its_window_once_a_replay_leaves_it_and_a_non_alert_writes_none(r):
    windows = sim_windows()[:3]
    scored = score(BaselineForecaster(), windows, explain_above=0.0)  # every window gets its JSON
    recs = records(scored)
    recs[0]["anomaly_score"], recs[1]["anomaly_score"], recs[2]["anomaly_score"] = 0.999, 0.5, 0.995
    payloads = list(scored.alert_windows)
    assert all(payloads)
    sink = RedisSink(r, alert_threshold=0.99)
    assert sink.write(recs, payloads) == 3
    keys = [WINDOW.format(**f) for f in recs]
    assert keys[0] == f"mt:window:itch:{recs[0]['symbol']}:{recs[0]['window']}"
    assert r.get(keys[0]) == payloads[0].encode() and r.get(keys[2]) == payloads[2].encode()
    assert not r.exists(keys[1])  # below the threshold: no window, whatever the caller handed over
    assert sorted(k.decode() for k in r.scan_iter("mt:window:*")) == sorted([keys[0], keys[2]])
    assert 0 < r.ttl(keys[0]) <= WINDOW_TTL_S
    # a replay (at-least-once delivery): nothing new, the window as it was, even were its JSON to differ
    assert sink.write(recs, [p.replace('"version":1', '"version":2') for p in payloads]) == 0
    assert r.get(keys[0]) == payloads[0].encode()
    assert sorted(k.decode() for k in r.scan_iter("mt:window:*")) == sorted([keys[0], keys[2]])
    stored = json.loads(r.get(keys[0]))
    assert (stored["venue"], stored["symbol"], stored["window"]) == ("itch", recs[0]["symbol"], recs[0]["window"])


def test_without_windows_or_with_a_zero_ttl_an_alert_is_written_alone(r):
    windows = sim_windows()[:2]
    scored = score(BaselineForecaster(), windows, explain_above=0.0)
    recs = records(scored)
    for f in recs:
        f["anomaly_score"] = 0.999
    RedisSink(r).write(recs[:1])  # a writer that hands no windows (the CLI, older callers)
    RedisSink(r, window_ttl_s=0).write(recs[1:], scored.alert_windows[1:])
    assert r.xlen("mt:alerts") == 2 and list(r.scan_iter("mt:window:*")) == []


def test_the_batcher_builds_the_window_of_each_alert_only_in_the_model_thread():
    calm, burst = calm_then_burst()
    windows = calm[-10:] + burst
    threads: set[str] = set()
    real = alert_window.payload

    def watched(*args, **kw):  # the real function, noting its thread
        threads.add(threading.current_thread().name)
        return real(*args, **kw)

    alert_window.payload = watched
    try:
        f = BaselineForecaster()
        f.blocks = True  # a model that blocks (the generative one): it runs in the model thread
        scored = score(f, windows, explain_above=0.99)
    finally:
        alert_window.payload = real
    alerts = [i for i, reason in enumerate(scored.forecasts.reasons) if reason]
    assert alerts and len(alerts) < len(windows)
    assert [i for i, w in enumerate(scored.alert_windows) if w is not None] == alerts
    assert threads and all(t.startswith("model") for t in threads)
    i = alerts[-1]
    w, got = scored.windows[i], json.loads(scored.alert_windows[i])
    real_slots = np.flatnonzero(w.mask)
    assert got["events"]["columns"] == ["ts", "kind", "side", "price_ticks", "size"]
    assert got["events"]["rows"] == [
        [int(w.event_ts[j]), Kind(int(w.kind[j])).name, Side(int(w.side[j])).name, int(w.price[j]), int(w.size[j])]
        for j in real_slots
    ]
    assert got["reason"] == scored.forecasts.reasons[i] and got["window"] == w.n_seen
    assert got["series"]["columns"][:3] == ["valid", "mid", "spread_ticks"]
    assert len(got["series"]["rows"]) == int(w.row_mask.sum())
    mids = w.features[w.row_mask][:, 1]
    assert [row[1] for row in got["series"]["rows"]] == [float(str(m)) for m in mids]
    assert got["surprising"] is None and got["drivers"] == []  # the baseline names neither


def test_the_order_flow_models_window_names_its_most_surprising_event_and_drivers():
    pytest.importorskip("torch")
    from streams.config import SHIPPED_MODEL

    if not (SHIPPED_MODEL / "model.safetensors").is_file():
        pytest.skip("no shipped checkpoint")
    from model.serving.orderflow import OrderFlowForecaster

    f = OrderFlowForecaster(SHIPPED_MODEL, device="cpu")
    windows = sim_windows()[-2:]
    scored = score(f, windows, explain_above=0.0)  # every window explained and kept
    for w, text in zip(scored.windows, scored.alert_windows, strict=True):
        got = json.loads(text)
        (slot, nll), columns = f.drivers(w)
        first = int(np.flatnonzero(w.mask)[0])
        assert got["surprising"]["event"] == slot - first
        assert got["surprising"]["nll"] == pytest.approx(nll, abs=1e-3)
        kind, side, price = got["events"]["rows"][slot - first][1:4]
        assert (kind, side, price) == (Kind(int(w.kind[slot])).name, Side(int(w.side[slot])).name, int(w.price[slot]))
        assert [d["feature"] for d in got["drivers"]] == [name for name, _ in columns]
        assert got["model"] == f.model_id and "driven by" in got["reason"]
