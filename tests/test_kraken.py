"""Kraken websocket feed: v1/v2 books, CRC32 checksums, depth truncation, resync, trades, bad input.

The checksums the tests send are computed by `reference_checksum`: an independent brute-force
rendering of Kraken's rule from plain dicts of the printed strings (sort by Decimal, strip
'.', strip leading zeros, CRC32), sharing no code with the feed.
"""

from __future__ import annotations

import binascii
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook.errors import (
    ChecksumMismatch,
    CrossedBook,
    DecodeError,
    OutOfSync,
    OversizedMessage,
    UnknownMessageType,
    UnknownSymbol,
)
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Kind, Side
from orderbook.sync import SyncState
from orderbook.venues.kraken import KrakenFeed, book_checksum

PAIR = "XBT/USD"
TS = "1618678133.365913"
TS_V2 = "2023-10-06T17:35:55.440295Z"

# Kraken's "Book checksum (WebSocket v2)" worked example: BTC/USD, price precision 1, qty 8.
DOC_V2_BIDS = [
    ("45283.5", "0.10000000"),
    ("45283.4", "1.54582015"),
    ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"),
    ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"),
    ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]
DOC_V2_ASKS = [
    ("45285.2", "0.00100000"),
    ("45286.4", "1.54571953"),
    ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"),
    ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"),
    ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]
DOC_V2_CHECKSUM = 3310070434


# -- an independent reference ------------------------------------------------------------


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def reference_checksum(asks: dict[str, str], bids: dict[str, str]) -> int:
    """Kraken's rule from the printed strings, by brute force."""
    top_asks = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:10]
    top_bids = sorted(bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:10]
    text = "".join(_digits(p) + _digits(v) for p, v in top_asks + top_bids)
    return binascii.crc32(text.encode()) & 0xFFFFFFFF


def truncate(levels: dict[str, str], depth: int, best_high: bool) -> dict[str, str]:
    keep = sorted(levels, key=Decimal, reverse=best_high)[:depth]
    return {p: levels[p] for p in keep}


# -- message builders --------------------------------------------------------------------


def v1_snapshot(asks: dict[str, str], bids: dict[str, str], pair: str = PAIR, depth: int = 1000) -> bytes:
    payload = {"as": [[p, v, TS] for p, v in asks.items()], "bs": [[p, v, TS] for p, v in bids.items()]}
    return json.dumps([42, payload, f"book-{depth}", pair]).encode()


def v1_update(
    a: list[list[str]] | None = None,
    b: list[list[str]] | None = None,
    c: int | None = None,
    *,
    pair: str = PAIR,
    depth: int = 1000,
    two_dicts: bool = False,
) -> bytes:
    """`a`/`b`: [price, volume] or [price, volume, ts] or with "r"; timestamps default to TS."""

    def rows(levels: list[list[str]]) -> list[list[str]]:
        return [lv if len(lv) >= 3 else [*lv, TS] for lv in levels]

    dicts: list[dict[str, object]]
    if two_dicts:
        dicts = [{"a": rows(a or [])}, {"b": rows(b or [])}]
    else:
        d: dict[str, object] = {}
        if a is not None:
            d["a"] = rows(a)
        if b is not None:
            d["b"] = rows(b)
        dicts = [d]
    if c is not None:
        dicts[-1]["c"] = str(c)
    return json.dumps([42, *dicts, f"book-{depth}", pair]).encode()


ASKS = {"100.10": "1.00000000", "100.20": "2.50000000", "100.30": "0.00000500"}
BIDS = {"100.00": "3.00000000", "99.90": "0.10000000", "99.50": "7.00000000"}


def live_feed(**kw: object) -> KrakenFeed:
    feed = KrakenFeed(**kw)  # type: ignore[arg-type]
    feed.on_message(v1_snapshot(ASKS, BIDS))
    return feed


# -- checksums ---------------------------------------------------------------------------


