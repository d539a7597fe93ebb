"""Binance feed: the documented local-order-book procedure, decoding, and every malformed input.

Synthetic messages only; the real captures are replayed in test_binance_realdata.py.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook.errors import (
    CrossedBook,
    DecodeError,
    FeedError,
    OversizedMessage,
    SequenceGap,
    UnknownMessageType,
    UnknownSymbol,
)
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Kind, Side
from orderbook.sync import SyncState
from orderbook.venues import feed_class
from orderbook.venues.binance import BinanceFeed, BookTicker

SYM = "BTCUSDT"
E0 = 1_700_000_000_000  # ms


def px(x: str) -> int:
    """A decimal string in Binance units (1e-8), computed independently of parse_fixed."""
    whole, _, frac = x.partition(".")
    return int(whole) * 10**8 + int((frac + "0" * 8)[:8])


def enc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def diff(first: int, last: int, bids=(), asks=(), *, pu: int | None = None, sym: str = SYM, wrap: bool = True) -> bytes:
    ev: dict[str, Any] = {"e": "depthUpdate", "E": E0 + last, "s": sym, "U": first, "u": last}
    if pu is not None:
        ev["T"] = E0 + last - 1
        ev["pu"] = pu
    ev["b"] = [list(lv) for lv in bids]
    ev["a"] = [list(lv) for lv in asks]
    return enc({"stream": f"{sym.lower()}@depth@100ms", "data": ev}) if wrap else enc(ev)


def snapshot(last_update_id: int, bids=(), asks=(), *, sym: str = SYM) -> bytes:
    body = {"lastUpdateId": last_update_id, "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    return enc({"symbol": sym, "snapshot": body})


def ticker(u: int, b: str, bq: str, a: str, aq: str, *, sym: str = SYM) -> bytes:
    return enc({"stream": f"{sym.lower()}@bookTicker", "data": {"u": u, "s": sym, "b": b, "B": bq, "a": a, "A": aq}})


def trade(t: int, price: str, qty: str, buyer_is_maker: bool, *, kind: str = "trade") -> bytes:
    ev: dict[str, Any] = {"e": kind, "E": E0 + 5, "s": SYM, "p": price, "q": qty, "T": E0 + 4, "m": buyer_is_maker}
    ev["t" if kind == "trade" else "a"] = t
    return enc({"stream": f"btcusdt@{kind}", "data": ev})


SNAP_BIDS = [("100.00", "1.0"), ("99.00", "2.0")]
SNAP_ASKS = [("101.00", "1.5"), ("102.00", "3.0")]


def live_feed(last_update_id: int = 100) -> BinanceFeed:
    feed = BinanceFeed()
    feed.on_message(snapshot(last_update_id, SNAP_BIDS, SNAP_ASKS))
    return feed


def levels(feed: BinanceFeed, sym: str = SYM) -> dict[str, dict[int, int]]:
    return feed.books[sym].to_dict()


def brute_force(last_update_id: int, bids, asks, diffs: list[tuple[int, int, list, list]]) -> dict[str, dict[int, int]]:
    """The book the venue has: the snapshot, then every update after it, in update-id order."""
    book = {"bids": {px(p): px(q) for p, q in bids}, "asks": {px(p): px(q) for p, q in asks}}
    for _first, last, b, a in sorted(diffs, key=lambda d: d[1]):
        if last <= last_update_id:
            continue
        for side, lv in (("bids", b), ("asks", a)):
            for p, q in lv:
                if px(q) == 0:
                    book[side].pop(px(p), None)
                else:
                    book[side][px(p)] = px(q)
    return book


# -- snapshot, units, registry ----------------------------------------------------------------------


def test_binance_is_registered_as_binance_l2_feed() -> None:
    assert feed_class("binance") is BinanceFeed
    assert BinanceFeed.venue == "binance"
    assert BinanceFeed.book_type.name == "L2"


def test_binance_snapshot_emits_begin_levels_end_in_1e8_units() -> None:
    feed = BinanceFeed()
    events = feed.on_message(snapshot(100, [("61837.63000000", "3.78826000")], [("61837.64", "0.5")]), recv_ts=7)
    assert [e.kind for e in events] == [Kind.SNAPSHOT_BEGIN, Kind.LEVEL_SET, Kind.LEVEL_SET, Kind.SNAPSHOT_END]
    assert all(e.seq == 100 and e.venue == "binance" and e.symbol == SYM for e in events)
    assert events[0].ts == 7  # the spot REST snapshot has no time: the receive time stands in
    assert (events[1].side, events[1].price, events[1].size) == (Side.BID, 6183763000000, 378826000)
    assert (events[2].side, events[2].price, events[2].size) == (Side.ASK, 6183764000000, 50000000)
    assert feed.syncs[SYM].live and feed.syncs[SYM].last_seq == 100


def test_binance_futures_snapshot_takes_its_transaction_time() -> None:
    body = {"lastUpdateId": 5, "E": E0 + 2, "T": E0 + 1, "bids": [["1.0", "1"]], "asks": []}
    events = BinanceFeed().on_message(enc({"symbol": SYM, "snapshot": body}), recv_ts=99)
    assert events[0].ts == (E0 + 1) * 1_000_000


def test_binance_diff_events_carry_final_u_and_event_time_in_ns() -> None:
    feed = live_feed(100)
    events = feed.on_message(diff(101, 105, [("100.00", "4")], [("101.00", "0")]), recv_ts=3)
    assert [(e.kind, e.side, e.price, e.size) for e in events] == [
        (Kind.LEVEL_SET, Side.BID, px("100"), px("4")),
        (Kind.LEVEL_SET, Side.ASK, px("101"), 0),
    ]
    assert all(e.seq == 105 and e.ts == (E0 + 105) * 1_000_000 and e.recv_ts == 3 for e in events)
    assert feed.syncs[SYM].last_seq == 105


def test_binance_qty_zero_removes_the_level() -> None:
    feed = live_feed(100)
    feed.on_message(diff(101, 101, [("99.00", "0.00000000")], [("101.00", "0")]))
    assert levels(feed) == {"bids": {px("100"): px("1")}, "asks": {px("102"): px("3")}}
    feed.on_message(diff(102, 102, [("98.00", "0")]))  # removing an absent level is not an error
    assert px("98") not in feed.books[SYM].bids


def test_binance_bare_event_and_combined_stream_wrapper_decode_the_same() -> None:
    a, b = live_feed(100), live_feed(100)
    ea = a.on_message(diff(101, 102, [("100.5", "1")], wrap=True))
    eb = b.on_message(diff(101, 102, [("100.5", "1")], wrap=False))
    assert ea == eb and levels(a) == levels(b)


# -- the sync procedure ------------------------------------------------------------------------------


def test_binance_diffs_before_the_snapshot_are_buffered_then_replayed() -> None:
    feed = BinanceFeed()
    assert feed.on_message(diff(95, 99, [("100.00", "9")])) == []  # stale once the snapshot is 100
    assert feed.on_message(diff(100, 103, [("100.00", "5")])) == []
    assert feed.on_message(diff(104, 104, [], [("101.00", "0")])) == []
    assert feed.syncs[SYM].state is SyncState.AWAITING_SNAPSHOT and len(feed.syncs[SYM].buffer) == 3
    events = feed.on_message(snapshot(100, SNAP_BIDS, SNAP_ASKS))
    assert [e.seq for e in events if e.kind == Kind.LEVEL_SET][-2:] == [103, 104]
    assert feed.syncs[SYM].last_seq == 104
    assert feed.stats[SYM].stale == 1 and feed.stats[SYM].applied == 2
    assert levels(feed) == brute_force(
        100,
        SNAP_BIDS,
        SNAP_ASKS,
        [(95, 99, [("100.00", "9")], []), (100, 103, [("100.00", "5")], []), (104, 104, [], [("101.00", "0")])],
    )


def test_binance_stale_diff_with_u_le_lastUpdateId_is_dropped() -> None:
    feed = live_feed(100)
    before = levels(feed)
    assert feed.on_message(diff(90, 100, [("100.00", "7")])) == []  # u == lastUpdateId: already in it
    assert feed.on_message(diff(80, 85, [("100.00", "7")])) == []
    assert levels(feed) == before and feed.stats[SYM].stale == 2 and feed.syncs[SYM].last_seq == 100


def test_binance_first_diff_straddling_lastUpdateId_plus_1_is_applied() -> None:
    feed = live_feed(100)
    feed.on_message(diff(97, 104, [("100.00", "7")]))  # U <= 101 <= u
    assert feed.syncs[SYM].last_seq == 104 and feed.books[SYM].bids[px("100")] == px("7")


def test_binance_first_diff_past_lastUpdateId_plus_1_is_a_gap_and_waits_for_a_new_snapshot() -> None:
    feed = live_feed(100)
    with pytest.raises(SequenceGap) as info:
        feed.on_message(diff(102, 104, [("100.00", "7")]))  # update 101 missing
    err = info.value
    assert (err.expected, err.got, err.seq, err.symbol, err.venue) == (101, 102, 104, SYM, "binance")
    sync = feed.syncs[SYM]
    assert sync.state is SyncState.AWAITING_SNAPSHOT and len(sync.buffer) == 1
    assert levels(feed) == {"bids": {}, "asks": {}}  # "Discard your local order book"


def test_binance_gap_in_U_u_forces_resync_and_buffered_replay_matches_brute_force() -> None:
    feed = live_feed(100)
    feed.on_message(diff(101, 103, [("100.00", "3")]))
    with pytest.raises(SequenceGap) as info:
        feed.on_message(diff(106, 108, [("99.50", "1")]))  # 104..105 lost
    assert (info.value.expected, info.value.got) == (104, 106)
    assert feed.syncs[SYM].resyncs == 1
    later = [(109, 110, [], [("101.00", "0.5")]), (111, 111, [("100.00", "0")], [("100.50", "2")])]
    for first, last, b, a in later:
        assert feed.on_message(diff(first, last, b, a)) == []  # buffered, not applied
    snap_bids, snap_asks = [("100.00", "3"), ("99.80", "1")], [("101.00", "1.5"), ("102.00", "3.0")]
    feed.on_message(snapshot(108, snap_bids, snap_asks))  # the venue's book at 108 (it had 104..108)
    expected = brute_force(108, snap_bids, snap_asks, [(106, 108, [("99.50", "1")], []), *later])
    assert levels(feed) == expected
    assert feed.syncs[SYM].live and feed.syncs[SYM].last_seq == 111
    assert feed.stats[SYM].stale == 1  # the 106..108 diff that revealed the gap, now inside the snapshot


def test_binance_snapshot_older_than_the_buffer_is_a_gap_and_the_buffer_is_kept() -> None:
    feed = BinanceFeed()
    feed.on_message(diff(201, 205, [("100.00", "1")]))
    feed.on_message(diff(206, 207, [("100.00", "2")]))
    with pytest.raises(SequenceGap):
        feed.on_message(snapshot(150, SNAP_BIDS, SNAP_ASKS))  # 151..200 are in neither
    assert len(feed.syncs[SYM].buffer) == 2  # Binance: "go back to step 3" (a new snapshot), keep the events
    feed.on_message(snapshot(203, [("100.00", "1")], [("101.00", "1")]))
    assert feed.syncs[SYM].last_seq == 207 and feed.books[SYM].bids[px("100")] == px("2")


def test_binance_gap_inside_the_buffer_keeps_the_diffs_after_it() -> None:
    feed = BinanceFeed()
    for first, last in ((101, 102), (103, 104), (110, 111), (112, 112)):
        feed.on_message(diff(first, last, [("100.00", str(last))]))
    with pytest.raises(SequenceGap) as info:
        feed.on_message(snapshot(100, SNAP_BIDS, SNAP_ASKS))
    assert (info.value.expected, info.value.got) == (105, 110)
    assert [d.last for d in feed.syncs[SYM].buffer] == [111, 112]
    feed.on_message(snapshot(111, SNAP_BIDS, SNAP_ASKS))
    assert feed.syncs[SYM].last_seq == 112 and feed.books[SYM].bids[px("100")] == px("112")


def test_binance_overlapping_diff_is_applied_not_a_gap() -> None:
    # the doc's test for missed events is U > book id + 1; sizes are absolute, so an overlap is harmless
    feed = live_feed(100)
    feed.on_message(diff(101, 105, [("100.00", "2")]))
    feed.on_message(diff(104, 107, [("100.00", "3")]))
    assert feed.syncs[SYM].last_seq == 107 and feed.stats[SYM].gaps == 0


def test_binance_redelivered_diff_is_a_duplicate_not_a_gap() -> None:
    # Kafka delivers at least once: the same message twice must leave the book as once
    feed = live_feed(100)
    msg = diff(101, 105, [("100.00", "2")])
    feed.on_message(msg)
    feed.on_message(diff(106, 106, [("100.00", "4")]))
    assert feed.on_message(msg) == []
    assert feed.books[SYM].bids[px("100")] == px("4") and feed.syncs[SYM].last_seq == 106


def test_binance_stale_snapshot_is_ignored_while_live() -> None:
    feed = live_feed(100)
    feed.on_message(diff(101, 110, [("100.00", "2")]))
    assert feed.on_message(snapshot(105, [("1.0", "1")], [])) == []
    assert feed.stats[SYM].stale_snapshots == 1 and feed.books[SYM].bids[px("100")] == px("2")


def test_binance_newer_snapshot_while_live_replaces_the_book() -> None:
    feed = live_feed(100)
    events = feed.on_message(snapshot(120, [("90.00", "1")], [("91.00", "1")]))
    assert events[0].kind == Kind.SNAPSHOT_BEGIN
    assert levels(feed) == {"bids": {px("90"): px("1")}, "asks": {px("91"): px("1")}}
    assert feed.on_message(diff(110, 115, [("90.00", "5")])) == []  # older than the new snapshot


def test_binance_books_of_two_symbols_are_independent() -> None:
    feed = live_feed(100)
    feed.on_message(diff(1, 1, [("5.0", "1")], sym="ETHUSDT"))
    assert not feed.syncs["ETHUSDT"].live and feed.syncs[SYM].live


# -- USD-M futures: the pu rule ---------------------------------------------------------------------


def test_binance_futures_first_diff_must_cover_lastUpdateId_itself() -> None:
    feed = live_feed(100)
    feed.on_message(diff(90, 100, [("100.00", "5")], pu=89))  # futures: U <= 100 <= u, u == 100 accepted
    assert feed.syncs[SYM].last_seq == 100 and feed.books[SYM].bids[px("100")] == px("5")
    other = live_feed(100)
    with pytest.raises(SequenceGap) as info:
        other.on_message(diff(101, 105, [("100.00", "5")], pu=100))  # spot would accept; futures needs U <= 100
    assert (info.value.expected, info.value.got) == (100, 101)


def test_binance_futures_drops_diffs_with_u_below_lastUpdateId() -> None:
    feed = live_feed(100)
    assert feed.on_message(diff(80, 99, [("100.00", "5")], pu=79)) == []
    assert feed.stats[SYM].stale == 1 and feed.syncs[SYM].last_seq == 100


def test_binance_futures_pu_must_equal_previous_u_even_when_U_jumps() -> None:
    feed = live_feed(100)
    feed.on_message(diff(95, 120, [("100.00", "5")], pu=94))
    feed.on_message(diff(150, 160, [("100.00", "6")], pu=120))  # U jumps, pu chains: fine on futures
    assert feed.syncs[SYM].last_seq == 160
    with pytest.raises(SequenceGap) as info:
        feed.on_message(diff(161, 170, [("100.00", "7")], pu=165))
    assert (info.value.expected, info.value.got) == (160, 165)
    assert not feed.syncs[SYM].live


def test_binance_futures_resync_replays_buffer_with_the_futures_rules() -> None:
    feed = BinanceFeed()
    feed.on_message(diff(10, 20, [("100.00", "1")], pu=9))
    feed.on_message(diff(25, 30, [("100.00", "2")], pu=20))
    feed.on_message(diff(33, 40, [("100.00", "3")], pu=30))
    events = feed.on_message(snapshot(27, SNAP_BIDS, SNAP_ASKS))  # 25 <= 27 <= 30 straddles
    assert [e.seq for e in events if e.kind == Kind.LEVEL_SET][-2:] == [30, 40]
    assert feed.stats[SYM].stale == 1 and feed.books[SYM].bids[px("100")] == px("3")


# -- trades, tickers, klines ------------------------------------------------------------------------


def test_binance_trade_buyer_is_maker_means_the_aggressor_sold() -> None:
    feed = live_feed(100)
    (e,) = feed.on_message(trade(42, "100.00", "0.25", True))
    assert (e.kind, e.side, e.flags, e.price, e.size) == (
        Kind.TRADE,
        Side.BID,
        FLAG_AGGRESSOR_ASK,
        px("100"),
        px("0.25"),
    )
    assert (e.order_id, e.seq, e.ts) == (42, 100, (E0 + 4) * 1_000_000)  # trade id; the book's update id; T
    (e,) = feed.on_message(trade(43, "101.00", "1", False))
    assert (e.side, e.flags) == (Side.ASK, FLAG_AGGRESSOR_BID)
    assert levels(feed) == levels(live_feed(100))  # prints leave an L2 book alone


def test_binance_aggtrade_decodes_like_a_trade_with_its_aggregate_id() -> None:
    (e,) = live_feed(100).on_message(trade(7, "100.00", "1", True, kind="aggTrade"))
    assert (e.kind, e.order_id, e.flags) == (Kind.TRADE, 7, FLAG_AGGRESSOR_ASK)


def test_binance_trade_before_any_snapshot_has_seq_0() -> None:
    (e,) = BinanceFeed().on_message(trade(1, "100.00", "1", False))
    assert e.seq == 0


def test_binance_bookticker_at_the_books_u_is_compared_with_the_best_levels() -> None:
    feed = live_feed(100)
    feed.on_message(diff(101, 101, [("100.00", "2")]))
    assert feed.on_message(ticker(101, "100.00", "2", "101.00", "1.5")) == []
    assert feed.tickers[SYM] == BookTicker(SYM, 101, px("100"), px("2"), px("101"), px("1.5"))
    feed.on_message(ticker(101, "100.00", "9", "101.00", "1.5"))  # a book that drifted would show this
    st_ = feed.stats[SYM]
    assert (st_.tickers_matched, st_.tickers_mismatched) == (1, 1)


def test_binance_bookticker_ahead_of_the_book_is_compared_when_a_diff_ends_at_its_u() -> None:
    feed = live_feed(100)
    feed.on_message(ticker(103, "100.00", "2", "101.00", "1.5"))  # ticker stream runs ahead of depth@100ms
    feed.on_message(ticker(105, "100.00", "2", "100.50", "1"))  # u inside the next diff: never a book state here
    assert feed.stats[SYM].tickers_matched == 0
    feed.on_message(diff(101, 103, [("100.00", "2")]))
    feed.on_message(diff(104, 107, [], [("100.50", "1")]))
    st_ = feed.stats[SYM]
    assert (st_.tickers_matched, st_.tickers_mismatched, st_.tickers_not_comparable) == (1, 0, 1)


def test_binance_futures_bookticker_with_event_type_is_recognised() -> None:
    feed = live_feed(100)
    ev = {"e": "bookTicker", "u": 100, "s": SYM, "b": "100.00", "B": "1.0", "a": "101.00", "A": "1.5", "T": 1, "E": 2}
    assert feed.on_message(enc(ev)) == []
    assert feed.stats[SYM].tickers_matched == 1


def test_binance_kline_is_ignored() -> None:
    kline = {"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": 1, "s": SYM, "k": {"t": 1, "s": SYM}}}
    assert live_feed().on_message(enc(kline)) == []


# -- crossed books, symbols, keys --------------------------------------------------------------------


def test_binance_crossed_book_is_reported_after_the_diff_is_applied() -> None:
    feed = live_feed(100)
    with pytest.raises(CrossedBook) as info:
        feed.on_message(diff(101, 101, [("101.50", "1")]))
    assert info.value.seq == 101 and feed.syncs[SYM].last_seq == 101
    assert BinanceFeed(check_crossed=False).on_message(snapshot(1, [("2.0", "1")], [("1.0", "1")]))


def test_binance_unconfigured_symbol_is_refused() -> None:
    feed = BinanceFeed(symbols={"ETHUSDT"})
    with pytest.raises(UnknownSymbol):
        feed.on_message(diff(1, 2, [("1.0", "1")]))
    with pytest.raises(UnknownSymbol):
        feed.on_message(trade(1, "1.0", "1", True))


@pytest.mark.parametrize(
    "raw",
    [
        diff(1, 2),
        diff(1, 2, wrap=False),
        snapshot(1),
        ticker(1, "1.0", "1", "2.0", "1"),
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}',
    ],
)
def test_binance_key_is_the_symbol(raw: bytes) -> None:
    assert BinanceFeed().key(raw) == SYM


def test_binance_key_of_a_message_without_symbol_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        BinanceFeed().key(b'{"result":null,"id":1}')


# -- malformed input: typed error, book untouched, the feed goes on ----------------------------------

GOOD = json.loads(diff(101, 102, [("100.00", "1")], [("101.00", "1")]))


def mutate(**fields: Any) -> bytes:
    msg = json.loads(json.dumps(GOOD))
    msg["data"].update(fields)
    return enc(msg)


MALFORMED: dict[str, tuple[bytes, type[DecodeError]]] = {
    "truncated_json": (diff(101, 102, [("100.00", "1")])[:-7], DecodeError),
    "empty": (b"", DecodeError),
    "not_an_object": (b"[1,2,3]", DecodeError),
    "data_not_an_object": (b'{"stream":"x@depth","data":[1]}', DecodeError),
    "U_is_a_string": (mutate(U="101"), DecodeError),
    "u_is_a_float": (mutate(u=102.0), DecodeError),
    "u_is_a_bool": (mutate(u=True), DecodeError),
    "u_is_negative": (mutate(u=-1), DecodeError),
    "U_after_u": (mutate(U=103, u=102), DecodeError),
    "missing_u": (enc({"data": {k: v for k, v in GOOD["data"].items() if k != "u"}}), DecodeError),
    "bids_not_a_list": (mutate(b={"100.00": "1"}), DecodeError),
    "level_with_three_fields": (mutate(b=[["100.00", "1", "x"]]), DecodeError),
    "level_not_a_pair": (mutate(b=["100.00"]), DecodeError),
    "price_as_json_number": (mutate(b=[[100.0, "1"]]), DecodeError),
    "price_NaN_string": (mutate(b=[["NaN", "1"]]), DecodeError),
    "price_NaN_literal": (diff(101, 102).replace(b'"b":[]', b'"b":[[NaN,"1"]]'), DecodeError),
    "price_infinity": (mutate(a=[["Infinity", "1"]]), DecodeError),
    "price_zero": (mutate(b=[["0.00000000", "1"]]), DecodeError),
    "price_exponent": (mutate(b=[["1e5", "1"]]), DecodeError),
    "price_too_many_decimals": (mutate(b=[["100.000000001", "1"]]), DecodeError),
    "negative_qty": (mutate(a=[["101.00", "-1.0"]]), DecodeError),
    "symbol_not_a_string": (mutate(s=5), DecodeError),
    "huge_integer": (diff(101, 102).replace(b'"u":102', b'"u":' + b"9" * 5000), DecodeError),
    "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, DecodeError),
    "non_utf8_bytes": (diff(101, 102).replace(SYM.encode(), b"BTC\xff\xfeUSDT"), DecodeError),
    "utf16_json": (diff(101, 102).decode().encode("utf-16"), DecodeError),
    "unknown_event_type": (mutate(e="forceOrder"), UnknownMessageType),
    "subscription_ack": (b'{"result":null,"id":1}', UnknownMessageType),
    "bare_rest_snapshot_without_symbol": (b'{"lastUpdateId":5,"bids":[],"asks":[]}', DecodeError),
    "snapshot_without_symbol": (b'{"snapshot":{"lastUpdateId":5,"bids":[],"asks":[]}}', DecodeError),
    "snapshot_body_not_object": (b'{"symbol":"BTCUSDT","snapshot":[1]}', DecodeError),
    "snapshot_bad_level": (snapshot(500, [("100.00", "abc")]), DecodeError),
    "trade_m_not_bool": (trade(1, "100.00", "1", True).replace(b'"m":true', b'"m":"true"'), DecodeError),
    "trade_negative_qty": (trade(1, "100.00", "-1", True), DecodeError),
    "ticker_bad_price": (ticker(100, "x", "1", "101.00", "1"), DecodeError),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_binance_malformed_message_raises_typed_error_and_feed_keeps_working(name: str) -> None:
    raw, expected = MALFORMED[name]
    feed = live_feed(100)
    before, last = levels(feed), feed.syncs[SYM].last_seq
    with pytest.raises(expected) as info:
        feed.on_message(raw)
    assert info.value.venue == "binance"
    assert levels(feed) == before and feed.syncs[SYM].last_seq == last and feed.syncs[SYM].live
    feed.on_message(diff(101, 102, [("100.00", "4")]))
    assert feed.books[SYM].bids[px("100")] == px("4") and feed.syncs[SYM].last_seq == 102


def test_binance_100MB_line_is_an_oversized_message() -> None:
    feed = live_feed(100)
    raw = diff(101, 102)[:-2] + b" " * (100 * 1024 * 1024) + b"}}"
    with pytest.raises(OversizedMessage):
        feed.on_message(raw)
    del raw
    feed.on_message(diff(101, 102, [("100.00", "4")]))
    assert feed.syncs[SYM].last_seq == 102


def test_binance_malformed_diff_while_buffering_is_not_buffered() -> None:
    feed = BinanceFeed()
    with pytest.raises(DecodeError):
        feed.on_message(mutate(b=[["NaN", "1"]]))
    assert not feed.syncs.get(SYM) or not feed.syncs[SYM].buffer


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_binance_malformed_message_never_leaks_a_non_feed_error_from_key_or_decode(name: str) -> None:
    raw, _ = MALFORMED[name]
    feed = BinanceFeed()
    with contextlib.suppress(FeedError):
        feed.key(raw)
    with pytest.raises(FeedError):
        feed.on_message(raw)


# -- the procedure against a brute-force book, on random streams ------------------------------------


@st.composite
def venue_streams(draw: st.DrawFn) -> tuple[list[tuple[int, int, list, list]], list[tuple[int, int]], set[int]]:
    """A venue's update stream chunked into diffs, where snapshots are taken, and which diffs get lost."""
    n = draw(st.integers(3, 40))
    prices = [f"{p}.00" for p in (97, 98, 99, 100, 101, 102, 103, 104)]
    diffs, uid = [], 1
    for _ in range(n):
        span = draw(st.integers(1, 4))
        b = draw(st.lists(st.tuples(st.sampled_from(prices[:4]), st.sampled_from(["0", "1", "2.5", "3"])), max_size=3))
        a = draw(st.lists(st.tuples(st.sampled_from(prices[4:]), st.sampled_from(["0", "1", "2.5", "3"])), max_size=3))
        diffs.append((uid, uid + span - 1, b, a))
        uid += span
    # (position in the message stream, snapshot taken at the end of diff k)
    snaps = draw(st.lists(st.tuples(st.integers(0, n), st.integers(-1, n - 1)), min_size=1, max_size=4))
    lost = draw(st.sets(st.integers(0, n - 1), max_size=3))
    return diffs, snaps, lost


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue_streams())
def test_binance_live_book_always_equals_brute_force_at_its_update_id(stream) -> None:
    diffs, snaps, lost = stream
    base_bids, base_asks = [("96.00", "1")], [("105.00", "1")]

    def snap_msg(k: int) -> bytes:
        upto = diffs[: k + 1]
        last_id = upto[-1][1] if upto else 0
        book = brute_force(0, base_bids, base_asks, upto)
        return snapshot(
            last_id,
            [(f"{p // 10**8}.00", str(q / 10**8)) for p, q in book["bids"].items()],
            [(f"{p // 10**8}.00", str(q / 10**8)) for p, q in book["asks"].items()],
        )

    messages: list[bytes] = []
    for i in range(len(diffs) + 1):
        messages += [snap_msg(k) for pos, k in snaps if pos == i]
        if i < len(diffs) and i not in lost:
            first, last, b, a = diffs[i]
            messages.append(diff(first, last, b, a))
    feed = BinanceFeed(check_crossed=False)
    for raw in messages:
        with contextlib.suppress(SequenceGap):
            feed.on_message(raw)
        sync = feed.syncs.get(SYM)
        if sync is not None and sync.live:
            upto = [d for d in diffs if d[1] <= sync.last_seq]
            assert levels(feed) == brute_force(0, base_bids, base_asks, upto), "live book drifted from the venue"


