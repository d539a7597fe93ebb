"""NASDAQ TotalView-ITCH 5.0: encoder/decoder, the feed's mapping of every message type, malformed
input, capture reading and the `megatrading book --format itch` command."""

from __future__ import annotations

import gzip
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.sim.itch_day import OPEN_NS, itch_day_stream
from orderbook.errors import DecodeError, FeedError, OversizedMessage, UnknownMessageType, UnknownOrder, UnknownSymbol
from orderbook.events import (
    FLAG_AGGRESSOR_ASK,
    FLAG_AGGRESSOR_BID,
    FLAG_BROKEN,
    FLAG_CROSS,
    FLAG_HIDDEN,
    Kind,
    Side,
    Status,
)
from orderbook.venues.itch import FLAG_NON_PRINTABLE, LAYOUTS, LENGTHS, ItchFeed, decode, encode, frame
from orderbook.venues.lobster import orderbook_row
from streams.cli import main

T0 = OPEN_NS


def _feed_with_aapl() -> ItchFeed:
    f = ItchFeed()
    assert f.on_message(encode("R", locate=7, timestamp=1, stock="AAPL", round_lot_size=100)) == []
    return f


def _add(ref: int, side: str, shares: int, price: int, ts: int = T0, locate: int = 7, stock: str = "AAPL") -> bytes:
    return encode("A", locate=locate, timestamp=ts, order_ref=ref, side=side, shares=shares, stock=stock, price=price)


# --- wire format ----------------------------------------------------------------------------


