"""The native Kraken decode + apply (orderbook.native.KrakenFeed) against the reference `KrakenFeed`, message by
message: the same events (every field), the same refusals (class, reason, symbol, seq, ts), the same books,
syncs, counters and learnt precisions, on the real captures (books, trades, tickers), on the book capture
written as v2 objects, and on both mangled by hypothesis (numbers, times and checksums replaced by what a
damaged or foreign feed holds, keys dropped and repeated, channels and pairs changed, levels that cross or
fall past the depth, unsubscribes, truncated and oversized messages), with and without the crossed-book check
and a pair filter; its state continues exactly; `megatrading book --format kraken` gives the reference's rows
on the native path, and the worker's pipeline (NativeVenueWindows) the reference's windows, rejects and stats,
also across its snapshots restored on either path."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import native
from orderbook.native.check import first_difference, rebuild_outcome, reference_outcomes
from orderbook.venues.kraken import KrakenFeed
from orderbook.venues.kraken_encode import as_v2
from tests.snapshot_runs import run
from tests.test_rebuild import book_command_on_both_paths
from tests.test_snapshot import real_stream

pytestmark = [pytest.mark.skipif(not native.available(), reason=native.describe()), pytest.mark.realdata]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPTURES = "cryptofeed-captures"
BOOKS, TRADES, TICKERS = "KRAKEN.ws.50.0.gz", "KRAKEN.ws.48.0.gz", "KRAKEN.ws.49.0.gz"


def capture(shared_data: Path, name: str) -> list[bytes]:
    return [r.raw for r in KrakenFeed.read_capture(shared_data / CAPTURES / name)]


@pytest.fixture(scope="module")
def books(shared_data: Path) -> list[bytes]:
    return capture(shared_data, BOOKS)


@pytest.fixture(scope="module")
def v2_books(books: list[bytes]) -> list[bytes]:
    return as_v2(books)


def assert_same_feed(ref: KrakenFeed, nat: native.KrakenFeed) -> None:
    assert nat.book_symbols() == list(ref.books)
    for pair, book in ref.books.items():
        assert nat.book_dict(pair) == book.to_dict(), pair
        sync = ref.syncs[pair]
        assert nat.sync(pair) == (sync.live, sync.last_seq, sync.resyncs, sync.snapshots), pair
        counters = (ref.messages[pair], ref.skipped[pair], ref.checksums_checked[pair], ref.checksums_matched[pair])
        assert nat.counters(pair) == counters, pair
    assert nat.precision == {k: (p.price, p.size, p.source) for k, p in ref.precision.items()}
    assert nat.v2_depth == ref.v2_depth


def compare(messages: list[bytes], symbols: set[str] | None = None, check_crossed: bool = True, **kw: Any) -> None:
    """Both over the messages: the same outcome for each, the same feeds after."""
    ref = KrakenFeed(symbols, check_crossed=check_crossed, **kw)
    want = reference_outcomes(ref, messages)
    nat = native.KrakenFeed(symbols, check_crossed=check_crossed, **kw)
    got = nat.on_messages(messages).by_message(len(messages))
    assert first_difference(want, got) is None, first_difference(want, got)
    assert_same_feed(ref, nat)


# -- mangling ------------------------------------------------------------------------------------------------------

# what a damaged or foreign feed holds where a number should be: quoted, or bare where it is JSON
ODD_NUMBERS = ["", "x", "-1", "-0", "0", "1e2", "1E-3", "+1e2", "1.5e-31", "1e31", "0e5", "-0e1", "1_0e1", " 1e2",
               "1.", ".5", "1" * 4301, "0." + "0" * 20 + "1", "1." + "0" * 25, "9" * 30, "NaN", "\u0661e2",
               "00.0100e2", "123.45e-1", "1e99999999999999999999", "12345678901234567890.5", "0.000000001"]  # fmt: skip
ODD_BARE = ["1e5", "-0", "1.0", "2", "0.5e1", "1E+2", "true", "null", "[]", "{}", '"1"']
ODD_TIMES = ["1618678133.3659130001", "-1", "1e9", "9223372036.854775808", "0", "1618678133"]
ODD_ISO = ["0001-01-01T00:00:00+01:00", "2262-04-12T00:00:00Z", "1677-09-21T00:12:43.145224192Z",
           "1677-09-21T00:12:43.145224191Z", "2023-02-29T00:00:00Z", "2023-01-01T00:00:00+00:60",
           "2023-01-01T00:00:00.1234567890Z", "\uff12023-01-01T00:00:00Z", "2023-01-01T23:59:59-23:59",
           "2024-02-29T12:00:00.5+05:30", "2023-01-01 00:00:00Z", "9999-12-31T23:59:59-01:00"]  # fmt: skip
ODD_CHECKSUMS = ['"0"', '"4294967296"', '"x"', "123", '"00000000001"', '"-1"', "null"]
ODD_CHANNELS = ["book-0", "book-x", "book-10", "book-2", "book-", "trade", "spread", "ohlc-5", "other", "book-00010"]
ODD_MESSAGES = [b"{truncated", b"[]", b"[1,2,3]", b'"book"', b"7", b"null", b'{"event":"heartbeat"}',
                b'{"event":"x"}', b'{"event":[1]}', b'{"channel":"heartbeat"}', b'{"channel":[1]}',
                b'{"channel":"instrument","data":{"pairs":[]}}', b'{"channel":"book","type":"other","data":[]}',
                b'{"channel":"book","data":{}}', b'{"method":"pong"}', b'{"channel":"status","data":[1]}', b"\xff\xfe",
                b'{"a":1,}', b"[NaN]"]  # fmt: skip


def _instrument(pair: str, p: str, q: str) -> bytes:
    item = f'{{"symbol":{json.dumps(pair)},"price_precision":{p},"qty_precision":{q}}}'
    return f'{{"channel":"instrument","data":{{"pairs":[{item}]}}}}'.encode()


@st.composite
def mangled(draw: st.DrawFn, base: list[bytes]) -> list[bytes]:
    start = draw(st.integers(0, max(0, len(base) - 300)))
    out = list(base[:12]) + list(base[start : start + 300])  # the snapshots come first in the capture
    pairs = sorted({json.loads(r)[-1] for r in base[:12] if r[:1] == b"["})
    for _ in range(draw(st.integers(1, 25))):
        i = draw(st.integers(0, len(out) - 1))
        raw = out[i]
        how = draw(st.sampled_from(["number", "bare", "time", "iso", "checksum", "channel", "pair", "dup", "drop",
                                    "repeat", "cut", "oversize", "unsubscribe", "republish", "cross", "message",
                                    "instrument", "depth", "empty"]))  # fmt: skip
        text = raw.decode("utf-8", "replace")
        if how in ("number", "bare", "time", "iso", "checksum") and '"' in text:
            quoted = [m for m in _quoted_spans(text)]
            if how == "checksum":
                spans = [s for s in quoted if text[s[0] - 5 : s[0] - 1] in ('"c":', 'sum"')]
                new = draw(st.sampled_from(ODD_CHECKSUMS))
            elif how == "iso":
                spans = [s for s in quoted if "T" in text[s[0] : s[1]] and "Z" in text[s[0] : s[1]]]
                new = json.dumps(draw(st.sampled_from(ODD_ISO)))
            elif how == "time":
                spans = [s for s in quoted if text[s[0] + 1 : s[0] + 4] == "161"]
                new = json.dumps(draw(st.sampled_from(ODD_TIMES)))
            else:
                spans = [s for s in quoted if _is_number(text[s[0] + 1 : s[1] - 1])]
                new = (
                    json.dumps(draw(st.sampled_from(ODD_NUMBERS)))
                    if how == "number"
                    else draw(st.sampled_from(ODD_BARE))
                )
            if spans:
                a, b = draw(st.sampled_from(spans))
                text = text[:a] + new + text[b:]
        elif how == "channel":
            text = text.replace('"book-1000"', json.dumps(draw(st.sampled_from(ODD_CHANNELS))), 1)
        elif how == "pair" and pairs:
            other = draw(st.sampled_from(['"OTHER"', "123", "null", '"\\ud800"']))
            text = text.replace(json.dumps(draw(st.sampled_from(pairs))), other, 1)
        elif how == "dup":
            for key in ('{"a":', '{"b":', '{"as":', '"bids":'):
                if key in text:
                    text = text.replace(key, key + "[]," + key[1:] if key.startswith("{") else key + "[]," + key, 1)
                    break
        elif how == "drop":
            for key in ('"price":', '"qty":', '"symbol":', '"a":', '"bs":'):
                if key in text:
                    text = text.replace(key, '"zz":', 1)
                    break
        elif how == "repeat":
            out.insert(i, raw)
            continue
        elif how == "cut":
            text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
        elif how == "oversize":
            text = text + " " * (4 * 1024 * 1024)
        elif how == "unsubscribe" and pairs:
            pair = draw(st.sampled_from(pairs))
            text = json.dumps({"event": "subscriptionStatus", "status": "unsubscribed", "channelName": "book-1000",
                               "pair": pair})  # fmt: skip
        elif how == "republish":
            text = text.replace('"]]', '","r"]]', 1) if draw(st.booleans()) else text.replace('"]]', '","x"]]', 1)
        elif how == "cross":
            text = _crossing(text)
        elif how == "message":
            out.insert(i, draw(st.sampled_from(ODD_MESSAGES)))
            continue
        elif how == "instrument" and pairs:
            p, q = draw(st.sampled_from(["1", "5", "8", "19", '"x"', "-1"])), draw(st.sampled_from(["8", "2", "18"]))
            out.insert(i, _instrument(draw(st.sampled_from(pairs)), p, q))
            continue
        elif how == "depth" and pairs:
            depth = draw(st.sampled_from(["5", "1", "0", '"x"', "1000"]))
            result = f'{{"channel":"book","symbol":{json.dumps(draw(st.sampled_from(pairs)))},"depth":{depth}}}'
            out.insert(i, f'{{"method":"subscribe","success":true,"result":{result}}}'.encode())
            continue
        elif how == "empty":
            text = text.replace('"as":[[', '"as":[], "zz":[[', 1)
        out[i] = text.encode("utf-8", "surrogatepass")
    return out


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    spans, i = [], 0
    while (a := text.find('"', i)) >= 0:
        b = text.find('"', a + 1)
        if b < 0:
            break
        spans.append((a, b + 1))
        i = b + 1
    return spans


def _is_number(s: str) -> bool:
    return bool(s) and s.replace(".", "", 1).isdigit()


def _crossing(text: str) -> str:
    """An update's first bid at a price above any ask (or its first ask below any bid)."""
    for key, price in (('"b":[["', "999999"), ('"a":[["', "0.000001")):
        at = text.find(key)
        if at >= 0:
            start = at + len(key)
            end = text.find('"', start)
            return text[:start] + price + text[end:]
    return text


