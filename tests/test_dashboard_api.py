"""The dashboard's JSON API and live feed (streams/dashboard/server.py) against the real Redis: forecasts
written by the worker's own sink (streams/sink.py), read back through aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from test_alert_window import records, score, sim_windows

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import PREDICTION_FIELDS, RECORD_FIELDS
from orderbook.clock import clock
from streams.dashboard.server import make_app
from streams.sink import ALERTS, META, WINDOW, WINDOW_TTL_S, RedisSink, book_json

DB = 12  # this module's Redis database on the shared servers


@pytest.fixture
def redis_url(infra) -> str:
    url = f"redis://127.0.0.1:{infra.redis.port}/{DB}"
    redis.Redis.from_url(url).flushdb()
    return url


def record(venue: str, symbol: str, window: int, bid: int, ask: int, score: float = 0.1) -> dict[str, Any]:
    """A forecast record as the worker publishes it; quantiles q10/q50/q90 = 1/2/3 (ticks, lots x window)."""
    values: dict[str, Any] = {f: 0.0 for f in PREDICTION_FIELDS}
    for q, v in ((10, 1.0), (50, 2.0), (90, 3.0)):
        values |= {f"spread_q{q}_h10": v, f"mid_q{q}_h10": v, f"depth_q{q}_h10": v * window}
    rec = {"venue": venue, "symbol": symbol, "event_ts": 34_200 * 10**9 + window * 10**6, "emitted_ts": 1,
           "seq": window + 1, "window": window, "model": "test:1", "best_bid": bid, "best_ask": ask, "news_ts": 0,
           **values, "anomaly_score": score, "reason": f"why {window}" * (score >= 0.99), "schema": 2}  # fmt: skip
    return {k: rec[k] for k in RECORD_FIELDS}


def call(url: str, fn: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(make_app(url))) as client:
            return await fn(client)

    return asyncio.run(main())


def get(url: str, path: str) -> Any:
    async def fetch(client: TestClient) -> Any:
        resp = await client.get(path)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    return call(url, fetch)


def test_a_book_reads_in_dollars_with_each_forecast_in_price_units(redis_url):
    sink = RedisSink.from_url(redis_url)
    sink.write([record("itch", "AAA", w, 1_000_100, 1_000_200 + 100 * i) for i, w in enumerate((32, 64, 96))])
    got = get(redis_url, "/api/book?venue=itch&symbol=AAA")
    latest = got["latest"]
    # ITCH Price(4): 1/10000 dollar; the tick is a cent
    assert (latest["bid"], latest["ask"], latest["mid_text"], latest["spread"]) == (
        "100.01",
        "100.04",
        "100.025",
        "0.03",
    )
    assert latest["spread_ticks"] == 3 and latest["window"] == 96
    assert "USD" in got["units"]["price"] and "0.01" in got["units"]["tick"]
    assert [p["window"] for p in got["series"]] == [32, 64, 96]
    first = got["series"][0]
    assert first["fc_spread_q50"] == pytest.approx(0.02)  # 2 ticks
    assert first["fc_mid_q90"] == pytest.approx(100.015 + 0.03)  # its mid, 3 ticks up
    assert first["fc_depth_q10"] == 32  # shares


def test_a_venue_without_a_fixed_tick_gets_the_gcd_of_its_prices(redis_url):
    sink = RedisSink.from_url(redis_url)
    # Binance: 1e-8 quote per unit; quotes a cent apart
    sink.write([record("binance", "ETHUSDT", 32, 6_168_599_000_000, 6_168_600_000_000),
                record("binance", "ETHUSDT", 64, 6_168_598_000_000, 6_168_601_000_000)])  # fmt: skip
    got = get(redis_url, "/api/book?venue=binance&symbol=ETHUSDT")
    assert got["latest"]["bid"] == str(Decimal(6_168_598_000_000).scaleb(-8).normalize()) == "61685.98"
    assert got["latest"]["spread_ticks"] == 3
    assert "inferred" in got["units"]["tick"]


def test_alerts_are_counted_newest_first_and_one_opens_on_its_window(redis_url):
    sink = RedisSink.from_url(redis_url, alert_threshold=0.99)
    windows = range(32, 32 * 101, 32)
    alerting = {32 * 50, 32 * 90}
    sink.write([record("itch", "AAA", w, 1_000_000, 1_000_100, 0.995 if w in alerting else 0.2) for w in windows])
    sink.write([record("itch", "BBB", 32, 2_000_000, 2_000_100, 0.999)])
    got = get(redis_url, "/api/alerts?count=10")
    total = redis.Redis.from_url(redis_url).xlen(ALERTS)
    assert got["total"] == total == 3
    assert [(a["symbol"], a["window"]) for a in got["alerts"]] == [("BBB", 32), ("AAA", 32 * 90), ("AAA", 32 * 50)]
    only = get(redis_url, "/api/alerts?count=10&venue=itch&symbol=AAA")
    assert [a["window"] for a in only["alerts"]] == [32 * 90, 32 * 50] and only["total"] == total
    alert_id = only["alerts"][1]["id"]
    detail = get(redis_url, f"/api/alert/{alert_id}?count=5")
    assert detail["alert"]["window"] == 32 * 50 and detail["alert"]["reason"] == f"why {32 * 50}"
    assert detail["found_in_history"]
    assert [p["window"] for p in detail["series"]] == [32 * w for w in range(45, 56)]


def test_health_splits_mt_meta_by_worker(redis_url):
    sink = RedisSink.from_url(redis_url)
    drift = {"surprise_psi": None, "surprise_level": None, "feature_psi_max": 0.3, "feature_psi_mean": 0.1,
             "feature": "spread", "windows": 40, "state": "drift"}  # fmt: skip
    sink.worker_model("w1", "test:1", 0)
    sink.heartbeat("w1", skipped=3, meta={"drift:itch:AAA": json.dumps(drift)})
    got = get(redis_url, "/api/health")
    (worker,) = got["workers"]
    assert (worker["id"], worker["model"], worker["skipped"], worker["swapped"]) == ("w1", "test:1", "3", "0")
    assert worker["heartbeat_age_s"] >= 0
    assert got["drift"] == [{"venue": "itch", "symbol": "AAA", **drift}]
    assert got["deployment"]["model"] == "test:1"
    assert got["messages_per_s"]["per_venue"] == {}  # no worker published counts: no rate, none made up
    assert got["lag"]["state"].startswith("off")  # no --bootstrap given


def test_messages_per_second_is_each_workers_count_increase_over_its_heartbeats_time(redis_url):
    sink = RedisSink.from_url(redis_url)
    t0 = time.time_ns() - 3 * 10**9
    s = 10**9

    async def reads(client: TestClient) -> list[dict[str, Any]]:
        got = []
        for at, w1, w2 in (
            (0, {"itch": (1000, 10), "binance": (50, 5)}, (7, {"itch": (500, 5)})),
            (2 * s, {"itch": (3000, 30), "binance": (50, 5)}, (7, {"itch": (1500, 15)})),
            # w2 restarted (a new start, its count from zero again): the step counts its new 200, not -1300
            (2 * s + s // 2, {"itch": (3500, 35), "binance": (50, 5)}, (8, {"itch": (200, 2)})),
        ):
            sink.heartbeat("w1", counts=w1, started_ns=1, now_ns=t0 + at)
            sink.heartbeat("w2", counts=w2[1], started_ns=w2[0], now_ns=t0 + at)
            resp = await client.get("/api/health")
            assert resp.status == 200
            got.append((await resp.json())["messages_per_s"])
        return got

    first, second, third = call(redis_url, reads)
    # one reading: measured only from the next heartbeat on, never a guess
    assert first["per_venue"] == {"binance": {"rate": "measuring", "messages": 50},
                                  "itch": {"rate": "measuring", "messages": 1500}}  # fmt: skip
    assert second["per_venue"] == {"binance": {"rate": 0.0, "messages": 50},
                                   "itch": {"rate": 2000 / 2 + 1000 / 2, "messages": 4500}}  # fmt: skip
    assert second["span_s"] == 2.0
    assert third["per_venue"]["itch"] == {"rate": (2500 + 1200) / 2.5, "messages": 3700}
    meta = {k.decode(): v.decode() for k, v in redis.Redis.from_url(redis_url).hgetall(META).items()}
    assert meta["messages:w2:itch"] == "200" and meta["records:w1:binance"] == "5" and meta["started:w2"] == "8"


def test_health_sums_dead_letters_and_resyncs_over_live_workers_and_shows_each_ones_device_and_latency(redis_url):
    sink = RedisSink.from_url(redis_url)
    now = time.time_ns()
    latency = {"model_batch_p50_ms": 2.5, "model_batch_p99_ms": 40.25, "partition_batch_p50_ms": 4.0,
               "partition_batch_p99_ms": 61.5}  # fmt: skip
    sink.worker_model("w1", "test:1", 0, device="cuda:0")
    sink.worker_model("w2", "test:1", 0, device="cpu")

    def beat(worker: str, started: int, dlq: dict, resyncs: dict, counts: dict, at: int, lat: dict = latency) -> None:
        sink.heartbeat(worker, 0, None, counts, started, at, dlq=dlq, resyncs=resyncs, latency_ms=lat)

    counts, ago = {"binance": (100, 10), "itch": (50, 5)}, now - 2 * 10**9
    beat("w1", 1, {("binance", "sequence_gap"): 4, ("itch", "malformed"): 2}, {"binance": 3}, counts, ago)
    beat("w2", 5, {("binance", "sequence_gap"): 9, ("binance", "malformed"): 1}, {"binance": 7}, counts, ago)
    before = get(redis_url, "/api/health")
    assert before["dlq"]["reasons"] == {"sequence_gap": {"binance": 13}, "malformed": {"binance": 1, "itch": 2}}
    assert before["resyncs"] == {"binance": 10, "itch": "n/a"}  # ITCH books do not resync: not a made-up 0
    # w2 restarted: its counts start again from zero, and mt:meta holds its new ones (a new `started:`); w1 beats
    # again with the same counts (a repeated heartbeat: nothing counted twice); w3 stopped a minute ago
    beat("w1", 1, {("binance", "sequence_gap"): 4, ("itch", "malformed"): 2}, {"binance": 3}, counts, now)
    no_batch = dict.fromkeys(latency)
    sink.forget_counts("w2")  # as a worker starts: its last run's counts go, a reason it does not meet included
    beat("w2", 6, {("binance", "sequence_gap"): 1}, {"binance": 0}, counts, now, no_batch)
    beat("w3", 2, {("binance", "crossed_book"): 50}, {"binance": 50}, counts, now - 60 * 10**9)
    got = get(redis_url, "/api/health")
    assert got["dlq"]["reasons"] == {"malformed": {"itch": 2}, "sequence_gap": {"binance": 5}}
    assert (got["dlq"]["venues"], got["dlq"]["total"]) == (["binance", "itch"], 7)
    assert (got["dlq"]["workers"], got["dlq"]["stale"]) == (["w1", "w2"], ["w3"])
    assert got["resyncs"] == {"binance": 3, "itch": "n/a"}
    workers = {w["id"]: w for w in got["workers"]}
    assert workers["w1"]["device"] == "cuda:0" and workers["w2"]["device"] == "cpu"
    assert {k: workers["w1"][k] for k in latency} == {"model_batch_p50_ms": "2.500", "model_batch_p99_ms": "40.250",
                                                      "partition_batch_p50_ms": "4.000",
                                                      "partition_batch_p99_ms": "61.500"}  # fmt: skip
    assert {k: workers["w2"][k] for k in latency} == dict.fromkeys(latency, "")  # restarted: no batch yet
    assert workers["w2"]["dlq"] == {"binance": {"sequence_gap": 1}} and workers["w2"]["resyncs"] == {"binance": 0}
    assert not any(k.startswith(("dlq:", "resyncs:", "device:")) for k in got["other"])  # every field understood


def test_the_window_of_an_alert_reads_back_as_its_worker_wrote_it(redis_url):
    windows = sim_windows()[:2]
    scored = score(BaselineForecaster(), windows, explain_above=0.0)
    recs = records(scored)
    recs[0]["anomaly_score"], recs[1]["anomaly_score"] = 0.999, 0.2
    RedisSink.from_url(redis_url).write(recs, scored.alert_windows)
    venue, symbol, window = recs[0]["venue"], recs[0]["symbol"], recs[0]["window"]
    got = get(redis_url, f"/api/window?venue={venue}&symbol={symbol}&window={window}")
    key = WINDOW.format(venue=venue, symbol=symbol, window=window)
    stored = json.loads(redis.Redis.from_url(redis_url).get(key))
    assert got["key"] == key and got["stored"] == stored == json.loads(scored.alert_windows[0])
    assert len(got["events"]) == len(stored["events"]["rows"]) == int(windows[0].mask.sum())
    first = got["events"][0]
    ts, kind, side, price, size = stored["events"]["rows"][0]
    assert (first["time"], first["kind"], first["side"], first["price_ticks"], first["size"]) == (
        clock(ts), kind, side, price, size)  # fmt: skip
    assert [p["row"] for p in got["series"]][-1] == 0 and len(got["series"]) == len(stored["series"]["rows"])
    mid = stored["series"]["rows"][-1][1]
    assert got["series"][-1]["mid"] == pytest.approx(mid / 10**4)  # ITCH Price(4): dollars
    assert 0 < got["ttl_s"] <= WINDOW_TTL_S

    async def missing(client: TestClient) -> tuple[int, str]:
        resp = await client.get(f"/api/window?venue={venue}&symbol={symbol}&window={recs[1]['window']}")
        return resp.status, await resp.text()

    status, text = call(redis_url, missing)  # not an alert: never written
    assert status == 404 and "expired" in text and "before" in text


def test_the_live_feed_relays_each_written_forecast_as_a_point(redis_url):
    async def listen(client: TestClient) -> list[dict[str, Any]]:
        resp = await client.get("/api/stream")
        assert resp.headers["Content-Type"] == "text/event-stream"
        event = None
        got: list[dict[str, Any]] = []
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "hello":
                # subscribed: what is written from now on must come through
                sink = RedisSink.from_url(redis_url)
                await sink.write_async([record("itch", "AAA", w, 1_000_000, 1_000_100) for w in (32, 64)])
                await sink.aclose()
            elif line.startswith("data: ") and event == "forecasts":
                got += json.loads(line.removeprefix("data: "))
                if len(got) >= 2:
                    return got
        raise AssertionError("the stream ended")

    points = call(redis_url, listen)
    assert [(p["symbol"], p["window"], p["bid"], p["spread"]) for p in points] == [
        ("AAA", 32, "100.00", "0.01"),
        ("AAA", 64, "100.00", "0.01"),
    ]


def test_an_unknown_book_or_alert_is_not_found(redis_url):
    async def statuses(client: TestClient) -> list[int]:
        return [(await client.get(p)).status for p in ("/api/book?venue=itch&symbol=NONE", "/api/alert/1-0",
                                                       "/api/book?venue=itch")]  # fmt: skip

    assert call(redis_url, statuses) == [404, 404, 400]


def test_a_books_levels_read_in_the_units_of_its_best_bid_and_ask_with_sizes_summed(redis_url):
    """`/api/levels`: what the worker's sink wrote to `mt:book`, prices as `/api/book` shows the best bid
    and ask, sizes exact and summed from the best level; an absent key says so."""
    sink = RedisSink(redis.Redis.from_url(redis_url))
    bids, asks = [[1_000_000, 300], [999_900, 200], [999_800, 5]], [[1_000_100, 100], [1_000_500, 1]]
    written = time.time_ns()
    levels = book_json("itch", "AAA", 40, 34_200 * 10**9 + 5, 41, bids, asks, written)
    sink.write([record("itch", "AAA", 32, 1_000_000, 1_000_100)], books=[("itch", "AAA", 40, levels)])
    got = get(redis_url, "/api/levels?venue=itch&symbol=AAA")
    shown = get(redis_url, "/api/book?venue=itch&symbol=AAA")["latest"]
    assert got["published"] is True and got["key"] == "mt:book:itch:AAA"
    assert (got["window"], got["seq"], got["time"]) == (40, 41, clock(34_200 * 10**9 + 5))
    assert 0 <= got["age_s"] < 60
    assert got["bids"] == [{"price": "100.00", "size": "300", "cum": "300"},
                           {"price": "99.99", "size": "200", "cum": "500"},
                           {"price": "99.98", "size": "5", "cum": "505"}]  # fmt: skip
    assert got["asks"] == [
        {"price": "100.01", "size": "100", "cum": "100"},
        {"price": "100.05", "size": "1", "cum": "101"},
    ]
    assert (got["bids"][0]["price"], got["asks"][0]["price"]) == (shown["bid"], shown["ask"])
    assert got["stored"]["bids"] == bids
    # Binance: 8 decimals for prices and sizes alike
    eth_levels = book_json("binance", "ETHUSDT", 7, 1, 1, [[261_234_000_000, 150_000_000]], [], written)
    sink.write([], books=[("binance", "ETHUSDT", 7, eth_levels)])
    eth = get(redis_url, "/api/levels?venue=binance&symbol=ETHUSDT")
    assert eth["bids"] == [{"price": "2612.34", "size": "1.5", "cum": "1.5"}] and eth["asks"] == []
    assert get(redis_url, "/api/levels?venue=itch&symbol=NONE") == {
        "venue": "itch",
        "symbol": "NONE",
        "key": "mt:book:itch:NONE",
        "published": False,
    }
