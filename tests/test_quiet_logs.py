"""The Kafka client libraries are quiet at a terminal unless `-v` (streams/logfilter.py
`quiet_libraries`, set up by `megatrading`'s main): no INFO chatter, no routine warnings. A broker of the
module's own: simulate --kafka writes md.raw.itch and md.news, which other modules count on theirs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.logfilter import PRODUCE_RETRY, quiet_libraries

CLIENT_LINE = re.compile(r" (DEBUG|INFO|WARNING|ERROR) (kafka|aiokafka|faust|mode)[.:]")


def simulate(lab, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "streams.cli", *flags, "simulate", "--kafka", "--bootstrap", lab.kafka.bootstrap,
            "--duration", "60s", "--symbols", "1", "--max", "--format", "itch"]  # fmt: skip
    env = {**os.environ, "MT_HOME": str(tmp_path)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def test_simulate_kafka_prints_no_client_library_lines(lab, tmp_path):
    done = simulate(lab, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("produced ")
    assert not CLIENT_LINE.findall(done.stderr), done.stderr


def test_verbose_shows_what_the_default_hides(lab, tmp_path):
    done = simulate(lab, tmp_path, "-v")
    assert done.returncode == 0, done.stderr
    assert re.search(r" INFO kafka\.", done.stderr), done.stderr[-2000:]


@pytest.fixture
def restored():
    yield
    quiet_libraries(verbose=True)  # back to inheriting, as before any main() ran


def test_routine_client_errors_are_dropped_and_the_others_kept(restored, caplog):
    quiet_libraries(verbose=False)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kafka.cluster").error("Topic %s not found in cluster metadata", "md.raw.x")
        logging.getLogger("kafka.cluster").error("Topic %s is not authorized for this client", "md.raw.y")
        logging.getLogger("kafka.conn").info("connected to %s", "broker")
        sender = logging.getLogger("kafka.producer.sender")
        for error in ("NotLeaderForPartitionError", "RequestTimedOutError"):
            sender.warning(PRODUCE_RETRY, "<Sender>", "tp", 9, error, "")
        selector = logging.getLogger("kafka.net.selector")  # as kafka-python 3 words them: pre-formatted
        selector.warning("Task <kafka.net.selector.Task object at 0x7f01> ran for 0.119s (>0.100s threshold). It "
                         "is blocking the event loop -- likely a tight sync loop inside a coroutine. Other pollers "
                         "will time out.")  # fmt: skip
        selector.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "<Task>")
    assert caplog.messages == [
        "Topic md.raw.y is not authorized for this client",
        "<Sender>: Got error produce response on topic-partition tp, retrying (9 attempts left): RequestTimedOutError",
        "Task <Task> left RUNNING after step; demoting to UNSCHEDULED",
    ]
    quiet_libraries(verbose=True)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kafka.cluster").error("Topic %s not found in cluster metadata", "md.raw.x")
    assert caplog.messages[-1] == "Topic md.raw.x not found in cluster metadata"
