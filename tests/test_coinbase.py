"""Coinbase Exchange feed: level2 and full channels, sequence gaps and resync, malformed input."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook.book import L3Book
from orderbook.errors import (
    BookError,
    CaptureError,
    DecodeError,
    OutOfSync,
    OversizedMessage,
    SequenceGap,
    UnknownMessageType,
    UnknownOrder,
    UnknownSymbol,
)
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Kind, Side
from orderbook.numbers import format_fixed
from orderbook.sync import SyncState
from orderbook.venues.coinbase import CoinbaseFeed, VenueErrorMessage, parse_time, snapshot_messages

P = "BTC-USD"
T = "2021-04-17T16:43:37.075687Z"
T_NS = 1618677817075687000


def raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def px(x: str) -> int:
    """A decimal string at Coinbase's 8 decimals."""
    whole, _, frac = x.partition(".")
    return int(whole) * 10**8 + int(frac.ljust(8, "0") or "0")


def l2_snapshot(product: str = P, bids=(("100.00", "1.5"),), asks=(("101.00", "2"),)) -> bytes:
    return raw(type="snapshot", product_id=product, bids=[list(b) for b in bids], asks=[list(a) for a in asks])


def l2update(changes, product: str = P, time: str = T) -> bytes:
    return raw(type="l2update", product_id=product, changes=[list(c) for c in changes], time=time)


def full(typ: str, seq: int, product: str = P, **fields: Any) -> bytes:
    return raw(type=typ, product_id=product, sequence=seq, time=T, **fields)


def opened(seq: int, oid: str, side: str, price: str, size: str) -> bytes:
    return full("open", seq, order_id=oid, side=side, price=price, remaining_size=size)


def match(seq: int, maker: str, side: str, price: str, size: str, taker: str = "t") -> bytes:
    return full("match", seq, maker_order_id=maker, taker_order_id=taker, side=side, price=price, size=size)


def done(seq: int, oid: str, side: str, price: str | None, remaining: str | None, reason: str = "canceled") -> bytes:
    fields: dict[str, Any] = {"order_id": oid, "side": side, "reason": reason}
    if price is not None:
        fields |= {"price": price, "remaining_size": remaining}
    return full("done", seq, **fields)


def l3_snapshot(seq: int, bids=(), asks=(), product: str = P) -> bytes:
    (msg,) = snapshot_messages({"sequence": seq, "bids": list(map(list, bids)), "asks": list(map(list, asks))}, product)
    return msg


def body_of(book: L3Book, seq: int) -> dict[str, Any]:
    """The REST level-3 body Coinbase would serve for this book (queue order kept per price)."""

    def rows(side: Side, levels) -> list[list[str]]:
        return [[format_fixed(p, 8), format_fixed(size, 8), oid] for p in levels for oid, size in book.queue(side, p)]

    return {"sequence": seq, "bids": rows(Side.BID, book.bids), "asks": rows(Side.ASK, book.asks)}


def state(book: L3Book) -> tuple:
    queues = {side: {p: book.queue(side, p) for p in levels} for side, levels in ((1, book.bids), (-1, book.asks))}
    return dict(book.bids), dict(book.asks), queues


def live_l3(seq: int = 10) -> CoinbaseFeed:
    """A feed whose BTC-USD L3 book is live at `seq`: bids a(1)@100, b(2)@100, ask s(3)@101."""
    feed = CoinbaseFeed()
    feed.on_message(l3_snapshot(seq, bids=[("100", "1", "a"), ("100", "2", "b")], asks=[("101", "3", "s")]))
    return feed


# --- level2 ----------------------------------------------------------------------------------------------


def test_level2_snapshot_then_l2update_sizes_are_absolute_and_zero_removes() -> None:
    feed = CoinbaseFeed()
    events = feed.on_message(l2_snapshot(bids=[("100.00", "1.5"), ("99.5", "3")], asks=[("101", "2")]))
    assert [e.kind for e in events] == [Kind.SNAPSHOT_BEGIN, *[Kind.LEVEL_SET] * 3, Kind.SNAPSHOT_END]
    book = feed.books[P]
    assert book.best_bid() == (px("100"), px("1.5"))
    events = feed.on_message(l2update([("buy", "100.00", "0.25"), ("buy", "99.5", "0"), ("sell", "100.5", "1")]))
    assert [(e.side, e.price, e.size) for e in events] == [
        (Side.BID, px("100"), px("0.25")),
        (Side.BID, px("99.5"), 0),
        (Side.ASK, px("100.5"), px("1")),
    ]
    assert dict(book.bids) == {px("100"): px("0.25")}
    assert book.best_ask() == (px("100.5"), px("1"))
    assert all(e.ts == T_NS and e.venue == "coinbase" and e.symbol == P for e in events)