def test_checksum_of_kraken_v2_doc_example_is_3310070434() -> None:
    assert reference_checksum(dict(DOC_V2_ASKS), dict(DOC_V2_BIDS)) == DOC_V2_CHECKSUM
    feed = KrakenFeed()
    levels = lambda rows: ", ".join(f'{{"price": {p}, "qty": {q}}}' for p, q in rows)  # noqa: E731
    raw = (
        '{"channel": "book", "type": "snapshot", "data": [{"symbol": "BTC/USD", '
        f'"bids": [{levels(DOC_V2_BIDS)}], "asks": [{levels(DOC_V2_ASKS)}], "checksum": {DOC_V2_CHECKSUM}}}]}}'
    )
    events = feed.on_message(raw.encode())
    book = feed.books["BTC/USD"]
    assert book_checksum(book) == DOC_V2_CHECKSUM
    assert book.best_ask() == (452852, 100000)  # 45285.2 at 1 decimal, 0.001 at 8
    assert [e.kind for e in events[:1] + events[-1:]] == [Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END]
    assert feed.checksums_matched["BTC/USD"] == 1
    assert feed.precision["BTC/USD"].price == 1 and feed.precision["BTC/USD"].size == 8


def test_v1_snapshot_then_updates_verify_checksum_on_every_update() -> None:
    feed = KrakenFeed()
    events = feed.on_message(v1_snapshot(ASKS, BIDS))
    assert feed.syncs[PAIR].live
    assert [e.kind for e in events].count(Kind.LEVEL_SET) == 6
    book = feed.books[PAIR]
    assert book.best_bid() == (10000, 300000000)  # 2 price decimals, 8 volume decimals
    asks, bids = dict(ASKS), dict(BIDS)
    asks["100.15"] = "4.00000000"
    del bids["100.00"]
    c = reference_checksum(asks, bids)
    out = feed.on_message(v1_update(a=[["100.15", "4.00000000"]], b=[["100.00", "0.00000000"]], c=c))
    assert [(e.side, e.price, e.size) for e in out] == [(Side.ASK, 10015, 400000000), (Side.BID, 10000, 0)]
    assert book.best_bid() == (9990, 10000000)
    assert feed.checksums_checked[PAIR] == feed.checksums_matched[PAIR] == 1


def test_v1_two_dict_update_carries_checksum_on_the_last_dict() -> None:
    feed = live_feed()
    asks, bids = dict(ASKS), dict(BIDS)
    asks["100.10"], bids["99.95"] = "0.50000000", "1.25000000"
    c = reference_checksum(asks, bids)
    raw = v1_update(a=[["100.10", "0.50000000"]], b=[["99.95", "1.25000000"]], c=c, two_dicts=True)
    assert len(json.loads(raw)) == 5 and "c" in json.loads(raw)[2]
    out = feed.on_message(raw)
    assert [e.side for e in out] == [Side.ASK, Side.BID]
    assert feed.checksums_matched[PAIR] == 1


def test_v1_seq_counts_pair_messages_and_ts_is_the_latest_level_time() -> None:
    feed = live_feed()
    asks = dict(ASKS)
    asks["100.10"], asks["100.20"] = "1.10000000", "2.20000000"
    c = reference_checksum(asks, BIDS)
    late, early = "1618678140.000001", "1618678139.999999"
    out = feed.on_message(v1_update(a=[["100.10", "1.10000000", late], ["100.20", "2.20000000", early]], c=c))
    assert {e.ts for e in out} == {1618678140000001000}
    assert {e.seq for e in out} == {2}  # the snapshot was message 1 of the pair


def test_depth_truncation_drops_levels_beyond_the_subscribed_depth() -> None:
    """book-10: an insert that makes 11 asks pushes the worst out; Kraken sends no delete for it."""
    asks = {f"{100 + i}.0": "1.00000000" for i in range(1, 11)}
    bids = {f"{100 - i}.0": "1.00000000" for i in range(10)}
    feed = KrakenFeed()
    feed.on_message(v1_snapshot(asks, bids, depth=10))
    asks["100.5"] = "2.00000000"
    asks = truncate(asks, 10, best_high=False)
    out = feed.on_message(v1_update(a=[["100.5", "2.00000000"]], c=reference_checksum(asks, bids), depth=10))
    assert len(feed.books[PAIR].asks) == 10
    assert 1100 not in feed.books[PAIR].asks  # 110.0 went out of scope
    assert (out[-1].side, out[-1].price, out[-1].size) == (Side.ASK, 1100, 0)
    # a top level is removed; Kraken republishes ("r") the level that comes back into scope
    del asks["100.5"]
    asks["110.0"] = "1.00000000"
    c = reference_checksum(asks, bids)
    feed.on_message(v1_update(a=[["100.5", "0.00000000", TS], ["110.0", "1.00000000", TS, "r"]], c=c, depth=10))
    assert feed.checksums_matched[PAIR] == 2 and len(feed.books[PAIR].asks) == 10


