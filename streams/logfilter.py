"""Rate-limited Kafka client logging: a broker outage must not flood the worker's log.

While a broker is away, kafka-python, aiokafka and faust's transport log the same failure at
every retry, from several threads and tasks: an outage of 30 s once wrote 55k lines (5.9 MB).
`RateLimit` lets the first record of a kind through, suppresses the ones that follow within
`interval` seconds, and appends to the next one let through "(N similar messages suppressed in
the last Xs)". A kind is (logger name, the message template before formatting): the same
template with other arguments (another node id, another errno) is the same kind. Records below
WARNING pass untouched. Thread-safe.

    install_rate_limits()  # once at start-up, after the client libraries are imported

A filter on a logger sees only the records logged on that very logger, never those its children
propagate to it, so `install_rate_limits` puts one shared filter on every logger that exists
under the client libraries' names ("kafka", "aiokafka", faust's transport), after importing the
modules that log during an outage (of the libraries this process has imported) so that their
loggers exist. Calling it again is harmless and
covers loggers created since (a module imported later).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable

LIMITED = ("kafka", "aiokafka", "faust.transport")

# the modules whose loggers report connection failures; imported so that their loggers exist
_LOUD_MODULES = (
    "kafka.net.manager", "kafka.net.connection", "kafka.net.transport", "kafka.cluster",
    "kafka.consumer.fetcher", "kafka.coordinator.base", "kafka.coordinator.consumer", "kafka.producer.sender",
    "kafka.producer.kafka", "kafka.admin.client",
    "aiokafka.client", "aiokafka.conn", "aiokafka.cluster", "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender", "aiokafka.producer.producer",
    "faust.transport.consumer", "faust.transport.producer", "faust.transport.conductor",
    "faust.transport.drivers.aiokafka",
)  # fmt: skip

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MAX_KEYS = 4096  # kinds remembered; past this, those whose interval is over are forgotten


def _template(record: logging.LogRecord) -> str:
    """The message before formatting. A message given already formatted (an f-string: kafka-python's
    "Bootstrap attempt to %s failed ... (backoff 0.42 secs)" is one) has its numbers masked, so that
    its retries are one kind."""
    msg = record.msg
    if not isinstance(msg, str):
        return f"<{type(msg).__name__}>"
    return msg if record.args else _NUMBER.sub("#", msg)


class RateLimit(logging.Filter):
    """Per (logger name, template): the first record passes, later ones within `interval` s are
    suppressed and counted; the first one after that passes with the count appended."""

    def __init__(self, per_key_interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = per_key_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], list[float | int]] = {}  # kind -> [time let through, suppressed since]
        self.suppressed = 0  # in all, since creation

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, _template(record))
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(key)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                self.suppressed += 1
                return False
            if seen is None and len(self._kinds) >= _MAX_KEYS:
                self._forget(now)
            self._kinds[key] = [now, 0]
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} ({seen[1]} similar messages suppressed in the last {now - seen[0]:.1f}s)"
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, (t, _) in self._kinds.items() if now - t >= self.interval]:
            del self._kinds[key]

    def pending(self) -> dict[tuple[str, str], int]:
        """Records suppressed since the last one of their kind let through, by kind (not yet reported)."""
        with self._lock:
            return {k: int(n) for k, (_, n) in self._kinds.items() if n}


_installed: RateLimit | None = None
_install_lock = threading.Lock()


def limited_loggers(prefixes: Iterable[str] = LIMITED) -> list[logging.Logger]:
    """The loggers that exist now under `prefixes` (the prefix loggers themselves included)."""
    prefixes = tuple(prefixes)
    names = [n for n in list(logging.root.manager.loggerDict)
             if any(n == p or n.startswith(p + ".") for p in prefixes)]  # fmt: skip
    loggers = [logging.getLogger(p) for p in prefixes]
    loggers += [lg for n in names if isinstance(lg := logging.root.manager.loggerDict[n], logging.Logger)]
    return list({id(lg): lg for lg in loggers}.values())


def install_rate_limits(interval: float = 10.0) -> None:
    """Put one shared `RateLimit(interval)` on every kafka-python, aiokafka and faust transport logger.
    Idempotent: a logger gets it once; a second call sets the interval and covers new loggers."""
    global _installed
    for name in _LOUD_MODULES:
        if name.partition(".")[0] not in sys.modules:  # a client library this process does not use
            continue
        with contextlib.suppress(ImportError):  # a module this version of the library lacks
            importlib.import_module(name)
    with _install_lock:
        if _installed is None:
            _installed = RateLimit(interval)
        _installed.interval = interval
        for lg in limited_loggers():
            if not any(isinstance(f, RateLimit) for f in lg.filters):
                lg.addFilter(_installed)


def installed_rate_limit() -> RateLimit | None:
    """The filter `install_rate_limits` put on the client loggers (its `suppressed` count, `pending()`)."""
    return _installed


def uninstall_rate_limits() -> None:
    """Take the filter off every logger again (tests)."""
    global _installed
    with _install_lock:
        if _installed is None:
            return
        for lg in limited_loggers():
            lg.removeFilter(_installed)
        _installed = None


# the client libraries' INFO is chatter to a person at a terminal (every connection, every group join,
# every metadata refresh); their WARNING and ERROR stay, rate-limited by `install_rate_limits`
CHATTY = ("kafka", "aiokafka", "faust", "mode")

# warnings and errors kafka-python logs in the ordinary course: a producer's first send to a topic that
# auto-creation makes (an ERROR, then the send succeeds), the produce retries while the new topic's
# leaders are elected, and the note that acks=1 turns idempotence off (publish.py's choice). A real
# failure of any ends in an exception the CLI reports in one line.
ROUTINE = {
    "kafka.cluster": ("Topic %s not found in cluster metadata",
                      "Topic %s is not available during auto-create initialization"),
    "kafka.producer.kafka": ("%s: Idempotence will be disabled because user-provided config conflicts with"
                             " idempotent defaults: %s",),
}  # fmt: skip
PRODUCE_RETRY = "%s: Got error produce response on topic-partition %s, retrying (%s attempts left): %s%s"
_ELECTING = ("NotLeaderForPartitionError", "LeaderNotAvailableError")
# kafka-python 3's own-loop diagnostic (kafka/net/selector.py, slow_task_threshold_secs 0.1): a step of its
# network thread took over 100 ms. On a loaded 2-core machine the GIL alone does that, and the send still
# succeeds; it is logged pre-formatted (the task's repr inside), so it is told by this part of its text
SLOW_STEP = ("kafka.net.selector", "It is blocking the event loop")


class Routine(logging.Filter):
    """Drops the records of ROUTINE (by logger and message template), the produce retries of a
    partition whose leader is being elected, and kafka-python's slow-step notes (SLOW_STEP)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == PRODUCE_RETRY and record.name == "kafka.producer.sender":
            return not (isinstance(record.args, tuple) and len(record.args) > 3 and record.args[3] in _ELECTING)
        if record.name == SLOW_STEP[0]:
            return not (isinstance(record.msg, str) and SLOW_STEP[1] in record.msg)
        return record.msg not in ROUTINE.get(record.name, ())


_routine = Routine()


def quiet_libraries(verbose: bool = False, prefixes: Iterable[str] = CHATTY) -> None:
    """The client libraries' loggers at WARNING without their ROUTINE records; when verbose, NOTSET
    (inherit: DEBUG under `-v`) with everything. A level on a prefix logger covers every logger under
    it that has none of its own; the filter goes on the very loggers that log ROUTINE records."""
    for name in prefixes:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    for name in (*ROUTINE, "kafka.producer.sender", SLOW_STEP[0]):
        logger = logging.getLogger(name)
        logger.removeFilter(_routine)
        if not verbose:
            # first: the rate limiter (`install_rate_limits`) rewrites a record's message, and a routine
            # record dropped here must not count towards its suppressed lines either
            logger.filters.insert(0, _routine)
