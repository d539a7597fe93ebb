"""The worker's Prometheus metrics (streams/metrics.py): scraped over HTTP from a real worker process
while a feed is replayed into the real Kafka: the counters equal what the topic holds and what was
dead-lettered, and the lag falls to zero. And the provisioned Grafana dashboard asks only for
metrics the worker exports."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from faults import WorkerProcess, capture_records, expected, publish, read_topic, scrape
from kafka import KafkaConsumer, TopicPartition

from model.serving.baseline import BaselineForecaster
from orderbook.frames import FrameError, messages_of
from streams.app import create_app
from streams.config import Settings
from streams.infra import free_port
from streams.sink import META

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy/grafana/dashboards/megatrading.json"
CAPTURE = "cryptofeed-captures/KRAKEN.ws.50.0.gz"
VENUE = "kraken"
BAD = [b"{truncated", b'[1, {"as": [["NaN", "1.0", "1.0"]], "bs": []}, "book-10", "X/Y"]']
SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count", "_info")


def total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def message_count(record: Any) -> int:
    """Venue messages a raw record holds, as the worker counts them (a frame that cannot be split: 1)."""
    try:
        return len(messages_of(record.value, VENUE))
    except FrameError:
        return 1


def end_offsets(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = c.partitions_for_topic(topic) or set()
        return sum(c.end_offsets([TopicPartition(topic, p) for p in parts]).values())
    finally:
        c.close()


def heartbeat_after(r: redis.Redis, worker_id: str, t_ns: int, timeout: float = 10.0) -> dict[str, str]:
    """mt:meta once the worker's heartbeat is later than `t_ns` (its counts read after everything was done)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = r.hgetall(META)
        if int(meta.get(f"heartbeat:{worker_id}", 0)) > t_ns:
            return meta
        assert time.monotonic() < deadline, f"no heartbeat of {worker_id} after {t_ns}"
        time.sleep(0.2)


def test_scraped_during_a_replay_the_counters_equal_the_topic_and_the_lag_falls_to_zero(infra, shared_data,
                                                                                        tmp_path):  # fmt: skip
    boot, topic = infra.kafka.bootstrap, f"md.raw.{VENUE}"
    records = capture_records(VENUE, shared_data / CAPTURE, limit=3000)
    half = len(records) // 2
    publish(boot, topic, records[:half] + [(b"X/Y", b) for b in BAD])
    port, group, worker_id = free_port(), "metrics-test", "metrics-w"
    env = {"MT_METRICS_PORT": str(port), "MT_METRICS_HOST": "127.0.0.1"}
    r = redis.Redis(port=infra.redis.port, db=9, decode_responses=True)
    worker = WorkerProcess(boot, f"redis://127.0.0.1:{infra.redis.port}/9", group, (VENUE,), tmp_path / "w.log",
                           worker_id, f"md.forecasts.{group}", f"md.dlq.{group}", extra_env=env)  # fmt: skip
    try:
        seen_during: list[float] = []

        def until_caught_up(timeout: float = 120.0) -> dict[str, list]:
            deadline = time.monotonic() + timeout
            while True:
                assert worker.alive(), worker.log.read_text()[-3000:]
                try:
                    m = scrape(port)
                except OSError:
                    m = {}
                done = total(m, "megatrading_records_total", venue=VENUE)
                seen_during.append(done)
                lag = m.get("megatrading_consumer_lag", [])
                if done >= end_offsets(boot, topic) and lag and all(v == 0 for _, v in lag):
                    return m
                assert time.monotonic() < deadline, f"not caught up: {done} records, lag {lag}"
                time.sleep(0.2)

        until_caught_up()
        publish(boot, topic, records[half:])  # the replay goes on while the worker is scraped
        m = until_caught_up()
        raw = read_topic(boot, topic, committed_only=False)
        assert total(m, "megatrading_records_total", venue=VENUE) == len(raw)
        # other tests' records on the topic may be frames: their messages, a frame that cannot be split one
        assert total(m, "megatrading_messages_total", venue=VENUE) == sum(map(message_count, raw))
        assert total(m, "megatrading_forecasts_total", venue=VENUE) == len(expected(VENUE, raw))
        dead = Counter(dict(msg.headers)["reason"].decode() for msg in read_topic(boot, f"md.dlq.{group}"))
        assert dead and {lab["reason"]: v for lab, v in m["megatrading_dlq_total"]} == dead
        assert total(m, "megatrading_partition_batch_seconds_count", venue=VENUE) > 0
        assert total(m, "megatrading_group_rebalances_total") >= 1  # its first assignment
        unsettled = {lab["reason"]: v for lab, v in m["megatrading_group_unsettled"]}
        assert unsettled == {"no_assignment": 0, "flapping": 0, "fenced": 0}
        (info,) = m["megatrading_model_info"]
        assert info[0]["model"].startswith("baseline")
        # the heartbeat's mt:meta counts: the same dead letters (by venue and reason) as md.dlq holds, and
        # the resyncs Prometheus shows (none in this capture: its checksums all match)
        meta = heartbeat_after(r, worker_id, time.time_ns())
        assert {k.removeprefix(f"dlq:{worker_id}:{VENUE}:"): int(v) for k, v in meta.items()
                if k.startswith("dlq:")} == dead  # fmt: skip
        assert int(meta[f"resyncs:{worker_id}:{VENUE}"]) == total(m, "megatrading_resyncs_total", venue=VENUE) == 0
        assert meta[f"device:{worker_id}"] == info[0]["device"] == "cpu"
        for kind in ("model", "partition"):
            p50, p99 = (float(meta[f"{kind}_batch_{q}_ms:{worker_id}"]) for q in ("p50", "p99"))
            assert 0 < p50 <= p99
        assert any(0 < s < len(raw) for s in seen_during)  # scraped mid-way, not only at the end
    finally:
        worker.stop()


def test_the_grafana_dashboard_asks_only_for_metrics_the_worker_exports():
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                        venues=("binance",), app_id="metrics-names")  # fmt: skip
    _, worker = create_app(settings, BaselineForecaster())
    try:
        families = {f.name for f in worker.metrics.registry.collect()}
    finally:
        worker.services.state_io.shutdown()
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        for name in re.findall(r"\bmegatrading_[a-z_]+", expr):
            base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s) and name[: -len(s)] in families), name)
            assert base in families, f"{name} (in {expr!r}) is not a metric the worker exports: {sorted(families)}"
    # every panel reads the provisioned data source
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {"megatrading-prometheus"}
