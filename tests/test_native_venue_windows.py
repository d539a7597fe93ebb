"""NativeVenueWindows (the batch, native path) == VenuePipeline over VenueWindows (the reference, record
by record): every window's arrays and metadata, every reject (reason, text, record, index in its frame,
bytes), the stats; on every Binance capture and a simulated ITCH day, as plain records and as frames,
with mangled messages mixed in, warm replays, headlines, and any cut of the stream into batches."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import random
from pathlib import Path
from typing import NamedTuple

import msgpack
import pytest
from conftest import SHARED_DATA

from model.sim.engine import SEC, SimConfig
from model.sim.itch_day import itch_day_stream
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.errors import FeedError
from orderbook.frames import encode_frame
from orderbook.native.check import pipeline_difference
from orderbook.snapshot import SnapshotError, dump_state, load_state
from orderbook.venue_windows import WindowStats
from orderbook.venues.binance import BinanceFeed
from orderbook.venues.itch import encode
from orderbook.windows import Window, WindowConfig
from streams import snapshots
from streams.pipeline import Rejected, VenuePipeline
from tests.captures import one_per_market

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())
if native.available():
    from orderbook.native.venue_windows import NativeVenueWindows

CAPTURES = sorted(p.name for p in (SHARED_DATA / "binance-hftbacktest").glob("*.gz"))
CONFIG = WindowConfig(n_events=32, n_rows=8, every_events=16)
FRAMED_HEAD = 12_000  # records of each capture also compared as frames
Out = tuple[list[Window], list[tuple], WindowStats]


def reference(venue: str, values: list[bytes], *, warm_until: int = 0, max_bytes: int | None = None) -> Out:
    """The reference: VenuePipeline.process record by record (frames split, VenueWindows.process per message)."""
    pipe = VenuePipeline(venue, CONFIG, max_bytes=max_bytes, native=False)
    windows: list[Window] = []
    rejects: list[tuple] = []
    for i, value in enumerate(values):
        ws, rs = pipe.process(None, value, 0, i, warm=i < warm_until)
        windows += ws
        rejects += [_reject(r) for r in rs]
    return windows, rejects, pipe.stats


def native_path(
    venue: str, values: list[bytes], batch: int, *, warm_until: int = 0, max_bytes: int | None = None
) -> Out:
    """The same records through NativeVenueWindows.process, `batch` records a call (the warm ones apart)."""
    nvw = NativeVenueWindows(venue, CONFIG, **({} if max_bytes is None else {"max_bytes": max_bytes}))
    windows: list[Window] = []
    rejects: list[tuple] = []
    cuts = sorted({0, warm_until, len(values), *range(0, len(values), batch)})
    for a, b in itertools.pairwise(cuts):
        done = nvw.process(values[a:b], [(0, i) for i in range(a, b)], warm=b <= warm_until)
        windows += done.windows
        rejects += [(r.reason, r.error, a + r.record, r.index, r.value) for r in done.rejects]
    return windows, rejects, nvw.stats


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes
    partition: int
    offset: int


def _reject(r: Rejected) -> tuple:
    return (r.reason, r.error, r.offset, r.index, r.value)


def assert_same(want: Out, got: Out) -> None:
    assert (difference := pipeline_difference(want, got)) is None, difference


def frames(values: list[bytes], size: int) -> list[bytes]:
    """Consecutive messages as frames of `size` (a one-symbol capture: one key), the last one shorter."""
    return [encode_frame(values[i : i + size]) for i in range(0, len(values), size)]


# ---- Binance


def capture(name: str) -> list[bytes]:
    return [r.raw for r in BinanceFeed.read_capture(SHARED_DATA / "binance-hftbacktest" / name)]


@pytest.mark.realdata
@pytest.mark.parametrize("name", one_per_market(CAPTURES), ids=lambda n: n.split(".gz")[0])
def test_native_windows_equal_the_reference_on_every_binance_capture_as_messages_and_as_frames(
    shared_data: Path, name: str
) -> None:
    values = capture(name)
    want = reference("binance", values)
    assert len(want[0]) > 100  # the books went live and windowed
    assert_same(want, native_path("binance", values, 2000))
    # framing is the same code at any length: the head of the capture (its first snapshot, gaps and
    # resyncs included) as frames keeps make test within its budget
    framed = frames(values[:FRAMED_HEAD], 64)
    assert_same(reference("binance", framed), native_path("binance", framed, 300))


def mangled_binance(values: list[bytes]) -> list[bytes]:
    """A capture's head with what a feed meets: a truncated trade, bad JSON, a dropped diff (a
    sequence gap: the book is cleared and trades go on against it), a diff that crosses the book
    (its levels stay), and a frame with a bad message in the middle."""
    out = list(values[:6000])
    diffs = [i for i, v in enumerate(out) if b"depthUpdate" in v and i > 1000]
    # from the last index to the first, so that each edit leaves the earlier indices where they were
    del out[diffs[50]]  # the gap
    doc = json.loads(out[diffs[20]])
    body = doc.get("data", doc)
    body["b"] = [["99999999.0", "1.0"]]  # far above any ask: the book crosses, and stays so until the gap
    out[diffs[20]] = json.dumps(doc).encode()
    out.insert(diffs[1], b"{not json")
    trade = next(i for i in range(diffs[0], 0, -1) if b"rade" in out[i][:60])  # not a diff: no gap yet
    out[trade] = out[trade][:-7]  # truncated
    mid = len(out) // 2
    out[mid : mid + 5] = [encode_frame([*out[mid : mid + 2], b"[1, 2]", *out[mid + 2 : mid + 5]])]
    out.insert(mid + 1, b"\x00MTF\x01\x00\x03 short")  # a broken frame: one reject, unread
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["spot_btcusdt_20240808.gz", "usdm_ethusdt_20240808.gz"])
def test_native_rejects_mangled_binance_messages_as_the_reference_does(shared_data: Path, name: str) -> None:
    values = mangled_binance(capture(name))
    want = reference("binance", values)
    reasons = {r[0] for r in want[1]}
    assert {"malformed", "sequence_gap", "crossed_book", "bad_frame"} <= reasons, reasons
    assert any(r[3] == 2 for r in want[1])  # the frame's bad message, by its index
    for batch in (1, 37, 5000):
        assert_same(want, native_path("binance", values, batch))


def _decimal(units: int) -> str:
    return f"{units // 10**8}.{units % 10**8:08d}"


def crossed_snapshot_midway(values: list[bytes], at: int) -> tuple[list[bytes], int]:
    """A capture's head with a newer REST snapshot inserted while the book is live, before the first
    diff from `at` on: the book as it stands plus a bid at the best ask, so it is refused as crossed
    with its levels left in the book; that diff takes the crossing bid out again, and the diffs after
    it go on from the book the snapshot left. Also the inserted snapshot's index."""
    out = list(values[: at + 4000])
    j = next(i for i in range(at, len(out)) if b"depthUpdate" in out[i])
    feed = BinanceFeed()
    for v in out[:j]:
        with contextlib.suppress(FeedError):
            feed.on_message(v)
    doc = json.loads(out[j])
    body = doc.get("data", doc)
    sym = body["s"]
    sync, book = feed.syncs[sym], feed.books[sym]
    assert sync.live and sync.last_seq == body["U"] - 1, "the book is live and the diff is the next one"
    crossing = min(book.asks)
    bids = {**book.bids, crossing: 10**8}
    snapshot = {
        "lastUpdateId": sync.last_seq,
        "bids": [[_decimal(p), _decimal(q)] for p, q in sorted(bids.items(), reverse=True)],
        "asks": [[_decimal(p), _decimal(q)] for p, q in sorted(book.asks.items())],
    }
    body["b"].append([_decimal(crossing), "0"])
    out[j] = json.dumps(doc).encode()
    out.insert(j, json.dumps({"symbol": sym, "snapshot": snapshot}).encode())
    return out, j


