"""The stall watchdog: a worker that has records to process and processes none restarts in place.

Why: after a broker outage, Faust's aiokafka consumer can keep its partitions and never fetch again
(faust-streaming#523, #175). test_faults' broker outage met it about once in eight runs: "Heartbeat
session expired - marking coordinator dead" as the broker came back, then four minutes with no
fetch, no rejoin and no error. The process stays up and its heartbeat in Redis goes on, so nothing
says that the worker has stopped working. Whatever the cause (that one, or a bug of ours that holds a
partition), the remedy that needs no diagnosis is the one whose exactness is already tested: start
again from the committed offsets and the last state snapshot.

Detection (`StallWatch`, pure): a partition whose position (the next offset the worker processes)
has not moved for `stall_s` is a candidate. It is not a candidate while it restores, and no partition
is one while the worker waits out an outage (streams/retry.py): those waits are by design and logged
as such, and each restarts the clock. A candidate is stalled only if the broker holds a record at or
after its position. `EndProbe` asks with a client of its own: the stalled consumer's high watermarks
come from its own fetches, and an end offset alone over-counts, because a transaction's commit
marker or an aborted batch takes offsets that no record the worker sees fills.

The same check reads the group's committed offset of each candidate. Below the position, with no
commit of ours waiting, it is a transaction whose offset commit never materialized: seen in about one
run in eight of test_faults' broker outage (Kafka 4.3, the broker stopped by SIGTERM),
`__transaction_state` said the transaction was complete while `__consumer_offsets` held its offset
commit without the commit marker, so the group read the offset before it. The forecasts were
published; only the offset lags, and it would stay so on a partition that gets no new record, a
restart then reading again (and publishing again) what was done. The partition commits its position
again (`Partition.recommit`: an empty transaction with the offset commit alone), no restart.

Action on a stall (`restart_in_place`): one ERROR line, then `os.execv` of the worker's own command
line. The pid stays the same, so a supervisor (compose's `restart:`), `make demo` or a test sees the
worker go on. For Kafka and Redis it is a crash, and the worker recovers from one exactly (test_faults'
SIGKILL test; the restart is tested there too, on a stall armed with a failpoint, streams/failpoints.py).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from streams.offsets import committed
from streams.topics import RAW_ISOLATION

log = logging.getLogger(__name__)

PROBE_WAIT_S = 5.0  # at most, how long the probe reads a partition (a fetch or two, not a stream)
PROBE_TIMEOUT_S = 60.0  # a whole probe longer than this is given up (its thread may hang on) and retried
RESTARTS_ENV = "MT_STALL_RESTARTS"  # restarts in place so far, carried across the exec for the log


@dataclass(frozen=True)
class Idle:
    """A partition whose position has not moved for `seconds`."""

    key: tuple[str, int]  # topic, partition
    position: int
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.key[0]}[{self.key[1]}]"


class StallWatch:
    """Which partitions' positions have stood still for `stall_s` seconds (module docstring)."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._seen: dict[tuple[str, int], tuple[int | None, float]] = {}  # key -> (position, unmoved since)

    def idle(self, now: float, positions: Mapping[tuple[str, int], int | None], excused: bool) -> list[Idle]:
        """The candidates among `positions` (None: restoring, never one); `excused` (an outage being
        waited out) restarts every clock. Partitions no longer given are forgotten."""
        seen: dict[tuple[str, int], tuple[int | None, float]] = {}
        out = []
        for key, position in positions.items():
            prev = self._seen.get(key)
            unmoved = prev is not None and prev[0] == position and position is not None and not excused
            since = prev[1] if unmoved else now  # type: ignore[index]
            seen[key] = (position, since)
            if position is not None and now - since >= self.stall_s:
                out.append(Idle(key, position, now - since))
        self._seen = seen
        return out

    def cleared(self, key: tuple[str, int], now: float) -> None:
        """`key` was probed and holds nothing to process (or could not be asked): its clock restarts."""
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], now)


class EndProbe:
    """Whether the broker holds a record at or after a partition's position, read by a consumer of the
    probe's own (no group: it joins nothing), with the worker consumer's isolation level."""

    def __init__(self, bootstrap: str, isolation_level: str = RAW_ISOLATION) -> None:
        self.bootstrap, self.isolation_level = bootstrap, isolation_level
        self._consumer: KafkaConsumer | None = None

    def pending(self, positions: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], bool]:
        """Per partition: a record at or after its position exists. Blocking (run it in a thread);
        raises kafka's errors where the broker cannot be asked."""
        if self._consumer is None:
            # earliest: a position below the log's start (retention) reads its first record
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                           isolation_level=self.isolation_level, auto_offset_reset="earliest",
                                           request_timeout_ms=15000)  # fmt: skip
        c = self._consumer
        ends = c.end_offsets([TopicPartition(*key) for key in positions])
        out = {}
        for key, pos in positions.items():
            tp = TopicPartition(*key)
            out[key] = False
            if ends.get(tp, 0) <= pos:
                continue
            c.assign([tp])
            c.seek(tp, pos)
            # short polls until a record comes or the position passes the end: past a caught-up position of a
            # transactional feed lies only a commit marker, so one long poll would wait its whole timeout
            deadline = time.monotonic() + PROBE_WAIT_S
            while c.position(tp) < ends[tp] and time.monotonic() < deadline:
                if any(r.offset >= pos for r in c.poll(timeout_ms=10, max_records=1).get(tp, [])):
                    out[key] = True
                    break
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def group_offsets(bootstrap: str, group: str, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offset of each (topic, partition) (0 where none). Blocking."""
    by_topic: dict[str, set[int]] = defaultdict(set)
    for topic, partition in keys:
        by_topic[topic].add(partition)
    return {(t, p): c.offset for t, ps in by_topic.items() for p, c in committed(bootstrap, group, t, ps).items()}


def describe_stall(stalled: list[Idle]) -> str:
    parts = ", ".join(f"{s.name} at offset {s.position} for {s.seconds:.0f} s" for s in stalled)
    return f"records wait on the broker and none is processed: {parts}, with no outage being waited out"


def restart_in_place(why: str) -> None:
    """Log `why`, then replace this process with a fresh run of its own command line (same pid and
    environment; open files and sockets close on exec, Python opens them non-inheritable)."""
    restarts = int(os.environ.get(RESTARTS_ENV, "0")) + 1
    log.error("STALLED: %s; restarting the worker in place (restart %d since it was started): it resumes from "
              "the committed offsets and the last state snapshots, as after a crash", why, restarts)  # fmt: skip
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[RESTARTS_ENV] = str(restarts)
    os.execv(sys.executable, sys.orig_argv)