def test_without_truncation_the_checksum_of_a_depth_10_book_would_differ() -> None:
    """The rule matters: keeping the 11th ask makes the later checksum fail."""
    asks = {f"{100 + i}.0": "1.00000000" for i in range(1, 11)}
    bids = {"99.0": "1.00000000"}
    feed = KrakenFeed()
    feed.on_message(v1_snapshot(asks, bids, depth=1000))  # the feed believes it has depth 1000
    asks["100.5"] = "2.00000000"
    asks = truncate(asks, 10, best_high=False)
    feed.on_message(v1_update(a=[["100.5", "2.00000000"]], depth=1000))
    del asks["100.5"]
    with pytest.raises(ChecksumMismatch):
        feed.on_message(v1_update(a=[["100.5", "0.00000000"]], c=reference_checksum(asks, bids), depth=1000))


def test_corrupted_volume_raises_checksum_mismatch_then_waits_for_a_fresh_snapshot() -> None:
    feed = live_feed()
    asks = dict(ASKS)
    asks["100.10"] = "1.50000000"
    good = reference_checksum(asks, BIDS)
    with pytest.raises(ChecksumMismatch) as info:
        feed.on_message(v1_update(a=[["100.10", "1.40000000"]], c=good))  # one digit flipped in transit
    err = info.value
    assert (err.venue, err.symbol, err.seq, err.expected) == ("kraken", PAIR, 2, good)
    assert feed.syncs[PAIR].state is SyncState.AWAITING_SNAPSHOT
    before = feed.books[PAIR].to_dict()
    # Kraken has no replay: updates until the next snapshot are dropped, not applied
    with pytest.raises(OutOfSync):
        feed.on_message(v1_update(a=[["100.10", "9.00000000"]], c=1))
    assert feed.books[PAIR].to_dict() == before
    assert feed.skipped[PAIR] == 1
    feed.on_message(v1_snapshot(ASKS, BIDS))
    assert feed.syncs[PAIR].live and feed.syncs[PAIR].resyncs == 1
    asks = dict(ASKS)
    asks["100.10"] = "1.50000000"
    assert feed.on_message(v1_update(a=[["100.10", "1.50000000"]], c=reference_checksum(asks, BIDS)))
    assert feed.books[PAIR].best_ask() == (10010, 150000000)


def test_update_before_any_snapshot_is_dropped_and_reported() -> None:
    feed = KrakenFeed()
    with pytest.raises(OutOfSync):
        feed.on_message(v1_update(a=[["1.0", "1.00000000"]], c=5))
    assert feed.skipped[PAIR] == 1 and not feed.syncs[PAIR].live


def test_an_empty_snapshot_leaves_the_precision_to_the_first_printed_update() -> None:
    feed = KrakenFeed()
    feed.on_message(v1_snapshot({}, {}))
    feed.on_message(v1_update(a=[["0.05000", "0.00000304"]], c=reference_checksum({"0.05000": "0.00000304"}, {})))
    assert feed.books[PAIR].best_ask() == (5000, 304)
    assert (feed.precision[PAIR].price, feed.precision[PAIR].size) == (5, 8)


def test_unsubscribed_book_awaits_a_snapshot() -> None:
    feed = live_feed()
    status = {"channelName": "book-1000", "event": "subscriptionStatus", "pair": PAIR, "status": "unsubscribed"}
    assert feed.on_message(json.dumps(status).encode()) == []
    assert not feed.syncs[PAIR].live


def test_crossed_book_is_reported_after_the_update_is_applied() -> None:
    feed = live_feed()
    asks, bids = dict(ASKS), dict(BIDS)
    bids["100.10"] = "1.00000000"
    with pytest.raises(CrossedBook):
        feed.on_message(v1_update(b=[["100.10", "1.00000000"]], c=reference_checksum(asks, bids)))
    assert feed.books[PAIR].best_bid() == (10010, 100000000)
    assert feed.syncs[PAIR].live


