"""`megatrading dashboard`: the web page, its JSON API over Redis and the live feed.

Routes:
- `/` and `/static/...`: the page (static/: plain HTML and JS, uPlot vendored: nothing is fetched from
  the internet, by the server or the page);
- `/api/books`: every book with a latest forecast;
- `/api/book?venue=V&symbol=S&count=N`: its latest forecast and its last N forecasts as points;
- `/api/levels?venue=V&symbol=S`: its top levels as its worker last published them (`mt:book:...`), each
  side's prices, sizes and sizes summed from the best, with the book's age; `published` false where absent;
- `/api/alerts?count=N[&venue=V&symbol=S]`: how many alerts `mt:alerts` holds and the newest N;
- `/api/alert/{id}`: one alert and its book's forecasts around it;
- `/api/window?venue=V&symbol=S&window=W`: the window that raised an alert (`mt:window:...`): its events,
  book series, most surprising event and drivers; 404, saying why, where Redis no longer holds it;
- `/api/health`: `mt:meta` (workers' heartbeats, model and its device, skipped windows, batch latency,
  drift), the forecast rate on `mt:forecasts`, the messages per second per venue from the workers' counts
  (streams/dashboard/rates.py), the dead letters per reason and venue and the books' resyncs per venue
  summed over the live workers' counts (streams/dashboard/store.py), consumer lag per partition and the
  offsets md.dlq spans (streams/dashboard/lag.py);
- `/api/stream`: server-sent events, the forecasts of `mt:forecasts` as points, batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import redis
import redis.asyncio
from aiohttp import web
from aiohttp.typedefs import Handler

from streams.dashboard.lag import LagReader
from streams.dashboard.live import Relay
from streams.dashboard.rates import MessageRates
from streams.dashboard.store import Store
from streams.sink import TIMEOUTS, WINDOW
from streams.topics import DLQ_TOPIC

STATIC = Path(__file__).resolve().parent / "static"
MAX_COUNT = 20_000  # points a request may ask for: a history stream holds up to 100,000

STORE = web.AppKey("store", Store)
RATES = web.AppKey("rates", MessageRates)
RELAY = web.AppKey("relay", Relay)
LAG = web.AppKey("lag", LagReader)


def _count(request: web.Request, default: int) -> int:
    try:
        n = int(request.query.get("count", default))
    except ValueError as err:
        raise web.HTTPBadRequest(text="count must be an integer") from err
    return max(1, min(n, MAX_COUNT))


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def books(request: web.Request) -> web.Response:
    return web.json_response(await request.app[STORE].books())


async def book(request: web.Request) -> web.Response:
    venue, symbol = request.query.get("venue"), request.query.get("symbol")
    if not venue or not symbol:
        raise web.HTTPBadRequest(text="venue and symbol are required")
    got = await request.app[STORE].book(venue, symbol, _count(request, 600))
    if got is None:
        raise web.HTTPNotFound(text=f"no forecast for {venue}:{symbol}")
    return web.json_response(got)


async def levels(request: web.Request) -> web.Response:
    venue, symbol = request.query.get("venue"), request.query.get("symbol")
    if not venue or not symbol:
        raise web.HTTPBadRequest(text="venue and symbol are required")
    return web.json_response(await request.app[STORE].levels(venue, symbol))


async def alerts(request: web.Request) -> web.Response:
    q = request.query
    return web.json_response(await request.app[STORE].alerts(_count(request, 50), q.get("venue"), q.get("symbol")))


async def alert(request: web.Request) -> web.Response:
    got = await request.app[STORE].alert(request.match_info["id"], around=_count(request, 40))
    if got is None:
        raise web.HTTPNotFound(text=f"no alert {request.match_info['id']} in mt:alerts")
    return web.json_response(got)


async def window(request: web.Request) -> web.Response:
    q = request.query
    venue, symbol = q.get("venue"), q.get("symbol")
    if not venue or not symbol or not q.get("window", "").isdigit():
        raise web.HTTPBadRequest(text="venue, symbol and window (an integer) are required")
    got = await request.app[STORE].window(venue, symbol, int(q["window"]))
    if got is None:
        key = WINDOW.format(venue=venue, symbol=symbol, window=q["window"])
        raise web.HTTPNotFound(text=f"Redis no longer holds this alert's window ({key}): it expired (windows are "
                               "kept alert_window_ttl_s, 7 days by default), or the alert was raised before its "
                               "worker published alerts' windows (or with alert_window_ttl_s = 0)")  # fmt: skip
    return web.json_response(got)


async def health(request: web.Request) -> web.Response:
    meta = await request.app[STORE].meta()
    lag = request.app.get(LAG)
    meta["forecasts_per_s"] = request.app[RELAY].rates()
    # every request is a reading: the page's own polling keeps the rate's window filled
    meta["messages_per_s"] = request.app[RATES].observe(meta["workers"], time.time_ns())
    meta["lag"] = lag.last if lag is not None else {"state": "off (no --bootstrap)", "partitions": []}
    return web.json_response(meta)


async def stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    relay = request.app[RELAY]
    q = relay.subscribe()
    try:
        await relay.ready.wait()
        # the page loads the book's history once subscribed: nothing falls between the two
        await resp.write(b"event: hello\ndata: {}\n\n")
        while True:
            try:
                data = await asyncio.wait_for(q.get(), timeout=15)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")  # a comment: proxies do not close an idle stream
                continue
            event = "reload" if data == "reload" else "forecasts"
            await resp.write(f"event: {event}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        relay.unsubscribe(q)
    return resp


@web.middleware
async def redis_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Redis unreachable: a 503 that says so (the page shows the error and tries again), not a traceback."""
    try:
        return await handler(request)
    except (redis.RedisError, OSError) as err:
        raise web.HTTPServiceUnavailable(text=f"Redis: {type(err).__name__}: {err}") from err


def make_app(redis_url: str, bootstrap: str | None = None, group: str = "megatrading",
             venues: Sequence[str] = (), dlq_topic: str = DLQ_TOPIC) -> web.Application:  # fmt: skip
    """The app; `bootstrap`: where to read consumer lag and `dlq_topic`'s offsets (None: neither is shown)."""
    app = web.Application(middlewares=[redis_down])
    client = redis.asyncio.Redis.from_url(redis_url, **TIMEOUTS)
    store = Store(client)
    app[STORE] = store
    app[RATES] = MessageRates()
    # the relay's subscription blocks on its connection: a client of its own, without a read timeout
    app[RELAY] = Relay(redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5), store.ticks)
    if bootstrap:
        app[LAG] = LagReader(bootstrap, group, venues, dlq_topic=dlq_topic)

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(app[RELAY].run())]
        if LAG in app:
            tasks.append(asyncio.create_task(app[LAG].run()))
        yield
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if LAG in app:
            app[LAG].close()
        await client.aclose()
        await app[RELAY].redis.aclose()

    app.cleanup_ctx.append(background)
    app.router.add_get("/", index)
    app.router.add_get("/api/books", books)
    app.router.add_get("/api/book", book)
    app.router.add_get("/api/levels", levels)
    app.router.add_get("/api/alerts", alerts)
    app.router.add_get("/api/alert/{id}", alert)
    app.router.add_get("/api/window", window)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/stream", stream)
    app.router.add_static("/static/", STATIC)
    return app
