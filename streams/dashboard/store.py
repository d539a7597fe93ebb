"""What the page reads from Redis (docs/design.md, "Redis layout"), on the server's event loop.

Every answer is read at the request: the page shows Redis as it is, and the one cache kept here is
each inferred-tick book's running gcd of prices (orderbook.features.infer_tick, fed record by record),
so that live points and history points of a book use one tick.
"""

from __future__ import annotations

import json
import time
from math import gcd
from typing import Any

import redis.asyncio

from orderbook.venues import fixed_tick
from streams.client import parse
from streams.dashboard import views
from streams.dashboard.units import Units, units_for
from streams.sink import ALERTS, BOOK, HIST, LATENCY_FIELDS, LATEST, META, WINDOW, count_field

# `<field>:<worker id>` in mt:meta
WORKER_FIELDS = ("heartbeat", "skipped", "model", "swapped", "swap_error", "started", "device", *LATENCY_FIELDS)
LIVE_S = 10.0  # a worker whose heartbeat is older counts in no total: it is gone, or cannot reach Redis
NOT_KEPT = "n/a"  # resyncs of a venue whose books have no sync state to lose (ITCH, LOBSTER)


def dead_letters(workers: list[dict[str, Any]], live_s: float = LIVE_S) -> dict[str, Any]:
    """Messages dead-lettered, per reason and venue, summed over the live workers' counts since each
    started (`dlq:<worker>:<venue>:<reason>`, absolute values: a restarted worker's count is its new one,
    counted from zero again; a repeated heartbeat adds nothing). `workers`: `Store.meta`'s."""
    counts: dict[str, dict[str, int]] = {}
    live, stale = [], []
    for w in workers:
        if "dlq" not in w and "messages" not in w:
            continue  # publishes no counts (an older worker)
        if w.get("heartbeat_age_s") is None or w["heartbeat_age_s"] > live_s:
            stale.append(w["id"])
            continue
        live.append(w["id"])
        for venue, reasons in w.get("dlq", {}).items():
            for reason, n in reasons.items():
                counts.setdefault(reason, {})[venue] = counts.get(reason, {}).get(venue, 0) + n
    venues = sorted({v for per in counts.values() for v in per})
    return {"live_s": live_s, "workers": live, "stale": stale, "venues": venues,
            "reasons": {reason: counts[reason] for reason in sorted(counts)},
            "total": sum(n for per in counts.values() for n in per.values())}  # fmt: skip


def resyncs(workers: list[dict[str, Any]], live_s: float = LIVE_S) -> dict[str, int | str]:
    """Venue -> its books' resyncs summed over the live workers (`resyncs:<worker>:<venue>`, since each
    started), for every venue a live worker counts messages of; `NOT_KEPT` where none publishes resyncs
    (a venue whose books do not resync: ITCH, LOBSTER)."""
    out: dict[str, int | str] = {}
    for w in workers:
        if w.get("heartbeat_age_s") is None or w["heartbeat_age_s"] > live_s:
            continue
        for venue in w.get("messages", {}):
            out.setdefault(venue, NOT_KEPT)
        for venue, n in w.get("resyncs", {}).items():
            before = out.get(venue, NOT_KEPT)
            out[venue] = n + (before if isinstance(before, int) else 0)
    return dict(sorted(out.items()))


