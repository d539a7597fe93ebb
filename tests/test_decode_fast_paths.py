"""The decoders' fast paths give exactly what their general paths give, and refuse what they refuse.

Capture files: `numbered_lines` splits blocks of the file instead of a readline per line (held to a
line iterator over the same bytes, gzipped or not), and a Binance capture line of hftbacktest's
`<ns> <json>` is parsed first (held to the general parse). Binance: decimal strings go through a cache
before `parse_fixed` (whose own shortcut tests/test_numbers.py holds to its general path); the JSON
decoder is built once. ITCH: A F E C X D U are unpacked with one Struct
and applied directly, handing anything unexpected to the general path (`decode` + the dict
handlers). Each test below pits the fast path against the general one, or against values
computed independently, on valid input, on input that must fall back, and on malformed input.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from model.sim.itch_day import itch_day_stream
from orderbook.errors import DecodeError, FeedError
from orderbook.events import Kind, Side
from orderbook.numbers import parse_fixed, parse_fixed_general
from orderbook.venues import binance
from orderbook.venues.base import block_records, numbered_lines
from orderbook.venues.binance import BinanceFeed
from orderbook.venues.itch import ItchFeed, encode

SYM = "BTCUSDT"


# -- capture files: lines ---------------------------------------------------------------------------

# bytes a line may hold, line ends and carriage returns much more often than chance would put them
_LINE_BYTES = st.lists(
    st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b"1", b" ", b"{", b"\x00", b"\xff"]) | st.binary(max_size=3),
    max_size=300,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(body=_LINE_BYTES | st.binary(max_size=40_000), gz=st.booleans())
def test_capture_lines_are_a_line_iterators_over_the_same_bytes(tmp_path_factory, body: bytes, gz: bool) -> None:
    assume(gz or not body.startswith(b"\x1f\x8b"))  # bytes that start as gzip's are read as gzip
    path = tmp_path_factory.mktemp("lines") / ("capture.gz" if gz else "capture.txt")
    path.write_bytes(gzip.compress(body) if gz else body)
    want = [(n, line.rstrip(b"\r\n")) for n, line in enumerate(io.BytesIO(body), 1)]
    assert list(numbered_lines(path)) == want


def test_capture_lines_of_lines_longer_than_many_blocks_and_across_blocks(tmp_path) -> None:
    body = b"x" * 1_000_003 + b"\r\n\n" + b"y" * 70_000  # no line end in most blocks; none at the end
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(body))
    assert list(numbered_lines(path)) == [(1, b"x" * 1_000_003), (2, b""), (3, b"y" * 70_000)]
    many = b"".join(b"%d%s" % (i, b"\r\n" if i % 3 else b"\n") for i in range(30_000))  # lines across blocks
    path.write_bytes(gzip.compress(many))
    assert list(numbered_lines(path)) == [(i + 1, b"%d" % i) for i in range(30_000)]


def _parse_line_general(line: bytes) -> Any:
    """`binance._parse_line` without its first test (the hftbacktest line): the parse it was before."""
    if not line.strip():
        return None
    if line.startswith(b"https://"):
        return binance._parse_http_line(line)
    if line.startswith((b"wss://", b"ws://")):
        return None
    if line.startswith(b"{"):
        return binance.Record(0, line)
    stamp, _, body = line.partition(b" ")
    if stamp.endswith(b":"):
        return binance.Record(parse_fixed(stamp[:-1], 9, field="capture time"), body)
    if not stamp.isdigit():
        raise DecodeError(f"unrecognised capture line {line[:60]!r}")
    if int(stamp) >= 2**63:
        raise DecodeError(f"receive time {stamp!r} does not fit int64")
    return binance.Record(int(stamp), body)


def _outcome(parse: Any, line: bytes) -> Any:
    try:
        return parse(line)
    except DecodeError:
        return DecodeError


@settings(max_examples=500, deadline=None)
@given(line=st.lists(st.sampled_from([b"17231", b"0", b" ", b":", b".", b"{", b"}", b"\xd9\xa3", b"-", b"\t", b"x"]),
                     max_size=8).map(b"".join) | st.binary(max_size=30))  # fmt: skip
def test_binance_capture_line_fast_path_equals_the_general_parse(line: bytes) -> None:
    assert _outcome(binance._parse_line, line) == _outcome(_parse_line_general, line)


def _wrap_eagerly(records: list[binance.Record], fallback: str | None) -> Any:
    """`binance._wrap_bare_snapshots` as it was: every record's symbol searched as it passes."""
    symbol: str | None = None
    held: list[binance.Record] = []
    out = []
    for rec in records:
        if binance._is_bare_snapshot(rec.raw):
            if symbol is not None and not held:
                out.append(binance.Record(rec.recv_ts, binance._wrap_snapshot(symbol, rec.raw)))
            else:
                held.append(rec)
            continue
        m = binance._SYMBOL_RE.search(rec.raw)
        if m:
            with contextlib.suppress(UnicodeDecodeError):
                symbol = m.group(1).decode()
        if held and symbol is not None:
            out += list(binance._release(held, symbol))
            held = []
        if held:
            held.append(rec)
        else:
            out.append(rec)
    if held:
        if symbol is None and fallback is None:
            return DecodeError
        out += list(binance._release(held, symbol or fallback))  # type: ignore[arg-type]
    return out


