"""The `mt:forecasts` channel relayed to browsers as server-sent events, and the forecast rate it shows.

One Redis subscription for the whole server, fanned out to each connected page. Forecasts are sent in
batches (one SSE event every `flush` seconds, a JSON array of points): a busy feed publishes thousands
a second, and one event each would cost the browser more than drawing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

import redis
import redis.asyncio

from streams.dashboard import views
from streams.dashboard.store import Ticks
from streams.sink import CHANNEL

log = logging.getLogger(__name__)

QUEUE = 64  # batches a slow page may fall behind before it is told to reload its series


class Relay:
    def __init__(self, client: redis.asyncio.Redis, ticks: Ticks, flush: float = 0.25, rate_window: float = 10.0):
        self.redis = client
        self.ticks = ticks
        self.flush = flush
        self.rate_window = rate_window
        self.pages: set[asyncio.Queue[str]] = set()
        self.arrivals: deque[tuple[float, str]] = deque()  # (monotonic time, venue) of each forecast
        self.started = time.monotonic()
        self.received = 0
        self._lost = False  # Redis went away: pages reload once it is back
        self.ready = asyncio.Event()  # set once subscribed: a page told "hello" misses nothing after it

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(QUEUE)
        self.pages.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self.pages.discard(q)

    def rates(self) -> dict[str, Any]:
        """Forecasts per second per venue over the last `rate_window` seconds, as seen on the channel."""
        now = time.monotonic()
        while self.arrivals and self.arrivals[0][0] < now - self.rate_window:
            self.arrivals.popleft()
        span = min(self.rate_window, now - self.started) or 1.0
        per_venue: dict[str, float] = {}
        for _, venue in self.arrivals:
            per_venue[venue] = per_venue.get(venue, 0.0) + 1.0
        return {"window_s": round(span, 1), "per_venue": {v: round(n / span, 1) for v, n in per_venue.items()},
                "total": round(len(self.arrivals) / span, 1), "received": self.received}  # fmt: skip

    def _point(self, record: dict[str, Any]) -> dict[str, Any]:
        venue, symbol = str(record["venue"]), str(record["symbol"])
        self.ticks.see(venue, symbol, record)
        return views.point(record, self.ticks.units(venue, symbol))

    async def run(self) -> None:
        """Relay until cancelled; Redis going away is logged once and the subscription made again."""
        while True:
            try:
                await self._relay()
            except (redis.RedisError, OSError) as err:
                if not self._lost:
                    log.warning("the relay lost Redis (%s: %s); retrying every second", type(err).__name__, err)
                self._lost = True
                await asyncio.sleep(1.0)

    async def _relay(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        # Redis's confirmation: from here on every publish reaches this connection
        while (await pubsub.get_message(timeout=5.0) or {}).get("type") != "subscribe":
            pass
        self.ready.set()
        if self._lost:
            log.info("the relay has Redis back")
            self._send("reload")  # pages read what they missed from Redis
            self._lost = False
        batch: list[dict[str, Any]] = []
        next_flush = time.monotonic() + self.flush
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.flush)
                if msg is not None and msg["type"] == "message":
                    record = json.loads(msg["data"])
                    self.received += 1
                    self.arrivals.append((time.monotonic(), str(record["venue"])))
                    batch.append(self._point(record))
                if time.monotonic() >= next_flush:
                    if batch:
                        self._send(json.dumps(batch, separators=(",", ":")))
                        batch = []
                    next_flush = time.monotonic() + self.flush
        finally:
            await pubsub.aclose()

    def _send(self, data: str) -> None:
        for q in list(self.pages):
            if q.full():
                # the page fell behind: it drops its queue and reloads what it shows from Redis
                while not q.empty():
                    q.get_nowait()
                q.put_nowait("reload")
            else:
                q.put_nowait(data)
