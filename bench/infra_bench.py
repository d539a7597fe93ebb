"""How long a fresh embedded Kafka broker takes to answer a metadata request (streams/infra.py), side by side:

  storage tool, no archive   what every start cost before: `kafka-storage format` in a JVM of its own, then a
                             broker JVM that reads and verifies every class from the jars;
  template + class archive   the storage copied from the template the tool wrote once, and the broker's classes
                             mapped from the archive the first clean stop filed (AppCDS).

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


def linked_libs(where: Path) -> Path:
    """A jars folder of links to the cached jars: no template and no archive made beside it yet."""
    libs = where / "kafka" / "libs"
    libs.mkdir(parents=True)
    for jar in kafka_libs().iterdir():
        (libs / jar.name).symlink_to(jar)
    return libs


def time_start(state: Path, libs: Path, *, class_data: bool) -> float:
    broker = KafkaServer("kafka", state, port=free_port(), controller_port=free_port(), libs=libs,
                         class_data=class_data, owner_pid=os.getpid())  # fmt: skip
    began = time.perf_counter()
    broker.start()
    took = time.perf_counter() - began
    broker.stop()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="infra-bench-") as tmp:
        root = Path(tmp)
        shared = linked_libs(root / "shared")
        time_start(root / "warm", shared, class_data=True)  # writes the template and files the archive
        old: list[float] = []
        new: list[float] = []
        for i in range(args.rounds):
            old.append(time_start(root / f"old{i}", linked_libs(root / f"libs{i}"), class_data=False))
            new.append(time_start(root / f"new{i}", shared, class_data=True))
            print(f"round {i + 1}/{args.rounds}: {old[-1]:.2f} s / {new[-1]:.2f} s", file=sys.stderr)
    base, now = statistics.median(old), statistics.median(new)
    print_columns(
        ("a fresh broker, healthy after", "median s", "min s", "max s"),
        [
            ("storage tool, no archive", f"{base:.2f}", f"{min(old):.2f}", f"{max(old):.2f}"),
            ("template + class archive", f"{now:.2f}", f"{min(new):.2f}", f"{max(new):.2f}"),
        ],
    )
    print(f"\n{base / now:.2f}x faster to a healthy broker ({base - now:.2f} s less per start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
