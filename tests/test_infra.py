"""The embedded default: real servers, started and stopped by the project's own code."""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.cli import main
from streams.infra import free_port

REPO = Path(__file__).resolve().parents[1]


def test_kafka_round_trips_a_record(infra):
    producer = KafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    producer.send("t.infra", key=b"AAPL", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=infra.kafka.bootstrap, consumer_timeout_ms=10000)
    parts = [TopicPartition("t.infra", p) for p in consumer.partitions_for_topic("t.infra")]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    values = [next(consumer).value]  # StopIteration after 10 s without it
    values += [m.value for batch in consumer.poll(timeout_ms=500).values() for m in batch]  # nothing after it
    consumer.close()
    assert values == [b"hello"]


def test_redis_answers(infra):
    r = redis.Redis.from_url(infra.redis.url)
    r.set("mt:test", "1")
    assert r.get("mt:test") == b"1"


def test_status_reports_both_healthy(infra, capsys):
    state = str(infra.state)
    rc = main(
        [
            "infra",
            "status",
            "--state",
            state,
            "--kafka-port",
            str(infra.kafka.port),
            "--controller-port",
            str(infra.kafka.controller_port),
            "--redis-port",
            str(infra.redis.port),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("healthy") == 2


def test_down_stops_only_what_up_started(tmp_path):
    from streams.infra import Infra

    other = Infra.on_free_ports(tmp_path)
    other.redis.start()
    pid = other.redis.pid()
    assert pid is not None
    assert other.down() == ["redis"]  # kafka was never started here: nothing else is touched
    assert other.redis.pid() is None and not other.redis.healthy()


def test_reachable_servers_pass_the_pre_checks_at_once(infra):
    from streams.infra import reach_kafka, reach_redis

    t0 = time.monotonic()
    reach_kafka(f"127.0.0.1:{free_port()},{infra.kafka.bootstrap}")  # one bootstrap server answering is enough
    reach_redis(infra.redis.url)
    assert time.monotonic() - t0 < 2


def test_bootstrap_servers_parse_as_kafka_writes_them():
    from streams.infra import _host_port

    assert _host_port("kafka:9092", 9092) == ("kafka", 9092)
    assert _host_port(" PLAINTEXT://10.0.0.1:9094", 9092) == ("10.0.0.1", 9094)
    assert _host_port("[::1]:9095", 9092) == ("::1", 9095)
    assert _host_port("broker", 9092) == ("broker", 9092)


def test_cluster_ids_never_begin_with_a_dash(monkeypatch):
    """The storage tool reads an id that begins with "-" as an option and fails (1 start in 64)."""
    import uuid

    from streams import infra as infra_mod

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # url-safe base64 "-A..."
    ids = iter([dash_first, uuid.UUID(int=7)])
    monkeypatch.setattr(infra_mod.uuid, "uuid4", lambda: next(ids))
    cid = infra_mod.cluster_id()
    assert not cid.startswith("-") and len(cid) == 22


OWNER = """
import json, sys, time
from pathlib import Path
from streams.infra import Infra

servers = Infra.on_free_ports(Path(sys.argv[1]))
servers.up()
print(json.dumps({"pids": [servers.kafka.pid(), servers.redis.pid()],
                  "ports": [servers.kafka.port, servers.kafka.controller_port, servers.redis.port]}), flush=True)
time.sleep(600)
"""


def _watchers_of(server_pid: int) -> list[int]:
    """Live owner-watch processes of a server, found in /proc by their command line, not by our bookkeeping."""
    from streams.infra import WATCHER, _pid_alive

    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if WATCHER in args and str(server_pid) in args and _pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _is_server(pid: int) -> bool:
    """Whether `pid` runs a Kafka broker or a Redis server (by its command line)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "redis-server" in args or "kafka.Kafka" in args


def _wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
    return True


def test_servers_of_a_test_session_die_with_it_even_by_sigkill(tmp_path):
    """A CI timeout SIGKILLs pytest: no teardown runs, and the broker and Redis must not outlive it."""
    from streams.infra import _pid_alive, port_open

    log = tmp_path / "owner.log"
    with open(log, "wb") as err:
        owner = subprocess.Popen(
            [sys.executable, "-c", OWNER, str(tmp_path / "servers")],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdout=subprocess.PIPE,
            stderr=err,
        )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        ready, _, _ = select.select([owner.stdout], [], [], 150)
        line = owner.stdout.readline() if ready else b""
        assert line, f"the owner did not bring its servers up: {log.read_text(errors='replace')[-3000:]}"
        started = json.loads(line)
        pids, ports = started["pids"], started["ports"]
        watchers = [w for pid in pids for w in _watchers_of(pid)]
        assert len(watchers) == 2, "one watcher a server"
        owner.kill()
        owner.wait()
        t0 = time.monotonic()
        assert _wait_until(lambda: not any(_pid_alive(p) for p in pids + watchers), 30), "servers outlived the owner"
        assert not any(port_open(p) for p in ports)
        assert time.monotonic() - t0 < 30
    finally:
        owner.kill()
        owner.wait()
        for pid in pids:  # never leak a broker on a 2-core machine, whatever failed above
            if _pid_alive(pid) and _is_server(pid):  # a pid gone may be reused: never signal another's process
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def test_down_stops_and_reaps_the_watcher(tmp_path):
    from streams.infra import Infra

    servers = Infra.on_free_ports(tmp_path)
    servers.redis.start()
    pid = servers.redis.pid()
    watcher = servers.redis._watcher
    assert pid is not None and watcher is not None
    # Once failed on CI (no watcher in /proc, not reproduced in 80 local runs, under load too): say what
    # became of it. The watcher writes why it exits to the server's log.
    assert len(_watchers_of(pid)) == 1, (
        f"watcher pid {watcher.pid} exit status {watcher.poll()}; redis log:\n"
        + servers.redis.log_file.read_text(errors="replace")[-2000:]
    )
    assert servers.down() == ["redis"]
    assert watcher.returncode is not None  # reaped, not a zombie
    assert _watchers_of(pid) == []


def test_infra_up_servers_outlive_the_command(tmp_path):
    """What operators start with `megatrading infra up` runs on after the command exits: no watcher."""
    from streams.infra import _pid_alive

    state = tmp_path / "state"
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()), "--redis-port", str(free_port())]
    try:
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "infra", "up", "--state", str(state), *ports],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            check=True,
            timeout=150,
            capture_output=True,
        )
        pids = [int((state / f"{name}.pid").read_text()) for name in ("kafka", "redis")]
        time.sleep(2.5)  # more than a watcher's poll: one would have acted by now
        assert all(_pid_alive(p) for p in pids)
        assert [w for p in pids for w in _watchers_of(p)] == []
    finally:
        main(["infra", "down", "--state", str(state)])  # never leak a broker, whatever failed above


def test_brokers_share_one_formatted_template_and_class_archive_but_not_their_ids(tmp_path):
    """The storage tool runs once per set of jars and the first clean stop files the class-data archive;
    each broker still gets a cluster id of its own, and the JVM maps the archive (it logs a `cds` warning
    for one it refuses, e.g. written by another Java build). A damaged archive costs one start, not all."""
    from streams.infra import KafkaServer, class_archive, kafka_libs

    libs = tmp_path / "kafka" / "libs"  # a cache of this test's own: the template and archive are made here
    libs.mkdir(parents=True)
    for jar in kafka_libs().iterdir():
        (libs / jar.name).symlink_to(jar)
    brokers = []
    for name in ("first", "second"):
        broker = KafkaServer(name, tmp_path / name, port=free_port(), controller_port=free_port(),
                             libs=libs, owner_pid=os.getpid())  # fmt: skip
        broker.start()
        broker.stop()
        brokers.append(broker)
        assert class_archive(libs).is_file(), "the first clean stop files the archive"
    first, second = ([line for line in (b.state / "kafka-data" / "meta.properties").read_text().splitlines()
                      if line.startswith(("cluster.id=", "directory.id="))] for b in brokers)  # fmt: skip
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    assert len(list((tmp_path / "kafka").glob("formatted-*"))) == 1
    assert "cds" not in brokers[1].log_file.read_text()
    assert not (brokers[1].state / class_archive(libs).name).exists()

    archive = class_archive(libs)
    cut = 100_000
    archive.write_bytes(archive.read_bytes()[:cut])  # cut short: the JVM aborts on it
    third = KafkaServer("third", tmp_path / "third", port=free_port(), controller_port=free_port(),
                        libs=libs, owner_pid=os.getpid())  # fmt: skip
    third.start()
    assert third.healthy()
    third.stop()
    assert archive.stat().st_size > cut, "started without the damaged archive, which its stop wrote anew"


def test_free_port_never_gives_one_port_twice_even_when_the_kernel_does(monkeypatch):
    """The kernel may hand out a port just closed again: a broker's two listeners picked one after the other
    then got one port and the broker exited at start-up (fresh-ci, 2026-12-07)."""
    import types

    import streams.infra as infra_module

    ports = iter([40001, 40001, 40001, 40002, 40001, 40003])

    class Socket:  # what the kernel answers a bind to port 0, scripted
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def bind(self, address):
            self.port = next(ports)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(infra_module, "_GIVEN", set())
    monkeypatch.setattr(infra_module, "socket", types.SimpleNamespace(socket=Socket))
    assert [free_port(), free_port(), free_port()] == [40001, 40002, 40003]