def test_symbol_filter_rejects_other_pairs() -> None:
    feed = KrakenFeed({"ETH/USD"})
    with pytest.raises(UnknownSymbol):
        feed.on_message(v1_snapshot(ASKS, BIDS))


# -- trades, events, keys, captures ------------------------------------------------------


def test_v1_trades_carry_the_aggressor() -> None:
    feed = KrakenFeed()
    raw = b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""],'
    raw += b'["354.55000000","1.25690315","1618678145.715785","b","m",""]],"trade","XMR/USD"]'
    sell, buy = feed.on_message(raw)
    assert (sell.kind, sell.side, sell.flags, sell.price, sell.size) == (
        Kind.TRADE,
        Side.BID,
        FLAG_AGGRESSOR_ASK,
        35411000000,
        89594024,
    )
    assert (buy.side, buy.flags, buy.ts) == (Side.ASK, FLAG_AGGRESSOR_BID, 1618678145715785000)


def test_trade_prices_use_the_book_precision() -> None:
    feed = live_feed()  # 2 price decimals from the snapshot
    (t,) = feed.on_message(b'[7,[["100.1000","0.5","1618678142.557535","b","l",""]],"trade","XBT/USD"]')
    assert t.price == 10010 and t.size == 50000000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event":"heartbeat"}',
        b'{"connectionID":1,"event":"systemStatus","status":"online","version":"1.8.3"}',
        b'[1668,{"a":["13.253900",35,"35.72892241"]},"ticker","WAVES/EUR"]',
        b'{"channel":"heartbeat"}',
        b'{"method":"pong","req_id":1}',
    ],
)
def test_control_and_ticker_messages_return_nothing(raw: bytes) -> None:
    assert KrakenFeed().on_message(raw) == []


def test_key_is_the_pair_without_parsing() -> None:
    feed = KrakenFeed()
    assert feed.key(v1_update(a=[["1.0", "1.0"]], c=1)) == PAIR
    assert feed.key(b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[]}]}') == "BTC/USD"
    assert feed.key(b'{"event":"heartbeat"}') == ""


def test_read_capture_skips_headers_and_sent_lines(tmp_path: Path) -> None:
    path = tmp_path / "KRAKEN.ws.1.0"
    path.write_bytes(
        b"wss://ws.kraken.com <-> 1618678132.3858151\n"
        b'wss://ws.kraken.com <- 1618678132.8253062: {"event":"subscribe"}\n'
        b'1618678133.2949052: {"event":"heartbeat"}\n'
        b"\n"
    )
    (rec,) = KrakenFeed.read_capture(path)
    assert rec.recv_ts == 1618678133294905200
    assert rec.raw == b'{"event":"heartbeat"}'


# -- v2 ----------------------------------------------------------------------------------


def v2_book(kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int, **extra: str) -> bytes:
    """JSON numbers as Kraken v2 prints them (unquoted)."""
    side = lambda rows: ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in rows)  # noqa: E731
    more = "".join(f',"{k}":"{v}"' for k, v in extra.items())
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":[{side(bids)}],'
        f'"asks":[{side(asks)}],"checksum":{checksum}{more}}}]}}'
    ).encode()


def test_v2_snapshot_and_update_with_checksum() -> None:
    feed = KrakenFeed()
    feed.on_message(v2_book("snapshot", DOC_V2_BIDS, DOC_V2_ASKS, DOC_V2_CHECKSUM))
    asks, bids = dict(DOC_V2_ASKS), dict(DOC_V2_BIDS)
    del bids["45283.5"]
    asks["45285.0"] = "0.50000000"
    c = reference_checksum(asks, bids)
    ts = TS_V2
    out = feed.on_message(v2_book("update", [("45283.5", "0")], [("45285.0", "0.50000000")], c, timestamp=ts))
    # the default v2 depth is 10: the new ask pushes the 10th (45299.5) out of scope
    assert [(e.side, e.price, e.size) for e in out] == [
        (Side.ASK, 452850, 50000000),
        (Side.BID, 452835, 0),
        (Side.ASK, 452995, 0),
    ]
    assert {e.ts for e in out} == {1696613755440295000}
    assert feed.checksums_matched["BTC/USD"] == 2
    with pytest.raises(ChecksumMismatch):
        feed.on_message(v2_book("update", [("45283.4", "1.00000000")], [], c, timestamp=ts))
    assert not feed.syncs["BTC/USD"].live


