"""LOBSTER message rows: decoding every event type, malformed rows, the writer, the ITCH -> LOBSTER
round trip and `megatrading book --format lobster`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.sim.itch_day import SYMBOLS, itch_day_stream
from orderbook.book import L2Book
from orderbook.errors import DecodeError, FeedError, OversizedMessage, UnknownMessageType, UnknownOrder, UnknownSymbol
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, FLAG_CROSS, FLAG_HIDDEN, Kind, Side, Status
from orderbook.venues import RawRecord, capture_records
from orderbook.venues.itch import ItchFeed
from orderbook.venues.lobster import (
    ASK_EMPTY,
    BID_EMPTY,
    LobsterFeed,
    LobsterWriter,
    decode_row,
    encode_row,
    orderbook_row,
    symbol_from_filename,
    write_files,
)
from streams.cli import main


def _feed() -> LobsterFeed:
    f = LobsterFeed(symbol="AAPL")
    f.on_message(b"34200.004241176,1,16113575,18,5853300,1")
    f.on_message(b"34200.005000000,1,16113576,40,5853400,-1")
    return f


def test_lobster_submission_row_is_an_add_with_exact_nanoseconds() -> None:
    (e,) = LobsterFeed(symbol="AAPL").on_message(b"34200.004241176,1,16113575,18,5853300,1")
    assert (e.kind, e.ts, e.seq, e.order_id, e.size, e.price, e.side) == (
        Kind.ADD,
        34_200_004_241_176,
        1,
        16113575,
        18,
        5853300,
        Side.BID,
    )
    assert (e.venue, e.symbol) == ("lobster", "AAPL")


@pytest.mark.parametrize(
    ("text", "ns"), [("34200.1", 34_200_100_000_000), ("34200", 34_200 * 10**9), ("0.000000001", 1)]
)
def test_lobster_time_with_fewer_decimals_is_exact(text: str, ns: int) -> None:
    assert decode_row(f"{text},1,1,1,1,1".encode()).ts == ns


def test_lobster_cancel_delete_execute_rows_change_the_book() -> None:
    f = _feed()
    (c,) = f.on_message(b"34200.1,2,16113575,8,5853300,1")
    assert (c.kind, c.size) == (Kind.CANCEL, 8) and f.books["AAPL"].bids[5853300] == 10
    (x,) = f.on_message(b"34200.2,4,16113576,15,5853400,-1")
    assert (x.kind, x.size, x.flags) == (Kind.EXECUTE, 15, FLAG_AGGRESSOR_BID)  # an ask was lifted
    assert f.books["AAPL"].asks[5853400] == 25
    (x2,) = f.on_message(b"34200.25,4,16113575,10,5853300,1")
    assert x2.flags == FLAG_AGGRESSOR_ASK and not f.books["AAPL"].bids
    (d,) = f.on_message(b"34200.3,3,16113576,25,5853400,-1")
    assert d.kind == Kind.DELETE and not f.books["AAPL"].asks
    assert d.seq == 6


@pytest.mark.parametrize(("etype", "flag"), [(5, FLAG_HIDDEN), (6, FLAG_CROSS)])
def test_lobster_hidden_and_cross_executions_are_trades_off_the_book(etype: int, flag: int) -> None:
    f = _feed()
    before = f.books["AAPL"].to_dict()
    (t,) = f.on_message(f"34200.4,{etype},0,100,5853350,-1".encode())
    assert (t.kind, t.flags, t.size, t.price) == (Kind.TRADE, flag, 100, 5853350)
    assert f.books["AAPL"].to_dict() == before


@pytest.mark.parametrize(("price", "status"), [(-1, Status.HALTED), (0, Status.QUOTATION_ONLY), (1, Status.TRADING)])
def test_lobster_halt_row_is_a_status_event(price: int, status: Status) -> None:
    (e,) = _feed().on_message(f"34300.0,7,0,0,{price},-1".encode())
    assert (e.kind, e.flags, e.side) == (Kind.STATUS, int(status), Side.NONE)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"34200.5,1,7,10,5853300", DecodeError),  # five fields
        (b"34200.5,1,7,10,5853300,1,0", DecodeError),  # seven
        (b"34200.5,1,seven,10,5853300,1", DecodeError),
        (b"nan,1,7,10,5853300,1", DecodeError),
        (b"34200.5,1,7,nan,5853300,1", DecodeError),
        (b"34200.5,1,7,-10,5853300,1", DecodeError),  # negative size
        (b"34200.5,1,7,10,-5853300,1", DecodeError),  # negative price outside a halt row
        (b"34200.5,1,7,10,5853300,0", DecodeError),  # direction
        (b"34200.5,1,7,10,5853300.5,1", DecodeError),
        (b"34200.0000000001,1,7,10,5853300,1", DecodeError),  # a tenth decimal of a second
        (b"3.42e4,1,7,10,5853300,1", DecodeError),
        (b"34200.5,7,0,0,2,-1", DecodeError),  # halt price not -1/0/1
        (b"34200.5,9,7,10,5853300,1", UnknownMessageType),
        (b"34200.5,0,7,10,5853300,1", UnknownMessageType),
        (b"\xff\xfe,1,7,10,5853300,1", DecodeError),
        (b"", DecodeError),
        (b"34200.5,1,7,10,5853300," + b"1" * (100 * 1024 * 1024), OversizedMessage),
    ],
)
def test_lobster_malformed_row_raises_a_typed_error_and_the_feed_goes_on(raw: bytes, error: type) -> None:
    f = _feed()
    before = f.books["AAPL"].to_dict()
    with pytest.raises(error) as info:
        f.on_message(raw)
    assert (info.value.venue, info.value.symbol, info.value.seq) == ("lobster", "AAPL", 3)
    assert f.books["AAPL"].to_dict() == before
    (e,) = f.on_message(b"34200.6,2,16113575,1,5853300,1")
    assert e.seq == 4 and f.books["AAPL"].bids[5853300] == 17


@pytest.mark.parametrize("etype", [2, 3, 4])
def test_lobster_row_for_an_order_never_submitted_raises_unknown_order(etype: int) -> None:
    f = _feed()
    before = f.books["AAPL"].to_dict()
    with pytest.raises(UnknownOrder):
        f.on_message(f"34200.7,{etype},999,5,5853300,1".encode())
    assert f.books["AAPL"].to_dict() == before


def test_lobster_symbol_comes_from_the_constructor_the_call_or_the_file_name() -> None:
    assert LobsterFeed().on_message(b"34200.1,1,1,1,100,1")[0].symbol == "LOBSTER"
    f = LobsterFeed(check_crossed=False)  # as the CLI builds it
    (e,) = f.on_message(b"34200.1,1,1,1,100,1", symbol="MSFT")
    assert e.symbol == "MSFT" and f.key(b"") == "LOBSTER"
    assert symbol_from_filename("/d/AAPL_2012-06-21_34200000_57600000_message_10.csv") == "AAPL"
    assert symbol_from_filename("AAPL_2012-06-21_34200000_57600000_orderbook_10.csv") == "AAPL"
    assert symbol_from_filename("notes.csv") is None
    with pytest.raises(UnknownSymbol):
        LobsterFeed({"AAPL"}, symbol="MSFT").on_message(b"34200.1,1,1,1,100,1")


def test_lobster_encode_row_round_trips_every_single_row_kind() -> None:
    rows = [
        b"34200.004241176,1,16113575,18,5853300,1",
        b"34200.004241177,2,16113575,8,5853300,1",
        b"34200.004241178,3,16113575,10,5853300,-1",
        b"34200.004241179,4,16113575,10,5853300,1",
        b"34200.004241180,5,0,10,5853350,1",
        b"34200.004241181,6,0,1000,5853350,-1",
        b"34200.004241182,7,0,0,-1,-1",
        b"34200.004241183,7,0,0,0,-1",
        b"34200.004241184,7,0,0,1,-1",
    ]
    assert [encode_row(decode_row(r)) for r in rows] == rows


def _itch_events(seed: int, n: int = 800):
    feed = ItchFeed()
    for raw in itch_day_stream(seed, n, SYMBOLS[:2]).messages:
        try:
            events = feed.on_message(raw)
        except UnknownOrder:
            continue
        yield feed, events


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000))
def test_lobster_rows_written_from_itch_rebuild_the_identical_book_at_every_event(seed: int) -> None:
    """ITCH -> normalized events -> LOBSTER rows (U as deletion + submission) -> LobsterFeed."""
    writers: dict[str, LobsterWriter] = {}
    lobster = LobsterFeed()
    rows = 0
    for itch, events in _itch_events(seed):
        for e in events:
            for row, levels in writers.setdefault(e.symbol, LobsterWriter(5)).rows(e):
                lobster.on_message(row, symbol=e.symbol)
                assert orderbook_row(lobster.books[e.symbol], 5) == levels
                rows += 1
            ours, theirs = lobster.books[e.symbol], itch.books[e.symbol]
            assert ours.to_dict() == theirs.to_dict()
            assert {k: (o.side, o.price, o.size) for k, o in ours.orders.items()} == {
                k: (o.side, o.price, o.size) for k, o in theirs.orders.items()
            }
    assert rows > 500


def test_lobster_cli_rebuild_equals_the_orderbook_file_written_beside_it(tmp_path: Path) -> None:
    symbol, levels = "MSFT", 10
    events = [e for _, evs in _itch_events(41, 1500) for e in evs if e.symbol == symbol]
    stem = tmp_path / f"{symbol}_2019-12-30_34200000_57600000"
    msg, book = Path(f"{stem}_message_{levels}.csv"), Path(f"{stem}_orderbook_{levels}.csv")
    n = write_files(events, msg, book, levels)
    assert n > 300 and len(msg.read_text().splitlines()) == n
    out = tmp_path / "rebuilt.csv"
    assert main(["book", str(msg), "--format", "lobster", "--levels", str(levels), "--out", str(out), "--strict"]) == 0
    assert out.read_bytes() == book.read_bytes()


def test_lobster_read_capture_skips_blank_lines_and_reads_gzip(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "m.csv.gz"
    path.write_bytes(gzip.compress(b"34200.1,1,1,1,100,1\r\n\n34200.2,3,1,1,100,1\n"))
    raws = [r.raw for r in LobsterFeed.read_capture(path)]
    assert raws == [b"34200.1,1,1,1,100,1", b"34200.2,3,1,1,100,1"]
    f = LobsterFeed()
    for raw in raws:
        f.on_message(raw)
    assert not f.books["LOBSTER"].bids


def test_lobster_writer_rejects_events_without_a_lobster_row() -> None:
    w = LobsterWriter(1)
    with pytest.raises(FeedError):
        w.rows(decode_row(b"34200.2,3,1,1,100,1"))  # deletion of an order it never saw
    assert w.rows(decode_row(b"34200.2,1,1,1,100,1"))[0][1] == [9_999_999_999, 0, 100, 1]


def test_orderbook_row_pads_empty_levels_as_lobster_does():
    b = L2Book()
    b.set_level(Side.ASK, 105, 3)
    assert orderbook_row(b, 2) == [105, 3, BID_EMPTY, 0, ASK_EMPTY, 0, BID_EMPTY, 0]


def test_a_lobster_capture_is_keyed_by_the_symbol_given_else_by_its_file_name(tmp_path: Path) -> None:
    named = tmp_path / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
    named.write_text("34200.1,1,1,10,1000000,1\n\n34200.2,3,1,10,1000000,1\n")
    assert LobsterFeed.capture_key(named) == "AAPL" and LobsterFeed.capture_key(named, "MSFT") == "MSFT"
    with pytest.raises(ValueError, match=r"notes\.csv: LOBSTER rows carry no symbol: pass --symbol"):
        LobsterFeed.capture_key(tmp_path / "notes.csv")
    assert ItchFeed.capture_key(named) is None  # ITCH messages name their stock
    assert list(capture_records("lobster", [named])) == [
        RawRecord(b"AAPL", b"34200.1,1,1,10,1000000,1"),
        RawRecord(b"AAPL", b"34200.2,3,1,10,1000000,1"),
    ]


def test_a_feed_for_a_lobster_capture_books_its_rows_under_the_file_names_symbol(tmp_path: Path) -> None:
    assert LobsterFeed.for_capture(tmp_path / "AAPL_2012-06-21_34200000_57600000_message_10.csv").symbol == "AAPL"
    assert LobsterFeed.for_capture(tmp_path / "notes.csv").symbol == "LOBSTER"
    feed = LobsterFeed.for_capture(tmp_path / "notes.csv", "MSFT", check_crossed=False)
    assert feed.symbol == "MSFT" and not feed.check_crossed
    assert LobsterFeed.tick == 100  # one cent in 1/10000 $