_CAPTURE_RECORDS = [b'{"lastUpdateId":1,"bids":[],"asks":[]}', b' { "lastUpdateId" :2}',
                    b'{"stream":"a@depth","data":{"s":"AAA"}}', b'{"stream":"b@trade","data":{"s":"BBB"}}',
                    b'{"stream":"x","data":{"e":"kline"}}', b'{"symbol":"CCC","snapshot":{"lastUpdateId":3}}',
                    b'{"s":"\xff\xfe"}', b'{"result":null,"id":1}', b"", b'{"s" : "DDD" , "s":"EEE"}']  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(picks=st.lists(st.integers(0, len(_CAPTURE_RECORDS) - 1), max_size=40), fallback=st.sampled_from([None, "F"]),
       unread=st.sampled_from([1, 3, 1024]), cuts=st.lists(st.integers(0, 40), max_size=6))  # fmt: skip
def test_binance_bare_snapshots_wrapped_lazily_as_eagerly(
    picks: list[int], fallback: str | None, unread: int, cuts: list[int]
) -> None:
    """In blocks of records cut anywhere (a block of a capture's lines), some with no snapshot to wrap."""
    records = [binance.Record(i, _CAPTURE_RECORDS[p]) for i, p in enumerate(picks)]
    bounds = [0, *sorted(c for c in cuts if c < len(records)), len(records)]
    blocks = [records[a:b] for a, b in itertools.pairwise(bounds)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(binance, "_UNREAD", unread)  # the records kept aside unsearched pile up sooner
        try:
            got: Any = list(block_records(binance._wrap_bare_snapshots(map(binance._with_bare, blocks), fallback)))
        except DecodeError:
            got = DecodeError
    assert got == _wrap_eagerly(records, fallback)


# -- Binance: decimal strings ----------------------------------------------------------------------


def _general(text: Any) -> int | type[DecodeError]:
    try:
        return parse_fixed_general(text, 8, field="x")
    except DecodeError:
        return DecodeError


def _fast(text: Any) -> int | type[DecodeError]:
    try:
        return binance._fixed(text, "x")
    except DecodeError:
        return DecodeError


decimal_text = st.builds(
    lambda whole, dot, frac: whole + dot + frac,
    st.text("0123456789", max_size=14),
    st.sampled_from([".", "", ".."]),
    st.text("0123456789", max_size=11),  # up to 11 decimals: past 8 only trailing zeros are valid
)


@settings(max_examples=400, deadline=None)
@given(decimal_text)
def test_binance_fixed_fast_path_equals_parse_fixed_on_digit_strings(text: str) -> None:
    binance._FIXED_CACHE.pop(text, None)
    general = _general(text)
    assert _fast(text) == general  # parsed, now cached
    assert _fast(text) == _general(text)  # from the cache


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=16))
def test_binance_fixed_fast_path_equals_parse_fixed_on_any_text(text: str) -> None:
    binance._FIXED_CACHE.pop(text, None)
    assert _fast(text) == _general(text)
    assert _fast(text) == _general(text)


