"""The worker's processing, without Kafka: real captures through VenuePipeline."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from orderbook.frames import Framer, encode_frame, framed
from orderbook.rebuild import rebuild
from orderbook.venues import feed_class
from orderbook.venues.lobster import ASK_EMPTY, BID_EMPTY
from orderbook.windows import WindowConfig
from streams.pipeline import Rejected, VenuePipeline
from streams.publish import keyed

CAPTURES = {
    "binance": "binance-hftbacktest/spot_ethusdt_20240808.gz",
    "coinbase": "cryptofeed-captures/COINBASE.ws.28.0.gz",
    "kraken": "cryptofeed-captures/KRAKEN.ws.50.0.gz",
}


def run_pipeline(venue: str, path: Path, config: WindowConfig | None = None):
    pipe = VenuePipeline(venue, config or WindowConfig(every_events=16))
    windows, rejects = [], []
    for i, rec in enumerate(feed_class(venue).read_capture(path)):
        ws, rejs = pipe.process(None, rec.raw, 0, i)
        windows += ws
        rejects += rejs
    return pipe, windows, rejects


@pytest.mark.parametrize("venue", sorted(CAPTURES))
def test_window_best_prices_equal_the_offline_rebuild(venue, shared_data):
    """Every window's best bid/ask is the book the offline `megatrading book` shows after that message."""
    path = shared_data / CAPTURES[venue]
    _, windows, rejects = run_pipeline(venue, path)
    assert not rejects and len(windows) > 50
    symbols = {w.symbol for w in windows}
    cls = feed_class(venue)
    # each symbol's best prices after each message that touched it, one replay for all symbols
    expected: dict[str, dict[int, tuple[int, int]]] = {symbol: {} for symbol in symbols}
    feed = cls()
    for i, rec in enumerate(cls.read_capture(path)):
        for symbol in {e.symbol for e in feed.on_message(rec.raw)} & symbols:
            bid, ask = feed.books[symbol].best_bid(), feed.books[symbol].best_ask()
            expected[symbol][i] = (bid[0] if bid else 0, ask[0] if ask else 0)
    for symbol in symbols:
        mine = [w for w in windows if w.symbol == symbol]
        assert mine
        for w in mine:
            assert (w.best_bid, w.best_ask) == expected[symbol][w.offset[1]], (symbol, w.offset)
        # and the offline rebuild's rows, in order, are the same books
        rows = [(row.levels[2], row.levels[0]) for row in rebuild(cls(), cls.read_capture(path), 1, symbol)]  # level 1
        assert [(b if b != BID_EMPTY else 0, a if a != ASK_EMPTY else 0) for b, a in rows] == list(
            expected[symbol].values()
        )


def test_malformed_records_are_rejected_with_their_reason_and_the_rest_go_on():
    pipe = VenuePipeline("kraken", max_bytes=1000)
    bad = [b"", b"{not json", b'[1, {"a": [["NaN", "1.0", "1.0"]]}, "book-10", "X/Y"]', b"x" * 5000]
    reasons = []
    for i, raw in enumerate(bad):
        ws, rejs = pipe.process(b"k", raw, 3, i)
        assert ws == [] and len(rejs) == 1
        rej = rejs[0]
        assert (rej.partition, rej.offset, rej.value, rej.index) == (3, i, raw, None)
        reasons.append(rej.reason)
    assert reasons[-1] == "oversized"
    assert pipe.stats.rejected["oversized"] == 1 and sum(pipe.stats.rejected.values()) == 4


# a snapshot, then an update, of a symbol that JSON's escapes make a lone surrogate: no book, window, md.state
# snapshot (msgpack) or Redis key could carry it. The reference paths made a book of it (the native Binance
# decoder refused it): now every venue refuses the message as malformed
LONE_SURROGATE_SYMBOL = {
    "binance": [b'{"symbol":"X\\ud800","snapshot":{"lastUpdateId":1,"bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}}',
                b'{"stream":"x@depth","data":{"e":"depthUpdate","E":1,"s":"X\\ud800","U":2,"u":2,"b":[],"a":[]}}'],
    "coinbase": [b'{"type":"snapshot","product_id":"B-\\ud800","bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}',
                 b'{"type":"l2update","product_id":"B-\\ud800","changes":[["buy","1.0","2.0"]]}'],
    "kraken": [b'[1,{"as":[["2.0","1.0","1.0"]],"bs":[["1.0","1.0","1.0"]]},"book-10","X/\\udfff"]',
               b'[1,{"b":[["1.0","2.0","1.1"]],"c":"1"},"book-10","X/\\udfff"]'],
}  # fmt: skip