# -- the tests -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [BOOKS, TRADES, TICKERS])
def test_native_kraken_equals_the_reference_on_the_real_captures(shared_data: Path, name: str) -> None:
    messages = capture(shared_data, name)
    compare(messages)
    compare(messages, symbols={"XMR/USD", "KSM/XBT"})
    compare(as_v2(messages))  # the trades as v2 objects too


def test_native_kraken_equals_the_reference_on_the_capture_as_v2(v2_books: list[bytes]) -> None:
    ref = KrakenFeed()
    outcomes = reference_outcomes(ref, v2_books)
    assert sum(isinstance(o, list) and len(o) > 0 for o in outcomes) > 4000  # the v2 stream is read, not refused
    assert sum(ref.checksums_matched.values()) > 4000
    compare(v2_books)
    compare(v2_books, check_crossed=False, depth=25)


@SETTINGS
@given(data=st.data(), check_crossed=st.booleans(), filtered=st.booleans(), v2=st.booleans())
def test_native_kraken_equals_the_reference_on_mangled_messages(
    books: list[bytes], v2_books: list[bytes], data: st.DataObject, check_crossed: bool, filtered: bool, v2: bool
) -> None:
    messages = data.draw(mangled(v2_books if v2 else books))
    symbols = {"XMR/USD", "KSM/XBT", "OTHER"} if filtered else None
    compare(messages, symbols, check_crossed)


