"""Nothing lost, nothing duplicated: faults injected into real `megatrading worker` processes on a
real Kafka broker and Redis of this module's own, each run compared with what an undisturbed run
publishes (computed offline from the very records on the topic): every forecast in Redis and on
the forecasts topic (read committed), once, in order, field for field.

- Redis stopped for 1 s, 5 s and 30 s at three cut points of one run;
- the broker stopped and started again mid-stream, a headline published after it;
- SIGKILL at seeded random points, every venue format;
- three workers with rebalances, one of them killed.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
from faults import (
    WorkerProcess,
    capture_records,
    compare,
    expected,
    publish,
    read_topic,
    simulated_records,
    wait_for,
)

from streams.config import Settings
from streams.infra import Infra
from streams.pipeline import VenuePipeline

pytestmark = pytest.mark.realdata

CAPTURES = {
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
}
SIMULATED = {"itch": 11, "lobster": 12}  # format: seed
VENUES = (*CAPTURES, *SIMULATED)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A broker and a Redis for this module alone: outages here disturb no other test."""
    servers = Infra.on_free_ports(tmp_path_factory.mktemp("faults"))
    servers.up()
    yield servers
    servers.down()


@pytest.fixture(scope="module")
def streams(lab, shared_data):
    """Every venue's stream on `md.raw.<venue>` (4 partitions), and the records as they landed."""
    for venue, rel in CAPTURES.items():
        publish(lab.kafka.bootstrap, f"md.raw.{venue}", capture_records(venue, shared_data / rel))
    for fmt, seed in SIMULATED.items():
        publish(lab.kafka.bootstrap, f"md.raw.{fmt}", simulated_records(fmt, seed))
    return {venue: read_topic(lab.kafka.bootstrap, f"md.raw.{venue}", committed_only=False) for venue in VENUES}


class Run:
    """One consumer group's run: its own Redis database and output topics."""

    def __init__(self, lab: Infra, name: str, db: int, venues: tuple[str, ...], tmp_path) -> None:
        self.lab, self.name, self.venues, self.tmp = lab, name, venues, tmp_path
        self.redis_url = f"redis://127.0.0.1:{lab.redis.port}/{db}"
        self.forecasts_topic, self.dlq_topic = f"md.forecasts.{name}", f"md.dlq.{name}"
        self.topics = [f"md.raw.{v}" for v in venues]
        self.workers: list[WorkerProcess] = []

    def start(self, worker_id: str = "w") -> WorkerProcess:
        log = self.tmp / f"{worker_id}.log"
        w = WorkerProcess(self.lab.kafka.bootstrap, self.redis_url, self.name, self.venues, log,
                          f"{self.name}-{worker_id}", self.forecasts_topic, self.dlq_topic)  # fmt: skip
        self.workers.append(w)
        return w

    def wait(self, fraction: float, timeout: float = 240) -> float:
        return wait_for(self.lab.kafka.bootstrap, self.name, self.topics, fraction, timeout,
                        [w for w in self.workers if w.alive()])  # fmt: skip

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()

    def outcome(self, want: dict):
        return compare(want, self.redis_url, self.lab.kafka.bootstrap, self.forecasts_topic)

    def logs(self) -> str:
        return "".join(w.log.read_text(errors="replace") for w in self.workers)


def want_for(streams: dict, venues: tuple[str, ...]) -> dict:
    out: dict = {}
    for venue in venues:
        out.update(expected(venue, streams[venue]))
    return out


def test_redis_stopped_for_1_5_and_30_s_mid_stream_loses_and_duplicates_nothing(lab, streams, tmp_path):
    run = Run(lab, "redis-outages", 1, ("binance",), tmp_path)
    w = run.start()
    try:
        for cut, seconds in ((0.15, 1), (0.4, 5), (0.65, 30)):
            run.wait(cut)
            lab.redis.stop()
            time.sleep(seconds)
            assert w.alive(), "the worker exited while Redis was down"
            lab.redis.start()
        run.wait(1.0)
        assert w.alive()
    finally:
        run.stop_all()
    outcome = run.outcome(want_for(streams, run.venues))
    assert outcome.exact, outcome
    log = run.logs()
    assert "waiting for redis" in log and "redis is back" in log


