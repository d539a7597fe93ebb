"""The worker's drift (streams/app.py, streams/partition.py): a partition's batch of real Binance
records on a real Kafka and Redis, then a heartbeat: each book's drift is in `mt:meta`, with the
progress line's count and a log line for a book that crossed the threshold."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging

import redis
from faults import read_topic

from model.serving.baseline import BaselineForecaster
from orderbook.features import FEATURE_NAMES
from orderbook.venues import feed_class
from streams.app import create_app
from streams.config import Settings
from streams.partition import Partition
from streams.publish import FramedTopic, framer, keyed, producer

CAPTURE = "binance-hftbacktest/spot_btcusdt_20240808.gz"
TOPIC = "md.raw.binance.drift-test"  # a topic of its own: the e2e tests read md.raw.binance whole


class CalibratedBaseline(BaselineForecaster):
    """The baseline, its anomaly score taken for a calibrated one: the surprise drift is computed too."""

    calibrated_score = "anomaly_score"


def test_after_a_batch_each_books_drift_is_in_meta_and_the_progress_line(infra, shared_data, caplog):
    bootstrap = infra.kafka.bootstrap
    prod = producer(bootstrap)
    out = FramedTopic(prod, TOPIC, framer(64, 1.0), capture_header=True)
    for key, rec in keyed("binance", itertools.islice(feed_class("binance").read_capture(shared_data / CAPTURE),
                                                      30_000)):  # fmt: skip
        out.add(key, rec.raw, rec.recv_ts or None)
    out.send_open()
    prod.flush()
    prod.close()
    msgs = read_topic(bootstrap, TOPIC, committed_only=False)
    msgs = [m for m in msgs if m.partition == msgs[0].partition]  # one symbol: one partition
    settings = Settings(bootstrap=bootstrap, redis_url=f"redis://127.0.0.1:{infra.redis.port}/7", venues=("binance",),
                        app_id="drift-worker", forecasts_topic="md.forecasts.drift-worker", worker_id="w-drift",
                        drift_windows=64, drift_reference=128)  # fmt: skip
    r = redis.Redis(port=infra.redis.port, db=7)
    r.flushdb()
    _, worker = create_app(settings, CalibratedBaseline())
    worker.services.state_topic_ready.set()  # what Worker.start does once md.state exists

    async def batch() -> Partition:
        part = Partition(worker.services, TOPIC, msgs[0].partition, "binance")
        await part.handle(msgs)
        await worker.heartbeat()
        worker.log_progress()
        await part.close()
        await worker.services.batcher.stop()
        await worker.sink.aclose()
        return part

    with caplog.at_level(logging.INFO, logger="streams.app"):
        part = asyncio.run(batch())
    gc.collect()  # the unstarted Faust app's cycles, here rather than inside a later compile
    meta = {k.decode(): v.decode() for k, v in r.hgetall("mt:meta").items()}
    assert "heartbeat:w-drift" in meta
    drift = json.loads(meta["drift:binance:BTCUSDT"])
    assert set(drift) == {"surprise_psi", "surprise_level", "feature_psi_max", "feature_psi_mean", "feature",
                          "windows", "state"}  # fmt: skip
    assert 0 <= drift["surprise_level"] <= 1
    assert drift["windows"] == part.stats.forecasts > 64 + 128  # every window scored, one book
    assert 0 <= drift["surprise_psi"] < 20 and 0 <= drift["feature_psi_mean"] <= drift["feature_psi_max"] < 20
    assert drift["feature"] in FEATURE_NAMES and drift["feature"] not in ("valid", "mid")
    assert drift["state"] in ("stable", "moderate", "drift")
    drifting = [m for m in caplog.messages if m.startswith("drift: binance BTCUSDT drifting")]
    assert len(drifting) == (drift["state"] == "drift")
    progress = [m for m in caplog.messages if m.startswith("progress:")]
    assert progress and f"; {int(drift['state'] == 'drift')} of 1 books drifting" in progress[-1]
