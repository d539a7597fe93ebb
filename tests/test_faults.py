"""Nothing lost, nothing duplicated: faults injected into real `megatrading worker` processes on a
real Kafka broker and Redis of this module's own, each run compared with what an undisturbed run
publishes (computed offline from the very records on the topic): every forecast in Redis and on
the forecasts topic (read committed), once, in order, field for field.

- Redis stopped for 1 s, 5 s and 15 s at three cut points of one run (15 s: three retries at the
  backoff's 5 s cap; `make soak`'s fault table stops it for 30 s too);
- a worker stopped gracefully (SIGTERM) at two cut points and started again: a rolling restart;
- a worker stopped while a batch is held between its forecasts and its commit (a failpoint);
- the broker stopped and started again mid-stream, a headline published after it;
- SIGKILL at seeded random points, every venue format (Binance here; ITCH, Coinbase, Kraken and
  LOBSTER, which take the same transactional path with another decoder, in `make soak`: `-m soak`);
- three workers with rebalances, one of them killed;
- a consumer that stops fetching (the stall watchdog restarts the worker in place);
- the group's committed offsets set back below the worker's (it commits them again);
- a feed written in Kafka transactions, some aborted;
- a record on which the native path panics, every time (it moves to the reference path).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import Counter

import pytest
import redis
from aiokafka import AIOKafkaProducer, TopicPartition
from faults import (
    GroupRun,
    WorkerProcess,
    capture_records,
    create_topic,
    expected,
    publish,
    read_topic,
    scrape,
    simulated_records,
)

from streams.config import Settings
from streams.infra import Infra, free_port
from streams.logformat import line_time
from streams.offsets import committed_offsets
from streams.pipeline import VenuePipeline
from tests.captures import soak_unless

pytestmark = pytest.mark.realdata

CAPTURES = {
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
}
SIMULATED = {"itch": 11, "lobster": 12}  # format: seed
VENUES = (*CAPTURES, *SIMULATED)
# make test kills a real L2 capture and a framed L3 stream; the other formats (their decoders' state
# restored exactly is test_snapshot's) run in `make soak`, where the 20-minute budget does not bind
KILLED_IN_MAKE_TEST = ("binance",)


@pytest.fixture(scope="module")
def streams(lab, shared_data):
    """Every captured venue's stream on `md.raw.<venue>` (4 partitions), and the records as they landed."""
    for venue, rel in CAPTURES.items():
        publish(lab.kafka.bootstrap, f"md.raw.{venue}", capture_records(venue, shared_data / rel))
    return {venue: read_topic(lab.kafka.bootstrap, f"md.raw.{venue}", committed_only=False) for venue in CAPTURES}


def want_for(streams: dict, venues: tuple[str, ...]) -> dict:
    out: dict = {}
    for venue in venues:
        out.update(expected(venue, streams[venue]))
    return out


def test_redis_stopped_for_1_5_and_15_s_mid_stream_loses_and_duplicates_nothing(lab, streams, tmp_path):
    run = GroupRun(lab, "redis-outages", 1, ("binance",), tmp_path)
    w = run.start()
    try:
        for cut, seconds in ((0.15, 1), (0.4, 5), (0.65, 15)):
            run.wait(cut)
            lab.redis.stop()
            time.sleep(seconds)
            assert w.alive(), "the worker exited while Redis was down"
            lab.redis.start()
        run.wait(1.0)
        assert w.alive()
    finally:
        run.stop_all()
    outcome = run.compare(want_for(streams, run.venues))
    assert outcome.exact, outcome
    log = run.log_text()
    assert "waiting for redis" in log and "redis is back" in log