def test_itch_message_lengths_are_the_spec_lengths() -> None:
    spec = {"S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "A": 36}
    spec |= {"F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48}
    assert spec == LENGTHS


def test_itch_add_order_bytes_match_the_spec_layout() -> None:
    raw = _add(0x0102030405060708, "S", 100, 1_234_500, ts=0x0A0B0C0D0E0F)
    assert raw[0:1] == b"A"
    assert raw[1:3] == (7).to_bytes(2, "big")  # stock locate
    assert raw[3:5] == b"\0\0"  # tracking number
    assert raw[5:11] == bytes.fromhex("0a0b0c0d0e0f")  # 6-byte timestamp
    assert raw[11:19] == bytes.fromhex("0102030405060708")  # order reference number
    assert raw[19:20] == b"S"
    assert raw[20:24] == (100).to_bytes(4, "big")
    assert raw[24:32] == b"AAPL    "  # Alpha, left-justified, space-padded
    assert raw[32:36] == (1_234_500).to_bytes(4, "big")


def _field(code: str) -> st.SearchStrategy:
    if code == "c":
        return st.sampled_from(string.ascii_uppercase + string.digits + " ")
    if code.endswith("s"):
        # trailing spaces are padding and do not survive a round trip by design
        return st.text(string.ascii_uppercase + string.digits, max_size=int(code[:-1]))
    return st.integers(0, 2 ** (8 * {"H": 2, "I": 4, "Q": 8}[code]) - 1)


@st.composite
def _messages(draw: st.DrawFn) -> tuple[str, dict]:
    t = draw(st.sampled_from(sorted(LAYOUTS)))
    fields = {name: draw(_field(code)) for name, code in LAYOUTS[t]}
    head = {"locate": draw(st.integers(0, 0xFFFF)), "tracking": draw(st.integers(0, 0xFFFF))}
    head["timestamp"] = draw(st.integers(0, 2**48 - 1))
    return t, head | fields


@settings(max_examples=400, deadline=None)
@given(_messages())
def test_itch_encode_decode_round_trip_every_message_type(msg: tuple[str, dict]) -> None:
    t, fields = msg
    raw = encode(t, **fields)
    assert len(raw) == LENGTHS[t]
    assert decode(raw) == {"type": t, **fields}


def test_itch_encoder_rejects_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="no field"):
        encode("A", shares=1, sharez=2)
    with pytest.raises(ValueError, match="8 ASCII"):
        encode("A", stock="TOOLONGNAME")
    with pytest.raises(ValueError):
        encode("A", shares=2**32)
    with pytest.raises(ValueError, match="6 bytes"):
        encode("D", timestamp=2**48)
    with pytest.raises(ValueError, match="unknown"):
        encode("Z")


def test_itch_frame_prefixes_each_message_with_its_length() -> None:
    a, d = _add(1, "B", 1, 100), encode("D", order_ref=1)
    assert frame([a, d]) == b"\x00\x24" + a + b"\x00\x13" + d


# --- the feed ---------------------------------------------------------------------------------


def test_itch_every_book_message_type_maps_to_its_event() -> None:
    f = _feed_with_aapl()
    (a,) = f.on_message(_add(1, "B", 300, 1_000_000, ts=T0 + 1))
    assert (a.kind, a.side, a.price, a.size, a.order_id, a.ts, a.seq) == (
        Kind.ADD,
        Side.BID,
        1_000_000,
        300,
        1,
        T0 + 1,
        2,
    )
    raw_f = encode("F", locate=7, timestamp=T0 + 2, order_ref=2, side="S", shares=200, stock="AAPL", price=1_000_100)
    (fa,) = f.on_message(raw_f)
    assert (fa.kind, fa.side, fa.order_id) == (Kind.ADD, Side.ASK, 2)
    (e,) = f.on_message(encode("E", locate=7, timestamp=T0 + 3, order_ref=1, shares=100, match=9))
    assert (e.kind, e.price, e.size, e.flags) == (Kind.EXECUTE, 1_000_000, 100, FLAG_AGGRESSOR_ASK)
    c_raw = encode("C", locate=7, timestamp=T0 + 4, order_ref=2, shares=50, match=10, printable="N", price=1_000_200)
    (c,) = f.on_message(c_raw)
    assert (c.kind, c.price, c.size, c.flags) == (Kind.EXECUTE, 1_000_200, 50, FLAG_AGGRESSOR_BID | FLAG_NON_PRINTABLE)
    (x,) = f.on_message(encode("X", locate=7, timestamp=T0 + 5, order_ref=1, shares=50))
    assert (x.kind, x.size, x.price) == (Kind.CANCEL, 50, 1_000_000)
    assert f.books["AAPL"].to_dict() == {"bids": {1_000_000: 150}, "asks": {1_000_100: 150}}
    (u,) = f.on_message(encode("U", locate=7, timestamp=T0 + 6, order_ref=1, new_order_ref=3, shares=70, price=999_900))
    assert (u.kind, u.order_id, u.new_order_id, u.side, u.price, u.size) == (Kind.REPLACE, 1, 3, Side.BID, 999_900, 70)
    (d,) = f.on_message(encode("D", locate=7, timestamp=T0 + 7, order_ref=2))
    assert (d.kind, d.price, d.size) == (Kind.DELETE, 1_000_100, 150)  # the removed order's last state
    assert f.books["AAPL"].to_dict() == {"bids": {999_900: 70}, "asks": {}}
    p_raw = encode("P", locate=7, timestamp=T0 + 8, side="B", shares=10, stock="AAPL", price=999_950, match=11)
    (p,) = f.on_message(p_raw)
    assert (p.kind, p.flags, p.size, p.price) == (Kind.TRADE, FLAG_HIDDEN, 10, 999_950)
    q_raw = encode("Q", locate=7, timestamp=T0 + 9, shares=5_000_000_000, stock="AAPL", price=1_000_000, cross_type="C")
    (q,) = f.on_message(q_raw)
    assert (q.kind, q.flags, q.size) == (Kind.TRADE, FLAG_CROSS, 5_000_000_000)  # cross shares are 8 bytes
    (b,) = f.on_message(encode("B", locate=7, timestamp=T0 + 10, match=11))
    assert (b.kind, b.flags, b.symbol) == (Kind.TRADE, FLAG_BROKEN, "AAPL")
    assert f.books["AAPL"].to_dict() == {"bids": {999_900: 70}, "asks": {}}  # prints leave the book alone
    assert f.messages == 11


@pytest.mark.parametrize(
    ("state", "status"),
    [("H", Status.HALTED), ("P", Status.HALTED), ("Q", Status.QUOTATION_ONLY), ("T", Status.TRADING)],
)
def test_itch_trading_action_is_a_status_event(state: str, status: Status) -> None:
    f = _feed_with_aapl()
    (h,) = f.on_message(encode("H", locate=7, timestamp=5, stock="AAPL", trading_state=state, reason="T1"))
    assert (h.kind, h.flags, h.symbol) == (Kind.STATUS, int(status), "AAPL")


@pytest.mark.parametrize("t", list("LVWKJhYINOSR"))
def test_itch_administrative_messages_decode_and_leave_books_alone(t: str) -> None:
    f = _feed_with_aapl()
    f.on_message(_add(1, "B", 100, 1_000_000))
    assert f.on_message(encode(t, locate=7, timestamp=9)) == []
    assert f.books["AAPL"].to_dict() == {"bids": {1_000_000: 100}, "asks": {}}


@pytest.mark.parametrize(
    "raw",
    [
        encode("E", locate=7, order_ref=99, shares=1),
        encode("C", locate=7, order_ref=99, shares=1, printable="Y", price=1),
        encode("X", locate=7, order_ref=99, shares=1),
        encode("D", locate=7, order_ref=99),
        encode("U", locate=7, order_ref=99, new_order_ref=100, shares=1, price=1),
        encode("D", locate=8, order_ref=1),  # the order exists, but in another stock's book
    ],
)
def test_itch_unknown_order_reference_raises_and_leaves_the_book_unchanged(raw: bytes) -> None:
    f = _feed_with_aapl()
    f.on_message(_add(1, "B", 100, 1_000_000))
    before = (f.books["AAPL"].to_dict(), dict(f.books["AAPL"].orders))
    with pytest.raises(UnknownOrder) as info:
        f.on_message(raw)
    assert (info.value.venue, info.value.seq) == ("itch", 3)
    assert (f.books["AAPL"].to_dict(), dict(f.books["AAPL"].orders)) == before
    assert set(f.books) == {"AAPL"}  # no book was made for the unknown locate


def test_itch_generated_stream_rejects_exactly_its_unknown_references() -> None:
    s = itch_day_stream(11, 800)
    f = ItchFeed()
    rejected = []
    for i, raw in enumerate(s.messages):
        try:
            f.on_message(raw)
        except UnknownOrder:
            rejected.append(i)
    assert rejected == s.unknown and len(rejected) > 3
    assert all(b.best_bid() and b.best_ask() and not b.crossed() for b in f.books.values())


def test_itch_locate_without_directory_uses_a_placeholder_that_R_renames() -> None:
    f = ItchFeed()
    (b,) = f.on_message(encode("B", locate=13, match=1))
    assert b.symbol == "locate:13"
    f.on_message(encode("R", locate=13, stock="ZVZZT"))
    assert "ZVZZT" in f.books and "locate:13" not in f.books and f.books["ZVZZT"].symbol == "ZVZZT"
    # an add teaches the mapping by itself: executions of that locate route to it
    f.on_message(_add(5, "S", 10, 20_000, locate=14, stock="MSFT"))
    (e,) = f.on_message(encode("E", locate=14, order_ref=5, shares=10))
    assert e.symbol == "MSFT" and not f.books["MSFT"].asks


def test_itch_key_is_the_stock_or_the_locates_symbol() -> None:
    f = _feed_with_aapl()
    assert f.key(_add(1, "B", 1, 1, locate=9, stock="SPY")) == "SPY"
    assert f.key(encode("D", locate=7, order_ref=1)) == "AAPL"
    assert f.key(encode("D", locate=8, order_ref=1)) == "locate:8"


def test_itch_keys_of_a_replayed_day_put_every_message_of_a_stock_in_one_partition() -> None:
    """`megatrading replay` keys a file's messages with a fresh feed's `key` alone: the stock
    directory (R) must teach it the locates, or a delete (locate only) is keyed "locate:N" and
    lands in another partition than its order's add, whose book that worker does not hold."""
    stream = itch_day_stream(seed=3, n=600)
    feed = ItchFeed()
    keys = [feed.key(raw) for raw in stream.messages]
    by_locate: dict[int, set[str]] = {}
    for raw, key in zip(stream.messages, keys, strict=True):
        if raw[:1] in b"AFEXDUCP":
            by_locate.setdefault(int.from_bytes(raw[1:3], "big"), set()).add(key)
    assert by_locate and all(len(k) == 1 and not next(iter(k)).startswith("locate:") for k in by_locate.values())
    assert {next(iter(k)) for k in by_locate.values()} == set(stream.symbols)


def test_itch_symbol_filter_raises_unknown_symbol() -> None:
    f = ItchFeed({"MSFT"})
    f.on_message(encode("R", locate=7, stock="AAPL"))
    with pytest.raises(UnknownSymbol):
        f.on_message(_add(1, "B", 1, 100))
    with pytest.raises(UnknownSymbol):
        f.on_message(encode("D", locate=7, order_ref=1))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", DecodeError),
        (_add(1, "B", 1, 100)[:-1], DecodeError),  # truncated
        (_add(1, "B", 1, 100) + b"\0", DecodeError),  # a byte too long
        (b"Z" + bytes(20), UnknownMessageType),
        (b"\xff" + bytes(30), UnknownMessageType),
        (_add(1, "X", 1, 100), DecodeError),  # side neither B nor S
        (_add(1, "B", 1, 100).replace(b"AAPL", b"AA\xffL"), DecodeError),  # non-ASCII Alpha
        (encode("H", locate=7, stock="AAPL", trading_state="Z"), DecodeError),
        (b"A" + bytes(100 * 1024 * 1024), OversizedMessage),
    ],
)
def test_itch_malformed_message_raises_a_typed_error_and_the_feed_goes_on(raw: bytes, error: type) -> None:
    f = _feed_with_aapl()
    f.on_message(_add(1, "B", 100, 1_000_000))
    with pytest.raises(error) as info:
        f.on_message(raw)
    assert info.value.venue == "itch" and info.value.seq == 3
    assert f.books["AAPL"].to_dict() == {"bids": {1_000_000: 100}, "asks": {}}
    (e,) = f.on_message(encode("E", locate=7, order_ref=1, shares=40))
    assert e.seq == 4 and f.books["AAPL"].bids[1_000_000] == 60


