"""Coinbase feed on real data: cryptofeed's COINBASE.ws.28.0 capture (level2 + ticker + matches, ten
products, 2021-04-17) and bmoscon/orderbook's BTC-USD level-2 and level-3 REST snapshots."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from orderbook.book import L2Book, L3Book
from orderbook.errors import FeedError
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Kind, Side
from orderbook.numbers import parse_fixed
from orderbook.venues.coinbase import CoinbaseFeed, parse_time
from orderbook.venues.lobster import orderbook_row
from streams.cli import main

pytestmark = pytest.mark.realdata

CAPTURE = "cryptofeed-captures/COINBASE.ws.28.0.gz"


@pytest.fixture(scope="module")
def replay(shared_data: Path) -> dict:
    """One pass over the capture: the feed, message counts, errors, and what the ticker checks need."""
    feed = CoinbaseFeed()
    types: Counter[str] = Counter()
    errors: list[FeedError] = []
    first_book_msg: dict[str, str] = {}
    last_update_ts: dict[str, int] = {}  # exchange time of the last l2update applied per product
    tickers: list[tuple[str, int, int | None, tuple, tuple]] = []  # product, time, last l2 time, ticker, book
    trades: dict[tuple[str, int], int] = {}  # (product, sequence) -> aggressor flag of the TRADE event
    for rec in CoinbaseFeed.read_capture(shared_data / CAPTURE):
        msg = json.loads(rec.raw)
        typ, product = msg["type"], msg.get("product_id")
        types[typ] += 1
        try:
            events = feed.on_message(rec.raw, rec.recv_ts)
        except FeedError as err:
            errors.append(err)
            continue
        if typ in ("snapshot", "l2update"):
            first_book_msg.setdefault(product, typ)
        if typ == "l2update":
            last_update_ts[product] = events[0].ts
        elif typ in ("match", "last_match"):
            (trade,) = events
            assert trade.kind == Kind.TRADE and trade.seq == msg["sequence"]
            trades[product, trade.seq] = trade.flags
        elif typ == "ticker":
            book = feed.books[product]
            quoted = (parse_fixed(msg["best_bid"], 8), parse_fixed(msg["best_ask"], 8))
            held = (book.best_bid()[0], book.best_ask()[0])
            tickers.append((product, parse_time(msg["time"]), last_update_ts.get(product), quoted, held))
            trades[product, -msg["sequence"]] = {"buy": FLAG_AGGRESSOR_BID, "sell": FLAG_AGGRESSOR_ASK}[msg["side"]]
    return {
        "feed": feed,
        "types": types,
        "errors": errors,
        "first": first_book_msg,
        "tickers": tickers,
        "trades": trades,
    }


def test_capture_builds_every_product_from_its_snapshot_without_errors(replay: dict) -> None:
    feed, types = replay["feed"], replay["types"]
    print(f"\nCOINBASE.ws.28.0 message types: {dict(types)}; errors: {len(replay['errors'])}")
    assert replay["errors"] == []
    assert types == {
        "subscriptions": 3,
        "snapshot": 10,
        "l2update": 9719,
        "ticker": 107,
        "match": 97,
        "last_match": 10,
    }  # the three `subscribe` lines cryptofeed sent are not messages received
    assert len(feed.books) == 10
    assert set(replay["first"].values()) == {"snapshot"}  # no product saw an update before its snapshot
    for product, book in feed.books.items():
        assert isinstance(book, L2Book) and feed.syncs[product].live
        assert feed.l2_counts[product] == feed.syncs[product].last_seq
        assert book.bids and book.asks and not book.crossed()


def test_ticker_best_bid_ask_equal_the_level2_book_as_of_the_update_stamped_with_its_time(replay: dict) -> None:
    """What is comparable: a `ticker` is sent for a match, carrying the best bid/ask after that match and
    the match's time; the level2 channel sends the book change the match caused as an `l2update` stamped
    with the same time, and in this capture that update arrives before the ticker. So a ticker whose time
    equals the time of the product's last applied l2update must quote exactly the book we hold.

    Not comparable: the first ticker of each product, sent on subscribing, describes the last trade
    before the subscription (seconds to minutes before the level2 snapshot): its time precedes every
    l2update of the product, and the book it quoted is gone."""
    tickers = replay["tickers"]
    seen: set[str] = set()
    compared = matched = 0
    for product, ts, last_l2, quoted, held in tickers:
        if product not in seen:
            seen.add(product)
            assert last_l2 is None or ts < last_l2  # the subscription ticker predates the book we hold
            continue
        assert ts == last_l2, f"{product} ticker at {ts} vs last l2update at {last_l2}"
        compared += 1
        matched += quoted == held
    print(f"\ntickers: {len(tickers)}, subscription tickers skipped: {len(seen)}, compared {compared}, equal {matched}")
    assert compared == len(tickers) - 10 == 97
    assert matched == compared


def test_match_side_is_the_maker_side_as_the_tickers_taker_side_confirms(replay: dict) -> None:
    """Coinbase's `ticker.side` is the taker's side, `match.side` the maker's: a match's aggressor flag
    (from the opposite of its side) must equal the one the ticker with the same sequence gives."""
    trades = replay["trades"]
    pairs = [(flag, trades[p, -seq]) for (p, seq), flag in trades.items() if seq > 0 and (p, -seq) in trades]
    print(f"\nmatch/ticker pairs by sequence: {len(pairs)}")
    assert len(pairs) == 107
    assert all(ours == ticker for ours, ticker in pairs)


def test_l3_and_l2_rest_snapshots_of_btc_usd_agree_within_the_messages_between_them(shared_data: Path) -> None:
    """The two snapshots were taken 2070 full-channel messages apart (sequences 133905821961 and
    133905824031), so they are not the same book. Each message changes at most two price levels (a
    price-changing `change`; every other message one), which bounds how many levels may differ."""
    folder = shared_data / "coinbase-snapshots"
    l2_body = json.loads(gzip.decompress((folder / "l2_snapshot.json.gz").read_bytes()))
    l3_body = json.loads(gzip.decompress((folder / "l3_snapshot.json.gz").read_bytes()))
    feeds = {}
    for name in ("l2_snapshot", "l3_snapshot"):
        feeds[name] = feed = CoinbaseFeed()
        records = list(CoinbaseFeed.read_capture(folder / f"{name}.json.gz"))
        assert all(len(r.raw) < 1_000_000 for r in records)  # parts fit Kafka's default record size
        for r in records:
            feed.on_message(r.raw, r.recv_ts)
    l2, l3 = feeds["l2_snapshot"].books["BTC-USD"], feeds["l3_snapshot"].books["BTC-USD"]
    assert isinstance(l3, L3Book) and isinstance(l2, L2Book)
    assert feeds["l3_snapshot"].syncs["BTC-USD"].last_seq == l3_body["sequence"]
    assert len(l3.orders) == len(l3_body["bids"]) + len(l3_body["asks"])
    assert not l2.crossed() and not l3.crossed()
    # the REST lists each level's orders in time priority: the first listed order is first in its queue
    top_id = l3_body["bids"][0][2]
    assert l3.queue_position(top_id) == 0 and l3.queue(Side.BID, l3.best_bid()[0])[0][0] == top_id

    counts: Counter[tuple[Side, int]] = Counter((o.side, o.price) for o in l3.orders.values())
    l2_counts = {
        (side, parse_fixed(p, 8)): n
        for side, key in ((Side.BID, "bids"), (Side.ASK, "asks"))
        for p, _, n in l2_body[key]
    }
    differ = same = 0
    for side, l2_levels, l3_levels in ((Side.BID, l2.bids, l3.bids), (Side.ASK, l2.asks, l3.asks)):
        for price in set(l2_levels) | set(l3_levels):
            agree = l2_levels.get(price) == l3_levels.get(price) and l2_counts.get((side, price)) == counts.get(
                (side, price)
            )
            same += agree
            differ += not agree
    gap = l3_body["sequence"] - l2_body["sequence"]
    print(f"\nBTC-USD: {len(l3.orders)} orders; levels equal in size and order count {same}, differing {differ}")
    assert gap == 2070
    assert differ <= 2 * gap
    assert same > 40_000


def test_cli_book_writes_skl_usd_top5_rows(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "skl.csv"
    path = str(shared_data / CAPTURE)
    assert main(["book", "--format", "coinbase", path, "--symbol", "SKL-USD", "--levels", "5", "--out", str(out)]) == 0
    rows = [list(map(int, line.split(","))) for line in out.read_text().splitlines()]
    feed = CoinbaseFeed()
    touched = 0
    for rec in CoinbaseFeed.read_capture(path):
        touched += any(e.symbol == "SKL-USD" for e in feed.on_message(rec.raw, rec.recv_ts))
    print(f"\nSKL-USD rows: {len(rows)}")
    assert len(rows) == touched > 1000
    assert all(len(r) == 20 for r in rows)
    assert all(r[0] > r[2] > 0 for r in rows)  # best ask above best bid on every row
    assert rows[-1] == orderbook_row(feed.books["SKL-USD"], 5)
