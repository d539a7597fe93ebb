"""`megatrading adapt` (issue 13): fine-tuning a checkpoint on recent flow with a replay buffer into a new
versioned checkpoint (model/training/adapt.py, streams/cli/adapt.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.inputs import EncodingMismatch, encoding_fingerprint
from model.sim.anomalies import parse_anomalies
from model.sim.engine import SEC, FlowParams, SimConfig, default_symbols
from model.training.dataset import CheckpointEncoding, build, iter_sim_sources, save
from streams.cli import main

torch = pytest.importorskip("torch")

from model.network import checkpoint  # noqa: E402
from model.training.adapt import MixedSampler, adapt, subset, time_split  # noqa: E402
from model.training.train import TrainData, train  # noqa: E402

# one symbol for ten minutes: ~400 windows with anomalies and headlines, in about a second
REGIME_A = SimConfig(n_symbols=1, duration_ns=600 * SEC, anomaly_rates=parse_anomalies("all", 6.0), news_rate=12.0)
# what the parent never saw: a busier, thinner book traded in far larger orders
REGIME_B = replace(
    REGIME_A,
    flow=FlowParams(size_tail=1.6, size_max_lots=400, market_to_limit=0.3, resting_orders=60),
    symbols=default_symbols(1, (300_000, 300_000)),
)
FAST = {"batch": 8, "device": "cpu"}


def config_of(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.npz: regime A (seed 1, its own encoding); parent: a tiny model trained on it; replay.npz: regime A
    seed 2 and b.npz: regime B, both encoded like the parent."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("adapt")
    save(build(iter_sim_sources([1], REGIME_A)), d / "a.npz")
    train("finetune", d / "a.npz", d / "parent", steps=60, preset="tiny", lr=3e-3, checkpoint_every=1000, **FAST)
    like = CheckpointEncoding.of_checkpoint(d / "parent")
    save(build(iter_sim_sources([2], REGIME_A), like=like), d / "replay.npz")
    save(build(iter_sim_sources([3], REGIME_B), like=like), d / "b.npz")
    return d


def test_replay_fraction_is_the_share_of_every_batch_drawn_from_the_replay():
    sampler = MixedSampler(n_recent=100, n_replay=50, replay_fraction=0.25)
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sampler(rng, 32)
        assert (idx >= 100).sum() == 8 and idx.max() < 150 and idx.min() >= 0
    assert sampler.drawn.tolist() == [50 * 24, 50 * 8]
    # a share that is not a whole number of windows per batch is met on average
    odd = MixedSampler(n_recent=100, n_replay=50, replay_fraction=0.35)
    drawn = np.concatenate([odd(rng, 10) for _ in range(4000)])
    assert abs((drawn >= 100).mean() - 0.35) < 0.01


def test_tail_held_back_is_each_sources_latest_windows(lab):
    data = TrainData.load(lab / "b.npz")
    fit, tail = time_split(data, 0.25)
    assert len(fit) + len(tail) == len(data) and len(tail) == int(len(data) * 0.25)
    assert data.arrays["event_ts"][tail].min() >= data.arrays["event_ts"][fit].max()


def test_adapted_checkpoint_is_its_parents_version_plus_one_and_names_it(lab):
    first = adapt(lab / "parent", lab / "b.npz", lab / "replay.npz", lab / "v2", steps=4, **FAST)
    extra = config_of(lab / "v2")
    assert first.version == extra["version"] == 2
    parent = config_of(lab / "parent")
    assert extra["parent"] == {"path": str(lab / "parent"), "version": 1, "fingerprint": encoding_fingerprint(parent)}
    # the encoding is the parent's, so the next generation takes the same data and counts on
    assert encoding_fingerprint(extra) == encoding_fingerprint(parent)
    second = adapt(lab / "v2", lab / "b.npz", lab / "replay.npz", lab / "v3", steps=4, **FAST)
    assert second.version == config_of(lab / "v3")["version"] == 3
    assert config_of(lab / "v3")["parent"]["version"] == 2
    assert extra["adapt"]["drawn"] == {"recent": 8, "replay": 24}  # 4 steps of 8, the default 3/4 replayed
    # the recalibration is the parent's, bins and maps (adapt's default: refitting it is what forgot)
    models = {d: checkpoint.load(lab / d)[0] for d in ("parent", "v2")}
    assert torch.isfinite(models["parent"].recal_edges).any() and extra["adapt"]["recalibration"] == "keep"
    for buffer in ("recal_edges", "recal_coef"):
        assert torch.equal(getattr(models["v2"], buffer), getattr(models["parent"], buffer)), buffer
    assert extra["recalibration"] == {"kept": str(lab / "parent")}
    # asked to, it refits the maps in the parent's bins
    adapt(lab / "parent", lab / "b.npz", lab / "replay.npz", lab / "v2-maps", steps=4, recalibration="maps", **FAST)
    maps = checkpoint.load(lab / "v2-maps")[0]
    fitted = torch.isfinite(models["parent"].recal_edges).any(1)
    assert torch.equal(maps.recal_edges[fitted], models["parent"].recal_edges[fitted])
    assert not torch.equal(maps.recal_coef, models["parent"].recal_coef)


def test_adapting_on_a_shifted_regime_improves_the_parent_on_its_held_back_tail(lab):
    from model.evaluation.outputs import model_outputs

    run = adapt(lab / "parent", lab / "b.npz", lab / "replay.npz", lab / "shifted", steps=60, lr=3e-3,
                replay_fraction=0.25, holdback=0.3, **FAST)  # fmt: skip
    data = TrainData.load(lab / "b.npz")
    tail = subset(data, time_split(data, 0.3)[1])
    assert len(tail.arrays["seed"]) == run.details["recent"]["held_back"] > 50
    perplexity = {m: model_outputs(lab / m, tail.arrays, tail.meta, m).perplexity() for m in ("parent", "shifted")}
    assert perplexity["shifted"] < 0.5 * perplexity["parent"], perplexity  # the next events: a 4x drop measured
    # what the regime changed most is the order sizes: the traded volume's forecasts. Measured, CRPS at
    # 10 / 100 messages: -28% / -11%, and -20% / -5% once depth's loss was taken in its units (60 steps
    # of a tiny model: the margin at 100 messages moves with any change of the objective)
    crps = run.details["crps"]["recent_tail"]
    assert crps["after"]["volume_h10"] < 0.9 * crps["before"]["volume_h10"], crps
    assert crps["after"]["volume_h100"] < crps["before"]["volume_h100"], crps


def test_data_encoded_otherwise_is_refused_as_recent_or_replay(lab):
    with pytest.raises(EncodingMismatch):
        adapt(lab / "parent", _own_encoding(lab), None, lab / "no1", steps=1)
    with pytest.raises(EncodingMismatch):
        adapt(lab / "parent", lab / "b.npz", _own_encoding(lab), lab / "no2", steps=1)
    assert not (lab / "no1" / "config.json").exists() and not (lab / "no2" / "config.json").exists()


def _own_encoding(lab: Path) -> Path:
    """Regime B encoded with an encoding fitted on itself, not the parent's."""
    path = lab / "b_own.npz"
    if not path.is_file():
        save(build(iter_sim_sources([3], REGIME_B)), path)
    return path