def test_a_worker_stopped_gracefully_mid_stream_and_started_again_loses_and_duplicates_nothing(lab, tmp_path):
    """A rolling restart: SIGTERM twice while records are being published (a simulated ITCH stream in
    three parts, on a topic of this module no other test writes; in trials a third to a half of the
    topic was left uncommitted at each stop, for the next worker to do). Each worker
    exits by itself within WorkerProcess.stop's 30 s grace (exit status 0: no SIGKILL), no batch fails on
    the way out, and the next one, started at once, finishes what it left. Each new worker has caught up
    with what was published before it is stopped: a SIGTERM before Faust's own handler is set is plain
    death, a SIGKILL's test."""
    rng = random.Random("sigterm")
    records = simulated_records("itch", SIMULATED["itch"])
    a, b = len(records) // 3, 2 * len(records) // 3
    topic = "md.raw.itch"
    run = GroupRun(lab, "sigterm", 4, ("itch",), tmp_path)
    try:
        publish(lab.kafka.bootstrap, topic, records[:a])
        w = run.start("w0")
        for name, part in (("w1", records[a:b]), ("w2", records[b:])):
            run.wait(1.0)
            _wait_for_line(w, "restored to offset", 60, count=4)  # up, Faust's signal handler set
            feed = threading.Thread(target=publish, args=(lab.kafka.bootstrap, topic, part))
            feed.start()  # the SIGTERM lands while records still arrive
            time.sleep(rng.uniform(0.05, 0.3))
            w.stop()
            feed.join()
            assert w.proc.returncode == 0, f"{w.log}: exit status {w.proc.returncode} on SIGTERM"
            w = run.start(name)
        run.wait(1.0)
        assert w.alive()
        raw = read_topic(lab.kafka.bootstrap, topic, committed_only=False)
        outcome = run.compare(expected("itch", raw))
    finally:
        run.stop_all()
    assert outcome.exact, outcome
    log = run.log_text()
    assert "the batch failed" not in log and "Traceback" not in log, log[-5000:]


def test_a_stop_that_lands_inside_a_batch_lets_the_batch_commit_before_the_worker_exits(lab, streams, tmp_path):
    """The failpoint `batch_delay` holds the first batch the worker makes for BATCH_DELAY_S after its
    forecasts, before its commit is queued; SIGTERM lands then. The worker must let that batch commit
    before it stops the partition's producer: it exits with status 0, logs no failure, and the group's
    committed offset covers the batch."""
    marker = tmp_path / "batch_delay.fired"
    run = GroupRun(lab, "stop-in-batch", 5, ("binance",), tmp_path)
    w = run.start("w", extra_env={"MT_FAILPOINTS": f"batch_delay=1:{marker}"})
    try:
        held = _wait_for_line(w, r"(md\.raw\.binance)\[(\d+)\]: failpoint batch_delay: the batch of offsets "
                                 r"\[(\d+), (\d+)\)", 60)  # fmt: skip
        w.stop()
    finally:
        run.stop_all()
    assert w.proc.returncode == 0, f"{w.log}: exit status {w.proc.returncode} on SIGTERM"
    topic, partition, end = held[1], int(held[2]), int(held[4])
    assert committed_offsets(lab.kafka.bootstrap, run.group, topic, {partition})[partition] >= end
    log = run.log_text()
    assert "Traceback" not in log and "the batch failed" not in log, log[-5000:]


