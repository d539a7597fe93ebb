"""Forecasts into a real Redis: the docs/design.md layout, idempotent writes, the reader API."""

import json
import random
import threading
import time

import pytest
import redis

from model.serving.forecaster import PREDICTION_FIELDS, RECORD_FIELDS
from streams.client import ForecastClient
from streams.sink import BOOK, RedisSink, book_json, encode_forecast


def forecast(seq, window, score=0.1, symbol="BTCUSDT", venue="binance"):
    rec = {
        "venue": venue,
        "symbol": symbol,
        "event_ts": 1_700_000_000_000_000_000 + seq,
        "emitted_ts": 5,
        "seq": seq,
        "window": window,
        "model": "baseline-har-ewma:1",
        "best_bid": 100,
        "best_ask": 101,
        "news_ts": 0,
    }
    rec.update({name: 0.5 for name in PREDICTION_FIELDS})
    rec["anomaly_score"] = score
    rec["reason"] = "message_rate z=9.0" if score > 0.99 else ""
    rec["schema"] = 2
    return rec


def test_a_forecast_is_encoded_as_json_would_encode_it_whatever_its_values():
    """The published JSON is byte for byte `json.dumps`'s and the fields are the hash's strings, for
    the values a forecast has (floats of every size and sign, ints, strings to escape) and for those
    that take the slow path (non-finite floats, bools, None, a list)."""
    rng = random.Random(13)
    odd = [float("nan"), float("inf"), -float("inf"), True, None, [1, 2.5]]
    for trial in range(400):
        rec = forecast(trial, trial)
        for name in PREDICTION_FIELDS:
            rec[name] = rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-300, 300), -0.0,
                                    float(rng.randint(-5, 5)), 1e-320])  # fmt: skip
        rec["reason"] = rng.choice(["", 'quote " and \\ back', "caf\u00e9 \u2014 \n tab\t", "\x00"])
        if trial % 4 == 0:
            rec[rng.choice(PREDICTION_FIELDS)] = rng.choice(odd)
        payload, fields = encode_forecast(rec)
        assert payload == json.dumps(rec, separators=(",", ":"))
        want = [x for k, v in rec.items() for x in (k, repr(v) if type(v) is float else str(v))]
        assert fields == json.dumps(want, ensure_ascii=False, separators=(",", ":"))


@pytest.fixture
def r(infra):
    client = redis.Redis.from_url(infra.redis.url)
    client.flushdb()
    return client


def test_latest_history_alerts_in_the_design_layout(r, infra):
    sink = RedisSink(r, alert_threshold=0.99)
    assert sink.write([forecast(1, 10), forecast(2, 20, score=0.999)]) == 2
    latest = r.hgetall("mt:latest:binance:BTCUSDT")
    assert latest[b"seq"] == b"2" and latest[b"best_ask"] == b"101" and float(latest[b"anomaly_score"]) == 0.999
    assert r.xlen("mt:hist:binance:BTCUSDT") == 2
    assert r.xlen("mt:alerts") == 1


def test_a_replayed_batch_writes_nothing_new(r):
    sink = RedisSink(r)
    batch = [forecast(1, 10), forecast(2, 20), forecast(1_000_000, 30, score=0.999)]
    assert sink.write(batch) == 3
    assert sink.write(batch) == 0  # at-least-once redelivery after a crash
    assert sink.write(batch[:1]) == 0  # an older forecast never overwrites a newer one
    assert r.xlen("mt:hist:binance:BTCUSDT") == 3 and r.xlen("mt:alerts") == 1
    assert r.hget("mt:latest:binance:BTCUSDT", "window") == b"30"
    assert sink.duplicates == 4


def test_the_event_loop_write_leaves_what_the_blocking_write_leaves(r, infra):
    """The worker writes on its event loop (write_async); on a server that has never seen the
    script (NOSCRIPT, loaded then), a mixed batch, then the batch again."""
    import asyncio

    batch = [forecast(1, 10), forecast(2, 20, score=0.999), forecast(3, 5, symbol="ETHUSDT")]
    RedisSink(r).write(batch)
    want = {k: (r.type(k), r.hgetall(k) if r.type(k) == b"hash" else r.xlen(k)) for k in r.keys("mt:*")}
    r.flushdb()
    r.script_flush()
    sink = RedisSink.from_url(infra.redis.url)

    async def twice() -> tuple[int, int]:
        try:
            return await sink.write_async(batch), await sink.write_async(batch)
        finally:
            await sink.aclose()

    assert asyncio.run(twice()) == (3, 0)
    got = {k: (r.type(k), r.hgetall(k) if r.type(k) == b"hash" else r.xlen(k)) for k in r.keys("mt:*")}
    assert got == want and sink.written == 3 and sink.duplicates == 3