@pytest.mark.parametrize(
    "text",
    [
        "1.2345678a",
        "-0.10000000",
        "+0.10000000",
        "NaN",
        "nan",
        "Infinity",
        "1e-8",
        "1E8",
        "0.1234567890",  # 10 decimals, the last ones not zero
        "0.000000001",
        "１.00000000",  # fullwidth digit
        "٣.00000000",  # Arabic-Indic digit
        "1.0000000²",  # superscript: isdigit() but not a decimal digit
        "1_000.00000000",  # int() would take the underscore
        " 1.00000000",
        "1.00000000 ",
        "1.0.0",
        "",
        ".",
        "0x10.0",
    ],
)
def test_binance_malformed_decimal_is_refused_by_the_fast_path(text: str) -> None:
    binance._FIXED_CACHE.pop(text, None)
    with pytest.raises(DecodeError):
        binance._fixed(text, "x")
    with pytest.raises(DecodeError):  # a refusal is never cached as a value
        binance._fixed(text, "x")


@pytest.mark.parametrize("value", [61837.63, 1, None, True, ["1.0"], {"p": "1.0"}])
def test_binance_non_string_decimal_is_refused_by_the_fast_path(value: Any) -> None:
    with pytest.raises(DecodeError):
        binance._fixed(value, "x")


def test_binance_fixed_shortcut_scales_by_the_printed_decimals() -> None:
    """Futures print fewer than 8 places: "61800.2" and "61800.20000000" are the same price."""
    for text in ("61800.2", "61800.20", "61800.20000000", "61800.200000000"):
        binance._FIXED_CACHE.pop(text, None)
        assert binance._fixed(text, "x") == 6_180_020_000_000
    assert parse_fixed("0.00000001", 8) == 1 == parse_fixed_general("0.00000001", 8)
    assert parse_fixed(".5", 8) == 50_000_000 == parse_fixed_general(".5", 8)  # via the general path


# -- Binance: through the feed ---------------------------------------------------------------------


def _enc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _snapshot(last: int, bids: list[list[Any]], asks: list[list[Any]]) -> bytes:
    return _enc({"symbol": SYM, "snapshot": {"lastUpdateId": last, "bids": bids, "asks": asks}})


def _diff(first: int, last: int, bids: list[list[Any]], asks: list[list[Any]]) -> bytes:
    ev = {"e": "depthUpdate", "E": 1_700_000_000_000 + last, "s": SYM, "U": first, "u": last, "b": bids, "a": asks}
    return _enc({"stream": "btcusdt@depth@100ms", "data": ev})


def _live_feed() -> BinanceFeed:
    feed = BinanceFeed(check_crossed=False)
    feed.on_message(_snapshot(100, [["1.00000000", "1.00000000"]], [["2.00000000", "1.00000000"]]), 5)
    return feed


price_text = st.one_of(
    st.integers(1, 10**13).map(lambda v: f"{v // 10**8}.{v % 10**8:08d}"),  # spot: 8 decimals
    st.integers(1, 10**9).map(lambda v: f"{v // 100}.{v % 100:02d}"),  # futures: 2 decimals
    st.integers(1, 10**6).map(lambda v: f"{v}.0000000000"),  # 10 decimals of zeros: parse_fixed's way
    st.integers(1, 10**6).map(str),  # no dot: parse_fixed's way
)
size_text = st.one_of(price_text, st.just("0.00000000"), st.just("0"), st.just("0.000"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), price_text, size_text), min_size=1, max_size=12))
def test_binance_diff_events_equal_the_general_path(levels: list[tuple[bool, str, str]]) -> None:
    """Every LEVEL_SET carries parse_fixed's price and size, bids first, in message order."""
    feed = _live_feed()
    bids = [[p, q] for is_bid, p, q in levels if is_bid]
    asks = [[p, q] for is_bid, p, q in levels if not is_bid]
    for _ in range(2):  # the second time every string comes from the cache
        seq = feed.syncs[SYM].last_seq + 1
        events = feed.on_message(_diff(seq, seq, bids, asks), 7)
        want = [(Side.BID, parse_fixed(p, 8), parse_fixed(q, 8)) for p, q in bids]
        want += [(Side.ASK, parse_fixed(p, 8), parse_fixed(q, 8)) for p, q in asks]
        assert [(e.side, e.price, e.size) for e in events] == want
        assert all(e.kind is Kind.LEVEL_SET and e.seq == seq and e.recv_ts == 7 for e in events)


