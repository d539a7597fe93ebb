"""A Binance capture read with its hftbacktest lines split in Rust (`_core.stamped_lines`, a block of whole
lines at a time) gives the records, and stops with the error, that the reference's reading line by line gives
(`MT_NATIVE=0`): on every Binance capture of ../shared/data, and on files of hypothesis lines, hftbacktest's
among others (stamps past int64, not ASCII digits, `\\r`s, bare REST snapshots as the reference tells them,
cryptofeed's lines, blank and foreign lines), gzipped or not, maybe cut short."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import native
from orderbook.venues import binance
from orderbook.venues.binance import BinanceFeed, Record

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
from targets import read_capture

if not native.available():
    pytest.skip(f"the native module is not built: {native.describe()}", allow_module_level=True)

CAPTURES = [f"binance-hftbacktest/{p.name}" for p in sorted((SHARED_DATA / "binance-hftbacktest").glob("*.gz"))]
CAPTURES.append("cryptofeed-captures/BINANCE.ws.1.0.gz")  # its REST snapshots (BINANCE.http.*) merged in


def read(path: Path, on: bool) -> tuple[list[Record], str | None]:
    return read_capture(BinanceFeed, path, "1" if on else "0")


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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=_LINES,
    lines=st.lists(_STAMPED, min_size=10, max_size=50),
    repeat=st.integers(10, 150),  # many lines: blocks of 8 KiB, most of hftbacktest's lines alone
    others=st.lists(st.tuples(st.integers(0, 3000), _OTHER), max_size=3),
    ends=st.sampled_from([b"", b"\n", b"\n\n"]),
    gz=st.booleans(),
    cut=st.integers(0, 40),
)
def test_hypothesis_captures_read_the_same_with_their_lines_split_in_rust(
    tmp_path_factory: pytest.TempPathFactory,
    first: bytes,
    lines: list[bytes],
    repeat: int,
    others: list[tuple[int, bytes]],
    ends: bytes,
    gz: bool,
    cut: int,
) -> None:
    lines = [first, *lines * repeat]
    for at, line in others:  # a line the reference reads line by line, in some block
        lines.insert(at % len(lines), line)
    body = b"\n".join(lines) + ends
    data = gzip.compress(body, mtime=0) if gz else body
    if gz:
        data = data[: len(data) - cut]  # maybe cut short: the reading stops at the same line both ways
    elif data.startswith(b"\x1f\x8b"):
        return  # read as gzip
    path = tmp_path_factory.mktemp("capture") / "spot_btcusdt_20240808.gz"
    path.write_bytes(data)
    assert read(path, True) == read(path, False)


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