def test_each_write_is_published(r):
    pubsub = r.pubsub()
    pubsub.subscribe("mt:forecasts")
    pubsub.get_message(timeout=2)  # the subscribe confirmation
    RedisSink(r).write([forecast(7, 1)])
    msg = pubsub.get_message(timeout=5)
    assert msg is not None and json.loads(msg["data"])["seq"] == 7


def test_client_reads_typed_values_back(r, infra):
    RedisSink(r).write([forecast(1, 1), forecast(2, 2, score=0.9999), forecast(3, 3, symbol="ETHUSDT")])
    c = ForecastClient(infra.redis.url)
    assert c.symbols() == [("binance", "BTCUSDT"), ("binance", "ETHUSDT")]
    latest = c.latest("binance", "BTCUSDT")
    assert latest == {**forecast(2, 2, score=0.9999)} and list(latest) == list(RECORD_FIELDS)
    hist = c.history("binance", "BTCUSDT", since_ns=1_700_000_000_000_000_002)
    assert [h["seq"] for h in hist] == [2]
    assert [a["seq"] for a in c.alerts()] == [2]
    assert c.latest("binance", "NOPE") is None


def test_watch_alerts_yields_alerts_written_after_the_call(r, infra):
    c = ForecastClient(infra.redis.url)
    RedisSink(r).write([forecast(8, 8, score=0.9999)])  # before the call: not yielded
    alerts = c.watch_alerts(block_ms=50)
    got = []

    def reader():
        for alert in alerts:
            got.append(alert)
            if len(got) == 2:
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    # Written while the reader may be between two blocking reads: neither may be lost.
    for seq in (9, 10):
        RedisSink(r).write([forecast(seq, seq, score=0.9999)])
        time.sleep(0.12)
    t.join(timeout=10)
    assert [a["seq"] for a in got] == [9, 10]


def test_meta_holds_the_model_the_heartbeats_and_each_workers_skipped_windows(r):
    sink = RedisSink(r)
    sink.set_meta("orderflow-gpt:3000", 2)
    sink.heartbeat("w1", skipped=0)
    sink.heartbeat("w2", skipped=17)
    sink.heartbeat("w2", skipped=17)  # repeated (a retry after an outage): an absolute count, not added twice
    sink.heartbeat("w3")  # a worker that does not report it: no field, rather than a false 0
    meta = {k.decode(): v.decode() for k, v in r.hgetall("mt:meta").items()}
    assert {k: v for k, v in meta.items() if not k.startswith("heartbeat:")} == {
        "model": "orderflow-gpt:3000", "schema": "2", "skipped:w1": "0", "skipped:w2": "17",
    }  # fmt: skip
    assert sorted(k for k in meta if k.startswith("heartbeat:")) == ["heartbeat:w1", "heartbeat:w2", "heartbeat:w3"]
    assert all(int(meta[f"heartbeat:{w}"]) > 1_700_000_000_000_000_000 for w in ("w1", "w2", "w3"))


def test_the_heartbeat_writes_dead_letters_resyncs_latencies_and_the_model_writes_its_device(r):
    sink = RedisSink(r)
    sink.worker_model("w:1", "generative:x", 0, device="cuda:0")  # a worker id may hold a colon
    counts = {"binance": (120, 12)}
    dlq = {("binance", "sequence_gap"): 3, ("binance", "malformed"): 1}
    latency = {"model_batch_p50_ms": 1.23456, "model_batch_p99_ms": 9.0, "partition_batch_p50_ms": None,
               "partition_batch_p99_ms": None}  # fmt: skip
    for _ in range(2):  # repeated (a retry after an outage): absolute values, nothing counted twice
        sink.heartbeat("w:1", 0, None, counts, 7, 100, dlq=dlq, resyncs={"binance": 2}, latency_ms=latency)
    meta = {k.decode(): v.decode() for k, v in r.hgetall("mt:meta").items()}
    assert {k: v for k, v in meta.items() if k.startswith(("dlq:", "resyncs:", "device:", "model_", "partition_"))} == {
        "dlq:w:1:binance:sequence_gap": "3", "dlq:w:1:binance:malformed": "1", "resyncs:w:1:binance": "2",
        "device:w:1": "cuda:0", "model_batch_p50_ms:w:1": "1.235", "model_batch_p99_ms:w:1": "9.000",
        "partition_batch_p50_ms:w:1": "", "partition_batch_p99_ms:w:1": "",  # no batch yet: no number made up
    }  # fmt: skip
    sink.worker_model("w:1", "baseline:1", 5)  # a caller that does not say: the device field stays as it was
    assert r.hget("mt:meta", "device:w:1") == b"cuda:0"


