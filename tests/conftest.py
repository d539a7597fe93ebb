"""Shared fixtures. Real market data is read from ../shared/data, never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
