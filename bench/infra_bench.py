"""How long a fresh embedded Kafka broker takes to answer a metadata request (streams/infra.py), side by side:

  storage tool, no archive   what every start cost before: `kafka-storage format` in a JVM of its own, then a
                             broker JVM that reads and verifies every class from the jars;
  template + class archive   the storage copied from the template the tool wrote once, and the broker's classes
                             mapped from the archive the first clean stop filed (AppCDS).

  + C1 alone                  as tests start theirs (tests/conftest.py sets JDK_JAVA_OPTIONS=-XX:TieredStopAtLevel=1):
                             HotSpot's C2 compiles code a broker living seconds to minutes never pays back.

Each round starts each kind once, on fresh state folders and free ports, and stops it. The baseline is given
a jars folder of its own (links to the cached jars) in each round, so the storage tool runs every time as it
did. The figures are medians over --rounds; nothing asserts a time. The test suite and the benchmarks start
dozens of brokers a run: this is most of what each costs before its first record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain script: the working tree, installed or not

from columns import print_columns  # noqa: E402

from streams.infra import KafkaServer, free_port, kafka_libs  # noqa: E402

TESTS_JVM = "-XX:TieredStopAtLevel=1"  # what tests/conftest.py gives every JVM a test starts


def linked_libs(where: Path) -> Path:
    """A jars folder of links to the cached jars: no template and no archive made beside it yet."""
    libs = where / "kafka" / "libs"
    libs.mkdir(parents=True)
    for jar in kafka_libs().iterdir():
        (libs / jar.name).symlink_to(jar)
    return libs


def jvm_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_start(state: Path, libs: Path, *, class_data: bool, jvm_options: str = "") -> tuple[float, float]:
    """(seconds to a healthy broker, the broker JVM's CPU seconds by then)."""
    broker = KafkaServer("kafka", state, port=free_port(), controller_port=free_port(), libs=libs,
                         class_data=class_data, owner_pid=os.getpid())  # fmt: skip
    saved = os.environ.pop("JDK_JAVA_OPTIONS", None)
    if jvm_options:
        os.environ["JDK_JAVA_OPTIONS"] = jvm_options
    try:
        began = time.perf_counter()
        broker.start()
        took = time.perf_counter() - began
        pid = broker.pid()
        cpu = jvm_cpu_s(pid) if pid is not None else float("nan")
        broker.stop()
    finally:
        os.environ.pop("JDK_JAVA_OPTIONS", None)
        if saved is not None:
            os.environ["JDK_JAVA_OPTIONS"] = saved
    return took, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="infra-bench-") as tmp:
        root = Path(tmp)
        shared = linked_libs(root / "shared")
        time_start(root / "warm", shared, class_data=True)  # writes the template and files the archive
        old: list[tuple[float, float]] = []
        new: list[tuple[float, float]] = []
        c1: list[tuple[float, float]] = []
        for i in range(args.rounds):
            old.append(time_start(root / f"old{i}", linked_libs(root / f"libs{i}"), class_data=False))
            new.append(time_start(root / f"new{i}", shared, class_data=True))
            c1.append(time_start(root / f"c1{i}", shared, class_data=True, jvm_options=TESTS_JVM))
            print(f"round {i + 1}/{args.rounds}: {old[-1][0]:.2f} s / {new[-1][0]:.2f} s / {c1[-1][0]:.2f} s",
                  file=sys.stderr)  # fmt: skip
    rows = []
    for name, runs in (("storage tool, no archive", old), ("template + class archive", new), ("  + C1 alone", c1)):
        walls = [w for w, _ in runs]
        rows.append((name, f"{statistics.median(walls):.2f}", f"{min(walls):.2f}", f"{max(walls):.2f}",
                     f"{statistics.median(c for _, c in runs):.2f}"))  # fmt: skip
    print_columns(("a fresh broker, healthy after", "median s", "min s", "max s", "JVM CPU s, median"), rows)
    base, now = statistics.median(w for w, _ in old), statistics.median(w for w, _ in new)
    print(f"\n{base / now:.2f}x faster to a healthy broker ({base - now:.2f} s less per start)")
    cpu_now, cpu_c1 = (statistics.median(c for _, c in runs) for runs in (new, c1))
    print(f"C1 alone: {cpu_now / cpu_c1:.2f}x less broker CPU to a healthy broker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
