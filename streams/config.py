"""Settings of every verb, one path: command-line flags over environment (`MT_*`) over a config file
over defaults.

- Flags: a parsed command line whose dests are `Settings` field names (`--bootstrap`, `--redis-url`,
  `--venues`, `--app-id`, `--model`, `--device`, `--worker-id`) override; `Settings.load(args)` applies
  them all, whatever the verb.
- Environment: `MT_<FIELD>` in capitals (`MT_REDIS_URL`, `MT_SNAPSHOT_EVERY`, ...), except
  `MT_KAFKA_BOOTSTRAP` for `bootstrap`; an empty variable counts as unset.
- Config file: TOML, from `--config FILE`, else `MT_CONFIG`, else `$MT_HOME/config.toml` where it
  exists. Its keys are the field names (`bootstrap = "kafka:9092"`, `venues = ["itch"]`, a `[window]`
  table for the WindowConfig fields); an unknown key is an error that names it.

State lives under one home, `MT_HOME` (default `~/.cache/megatrading`): the Kafka jars, the servers
of `megatrading infra`, the config file, and Faust's data folders (`faust/<app_id>`), never the
working directory.

The model: `baseline`, `generative:DIR`, or a checkpoint folder DIR (the same as `generative:DIR`);
by default the shipped model (`model/checkpoints/demo`) where torch is installed, else the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderbook.venues import FEEDS
from orderbook.windows import WindowConfig
from streams.batcher import OVERLOAD_POLICIES
from streams.topics import DLQ_TOPIC, FORECASTS_TOPIC

log = logging.getLogger(__name__)

DEFAULT_HOME = Path.home() / ".cache" / "megatrading"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "demo"


def mt_home(environ: Mapping[str, str] | None = None) -> Path:
    """The one folder for state: `MT_HOME`, else ~/.cache/megatrading."""
    env = os.environ if environ is None else environ
    return Path(env.get("MT_HOME") or DEFAULT_HOME).expanduser()


# ---- the model

MODEL_HELP = (
    "baseline | generative:CHECKPOINT_DIR | CHECKPOINT_DIR "
    "(default: the shipped model model/checkpoints/demo where torch is installed, else baseline)"
)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def default_model() -> str:
    """The shipped model where torch is installed (and the checkpoint is there), else the baseline."""
    if torch_installed() and (SHIPPED_MODEL / "model.safetensors").is_file():
        return f"generative:{SHIPPED_MODEL}"
    return "baseline"


def model_spec(text: str) -> str:
    """`baseline` or `generative:DIR`; a bare checkpoint folder DIR is `generative:DIR`, so every verb
    takes the same `--model`."""
    text = text.strip()
    if text == "baseline":
        return text
    if text.startswith("generative:"):
        if not text.removeprefix("generative:"):
            raise ValueError("model 'generative:' names no checkpoint folder: generative:CHECKPOINT_DIR")
        return text
    if Path(text).is_dir():
        return f"generative:{text}"
    raise ValueError(f"unknown model {text!r}: baseline, generative:CHECKPOINT_DIR or a checkpoint folder")


def checkpoint_of(spec: str) -> Path | None:
    """The checkpoint folder of a `generative:DIR` spec; None for the baseline."""
    return Path(spec.removeprefix("generative:")) if spec.startswith("generative:") else None


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def model_line(spec: str, device: str = "auto") -> str:
    """The one start-up line that says which model serves, on what, and why the baseline if it is."""
    folder = checkpoint_of(spec)
    if folder is not None:
        if not torch_installed():
            return f"model: generative:{_shown(folder)} (torch is not installed: pip install '.[model]')"
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return f"model: generative:{_shown(folder)} (torch {torch.__version__}, {device})"
    if not torch_installed():
        return "model: baseline (torch is not installed)"
    if not (SHIPPED_MODEL / "model.safetensors").is_file():
        return f"model: baseline (no checkpoint at {SHIPPED_MODEL})"
    return "model: baseline (set by --model, MT_MODEL or the config file)"


# ---- settings


@dataclass
class Settings:
    bootstrap: str = "127.0.0.1:9092"  # Kafka bootstrap servers, comma-separated
    redis_url: str = "redis://127.0.0.1:6379/0"  # where forecasts go (docs/design.md "Redis layout")
    venues: tuple[str, ...] = tuple(FEEDS)  # the venues a worker consumes, md.raw.<venue> each
    app_id: str = "megatrading"  # the Faust app id: the consumer group, the md.state keys' prefix
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")  # names its heartbeat
    # where forecasts and dead letters go: md.forecasts and md.dlq (docs/design.md); another name keeps two
    # deployments on one cluster (a shadow model beside the production one) from mixing their output
    forecasts_topic: str = FORECASTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    model: str = field(default_factory=default_model)  # baseline | generative:DIR | DIR
    device: str = "auto"  # the model's: auto (cuda where there is one), cpu, cuda
    window: WindowConfig = field(default_factory=WindowConfig)  # the windows' shapes: a [window] table
    # records per fetch, and per batch a venue's partitions handle together: a batch costs a few fixed
    # round trips (model, Redis, a transaction per partition), so under a backlog bigger batches carry
    # more (bench/pipeline_bench.py, native path: 68k messages/s at 2,000, 94k at 8,000, 130k at 20,000);
    # with no backlog a batch is whatever one fetch found, so this bounds throughput, not latency
    take_max: int = 20000
    max_batch: int = 256  # windows per model call
    max_wait: float = 0.005  # at most, seconds the batcher waits to fill a model batch (streams/batcher.py)
    # when the model falls behind (streams/batcher.py): `every` window scored, the lag grows in Kafka;
    # `latest`: the newest window per book scored, the ones it superseded skipped and counted
    overload: str = "every"
    max_record_bytes: int = 4 * 1024 * 1024  # a larger raw record is dead-lettered unread (`oversized`)
    max_produce_bytes: int = 16 << 20  # the broker's message.max.bytes: a state snapshot must fit
    buffer_records: int = 65536  # records fetched ahead per venue: the memory bound while an outage is waited out
    # a partition's state is snapshotted every N of its records or T seconds (the first reached), in the
    # transaction of the batch it ends: a restart replays at most that much (streams/snapshots.py)
    snapshot_every: int = 20000
    snapshot_seconds: float = 30.0
    # a partition's transactions start at most this often (seconds), each committing every batch done
    # since the last (streams/partition.py): off the forecasts' way to Redis, so it trades broker load
    # (a transaction is 4-5 requests and a marker per partition) against `md.forecasts` readers' delay
    # and the records a crash replays; Kafka Streams' exactly-once default is the same 100 ms
    commit_interval: float = 0.1
    restore_threads: int = 4  # partitions restored side by side
    # replicas of md.state when a worker creates it: 1 suits the embedded single broker; a
    # cluster wants as many as its other topics (a lost snapshot costs a full replay, not data)
    state_replication: int = 1
    alert_threshold: float = 0.99  # an anomaly score at or above it is an alert (mt:alerts; docs/alerts.md)
    # seconds an alert's window (its events and book series: mt:window:<venue>:<symbol>:<window>) stays in
    # Redis for the dashboard to show; 0: not written
    alert_window_ttl_s: int = 7 * 86_400
    # levels per side of each book published to mt:book:<venue>:<symbol> for the dashboard's ladder, once
    # per partition batch per book with a window in it; 0: not written
    book_levels: int = 10
    # drift per book (model/serving/drift.py, docs/design.md "Drift"): over the last `drift_windows`
    # windows of a book (0: not tracked), population-stability indices (`drift_bins` bins) of its
    # calibrated surprise and of its feature rows against its first `drift_reference` windows, and the
    # mean calibrated surprise (0.5 on the model's training flow). A book is drifting when a PSI passes
    # `drift_threshold` or the mean surprise `drift_surprise_level`, until every one is back under
    # `drift_moderate` / `drift_surprise_level_moderate`; its state follows the model's surprise where
    # the forecaster has one, the features where it has none (the baseline); `drift_skip`: features not
    # tracked (`mid` is a price level: it moves with the price, not the flow)
    drift_windows: int = 512
    drift_reference: int = 1024
    drift_bins: int = 10
    drift_moderate: float = 0.1
    drift_threshold: float = 0.25
    drift_surprise_level: float = 0.8
    drift_surprise_level_moderate: float = 0.7
    drift_skip: tuple[str, ...] = ("valid", "mid")
    session_timeout: float = 6.0  # a short session timeout keeps group joins quick
    # static group membership (KIP-345): a worker that comes back under the same id within the session
    # timeout gets its partitions back without a rebalance; "": dynamic (docs/recovery.md)
    group_instance_id: str = ""
    # the stall watchdog (streams/stall.py): a partition unmoved this many seconds with records waiting for it on
    # the broker, while no outage is waited out, restarts the worker in place; 0: off
    stall_s: float = 60.0
    web_port: int | None = None  # faust's web server; None: off (it would bind 0.0.0.0)
    # Prometheus /metrics (streams/metrics.py); None: off. A port already taken (a second worker on the
    # machine) is logged and the worker runs without it
    metrics_port: int | None = 9464
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for the compose Prometheus
    home: Path = field(default_factory=mt_home)  # MT_HOME only: the config file is found there

    def __post_init__(self) -> None:
        self.venues = tuple(self.venues)
        unknown = set(self.venues) - set(FEEDS)
        if unknown:
            raise ValueError(f"unknown venues {sorted(unknown)}; known: {', '.join(FEEDS)}")
        self.model = model_spec(self.model)
        if self.overload not in OVERLOAD_POLICIES:
            raise ValueError(f"overload {self.overload!r}: one of {', '.join(OVERLOAD_POLICIES)}")
        self.drift_skip = tuple(self.drift_skip)
        if self.drift_windows < 0 or self.drift_bins < 2 or self.drift_reference < self.drift_bins:
            raise ValueError("drift: drift_windows >= 0 (0: off), drift_bins >= 2, drift_reference >= drift_bins")
        if self.alert_window_ttl_s < 0:
            raise ValueError("alert_window_ttl_s >= 0 (0: alerts' windows are not written)")
        if self.book_levels < 0:
            raise ValueError("book_levels >= 0 (0: books' levels are not written)")
        if self.stall_s < 0:
            raise ValueError("stall_s >= 0 (0: no stall watchdog)")
        if not 0 < self.drift_moderate <= self.drift_threshold:
            raise ValueError("drift: 0 < drift_moderate <= drift_threshold")
        if not 0 < self.drift_surprise_level_moderate <= self.drift_surprise_level <= 1:
            raise ValueError("drift: 0 < drift_surprise_level_moderate <= drift_surprise_level <= 1")

    @property
    def faust_datadir(self) -> Path:
        """Faust's data folder for this app id (it would otherwise make `<app_id>-data/` in the working directory)."""
        return self.home / "faust" / self.app_id

    @classmethod
    def load(
        cls, flags: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Flags over environment over the config file over defaults. `flags`: parsed arguments (or a
        mapping) whose keys that name a field override when not None; its `config` names the file."""
        return cls.resolve(flags, environ)[0]

    @classmethod
    def resolve(
        cls, flags: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> tuple[Settings, dict[str, str]]:
        """`load`, and where each field's value came from (`megatrading config show`): `flag --x`,
        `env MT_X`, `config <path>` or `default`."""
        env = os.environ if environ is None else environ
        given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
        values: dict[str, Any] = {"home": mt_home(env)}
        sources = dict.fromkeys(FIELD_TYPES, "default")
        path = config_path(given.get("config"), env)
        if path is not None:
            from_file = read_config(path)
            values.update(from_file)
            sources.update(dict.fromkeys(from_file, f"config {path}"))
        for name, var in ENV_NAMES.items():
            if env.get(var):
                values[name] = _parse(name, env[var], var)
                sources[name] = f"env {var}"
        for name in FIELD_TYPES:
            if name != "home" and given.get(name) is not None:
                flag = "--" + name.replace("_", "-")
                values[name] = _parse(name, given[name], flag)
                sources[name] = f"flag {flag}"
        return cls(**values), sources


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Settings)
ENV_NAMES = {name: f"MT_{name.upper()}" for name in FIELD_TYPES if name != "window"} | {
    "bootstrap": "MT_KAFKA_BOOTSTRAP"
}
FILE_KEYS = tuple(name for name in FIELD_TYPES if name != "home")


def config_path(flag: str | Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """`--config`, else `MT_CONFIG` (either must exist), else `$MT_HOME/config.toml` if it exists."""
    env = os.environ if environ is None else environ
    named, source = (flag, "--config") if flag else (env.get("MT_CONFIG"), "MT_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ValueError(f"config file {path} ({source}) does not exist")
        return path
    path = mt_home(env) / "config.toml"
    return path if path.is_file() else None


def read_config(path: Path) -> dict[str, Any]:
    """The settings a TOML file gives, checked: an unknown key or a value of the wrong type is an error
    that names the file and the key."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {path}: {err}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "home":
            raise ValueError(f"config {path}: key 'home': set MT_HOME instead (the config file is found there)")
        if key not in FILE_KEYS:
            raise ValueError(f"config {path}: unknown key {key!r}; known: {', '.join(FILE_KEYS)}")
        values[key] = _parse(key, value, f"config {path}: {key}")
    return values


def _parse(name: str, value: Any, source: str) -> Any:
    """A field's value from a flag or variable (text) or a TOML value, as the field's type."""
    kind = FIELD_TYPES[name]
    if kind is WindowConfig:
        return _window(value, source)
    try:
        if isinstance(value, bool):
            raise TypeError
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == tuple[str, ...]:
            items = value.split(",") if isinstance(value, str) else list(value)
            if not all(isinstance(v, str) for v in items):
                raise TypeError
            return tuple(v.strip() for v in items if v.strip())
        if kind is Path:
            if not isinstance(value, str | Path):
                raise TypeError
            return Path(value).expanduser()
        if kind == int | None:
            return None if isinstance(value, str) and value.strip().lower() in ("", "none") else _int(value)
        if kind is int:
            return _int(value)
        if kind is float:
            if not isinstance(value, int | float | str):
                raise TypeError
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {value!r} is not a valid {name} ({_kind_name(kind)})") from None
    raise TypeError(f"no parser for setting {name} ({kind})")


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    raise TypeError


def _kind_name(kind: Any) -> str:
    if kind == tuple[str, ...]:
        return "comma-separated names or a list"
    if kind == int | None:
        return "an integer or none"
    return getattr(kind, "__name__", str(kind))


def _window(value: Any, source: str) -> WindowConfig:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: a table of WindowConfig fields, e.g. [window] n_events = 128")
    known = [f.name for f in dataclasses.fields(WindowConfig)]
    for key, item in value.items():
        if key not in known:
            raise ValueError(f"{source}: unknown key {key!r}; known: {', '.join(known)}")
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"{source}.{key}: {item!r} is not an integer")
    return WindowConfig(**value)
