"""Binance and Coinbase encoders: what they write decodes, through the venues' own feeds, to the
book the events describe; and the bytes have the venues' field names and string formats."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook.book import L2Book, L3Book
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from orderbook.venues.binance import BinanceFeed
from orderbook.venues.binance_encode import depth_update, snapshot_message, trade_message
from orderbook.venues.coinbase import CoinbaseFeed
from orderbook.venues.coinbase_encode import (
    full_message,
    iso_time,
    l3_snapshot_message,
    order_uuid,
    received_message,
    taker_uuid,
)

SYM = "BTCUSDT"
PRODUCT = "BTC-USD"
TICK = 1_000_000  # 0.01 in 1e-8 units
MID = 6_000_000 * TICK // 100  # 60000.00
LOT = 100_000  # 0.001
T0 = 1_723_161_255_208_000_000
DECIMAL_8 = re.compile(r"^\d+\.\d{8}$")

# --------------------------------------------------------------------------- Binance


def _level(side: int) -> st.SearchStrategy[tuple[int, int, int]]:
    """A level change that can never cross: bids below MID, asks above it; size 0 removes."""
    offsets = st.integers(1, 30)
    sizes = st.integers(0, 50).map(lambda n: n * LOT)
    return st.tuples(st.just(side), offsets.map(lambda k: MID - side * k * TICK), sizes)


changes_st = st.lists(st.one_of(_level(1), _level(-1)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(st.one_of(_level(1), _level(-1)), max_size=20),
    diffs=st.lists(changes_st, min_size=1, max_size=25),
    trades=st.lists(st.booleans(), max_size=25),
)
def test_binance_encoded_diffs_rebuild_the_book_the_changes_describe(
    initial: list[tuple[int, int, int]], diffs: list[list[tuple[int, int, int]]], trades: list[bool]
) -> None:
    ref = L2Book("binance", SYM)
    for side, price, size in initial:
        ref.set_level(Side(side), price, size)
    bids, asks = list(ref.bids.items()), list(ref.asks.items())
    feed = BinanceFeed()
    last_id = 1000
    stale = depth_update(SYM, diffs[0], last_id - 5, last_id - 1, T0)  # buffered, dropped as u <= lastUpdateId
    assert feed.on_message(stale) == []
    feed.on_message(snapshot_message(SYM, bids, asks, last_id))
    for i, changes in enumerate(diffs):
        first = last_id + 1
        last_id = first + len(changes) - 1
        events = feed.on_message(depth_update(SYM, changes, first, last_id, T0 + i * 100_000_000))
        assert [(e.side, e.price, e.size, e.seq) for e in events] == [
            (Side(s), p, q, last_id) for s, p, q in sorted(changes, key=lambda c: -c[0])
        ]
        for side, price, size in changes:
            ref.set_level(Side(side), price, size)
        if i < len(trades):
            (t,) = feed.on_message(trade_message(SYM, i, MID, LOT, trades[i], T0 + i))
            assert t.kind == Kind.TRADE and t.flags == (FLAG_AGGRESSOR_ASK if trades[i] else FLAG_AGGRESSOR_BID)
    assert feed.books[SYM].to_dict() == ref.to_dict()
    assert feed.stats[SYM].gaps == 0


def _real_lines(path: Path) -> dict[str, dict]:
    """The first snapshot, depthUpdate and trade of an hftbacktest capture, parsed."""
    found: dict[str, dict] = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            msg = json.loads(line.split(" ", 1)[1])
            key = "snapshot" if "lastUpdateId" in msg else msg.get("data", {}).get("e")
            if key in ("snapshot", "depthUpdate", "trade") and key not in found:
                found[key] = msg
            if len(found) == 3:
                return found
    raise AssertionError(f"{path} lacks a snapshot, depthUpdate or trade")


def test_binance_encoded_messages_have_the_key_sets_of_real_ones(shared_data: Path) -> None:
    real = _real_lines(shared_data / "binance-hftbacktest" / "spot_btcusdt_20240808.gz")
    diff = json.loads(depth_update(SYM, [(1, MID, LOT), (-1, MID + TICK, 0)], 5, 7, T0))
    trade = json.loads(trade_message(SYM, 9, MID, LOT, True, T0))
    snap = json.loads(snapshot_message(SYM, [(MID, LOT)], [(MID + TICK, LOT)], 7))
    assert list(diff) == list(real["depthUpdate"]) == ["stream", "data"]
    assert list(diff["data"]) == list(real["depthUpdate"]["data"])
    assert list(trade["data"]) == list(real["trade"]["data"])
    assert list(snap) == ["symbol", "snapshot"]
    assert list(snap["snapshot"]) == list(real["snapshot"])
    for row in diff["data"]["b"] + diff["data"]["a"] + snap["snapshot"]["bids"] + real["snapshot"]["bids"][:3]:
        assert all(DECIMAL_8.match(x) for x in row)
    assert diff["stream"] == "btcusdt@depth@100ms" == real["depthUpdate"]["stream"]
    assert trade["stream"] == real["trade"]["stream"] == "btcusdt@trade"


def test_binance_depth_update_bytes_equal_a_captured_line() -> None:
    """The first line of spot_btcusdt_20240808.gz, rewritten from integers."""
    changes = [
        (1, 6173763000000, 0),
        (1, 6173017000000, 0),
        (1, 5685458000000, 0),
        (-1, 6183764000000, 154698000),
        (-1, 6183985000000, 0),
        (-1, 6183986000000, 0),
        (-1, 6184511000000, 32329000),
        (-1, 6184849000000, 0),
        (-1, 6185545000000, 32323000),
        (-1, 6186251000000, 5041000),
        (-1, 6186252000000, 0),
        (-1, 6193764000000, 2000000),
    ]
    expected = (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT",'
        b'"U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"],["61730.17000000","0.00000000"],'
        b'["56854.58000000","0.00000000"]],"a":[["61837.64000000","1.54698000"],["61839.85000000","0.00000000"],'
        b'["61839.86000000","0.00000000"],["61845.11000000","0.32329000"],["61848.49000000","0.00000000"],'
        b'["61855.45000000","0.32323000"],["61862.51000000","0.05041000"],["61862.52000000","0.00000000"],'
        b'["61937.64000000","0.02000000"]]}}'
    )
    assert depth_update(SYM, changes, 50093239189, 50093239202, 1723161255208_123_456) == expected


def test_binance_trade_bytes_equal_a_captured_line() -> None:
    got = trade_message(
        SYM, 3735683259, 6183763000000, 2000000, True, 1723161255342_000_000, event_ts_ns=1723161255343_999_999
    )
    assert got == (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
        b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
    )


def test_binance_depth_update_refuses_a_side_of_none_and_inverted_ids() -> None:
    with pytest.raises(ValueError, match="side"):
        depth_update(SYM, [(0, MID, LOT)], 1, 1, T0)
    with pytest.raises(ValueError, match="first update id"):
        depth_update(SYM, [(1, MID, LOT)], 3, 2, T0)


# --------------------------------------------------------------------------- Coinbase


@st.composite
def l3_flow(draw: st.DrawFn) -> tuple[list[tuple[int, int, int, int]], list[tuple[Event, int | None, bool]]]:
    """A snapshot of resting orders and a valid stream of L3 events on them.

    Returns (snapshot entries (side, price, size, id), [(event, old_size, with_received)]).
    Bids rest below MID and asks above it, so nothing crosses; executions never exceed what rests.
    """
    orders: dict[int, list[int]] = {}  # id -> [side, price, size]
    next_id = 1

    def new_order() -> tuple[int, int, int, int]:
        nonlocal next_id
        side = draw(st.sampled_from((1, -1)))
        price = MID - side * draw(st.integers(1, 8)) * TICK
        size = draw(st.integers(1, 40)) * LOT
        oid, next_id = next_id, next_id + 1
        orders[oid] = [side, price, size]
        return side, price, size, oid

    snapshot = [new_order() for _ in range(draw(st.integers(0, 12)))]
    flow: list[tuple[Event, int | None, bool]] = []
    for i in range(draw(st.integers(1, 40))):
        ts = T0 + i * 1_234_567
        choice = draw(st.sampled_from(("add", "delete", "execute", "change", "cancel"))) if orders else "add"
        if choice == "add":
            side, price, size, oid = new_order()
            flow.append(
                (Event(Kind.ADD, "sim", PRODUCT, ts, 0, Side(side), price, size, oid), None, draw(st.booleans()))
            )
            continue
        oid = draw(st.sampled_from(sorted(orders)))
        side, price, size = orders[oid]
        if choice == "delete":
            del orders[oid]
            flow.append((Event(Kind.DELETE, "sim", PRODUCT, ts, 0, Side(side), price, size, oid), None, False))
        elif choice == "execute":
            n = draw(st.integers(1, size // LOT)) * LOT
            flow.append((Event(Kind.EXECUTE, "sim", PRODUCT, ts, 0, Side(side), price, n, oid), None, False))
            orders[oid][2] -= n
            if orders[oid][2] == 0:
                del orders[oid]
        elif size > LOT:  # change / partial cancel need something left
            n = draw(st.integers(1, size // LOT - 1)) * LOT
            kind = Kind.CHANGE if choice == "change" else Kind.CANCEL
            flow.append(
                (
                    Event(kind, "sim", PRODUCT, ts, 0, Side(side), price, size - n if kind == Kind.CHANGE else n, oid),
                    size,
                    False,
                )
            )
            orders[oid][2] -= n
    return snapshot, flow


def _orders(book: L3Book) -> dict[str, tuple[int, int, int]]:
    return {order_uuid(oid): (o.side, o.price, o.size) for oid, o in book.orders.items()}


def _queues(book: L3Book) -> list[list[str]]:
    return [
        [order_uuid(oid) for oid, _ in book.queue(side, price)]
        for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks))
        for price in levels
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(l3_flow())
def test_coinbase_encoded_full_channel_rebuilds_the_l3_book_of_the_events(
    case: tuple[list[tuple[int, int, int, int]], list[tuple[Event, int | None, bool]]],
) -> None:
    snapshot, flow = case
    ref = L3Book("sim", PRODUCT)
    for side, price, size, oid in snapshot:
        ref.add(oid, Side(side), price, size)
    seq = 500
    feed = CoinbaseFeed()
    bids = [(p, s, oid) for side, p, s, oid in snapshot if side == 1]
    asks = [(p, s, oid) for side, p, s, oid in snapshot if side == -1]
    feed.on_message(l3_snapshot_message(PRODUCT, seq, bids, asks))
    for event, old_size, with_received in flow:
        if with_received:
            seq += 1
            assert feed.on_message(received_message(event, seq)) == []
        seq += 1
        decoded = feed.on_message(full_message(event, seq, old_size=old_size))
        ref.apply(event)
        assert [(e.side, e.price, e.seq) for e in decoded] == [(event.side, event.price, seq)]
    book = feed.books[PRODUCT]
    assert isinstance(book, L3Book)
    assert book.to_dict() == ref.to_dict()
    assert _orders(book) == _orders(ref)
    assert _queues(book) == _queues(ref)


def test_coinbase_match_has_the_key_set_of_a_captured_match(shared_data: Path) -> None:
    with gzip.open(shared_data / "cryptofeed-captures" / "COINBASE.ws.28.0.gz", "rt") as f:
        real = next(json.loads(line.split(": ", 1)[1]) for line in f if '"type":"match"' in line)
    e = Event(Kind.EXECUTE, "sim", "SKL-USD", T0, 0, Side.ASK, 79_100_000, 45_000_000_000, 7)
    got = json.loads(full_message(e, 201390075))
    assert list(got) == list(real)
    assert got["side"] == "sell" and got["maker_order_id"] == order_uuid(7)
    assert got["taker_order_id"] == taker_uuid("SKL-USD", 201390075)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", got["time"]) and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", real["time"]
    )


def test_coinbase_messages_carry_the_documented_fields() -> None:
    """Field sets of the Coinbase docs' examples ("Full Channel": open, done, change, received)."""
    add = Event(Kind.ADD, "sim", PRODUCT, T0, 0, Side.BID, MID, LOT, "abc")
    assert set(json.loads(full_message(add, 1))) == {
        "type", "time", "product_id", "sequence", "order_id", "price", "remaining_size", "side"
    }  # fmt: skip
    assert set(json.loads(received_message(add, 1))) == {
        "type", "time", "product_id", "sequence", "order_id", "size", "price", "side", "order_type"
    }  # fmt: skip
    done = json.loads(full_message(Event(Kind.DELETE, "sim", PRODUCT, T0, 0, Side.ASK, MID, LOT, "abc"), 2))
    assert done["reason"] == "canceled" and done["remaining_size"] == "0.00100000" and done["side"] == "sell"
    change = json.loads(
        full_message(Event(Kind.CHANGE, "sim", PRODUCT, T0, 0, Side.BID, MID, LOT, "abc"), 3, old_size=3 * LOT)
    )
    assert (change["type"], change["new_size"], change["old_size"]) == ("change", "0.00100000", "0.00300000")
    cancel = json.loads(
        full_message(Event(Kind.CANCEL, "sim", PRODUCT, T0, 0, Side.BID, MID, LOT, "abc"), 4, old_size=3 * LOT)
    )
    assert cancel["new_size"] == "0.00200000"