def test_v2_numbers_are_parsed_from_their_text_not_through_float() -> None:
    feed = KrakenFeed(precisions={"BTC/USD": (1, 8)})
    asks = [("45285.2", "1234567890.12345678")]
    raw = v2_book("snapshot", [("45283.5", "0.1")], asks, reference_checksum(dict(asks), {"45283.5": "0.10000000"}))
    assert repr(float(asks[0][1])) != asks[0][1]  # a binary float would lose the last digits
    feed.on_message(raw)
    assert feed.books["BTC/USD"].best_ask() == (452852, 123456789012345678)


def test_v2_precision_comes_from_the_instrument_channel_and_depth_from_the_subscribe_response() -> None:
    feed = KrakenFeed()
    feed.on_message(
        b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
        b'"price_precision":2,"qty_precision":8,"price_increment":0.01}]}}'
    )
    feed.on_message(
        b'{"method":"subscribe","result":{"channel":"book","depth":2,"snapshot":true,"symbol":"BTC/USD"},'
        b'"success":true,"time_in":"2023-10-06T17:35:55.000000Z","time_out":"2023-10-06T17:35:55.000001Z"}'
    )
    bids = {"10.00": "1.00000000", "9.00": "1.00000000"}
    asks = {"11.00": "1.00000000", "12.00": "1.00000000"}
    # printed with fewer decimals than the pair has: the instrument's precision still rules
    with pytest.raises(ChecksumMismatch):  # v2 snapshots carry a checksum too
        feed.on_message(v2_book("snapshot", [("10", "1"), ("9", "1")], [("11", "1"), ("12", "1")], 1))
    assert feed.syncs["BTC/USD"].state is SyncState.AWAITING_SNAPSHOT
    feed.on_message(
        v2_book("snapshot", [("10", "1"), ("9", "1")], [("11", "1"), ("12", "1")], reference_checksum(asks, bids))
    )
    assert feed.books["BTC/USD"].best_bid() == (1000, 100000000)
    asks = truncate({**asks, "10.50": "1.00000000"}, 2, best_high=False)
    feed.on_message(v2_book("update", [], [("10.5", "1")], reference_checksum(asks, bids), timestamp=TS_V2))
    assert list(feed.books["BTC/USD"].asks) == [1050, 1100]


def test_v2_trades_decode() -> None:
    feed = KrakenFeed()
    raw = (
        b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,'
        b'"qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
    )
    (t,) = feed.on_message(raw)
    assert (t.kind, t.side, t.flags, t.price, t.size) == (Kind.TRADE, Side.BID, FLAG_AGGRESSOR_ASK, 5117, 4000000000)
    assert t.ts == 1695628177708706000


# -- malformed input ---------------------------------------------------------------------