def test_level2_has_no_sequence_so_seq_counts_messages_per_product() -> None:
    feed = CoinbaseFeed()
    feed.on_message(l2_snapshot(P))
    feed.on_message(l2_snapshot("ETH-USD"))
    (e1,) = feed.on_message(l2update([("buy", "99", "1")], P))
    (e2,) = feed.on_message(l2update([("buy", "99", "1")], "ETH-USD"))
    (e3,) = feed.on_message(l2update([("buy", "98", "1")], P))
    assert (e1.seq, e2.seq, e3.seq) == (2, 2, 3)
    assert feed.syncs[P].last_seq == 3


def test_l2update_before_its_snapshot_is_dropped_with_out_of_sync() -> None:
    feed = CoinbaseFeed()
    with pytest.raises(OutOfSync):
        feed.on_message(l2update([("buy", "99", "1")]))
    feed.on_message(l2_snapshot())
    assert px("99") not in feed.books[P].bids
    assert feed.syncs[P].live


def test_match_side_is_the_maker_side_so_the_aggressor_is_the_other_one() -> None:
    feed = CoinbaseFeed()
    feed.on_message(l2_snapshot())
    (sold,) = feed.on_message(match(77, "m1", "buy", "100.00", "0.5"))  # maker bid hit: a seller aggressed
    last = raw(type="last_match", product_id=P, sequence=78, time=T, maker_order_id="m2", side="sell", price="101")
    (bought,) = feed.on_message(last[:-1] + b', "size": "1"}')
    assert (sold.kind, sold.seq, sold.side, sold.flags) == (Kind.TRADE, 77, Side.BID, FLAG_AGGRESSOR_ASK)
    assert (bought.kind, bought.seq, bought.side, bought.flags) == (Kind.TRADE, 78, Side.ASK, FLAG_AGGRESSOR_BID)
    assert (sold.price, sold.size) == (px("100"), px("0.5"))
    assert feed.books[P].best_bid() == (px("100"), px("1.5"))  # an L2 book learns of fills from l2update


@pytest.mark.parametrize(
    "msg",
    [
        raw(type="ticker", product_id=P, sequence=5, best_bid="1", best_ask="2", price="1"),
        raw(type="heartbeat", product_id=P, sequence=5, last_trade_id=3, time=T),
        raw(type="subscriptions", channels=[{"name": "level2", "product_ids": [P]}]),
    ],
)
def test_ticker_heartbeat_and_subscriptions_change_nothing(msg: bytes) -> None:
    feed = CoinbaseFeed()
    feed.on_message(l2_snapshot())
    before = feed.books[P].to_dict()
    assert feed.on_message(msg) == []
    assert feed.books[P].to_dict() == before


def test_error_message_from_coinbase_is_raised_not_swallowed() -> None:
    with pytest.raises(VenueErrorMessage, match="Failed to subscribe"):
        CoinbaseFeed().on_message(raw(type="error", message="Failed to subscribe", reason="BAD-USD is not a product"))


def test_product_keeps_the_book_type_of_its_first_message() -> None:
    feed = CoinbaseFeed()
    feed.on_message(l2_snapshot())
    with pytest.raises(BookError, match="L2 book"):
        feed.on_message(opened(1, "x", "buy", "100", "1"))
    feed2 = live_l3()
    with pytest.raises(BookError, match="L3 book"):
        feed2.on_message(l2update([("buy", "99", "1")]))
    assert feed2.books[P].best_bid() == (px("100"), px("3"))