@pytest.mark.realdata
def test_native_follows_a_crossed_snapshot_and_the_messages_after_it_in_the_same_batch(shared_data: Path) -> None:
    """The follower book takes the refused snapshot's levels where it stood in the batch: it used to be
    copied from the feed's book as the whole batch left it, ahead of the windows after the snapshot."""
    values, j = crossed_snapshot_midway(capture("spot_ethusdt_20240808.gz"), 3000)
    want = reference("binance", values)
    assert [r[2] for r in want[1] if r[0] == "crossed_book"] == [j]
    assert sum(j < w.offset[1] < 5000 for w in want[0]) > 100  # windows in the snapshot's batch of 5000
    for batch in (1, 37, 5000):
        assert_same(want, native_path("binance", values, batch))


@pytest.mark.realdata
def test_native_warm_records_build_state_without_windows_and_the_rest_continue_alike(shared_data: Path) -> None:
    values = capture("cm_ethusd_perp_20240808.gz")[:8000]
    want = reference("binance", values, warm_until=5000)
    assert want[0] and all(w.offset[1] >= 5000 for w in want[0])
    assert_same(want, native_path("binance", values, 700, warm_until=5000))


@pytest.mark.realdata
def test_native_oversized_records_are_rejected_unread_frame_or_not(shared_data: Path) -> None:
    values = capture("spot_ethusdt_20240808.gz")[:3000]
    values[100] = values[100] + b" " * 600
    values[200:210] = [encode_frame(values[200:210])]
    want = reference("binance", values, max_bytes=1000)
    assert sum(r[0] == "oversized" for r in want[1]) >= 2
    assert_same(want, native_path("binance", values, 250, max_bytes=1000))