MALFORMED = [
    pytest.param(b'[42,{"a":[["100.10","1.0","1618678133.365913"]]},"book-1', DecodeError, id="truncated-json"),
    pytest.param(v1_update(a=[["NaN", "1.00000000"]], c=1), DecodeError, id="nan-price-string"),
    pytest.param(
        b'{"channel":"book","type":"update","data":[{"symbol":"XBT/USD","bids":[{"price":NaN,"qty":1}],'
        b'"asks":[],"checksum":1}]}',
        DecodeError,
        id="nan-price-v2",
    ),
    pytest.param(v1_update(a=[["100.10", "-1.00000000"]], c=1), DecodeError, id="negative-volume"),
    pytest.param(v1_update(a=[["100.10", "1e400"]], c=1), DecodeError, id="huge-exponent"),
    pytest.param(b'[42,{"a":[[["100.10"],"1.0","1618678133.365913"]]},"book-1000","XBT/USD"]', DecodeError, id="list"),
    pytest.param(b'[42,{"a":{"100.10":"1.0"}},"book-1000","XBT/USD"]', DecodeError, id="levels-dict"),
    pytest.param(b'[42,{"a":[["100.10",null,"1618678133.3"]]},"book-1000","XBT/USD"]', DecodeError, id="null"),
    pytest.param(b'[42,{"a":[["100.10","1.0"]]},"book-1000","XBT/USD"]', DecodeError, id="no-timestamp"),
    pytest.param(b'[42,{"a":[],"c":"abc"},"book-1000","XBT/USD"]', DecodeError, id="checksum-not-int"),
    pytest.param(b'[42,{"x":[]},"book-1000","XBT/USD"]', DecodeError, id="unknown-book-key"),
    pytest.param(b'[42,{"a":[]},"book-","XBT/USD"]', DecodeError, id="book-without-depth"),
    pytest.param(b'[42,{"a":[]},7,"XBT/USD"]', DecodeError, id="channel-not-str"),
    pytest.param(b'[42,{"a":[]},"spreadsheet","XBT/USD"]', UnknownMessageType, id="unknown-channel-v1"),
    pytest.param(b'{"channel":"level9","data":[]}', UnknownMessageType, id="unknown-channel-v2"),
    pytest.param(b'{"event":"surprise"}', UnknownMessageType, id="unknown-event"),
    pytest.param(b"17", UnknownMessageType, id="bare-number"),
    pytest.param(b'{"channel":"book","type":"update","data":{"symbol":"XBT/USD"}}', DecodeError, id="data-dict"),
    pytest.param(b'{"channel":"trade","data":[{"symbol":"X/Y","side":"buy"}]}', DecodeError, id="trade-no-price"),
    pytest.param(b'{"channel":"book","type":"update","data":[{"symbol":"XBT/USD","asks":[{"price":1}]}]}',
                 DecodeError, id="v2-no-qty"),
    pytest.param(b'[42,{"a":[["100.10","1.0","99999999999.3"]]},"book-1000","XBT/USD"]', DecodeError,
                 id="v1-time-past-int64-ns"),
    pytest.param(b'{"channel":"trade","data":[{"symbol":"XBT/USD","side":"buy","price":1.0,"qty":1.0,'
                 b'"ord_type":"market","trade_id":1,"timestamp":"3021-09-25T07:49:37.708706Z"}]}', DecodeError,
                 id="v2-time-past-int64-ns"),
    pytest.param(b"\xff\xfe[42]", DecodeError, id="not-utf8"),
    pytest.param(b"[" * 100_000, DecodeError, id="deep-nesting"),
    pytest.param(b" " * (100 * 1024 * 1024), OversizedMessage, id="100MB"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "error"), MALFORMED)
def test_malformed_input_raises_a_typed_error_and_the_feed_keeps_working(raw: bytes, error: type) -> None:
    feed = live_feed()
    before = feed.books[PAIR].to_dict()
    with pytest.raises(error):
        feed.on_message(raw)
    assert feed.books[PAIR].to_dict() == before
    assert feed.syncs[PAIR].live
    asks = {**ASKS, "100.10": "5.00000000"}
    assert feed.on_message(v1_update(a=[["100.10", "5.00000000"]], c=reference_checksum(asks, BIDS)))
    assert feed.checksums_matched[PAIR] == 1


def test_a_bad_level_late_in_a_message_leaves_the_book_untouched() -> None:
    feed = live_feed()
    before = feed.books[PAIR].to_dict()
    with pytest.raises(DecodeError) as info:
        feed.on_message(v1_update(a=[["100.10", "5.00000000"], ["100.20", "1.000000001"]], c=1))
    assert info.value.symbol == PAIR and info.value.seq == 2
    assert feed.books[PAIR].to_dict() == before


# -- properties --------------------------------------------------------------------------

PRICE_DECIMALS = 3


def _price(ticks: int) -> str:
    return f"{ticks // 10**PRICE_DECIMALS}.{ticks % 10**PRICE_DECIMALS:0{PRICE_DECIMALS}d}"


def _volume(lots: int) -> str:
    return f"{lots // 10**8}.{lots % 10**8:08d}"


volumes = st.integers(min_value=1, max_value=10**12)
bid_ticks = st.integers(min_value=1, max_value=400)
ask_ticks = st.integers(min_value=401, max_value=800)
side_updates = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=800), st.one_of(st.just(0), volumes)),
    min_size=1,
    max_size=12,
)


