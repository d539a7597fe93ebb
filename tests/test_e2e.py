"""End to end on a real Kafka broker and a real Redis: the real captures replayed into
`md.raw.<venue>` (with malformed records mixed in), `megatrading worker` processes running
as separate processes, and everything they publish compared with what the same records give
offline: every forecast in Redis, field for field; every rejected record in `md.dlq`, with
its reason. Then the same after a SIGKILL mid-stream, and with two workers sharing the
partitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from model.baseline import BaselineForecaster
from model.forecaster import forecast_records
from streams.app import committed_offsets
from streams.client import ForecastClient
from streams.config import Settings
from streams.pipeline import VenuePipeline
from streams.replay import replay

CAPTURES = {
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
}
# one of each kind of bad input per venue: each must reach md.dlq with its reason
MALFORMED = {
    "kraken": [b"{truncated", b'[1, {"as": [["NaN", "1.0", "1.0"]], "bs": []}, "book-10", "X/Y"]',
               b'{"event": "bogus"}'],
    "coinbase": [b'{"type": "l2update", "product_id": "SKL-USD", "changes": [["buy", "-1", "1"]]',
                 b'{"type": "mystery", "product_id": "SKL-USD"}', b"\xff\xfe"],
    "binance": [b'{"stream": "ethusdt@depth", "data": {"e": "depthUpdate", "s": "ETHUSDT", "U": "x"}}',
                b'{"e": "nonsense"}', b"[]"],
}  # fmt: skip
OVERSIZED = b"x" * (5 * 1024 * 1024)
VENUES = tuple(CAPTURES)


@pytest.fixture(scope="module")
def topics(infra, shared_data):
    """The captures and the malformed records, published once for every test of this module."""
    for venue, rel in CAPTURES.items():
        replay(shared_data / rel, venue, infra.kafka.bootstrap, progress=False)
    prod = KafkaProducer(bootstrap_servers=infra.kafka.bootstrap, max_request_size=16 << 20)
    for venue, bad in MALFORMED.items():
        for raw in [*bad, OVERSIZED]:
            prod.send(f"md.raw.{venue}", key=b"BAD", value=raw).get(timeout=30)
    prod.close()
    return read_topics(infra.kafka.bootstrap)


def drain(bootstrap: str, topic: str, timeout: float = 120.0) -> list:
    """Every record of a topic, read up to its end offsets (not until a quiet spell: under
    load a fetch can take longer than any idle timeout)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20,
                      fetch_max_bytes=64 << 20)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout} s"
            for msgs in c.poll(timeout_ms=1000).values():
                out += msgs
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        c.close()


def read_topics(bootstrap: str) -> dict[str, list]:
    return {venue: drain(bootstrap, f"md.raw.{venue}") for venue in VENUES}


def expected(records: dict[str, list]) -> tuple[dict, dict]:
    """What a worker must publish, computed offline from the same records."""
    model = BaselineForecaster()
    forecasts, rejects = {}, {}
    for venue, msgs in records.items():
        pipe = VenuePipeline(venue, Settings().window, max_bytes=Settings().max_record_bytes)
        for m in msgs:
            windows, rej = pipe.process(m.key, m.value, m.partition, m.offset)
            if rej is not None:
                rejects[(venue, m.partition, m.offset)] = rej.reason
            for rec in forecast_records(model, windows, model.predict(windows), 0, Settings().alert_threshold):
                forecasts[(venue, rec["symbol"], rec["window"])] = rec
    return forecasts, rejects


