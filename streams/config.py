"""Worker settings: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from orderbook.venues import FEEDS
from orderbook.windows import WindowConfig


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass
class Settings:
    bootstrap: str = field(default_factory=lambda: _env("MT_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    redis_url: str = field(default_factory=lambda: _env("MT_REDIS_URL", "redis://127.0.0.1:6379/0"))
    venues: tuple[str, ...] = field(
        default_factory=lambda: tuple(v for v in _env("MT_VENUES", ",".join(FEEDS)).split(",") if v)
    )
    app_id: str = field(default_factory=lambda: _env("MT_APP_ID", "megatrading"))
    worker_id: str = field(default_factory=lambda: _env("MT_WORKER_ID", f"{socket.gethostname()}-{os.getpid()}"))
    # where forecasts and dead letters go: md.forecasts and md.dlq (DESIGN.md); another name keeps two
    # deployments on one cluster (a shadow model beside the production one) from mixing their output
    forecasts_topic: str = field(default_factory=lambda: _env("MT_FORECASTS_TOPIC", "md.forecasts"))
    dlq_topic: str = field(default_factory=lambda: _env("MT_DLQ_TOPIC", "md.dlq"))
    model: str = field(default_factory=lambda: _env("MT_MODEL", "baseline"))
    device: str = field(default_factory=lambda: _env("MT_DEVICE", "auto"))
    window: WindowConfig = field(default_factory=WindowConfig)
    take_max: int = 2000  # records per agent batch
    take_within: float = 0.01  # seconds an agent waits to fill a batch: part of every latency
    max_batch: int = 256  # windows per model call
    max_wait: float = 0.005  # seconds the batcher waits to fill a model batch
    max_record_bytes: int = 4 * 1024 * 1024
    max_produce_bytes: int = 16 << 20  # the broker's message.max.bytes: a state snapshot must fit
    buffer_records: int = 65536  # records Faust buffers per stream: the memory bound while an outage is waited out
    # a partition's state is snapshotted every N of its records or T seconds (the first reached), in the
    # transaction of the batch it ends: a restart replays at most that much (streams/snapshots.py)
    snapshot_every: int = field(default_factory=lambda: int(_env("MT_SNAPSHOT_EVERY", "20000")))
    snapshot_seconds: float = field(default_factory=lambda: float(_env("MT_SNAPSHOT_SECONDS", "30")))
    restore_threads: int = 4  # partitions restored side by side
    # replicas of md.state when a worker creates it: 1 suits the embedded single broker; a
    # cluster wants as many as its other topics (a lost snapshot costs a full replay, not data)
    state_replication: int = field(default_factory=lambda: int(_env("MT_STATE_REPLICATION", "1")))
    alert_threshold: float = 0.99
    session_timeout: float = 6.0  # a short session timeout keeps group joins quick
    web_port: int | None = None  # faust's web server; None: off (it would bind 0.0.0.0)

    def __post_init__(self) -> None:
        unknown = set(self.venues) - set(FEEDS)
        if unknown:
            raise ValueError(f"unknown venues {sorted(unknown)}; known: {', '.join(FEEDS)}")