def test_unconfigured_product_raises_unknown_symbol() -> None:
    feed = CoinbaseFeed({"ETH-USD"})
    with pytest.raises(UnknownSymbol):
        feed.on_message(l2_snapshot(P))
    assert P not in feed.books


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 30), st.integers(0, 5)),
        min_size=1,
        max_size=40,
    )
)
def test_level2_book_equals_a_dict_of_the_last_absolute_size_per_price(changes) -> None:
    feed = CoinbaseFeed(check_crossed=False)
    feed.on_message(l2_snapshot(bids=[], asks=[]))
    model: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
    for side, price, size in changes:
        feed.on_message(l2update([(side, f"{price}.5", str(size))]))
        model[side][px(f"{price}.5")] = size * 10**8
    book = feed.books[P]
    assert dict(book.bids) == {p: s for p, s in model["buy"].items() if s}
    assert dict(book.asks) == {p: s for p, s in model["sell"].items() if s}


# --- full channel ---------------------------------------------------------------------------------------


def test_full_channel_life_cycle_open_match_change_done_moves_queue_position() -> None:
    feed = live_l3(10)
    book = feed.books[P]
    assert feed.on_message(full("received", 11, order_id="c", side="buy", order_type="limit")) == []
    (add,) = feed.on_message(opened(12, "c", "buy", "100", "4"))
    assert (add.kind, add.order_id, add.seq, add.size) == (Kind.ADD, "c", 12, px("4"))
    assert book.queue_position("c") == px("3")  # a(1) and b(2) ahead
    (ex,) = feed.on_message(match(13, "a", "buy", "100", "0.25"))
    assert (ex.kind, ex.order_id, ex.size, ex.flags) == (Kind.EXECUTE, "a", px("0.25"), FLAG_AGGRESSOR_ASK)
    assert book.queue_position("c") == px("2.75")
    (ch,) = feed.on_message(full("change", 14, order_id="b", side="buy", price="100", old_size="2", new_size="1.5"))
    assert ch.kind == Kind.CHANGE and book.queue(Side.BID, px("100"))[1] == ("b", px("1.5"))
    assert book.queue_position("c") == px("2.25")  # b kept its place, only smaller
    (dl,) = feed.on_message(done(15, "a", "buy", "100", "0.75"))
    assert (dl.kind, dl.order_id, dl.size) == (Kind.DELETE, "a", px("0.75"))
    assert book.queue_position("c") == px("1.5")
    assert book.best_bid() == (px("100"), px("5.5"))
    assert feed.syncs[P].last_seq == 15


def test_done_for_an_order_that_never_rested_is_ignored() -> None:
    feed = live_l3(10)
    before = state(feed.books[P])
    feed.on_message(full("received", 11, order_id="mkt", side="sell", order_type="market", funds="100"))
    assert feed.on_message(match(12, "a", "buy", "100", "1", taker="mkt")) != []
    assert feed.on_message(done(13, "mkt", "sell", None, None, reason="filled")) == []
    assert feed.books[P].orders.keys() == {"b", "s"} and before != state(feed.books[P])
    assert feed.syncs[P].live


def test_done_after_a_match_filled_the_whole_order_only_confirms_it() -> None:
    feed = live_l3(10)
    feed.on_message(match(11, "s", "sell", "101", "3"))
    assert "s" not in feed.books[P].orders and feed.books[P].best_ask() is None
    assert feed.on_message(done(12, "s", "sell", "101", "0", reason="filled")) == []
    assert feed.syncs[P].live and feed.syncs[P].last_seq == 12


def test_done_with_a_remaining_size_the_book_disagrees_with_forces_resync() -> None:
    feed = live_l3(10)
    with pytest.raises(BookError, match="remaining_size"):
        feed.on_message(done(11, "b", "buy", "100", "1.5"))
    assert "b" not in feed.books[P].orders
    assert feed.syncs[P].state is SyncState.AWAITING_SNAPSHOT


def test_change_of_market_order_funds_or_of_an_order_not_yet_open_is_ignored() -> None:
    feed = live_l3(10)
    before = state(feed.books[P])
    assert feed.on_message(full("change", 11, order_id="m", side="buy", new_funds="5", old_funds="9", price=None)) == []
    assert feed.on_message(full("change", 12, order_id="r", side="buy", new_size="1", old_size="2", price="99")) == []
    assert state(feed.books[P]) == before and feed.syncs[P].last_seq == 12


