"""The Binance feed over real captures (../shared/data, see its SOURCES.md).

For every file: no unexplained sequence gap (the only dropped diffs are those the documented
rule drops: `u` not past the snapshot's `lastUpdateId`), no crossed book, and wherever a
`bookTicker` names the update id the book is at, the book's best bid/ask equal the ticker's.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orderbook.errors import FeedError
from orderbook.numbers import parse_fixed
from orderbook.venues.binance import BinanceFeed
from orderbook.venues.lobster import orderbook_row
from streams import cli

pytestmark = pytest.mark.realdata

FILES = [
    "binance-hftbacktest/spot_btcusdt_20240808.gz",
    "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "binance-hftbacktest/usdm_btcusdt_20240808.gz",
    "cryptofeed-captures/BINANCE.ws.1.0.gz",
]


@dataclass
class Replay:
    feed: BinanceFeed
    messages: int = 0
    diffs: Counter[str] = field(default_factory=Counter)  # depthUpdate messages per symbol
    before_snapshot_id: Counter[str] = field(default_factory=Counter)  # diffs with u <= lastUpdateId
    errors: Counter[str] = field(default_factory=Counter)
    compared: Counter[str] = field(default_factory=Counter)
    mismatched: list[str] = field(default_factory=list)
    not_comparable: Counter[str] = field(default_factory=Counter)


def _ticker_levels(data: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    def fx(s: str) -> int:
        return parse_fixed(s, 8)

    return (fx(data["b"]), fx(data["B"])), (fx(data["a"]), fx(data["A"]))


def _plus_one_lot(qty: str) -> str:
    n = parse_fixed(qty, 8)
    return qty if n == 0 else f"{(n + 1) // 10**8}.{(n + 1) % 10**8:08d}"


def replay(path: Path, corrupt: bool = False) -> Replay:
    """Run the capture through a feed; check the tickers against the book independently of the feed."""
    feed = BinanceFeed()
    r = Replay(feed)
    pending: dict[str, list[tuple[int, dict]]] = {}  # tickers whose u the book has not reached yet
    snapshot_id: dict[str, int] = {}
    diff_u: dict[str, list[int]] = {}
    for rec in BinanceFeed.read_capture(path):
        r.messages += 1
        msg = json.loads(rec.raw)
        raw = rec.raw
        if "snapshot" in msg:
            snapshot_id[msg["symbol"]] = msg["snapshot"]["lastUpdateId"]
        data = msg.get("data", msg)
        if corrupt and data.get("e") == "depthUpdate":  # every bid a diff sets is one lot too big
            data["b"] = [[p, _plus_one_lot(q)] for p, q in data["b"]]
            raw = json.dumps(msg).encode()
        if data.get("e") == "depthUpdate":
            r.diffs[data["s"]] += 1
            diff_u.setdefault(data["s"], []).append(data["u"])
        elif "@bookTicker" in msg.get("stream", ""):
            pending.setdefault(data["s"], []).append((data["u"], data))
        try:
            feed.on_message(raw, rec.recv_ts)
        except FeedError as err:
            r.errors[err.reason] += 1
        for sym, waiting in pending.items():
            sync = feed.syncs.get(sym)
            if sync is None or not sync.live:
                continue
            while waiting and waiting[0][0] <= sync.last_seq:
                u, data = waiting.pop(0)
                if u < sync.last_seq:
                    r.not_comparable[sym] += 1
                    continue
                r.compared[sym] += 1
                book = feed.books[sym]
                if (book.best_bid(), book.best_ask()) != _ticker_levels(data):
                    r.mismatched.append(f"{sym} u={u}: ticker {data} book {book.best_bid()} {book.best_ask()}")
    for sym, ids in diff_u.items():
        r.before_snapshot_id[sym] = sum(1 for u in ids if u <= snapshot_id[sym])
    return r


_CACHE: dict[str, Replay] = {}


@pytest.fixture(params=FILES, ids=lambda f: Path(f).name.split(".gz")[0])
def replayed(request: pytest.FixtureRequest, shared_data: Path) -> Replay:
    name = request.param
    if name not in _CACHE:
        _CACHE[name] = replay(shared_data / name)
    return _CACHE[name]


def test_binance_real_capture_has_no_unexplained_gap_and_no_crossed_book(replayed: Replay) -> None:
    feed = replayed.feed
    assert replayed.errors == Counter(), replayed.errors  # no SequenceGap, no CrossedBook, nothing malformed
    for sym, n in replayed.diffs.items():
        s = feed.stats[sym]
        assert s.gaps == 0 and feed.syncs[sym].resyncs == 0 and feed.syncs[sym].live
        assert s.snapshots == 1
        # every dropped diff is explained: its u was not past the snapshot's lastUpdateId
        assert s.stale == replayed.before_snapshot_id[sym]
        assert s.applied + s.stale == n, (sym, s)


def test_binance_real_bookticker_equals_the_rebuilt_best_levels_at_equal_u(replayed: Replay) -> None:
    assert replayed.mismatched == [], replayed.mismatched[:5]
    assert sum(replayed.compared.values()) > 0
    for sym, n in replayed.compared.items():
        s = replayed.feed.stats[sym]
        # the feed's own running check agrees with this one
        assert (s.tickers_matched, s.tickers_mismatched) == (n, 0)
        assert s.tickers_not_comparable == replayed.not_comparable[sym]


def test_binance_real_bookticker_check_catches_a_one_lot_error_in_the_book(shared_data: Path) -> None:
    r = replay(shared_data / FILES[0], corrupt=True)
    assert r.mismatched, "a book off by one lot went unnoticed"
    assert r.feed.stats["BTCUSDT"].tickers_mismatched == len(r.mismatched)


def test_binance_cli_book_rows_carry_the_diff_u_as_seq(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / FILES[1]
    out = tmp_path / "book.csv"
    assert cli.main(["book", "--format", "binance", str(path), "--levels", "5", "--with-seq", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = [list(map(int, row)) for row in csv.reader(f)]
    # the expected (ts, seq) per row, from the raw JSON alone: a diff applied -> its u and E;
    # the snapshot -> the last u replayed from the buffer; a trade -> the book's u, or 0 before the snapshot
    expected: list[tuple[int, int]] = []
    book_u = 0
    buffered: list[dict] = []
    for rec in BinanceFeed.read_capture(path):
        msg = json.loads(rec.raw)
        data = msg.get("data", msg)
        if "snapshot" in msg:
            book_u = msg["snapshot"]["lastUpdateId"]
            ts = rec.recv_ts
            for d in buffered:
                if d["u"] > book_u:
                    book_u, ts = d["u"], d["E"] * 1_000_000
            buffered = []
            expected.append((ts, book_u))
        elif data.get("e") == "depthUpdate":
            if book_u == 0:
                buffered.append(data)
            elif data["u"] > book_u:
                assert data["U"] == book_u + 1
                book_u = data["u"]
                expected.append((data["E"] * 1_000_000, book_u))
        elif data.get("e") == "trade":
            expected.append((data["T"] * 1_000_000, book_u))
    assert [(row[0], row[1]) for row in rows] == expected
    assert all(len(row) == 2 + 4 * 5 for row in rows)
    feed = BinanceFeed()
    for rec in BinanceFeed.read_capture(path):
        feed.on_message(rec.raw, rec.recv_ts)
    assert rows[-1][2:] == orderbook_row(feed.books["ETHUSDT"], 5)
