"""The worker's processing, without Kafka: real captures through VenuePipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderbook.rebuild import rebuild
from orderbook.venues import feed_class
from orderbook.venues.lobster import ASK_EMPTY, BID_EMPTY
from orderbook.windows import WindowConfig
from streams.pipeline import VenuePipeline

CAPTURES = {
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
}


def run_pipeline(venue: str, path: Path, config: WindowConfig | None = None):
    pipe = VenuePipeline(venue, config or WindowConfig(every_events=16))
    windows, rejects = [], []
    for i, rec in enumerate(feed_class(venue).read_capture(path)):
        ws, rej = pipe.process(None, rec.raw, 0, i)
        windows += ws
        if rej:
            rejects.append(rej)
    return pipe, windows, rejects


@pytest.mark.parametrize("venue", sorted(CAPTURES))
def test_window_best_prices_equal_the_offline_rebuild(venue, shared_data):
    """Every window's best bid/ask is the book the offline `megatrading book` shows after that message."""
    path = shared_data / CAPTURES[venue]
    _, windows, rejects = run_pipeline(venue, path)
    assert not rejects and len(windows) > 50
    by_symbol: dict[str, dict[int, tuple[int, int]]] = {}
    for symbol in {w.symbol for w in windows}:
        cls = feed_class(venue)
        rows = {}
        for i, row in enumerate(rebuild(cls(), cls.read_capture(path), 1, symbol)):
            rows[i] = (row.levels[2], row.levels[0])  # bid price, ask price of level 1
        by_symbol[symbol] = rows
    # the window's offset is the record index; map records to rows through the rebuild order
    for symbol in by_symbol:
        cls = feed_class(venue)
        feed = cls()
        expected = {}
        for i, rec in enumerate(cls.read_capture(path)):
            events = feed.on_message(rec.raw)
            if any(e.symbol == symbol for e in events):
                book = feed.books[symbol]
                bid, ask = book.best_bid(), book.best_ask()
                expected[i] = (bid[0] if bid else 0, ask[0] if ask else 0)
        mine = [w for w in windows if w.symbol == symbol]
        assert mine
        for w in mine:
            assert (w.best_bid, w.best_ask) == expected[w.offset[1]], (symbol, w.offset)
        # and the offline rebuild's rows, in order, are the same books
        assert [
            (b if b != BID_EMPTY else 0, a if a != ASK_EMPTY else 0) for b, a in by_symbol[symbol].values()
        ] == list(expected.values())


def test_malformed_records_are_rejected_with_their_reason_and_the_rest_go_on():
    pipe = VenuePipeline("kraken", max_bytes=1000)
    bad = [b"", b"{not json", b'[1, {"a": [["NaN", "1.0", "1.0"]]}, "book-10", "X/Y"]', b"x" * 5000]
    reasons = []
    for i, raw in enumerate(bad):
        ws, rej = pipe.process(b"k", raw, 3, i)
        assert ws == [] and rej is not None
        assert (rej.partition, rej.offset, rej.value) == (3, i, raw)
        reasons.append(rej.reason)
    assert reasons[-1] == "oversized"
    assert pipe.stats.rejected["oversized"] == 1 and sum(pipe.stats.rejected.values()) == 4


def test_warm_replay_rebuilds_the_exact_state(shared_data):
    """Replaying records [0, k) with warm=True then processing [k, n) gives the windows of one pass."""
    path = shared_data / CAPTURES["kraken"]
    records = [r.raw for r in feed_class("kraken").read_capture(path)]
    _, full, _ = run_pipeline("kraken", path)
    k = len(records) // 2
    pipe = VenuePipeline("kraken", WindowConfig(every_events=16))
    for i, raw in enumerate(records[:k]):
        assert pipe.process(None, raw, 0, i, warm=True)[0] == []
    rest = [w for i in range(k, len(records)) for w in pipe.process(None, records[i], 0, i)[0]]
    tail = [w for w in full if w.offset[1] >= k]
    assert [(w.symbol, w.n_seen, w.seq, w.best_bid, w.best_ask) for w in rest] == [
        (w.symbol, w.n_seen, w.seq, w.best_bid, w.best_ask) for w in tail
    ]
    assert all((a.features == b.features).all() for a, b in zip(rest, tail, strict=True))


def test_news_joins_windows_of_its_symbol(shared_data):
    pipe = VenuePipeline("kraken", WindowConfig(every_events=16))
    pipe.add_news(0, ["XMR/USD"], "XMR listed on a new venue")
    pipe.add_news(2_000_000_000_000_000_000, ["XMR/USD"], "in the future")
    windows = []
    for i, rec in enumerate(feed_class("kraken").read_capture(shared_data / CAPTURES["kraken"])):
        windows += pipe.process(None, rec.raw, 0, i)[0]
    xmr = [w for w in windows if w.symbol == "XMR/USD"]
    assert xmr and all(w.news == [] for w in xmr)  # neither headline falls inside a window's span
    ts = xmr[-1].ts
    pipe.add_news(ts, ["XMR/USD"], "inside")
    assert pipe.builders["XMR/USD"].window().news == [(ts, "inside")]