@pytest.mark.realdata
def test_native_headlines_join_builders_made_before_and_after(shared_data: Path) -> None:
    values = capture("spot_btcusdt_20240808.gz")[:6000]
    t0 = (
        next(json.loads(v)["data"]["E"] for v in values[5990:] if b"trade" in v[:40]) * 1_000_000
    )  # in the last windows
    ref = VenuePipeline("binance", CONFIG, native=False)
    nvw = NativeVenueWindows("binance", CONFIG)
    got, want = [], []
    for k, (a, b) in enumerate([(0, 10), (10, 3000), (3000, 6000)]):
        for vw in (ref, nvw):
            vw.add_news(t0 + k, ["BTCUSDT", "OTHER"], f"headline {k}")
            vw.add_news(t0 + k, ["BTCUSDT"], f"headline {k}")  # idempotent
        for i in range(a, b):
            want += ref.process(None, values[i], 0, i)[0]
        got += nvw.process(values[a:b], [(0, i) for i in range(a, b)]).windows
    assert any(len(w.news) == 3 for w in want)
    assert_same((want, [], ref.stats), (got, [], nvw.stats))


# ---- ITCH


@pytest.fixture(scope="module")
def itch_sim() -> list[bytes]:
    """A simulated ITCH stream (the market simulator), several symbols."""
    result = simulate(SimConfig(n_symbols=3, duration_ns=900 * SEC, seed=11))
    return [m.raw for m in messages("itch", result)]


def test_native_windows_equal_the_reference_on_a_simulated_itch_day(itch_sim: list[bytes]) -> None:
    want = reference("itch", itch_sim)
    assert len(want[0]) > 100
    assert_same(want, native_path("itch", itch_sim, 1500))
    framed = frames(itch_sim, 32)  # frames of mixed symbols: the feed's order is all that matters
    assert_same(reference("itch", framed), native_path("itch", framed, 200))