@pytest.mark.parametrize("venue", soak_unless(VENUES, lambda v: v in KILLED_IN_MAKE_TEST))
def test_sigkill_at_random_points_loses_and_duplicates_nothing(venue, shared_data, tmp_path):
    """Servers of its own, and the stream published in three parts at seeded random cut points, so
    that every kill lands before the stream's end however fast the worker is (the Kraken capture
    takes it under a second): the first worker commits the first part, then is killed at a random
    moment once the second is published; the second worker at a random moment once the third is;
    a last one finishes. Snapshots every 100 records: the restarts restore from one."""
    rng = random.Random(f"sigkill-{venue}")
    if venue in CAPTURES:
        records = capture_records(venue, shared_data / CAPTURES[venue])
    else:
        records = simulated_records(venue, SIMULATED[venue])
    a, b = sorted(rng.sample(range(len(records) // 4, 3 * len(records) // 4), 2))
    topic = f"md.raw.{venue}"
    servers = Infra.on_free_ports(tmp_path / "servers")
    servers.up()
    run = GroupRun(servers, f"kill-{venue}", 1, (venue,), tmp_path, snapshot_every=100)
    try:
        publish(servers.kafka.bootstrap, topic, records[:a])
        w = run.start("w0")
        run.wait(1.0)
        for name, part in (("w1", records[a:b]), ("last", records[b:])):
            publish(servers.kafka.bootstrap, topic, part)
            time.sleep(rng.uniform(0.0, 2.0))
            w.kill()
            w = run.start(name)
        run.wait(1.0)
        raw = read_topic(servers.kafka.bootstrap, topic, committed_only=False)
        assert len(raw) == len(records)
        outcome = run.compare(expected(venue, raw))
    finally:
        run.stop_all()
        servers.down()
    assert outcome.exact, outcome
    assert "from snapshot at offset" in run.log_text(), "no restart used a snapshot"


def test_a_consumer_that_stops_fetching_mid_stream_restarts_the_worker_in_place_and_loses_nothing(
    lab, streams, tmp_path
):
    """The consumer stops fetching at its fifth fetch, records still on the broker (the failpoint
    `fetch_stall`: the upstream stall after a broker outage, streams/stall.py). The watchdog restarts
    the worker in place (the same process, never seen to exit), and the run is exact."""
    marker = tmp_path / "fetch_stall.fired"
    run = GroupRun(lab, "stall", 2, ("binance",), tmp_path)
    w = run.start(extra_env={"MT_FAILPOINTS": f"fetch_stall=5:{marker}", "MT_STALL_S": "4"})
    try:
        run.wait(1.0)  # fails if the worker exits
        assert w.alive()
    finally:
        run.stop_all()
    assert marker.exists(), "the failpoint never fired: nothing stalled"
    log = run.log_text()
    assert log.count("STALLED: records wait on the broker") == 1, log[-3000:]
    assert "restart 1 since it was started" in log
    outcome = run.compare(want_for(streams, run.venues))
    assert outcome.exact, outcome


def test_a_worker_with_a_group_instance_id_restarted_in_place_gets_its_partitions_back_at_once(lab, streams, tmp_path):
    """Static membership (`group_instance_id`): the watchdog's restart in place rejoins under the same id, and
    the group hands the partitions back without waiting for the old member's session to end (a dynamic
    member's restart waits all of it: the test above, 6 s; here, with the id unset, 59.9 s). The session here
    is 60 s (Faust allows up to its request timeout, 90 s): the partitions come back within half of it (in
    trials 2 s). Exact as always."""
    marker = tmp_path / "fetch_stall.fired"
    run = GroupRun(lab, "stall-static", 2, ("binance",), tmp_path)
    env = {"MT_FAILPOINTS": f"fetch_stall=5:{marker}", "MT_STALL_S": "4", "MT_GROUP_INSTANCE_ID": "static-w",
           "MT_SESSION_TIMEOUT": "60"}  # fmt: skip
    w = run.start(extra_env=env)
    try:
        run.wait(1.0)
        assert w.alive()
    finally:
        run.stop_all()
    assert marker.exists(), "the failpoint never fired: nothing stalled"
    log = run.log_text()
    stalled = _log_time(log, "STALLED: records wait on the broker")
    back = _log_time(log, "assigned md.raw.binance[0], md.raw.binance[1], md.raw.binance[2], md.raw.binance[3]",
                     after=stalled)  # fmt: skip
    # a dynamic member's partitions come back when the old session ends, 59-60 s after the STALLED line
    assert back - stalled < 30, f"partitions back {back - stalled:.1f} s after the restart: the session was waited out"
    outcome = run.compare(want_for(streams, run.venues))
    assert outcome.exact, outcome


def test_two_live_workers_with_one_group_instance_id_say_so_in_their_logs(lab, streams, tmp_path):
    """A misconfiguration static membership allows: two workers started with one `group_instance_id`.
    The broker fences one join with the other. What follows depends on timing (streams/membership.py):
    the fenced worker hangs before it is up, its Faust timers never running; or the two take turns, a
    rebalance every second or, on a loaded host, every few seconds with each side's transactions fencing
    the other's; or a worker already up is fenced on a rejoin or heartbeat and exits, Faust crashing on
    aiokafka's error. Each says so, naming the id or the misconfiguration: the membership watch (a
    thread of its own) for a worker never assigned and for the churn, the error's own text for a worker
    that exits. A worker never assigned reports it, and at least one of the two reports something."""
    run = GroupRun(lab, "twins", 6, ("binance",), tmp_path)
    ports = [free_port(), free_port()]
    env = {"MT_GROUP_INSTANCE_ID": "twin", "MT_METRICS_HOST": "127.0.0.1"}
    workers = [
        run.start(name, extra_env=env | {"MT_METRICS_PORT": str(port)}) for name, port in zip("ab", ports, strict=True)
    ]
    never, churn = "no partition assignment", ("rebalances in 60 s", "transactions fenced in 60 s")
    fatal = "FencedInstanceIdError: another consumer registered with this consumer's group.instance.id"

    def logs() -> list[str]:
        return [w.log.read_text(errors="replace") for w in workers]

    def told(text: str) -> bool:
        return never in text or any(c in text for c in churn)

    try:
        # flapping is reported once FLAPS rebalances fall within FLAP_WINDOW_S (60 s) of both twins being up;
        # under load their start takes tens of seconds: 90 s ran out on a loaded 2-core host (2026-12-02),
        # and the rebalances come seconds apart, the fencings telling (2026-12-03)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            texts = logs()
            told_ = [told(t) or (not w.alive()) for w, t in zip(workers, texts, strict=True)]
            unassigned = ["assigned md.raw" not in t for t in texts]
            if any(told_) and all(t for t, u in zip(told_, unassigned, strict=True) if u):
                break
            time.sleep(1.0)
        alive = [w.alive() for w in workers]
        for w, up in zip(workers, alive, strict=True):  # a worker that exited says why: the broker fenced its id
            assert up or fatal in w.log.read_text(errors="replace"), w.exited()
        # served from before the join: a worker that never joined answers too, and says why
        scraped = [scrape(port) if up else None for port, up in zip(ports, alive, strict=True)]
    finally:
        run.stop_all()
    texts = logs()
    assert not all(alive) or any(told(t) for t in texts), texts[0][-3000:] + texts[1][-3000:]
    for t, m in zip(texts, scraped, strict=True):
        if m is not None and "assigned md.raw" not in t:
            assert never in t and "group_instance_id is 'twin'" in t, t[-3000:]
            unsettled = {lab["reason"]: v for lab, v in m["megatrading_group_unsettled"]}
            assert unsettled == {"no_assignment": 1, "flapping": 0, "fenced": 0}, unsettled
            assert m["megatrading_group_rebalances_total"][0][1] == 0


def test_a_record_the_native_path_panics_on_is_done_on_the_reference_path_and_loses_nothing(lab, streams, tmp_path):
    """A record that meets a bug of the compiled code panics it on every redo of its batch: until 2026-12-02
    the partition redid the batch, from its committed offset, for as long as the record was kept. Armed as a
    poison record (streams/failpoints.py; the compiled code panics for real) two thirds into the capture,
    past several snapshots: after NATIVE_PANICS panics in a row the batch is redone on the reference path,
    restored from the native snapshot (orderbook/native/convert.py; until 2026-12-04 it replayed the topic
    from its first record), and once it is done the state goes back to the native path (until 2026-12-04 the
    partition stayed on the reference path). The worker publishes exactly what an undisturbed run does; its
    log and /metrics say what happened; a worker started after it restores from the snapshots written since."""
    raw = streams["binance"]
    poison = raw[2 * len(raw) // 3]
    run = GroupRun(lab, "native-panic", 7, ("binance",), tmp_path)
    port = free_port()
    env = {"MT_FAILPOINT_NATIVE_PANIC": poison.value.hex(), "MT_METRICS_HOST": "127.0.0.1",
           "MT_METRICS_PORT": str(port)}  # fmt: skip
    w = run.start(extra_env=env)
    name = f"md.raw.binance[{poison.partition}]"
    try:
        run.wait(1.0)
        assert w.alive()
        fallbacks = {lab["venue"]: v for lab, v in scrape(port)["megatrading_native_fallbacks_total"]}
        w.stop()
        nxt = run.start("next")  # the next owner, no poison armed
        deadline = time.monotonic() + 120
        while f"{name}: restored to offset" not in nxt.log.read_text(errors="replace"):
            assert nxt.alive() and time.monotonic() < deadline, nxt.log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
    finally:
        run.stop_all()
    log = w.log.read_text(errors="replace")
    panics = re.findall(r"^streams\.pipeline\.NativePanic: the native binance pipeline panicked: failpoint", log, re.M)
    assert len(panics) == 2, log[-3000:]
    assert f"{name}: the native path panicked on the same batch 2 times in a row" in log, log[-3000:]
    assert f"{name}: the native snapshot at offset" in log and "read on the reference path" in log, log[-3000:]
    restores = re.findall(rf"{re.escape(name)}: restored to offset \d+ from (.+?), (\d+) records replayed", log)
    after = restores[-1]  # the restore on the reference path, after the panics
    assert after[0].startswith("snapshot at offset") and int(after[1]) < poison.offset // 2, restores
    back = re.search(rf"{re.escape(name)}: the batch the native path panicked on \(offsets (\d+)-(\d+)\) is done "
                     r"on the reference path: back on the native path", log)  # fmt: skip
    assert back and int(back[1]) <= poison.offset <= int(back[2]), log[-3000:]
    assert fallbacks == {"binance": 1}, fallbacks
    next_log = nxt.log.read_text(errors="replace")
    (src, replayed), *_ = re.findall(rf"{re.escape(name)}: restored to offset \d+ from (.+?), (\d+) records replayed",
                                     next_log)  # fmt: skip
    assert src.startswith("snapshot at offset") and int(replayed) < poison.offset // 2, next_log[-3000:]
    assert not re.search(r"snapshot \S+ skipped", log + next_log), (log + next_log)[-3000:]
    outcome = run.compare(want_for(streams, ("binance",)))
    assert outcome.exact, outcome


def test_a_committed_offset_read_back_below_the_workers_is_committed_again_without_a_restart(lab, streams, tmp_path):
    """Once the worker has committed every record, the group's committed offsets are set back to
    half (a transaction of another producer), as when the broker loses a transaction's offset commit
    while its forecasts stand (streams/stall.py). The idle worker commits its positions again: the
    offsets return to the end, with no restart and no forecast published twice."""
    topic = "md.raw.binance"
    run = GroupRun(lab, "recommit", 3, ("binance",), tmp_path)
    w = run.start(extra_env={"MT_STALL_S": "3"})
    try:
        run.wait(1.0)
        ends = committed_offsets(lab.kafka.bootstrap, run.group, topic, {m.partition for m in streams["binance"]})
        back = {p: end // 2 for p, end in ends.items()}
        asyncio.run(_commit_offsets_in_a_transaction(lab.kafka.bootstrap, run.group, topic, back))
        assert committed_offsets(lab.kafka.bootstrap, run.group, topic, set(back)) == back
        run.wait(1.0, timeout=60)
        assert w.alive()
    finally:
        run.stop_all()
    log = run.log_text()
    assert log.count("did not materialize on the broker") == len(ends), log[-3000:]
    assert "STALLED" not in log and "from snapshot at offset" not in log
    outcome = run.compare(want_for(streams, run.venues))
    assert outcome.exact, outcome


async def _commit_offsets_in_a_transaction(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"offsets-{group}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_offsets_to_transaction({TopicPartition(topic, p): o for p, o in offsets.items()}, group)
    finally:
        await producer.stop()


def test_three_workers_with_rebalances_and_one_killed_publish_every_forecast_once_in_order(lab, streams, tmp_path):
    venues = tuple(CAPTURES)
    run = GroupRun(lab, "three", 8, venues, tmp_path)
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
    outcome = run.compare(want_for(streams, venues))
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
        run = GroupRun(servers, "outage", 1, ("kraken",), tmp_path)
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
        outcome = run.compare(want)
        assert outcome.exact, outcome
        log = run.log_text()
        floods = ("Unable connect to node", "Unable to update metadata", "Connection attempt", "Unable to connect")
        assert sum(log.count(f) for f in floods) < 200, "the outage flooded the log"
    finally:
        servers.down()


def test_headlines_the_parser_refuses_are_dead_lettered_and_the_worker_goes_on(shared_data, tmp_path):
    """md.news records an infinite `ts` or a nesting past the JSON parser's depth: until 2026-12-02 the
    parser raised OverflowError and RecursionError from the worker's heartbeat timer, which ends the
    Faust app. Its own servers (md.news is one topic for every group). Both reach md.dlq as malformed,
    the heartbeat goes on after them, the worker stays up and its forecasts are exact."""
    records = capture_records("kraken", shared_data / CAPTURES["kraken"])
    servers = Infra.on_free_ports(tmp_path / "servers")
    servers.up()
    try:
        boot = servers.kafka.bootstrap
        publish(boot, "md.raw.kraken", records)
        run = GroupRun(servers, "bad-news", 1, ("kraken",), tmp_path)
        w = run.start()
        bad = [b'{"ts": 1e999, "symbols": ["XBT/USD"], "headline": "h"}', b"[" * 5000]
        r = redis.Redis(port=servers.redis.port, db=run.db, decode_responses=True)
        try:
            run.wait(1.0)
            publish(boot, "md.news", [(b"XBT/USD", v) for v in bad])
            deadline = time.monotonic() + 60
            while len(dead := [m for m in read_topic(boot, f"md.dlq.{run.group}", committed_only=False)
                               if dict(m.headers).get("source_topic") == b"md.news"]) < len(bad):  # fmt: skip
                assert w.alive() and time.monotonic() < deadline, w.log.read_text()[-3000:]
                time.sleep(0.5)
            beat = int(r.hget("mt:meta", f"heartbeat:{run.group}-w") or 0)
            time.sleep(3.0)
            assert int(r.hget("mt:meta", f"heartbeat:{run.group}-w") or 0) > beat, "the heartbeat timer stopped"
            assert w.alive()
        finally:
            run.stop_all()
        assert sorted(m.value for m in dead) == sorted(bad)
        assert {dict(m.headers)["reason"] for m in dead} == {b"malformed"}
        outcome = run.compare(
            want_for({"kraken": read_topic(boot, "md.raw.kraken", committed_only=False)}, ("kraken",))
        )
        assert outcome.exact, outcome
    finally:
        servers.down()


def test_a_feed_written_in_transactions_with_aborted_ones_gives_what_its_committed_records_give(shared_data, tmp_path):
    """A feed handler that writes in Kafka transactions (Kafka Connect's exactly-once sources, Flink's
    sink): 50 records a transaction, every seventh aborted and sent again. The worker reads the
    committed records alone and publishes what they give offline; the commit markers between them are
    no gap. Read uncommitted, the aborted copies had corrupted every book (125 of 128 forecasts lost)."""
    records = capture_records("kraken", shared_data / CAPTURES["kraken"])
    servers = Infra.on_free_ports(tmp_path / "servers")
    servers.up()
    try:
        boot = servers.kafka.bootstrap
        create_topic(boot, "md.raw.kraken")
        asyncio.run(_publish_in_transactions(boot, "md.raw.kraken", records, per=50, abort_every=7))
        raw = read_topic(boot, "md.raw.kraken")  # read committed
        assert len(raw) == len(records)
        ends = {p: max(m.offset for m in raw if m.partition == p) + 1 for p in {m.partition for m in raw}}
        run = GroupRun(servers, "txn-feed", 1, ("kraken",), tmp_path)
        w = run.start()
        try:
            deadline = time.monotonic() + run.wait_timeout
            while any(c < ends[p] for p, c in committed_offsets(boot, "txn-feed", "md.raw.kraken", set(ends)).items()):
                assert w.alive() and time.monotonic() < deadline, "the worker did not commit the last records"
                time.sleep(0.25)
        finally:
            run.stop_all()
        outcome = run.compare(expected("kraken", raw))
        assert outcome.exact, outcome
        log = run.log_text()
        assert "dead-lettered" not in log and "the stream resumed" not in log
    finally:
        servers.down()


async def _publish_in_transactions(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], per: int, abort_every: int
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"feed-{topic}")
    await producer.start()
    try:
        for n, i in enumerate(range(0, len(records), per)):
            chunk = records[i : i + per]
            if n % abort_every == abort_every - 1:
                await producer.begin_transaction()
                for key, value in chunk:
                    await producer.send(topic, value, key=key)
                await producer.abort_transaction()
            async with producer.transaction():
                for key, value in chunk:
                    await producer.send(topic, value, key=key)
    finally:
        await producer.stop()


def _log_time(log: str, text: str, after: float = 0.0) -> float:
    """The time (s since the epoch) of the first worker log line holding `text` logged after `after`."""
    for line in log.splitlines():
        t = line_time(line) if text in line else None
        if t is not None and t > after:
            return t
    raise AssertionError(f"no log line with {text!r} after {after}")


def _wait_for_line(w: WorkerProcess, pattern: str, timeout: float, count: int = 1) -> re.Match[str]:
    """Until the worker's log holds `count` matches of the regex `pattern`; the first of them."""
    deadline = time.monotonic() + timeout
    while len(found := list(re.finditer(pattern, w.log.read_text(errors="replace")))) < count:
        assert time.monotonic() < deadline and w.alive(), f"{count} x {pattern!r} not in {w.log} after {timeout} s"
        time.sleep(0.05)
    return found[0]


def _first_window_after(records: list[tuple[bytes, bytes]], cut: int) -> tuple[str, int]:
    """The symbol and event time of the first window the records from `cut` on emit."""
    pipe = VenuePipeline("kraken", Settings().window, max_bytes=Settings().max_record_bytes)
    for i, (key, value) in enumerate(records):
        windows, _ = pipe.process(key, value, 0, i)
        if i >= cut and windows:
            return windows[0].symbol, int(windows[0].ts)
    raise AssertionError("the tail emits no window")
