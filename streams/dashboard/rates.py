"""Messages per second per venue, from the counts the workers publish with their heartbeats
(`messages:{worker}:{venue}` in `mt:meta`, streams/sink.py).

A worker's counts are absolute (since it started) and written in one HSET with its heartbeat time,
so each heartbeat is an exact reading (time, count) of that worker's own clock. The server keeps the
readings it saw in the last `window_s` seconds, per worker; a venue's rate is, summed over workers, the
count's increase over those readings divided by the time between the first and the last. Nothing is
guessed: until every live worker of a venue has two readings, the venue reads "measuring".

A count that went down, or a new `started:{worker}`, is a restarted worker counting from zero again:
the increase of that step is the new count (all of it came after the reading before), never a negative
number. A worker whose newest heartbeat is older than the window processes nothing anyone can see:
it adds 0 (the workers' table shows its heartbeat's age).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MEASURING = "measuring"


@dataclass(frozen=True)
class Reading:
    heartbeat_ns: int
    started: str  # the worker's `started:` field ("" where it publishes none)
    messages: Mapping[str, int]  # venue -> messages since the worker started


@dataclass
class _Worker:
    readings: deque[Reading] = field(default_factory=deque)


class MessageRates:
    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._workers: dict[str, _Worker] = {}

    def observe(self, workers: Iterable[Mapping[str, Any]], now_ns: int) -> dict[str, Any]:
        """Take the workers' current fields (`Store.meta`'s `workers`: `id`, `heartbeat`, `started`,
        `messages` as venue -> count) as readings; the rates as they stand after them."""
        horizon = now_ns - int(self.window_s * 1e9)
        seen = set()
        for w in workers:
            if "heartbeat" not in w or not w.get("messages"):
                continue  # a worker that publishes no counts (an older one) is not measured
            seen.add(w["id"])
            r = Reading(int(w["heartbeat"]), str(w.get("started", "")), {v: int(n) for v, n in w["messages"].items()})
            state = self._workers.setdefault(w["id"], _Worker())
            if not state.readings or r.heartbeat_ns > state.readings[-1].heartbeat_ns:
                state.readings.append(r)
            elif r.heartbeat_ns < state.readings[-1].heartbeat_ns:  # its clock went back: start over
                state.readings.clear()
                state.readings.append(r)
            while len(state.readings) > 1 and state.readings[0].heartbeat_ns < horizon:
                state.readings.popleft()
        for gone in set(self._workers) - seen:  # no longer in mt:meta (a reset): forgotten
            del self._workers[gone]
        return self._rates(horizon)

    def _rates(self, horizon: int) -> dict[str, Any]:
        increase: dict[str, float] = {}
        totals: dict[str, int] = {}
        measuring: set[str] = set()
        spans: list[float] = []
        for state in self._workers.values():
            readings = list(state.readings)
            last = readings[-1]
            for venue, n in last.messages.items():
                totals[venue] = totals.get(venue, 0) + n
            if last.heartbeat_ns < horizon:  # stale: nothing it processes is seen
                for venue in last.messages:
                    increase.setdefault(venue, 0.0)
                continue
            if len(readings) < 2:
                measuring.update(last.messages)
                continue
            span_s = (last.heartbeat_ns - readings[0].heartbeat_ns) / 1e9
            spans.append(span_s)
            for venue in last.messages:
                up = 0
                for a, b in itertools.pairwise(readings):
                    before, now = a.messages.get(venue, 0), b.messages.get(venue, 0)
                    restarted = now < before or a.started != b.started
                    up += now if restarted else now - before
                increase[venue] = increase.get(venue, 0.0) + up / span_s
        per_venue: dict[str, Any] = {}
        for venue in sorted(totals):
            rate: float | str = MEASURING if venue in measuring else round(increase.get(venue, 0.0), 1)
            per_venue[venue] = {"rate": rate, "messages": totals[venue]}
        return {
            "window_s": self.window_s,
            "span_s": round(max(spans), 3) if spans else None,
            "per_venue": per_venue,
        }
