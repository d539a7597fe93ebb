"""Kraken on real captures (cryptofeed's sample_data, see ../shared/data/SOURCES.md).

KRAKEN.ws.50.0.gz: websocket v1 `book-1000` for ten pairs, 2021-04-17: one snapshot per pair,
then updates, every one carrying a CRC32 checksum. Every checksum must match.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderbook.errors import FeedError
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Kind, Side
from orderbook.rebuild import RebuildStats, rebuild
from orderbook.venues.kraken import KrakenFeed
from orderbook.venues.lobster import orderbook_row
from streams import cli

pytestmark = pytest.mark.realdata

# update messages carrying "c", per pair, counted independently with zcat/grep/json
CHECKSUMS_PER_PAIR = {
    "XMR/USD": 846,
    "SC/EUR": 818,
    "WAVES/EUR": 576,
    "OMG/USD": 573,
    "ADA/XBT": 347,
    "KSM/XBT": 335,
    "ETH/CHF": 317,
    "XBT/CHF": 289,
    "OCEAN/XBT": 148,
    "GRT/ETH": 20,
}
PRICE_DECIMALS = {
    "ADA/XBT": 9,
    "GRT/ETH": 9,
    "OCEAN/XBT": 9,
    "KSM/XBT": 8,
    "XMR/USD": 8,
    "OMG/USD": 6,
    "SC/EUR": 6,
    "WAVES/EUR": 6,
    "ETH/CHF": 5,
    "XBT/CHF": 5,
}


def _captures(shared_data: Path) -> Path:
    return shared_data / "cryptofeed-captures"


def test_kraken_book_capture_every_checksum_matches(shared_data: Path) -> None:
    feed = KrakenFeed()
    errors: list[FeedError] = []
    records = list(KrakenFeed.read_capture(_captures(shared_data) / "KRAKEN.ws.50.0.gz"))
    events = 0
    for rec in records:
        try:
            events += len(feed.on_message(rec.raw, rec.recv_ts))
        except FeedError as err:
            errors.append(err)
    assert errors == []
    assert len(records) == 4321  # 4325 lines less the connection header, the subscribe and 2 blanks
    assert dict(feed.checksums_checked) == CHECKSUMS_PER_PAIR
    assert feed.checksums_matched == feed.checksums_checked
    assert sum(feed.checksums_matched.values()) == 4269
    assert set(feed.books) == set(CHECKSUMS_PER_PAIR)
    for pair, book in feed.books.items():
        assert feed.syncs[pair].live and feed.syncs[pair].snapshots == 1
        assert feed.precision[pair].price == PRICE_DECIMALS[pair] and feed.precision[pair].size == 8
        assert feed.messages[pair] == CHECKSUMS_PER_PAIR[pair] + 1  # the snapshot and the updates
        assert len(book.bids) > 50 and len(book.asks) > 50 and not book.crossed()
    assert feed.skipped.total() == 0
    xbt = feed.books["XBT/CHF"]
    assert 5_000_000_000 < xbt.best_bid()[0] < 6_000_000_000  # XBT/CHF near 55,000 CHF, 5 decimals


def test_kraken_trade_capture_decodes(shared_data: Path) -> None:
    feed = KrakenFeed()
    trades = []
    for rec in KrakenFeed.read_capture(_captures(shared_data) / "KRAKEN.ws.48.0.gz"):
        trades += feed.on_message(rec.raw, rec.recv_ts)
    assert len(trades) == 10 and all(t.kind == Kind.TRADE for t in trades)
    assert {t.symbol for t in trades} == {"XMR/USD", "SC/EUR"}
    first = trades[0]
    assert (first.price, first.size, first.ts) == (35411000000, 89594024, 1618678142557535000)
    assert (first.side, first.flags) == (Side.BID, FLAG_AGGRESSOR_ASK)  # "s": a seller hit the bid
    assert sum(t.flags == FLAG_AGGRESSOR_BID for t in trades) == 5
    for rec in KrakenFeed.read_capture(_captures(shared_data) / "KRAKEN.ws.49.0.gz"):
        assert feed.on_message(rec.raw, rec.recv_ts) == []  # ticker


def test_kraken_cli_book_writes_lobster_rows_with_seq(shared_data: Path, tmp_path: Path) -> None:
    """The capture holds no XBT/USD: XBT/CHF is its bitcoin pair."""
    path = _captures(shared_data) / "KRAKEN.ws.50.0.gz"
    out = tmp_path / "xbtchf.csv"
    args = ["book", "--format", "kraken", str(path), "--symbol", "XBT/CHF", "--levels", "10", "--with-seq"]
    assert cli.main([*args, "--strict", "--out", str(out)]) == 0
    rows = [list(map(int, line.split(","))) for line in out.read_text().splitlines()]
    assert len(rows) == 290  # the snapshot and 289 updates
    assert all(len(r) == 2 + 4 * 10 for r in rows)
    assert [r[1] for r in rows] == list(range(1, 291))  # seq: the pair's message count
    feed = KrakenFeed()
    stats = RebuildStats()
    expected = list(rebuild(feed, KrakenFeed.read_capture(path), 10, "XBT/CHF", stats))
    assert rows[-1][2:] == orderbook_row(feed.books["XBT/CHF"], 10) == expected[-1].levels
    assert rows[-1][0] == expected[-1].ts and not stats.errors
    ask, bid = rows[-1][2], rows[-1][4]
    assert bid < ask


def test_kraken_cli_book_for_an_absent_pair_writes_nothing(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "xbtusd.csv"
    path = _captures(shared_data) / "KRAKEN.ws.50.0.gz"
    assert cli.main(["book", "--format", "kraken", str(path), "--symbol", "XBT/USD", "--out", str(out)]) == 0
    assert out.read_text() == ""
