"""The group membership watch: a worker whose consumer group never settles says so in its log.

Why: found with two live workers given one `group_instance_id` (static membership: a copied config
file or environment gives two hosts the same id), on Kafka 4.3 with aiokafka 0.14:
- started together, a join fails ("Unexpected error in join group ... UnknownError": the broker
  fences a duplicate instance id with an error aiokafka has no class for) and that worker is never
  assigned a partition nor finishes starting, with no further line (in one trial of three both
  were: 180 s with nothing committed, both processes up);
- one started beside a running one, each join replaces the other's member ("Heartbeat failed: local
  member_id was not recognized"): a rebalance every second, each side assigned every partition;
- on a loaded host (2026-12-03, CI) the same with rebalances a few seconds apart, fewer than FLAPS a
  minute, while each side's transactions fence the other's on the partitions both believe they hold;
- a worker already up whose rejoin or heartbeat the broker answers FENCED_INSTANCE_ID (error 82) stops:
  aiokafka pushes the error to the fetch, Faust crashes on it and the process exits (CI, 2026-12-03).
  Kafka's Java client treats the error as fatal too (a member that rejoined would take the id back and
  the two would fence each other for good). aiokafka 0.14 has no class for error 82 (aio-libs/aiokafka
  #1186), so its lines said "UnknownError"; `name_fenced_instance_id` registers one whose text says
  what happened.
None of these is a stall (streams/stall.py watches the partitions a worker holds), and nothing else in
the log said what is wrong. The watch does not depend on the cause: a dynamic member whose join never
completes, for whatever reason, gets the same line without the instance id.

Detection (`MembershipWatch`, pure, `unsettled`): no assignment at all (an empty one counts: a worker beyond the
partition count is assigned nothing, and that is settled) `join_s` after start; or `FLAPS` assignments
within `FLAP_WINDOW_S`, far above what workers joining one by one cause (one rebalance each); or
`FENCINGS` transactions fenced within `FLAP_WINDOW_S` on partitions the worker was still assigned
(`fenced`, from streams/partition.py): a partition that moves away fences its old owner once before the
revocation arrives, not again and again. Action: an
ERROR line, repeated every `join_s` while it lasts, naming the instance id where one is set, from a thread
of its own (`watch_membership`): a worker whose first join hangs never finishes starting, so none of its
Faust timers ever runs. No restart: two workers with one id would restart into the same collision; the
remedy is each worker its own id. The same state is a metric (streams/metrics.py:
`megatrading_group_unsettled`, `megatrading_group_rebalances`), served from before the first join
(`run_worker`), so a dashboard sees the hung worker too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from aiokafka import errors as kafka_errors

FLAPS = 20  # assignments within FLAP_WINDOW_S: a duplicate instance id rebalances about once a second
FLAP_WINDOW_S = 60.0
FENCINGS = 10  # fenced transactions within FLAP_WINDOW_S: a twin fences every partition every few seconds
JOIN_SESSIONS = 5  # join_s: this many session timeouts, at least MIN_JOIN_S
MIN_JOIN_S = 30.0
CHECK_S = 1.0
NO_ASSIGNMENT, FLAPPING, FENCED = "no_assignment", "flapping", "fenced"  # `unsettled`'s answers: the metric's reasons
REASONS = (NO_ASSIGNMENT, FLAPPING, FENCED)

log = logging.getLogger(__name__)


def join_limit(session_timeout_s: float) -> float:
    """How long a worker may go without any assignment before the watch reports it."""
    return max(MIN_JOIN_S, JOIN_SESSIONS * session_timeout_s)


class MembershipWatch:
    """Assignments and fencings as they come (`assigned`, `fenced`), and what is wrong, if anything (`problem`)."""

    def __init__(self, started: float, join_s: float, instance_id: str = "") -> None:
        self.started, self.join_s, self.instance_id = started, join_s, instance_id
        self.ever_assigned = False
        self.rebalances = 0  # assignments received since start
        self._recent: deque[float] = deque()  # assignment times within FLAP_WINDOW_S
        self._fencings: deque[float] = deque()  # times of transactions fenced within FLAP_WINDOW_S
        self._reported = -float("inf")
        self._lock = threading.Lock()  # assigned on the event loop, checked from the watch's thread

    def assigned(self, now: float) -> None:
        with self._lock:
            self.ever_assigned = True
            self.rebalances += 1
            self._recent.append(now)
            self._forget(now)

    def fenced(self, now: float) -> None:
        """A transaction of a partition still assigned to this worker was fenced by another producer."""
        with self._lock:
            self._fencings.append(now)
            self._forget(now)

    def unsettled(self, now: float) -> str | None:
        """NO_ASSIGNMENT, FLAPPING or FENCED while the group has not settled (module doc), else None."""
        with self._lock:
            return self._unsettled(now)

    def _unsettled(self, now: float) -> str | None:
        self._forget(now)
        if not self.ever_assigned and now - self.started >= self.join_s:
            return NO_ASSIGNMENT
        if len(self._recent) >= FLAPS:
            return FLAPPING
        return FENCED if len(self._fencings) >= FENCINGS else None

    def problem(self, now: float) -> str | None:
        """A line for the log when the group has not settled, at most one every join_s; else None."""
        with self._lock:
            return self._problem(now)

    def _problem(self, now: float) -> str | None:
        state = self._unsettled(now)
        if state is None:
            return None
        if state == NO_ASSIGNMENT:
            what = f"no partition assignment {now - self.started:.0f} s after start: the group join does not complete"
        elif state == FLAPPING:
            what = f"{len(self._recent)} rebalances in {FLAP_WINDOW_S:.0f} s: the group does not settle"
        else:
            what = (f"{len(self._fencings)} transactions fenced in {FLAP_WINDOW_S:.0f} s on partitions this worker "
                    "is assigned: another worker processes them too")  # fmt: skip
        if now - self._reported < self.join_s:
            return None
        self._reported = now
        if self.instance_id:
            return (f"{what}. group_instance_id is {self.instance_id!r}: if another live worker has it "
                    "too, each join fences the other; give every worker its own id (MT_GROUP_INSTANCE_ID)")  # fmt: skip
        return f"{what}. Is the broker's group coordinator up and answering?"

    def _forget(self, now: float) -> None:
        for times in (self._recent, self._fencings):
            while times and now - times[0] > FLAP_WINDOW_S:
                times.popleft()


def watch_membership(watch: MembershipWatch, group: str, stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread that logs `watch`'s problems (ERROR, `group` named) until `stop` is set, else for the
    life of the process."""
    stop = stop or threading.Event()

    def run() -> None:
        while not stop.wait(CHECK_S):
            if (problem := watch.problem(time.monotonic())) is not None:
                log.error("consumer group %s: %s", group, problem)

    thread = threading.Thread(target=run, name="membership-watch", daemon=True)
    thread.start()
    return thread


class FencedInstanceIdError(kafka_errors.BrokerResponseError):
    """FENCED_INSTANCE_ID: the broker gave this consumer's group.instance.id to a newer member."""

    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = ("another consumer registered with this consumer's group.instance.id: two live workers were "
                   "given one group_instance_id (MT_GROUP_INSTANCE_ID); give every worker its own")  # fmt: skip

    def __str__(self) -> str:  # aiokafka raises it without arguments: the text is the description
        return f"[Error {self.errno}] {type(self).__name__}: {self.description}"

    __repr__ = __str__


def name_fenced_instance_id() -> None:
    """Make aiokafka raise and log FencedInstanceIdError for error 82, not UnknownError (module doc)."""
    kafka_errors.kafka_errors.setdefault(FencedInstanceIdError.errno, FencedInstanceIdError)
