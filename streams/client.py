"""Read what the workers publish: the latest forecast, history since a time, alerts as they come.

from streams.client import ForecastClient
c = ForecastClient("redis://127.0.0.1:6379/0")
c.latest("binance", "BTCUSDT")            # dict, typed values, or None
c.history("binance", "BTCUSDT", since_ns=t)  # oldest first
for alert in c.watch_alerts(): ...          # blocks; alerts as they are written
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from model.serving.forecaster import RECORD_FIELDS
from streams.sink import ALERTS, HIST, LATEST

_INT_FIELDS = frozenset({"event_ts", "emitted_ts", "seq", "window", "best_bid", "best_ask", "news_ts", "schema"})
_STR_FIELDS = frozenset({"venue", "symbol", "model", "reason"})


def parse(raw: dict[bytes, bytes] | dict[str, str]) -> dict[str, object]:
    """Redis strings back to typed values, in the published field order."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}  # fmt: skip
    out: dict[str, object] = {}
    for k in [*RECORD_FIELDS, *sorted(set(text) - set(RECORD_FIELDS))]:
        if k not in text:
            continue
        v = text[k]
        out[k] = v if k in _STR_FIELDS else int(v) if k in _INT_FIELDS else float(v)
    return out


class ForecastClient:
    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        self.redis = redis.Redis.from_url(url)

    def symbols(self) -> list[tuple[str, str]]:
        """(venue, symbol) of every book with a forecast."""
        out = []
        for key in self.redis.scan_iter(match=LATEST.format(venue="*", symbol="*"), count=1000):
            _, _, venue, symbol = key.decode().split(":", 3)
            out.append((venue, symbol))
        return sorted(out)

    def latest(self, venue: str, symbol: str) -> dict[str, object] | None:
        raw = self.redis.hgetall(LATEST.format(venue=venue, symbol=symbol))
        return parse(raw) if raw else None

    def history(
        self, venue: str, symbol: str, since_ns: int | None = None, count: int | None = None
    ) -> list[dict[str, object]]:
        """Forecasts whose event time is at or after `since_ns`, oldest first."""
        entries = self.redis.xrange(HIST.format(venue=venue, symbol=symbol), count=count)
        rows = [parse(fields) for _, fields in entries]
        if since_ns is not None:
            rows = [r for r in rows if int(r["event_ts"]) >= since_ns]  # type: ignore[call-overload]
        return rows

    def alerts(self, count: int = 100) -> list[dict[str, object]]:
        """The newest `count` alerts, oldest first."""
        return [parse(f) for _, f in reversed(self.redis.xrevrange(ALERTS, count=count))]

    def alert_count(self) -> int:
        """How many alerts mt:alerts holds (the stream's length, whatever its trim has kept)."""
        return int(self.redis.xlen(ALERTS))

    def watch_alerts(self, block_ms: int = 1000, last_id: str = "$") -> Iterator[dict[str, object]]:
        """Alerts written after this call (or after `last_id`); yields as they arrive.

        "$" is resolved to the stream's newest id here, at the call, not at each blocking read:
        re-reading from "$" would drop every alert written between one read's return and the next.
        """
        if last_id == "$":
            newest = self.redis.xrevrange(ALERTS, count=1)
            last_id = newest[0][0].decode() if newest else "0-0"
        return self._alerts_after(last_id, block_ms)

    def _alerts_after(self, last_id: str, block_ms: int) -> Iterator[dict[str, object]]:
        while True:
            reply = self.redis.xread({ALERTS: last_id}, block=block_ms, count=100)
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    yield parse(fields)
