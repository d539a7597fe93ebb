"""A capture read with its lines split in Rust a block of whole lines at a time (hftbacktest's `<recv ns> <json>`
lines of a Binance capture: `_core.stamped_lines`; cryptofeed's received lines `<epoch s>: <json>` of a Kraken,
Coinbase or Binance recording: `_core.epoch_stamped_lines`) gives the records, and stops with the error, that the
reference's reading line by line gives (`MT_NATIVE=0`): on every Binance, Kraken and Coinbase capture of
../shared/data, and on files of hypothesis lines, the splitters' among others (stamps past int64, not ASCII
digits, of other forms or 0, `\\r`s, bare REST snapshots as the reference tells them, headers, sent, blank and
foreign lines), gzipped or not, maybe cut short."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import native
from orderbook.errors import DecodeError
from orderbook.numbers import parse_fixed
from orderbook.venues import binance, feed_class
from orderbook.venues.binance import BinanceFeed, Record

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
from targets import read_capture

if not native.available():
    pytest.skip(f"the native module is not built: {native.describe()}", allow_module_level=True)

CAPTURES = [f"binance-hftbacktest/{p.name}" for p in sorted((SHARED_DATA / "binance-hftbacktest").glob("*.gz"))]
CAPTURES.append("cryptofeed-captures/BINANCE.ws.1.0.gz")  # its REST snapshots (BINANCE.http.*) merged in
CRYPTOFEED = [("kraken", f"KRAKEN.ws.{n}.0.gz") for n in (48, 49, 50)] + [("coinbase", "COINBASE.ws.28.0.gz")]


def read(path: Path, on: bool, cls: type = BinanceFeed) -> tuple[list[Record], str | None]:
    return read_capture(cls, path, "1" if on else "0")


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURES, ids=lambda n: n.split("/")[1].split(".gz")[0])
def test_a_capture_reads_the_same_with_its_lines_split_in_rust(shared_data: Path, name: str) -> None:
    got, want = read(shared_data / name, True), read(shared_data / name, False)
    assert got[1] is want[1] is None
    assert len(got[0]) == len(want[0]) > 0
    assert got[0] == want[0]
    assert all(type(r) is Record and type(r.recv_ts) is int for r in got[0])
    if name.startswith("binance-hftbacktest/"):  # its bare REST snapshots found and wrapped on both
        assert any(r.raw.startswith(b'{"symbol":') for r in got[0])


@pytest.mark.realdata
@pytest.mark.parametrize(("venue", "name"), CRYPTOFEED, ids=[n.split(".gz")[0] for _, n in CRYPTOFEED])
def test_a_cryptofeed_capture_reads_the_same_with_its_lines_split_in_rust(
    shared_data: Path, venue: str, name: str
) -> None:
    path, cls = shared_data / "cryptofeed-captures" / name, feed_class(venue)
    got, want = read(path, True, cls), read(path, False, cls)
    assert got[1] is want[1] is None
    assert len(got[0]) == len(want[0]) > 0
    assert got[0] == want[0]
    assert all(type(r) is Record and type(r.recv_ts) is int and r.recv_ts > 0 for r in got[0])


_BODIES = st.sampled_from(
    [
        b'{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}',
        b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"ETHUSDT"}}',
        b'{"lastUpdateId":5,"bids":[["1","2"]],"asks":[]}',
        b' \t{ "lastUpdateId" :6}',
        b'{\t"lastUpdateId":7}',
        b'{      "lastUpdateId":8}',
        b'{"stream":"x","lastUpdateId":9}',
        b'{"s":"\xff"}',
        b"",
        b"x y",
    ]
) | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
_STAMPS = st.sampled_from([b"1723075200000000000", b"0", b"007", b"9223372036854775807"]) | (
    st.integers(0, 2**63 - 1).map(lambda i: str(i).encode())
)
_STAMPED = st.tuples(_STAMPS, st.just(b" "), _BODIES, st.sampled_from([b"", b"\r", b"\r\r"])).map(b"".join) | _STAMPS
_OTHER = st.sampled_from(
    [
        b"",
        b"   ",
        b"\xd9\xa1\xd9\xa2 {}",  # Arabic-Indic digits: not ASCII
        b"+12 {}",
        b"9223372036854775808 {}",  # past int64: the reference's int() reads it
        b"10000000000000000000000000 {}",
        b"1723075200.5: {}",  # cryptofeed's
        b'{"e":"trade","s":"BTCUSDT"}',
        b"wss://stream.binance.com:9443/ws",
        b"https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5 -> 1723075200.5: {}",
        b"garbage",
    ]
)
_LINES = _STAMPED | _OTHER


@st.composite
def _files(
    draw: st.DrawFn, first: st.SearchStrategy, line: st.SearchStrategy, other: st.SearchStrategy
) -> bytes | None:
    """A capture's bytes: its `first` line, lines of `line` repeated into many blocks of 8 KiB (most of them the
    splitter's alone), a few `other` lines anywhere (their blocks read line by line), its end, gzipped or not and
    maybe cut short (the reading stops at the same line both ways); None where plain bytes would read as gzip."""
    lines = [draw(first), *draw(st.lists(line, min_size=10, max_size=50)) * draw(st.integers(10, 150))]
    for at, extra in draw(st.lists(st.tuples(st.integers(0, 3000), other), max_size=3)):
        lines.insert(at % len(lines), extra)
    body = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\n\n"]))
    if draw(st.booleans()):
        data = gzip.compress(body, mtime=0)
        return data[: len(data) - draw(st.integers(0, 40))]
    return None if body.startswith(b"\x1f\x8b") else body


def _read_both_ways(tmp_path_factory: pytest.TempPathFactory, data: bytes | None, name: str, cls: type) -> None:
    if data is None:
        return
    path = tmp_path_factory.mktemp("capture") / name
    path.write_bytes(data)
    assert read(path, True, cls) == read(path, False, cls)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_files(_LINES, _STAMPED, _OTHER))
def test_hypothesis_captures_read_the_same_with_their_lines_split_in_rust(
    tmp_path_factory: pytest.TempPathFactory, data: bytes | None
) -> None:
    _read_both_ways(tmp_path_factory, data, "spot_btcusdt_20240808.gz", BinanceFeed)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINES, min_size=1, max_size=30))
def test_rust_splits_a_block_into_the_records_the_reference_parses_or_leaves_it(lines: list[bytes]) -> None:
    """`stamped_lines` takes a block only where every line is hftbacktest's with a stamp an int64 holds."""
    got = native._core.stamped_lines(b"\n".join(lines))
    stamps = [line.rstrip(b"\r").partition(b" ")[0] for line in lines]
    if not all(s.isdigit() and int(s) < 2**63 for s in stamps):
        assert got is None
        return
    assert got is not None
    times, raws, bare = got
    assert list(map(Record, times.tolist(), raws)) == [binance._parse_line(line.rstrip(b"\r")) for line in lines]
    assert bare == binance._bare(raws)