def test_itch_c_with_a_bad_printable_flag_is_malformed() -> None:
    f = _feed_with_aapl()
    f.on_message(_add(1, "B", 100, 1_000_000))
    with pytest.raises(DecodeError):
        f.on_message(encode("C", locate=7, order_ref=1, shares=1, printable="?", price=1))
    assert f.books["AAPL"].bids[1_000_000] == 100


# --- captures and the CLI -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_itch_read_capture_strips_prefixes_raw_or_gzipped(tmp_path: Path, gz: bool) -> None:
    s = itch_day_stream(3, 100)
    data = frame(s.messages)
    path = tmp_path / "day.itch"
    path.write_bytes(gzip.compress(data) if gz else data)
    recs = list(ItchFeed.read_capture(path))
    assert [r.raw for r in recs] == s.messages and {r.recv_ts for r in recs} == {0}


def test_itch_read_capture_yields_a_truncated_tail_for_the_feed_to_reject(tmp_path: Path) -> None:
    a, d = _add(1, "B", 1, 100), encode("D", order_ref=1)
    path = tmp_path / "cut.itch"
    path.write_bytes(frame([a, d])[:-3])
    raws = [r.raw for r in ItchFeed.read_capture(path)]
    assert raws == [a, d[:-3]]
    with pytest.raises(DecodeError):
        ItchFeed().on_message(raws[-1])


def _expected_rows(messages: list[bytes], levels: int) -> list[str]:
    """What `book --with-seq` must print: one row per message that touched the first symbol."""
    f = ItchFeed()
    rows, first = [], None
    for raw in messages:
        try:
            events = f.on_message(raw)
        except FeedError:
            continue
        first = first or (events[0].symbol if events else None)
        mine = [e for e in events if e.symbol == first]
        if mine:
            rows.append(",".join(map(str, [mine[-1].ts, mine[-1].seq, *orderbook_row(f.books[first], levels)])))
    return rows


def test_itch_cli_book_writes_the_feeds_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = itch_day_stream(5, 600)
    path = tmp_path / "s.itch"
    path.write_bytes(frame(s.messages))
    out = tmp_path / "book.csv"
    assert main(["book", str(path), "--format", "itch", "--levels", "5", "--with-seq", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines == _expected_rows(s.messages, 5)
    assert len(lines) > 150 and all(len(line.split(",")) == 2 + 20 for line in lines)
    err = capsys.readouterr().err
    assert f"{len(s.messages)} messages" in err and "unknown_order" in err