def test_change_to_a_new_price_loses_queue_priority() -> None:
    feed = live_l3(10)
    book = feed.books[P]
    feed.on_message(opened(11, "c", "buy", "99", "1"))
    (e,) = feed.on_message(
        full("change", 12, order_id="a", side="buy", price="100", new_price="99", old_size="1", new_size="1")
    )
    assert (e.kind, e.order_id, e.new_order_id, e.price) == (Kind.REPLACE, "a", "a", px("99"))
    assert book.queue(Side.BID, px("99")) == [("c", px("1")), ("a", px("1"))]
    assert book.queue_position("b") == 0


def test_match_on_a_maker_not_in_the_book_drops_to_awaiting_snapshot() -> None:
    feed = live_l3(10)
    with pytest.raises(UnknownOrder):
        feed.on_message(match(11, "ghost", "buy", "100", "1"))
    assert feed.syncs[P].state is SyncState.AWAITING_SNAPSHOT
    assert feed.on_message(opened(12, "c", "buy", "100", "1")) == []  # buffered now
    assert len(feed.syncs[P].buffer) == 1


def test_full_channel_buffers_until_l3_snapshot_and_replays_only_newer_messages() -> None:
    feed = CoinbaseFeed()
    assert feed.on_message(opened(9, "old", "buy", "99", "1")) == []  # in the snapshot already
    assert feed.on_message(opened(10, "a", "buy", "100", "1")) == []
    assert feed.on_message(opened(11, "c", "buy", "100", "2")) == []
    assert feed.on_message(match(12, "a", "buy", "100", "0.5")) == []
    events = feed.on_message(l3_snapshot(10, bids=[("99", "1", "old"), ("100", "1", "a")]))
    kinds = [e.kind for e in events]
    assert kinds == [Kind.SNAPSHOT_BEGIN, Kind.ADD, Kind.ADD, Kind.SNAPSHOT_END, Kind.ADD, Kind.EXECUTE]
    book = feed.books[P]
    assert book.queue(Side.BID, px("100")) == [("a", px("0.5")), ("c", px("2"))]
    assert feed.syncs[P].last_seq == 12 and feed.syncs[P].live


def test_stale_and_duplicate_full_messages_are_dropped() -> None:
    feed = live_l3(10)
    feed.on_message(opened(11, "c", "buy", "100", "1"))
    before = state(feed.books[P])
    assert feed.on_message(opened(11, "c", "buy", "100", "1")) == []  # duplicate delivery
    assert feed.on_message(match(5, "a", "buy", "100", "1")) == []  # older than the snapshot
    assert state(feed.books[P]) == before and feed.syncs[P].last_seq == 11


def test_sequence_gap_loses_sync_buffers_and_a_fresh_snapshot_restores_the_exact_book() -> None:
    msgs = [
        opened(11, "c", "buy", "100", "4"),
        opened(12, "d", "sell", "102", "1"),
        match(13, "a", "buy", "100", "1"),
        done(14, "a", "buy", "100", "0", reason="filled"),
        full("change", 15, order_id="c", side="buy", price="100", old_size="4", new_size="3"),
        opened(16, "e", "buy", "100", "2"),
        match(17, "s", "sell", "101", "1"),
        done(18, "d", "sell", "102", "1"),
        opened(19, "f", "sell", "101", "5"),
    ]
    reference = live_l3(10)
    at_15 = None
    for m in msgs:
        reference.on_message(m)
        if reference.syncs[P].last_seq == 15:
            at_15 = body_of(reference.books[P], 15)  # the REST snapshot Coinbase would serve at 15
    feed = live_l3(10)
    feed.on_message(msgs[0])
    with pytest.raises(SequenceGap) as gap:
        feed.on_message(msgs[2])  # 12 was lost
    assert (gap.value.expected, gap.value.got, gap.value.symbol) == (12, 13, P)
    assert feed.syncs[P].state is SyncState.AWAITING_SNAPSHOT and feed.syncs[P].resyncs == 1
    for m in msgs[3:]:
        assert feed.on_message(m) == []  # buffered
    events = feed.on_message(snapshot_messages(at_15, P)[0])
    assert [e.seq for e in events if e.seq > 15] == [16, 17, 18, 19]
    assert state(feed.books[P]) == state(reference.books[P])
    assert feed.syncs[P].live and feed.syncs[P].last_seq == 19