@pytest.mark.parametrize("native", [False, None])
@pytest.mark.parametrize("venue", sorted(LONE_SURROGATE_SYMBOL))
def test_a_symbol_that_is_not_unicode_text_is_refused_as_malformed_and_the_state_still_encodes(venue, native):
    pipe = VenuePipeline(venue, native=native)
    for i, raw in enumerate(LONE_SURROGATE_SYMBOL[venue]):
        ws, rejs = pipe.process(b"k", raw, 0, i)
        assert ws == [] and [r.reason for r in rejs] == ["malformed"], (raw, rejs)
    assert pipe.capture_state()()  # a snapshot of the partition encodes


@pytest.mark.parametrize("native", [False, None])
def test_a_headline_a_window_builder_cannot_take_is_logged_and_the_stream_goes_on(shared_data, native, caplog):
    """A parser gap (a lone surrogate got through until 2026-12-06) must not stop a partition: the worker's
    `add_news` logs the builder's error instead of failing the batch, and every retry with it."""
    records = [r.raw for r in feed_class("kraken").read_capture(shared_data / CAPTURES["kraken"])]
    pipe = VenuePipeline("kraken", native=native)
    for i, raw in enumerate(records[:400]):
        pipe.process(b"k", raw, 0, i)
    symbol, builder = next(iter(pipe.builders.items()))

    class Refusing:  # the builder as a bug would leave it: it raises on this headline
        def __init__(self, inner):
            self.inner = inner

        def add_news(self, ts, headline):
            if headline == "poison":
                raise UnicodeEncodeError("utf-8", headline, 0, 1, "a bug")
            self.inner.add_news(ts, headline)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    pipe.builders[symbol] = Refusing(builder)
    pipe.add_news(1, [symbol], "poison")
    assert "a headline the window builders cannot take" in caplog.text
    pipe.builders[symbol] = builder
    windows = [w for i, raw in enumerate(records[400:800], 400) for w in pipe.process(b"k", raw, 0, i)[0]]
    assert any(w.symbol == symbol for w in windows)
    if native is None:  # the compiled builders, which do refuse a lone surrogate (pyo3's String)
        caplog.clear()
        pipe.add_news(2, [symbol], "\ud800")
        assert "a headline the window builders cannot take" in caplog.text
        del pipe.builders[symbol]  # its successor is seeded with the headlines kept: not with the refused one
        rejects = [r for i, raw in enumerate(records[800:], 800) for r in pipe.process(b"k", raw, 0, i)[1]]
        assert symbol in pipe.builders and not [r for r in rejects if r.reason == "internal_error"]


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


# frames (issue 12): a record carrying several messages of one key


def window_content(w) -> tuple:
    """Everything a window holds but its `offset` (a frame's messages all carry the frame's)."""
    out = []
    for f in dataclasses.fields(w):
        if f.name == "offset":
            continue
        v = getattr(w, f.name)
        if isinstance(v, np.ndarray) and v.dtype == np.float64:
            v = v.view(np.uint64)  # as bits: a book's volume record is NaN before it knows enough
        out.append((v.dtype.str, v.shape, v.tolist()) if isinstance(v, np.ndarray) else v)
    return tuple(out)


def by_symbol(windows) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for w in windows:
        out.setdefault(w.symbol, []).append(window_content(w))
    return out


def feed_all(pipe: VenuePipeline, values: list[tuple[bytes | None, bytes]], *, warm_upto: int = 0):
    windows: list = []
    rejects: list[Rejected] = []
    for i, (key, value) in enumerate(values):
        ws, rejs = pipe.process(key, value, 0, i, warm=i < warm_upto)
        windows += ws
        rejects += rejs
    return windows, rejects


@pytest.fixture(scope="module")
def kraken_keyed(shared_data) -> list[tuple[bytes, bytes, int]]:
    """The Kraken capture keyed by symbol as `megatrading replay` keys it, with its receive times."""
    recs = feed_class("kraken").read_capture(shared_data / CAPTURES["kraken"])
    return [(key, rec.raw, rec.recv_ts) for key, rec in keyed("kraken", recs)]


CONFIG = WindowConfig(every_events=16)


def busiest(records: list[tuple[bytes, bytes, int]]) -> tuple[bytes, list[bytes]]:
    """The symbol with the most messages, and its messages in order (its book snapshot first)."""
    counts = Counter(k for k, _, _ in records if k != b"?")
    symbol = counts.most_common(1)[0][0]
    return symbol, [v for k, v, _ in records if k == symbol]