def test_each_kind_of_bad_message_is_refused_for_the_references_reason() -> None:
    pair = "XBT/USD"
    snap = (
        '[1,{"as":[["100.10","1.00000000","1618678133.1"]],"bs":[["100.00","3.00000000","1618678133.2"]]},'
        '"book-10","XBT/USD"]'
    )
    rows = [
        (b'[1,{"a":[["100.20","1.00000000","1618678133.3"]]},"book-10","XBT/USD"]', "out_of_sync"),
        (snap.encode(), None),
        (b'[1,{"a":[["100.20","1.00000000","1618678133.3"]],"c":"1"},"book-10","XBT/USD"]', "checksum_mismatch"),
        (b'[1,{"a":[["100.20","1.00000000","1618678133.3"]]},"book-10","XBT/USD"]', "out_of_sync"),
        (snap.encode(), None),
        (b'[1,{"b":[["100.50","1.00000000","1618678133.4"]]},"book-10","XBT/USD"]', "crossed_book"),
        (b'[1,{"b":[["1e-31","1","1"]]},"book-10","XBT/USD"]', "malformed"),
        (b'[1,{"b":[["1.0000000000000000001","1","1"]]},"book-10","XBT/USD"]', "malformed"),
        (b'[1,[["1.5","0.1","1618678133.5","b","l",""]],"trade","XBT/USD"]', None),
        (b'[1,[["1.5","0.1","1618678133.5","x","l",""]],"trade","XBT/USD"]', "malformed"),
        (b'[1,{"a":[]},"book-10","OTHER"]', "unknown_symbol"),
        (b'[1,{"a":[]},"chat","XBT/USD"]', "unknown_message_type"),
        (
            b'{"channel":"book","type":"update","data":[{"symbol":"XBT/USD","bids":[{"price":99,"qty":1}],'
            b'"timestamp":"1500-01-01T00:00:00Z"}]}',
            "malformed",
        ),  # before what int64 ns hold
        (
            b'{"channel":"book","type":"update","data":[{"symbol":"XBT/USD","bids":[{"price":99,"qty":1}],'
            b'"timestamp":"0001-01-01T00:00:00+01:00"}]}',
            "malformed",
        ),  # the reference raised OverflowError
        (b"x" * (4 * 1024 * 1024 + 1), "oversized"),
    ]
    messages = [r for r, _ in rows]
    nat = native.KrakenFeed({pair})
    got = nat.on_messages(messages).by_message(len(messages))
    assert [None if isinstance(o, list) else o.reason for o in got] == [why for _, why in rows]
    assert got[2].expected == 1 and got[2].got != 1  # type: ignore[union-attr]
    compare(messages, {pair})