class Ticks:
    """Per book without a venue tick: the gcd of the differences of every best price seen, fed record
    by record (orderbook.features.infer_tick's estimate, kept running instead of recomputed)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], tuple[int, int]] = {}  # book -> (first price, gcd so far)

    def see(self, venue: str, symbol: str, record: dict[str, Any]) -> None:
        if fixed_tick(venue) is not None:
            return
        for p in (int(record["best_bid"]), int(record["best_ask"])):
            if p <= 0:
                continue
            first, g = self._state.get((venue, symbol), (p, 0))
            self._state[(venue, symbol)] = (first, gcd(g, abs(p - first)))

    def units(self, venue: str, symbol: str) -> Units:
        return units_for(venue, self._state.get((venue, symbol), (0, 0))[1])


class Store:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.redis = client
        self.ticks = Ticks()

    async def books(self) -> list[dict[str, str]]:
        """Every (venue, symbol) with a latest forecast."""
        out = []
        async for key in self.redis.scan_iter(match=LATEST.format(venue="*", symbol="*"), count=1000):
            _, _, venue, symbol = key.decode().split(":", 3)
            out.append({"venue": venue, "symbol": symbol})
        return sorted(out, key=lambda b: (b["venue"], b["symbol"]))

    async def book(self, venue: str, symbol: str, count: int) -> dict[str, Any] | None:
        """The book's latest forecast and its last `count` forecasts as points, with the alerts among them."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(LATEST.format(venue=venue, symbol=symbol))
        pipe.xrevrange(HIST.format(venue=venue, symbol=symbol), count=count)
        raw_latest, raw_hist = await pipe.execute()
        if not raw_latest:
            return None
        records = [parse(fields) for _, fields in reversed(raw_hist)]
        latest = parse(raw_latest)
        for r in [*records, latest]:
            self.ticks.see(venue, symbol, r)
        units = self.ticks.units(venue, symbol)
        return {
            "venue": venue,
            "symbol": symbol,
            "units": units.describe(),
            "latest": views.realized(latest, units),
            "series": views.series(records, units),
        }

    async def levels(self, venue: str, symbol: str) -> dict[str, Any]:
        """The book's top levels as its worker last published them (`mt:book`), in the units its best bid
        and ask are shown in; `published` False where the key is absent (no worker publishes levels, with
        `book_levels = 0` or from before they did, or no batch of the book completed a window yet)."""
        key = BOOK.format(venue=venue, symbol=symbol)
        raw = await self.redis.get(key)
        out: dict[str, Any] = {"venue": venue, "symbol": symbol, "key": key, "published": raw is not None}
        if raw is None:
            return out
        stored = json.loads(raw)
        units = self.ticks.units(venue, symbol)
        return out | views.levels(stored, units, time.time_ns()) | {"stored": stored}

    async def alerts(self, count: int, venue: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        """The total in `mt:alerts` and its newest `count` (of one book, when given), newest first."""
        total = await self.redis.xlen(ALERTS)
        out = []
        # a book's alerts are read from the newest backwards until `count` of them are found
        last = "+"
        while len(out) < count:
            entries = await self.redis.xrevrange(ALERTS, max=last, count=500)
            for entry_id, fields in entries:
                rec = parse(fields)
                if (venue is None or rec["venue"] == venue) and (symbol is None or rec["symbol"] == symbol):
                    out.append(self._alert(entry_id.decode(), rec))
                    if len(out) == count:
                        break
            if len(entries) < 500:
                break
            last = "(" + entries[-1][0].decode()
        return {"total": total, "alerts": out}

    def _alert(self, entry_id: str, rec: dict[str, Any]) -> dict[str, Any]:
        units = self.ticks.units(str(rec["venue"]), str(rec["symbol"]))
        return {"id": entry_id, **views.realized(rec, units)}

    async def alert(self, entry_id: str, around: int) -> dict[str, Any] | None:
        """One alert, and its book's forecasts around it: `around` before and after, by window."""
        entries = await self.redis.xrange(ALERTS, min=entry_id, max=entry_id, count=1)
        if not entries:
            return None
        rec = parse(entries[0][1])
        venue, symbol, window = str(rec["venue"]), str(rec["symbol"]), int(rec["window"])  # type: ignore[call-overload]
        hist = HIST.format(venue=venue, symbol=symbol)
        # one script wrote the alert and its history entry: both ids carry the same Redis time (ms), which
        # a batch's other forecasts of the book may share: walk back from it until `around` older ones
        ms = int(entry_id.split("-")[0])
        before: list[tuple[bytes, dict[bytes, bytes]]] = []
        top, older = str(ms), 0
        while older < around:
            page = await self.redis.xrevrange(hist, max=top, count=around + 64)
            before += page
            older += sum(int(f[b"window"]) < window for _, f in page)
            if len(page) < around + 64:
                break
            top = "(" + page[-1][0].decode()
        after = await self.redis.xrange(hist, min=str(ms + 1), count=around)
        records = sorted((parse(f) for _, f in [*before, *after]), key=lambda r: int(r["window"]))  # type: ignore[call-overload]
        at = next((i for i, r in enumerate(records) if r["window"] == window), None)
        if at is not None:
            records = records[max(0, at - around) : at + around + 1]
        for r in records:
            self.ticks.see(venue, symbol, r)
        units = self.ticks.units(venue, symbol)
        return {
            "alert": self._alert(entry_id, rec),
            "units": units.describe(),
            "found_in_history": at is not None,
            "series": views.series(records, units),
        }

    async def window(self, venue: str, symbol: str, window: int) -> dict[str, Any] | None:
        """An alert's window as its worker wrote it (`stored`, the JSON of streams/alert_window.py, as is)
        and as the page reads it: each event's time as a clock, the book series in prices and lots, the
        most surprising event and the drivers. None when the key is not there (expired, or an alert from
        before the workers wrote windows)."""
        key = WINDOW.format(venue=venue, symbol=symbol, window=window)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        raw, ttl = await pipe.execute()
        if raw is None:
            return None
        stored = json.loads(raw)
        units = self.ticks.units(venue, symbol)
        return {"key": key, "ttl_s": ttl, "units": units.describe(), **views.window(stored, units),
                "stored": stored}  # fmt: skip

    async def meta(self) -> dict[str, Any]:
        """`mt:meta` read whole: the deployment's fields, each worker's, each book's drift, and the
        fields this page does not know (shown as they are, nothing made up)."""
        raw = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(META)).items()}
        now = time.time_ns()
        workers: dict[str, dict[str, Any]] = {}
        drift = []
        other = {}
        deployment = {k: raw.pop(k) for k in ("model", "schema") if k in raw}
        for key, value in sorted(raw.items()):
            name, _, rest = key.partition(":")
            count = count_field(key)
            if count is not None and count.name == "dlq":
                per_venue = workers.setdefault(count.worker, {"id": count.worker}).setdefault("dlq", {})
                per_venue.setdefault(count.venue, {})[count.reason] = int(value)
            elif count is not None:
                worker = workers.setdefault(count.worker, {"id": count.worker})
                worker.setdefault(count.name, {})[count.venue] = int(value)
            elif name in WORKER_FIELDS and rest:
                workers.setdefault(rest, {"id": rest})[name] = value
            elif name == "drift" and rest:
                venue, _, symbol = rest.partition(":")
                drift.append({"venue": venue, "symbol": symbol, **json.loads(value)})
            else:
                other[key] = value
        for w in workers.values():
            if "heartbeat" in w:
                w["heartbeat_age_s"] = round((now - int(w["heartbeat"])) / 1e9, 3)
        listed = list(workers.values())
        return {"deployment": deployment, "workers": listed, "drift": drift, "other": other,
                "dlq": dead_letters(listed), "resyncs": resyncs(listed)}  # fmt: skip