def test_cli_adapts_end_to_end_and_reports_both_sides(lab, capsys):
    out = lab / "cli"
    argv = ["adapt", "--init", str(lab / "parent"), "--recent", str(lab / "b.npz"), "--replay",
            str(lab / "replay.npz"), "--out", str(out), "--steps", "3", "--batch", "8",
            "--replay-fraction", "0.5"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "version 2" in printed and "held-back recent tail" in printed and "replay data" in printed
    assert str(out) in printed
    extra = config_of(out)
    assert extra["version"] == 2 and extra["adapt"]["steps"] == 3 and extra["adapt"]["replay_fraction"] == 0.5
    # a recent file encoded otherwise stops the command with status 2, naming the fix
    refused = ["adapt", "--init", str(lab / "parent"), "--recent", str(_own_encoding(lab)), "--replay-fraction", "0",
               "--out", str(lab / "cli-refused")]  # fmt: skip
    assert main(refused) == 2
    assert "dataset --like" in capsys.readouterr().err


def test_kafka_arguments_are_parsed_and_checked_before_any_broker_is_asked(lab, capsys):
    from streams.cli.adapt import KafkaRecent, parse_recent, wall_ms

    assert parse_recent("kafka:itch") == KafkaRecent("itch")
    assert parse_recent("binance:x.gz") == ("binance", Path("x.gz"))
    now = 1_764_500_000_000
    assert wall_ms("90m", "--since", now) == now - 90 * 60_000
    assert wall_ms("2024-08-08T12:00:00Z", "--since", now) == 1_723_118_400_000
    assert wall_ms("2024-08-08T14:00:00+02:00", "--until", now) == 1_723_118_400_000
    base = ["adapt", "--init", str(lab / "parent"), "--out", str(lab / "kafka-refused")]
    assert main([*base, "--recent", "kafka:itch"]) == 2
    assert "needs --since" in capsys.readouterr().err
    assert main([*base, "--recent", str(lab / "b.npz"), "--since", "2h"]) == 2
    assert "kafka:VENUE only" in capsys.readouterr().err
    assert main([*base, "--recent", "kafka:itch", "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err


def test_a_kafka_time_range_is_read_back_exactly_and_adapted_on(lab, infra, tmp_path):
    """A simulated feed produced into a topic in two hours' stamps: each range reads back exactly its own
    records, and the windows adapt trains on equal those built from the same records in memory."""
    import time

    from kafka import KafkaProducer

    from model.training.dataset import Source, load
    from orderbook.frames import MAGIC, encode_frame
    from orderbook.venues.base import RawRecord
    from streams.cli.adapt import KafkaRecent, kafka_source, recent_dataset
    from streams.raw_range import Unframed, offset_ranges, read_range

    src = next(iter(iter_sim_sources([3], REGIME_B)))
    records = [RawRecord(r.key, r.value) for r in src.records]
    topic = f"md.raw.{src.venue}.adapt-{time.time_ns()}"  # the session broker's own topics stay as they are
    # stamped in the past: a broker refuses stamps over an hour ahead (log.message.timestamp.after.max.ms)
    hour = 3_600_000
    half, t0 = len(records) // 2, int(time.time() * 1000) - 3 * hour
    prod = KafkaProducer(bootstrap_servers=infra.kafka.bootstrap, acks="all", linger_ms=5, max_request_size=16 << 20)
    # the first hour one message a record, the second in frames of 7 (as `replay` sends), one broken frame
    sent = [(r.key, r.value) for r in records[:half]]
    runs: list[list[RawRecord]] = []  # consecutive messages of one key, at most 7 (orderbook.frames.Framer)
    for r in records[half:]:
        if runs and runs[-1][0].key == r.key and len(runs[-1]) < 7:
            runs[-1].append(r)
        else:
            runs.append([r])
    sent += [(run[0].key, encode_frame([r.value for r in run])) for run in runs]
    sent.append((records[-1].key, MAGIC + b"\x01"))
    for i, (key, value) in enumerate(sent):
        prod.send(topic, key=key, value=value, partition=0, timestamp_ms=t0 + i + (hour if i >= half else 0))
    prod.flush()
    prod.close()

    first = offset_ranges(infra.kafka.bootstrap, topic, t0, t0 + hour)
    assert [(r.key, r.value) for r in read_range(infra.kafka.bootstrap, topic, first)] == sent[:half]
    later = offset_ranges(infra.kafka.bootstrap, topic, t0 + hour)
    assert [(r.key, r.value) for r in read_range(infra.kafka.bootstrap, topic, later)] == sent[half:]
    unframed = Unframed(read_range(infra.kafka.bootstrap, topic, later), src.venue)
    assert list(unframed) == records[half:] and len(unframed.broken) == 1
    assert not any(r.records for r in offset_ranges(infra.kafka.bootstrap, topic, t0 + 2 * hour + len(sent)))

    item = KafkaRecent(src.venue)
    kafka = [kafka_source(item, infra.kafka.bootstrap, t0, t0 + 2 * hour, topic=topic)]
    npz, described = recent_dataset([item], lab / "parent", tmp_path, kafka)
    assert described["kafka"][0]["offsets"] == {"0": [0, len(sent)]}
    like = CheckpointEncoding.of_checkpoint(lab / "parent")
    want = build([Source("same records", src.venue, kafka[0][0].seed, iter(records))], like=like).arrays
    got = load(npz).arrays
    assert len(got["label"]) == len(want["label"]) > 100
    for key in ("kind", "side", "price", "size", "dt", "mask", "features", "row_mask", "spread_h10", "mid_h100"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    run = adapt(lab / "parent", npz, lab / "replay.npz", tmp_path / "v2", steps=2, recent_description=described,
                **FAST)  # fmt: skip
    assert config_of(run.out_dir)["adapt"]["recent"]["kafka"][0]["topic"] == topic