# -- read_capture ------------------------------------------------------------------------------------


def test_binance_read_capture_wraps_a_bare_snapshot_with_the_symbol_of_the_next_event(tmp_path: Path) -> None:
    path = tmp_path / "capture.gz"
    lines = [b'5 {"lastUpdateId":100,"bids":[],"asks":[]}', b"6 " + diff(101, 101, [("1.0", "1")])]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    recs = list(BinanceFeed.read_capture(path))
    assert [r.recv_ts for r in recs] == [5, 6]
    assert json.loads(recs[0].raw) == {"symbol": SYM, "snapshot": {"lastUpdateId": 100, "bids": [], "asks": []}}
    assert recs[1].raw == diff(101, 101, [("1.0", "1")])


def test_binance_read_capture_falls_back_to_the_symbol_in_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "spot_ethusdt_20240808"
    path.write_bytes(b'5 {"lastUpdateId":100,"bids":[],"asks":[]}\n')
    (rec,) = BinanceFeed.read_capture(path)
    assert json.loads(rec.raw)["symbol"] == "ETHUSDT"


def test_binance_read_capture_merges_cryptofeed_http_snapshots_by_time(tmp_path: Path) -> None:
    ws = [
        b"wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms <-> 1.5",
        b"2.25: " + diff(99, 100),
        b"4.0: " + diff(101, 102, [("1.0", "2")]),
    ]
    body = b'{"lastUpdateId":100,"bids":[["1.0","1"]],"asks":[]}'
    http = [b"https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000 -> 3.000000001: " + body]
    (tmp_path / "BINANCE.ws.1.0.gz").write_bytes(gzip.compress(b"\n".join(ws)))
    (tmp_path / "BINANCE.http.0.0.gz").write_bytes(gzip.compress(b"\n".join(http)))
    (tmp_path / "KRAKEN.http.0.0.gz").write_bytes(gzip.compress(http[0].replace(b"BTCUSDT", b"XBTUSD")))
    recs = list(BinanceFeed.read_capture(tmp_path / "BINANCE.ws.1.0.gz"))
    assert [r.recv_ts for r in recs] == [2_250_000_000, 3_000_000_001, 4_000_000_000]
    assert recs[1].raw.startswith(b'{"symbol":"BTCUSDT","snapshot":{"lastUpdateId":100,')
    feed = BinanceFeed()
    for r in recs:
        feed.on_message(r.raw, r.recv_ts)
    assert feed.syncs[SYM].last_seq == 102 and feed.books[SYM].bids[px("1")] == px("2")