def test_coinbase_time_is_iso_utc_with_microseconds_and_takes_a_base_date() -> None:
    assert iso_time(1618677817_075687_999) == "2021-04-17T16:43:37.075687Z"
    assert iso_time(34_200 * 10**9 + 1_500, dt.date(2019, 12, 30)) == "2019-12-30T09:30:00.000001Z"
    e = Event(Kind.ADD, "sim", PRODUCT, 34_200 * 10**9, 0, Side.BID, MID, LOT, 1)
    assert json.loads(full_message(e, 1, base_date=dt.date(2019, 12, 30)))["time"] == "2019-12-30T09:30:00.000000Z"


def test_coinbase_encoder_refuses_what_the_full_channel_cannot_say() -> None:
    with pytest.raises(ValueError, match="REPLACE"):
        full_message(Event(Kind.REPLACE, "sim", PRODUCT, T0, 0, Side.BID, MID, LOT, 1, 2), 1)
    with pytest.raises(ValueError, match="old_size"):
        full_message(Event(Kind.CANCEL, "sim", PRODUCT, T0, 0, Side.BID, MID, LOT, 1), 1)
    with pytest.raises(ValueError, match="side"):
        full_message(Event(Kind.ADD, "sim", PRODUCT, T0, 0, Side.NONE, MID, LOT, 1), 1)
