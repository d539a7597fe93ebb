"""Changing the model of a running worker (`megatrading model use`, streams/swap.py): the batcher swaps
between two model batches, never inside one, and each forecast names the model that scored it; on the
real servers a worker processing real Binance records takes a checkpoint without a restart and loses no
window; a model it cannot serve leaves the old one serving; a worker that starts later starts on the
wanted model."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import redis
from faults import read_topic
from test_baseline import calm_then_burst

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import PREDICTION_FIELDS, Predictions
from orderbook.venues import feed_class
from orderbook.windows import Window
from streams.app import create_app
from streams.batcher import MicroBatcher
from streams.cli import build_parser
from streams.config import SHIPPED_MODEL, Settings
from streams.partition import Partition
from streams.pipeline import VenuePipeline
from streams.publish import FramedTopic, framer, keyed, producer
from streams.sink import RedisSink

CAPTURE = "binance-hftbacktest/spot_btcusdt_20240808.gz"
TOPIC = "md.raw.binance.swap-test"  # a topic of its own: the e2e tests read md.raw.binance whole
DB = 11


class Gated(BaselineForecaster):
    """The baseline under a version of its own, noting the windows of each of its model calls; a call
    waits for `gate` (a slow model, its batch in flight for as long as a test wants)."""

    def __init__(self, version: str, calibrated: str | None = None) -> None:
        super().__init__()
        self.version, self.calibrated_score, self.blocks = version, calibrated, True
        self.gate, self.entered = threading.Event(), threading.Event()
        self.calls: list[list[int]] = []

    def predict(self, windows: Sequence[Window]) -> Predictions:
        self.calls.append([w.n_seen for w in windows])
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        base = BaselineForecaster().predict(windows)
        out = np.zeros(len(base), self.dtype)  # the model's own fields (GatedWider's) 0
        for name in PREDICTION_FIELDS:
            out[name] = base[name]
        return out


class GatedWider(Gated):
    """A model of other fields: the published ones and one of its own (as the order-flow model keeps)."""

    extra_fields = (("own", np.float64),)


def megatrading(*argv: str) -> int:
    """A verb run as `megatrading` runs it, without its logging set-up (which outlives a test)."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def _windows() -> list[Window]:
    calm, burst = calm_then_burst()
    return (calm + burst)[:16]


async def _in_flight(model: Gated) -> None:
    assert await asyncio.to_thread(model.entered.wait, 60), "the first batch never reached the model"


def test_a_batch_in_flight_finishes_with_the_old_model_and_the_next_is_the_new_ones():
    ws = _windows()
    old, new = Gated("old"), Gated("new")
    new.gate.set()

    async def main_() -> tuple:
        batcher = MicroBatcher(old, explain_above=0.99, max_wait=0.0)
        try:
            first = asyncio.create_task(batcher.submit(ws[:8]))
            await _in_flight(old)
            assert batcher.swap(new) is old
            second = asyncio.create_task(batcher.submit(ws[8:]))
            await asyncio.sleep(0)  # queued behind the batch in flight
            old.gate.set()
            return await first, await second
        finally:
            await batcher.stop()

    first, second = asyncio.run(main_())
    assert old.calls == [[w.n_seen for w in ws[:8]]] and new.calls == [[w.n_seen for w in ws[8:]]]
    assert list(first.models) == [old.model_id] * 8 and list(second.models) == [new.model_id] * 8
    assert first.runs() == [(old.model_id, 0, 8)]