def test_a_framed_stream_gives_the_windows_events_and_stats_of_its_plain_messages(kraken_keyed):
    plain = VenuePipeline("kraken", CONFIG)
    plain_windows, plain_rejects = feed_all(plain, [(k, v) for k, v, _ in kraken_keyed])
    frames = [(f.key, f.value) for f in framed(kraken_keyed, Framer(max_messages=16, max_span_ns=10**12))]
    assert len(frames) < len(kraken_keyed) // 4  # most records are frames of several messages
    framed_pipe = VenuePipeline("kraken", CONFIG)
    framed_windows, framed_rejects = feed_all(framed_pipe, frames)
    assert len(plain_windows) > 50 and plain_rejects == framed_rejects == []
    # frames of one key keep each symbol's order; the order across symbols is the framer's
    assert by_symbol(framed_windows) == by_symbol(plain_windows)
    assert framed_pipe.stats == plain.stats and plain.stats.records == len(kraken_keyed)
    assert {w.offset[1] for w in framed_windows} <= set(range(len(frames)))


def test_a_warm_replay_of_frames_rebuilds_the_exact_state(kraken_keyed):
    frames = [(f.key, f.value) for f in framed(kraken_keyed, Framer(max_messages=16, max_span_ns=10**12))]
    full, _ = feed_all(VenuePipeline("kraken", CONFIG), frames)
    k = len(frames) // 2
    warm = VenuePipeline("kraken", CONFIG)
    rest, _ = feed_all(warm, frames, warm_upto=k)
    tail = [w for w in full if w.offset[1] >= k]
    assert tail and [window_content(w) for w in rest] == [window_content(w) for w in tail]


def test_a_malformed_message_in_a_frame_is_rejected_alone_with_its_index(kraken_keyed):
    """One key's stream in frames of 8, a malformed message at index 3 of one frame: that message
    alone is rejected, and every window equals the plain stream's without it."""
    symbol, mine = busiest(kraken_keyed)
    plain = VenuePipeline("kraken", CONFIG)
    plain_windows, _ = feed_all(plain, [(symbol, v) for v in mine])
    bad = b'{"not": json'
    at = 8 * (len(mine) // 16) + 3
    messages = [*mine[:at], bad, *mine[at:]]
    frames = [(symbol, encode_frame(messages[i : i + 8])) for i in range(0, len(messages), 8)]
    pipe = VenuePipeline("kraken", CONFIG)
    windows, rejects = feed_all(pipe, frames)
    assert rejects == [Rejected("malformed", rejects[0].error, symbol, bad, 0, at // 8, 3)]
    assert plain_windows and by_symbol(windows) == by_symbol(plain_windows)
    assert pipe.stats.records == plain.stats.records + 1 and pipe.stats.events == plain.stats.events
    assert pipe.stats.rejected == {"malformed": 1}


def test_a_broken_frame_is_one_bad_frame_reject_and_the_next_record_goes_on(kraken_keyed):
    key, (value, *_) = busiest(kraken_keyed)
    broken = encode_frame([value, value])[:-1]
    pipe = VenuePipeline("kraken", CONFIG)
    ws, rejs = pipe.process(key, broken, 2, 7)
    assert ws == [] and len(rejs) == 1
    assert (rejs[0].reason, rejs[0].value, rejs[0].index, rejs[0].offset) == ("bad_frame", broken, None, 7)
    assert pipe.stats.records == 1 and pipe.stats.rejected == {"bad_frame": 1} and pipe.position == {2: 8}
    assert pipe.process(key, value, 2, 8) == ([], [])
    assert pipe.stats.events > 0


def test_a_frame_over_the_size_limit_is_rejected_unread(kraken_keyed):
    """Each message fits the limit, the frame does not: the record is one `oversized` reject, unsplit."""
    limit = 1000
    small = [v for _, v, _ in kraken_keyed if len(v) < limit // 4][:8]
    frame = encode_frame(small)
    assert len(frame) > limit
    pipe = VenuePipeline("kraken", max_bytes=limit)
    ws, rejs = pipe.process(b"k", frame, 0, 0)
    assert ws == [] and [(r.reason, r.value, r.index) for r in rejs] == [("oversized", frame, None)]
    assert pipe.stats.records == 1 and pipe.stats.events == 0 and pipe.stats.rejected == {"oversized": 1}
    # a frame under the limit holding the same messages is read
    assert pipe.process(b"k", encode_frame(small[:2]), 0, 1)[1] == []