@pytest.mark.parametrize("bad", ["1.2345678a", "-0.10000000", "NaN", "1e-8", "0.1234567890", "٣.00000000"])
@pytest.mark.parametrize("where", ["price", "qty"])
def test_binance_malformed_level_after_valid_ones_leaves_the_book_untouched(bad: str, where: str) -> None:
    feed = _live_feed()
    before = feed.books[SYM].to_dict()
    row = [bad, "1.00000000"] if where == "price" else ["1.50000000", bad]
    with pytest.raises(DecodeError) as err:
        feed.on_message(_diff(101, 101, [["1.00000000", "3.00000000"]], [["2.00000000", "0.00000000"], row]))
    assert err.value.venue == "binance" and err.value.symbol == SYM
    assert feed.books[SYM].to_dict() == before and feed.syncs[SYM].last_seq == 100


def test_binance_zero_price_is_refused_though_zero_is_a_cached_quantity() -> None:
    """ "0.00000000" is cached as a size; as a price it must still be refused."""
    feed = _live_feed()
    feed.on_message(_diff(101, 101, [["1.00000000", "0.00000000"]], []))
    assert binance._FIXED_CACHE["0.00000000"] == 0
    with pytest.raises(DecodeError, match="not a positive price"):
        feed.on_message(_diff(102, 102, [["0.00000000", "1.00000000"]], []))


@pytest.mark.parametrize("row", [[1.5, "1.0"], ["1.0", 2], [["1.0"], "1.0"], [{"p": 1}, "1.0"], ["1.0", None]])
def test_binance_non_string_level_is_a_decode_error(row: list[Any]) -> None:
    feed = _live_feed()
    with pytest.raises(DecodeError):
        feed.on_message(_diff(101, 101, [row], []))
    assert feed.syncs[SYM].last_seq == 100


def test_binance_json_with_a_bom_keeps_the_stdlib_message() -> None:
    raw = "\ufeff".encode() + _diff(101, 101, [], [])
    with pytest.raises(DecodeError, match="BOM"):
        BinanceFeed().on_message(raw)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_binance_json_constants_are_refused_by_the_shared_decoder(constant: str) -> None:
    raw = _diff(101, 101, [], []).replace(b'"E":', f'"x":{constant},"E":'.encode())
    with pytest.raises(DecodeError, match="constant"):
        BinanceFeed().on_message(raw)


# -- ITCH: fast handlers against the general path ----------------------------------------------------


def _run(messages: list[bytes], *, fast: bool) -> tuple[list[Any], ItchFeed]:
    """Each message's events (as tuples) or its error (type, text, seq), through one path."""
    feed = ItchFeed()
    out: list[Any] = []
    for raw in messages:
        try:
            if fast:
                events = feed.on_message(raw, 3)
            else:
                feed.messages += 1
                events = feed._on_message_general(raw, feed.messages, 3)
            out.append([astuple(e) for e in events])
        except FeedError as err:
            out.append((type(err).__name__, str(err), err.seq))
    return out, feed


def _state(feed: ItchFeed) -> Any:
    orders = {s: {k: (o.side, o.price, o.size) for k, o in b.orders.items()} for s, b in feed.books.items()}
    return feed.locates, {s: b.to_dict() for s, b in feed.books.items()}, orders, feed.messages


def _assert_same(messages: list[bytes]) -> list[Any]:
    fast, fast_feed = _run(messages, fast=True)
    general, general_feed = _run(messages, fast=False)
    assert fast == general
    assert _state(fast_feed) == _state(general_feed)
    return fast


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**32))
def test_itch_fast_path_equals_general_path_on_generated_days(seed: int) -> None:
    """Every type, unknown references included (the generator writes some)."""
    results = _assert_same(itch_day_stream(seed, 300).messages)
    assert sum(1 for r in results if isinstance(r, list) and r) > 250


def _a(ref: int, side: str = "B", price: int = 1_000_000, stock: str = "AAPL", locate: int = 7) -> bytes:
    return encode("A", locate=locate, timestamp=10, order_ref=ref, side=side, shares=100, stock=stock, price=price)


