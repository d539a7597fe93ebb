"""The native LOBSTER decode + apply (orderbook.native.LobsterFeed) against the reference `LobsterFeed`, row
by row: the same events (every field), the same refusals (class, reason, symbol, seq), the same books, queues
and row counts, on simulated streams of several tickers and on the same streams mangled by hypothesis (fields
changed, dropped, added; numbers past int64; event types out of range; keys missing, empty or not UTF-8; rows
repeated, executions larger than their orders, crossing orders), with and without the crossed-book check and
a symbol filter; its state continues exactly; `megatrading book --format lobster` gives the reference's rows
on the native path, and the worker's pipeline (NativeVenueWindows) the reference's windows, rejects and stats,
also across its snapshots restored on either path."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.sim.engine import SEC, SimConfig, SimResult
from model.sim.run import simulate
from model.sim.writers import messages, write_lobster
from orderbook import native
from orderbook.native.check import first_difference, rebuild_outcome, reference_outcomes
from orderbook.venues.lobster import LobsterFeed
from tests.snapshot_runs import CONFIG, run
from tests.test_rebuild import book_command_on_both_paths
from tests.test_snapshot import sim_stream

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Keyed = list[tuple[bytes | None, bytes]]


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes
    partition: int
    offset: int


@pytest.fixture(scope="module")
def result() -> SimResult:
    return simulate(SimConfig(n_symbols=3, duration_ns=600 * SEC, seed=5))


@pytest.fixture(scope="module")
def stream(result: SimResult) -> Keyed:
    return [(m.symbol.encode(), m.raw) for m in messages("lobster", result)]


def assert_same_feed(ref: LobsterFeed, nat: native.LobsterFeed) -> None:
    assert nat.book_symbols() == list(ref.books)
    for symbol, book in ref.books.items():
        assert nat.book_dict(symbol) == book.to_dict(), symbol
        assert nat.orders(symbol) == {oid: (int(o.side), o.price, o.size) for oid, o in book.orders.items()}
        for s, side in ((1, book.bids), (-1, book.asks)):
            for price in list(side)[:3]:
                assert nat.queue(symbol, s, price) == book.queue(s, price)  # time priority kept
    assert nat.rows == ref.rows


def compare(records: Keyed, symbols: set[str] | None = None, check_crossed: bool = True) -> native.LobsterFeed:
    """Both over the keyed rows: the same outcome for each, the same feeds after."""
    keys, raws = [k for k, _ in records], [r for _, r in records]
    ref = LobsterFeed(symbols, check_crossed=check_crossed)
    want = reference_outcomes(ref, raws, keys=keys)
    nat = native.LobsterFeed(symbols, check_crossed=check_crossed)
    got = nat.on_messages(raws, keys).by_message(len(raws))
    assert first_difference(want, got) is None, first_difference(want, got)
    assert_same_feed(ref, nat)
    return nat


def test_native_lobster_equals_the_reference_on_a_simulated_stream(stream: Keyed) -> None:
    assert len(stream) > 5000 and len({k for k, _ in stream}) == 3
    compare(stream)
    compare(stream, symbols={stream[0][0].decode()})  # the others refused as unknown symbols, their rows counted


# a field's replacements: what a damaged or foreign file holds where a number should be
ODD_FIELDS = [b"", b"x", b"-", b"+1", b" 1", b"1.5", b"nan", b"-1", b"0", b"00000000000000000000000001",
              b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809",
              b"9" * 30, b"1" * 4301, b"34200.0000000001", b"34200.1000000000", b"\xff", b"\xd9\xa1"]  # fmt: skip
ODD_KEYS = [None, b"", b"\xff\xfeAB", b"\xed\xa0\x80", b"OTHER"]


@st.composite
def mangled(draw: st.DrawFn, base: Keyed) -> Keyed:
    start = draw(st.integers(0, len(base) - 400))
    out = list(base[start : start + 400])
    for _ in range(draw(st.integers(1, 25))):
        i = draw(st.integers(0, len(out) - 1))
        key, raw = out[i]
        fields = raw.split(b",")
        how = draw(st.sampled_from(["field", "drop", "add", "type", "key", "repeat", "oversize", "cross", "space"]))
        at = draw(st.integers(0, len(fields) - 1))  # a row edited before may have fewer fields
        if how == "field":
            fields[at] = draw(st.sampled_from(ODD_FIELDS))
        elif how == "drop" and len(fields) > 1:
            del fields[at]
        elif how == "add":
            fields.append(b"1")
        elif how == "type" and len(fields) > 1:
            fields[1] = str(draw(st.integers(0, 9))).encode()  # executions of orders added, deletes of unknown ones
        elif how == "key":
            key = draw(st.sampled_from(ODD_KEYS))
        elif how == "repeat":
            out.insert(i, out[i])  # a duplicate add, an execution larger than what is left
            continue
        elif how == "oversize":
            out[i] = (key, raw + b" " * (4 * 1024 * 1024))
            continue
        elif how == "cross" and len(fields) == 6 and fields[4].isdigit():
            fields[4] = str(int(fields[4]) + draw(st.sampled_from([-500, 500]))).encode()
        elif how == "space":
            fields[0] = b"\x0b " + fields[0]  # bytes.strip() takes the vertical tab too
        out[i] = (key, b",".join(fields))
    return out


@SETTINGS
@given(data=st.data(), check_crossed=st.booleans(), filtered=st.booleans())
def test_native_lobster_equals_the_reference_on_mangled_rows(
    stream: Keyed, data: st.DataObject, check_crossed: bool, filtered: bool
) -> None:
    records = data.draw(mangled(stream))
    symbols = {stream[0][0].decode(), "OTHER"} if filtered else None
    compare(records, symbols, check_crossed)


def test_each_kind_of_bad_row_is_refused_for_the_references_reason(stream: Keyed) -> None:
    key = stream[0][0]
    rows = [
        (b"34200.1,1,1,100,5853300,1", None),
        (b"34200.1,1,1,100,5853300,1", "duplicate_order"),
        (b"34200.2,4,1,150,5853300,1", "book_error"),  # 50 more than the order had: it is gone all the same
        (b"34200.3,9,1,1,1,1", "unknown_message_type"),
        (b"34200.3,1,2,10,5853200,-1", None),
        (b"34200.4,3,99,1,1,1", "unknown_order"),
        (b"34200.5,7,0,0,2,-1", "malformed"),  # a halt row's price is -1, 0 or 1
        (b"1" * 4301 + b",1,3,1,1,1", "malformed"),  # a time int() refuses to read
        (b"34200.6,1,4,1,9223372036854775808,1", "malformed"),  # past int64
        (b"34200.7,1,5,-1,1,1", "malformed"),
        (b"34200.71,7,0,0,-1,-1", None),  # a halt, quoting, trading again: STATUS events
        (b"34200.72,7,5,3,0,1", None),
        (b"34200.73,7,0,0,1,-1", None),
        (b"34200.74,5,9,10,5000,1", None),  # a hidden execution and a cross trade: TRADE events
        (b"34200.75,6,0,100,5000,-1", None),
        (b"34200.8,1,6,10,5853300,1", "crossed_book"),  # applied, then refused
    ]
    records = [(key, r) for r, _ in rows] + [(None, rows[0][0]), (b"", rows[0][0])]
    nat = native.LobsterFeed()
    got = nat.on_messages([r for _, r in records], [k for k, _ in records]).by_message(len(records))
    reasons = [None if isinstance(o, list) else o.reason for o in got]
    assert reasons == [why for _, why in rows] + ["malformed", "malformed"]
    compare(records)
    assert nat.orders(key.decode()) == {2: (-1, 5853200, 10), 6: (1, 5853300, 10)}


def test_a_native_lobster_feed_state_continues_exactly(stream: Keyed) -> None:
    keys, raws = [k for k, _ in stream], [r for _, r in stream]
    whole = native.LobsterFeed()
    want = whole.on_messages(raws, keys).by_message(len(raws))
    first = native.LobsterFeed()
    first.on_messages(raws[:3000], keys[:3000])
    for later in (pickle.loads(pickle.dumps(first)), copy.deepcopy(first)):
        got = later.on_messages(raws[3000:], keys[3000:]).by_message(len(raws) - 3000)
        assert first_difference(want[3000:], got) is None
        assert later.rows == whole.rows and later.book_symbols() == whole.book_symbols()
    broken = first.__getstate__()
    broken["core"]["rows"] = broken["core"]["rows"][:-8]
    with pytest.raises(ValueError, match="rows"):
        native.LobsterFeed().__setstate__(broken)


# -- megatrading book ------------------------------------------------------------------------------------------


def lobster_file(result: SimResult, folder: Path, *, mangle: bool = False) -> Path:
    # the busiest ticker's message file
    path = max((p for p in write_lobster(result, folder, 5) if "_message_" in p.name), key=lambda p: p.stat().st_size)
    if mangle:
        rows = path.read_bytes().splitlines()
        rows[100] = b"34200.0,9,1,1,1,1"  # an unknown event type
        rows[200] = rows[200].replace(b",", b";")  # one field
        rows.insert(300, rows[299])  # a repeated row: a duplicate add or an execution past its order
        fields = rows[400].split(b",")
        rows[400] = b",".join([fields[0], b"1", b"777777", b"5", b"99999999", b"1"])  # a bid above every ask
        path.write_bytes(b"\n".join(rows) + b"\n")
    return path


@pytest.mark.parametrize("mangle", [False, True])
@pytest.mark.parametrize("check_crossed", [True, False])
def test_a_lobster_file_gives_the_references_rows_stats_and_errors(
    result: SimResult, tmp_path: Path, mangle: bool, check_crossed: bool
) -> None:
    path = lobster_file(result, tmp_path, mangle=mangle)
    for symbol, levels, chunk in ((None, 10, 4096), (None, 1, 97), ("AAPL", 5, 1000)):
        ref, nat = (rebuild_outcome(path, levels, symbol, native=n, check_crossed=check_crossed, chunk=chunk,
                                    venue="lobster") for n in (False, True))  # fmt: skip
        assert nat == ref
        assert len(ref[0]) > 1000 and bool(ref[2]) is mangle


def test_the_book_command_writes_the_same_lobster_csv_on_both_paths(result: SimResult, tmp_path: Path) -> None:
    outs = book_command_on_both_paths(lobster_file(result, tmp_path, mangle=True), "lobster", tmp_path)
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 1000


# -- the worker's pipeline -----------------------------------------------------------------------------------------


def test_the_native_pipeline_gives_the_references_windows_across_snapshots_on_either_path(result: SimResult) -> None:
    venue, items = sim_stream(result, "lobster")
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]  # windows, and the mangled records' rejects
    from orderbook.native.check import pipeline_difference

    assert pipeline_difference(want, run(venue, items, native=True)) is None
    n = len(items)
    cuts = {n // 5: True, 2 * n // 5: False, 3 * n // 5: True, 4 * n // 5: True}
    assert pipeline_difference(want, run(venue, items, native=True, cuts=cuts)) is None


@pytest.mark.parametrize("batch", [1, 37, 2000])
def test_the_native_pipeline_takes_batches_and_frames_as_the_reference_takes_records(
    result: SimResult, batch: int
) -> None:
    from orderbook.frames import encode_frame
    from orderbook.native.check import pipeline_difference

    _, items = sim_stream(result, "lobster")
    records = [(it.key, it.raw) for it in items if not it.news]
    # runs of one key's rows as frames (the worker's replay writes them so), and a record without a key
    framed: list[tuple[bytes | None, bytes]] = []
    i = 0
    while i < len(records):
        key, n = records[i][0], 1 + i % 5
        run_ = [raw for k, raw in records[i : i + n] if k == key]
        framed.append((key, encode_frame(run_) if len(run_) > 1 else run_[0]))
        i += len(run_)
    framed.insert(len(framed) // 2, (None, records[0][1]))
    outs = [in_batches("lobster", framed, batch, native_path) for native_path in (False, True)]
    assert len(outs[0][0]) > 40 and any(r[2] is None for r in outs[0][1])
    assert pipeline_difference(*outs) is None


def in_batches(venue: str, records: Keyed, batch: int, native_path: bool) -> tuple[list, list, object]:
    """Keyed records through a VenuePipeline `batch` at a time (the worker's process_batch): its (windows,
    rejects, stats), each reject as (reason, error, key, offset, index, value)."""
    from streams.pipeline import VenuePipeline

    pipe = VenuePipeline(venue, CONFIG, native=native_path)
    recs = [_Rec(k, v, 0, i) for i, (k, v) in enumerate(records)]
    windows, rejects = [], []
    for lo in range(0, len(recs), batch):
        ws, rs = pipe.process_batch(recs[lo : lo + batch])
        windows += ws
        rejects += [(r.reason, r.error, r.key, r.offset, r.index, r.value) for r in rs]
    return windows, rejects, pipe.stats


def test_score_on_lobster_files_with_headlines_gives_the_reference_windows(
    result: SimResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`megatrading score` of several LOBSTER files (each keyed by its file name's ticker) with a news file: the
    native path's windows are the reference's record by record, more headlines than a builder keeps too."""
    from model.serving.scoring import stream_windows
    from orderbook.news import Headline
    from orderbook.venues import capture_records
    from tests.test_native_venue_windows import assert_same

    if not native.enabled():
        pytest.skip(native.describe())
    paths = [p for p in write_lobster(result, tmp_path, 5) if "_message_" in p.name]
    records = list(capture_records("lobster", paths))
    names = [s.name for s in result.symbols]
    headlines = [Headline((34_200 + 4 * k) * SEC, [names[k % 3]], f"headline {k}") for k in range(150)]
    got = list(stream_windows("lobster", iter(records), headlines)[0])
    monkeypatch.setenv(native.ENV, "0")
    want = list(stream_windows("lobster", iter(records), headlines)[0])
    assert len(want) > 100 and any(w.news_mask.any() for w in want)
    assert_same((want, [], None), (got, [], None))