def test_field_values_reach_redis_byte_for_byte_whatever_their_characters(r):
    """The fields travel to the write script as one JSON array (streams/sink.py): quotes, backslashes,
    non-ASCII and characters outside the BMP come back as their UTF-8, floats as their repr."""
    f = forecast(1, 10, score=0.999)
    f["reason"] = 'news "Ünïcode" \\ 📈 z=9.0'
    f["spread_q50_h10"] = 0.1 + 0.2
    RedisSink(r).write([f])
    latest = r.hgetall("mt:latest:binance:BTCUSDT")
    assert latest[b"reason"] == f["reason"].encode() and latest[b"spread_q50_h10"] == repr(0.1 + 0.2).encode()
    (_, entry), *_ = r.xrange("mt:alerts")
    assert entry[b"reason"] == f["reason"].encode()


def test_the_alerts_stream_is_capped_by_its_own_length_not_the_history_s(r):
    """`MAXLEN ~` trims whole stream nodes (100 entries by default): 500 alerts against a cap of 10
    leave at most a node or two of them, while the history of the same forecasts keeps all 500."""
    sink = RedisSink(r, history_maxlen=100_000, alerts_maxlen=10)
    for lo in range(0, 500, 100):
        sink.write([forecast(seq, seq, score=0.999) for seq in range(lo + 1, lo + 101)])
    assert r.xlen("mt:hist:binance:BTCUSDT") == 500
    assert 10 <= r.xlen("mt:alerts") <= 200


def book(window: int, bid: int = 100, symbol: str = "BTCUSDT") -> tuple[str, str, int, str]:
    doc = book_json("binance", symbol, window, 1_700_000_000_000_000_000 + window, window * 3,
                    [[bid, 5], [bid - 1, 7]], [[bid + 1, 2]], 9)  # fmt: skip
    return "binance", symbol, window, doc


def test_a_books_levels_go_with_the_batch_and_never_over_a_newer_book(r, infra):
    """`mt:book:<venue>:<symbol>`: the JSON as given, in the forecasts' round trip; a replay (the same
    levels again) or an older book (a replay cut into other batches) leaves the newer one as it is."""
    import asyncio

    sink = RedisSink(r)
    assert sink.write([forecast(1, 20)], books=[book(20), book(5, symbol="ETHUSDT")]) == 1
    key = BOOK.format(venue="binance", symbol="BTCUSDT")
    stored = json.loads(r.get(key))
    assert stored == {"window": 20, "ts": 1_700_000_000_000_000_020, "seq": 60, "emitted_ts": 9, "venue": "binance",
                      "symbol": "BTCUSDT", "bids": [[100, 5], [99, 7]], "asks": [[101, 2]]}  # fmt: skip
    assert json.loads(r.get(BOOK.format(venue="binance", symbol="ETHUSDT")))["window"] == 5
    assert sink.write([], books=[book(20, bid=1)]) == 0  # the same window again: a replay
    assert sink.write([], books=[book(19, bid=2)]) == 0  # older
    assert json.loads(r.get(key))["bids"][0] == [100, 5]
    assert (sink.books_written, sink.books_stale) == (2, 2)
    assert sink.written == 1 and sink.duplicates == 0  # the books counted apart from the forecasts

    async def on_the_loop() -> tuple[int, int]:
        a = RedisSink.from_url(infra.redis.url)
        try:
            await a.write_async([forecast(2, 30)], None, [book(19, bid=3), book(30, bid=200)])
            return a.books_written, a.books_stale
        finally:
            await a.aclose()

    assert asyncio.run(on_the_loop()) == (1, 1)
    assert json.loads(r.get(key))["bids"][0] == [200, 5]
    assert r.hget("mt:latest:binance:BTCUSDT", "window") == b"30"


def test_count_fields_are_read_from_the_right_so_a_worker_id_may_hold_colons():
    from streams.sink import CountField, count_field

    assert count_field("messages:host:7:binance") == CountField("messages", "host:7", "binance", "")
    assert count_field("dlq:host:7:itch:crossed_book") == CountField("dlq", "host:7", "itch", "crossed_book")
    assert count_field("resyncs:w1:kraken") == CountField("resyncs", "w1", "kraken", "")
    for other in ("heartbeat:w1", "messages:binance", "dlq:w1:itch", "drift:itch:ALFA", "model"):
        assert count_field(other) is None