def _patch(raw: bytes, offset: int, data: bytes) -> bytes:
    return raw[:offset] + data + raw[offset + len(data) :]


def test_itch_messages_the_fast_path_hands_over_behave_as_before() -> None:
    """Each odd message must reach the general path untouched and raise (or pass) as it did."""
    r = encode("R", locate=7, stock="AAPL")
    f_ok = encode("F", locate=7, order_ref=2, side="S", shares=5, stock="AAPL", price=1_100_000, mpid="GSCO")
    results = _assert_same(
        [
            r,
            _a(1),
            _a(1)[:-1],  # A one byte short
            _a(1) + b"\x00",  # A one byte long
            _a(3, side="X"),  # side neither B nor S
            _patch(_a(4), 11, b"\xff"),  # side not ASCII
            _patch(_a(5), 24, b"AA\xffL"),  # stock not ASCII
            _a(6, price=0),  # zero price: BookError after the stock is learnt
            _a(1),  # duplicate reference
            f_ok,
            _patch(f_ok, 36, b"G\x80CO"),  # MPID not ASCII
            f_ok[:36],  # F with A's length
            encode("C", locate=7, order_ref=1, shares=10, match=1, printable="Z", price=1_000_000),
            encode("C", locate=7, order_ref=1, shares=10, match=2, printable="N", price=1_000_100),
            encode("C", locate=7, order_ref=1, shares=10, match=3, printable="Y", price=1_000_200),
            encode("E", locate=7, order_ref=999, shares=1, match=4),  # unknown reference
            encode("E", locate=8, order_ref=1, shares=1, match=5),  # locate never named
            encode("E", locate=7, order_ref=1, shares=500, match=6),  # more than rests
            encode("X", locate=7, order_ref=2, shares=1),
            encode("U", locate=7, order_ref=2, new_order_ref=20, shares=7, price=0),  # zero price
            encode("U", locate=7, order_ref=2, new_order_ref=20, shares=7, price=1_200_000),
            encode("U", locate=7, order_ref=20, new_order_ref=20, shares=0, price=1_200_000),  # size 0
            encode("D", locate=7, order_ref=20),
            encode("D", locate=7, order_ref=20),  # already gone
            encode("P", locate=7, order_ref=0, side="B", shares=3, stock="AAPL", price=1_000_000, match=7),
            encode("P", locate=7, order_ref=0, side="X", shares=3, stock="AAPL", price=1_000_000, match=8),
            encode("P", locate=11, order_ref=0, side="S", shares=3, stock="IBM", price=1_000_000, match=9),
            _patch(encode("P", locate=7, side="B", shares=3, stock="AAPL", price=1, match=10), 24, b"\xc3"),
            encode("D", locate=7, order_ref=20)[:-2],
            b"",
            b"A",
        ]
    )
    kinds = [r[0][0] for r in results if isinstance(r, list) and r]
    assert Kind.ADD in kinds and Kind.EXECUTE in kinds and Kind.REPLACE in kinds and Kind.DELETE in kinds
    assert sum(1 for r in results if isinstance(r, tuple)) >= 15


def test_itch_fast_add_learns_a_locate_and_renames_its_placeholder_book() -> None:
    """A B before any R routes to `locate:9`; an A naming the stock renames that book."""
    results = _assert_same(
        [
            encode("B", locate=9, match=1),
            _a(1, locate=9, stock="MSFT"),
            _a(2, locate=9, stock="MSFT   "),
            encode("E", locate=9, order_ref=1, shares=10, match=2),
        ]
    )
    assert [r[0][2] for r in results] == ["locate:9", "MSFT", "MSFT", "MSFT"]


def test_itch_fast_path_respects_the_symbol_filter() -> None:
    msgs = [_a(1, stock="AAPL"), _a(2, stock="MSFT", locate=8), encode("D", locate=8, order_ref=2)]
    for fast in (True, False):
        feed = ItchFeed({"AAPL"})
        results = []
        for raw in msgs:
            try:
                if fast:
                    results.append(feed.on_message(raw))
                else:
                    feed.messages += 1
                    results.append(feed._on_message_general(raw, feed.messages, 0))
            except FeedError as err:
                results.append(err.reason)
        assert [r if isinstance(r, str) else len(r) for r in results] == [1, "unknown_symbol", "unknown_symbol"]