def test_a_native_kraken_feed_state_continues_exactly(books: list[bytes], v2_books: list[bytes]) -> None:
    for stream in (books, v2_books):
        whole = native.KrakenFeed()
        want = whole.on_messages(stream).by_message(len(stream))
        first = native.KrakenFeed()
        first.on_messages(stream[:2000])
        for later in (pickle.loads(pickle.dumps(first)), copy.deepcopy(first)):
            got = later.on_messages(stream[2000:]).by_message(len(stream) - 2000)
            assert first_difference(want[2000:], got) is None
            assert later.precision == whole.precision and later.v2_depth == whole.v2_depth
            assert [later.counters(p) for p in whole.book_symbols()] == [
                whole.counters(p) for p in whole.book_symbols()
            ]
    broken = first.__getstate__()
    broken["core"]["precision"] = {"XBT/USD": (40, 8, "snapshot")}
    with pytest.raises(ValueError, match="precision"):
        native.KrakenFeed().__setstate__(broken)


# -- megatrading book ----------------------------------------------------------------------------------------------


def kraken_file(messages: list[bytes], folder: Path, name: str = "capture.txt") -> Path:
    """A cryptofeed capture of the messages (a receive time per line, as the real one has)."""
    path = folder / name
    lines = [b"wss://ws.kraken.com <-> 1618678132.3858151"]
    lines += [b"%d.%06d: " % (1618678133 + i // 1000, i % 1000) + m for i, m in enumerate(messages)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("check_crossed", [True, False])
def test_a_kraken_capture_gives_the_references_rows_stats_and_errors(
    shared_data: Path, v2_books: list[bytes], tmp_path: Path, check_crossed: bool
) -> None:
    mangled_v2 = list(v2_books)
    mangled_v2[500] = mangled_v2[500].replace(b'"checksum":', b'"checksum":1', 1)
    for path in (shared_data / CAPTURES / BOOKS, kraken_file(mangled_v2, tmp_path)):
        for symbol, levels, chunk in ((None, 10, 4096), (None, 1, 97), ("XMR/USD", 5, 1000)):
            ref, nat = (rebuild_outcome(path, levels, symbol, native=n, check_crossed=check_crossed, chunk=chunk,
                                        venue="kraken") for n in (False, True))  # fmt: skip
            assert nat == ref
            assert len(ref[0]) > 100


def test_the_book_command_writes_the_same_kraken_csv_on_both_paths(shared_data: Path, tmp_path: Path) -> None:
    outs = book_command_on_both_paths(shared_data / CAPTURES / BOOKS, "kraken", tmp_path)
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 100


# -- the worker's pipeline -----------------------------------------------------------------------------------------


def test_the_native_pipeline_gives_the_references_windows_across_snapshots_on_either_path(shared_data: Path) -> None:
    from orderbook.native.check import pipeline_difference

    venue, items = real_stream(shared_data, "kraken")
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]  # windows, and the mangled records' rejects
    assert pipeline_difference(want, run(venue, items, native=True)) is None
    n = len(items)
    cuts = {n // 5: True, 2 * n // 5: False, 3 * n // 5: True, 4 * n // 5: True}
    assert pipeline_difference(want, run(venue, items, native=True, cuts=cuts)) is None


@pytest.mark.parametrize("batch", [1, 37, 2000])
def test_the_native_pipeline_takes_batches_and_frames_as_the_reference_takes_records(
    books: list[bytes], v2_books: list[bytes], batch: int
) -> None:
    from orderbook.frames import encode_frame
    from orderbook.native.check import pipeline_difference
    from tests.test_native_lobster import in_batches

    # the two streams one after the other (the v2 snapshots replace the v1 books), a checksum broken, every
    # fourth run of records framed
    stream = books[:1500] + v2_books[:1500]
    stream[700] = stream[700].replace(b'"c":"', b'"c":"1', 1)
    records: list[bytes] = []
    for i in range(0, len(stream), 3):
        chunk = stream[i : i + 3]
        records += [encode_frame(chunk)] if i % 12 == 0 else chunk
    outs = [in_batches("kraken", [(None, v) for v in records], batch, n) for n in (False, True)]
    assert len(outs[0][0]) > 50 and outs[0][1]
    assert pipeline_difference(outs[0], outs[1]) is None
