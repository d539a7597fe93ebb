"""Shared fixtures. Real market data is read from ../shared/data, never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One torch (OpenMP) thread per test process, set before anything imports torch (OpenMP reads it once;
# a value given wins). make test runs two pytest processes on two cores beside Kafka, Redis and the
# workers they start, and torch's intra-op threads then spin against each other: test_anomaly_score's
# training fixture with two busy cores beside it took 206 s on torch's default two threads, 61 s on
# one (alone, 29 s and 27 s). fresh-ci had it at 64-126 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The Kafka brokers a test starts live seconds to minutes and carry little load: HotSpot's C2 compiler
# spends half such a broker's CPU on code it never pays back. C1 alone (the java launcher reads
# JDK_JAVA_OPTIONS; every JVM started below inherits it): a broker's CPU to healthy 4.47 -> 2.47 s, its
# start 2.66 -> 1.91 s (bench/infra_bench.py, 2026-12-06). Only tests:
# make demo's broker and the benchmarks' keep the JVM's defaults.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real captures (see their SOURCES.md); tests that need them skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data not found at {SHARED_DATA} (set MT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory):
    """A real Kafka broker and Redis on free loopback ports, once per test session."""
    from streams.infra import Infra

    servers = Infra.on_free_ports(tmp_path_factory.mktemp("infra"))
    servers.up()
    yield servers
    servers.down()


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A Kafka broker and a Redis for the test module alone: outages, kills and topics there
    disturb no other module."""
    from streams.infra import Infra

    servers = Infra.on_free_ports(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    servers.up()
    yield servers
    servers.down()


@pytest.fixture
def own_broker(tmp_path: Path):
    """A Kafka broker of the test's own, which it may stop and start again (same state dir: same
    data): outages injected there disturb no other test."""
    from streams.infra import KafkaServer, free_port

    kafka = KafkaServer(
        "kafka", tmp_path / "kafka", port=free_port(), controller_port=free_port(), owner_pid=os.getpid()
    )  # stops with this process even when a killed run skips the teardown
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture(scope="session")
def l2_trained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """(training set, folder holding `fine`): a tiny model finetuned on simulated ITCH flow and the head
    of a real Binance capture, for the post-hoc heads of L2 books."""
    import dataclasses
    from itertools import islice

    from model.sim.engine import SimConfig
    from model.training.dataset import build, capture_source, save, sim_source
    from model.training.train import train

    d = tmp_path_factory.mktemp("l2heads")
    real = capture_source("binance", shared_data / "binance-hftbacktest" / "spot_btcusdt_20240808.gz")
    real = dataclasses.replace(real, records=islice(real.records, 30_000))
    sim = sim_source(SimConfig(n_symbols=1, duration_ns=120 * 1_000_000_000, seed=5))
    path, _ = save(build([sim, real]), d / "train.npz")
    train("finetune", path, d / "fine", steps=6, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return path, d


@pytest.fixture(scope="session")
def l2_held(l2_trained: tuple[Path, Path], shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The heads of two instruments l2_trained's model never saw, encoded as it encodes (`dataset --like`)."""
    import gzip
    from itertools import islice

    from streams.cli import main

    _, d = l2_trained
    where = tmp_path_factory.mktemp("held")
    captures = []
    for name in ("cm_ethusd_perp_20240808.gz", "usdm_ethusdt_20240808.gz"):
        with (
            gzip.open(shared_data / "binance-hftbacktest" / name, "rt") as src,
            gzip.open(where / name, "wt") as dst,
        ):
            dst.writelines(islice(src, 5000))
        captures += ["--capture", f"binance:{where / name}"]
    assert main(["dataset", "--like", str(d / "fine"), *captures, "--out", str(where / "held.npz")]) == 0
    return where / "held.npz"