def test_snapshot_older_than_the_buffered_messages_is_another_gap() -> None:
    feed = CoinbaseFeed()
    feed.on_message(opened(20, "c", "buy", "100", "1"))
    with pytest.raises(SequenceGap) as gap:
        feed.on_message(l3_snapshot(15, bids=[("100", "1", "a")]))
    assert (gap.value.expected, gap.value.got) == (16, 20)
    assert feed.syncs[P].state is SyncState.AWAITING_SNAPSHOT and len(feed.syncs[P].buffer) == 1
    feed.on_message(l3_snapshot(19, bids=[("100", "1", "a")]))
    assert feed.books[P].queue(Side.BID, px("100")) == [("a", px("1")), ("c", px("1"))]


def test_match_before_the_product_has_a_book_is_kept_for_the_l3_replay() -> None:
    feed = CoinbaseFeed()
    assert feed.on_message(match(11, "a", "buy", "100", "0.5")) == []
    feed.on_message(full("received", 12, order_id="x", side="buy", order_type="limit"))
    feed.on_message(l3_snapshot(10, bids=[("100", "1", "a")]))
    assert feed.books[P].best_bid() == (px("100"), px("0.5"))


def test_l3_snapshot_in_parts_is_staged_until_the_last_part() -> None:
    body = {"sequence": 10, "bids": [["100", "1", f"b{i}"] for i in range(5)], "asks": [["101", "1", "s"]]}
    parts = snapshot_messages(body, P, part_entries=2)
    assert len(parts) == 3
    feed = CoinbaseFeed()
    assert feed.on_message(parts[0]) == [] and feed.on_message(parts[1]) == []
    assert not feed.syncs[P].live
    feed.on_message(parts[2])
    assert feed.books[P].queue_position("b4") == px("4") and feed.syncs[P].live


def test_snapshot_part_out_of_order_is_rejected_and_the_book_keeps_waiting() -> None:
    parts = snapshot_messages({"sequence": 10, "bids": [["100", "1", f"b{i}"] for i in range(4)]}, P, part_entries=2)
    feed = CoinbaseFeed()
    with pytest.raises(DecodeError, match="does not follow"):
        feed.on_message(parts[1])
    assert not feed.syncs[P].live and P not in feed._staged
    feed.on_message(parts[0])
    feed.on_message(parts[1])
    assert feed.syncs[P].live and len(feed.books[P].orders) == 4


def test_level2_rest_snapshot_entries_carry_order_counts() -> None:
    feed = CoinbaseFeed()
    (msg,) = snapshot_messages({"sequence": 7, "bids": [["100", "1.5", 3]], "asks": [["101", "2", 1]]}, P)
    assert json.loads(msg)["type"] == "l2_snapshot"
    feed.on_message(msg)
    assert feed.books[P].to_dict() == {"bids": {px("100"): px("1.5")}, "asks": {px("101"): px("2")}}
    with pytest.raises(DecodeError, match="order count"):
        feed.on_message(raw(type="l2_snapshot", product_id=P, sequence=8, bids=[["100", "1", "x"]], asks=[]))


# --- malformed input ------------------------------------------------------------------------------------

MALFORMED_L2 = {
    "truncated_json": (l2update([("buy", "99", "1")])[:-7], DecodeError),
    "price_nan": (l2update([("buy", "NaN", "1")]), DecodeError),
    "price_json_number": (raw(type="l2update", product_id=P, changes=[["buy", 99.5, "1"]], time=T), DecodeError),
    "negative_size": (l2update([("buy", "99", "-1")]), DecodeError),
    "unknown_type": (raw(type="l2upgrade", product_id=P), UnknownMessageType),
    "unknown_side": (l2update([("bid", "99", "1")]), DecodeError),
    "change_of_two_fields": (l2update([("buy", "99")]), DecodeError),
    "bad_time": (l2update([("buy", "99", "1")], time="yesterday"), DecodeError),
    "not_an_object": (b'["snapshot"]', DecodeError),
    "non_utf8": (b'{"type":"l2update","product_id":"BTC-USD\xff\xfe","changes":[]}', DecodeError),
    "oversized_100MB": (b'{"type":"l2update","x":"' + b"a" * 100_000_000 + b'"}', OversizedMessage),
}