def _snapshot_of(bids: dict[int, int], asks: dict[int, int], depth: int) -> tuple[dict[str, str], dict[str, str]]:
    a = truncate({_price(p): _volume(v) for p, v in asks.items()}, depth, best_high=False)
    b = truncate({_price(p): _volume(v) for p, v in bids.items()}, depth, best_high=True)
    return a, b


def _replay(
    feed: KrakenFeed, asks: dict[str, str], bids: dict[str, str], stream: list, depth: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Send each update with the reference checksum; keep the reference book alongside."""
    for update in stream:
        a_rows, b_rows = [], []
        for is_bid, ticks, lots in update:
            ticks = ticks if (ticks <= 400) == is_bid else (800 - ticks + 1)  # keep bids below asks
            ref, rows = (bids, b_rows) if is_bid else (asks, a_rows)
            price, vol = _price(ticks), _volume(lots)
            rows.append([price, vol])
            if lots:
                ref[price] = vol
            else:
                ref.pop(price, None)
        asks = truncate(asks, depth, best_high=False)
        bids = truncate(bids, depth, best_high=True)
        c = reference_checksum(asks, bids)
        feed.on_message(v1_update(a=a_rows or None, b=b_rows or None, c=c, depth=depth))
    return asks, bids


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bids=st.dictionaries(bid_ticks, volumes, min_size=1, max_size=30),
    asks=st.dictionaries(ask_ticks, volumes, min_size=1, max_size=30),
    stream=st.lists(side_updates, min_size=1, max_size=25),
    depth=st.sampled_from([10, 15, 1000]),
)
def test_random_update_streams_always_match_the_brute_force_checksum(
    bids: dict[int, int], asks: dict[int, int], stream: list, depth: int
) -> None:
    feed = KrakenFeed()
    ref_asks, ref_bids = _snapshot_of(bids, asks, depth)
    feed.on_message(v1_snapshot(ref_asks, ref_bids, depth=depth))
    ref_asks, ref_bids = _replay(feed, ref_asks, ref_bids, stream, depth)  # raises on any mismatch
    assert feed.checksums_matched[PAIR] == len(stream)
    book = feed.books[PAIR]
    assert {_price(p): _volume(v) for p, v in book.asks.items()} == ref_asks
    assert {_price(p): _volume(v) for p, v in book.bids.items()} == ref_bids


@settings(max_examples=100, deadline=None)
@given(
    bids=st.dictionaries(bid_ticks, volumes, min_size=1, max_size=20),
    asks=st.dictionaries(ask_ticks, volumes, min_size=1, max_size=20),
    pick=st.integers(min_value=0, max_value=10**6),
    new_lots=volumes,
    digit=st.integers(min_value=0, max_value=10**6),
    shift=st.integers(min_value=0, max_value=8),
    on_bid=st.booleans(),
)
def test_a_single_flipped_volume_digit_is_always_detected(
    bids: dict[int, int], asks: dict[int, int], pick: int, new_lots: int, digit: int, shift: int, on_bid: bool
) -> None:
    feed = KrakenFeed()
    ref_asks, ref_bids = _snapshot_of(bids, asks, 1000)
    feed.on_message(v1_snapshot(ref_asks, ref_bids))
    ref = ref_bids if on_bid else ref_asks
    top = sorted(ref, key=Decimal, reverse=on_bid)[:10]
    price = top[pick % len(top)]
    vol = _volume(new_lots)
    ref[price] = vol
    c = reference_checksum(ref_asks, ref_bids)
    # flip one significant digit (the printed string keeps its length: a CRC32 burst of <= 8 bits)
    first = next(i for i, ch in enumerate(vol) if ch not in "0.")
    positions = [i for i in range(first, len(vol)) if vol[i] != "."]
    i = positions[digit % len(positions)]
    choices = [d for d in "0123456789" if d != vol[i] and not (i == first and d == "0")]
    bad = vol[:i] + choices[shift % len(choices)] + vol[i + 1 :]
    assert bad != vol
    row = [[price, bad]]
    with pytest.raises(ChecksumMismatch):
        feed.on_message(v1_update(a=None if on_bid else row, b=row if on_bid else None, c=c))
    assert feed.syncs[PAIR].state is SyncState.AWAITING_SNAPSHOT
