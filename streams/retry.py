"""Waiting out an outage: retry with capped exponential backoff, and say what is awaited.

A worker that meets a Redis or Kafka error does not crash and does not skip: it retries the
same step until it succeeds, while the agent that awaits it takes no new records (Faust's
buffers fill and fetching pauses: backpressure with bounded memory). `Waits` is what an
operator reads of that, in the progress line and in the first and every tenth failure's log
line: what is awaited, since when, how many attempts, the last error.

A backoff sleep ends early once what it waits for is known to be back (`Waits.wake`): another
step on the same server succeeded, or the worker's once-a-second heartbeat reached Redis again.
With the backoff at its 5 s cap, steps otherwise resumed up to 5 s after the server did (the fault
table's Redis outages: 2.9-4.2 s median to recover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Wait:
    what: str
    since: float  # time.monotonic() of the first failure
    attempts: int = 0
    error: str = ""


def step_kind(what: str) -> str:
    """A step's name without the partition or offsets it names ("restore of md.raw.itch[3]" ->
    "restore"): a bounded set, fit for a metric label."""
    return re.split(r" (?:of|for) | md\.| \[", what, maxsplit=1)[0]


_PARTITION = re.compile(r"md\.raw\.(\w+)\[(\d+)\]")


def where(what: str, **fields: object) -> dict[str, object]:
    """`extra=` of a waiting line: the step's kind, and the venue and partition where the step names one
    ("restore of md.raw.itch[3]"), as fields a log collector indexes (--log-format json)."""
    out: dict[str, object] = {"step": step_kind(what), "what": what}
    m = _PARTITION.search(what)
    if m:
        out.update(venue=m.group(1), topic=f"md.raw.{m.group(1)}", partition=int(m.group(2)))
    return out | fields


class Waits:
    """The outages the worker is waiting out right now, by name."""

    def __init__(self) -> None:
        self.now: dict[str, Wait] = {}
        self.total = 0  # failed attempts since start, all steps together
        self.failures: Counter[str] = Counter()  # failed attempts since start by step kind (`step_kind`)
        self._wake: dict[str, asyncio.Event] = {}  # what -> the event its backoff sleeps are cut short by
        self._sleeping: Counter[str] = Counter()  # what -> steps in `pause` for it (an event lives as long)

    def failed(self, what: str, err: BaseException) -> Wait:
        w = self.now.get(what)
        if w is None:
            w = self.now[what] = Wait(what, time.monotonic())
        w.attempts += 1
        w.error = f"{type(err).__name__}: {err}"[:300]
        self.total += 1
        self.failures[step_kind(what)] += 1
        return w

    def done(self, what: str) -> Wait | None:
        self.wake(what)  # the other steps waiting for the same thing retry now
        return self.now.pop(what, None)

    def wake(self, what: str) -> None:
        """`what` is back: every step sleeping out a backoff for it retries at once (on the event loop)."""
        event = self._wake.pop(what, None)
        if event is not None:
            event.set()

    async def pause(self, what: str, seconds: float) -> None:
        """A backoff sleep of a step waiting for `what`: `seconds`, or until `wake(what)`."""
        event = self._wake.setdefault(what, asyncio.Event())
        self._sleeping[what] += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        finally:  # also on cancellation: a partition revoked mid-outage leaves no event behind
            self._sleeping[what] -= 1
            if not self._sleeping[what]:
                del self._sleeping[what]
                if self._wake.get(what) is event:
                    del self._wake[what]

    def describe(self) -> str:
        t = time.monotonic()
        return "; ".join(f"{w.what} for {t - w.since:.0f} s ({w.attempts} tries, {w.error})" for w in self.now.values())


@dataclass(frozen=True)
class Backoff:
    first: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * 2 ** max(attempt - 1, 0))


async def until_done(
    step: Callable[[], Awaitable[T]],
    what: str,
    waits: Waits,
    *,
    backoff: Backoff = Backoff(),
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Run `step` until it returns; exceptions of `fatal` types go to the caller, any other is
    logged and retried after a backoff. Cancellation is never swallowed."""
    while True:
        try:
            result = await step()
        except asyncio.CancelledError:
            raise
        except fatal:
            waits.done(what)
            raise
        except Exception as err:
            w = waits.failed(what, err)
            if w.attempts == 1 or w.attempts % 10 == 0:
                log.warning("waiting for %s: %s (attempt %d, %.1f s so far); records wait meanwhile",
                            what, w.error, w.attempts, time.monotonic() - w.since,
                            extra=where(what, action="waiting", attempt=w.attempts, error=w.error,
                                        waited_s=round(time.monotonic() - w.since, 1)))  # fmt: skip
            await waits.pause(what, backoff.delay(w.attempts))
            continue
        w = waits.done(what)
        if w is not None:
            log.info("%s is back after %.1f s (%d failed attempts)", what, time.monotonic() - w.since, w.attempts,
                     extra=where(what, action="resumed", attempt=w.attempts,
                                 waited_s=round(time.monotonic() - w.since, 1)))  # fmt: skip
        return result