@pytest.mark.parametrize("quirk", sorted(MALFORMED_L2))
def test_malformed_level2_message_raises_typed_error_and_feed_keeps_working(quirk: str) -> None:
    bad, error = MALFORMED_L2[quirk]
    feed = CoinbaseFeed()
    feed.on_message(l2_snapshot())
    before = feed.books[P].to_dict()
    with pytest.raises(error) as info:
        feed.on_message(bad)
    assert info.value.venue == "coinbase"
    assert feed.books[P].to_dict() == before
    feed.on_message(l2update([("buy", "99", "1")]))
    assert feed.books[P].bids[px("99")] == px("1")


MALFORMED_FULL = {
    "open_price_nan": opened(11, "c", "buy", "NaN", "1"),
    "open_negative_size": opened(11, "c", "buy", "100", "-1"),
    "open_unknown_side": opened(11, "c", "bid", "100", "1"),
    "open_without_order_id": full("open", 11, side="buy", price="100", remaining_size="1"),
    "sequence_as_string": raw(type="open", product_id=P, sequence="11", time=T, order_id="c", side="buy"),
    "truncated": opened(11, "c", "buy", "100", "1")[:40],
    # what no venue prints and the native decoder cannot hold: refused alike on both paths
    "order_id_lone_surrogate": opened(11, "\ud800", "buy", "100", "1"),
    "sequence_past_int64": full("open", 2**63, order_id="c", side="buy", price="100", remaining_size="1"),
    "time_before_int64_ns": opened(11, "c", "buy", "100", "1").replace(T.encode(), b"1677-09-21T00:12:43Z"),
    "time_in_other_digits": opened(11, "c", "buy", "100", "1").replace(b"2021-", "\uff12021-".encode()),
    "nan_literal": opened(11, "c", "buy", "100", "1")[:-1] + b', "x": NaN}',
}


@pytest.mark.parametrize("quirk", sorted(MALFORMED_FULL))
def test_malformed_full_message_leaves_book_and_sequence_untouched(quirk: str) -> None:
    feed = live_l3(10)
    before = state(feed.books[P])
    with pytest.raises(DecodeError):
        feed.on_message(MALFORMED_FULL[quirk])
    assert state(feed.books[P]) == before and feed.syncs[P].last_seq == 10 and feed.syncs[P].live
    feed.on_message(opened(11, "c", "buy", "100", "1"))  # the well-formed message with that sequence
    assert feed.books[P].queue_position("c") == px("3")


def test_an_unknown_type_and_an_error_message_are_worded_alike_on_both_paths() -> None:
    feed = CoinbaseFeed()
    with pytest.raises(UnknownMessageType, match="unknown message type <str>"):
        feed.on_message(raw(type="\u00e9"))
    with pytest.raises(VenueErrorMessage, match="Coinbase error message <int>: None"):
        feed.on_message(raw(type="error", message=7))


def test_malformed_l3_snapshot_entry_is_rejected_before_the_book_changes() -> None:
    feed = live_l3(10)
    before = state(feed.books[P])
    with pytest.raises(DecodeError, match="order id"):
        feed.on_message(raw(type="l3_snapshot", product_id=P, sequence=20, bids=[["100", "1", 5]], asks=[]))
    assert state(feed.books[P]) == before and feed.syncs[P].live


# --- helpers: key, time, captures ------------------------------------------------------------------------


def test_key_reads_the_product_id_without_decoding() -> None:
    feed = CoinbaseFeed()
    assert feed.key(match(1, "a", "buy", "1", "1", taker="t")) == P
    assert feed.key(raw(type="subscriptions", channels=[{"product_ids": [P]}])) == ""


def test_parse_time_is_exact_to_the_nanosecond() -> None:
    assert parse_time(T) == T_NS
    expected = int(datetime(2021, 4, 17, 16, 43, 37, tzinfo=UTC).timestamp()) * 10**9 + 75_687_000
    assert parse_time("2021-04-17T16:43:37.075687Z") == expected
    assert parse_time("2021-04-17T16:43:37Z") == expected - 75_687_000
    assert parse_time("2021-04-17T16:43:37.123456789Z") % 10**9 == 123_456_789
    with pytest.raises(DecodeError):
        parse_time("2021-13-17T16:43:37Z")
    assert parse_time("2262-04-11T23:47:16.854775807Z") == 2**63 - 1  # the last ns an event's int64 holds
    with pytest.raises(DecodeError, match="does not fit int64"):
        parse_time("2262-04-11T23:47:16.854775808Z")
    with pytest.raises(DecodeError, match="does not fit int64"):
        parse_time("3021-04-17T16:43:37.109951Z")  # what make fuzz found: a year digit flipped