@pytest.mark.parametrize("venue", VENUES)
def test_sigkill_at_random_points_loses_and_duplicates_nothing(lab, streams, venue, tmp_path):
    rng = random.Random(f"sigkill-{venue}")
    run = Run(lab, f"kill-{venue}", 2 + VENUES.index(venue), (venue,), tmp_path)
    cuts = sorted(rng.uniform(0.1, 0.8) for _ in range(2))
    try:
        for i, cut in enumerate(cuts):
            w = run.start(f"w{i}")
            run.wait(cut)
            w.kill()
        run.start("last")
        run.wait(1.0)
    finally:
        run.stop_all()
    outcome = run.outcome(want_for(streams, run.venues))
    assert outcome.exact, outcome
    assert "from snapshot at offset" in run.logs(), "no restart used a snapshot"


def test_three_workers_with_rebalances_and_one_killed_publish_every_forecast_once_in_order(lab, streams, tmp_path):
    venues = tuple(CAPTURES)
    run = Run(lab, "three", 8, venues, tmp_path)
    try:
        run.start("a")
        run.wait(0.1)
        b = run.start("b")
        run.wait(0.3)
        run.start("c")
        run.wait(0.5)
        b.kill()
        run.wait(1.0)
    finally:
        run.stop_all()
    outcome = run.outcome(want_for(streams, venues))
    assert outcome.exact, outcome


def test_a_broker_outage_loses_nothing_and_headlines_after_it_still_reach_the_windows(shared_data, tmp_path):
    """Its own broker: stopped (SIGTERM) for 15 s while a worker runs, started again on the same
    data. A headline and then the stream's tail are published after the restart: the windows
    after the headline carry it, as they do offline."""
    records = capture_records("kraken", shared_data / CAPTURES["kraken"])
    cut = len(records) * 2 // 3
    symbol, news_ts = _first_window_after(records, cut)
    headline = json.dumps({"ts": news_ts, "symbols": [symbol], "headline": "exchange halts withdrawals",
                           "source": "test"}).encode()  # fmt: skip
    servers = Infra.on_free_ports(tmp_path / "servers")
    servers.up()
    try:
        boot = servers.kafka.bootstrap
        publish(boot, "md.raw.kraken", records[:cut])
        head = Counter(m.partition for m in read_topic(boot, "md.raw.kraken", committed_only=False))
        run = Run(servers, "outage", 1, ("kraken",), tmp_path)
        w = run.start()
        try:
            run.wait(0.4)
            servers.kafka.stop()
            time.sleep(15)
            assert w.alive(), "the worker exited while the broker was down"
            servers.kafka.start()
            run.wait(1.0)
            publish(boot, "md.news", [(symbol.encode(), headline)])
            _wait_for_line(w, "joined 1 headlines", 60)  # the tail comes after the worker has the headline
            publish(boot, "md.raw.kraken", records[cut:])
            run.wait(1.0)
        finally:
            run.stop_all()
        raw = read_topic(boot, "md.raw.kraken", committed_only=False)
        want = expected("kraken", raw, {(p, n): [headline] for p, n in head.items()})
        assert any(r["news_ts"] == news_ts for r in want.values()), "the headline reaches no window: nothing tested"
        outcome = run.outcome(want)
        assert outcome.exact, outcome
        log = run.logs()
        floods = ("Unable connect to node", "Unable to update metadata", "Connection attempt", "Unable to connect")
        assert sum(log.count(f) for f in floods) < 200, "the outage flooded the log"
    finally:
        servers.down()


def _wait_for_line(w: WorkerProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in w.log.read_text(errors="replace"):
        assert time.monotonic() < deadline and w.alive(), f"no {text!r} in the worker's log after {timeout} s"
        time.sleep(0.2)


def _first_window_after(records: list[tuple[bytes, bytes]], cut: int) -> tuple[str, int]:
    """The symbol and event time of the first window the records from `cut` on emit."""
    pipe = VenuePipeline("kraken", Settings().window, max_bytes=Settings().max_record_bytes)
    for i, (key, value) in enumerate(records):
        windows, _ = pipe.process(key, value, 0, i)
        if i >= cut and windows:
            return windows[0].symbol, int(windows[0].ts)
    raise AssertionError("the tail emits no window")