def mangled_itch(values: list[bytes]) -> list[bytes]:
    """ITCH with a truncated message, unknown order references, an execution larger than its order
    (the order goes, the message is refused), a bid above the ask (the book crosses until it is
    deleted: every message of that book between is refused after it ran) and a frame with a bad
    message in the middle."""
    out = list(values)
    adds = [i for i, v in enumerate(out) if v[:1] == b"A"]
    n = adds[len(adds) // 3]
    locate = int.from_bytes(out[n][1:3], "big")
    stock = out[n][24:32].decode().strip()
    ts = int.from_bytes(out[n][5:11], "big")

    def add(ref: int, side: str, price: int, shares: int) -> bytes:
        return encode("A", locate=locate, timestamp=ts, order_ref=ref, side=side, shares=shares, stock=stock,
                      price=price)  # fmt: skip

    late = adds[2 * len(adds) // 3]
    out[late:late] = [
        add(9_000_001, "B", 100, 100),  # a bid at one cent
        encode("E", locate=locate, timestamp=ts, order_ref=9_000_001, shares=500, match=1),  # more than it has
        add(9_000_002, "B", 99_990_000, 100),  # far above the ask: crossed
        *out[late : late + 40],  # the book's messages now run and are refused
        encode("D", locate=locate, timestamp=ts, order_ref=9_000_002),  # uncrossed again
        encode("D", locate=locate, timestamp=ts, order_ref=424_242_424),  # never existed
    ]
    out[n] = out[n][:-3]  # truncated
    out[n + 5 : n + 8] = [encode_frame([out[n + 5], out[n + 6][:10], out[n + 7]])]
    return out


def test_native_rejects_mangled_itch_messages_as_the_reference_does(itch_sim: list[bytes]) -> None:
    values = mangled_itch(itch_sim)
    want = reference("itch", values)
    reasons = {r[0] for r in want[1]}
    assert {"malformed", "unknown_order", "book_error", "crossed_book"} <= reasons, reasons
    assert any(r[3] == 1 for r in want[1])
    for batch in (1, 53, 100_000):
        assert_same(want, native_path("itch", values, batch))


def test_native_itch_day_with_unknown_references_and_placeholder_books() -> None:
    s = itch_day_stream(5, n=3000, preopen_orders=True)
    assert s.unknown  # E/X/D/U with references that never existed
    # broken-trade prints on locate 1 before its stock directory: a book under `locate:1`, renamed by the R
    breaks = [encode("B", locate=1, timestamp=1_000 + i, match=i) for i in range(20)]
    values = [*breaks, *s.messages]
    want = reference("itch", values)
    assert any(w.symbol == "locate:1" for w in want[0]) and any(w.symbol == s.symbols[0] for w in want[0])
    assert_same(want, native_path("itch", values, 250))


def restored(nvw: NativeVenueWindows) -> NativeVenueWindows:
    """Through the codec, as a snapshot on `md.state` carries it."""
    return NativeVenueWindows.from_state(load_state(dump_state(nvw.__getstate__())))


@pytest.mark.realdata
@pytest.mark.parametrize("venue", ["binance", "itch"])
def test_a_native_state_restored_mid_stream_continues_exactly(
    shared_data: Path, itch_sim: list[bytes], venue: str
) -> None:
    # mangled: a gap's cleared book, a crossed book, buffered diffs and pending tickers are in the state
    values = mangled_binance(capture("usdm_btcusdt_20240808.gz")) if venue == "binance" else mangled_itch(itch_sim)
    want = reference(venue, values)
    for cut in (len(values) // 3, 2 * len(values) // 3):
        nvw = NativeVenueWindows(venue, CONFIG)
        first = nvw.process(values[:cut], [(0, i) for i in range(cut)])
        nvw.add_news(1, ["X"], "kept")
        again = restored(nvw)
        assert again.news == nvw.news and again.stats == nvw.stats
        rest = again.process(values[cut:], [(0, i) for i in range(cut, len(values))])
        windows = first.windows + rest.windows
        rejects = [(r.reason, r.error, r.record, r.index, r.value) for r in first.rejects]
        rejects += [(r.reason, r.error, cut + r.record, r.index, r.value) for r in rest.rejects]
        assert_same(want, (windows, rejects, again.stats))


def test_a_native_state_is_refused_whole_when_it_is_not_one(itch_sim: list[bytes]) -> None:
    nvw = NativeVenueWindows("itch", CONFIG)
    nvw.process(itch_sim[:500])
    state = nvw.__getstate__()
    with pytest.raises(ValueError, match="this build reads"):
        NativeVenueWindows.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="KeyError"):
        NativeVenueWindows.from_state({k: v for k, v in state.items() if k != "builders"})
    with pytest.raises(SnapshotError, match="lives in Rust"):  # the object itself: the codec cannot see inside
        dump_state(nvw)


@pytest.fixture
def native_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "1")


def test_a_snapshot_record_restores_on_either_path_whichever_path_took_it(
    itch_sim: list[bytes], native_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [_Rec(None, v, 2, i) for i, v in enumerate(itch_sim)]
    cut = len(records) // 2
    full = VenuePipeline("itch", CONFIG)
    assert full.native
    want_w, _ = full.process_batch(records)
    pipe = VenuePipeline("itch", CONFIG)
    pipe.process_batch(records[:cut])
    at, value = snapshots.encode("g", "md.raw.itch", 2, pipe)
    assert at == cut
    args = {"group": "g", "topic": "md.raw.itch", "partition": 2, "venue": "itch", "config": CONFIG, "max_bytes": None}
    back = snapshots.decode(value, **args)
    assert back.native and back.position == {2: cut}
    got_w, _ = back.process_batch(records[cut:])
    first_w, _ = VenuePipeline("itch", CONFIG).process_batch(records[:cut])
    assert_same((want_w, [], full.stats), (first_w + got_w, [], back.stats))
    # across the switch, either way, the state is converted (orderbook/native/convert.py) and goes on alike
    monkeypatch.setenv(native.ENV, "0")
    on_reference = snapshots.decode(value, **args)
    assert not on_reference.native and on_reference.position == {2: cut}
    ref_w, _ = on_reference.process_batch(records[cut:])
    assert_same((want_w, [], full.stats), (first_w + ref_w, [], on_reference.stats))
    reference_pipe = VenuePipeline("itch", CONFIG)
    reference_pipe.process_batch(records[:cut])
    _, reference_value = snapshots.encode("g", "md.raw.itch", 2, reference_pipe)
    monkeypatch.setenv(native.ENV, "1")
    on_native = snapshots.decode(reference_value, **args)
    assert on_native.native and on_native.position == {2: cut}
    native_w, _ = on_native.process_batch(records[cut:])
    assert_same((want_w, [], full.stats), (first_w + native_w, [], on_native.stats))


@pytest.mark.parametrize("path", ["1", "0"], ids=["native", "reference"])
def test_a_captured_state_encodes_as_it_stood_when_captured_whatever_came_after(
    itch_sim: list[bytes], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The worker captures a partition's state under its lock and encodes it in a thread while the
    next batches run (streams/partition.py): the record must be the state at the capture."""
    monkeypatch.setenv(native.ENV, path)
    records = [_Rec(None, v, 2, i) for i, v in enumerate(itch_sim)]
    cut = len(records) // 2
    pipe = VenuePipeline("itch", CONFIG)
    assert pipe.native == (path == "1")
    pipe.process_batch(records[:cut])
    want = snapshots.encode("g", "md.raw.itch", 2, pipe)
    later = snapshots.capture("g", "md.raw.itch", 2, pipe)
    pipe.process_batch(records[cut:])  # books, feeds and rings all move on
    at, value = later()
    assert at == cut and msgpack.unpackb(value)["state"] == msgpack.unpackb(want[1])["state"]
    assert snapshots.encode("g", "md.raw.itch", 2, pipe)[1] != value


def test_native_refuses_a_venue_it_does_not_decode() -> None:
    with pytest.raises(ValueError, match="no native feed for 'bitstamp'"):
        NativeVenueWindows("bitstamp")


def test_any_cut_into_batches_gives_the_same_windows(itch_sim: list[bytes]) -> None:
    rng = random.Random(3)
    values = itch_sim[:6000]
    want = native_path("itch", values, 6000)
    nvw = NativeVenueWindows("itch", CONFIG)
    windows, at = [], 0
    while at < len(values):
        n = rng.choice([1, 2, 5, 50, 400])
        windows += nvw.process(values[at : at + n], [(0, i) for i in range(at, at + n)]).windows
        at += n
    assert_same(want, (windows, [], nvw.stats))


def test_the_pipelines_batch_on_the_native_path_equals_the_reference_record_by_record(itch_sim: list[bytes]) -> None:
    values = mangled_itch(itch_sim)[:8000]
    records = [_Rec(b"k", v, 3, 100 + i) for i, v in enumerate(values)]
    ref = VenuePipeline("itch", CONFIG, native=False)
    nat = VenuePipeline("itch", CONFIG, native=True)
    want_w, want_r = ref.process_batch(records[:3000], warm=True)
    got_w, got_r = nat.process_batch(records[:3000], warm=True)
    assert not want_w and not got_w and nat.position == ref.position == {3: 3100}
    for a, b in ((3000, 3001), (3001, 5000), (5000, 8000)):
        ww, wr = ref.process_batch(records[a:b])
        gw, gr = (
            nat.process(records[a].key, records[a].value, 3, 100 + a) if b == a + 1 else nat.process_batch(records[a:b])
        )
        want_w += ww
        want_r += wr
        got_w += gw
        got_r += gr
    assert nat.position == ref.position == {3: 8100}
    assert [dataclasses.replace(r, error="") for r in got_r] == [dataclasses.replace(r, error="") for r in want_r]
    assert_same((want_w, [], ref.stats), (got_w, [], nat.stats))


@pytest.mark.parametrize("venue", [pytest.param("binance", marks=pytest.mark.realdata), "itch"])
def test_the_record_clocks_are_the_references_and_change_nothing(itch_sim: list[bytes], venue: str) -> None:
    """NativeVenueWindows.clocks (where `megatrading score` cuts a batch for a headline): each record's latest
    event time as the reference's VenueWindows.process gives the events (a refused record, or one without an
    event, has none), the native state untouched."""
    from orderbook.frames import FrameError, is_frame, messages_of
    from orderbook.native.venue_windows import NO_CLOCK
    from orderbook.venue_windows import VenueWindows

    values = (
        mangled_binance(capture("spot_btcusdt_20240808.gz")[:3000])
        if venue == "binance"
        else mangled_itch(itch_sim[:3000])
    )
    vw = VenueWindows(venue, CONFIG)

    def events(value: bytes) -> list:
        try:  # a frame's messages each (VenuePipeline's split), a broken frame refused whole
            messages = messages_of(value, venue) if is_frame(value) else [value]
        except FrameError:
            messages = []
        return [e for m in messages for e in vw.process(None, m).events]

    for value in values[:1000]:
        events(value)
    nvw = NativeVenueWindows(venue, CONFIG)
    nvw.process(values[:1000])
    before = dump_state(nvw.__getstate__())
    got = nvw.clocks(values[1000:]).tolist()
    assert dump_state(nvw.__getstate__()) == before
    want = [max((e.ts for e in events(value)), default=NO_CLOCK) for value in values[1000:]]
    assert got == want and NO_CLOCK in want and len(set(want)) > 100