def test_read_capture_skips_cryptofeed_headers_and_sent_lines(tmp_path: Path) -> None:
    path = tmp_path / "COINBASE.ws.1.0.gz"
    lines = [
        b"wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298",
        b'wss://ws-feed.pro.coinbase.com <- 1618677817.020616: {"type":"subscribe"}',
        b"1618677817.1292548: " + l2_snapshot(),
        b"1618677817.5: " + l2update([("buy", "99", "1")]),
    ]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    records = list(CoinbaseFeed.read_capture(path))
    assert [r.recv_ts for r in records] == [1618677817129254800, 1618677817500000000]
    assert records[0].raw == l2_snapshot()


def test_read_capture_wraps_a_rest_snapshot_file_in_parts(tmp_path: Path) -> None:
    body = {
        "product": P,
        "level": 3,
        "captured_at": "2026-08-07T20:04:10Z",
        "sequence": 42,
        "bids": [["100", "0.001", f"o{i}"] for i in range(12_000)],
        "asks": [["101", "1", "s"]],
    }
    path = tmp_path / "l3_snapshot.json.gz"
    path.write_bytes(gzip.compress(json.dumps(body).encode()))
    records = list(CoinbaseFeed.read_capture(path))
    assert len(records) == 2 and all(r.recv_ts == parse_time("2026-08-07T20:04:10Z") for r in records)
    feed = CoinbaseFeed()
    for r in records:
        feed.on_message(r.raw)
    assert len(feed.books[P].orders) == 12_001 and feed.syncs[P].last_seq == 42


def test_read_capture_hands_a_later_json_line_to_the_feed_instead_of_reading_the_rest_as_a_rest_body(
    tmp_path: Path,
) -> None:
    """Only a file whose first line is JSON is a REST snapshot: a later line that starts with `{` (a line cut
    by damage, a message recorded without its stamp) is one more message, as Kraken's and Binance's readers
    take it, not the start of a REST body that swallowed the lines after it (a bogus snapshot, or a bare
    JSON error)."""
    path = tmp_path / "COINBASE.ws.1.0.gz"
    stray = [b'{"type":"heartbeat","product_id":"BTC-USD"}', b'{"bad']
    lines = [b"1618677817.1292548: " + l2_snapshot(), *stray, b"1618677817.5: " + l2update([("buy", "99", "1")])]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    records = list(CoinbaseFeed.read_capture(path))
    assert [r.recv_ts for r in records] == [1618677817129254800, 0, 0, 1618677817500000000]
    assert [r.raw for r in records[1:3]] == stray


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"product":"BTC-USD","bids":[["1","2",1]]', "JSONDecodeError"),  # cut short
        (b'{"product":"BTC-USD","bids":[["1","2"]],"asks":[]}', "IndexError"),  # an entry without its third
        (b'{"captured_at":"yesterday","bids":[]}', "is not an ISO-8601"),
        (b"{}\n[]", "JSONDecodeError"),
    ],
)
def test_read_capture_says_which_file_is_not_the_rest_snapshot_its_first_line_began(
    tmp_path: Path, body: bytes, why: str
) -> None:
    path = tmp_path / "l2_snapshot.json"
    path.write_bytes(b"\n" + body)
    with pytest.raises(CaptureError, match=f"{re.escape(str(path))}: its first line is JSON.*{why}") as err:
        list(CoinbaseFeed.read_capture(path))
    assert err.value.line == 2


def test_snapshot_with_a_duplicate_order_id_is_rejected_and_the_buffer_kept_for_the_next() -> None:
    feed = CoinbaseFeed()
    feed.on_message(opened(11, "c", "buy", "100", "1"))
    with pytest.raises(BookError, match="already resting"):
        feed.on_message(l3_snapshot(10, bids=[("100", "1", "a"), ("99", "1", "a")]))
    assert feed.syncs[P].state is SyncState.AWAITING_SNAPSHOT and not feed.books[P].orders
    feed.on_message(l3_snapshot(10, bids=[("100", "1", "a")]))
    assert feed.books[P].queue(Side.BID, px("100")) == [("a", px("1")), ("c", px("1"))]
