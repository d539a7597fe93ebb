"""End to end on a real Kafka broker and a real Redis: the real captures replayed into
`md.raw.<venue>` (with malformed records mixed in), `megatrading worker` processes running
as separate processes, and everything they publish compared with what the same records give
offline: every forecast in Redis, field for field; every rejected record in `md.dlq`, with
its reason. Then the same after a SIGKILL mid-stream, and with two workers sharing the
partitions: those two in `make soak`, as make test kills and rebalances workers in tests/test_faults.py
(SIGKILL at random points with restores from snapshots; three workers with rebalances, one killed) and
tests/test_frames_worker.py (a SIGKILL on framed input)."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import pytest
import redis
from faults import WorkerProcess, read_topic
from faults import committed_fraction as fraction_committed
from faults import wait_for as wait_until
from kafka import KafkaProducer

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import forecast_records
from streams.client import ForecastClient
from streams.config import Settings
from streams.pipeline import VenuePipeline
from streams.publish import publish_capture

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
def infra(lab):
    """Servers of this module's own: it reads the default topics (md.raw.<venue>, md.dlq, md.forecasts) whole, and
    tests elsewhere write to them too (in another order under make test's two workers)."""
    return lab


@pytest.fixture(scope="module")
def topics(infra, shared_data):
    """The captures and the malformed records, published once for every test of this module."""
    for venue, rel in CAPTURES.items():
        publish_capture(shared_data / rel, venue, infra.kafka.bootstrap, progress=False)
    prod = KafkaProducer(bootstrap_servers=infra.kafka.bootstrap, max_request_size=16 << 20)
    for venue, bad in MALFORMED.items():
        for raw in [*bad, OVERSIZED]:
            prod.send(f"md.raw.{venue}", key=b"BAD", value=raw).get(timeout=30)
    prod.close()
    return read_topics(infra.kafka.bootstrap)


def drain(bootstrap: str, topic: str) -> list:
    return read_topic(bootstrap, topic, committed_only=False)


def read_topics(bootstrap: str) -> dict[str, list]:
    return {venue: drain(bootstrap, f"md.raw.{venue}") for venue in VENUES}


def expected(records: dict[str, list]) -> tuple[dict, dict]:
    """What a worker must publish, computed offline from the same records."""
    model = BaselineForecaster()
    forecasts, rejects = {}, {}
    for venue, msgs in records.items():
        pipe = VenuePipeline(venue, Settings().window, max_bytes=Settings().max_record_bytes)
        for m in msgs:
            windows, rejs = pipe.process(m.key, m.value, m.partition, m.offset)
            for rej in rejs:
                rejects[(venue, m.partition, m.offset)] = rej.reason
            predicted = model.forecast(windows, Settings().alert_threshold)
            for rec in forecast_records(model.model_id, windows, predicted, 0):
                forecasts[(venue, rec["symbol"], rec["window"])] = rec
    return forecasts, rejects


def start_worker(infra, app_id: str, db: int, worker_id: str, log: Path) -> WorkerProcess:
    redis_url = f"redis://127.0.0.1:{infra.redis.port}/{db}"
    return WorkerProcess(infra.kafka.bootstrap, redis_url, app_id, VENUES, log, worker_id, snapshot_every=20_000)


def wait_for(bootstrap: str, app_id: str, fraction: float, timeout: float, workers=()) -> float:
    return wait_until(bootstrap, app_id, [f"md.raw.{v}" for v in VENUES], fraction, timeout, workers)


def committed_fraction(bootstrap: str, app_id: str) -> float:
    return fraction_committed(bootstrap, app_id, [f"md.raw.{v}" for v in VENUES])


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
    # each bad record of ours is a reject; the session broker's topics may also hold other modules' records
    # (tests/test_metrics.py publishes Kraken records and rejects of its own): `want` is read off all of them
    ours = {(v, m.partition, m.offset) for v, msgs in topics.items() for m in msgs if m.key == b"BAD"}
    assert len(want) > 1000 and len(ours) == sum(len(b) + 1 for b in MALFORMED.values()) and ours <= want_rejects.keys()
    p = start_worker(infra, "e2e-plain", 1, "w-plain", tmp_path / "worker.log")
    try:
        wait_for(infra.kafka.bootstrap, "e2e-plain", 1.0, 240, [p])
    finally:
        p.stop()
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


@pytest.mark.soak
def test_a_worker_killed_mid_stream_resumes_and_publishes_what_an_uninterrupted_run_would(infra, topics, tmp_path):
    want, _ = expected(topics)
    log = tmp_path / "worker.log"
    p = start_worker(infra, "e2e-kill", 2, "w-kill", log)
    try:
        wait_for(infra.kafka.bootstrap, "e2e-kill", 0.2, 240, [p])
    finally:
        p.kill()
    partial = committed_fraction(infra.kafka.bootstrap, "e2e-kill")
    assert partial < 1.0, "the worker finished before it could be killed: nothing was tested"
    p = start_worker(infra, "e2e-kill", 2, "w-kill-2", log)
    try:
        wait_for(infra.kafka.bootstrap, "e2e-kill", 1.0, 240, [p])
    finally:
        p.stop()
    assert_same(published(infra, 2), want)
    assert "restored to offset" in log.read_text()


@pytest.mark.soak
def test_two_workers_split_the_partitions_and_a_rebalance_loses_nothing(infra, topics, tmp_path):
    want, _ = expected(topics)
    a = start_worker(infra, "e2e-pair", 3, "w-a", tmp_path / "a.log")
    b = None
    try:
        wait_for(infra.kafka.bootstrap, "e2e-pair", 0.1, 240, [a])
        b = start_worker(infra, "e2e-pair", 3, "w-b", tmp_path / "b.log")
        wait_for(infra.kafka.bootstrap, "e2e-pair", 1.0, 300, [a, b])
        # a fast worker A may have committed everything before B is up: B must still have joined
        # (its heartbeat in mt:meta) before both stop, or the pair was never a pair
        meta = redis.Redis(port=infra.redis.port, db=3)
        deadline = time.monotonic() + 60
        while meta.hget("mt:meta", "heartbeat:w-b") is None and b.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert_same(published(infra, 3), want)
    beats = redis.Redis(port=infra.redis.port, db=3).hgetall("mt:meta")
    assert {b"heartbeat:w-a", b"heartbeat:w-b"} <= set(beats)


def test_batches_in_redis_behind_a_fenced_commit_are_published_once_by_the_new_owner(infra, topics):
    """A partition's transactions run behind its batches (streams/partition.py): batches already in
    Redis wait for their commit when another worker takes the partition over and fences it. Their
    transaction aborts, the old owner keeps the fencing for its next batch and drops its state; the
    new owner, restored from the offset committed before them, publishes their forecasts: once on
    `md.forecasts` for a read-committed reader, once in Redis's history."""
    import asyncio
    import gc

    from streams.app import create_app
    from streams.partition import Partition

    msgs = [m for m in topics["binance"] if m.partition == topics["binance"][0].partition]
    want, _ = expected({"binance": msgs})
    common = dict(bootstrap=infra.kafka.bootstrap, redis_url=f"redis://127.0.0.1:{infra.redis.port}/5",
                  venues=("binance",), app_id="e2e-fenced", forecasts_topic="md.forecasts.e2e-fenced")  # fmt: skip
    redis.Redis(port=infra.redis.port, db=5).flushdb()
    _, old_worker = create_app(Settings(**common, commit_interval=2.0), BaselineForecaster())
    _, new_worker = create_app(Settings(**common), BaselineForecaster())
    for w in (old_worker, new_worker):
        w.services.state_topic_ready.set()
    third = len(msgs) // 3

    async def take_over() -> tuple[Partition, Partition]:
        old = Partition(old_worker.services, "md.raw.binance", msgs[0].partition, "binance")
        await old.handle(msgs[:third])  # its first transaction starts at once
        await old._settled()
        await old.handle(msgs[third : 2 * third])  # in Redis; its transaction waits out commit_interval
        new = Partition(new_worker.services, "md.raw.binance", msgs[0].partition, "binance")
        await new.handle(msgs[third:])  # restores first: its producer fences the old one's
        old.assigned = False  # the group's revocation
        await old._settled()
        await asyncio.gather(old.release(), new.close())
        for w in (old_worker, new_worker):
            await w.stop()
        return old, new

    old, new = asyncio.run(take_over())
    # the two workers' unstarted Faust apps and fenced producers are cycles: collected here, not by a
    # collection inside a later compile (CPython 3.11's "AST constructor recursion depth mismatch")
    gc.collect()
    assert old.stats.transactions == 1 and old._fenced is not None  # the second one was fenced
    assert old.stats.batches == 2 and new.stats.restores == 1 and new.stats.replayed == third  # from offset `third`
    assert_same(published(infra, 5), want)  # the old owner's second batch rewritten, not duplicated
    on_topic = [msgpack.unpackb(m.value) for m in read_topic(infra.kafka.bootstrap, "md.forecasts.e2e-fenced")]
    assert sorted((r["venue"], r["symbol"], r["window"]) for r in on_topic) == sorted(want)
    assert len(on_topic) == len(want)


def test_a_stream_resumed_past_the_state_processes_the_gap_with_its_forecasts_and_skips_redeliveries(infra, topics):
    """After a restore the consumer may resume a partition past the offset the state stands at:
    the records between were never committed, so they are read from Kafka and processed with
    their forecasts first, each gap of a batch in its place; a record the state holds already (a
    redelivery) is skipped."""
    import asyncio

    from streams.app import create_app
    from streams.partition import Partition

    msgs = [m for m in topics["binance"] if m.partition == topics["binance"][0].partition]
    want, _ = expected({"binance": msgs})
    settings = Settings(bootstrap=infra.kafka.bootstrap, redis_url=f"redis://127.0.0.1:{infra.redis.port}/4",
                        venues=("binance",), app_id="e2e-gap", forecasts_topic="md.forecasts.e2e-gap")  # fmt: skip
    redis.Redis(port=infra.redis.port, db=4).flushdb()
    _, worker = create_app(settings, BaselineForecaster())
    worker.services.state_topic_ready.set()  # what Worker.start does once md.state exists
    cut = len(msgs) // 2
    hole = (cut + len(msgs)) // 2  # a second gap of 7 records inside the batch

    async def resume() -> Partition:
        part = Partition(worker.services, "md.raw.binance", msgs[0].partition, "binance")
        # the state stands at the start: the first half is a gap, and 7 records further on another
        await part.handle(msgs[cut:hole] + msgs[hole + 7 :])
        await part.handle(msgs[cut : cut + 10])  # redelivered
        await part.close()
        await worker.services.batcher.stop()
        return part

    part = asyncio.run(resume())
    assert part.stats.gaps == 2 and part.stats.gap_records == cut + 7 and part.stats.skipped == 10
    assert_same(published(infra, 4), want)
    on_topic = [msgpack.unpackb(m.value) for m in drain(infra.kafka.bootstrap, "md.forecasts.e2e-gap")]
    assert sorted((r["venue"], r["symbol"], r["window"]) for r in on_topic) == sorted(want)