def test_a_request_spanning_a_swap_names_each_windows_model_and_keeps_the_published_fields():
    ws = _windows()
    old, new = Gated("old", calibrated="anomaly_score"), GatedWider("wider")
    new.gate.set()

    async def main_():
        batcher = MicroBatcher(old, explain_above=0.99, max_wait=0.0, max_batch=4)
        try:
            request = asyncio.create_task(batcher.submit(ws[:8]))  # two model batches of 4
            await _in_flight(old)
            batcher.swap(new)
            old.gate.set()
            return await request
        finally:
            await batcher.stop()

    scored = asyncio.run(main_())
    assert old.calls == [[w.n_seen for w in ws[:4]]] and new.calls == [[w.n_seen for w in ws[4:8]]]
    assert scored.runs() == [(old.model_id, 0, 4), (new.model_id, 4, 8)]
    expected = BaselineForecaster().predict(ws[:8])
    got = scored.forecasts.predictions
    assert list(got.dtype.names) == list(PREDICTION_FIELDS)  # the fields both models give
    assert all(np.array_equal(got[f], expected[f]) for f in PREDICTION_FIELDS)
    assert scored.calibrated is None  # the new model has no calibrated score: no surprise drift from this request


# ---- on the real servers


@pytest.fixture(scope="module")
def records(infra, shared_data) -> list:
    """12,000 real Binance messages of one book, in frames, on a topic of their own: one partition."""
    prod = producer(infra.kafka.bootstrap)
    out = FramedTopic(prod, TOPIC, framer(64, 1.0), capture_header=True)
    raw = itertools.islice(feed_class("binance").read_capture(shared_data / CAPTURE), 12_000)
    for key, rec in keyed("binance", raw):
        out.add(key, rec.raw, rec.recv_ts or None)
    out.send_open()
    prod.flush()
    prod.close()
    msgs = read_topic(infra.kafka.bootstrap, TOPIC, committed_only=False)
    return [m for m in msgs if m.partition == msgs[0].partition]


def _settings(infra, worker_id: str) -> Settings:
    return Settings(bootstrap=infra.kafka.bootstrap, redis_url=f"redis://127.0.0.1:{infra.redis.port}/{DB}",
                    venues=("binance",), app_id=f"swap-{worker_id}", forecasts_topic=f"md.forecasts.{worker_id}",
                    worker_id=worker_id, model="baseline")  # fmt: skip


def _windows_of(chunks: list[list]) -> list[int]:
    """Each chunk's count of windows, undisturbed: the same records through the worker's pipeline offline."""
    pipe = VenuePipeline("binance", Settings().window, max_bytes=Settings().max_record_bytes)
    return [sum(len(pipe.process(m.key, m.value, m.partition, m.offset)[0]) for m in chunk) for chunk in chunks]