def start_worker(infra, app_id: str, db: int, worker_id: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, MT_KAFKA_BOOTSTRAP=infra.kafka.bootstrap, MT_REDIS_URL=f"redis://127.0.0.1:{infra.redis.port}/{db}",
               MT_APP_ID=app_id, MT_WORKER_ID=worker_id, MT_VENUES=",".join(VENUES))  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def committed_fraction(bootstrap: str, app_id: str) -> float:
    """How much of the raw topics the group has committed (an admin request: a consumer
    carrying the group id would join the group and keep it rebalancing)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    done = total = 0
    for venue in VENUES:
        topic = f"md.raw.{venue}"
        parts = c.partitions_for_topic(topic)
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
        total += sum(ends.values())
        done += sum(committed_offsets(bootstrap, app_id, topic, parts).values())
    c.close()
    return done / total


def wait_for(bootstrap: str, app_id: str, fraction: float, timeout: float, procs=()) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = committed_fraction(bootstrap, app_id)
        if f >= fraction:
            return f
        for p in procs:
            assert p.poll() is None, f"worker exited with {p.returncode}"
        time.sleep(0.5)
    raise TimeoutError(f"group {app_id} committed {committed_fraction(bootstrap, app_id):.1%} after {timeout} s")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def published(infra, db: int) -> dict:
    url = f"redis://127.0.0.1:{infra.redis.port}/{db}"
    client = ForecastClient(url)
    out = {}
    for venue, symbol in client.symbols():
        rows = client.history(venue, symbol)
        windows = [r["window"] for r in rows]
        assert windows == sorted(set(windows)), f"{venue}:{symbol}: duplicated or unordered forecasts"
        for r in rows:
            out[(venue, symbol, r["window"])] = r
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys(), (len(got), len(want), sorted(set(want) ^ set(got))[:5])
    for k, w in want.items():
        g = dict(got[k])
        assert g.pop("emitted_ts") > 0
        w = dict(w)
        w.pop("emitted_ts")
        assert g == w, k


def test_every_forecast_and_every_reject_of_the_real_captures(infra, topics, tmp_path):
    want, want_rejects = expected(topics)
    assert len(want) > 1000 and len(want_rejects) == sum(len(b) + 1 for b in MALFORMED.values())
    p = start_worker(infra, "e2e-plain", 1, "w-plain", tmp_path / "worker.log")
    try:
        wait_for(infra.kafka.bootstrap, "e2e-plain", 1.0, 240, [p])
    finally:
        stop(p)
    assert_same(published(infra, 1), want)
    # best bid/ask of every forecast equal the offline rebuild: test_pipeline checks the
    # windows; here the published values are the windows' own, field for field (above).
    got_rejects = {}
    for m in drain(infra.kafka.bootstrap, "md.dlq"):
        h = {k: v.decode() for k, v in m.headers}
        venue = h["source_topic"].removeprefix("md.raw.")
        got_rejects[(venue, int(h["partition"]), int(h["offset"]))] = h["reason"]
    assert got_rejects == want_rejects
    assert "oversized" in got_rejects.values() and "unknown_message_type" in got_rejects.values()
    # md.forecasts carries the same forecasts (msgpack)
    records = (msgpack.unpackb(m.value) for m in drain(infra.kafka.bootstrap, "md.forecasts"))
    on_topic = {(r["venue"], r["symbol"], r["window"]) for r in records}
    assert set(want) <= on_topic


def test_a_worker_killed_mid_stream_resumes_and_publishes_what_an_uninterrupted_run_would(infra, topics, tmp_path):
    want, _ = expected(topics)
    log = tmp_path / "worker.log"
    p = start_worker(infra, "e2e-kill", 2, "w-kill", log)
    try:
        wait_for(infra.kafka.bootstrap, "e2e-kill", 0.2, 240, [p])
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
    partial = committed_fraction(infra.kafka.bootstrap, "e2e-kill")
    assert partial < 1.0, "the worker finished before it could be killed: nothing was tested"
    p = start_worker(infra, "e2e-kill", 2, "w-kill-2", log)
    try:
        wait_for(infra.kafka.bootstrap, "e2e-kill", 1.0, 240, [p])
    finally:
        stop(p)
    assert_same(published(infra, 2), want)
    assert "rebuilt books from" in log.read_text()


def test_two_workers_split_the_partitions_and_a_rebalance_loses_nothing(infra, topics, tmp_path):
    want, _ = expected(topics)
    a = start_worker(infra, "e2e-pair", 3, "w-a", tmp_path / "a.log")
    b = None
    try:
        wait_for(infra.kafka.bootstrap, "e2e-pair", 0.1, 240, [a])
        b = start_worker(infra, "e2e-pair", 3, "w-b", tmp_path / "b.log")
        wait_for(infra.kafka.bootstrap, "e2e-pair", 1.0, 300, [a, b])
    finally:
        stop(a)
        if b is not None:
            stop(b)
    assert_same(published(infra, 3), want)
    beats = redis.Redis(port=infra.redis.port, db=3).hgetall("mt:meta")
    assert {b"heartbeat:w-a", b"heartbeat:w-b"} <= set(beats)


def test_a_stream_resumed_past_the_books_replays_the_gap_and_skips_redeliveries(infra, topics):
    """After a rebalance the consumer may resume a partition it kept at its fetch position, past
    the committed offset its books were rebuilt to: the missing records are replayed first, and a
    record already in the books is not applied twice; the windows after are those of one pass."""
    import asyncio

    from streams.app import create_app

    msgs = [m for m in topics["binance"] if m.partition == topics["binance"][0].partition]
    ref = VenuePipeline("binance", Settings().window, max_bytes=Settings().max_record_bytes)
    want = [w for m in msgs for w in ref.process(m.key, m.value, m.partition, m.offset)[0]]
    settings = Settings(bootstrap=infra.kafka.bootstrap, redis_url=infra.redis.url, venues=("binance",))
    _, worker = create_app(settings, BaselineForecaster())
    pipe, topic, cut = worker.pipelines["binance"], "md.raw.binance", len(msgs) // 2

    async def resume() -> list:
        got = []
        for m in msgs[cut:]:  # the stream resumes halfway; the books stand at the start
            if await worker._in_line(topic, pipe, m.partition, m.offset):
                got += pipe.process(m.key, m.value, m.partition, m.offset)[0]
        assert not await worker._in_line(topic, pipe, msgs[cut].partition, msgs[cut].offset)  # redelivered
        return got

    got = asyncio.run(resume())
    worker.io.shutdown(wait=True)
    tail = [w for w in want if w.offset[1] >= msgs[cut].offset]
    assert len(got) == len(tail) > 0
    for g, w in zip(got, tail, strict=True):
        assert (g.symbol, g.offset, g.ts) == (w.symbol, w.offset, w.ts)
        assert np.array_equal(g.features, w.features, equal_nan=True) and np.array_equal(g.kind, w.kind)