# cryptofeed's lines: `<epoch s>: <message>` received, `<url> <-> <epoch s>` headers, `<url> <- <message>` sent
_SECONDS_STAMPS = st.tuples(st.integers(0, 2**40), st.integers(0, 10**12), st.integers(0, 12)).map(
    lambda t: f"{t[0]}.{str(t[1]).zfill(t[2])[: t[2]]}".rstrip(".").encode()
)  # nearly always what the splitter takes: at most 9 decimals are, 10 to 12 leave the block to the reference
_EPOCHS = _SECONDS_STAMPS | st.sampled_from(
    [b"1723075200.5", b"0.000000001", b"9223372036.854775807", b"0", b"0.0", b"1.", b".5", b"1.0000000000",
     b"9223372036.854775808", b"99999999999999999999", b"+1", b"1e3", b"\xd9\xa1", b""]
)  # fmt: skip
_MESSAGES = st.sampled_from(
    [
        b'{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","2"]],"time":"2021-04-17T16:43:37Z"}',
        b'{"type":"heartbeat","product_id":"ETH-USD","sequence":5}',
        b'[1234,{"a":[["5541.30000","2.50700000","1534614248.456738"]]},"book-10","XBT/USD"]',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}',
        b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}',
        b'{"lastUpdateId":5,"bids":[["1","2"]],"asks":[]}',
        b"a: b: c",
        b"",
    ]
) | st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
_ENDS = st.sampled_from([b"", b"\r", b"\r\r"])
_RECEIVED = st.tuples(_EPOCHS, st.just(b": "), _MESSAGES, _ENDS).map(b"".join)
_WELL_STAMPED = st.tuples(_SECONDS_STAMPS.filter(lambda s: len(s.partition(b".")[2]) <= 9), st.just(b": "), _MESSAGES,
                          _ENDS).map(b"".join)  # fmt: skip
_CRYPTOFEED_OTHER = st.sampled_from(
    [
        b"",
        b"  ",
        b"wss://ws-feed.pro.coinbase.com <-> 1618677817.1",
        b'wss://ws.kraken.com <- {"event":"subscribe"}',
        b"wss://stream.binance.com:9443/ws <-> 1634152346.2",
        b'https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5 -> 1723075200.5: {"lastUpdateId":1}',
        b'{"type":"heartbeat","product_id":"ETH-USD"}',
        b"1723075200.5 {}",
        b"1723075200000000000 {}",
        b"garbage",
    ]
)
_FILES = {"binance": "BINANCE.ws.7.0.gz", "kraken": "KRAKEN.ws.50.0.gz", "coinbase": "COINBASE.ws.28.0.gz"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(venue=st.sampled_from(sorted(_FILES)), data=_files(_RECEIVED | _CRYPTOFEED_OTHER, _WELL_STAMPED,
                                                          _RECEIVED | _CRYPTOFEED_OTHER))  # fmt: skip
def test_hypothesis_cryptofeed_captures_read_the_same_with_their_lines_split_in_rust(
    tmp_path_factory: pytest.TempPathFactory, venue: str, data: bytes | None
) -> None:
    _read_both_ways(tmp_path_factory, data, _FILES[venue], feed_class(venue))


_SECONDS = re.compile(rb"\d+(\.\d{1,9})?")


def _received(line: bytes) -> Record | None:
    """A received line as the splitter must read it (parse_fixed's), or None where it must leave the block."""
    stamp, sep, message = line.rstrip(b"\r").partition(b": ")
    if not sep or not _SECONDS.fullmatch(stamp):
        return None
    try:
        ts = parse_fixed(stamp, 9)
    except DecodeError:
        return None
    return Record(ts, message) if ts else None


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_RECEIVED | _CRYPTOFEED_OTHER, min_size=1, max_size=30))
def test_rust_splits_a_block_of_received_lines_as_parse_fixed_reads_them_or_leaves_it(lines: list[bytes]) -> None:
    """`epoch_stamped_lines` takes a block only where every line is a received line whose stamp is seconds with at
    most 9 decimals, not 0, that an int64 of nanoseconds holds."""
    got = native._core.epoch_stamped_lines(b"\n".join(lines))
    want = [_received(line) for line in lines]
    if None in want:
        assert got is None
        return
    assert got is not None
    times, raws = got
    assert list(map(Record, times.tolist(), raws)) == want