def _narrower_copy(tmp_path: Path) -> Path:
    """The shipped checkpoint, as if trained on windows with another price clip: one the workers cannot serve."""
    d = tmp_path / "clip32"
    shutil.copytree(SHIPPED_MODEL, d, ignore=shutil.ignore_patterns("evaluation"))
    config = json.loads((d / "config.json").read_text())
    config["window"]["price_clip"] = 32
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_a_running_worker_takes_a_new_model_between_batches_and_loses_no_window(infra, records, tmp_path, caplog,
                                                                                 capsys):  # fmt: skip
    settings = _settings(infra, "w-swap")
    r = redis.Redis(port=infra.redis.port, db=DB)
    r.flushdb()
    url = settings.redis_url
    size = -(-len(records) // 6)
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    assert len(chunks) == 6
    counts = _windows_of(chunks)
    _, worker = create_app(settings, BaselineForecaster())
    worker.services.state_topic_ready.set()  # what Worker.start does once md.state exists
    old_id, new_id = worker.forecaster.model_id, "orderflow-gpt:v1"
    narrow = _narrower_copy(tmp_path)

    async def run() -> None:
        part = Partition(worker.services, TOPIC, records[0].partition, "binance")
        await part.handle(chunks[0])
        assert megatrading("model", "use", str(SHIPPED_MODEL), "--redis-url", url) == 0
        await worker.heartbeat()  # reads the wanted model: the load starts in a thread
        swap = worker.swapping
        assert swap is not None
        for chunk in chunks[1:4]:  # the worker goes on meanwhile
            await part.handle(chunk)
        await swap
        await part.handle(chunks[4])
        # a model the workers cannot serve: the command refuses it, and a worker told anyway (a spec
        # written by other means) keeps serving what it serves, and does not try it again every second
        with pytest.raises(ValueError, match=r"is not for these workers: .*price_clip 32 \(worker 64\)"):
            megatrading("model", "use", str(narrow), "--redis-url", url)
        assert r.hget("mt:control", "model") == f"generative:{SHIPPED_MODEL}".encode()  # nothing written
        RedisSink.from_url(url).want_model(f"generative:{narrow}")
        await worker.heartbeat()
        assert worker.swapping is not None
        await worker.swapping
        await worker.heartbeat()
        assert worker.swapping is None
        await part.handle(chunks[5])
        await part.close()
        await worker.services.batcher.stop()
        await worker.sink.aclose()

    with caplog.at_level(logging.INFO, logger="streams.app"):
        asyncio.run(run())
    gc.collect()  # the unstarted Faust app's cycles, here rather than inside a later compile
    hist = [{k.decode(): v.decode() for k, v in e.items()} for _, e in r.xrange("mt:hist:binance:BTCUSDT")]
    assert len(hist) == sum(counts) and len({h["window"] for h in hist}) == len(hist)  # none lost, none twice
    models = [h["model"] for h in sorted(hist, key=lambda h: int(h["window"]))]
    took = models.index(new_id)
    assert set(models[:took]) == {old_id} and set(models[took:]) == {new_id}  # one change, never back
    assert counts[0] <= took <= sum(counts) - counts[4] - counts[5]  # before the swap: old; after it: new
    meta = {k.decode(): v.decode() for k, v in r.hgetall("mt:meta").items()}
    assert meta["model:w-swap"] == meta["model"] == new_id and int(meta["swapped:w-swap"]) > 0
    assert meta["swap_error:w-swap"].startswith(f"generative:{narrow}: ValueError")
    assert worker.forecaster.model_id == new_id  # the refused model left the one serving in place
    swapped = [m for m in caplog.messages if m.startswith("model swapped:")]
    assert len(swapped) == 1 and swapped[0].startswith(f"model swapped: {old_id} -> {new_id}, load took ")
    assert len([m for m in caplog.messages if m.startswith(f"model swap to generative:{narrow} refused")]) == 1
    assert worker.services.forecaster is worker.forecaster is worker.services.batcher.forecaster
    capsys.readouterr()
    assert megatrading("model", "show", "--redis-url", url) == 0
    shown = capsys.readouterr().out.splitlines()
    row = next(line.split(maxsplit=2) for line in shown if line.startswith("w-swap "))
    assert shown[0] == f"wanted: generative:{narrow}" and row[1] == new_id
    assert row[2].endswith("ago  " + meta["swap_error:w-swap"]) and not row[2].startswith("start")


def test_a_worker_starting_later_starts_on_the_wanted_model_until_it_is_cleared(infra, tmp_path):
    settings = _settings(infra, "w-later")
    r = redis.Redis(port=infra.redis.port, db=DB)
    r.flushdb()
    url = settings.redis_url

    def started() -> tuple[str, str]:
        _, worker = create_app(settings)
        worker.services.io.shutdown()
        worker.services.state_io.shutdown()
        return worker.forecaster.model_id, worker.swap_error

    assert megatrading("model", "use", str(SHIPPED_MODEL), "--redis-url", url) == 0
    assert started() == ("orderflow-gpt:v1", "")
    RedisSink.from_url(url).want_model(f"generative:{_narrower_copy(tmp_path)}")
    model, refused = started()
    assert model == "baseline-har-ewma:1" and "price_clip 32 (worker 64)" in refused
    assert megatrading("model", "use", "--clear", "--redis-url", url) == 0
    assert started() == ("baseline-har-ewma:1", "") and r.hget("mt:control", "model") is None
