"""`megatrading reset VENUE` in Redis: the venue's published book levels (`mt:book:<venue>:*`) go with its
forecasts, another venue's stay (a real Redis; the Kafka side is tests/test_reset.py's)."""

from __future__ import annotations

import redis

from streams.cli.reset import Plan, _redis_plan, _redis_reset
from streams.sink import BOOK, RedisSink, book_json
from streams.topics import raw_topic

DB = 13  # this module's Redis database on the shared servers


def test_a_reset_removes_the_venues_book_levels_and_keeps_the_others(infra):
    url = f"redis://127.0.0.1:{infra.redis.port}/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    sink = RedisSink(client)
    books = [(venue, symbol, 32, book_json(venue, symbol, 32, 1, 1, [[100, 1]], [[101, 2]], 1))
             for venue, symbol in (("itch", "AAA"), ("itch", "BBB"), ("binance", "BTCUSDT"))]  # fmt: skip
    sink.write([], books=books)
    plan = Plan("itch", "g", raw_topic("itch"))
    _redis_plan(plan, url)
    assert sorted(plan.redis_keys) == [BOOK.format(venue="itch", symbol=s) for s in ("AAA", "BBB")]
    assert "mt:book:itch:*" in plan.lines()[-1]
    _redis_reset(plan, url)
    assert client.keys("mt:book:*") == [BOOK.format(venue="binance", symbol="BTCUSDT").encode()]
