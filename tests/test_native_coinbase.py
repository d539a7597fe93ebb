"""The native Coinbase decode + apply (orderbook.native.CoinbaseFeed) against the reference `CoinbaseFeed`, message
by message: the same events (every field, the order ids given back as their UUIDs), the same refusals (class,
reason, symbol, seq, ts, a gap's expected/got), the same books (L2 levels; L3 orders and every queue), syncs
(live, sequence, resyncs, snapshots, buffered messages) and level-2 counts; on the real captures (the level2 and
matches channels of ten products, REST level-2 and level-3 snapshots of BTC-USD), on a simulated full channel,
and on both mangled by hypothesis (sequences repeated, skipped and reordered, snapshots moved, resent stale or
ahead and split into parts that go missing, ids, sides, prices, sizes and times replaced by what a damaged or
foreign feed holds, types and products changed, truncated and oversized messages), with and without the
crossed-book check and a product filter; its state continues exactly (pickled, and converted to the reference's
and back); `megatrading book --format coinbase` gives the reference's rows on the native path, and the worker's
pipeline (NativeVenueWindows) the reference's windows, rejects and stats, in batches and frames, across its
snapshots restored on either path."""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.sim.writers import messages as sim_messages
from orderbook import native
from orderbook.book import L3Book
from orderbook.errors import MAX_MESSAGE_BYTES, FeedError
from orderbook.native.check import first_difference, reference_outcomes
from orderbook.venues.coinbase import CoinbaseFeed, snapshot_messages
from tests.snapshot_runs import run
from tests.test_coinbase import body_of, done, full, l2_snapshot, l2update, l3_snapshot, match, opened
from tests.test_rebuild import book_command_on_both_paths
from tests.test_snapshot import real_stream, sim, sim_stream  # noqa: F401 (sim: the fixture)

pytestmark = [pytest.mark.skipif(not native.available(), reason=native.describe())]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPTURE = "cryptofeed-captures/COINBASE.ws.28.0.gz"
SNAPSHOTS = "coinbase-snapshots"


def assert_same_feed(ref: CoinbaseFeed, nat: native.CoinbaseFeed) -> None:
    assert nat.book_symbols() == list(ref.books)
    names = nat.order_names or {}
    for product, book in ref.books.items():
        assert nat.book_type(product) == book.book_type.name, product
        assert nat.book_dict(product) == book.to_dict(), product
        sync = ref.syncs[product]
        assert nat.sync(product) == (sync.live, sync.last_seq, sync.resyncs, sync.snapshots, len(sync.buffer)), product
        if isinstance(book, L3Book):
            orders = {names[i]: o for i, o in (nat.orders(product) or {}).items()}
            assert orders == {k: (int(o.side), o.price, o.size) for k, o in book.orders.items()}, product
            for side, levels in ((1, book.bids), (-1, book.asks)):
                for price in levels:
                    got = [(names[i], size) for i, size in nat.queue(product, side, price)]
                    assert got == book.queue(side, price), (product, side, price)
    assert nat.l2_counts == ref.l2_counts


def compare(messages: list[bytes], symbols: set[str] | None = None, check_crossed: bool = True) -> None:
    """Both over the messages: the same outcome for each, the same feeds after."""
    ref = CoinbaseFeed(symbols, check_crossed=check_crossed)
    want = reference_outcomes(ref, messages)
    nat = native.CoinbaseFeed(symbols, check_crossed=check_crossed, order_names=True)
    got = nat.on_messages(messages).by_message(len(messages))
    assert first_difference(want, got) is None, first_difference(want, got)
    assert_same_feed(ref, nat)


@pytest.fixture(scope="module")
def level2(shared_data: Path) -> list[bytes]:
    return [r.raw for r in CoinbaseFeed.read_capture(shared_data / CAPTURE)]


@pytest.fixture(scope="module")
def rest_snapshots(shared_data: Path) -> list[bytes]:
    """The REST level-2 and level-3 bodies of BTC-USD as the topic carries them (in parts)."""
    return [r.raw for name in ("l2_snapshot.json.gz", "l3_snapshot.json.gz")
            for r in CoinbaseFeed.read_capture(shared_data / SNAPSHOTS / name)]  # fmt: skip


@pytest.fixture(scope="module")
def sim_full() -> list[bytes]:
    """A simulated full channel of two products (an l3_snapshot each, then every order's messages)."""
    result = simulate(SimConfig(n_symbols=2, duration_ns=60 * SEC, seed=11))
    return [m.raw for m in sim_messages("coinbase", result)]


@pytest.mark.realdata
def test_the_level2_capture_gives_the_reference_events_and_books(level2: list[bytes]) -> None:
    compare(level2)
    compare(level2, symbols={"SKL-USD", "BAND-GBP"}, check_crossed=False)


@pytest.mark.realdata
def test_rest_snapshots_give_the_reference_l2_book_and_l3_orders_and_queues(rest_snapshots: list[bytes]) -> None:
    # the level-2 body makes BTC-USD an L2 book: its level-3 body is then refused as the reference refuses it
    compare(rest_snapshots)
    compare(rest_snapshots[1:])


def test_a_simulated_full_channel_gives_the_reference_events_books_and_queues(sim_full: list[bytes]) -> None:
    compare(sim_full)


def rules() -> list[bytes]:
    """Every rule of the full channel the reference states, written out: buffered early messages and matches,
    replay past the snapshot, stale and gapped sequences, each book error, changes in place and re-queued."""
    return [
        match(5, "m", "buy", "100", "1"),  # before the product has a book: kept aside, replayed
        opened(9, "x", "sell", "102", "1"),
        l3_snapshot(8, bids=[("100", "2", "m"), ("100", "1", "n")], asks=[("101", "3", "s")]),
        opened(10, "a", "buy", "99", "5"),
        opened(10, "a", "buy", "99", "5"),  # stale
        full("received", 11, order_id="r", side="buy"),
        full("change", 12, order_id="a", side="buy", price="99", new_size="4"),  # in place
        full("change", 13, order_id="a", side="buy", price="99", new_size="6"),  # larger: re-queued
        full("change", 14, order_id="n", side="buy", price="100", new_size="1", new_price="98"),
        full("change", 15, order_id="zz", side="buy", new_size="1"),  # not on the book
        match(16, "m", "buy", "100", "2"),  # fills it
        done(17, "m", "buy", "100", "0", reason="filled"),  # filled already: ignored
        done(18, "s", "sell", "101", "2"),  # remaining disagrees: removed, then a book error
        l3_snapshot(18, bids=[("100", "1", "b"), ("100", "1", "b")]),  # a duplicate: no book
        l3_snapshot(18, bids=[("100", "1", "b")], asks=[("101", "1", "c")]),
        opened(20, "q", "buy", "100", "1"),  # a gap
        l3_snapshot(19, bids=[("100", "1", "b")], asks=[("101", "1", "c")]),  # replays 20
        match(21, "c", "buy", "101", "1"),  # the wrong side
        l3_snapshot(21, bids=[("100", "1", "b")], asks=[("101", "1", "c")]),
        match(22, "c", "sell", "101", "2"),  # more than it had
        l3_snapshot(22, bids=[("100", "1", "b")], asks=[("101", "1", "c")]),
        opened(23, "d", "sell", "99", "1"),  # crosses
        opened(24, "b", "buy", "1", "1"),  # already resting
        l3_snapshot(24, bids=[("100", "1", "b")]),
        opened(25, "e", "buy", "100", "0"),  # size 0
        l3_snapshot(25, bids=[("100", "1", "b")]),
        full("change", 26, order_id="b", side="buy", price="100", new_size="0"),
        l3_snapshot(26, bids=[("100", "1", "b")]),
        full("change", 27, order_id="b", side="buy", price="100", new_size="0", new_price="99"),
        l2_snapshot(),  # BTC-USD keeps an L3 book
        l2update([("buy", "1", "1")], product="ETH-USD"),  # before its snapshot
        l2_snapshot(product="ETH-USD"),
        match(7, "t", "sell", "100", "1", taker="u").replace(b"BTC-USD", b"ETH-USD"),  # a trade on an L2 book
        full("open", 1, product="ETH-USD", order_id="o", side="buy", price="1", remaining_size="1"),
        b'{"type":"error","message":"Failed to subscribe","reason":"XX-YY is not a valid product"}',
        b'{"type":"error","message":7}',
        b'{"type":"weird"}',
        b'{"type":"heartbeat","sequence":3}',
    ]


def test_the_full_channel_rules_hold_for_each_message_kind() -> None:
    messages = rules()
    compare(messages)
    compare(messages, symbols={"BTC-USD"})
    compare(messages, check_crossed=False)


def test_a_buffer_past_its_limit_is_a_loss_of_sync() -> None:
    received = [full("received", n, order_id="r", side="buy") for n in range(2, 100_003)]
    messages = [opened(1, "a", "buy", "1", "1"), *received]
    compare(messages)


# -- mangling ------------------------------------------------------------------------------------------------------

ODD_PRICES = ["", "x", "-1", "0", "1e2", "1.000000001", "1.0000000000", "NaN", "92233720368.54775808", "\u0661", "0.5"]
ODD_TIMES = ["2021-04-17T16:43:37.075687", "2021-04-17T16:43:37+00:00", "2021-02-29T00:00:00Z",
             "1677-09-21T00:12:43.145224191Z", "1677-09-21T00:12:43.145224192Z", "2262-04-11T23:47:16.854775808Z",
             "2021-04-17 16:43:37Z", "\uff12021-04-17T16:43:37Z", "2021-04-17T16:43:37.0000000000Z",
             "2021-04-17T24:00:00Z"]  # fmt: skip
ODD_VALUES: list[Any] = [None, 7, -1, 2**63, 1.5, True, [], {}, "", "buy", "sell", "\ud800", "BTC-USD", "x" * 50]
ODD_MESSAGES = [b"{truncated", b"[]", b"7", b"null", b'{"type":7}', b'{"type":"\\ud800"}', b'{"a":1,}', b"\xff\xfe",
                b'{"type":"ticker","price":NaN}', b"\xef\xbb\xbf{}", b'{"type":"subscriptions"}',
                b'{"type":"activate"}']  # fmt: skip
KEYS = ["sequence", "time", "price", "size", "remaining_size", "new_size", "new_price", "side", "order_id",
        "maker_order_id", "product_id", "type", "part", "parts", "bids", "asks", "changes"]  # fmt: skip


# the book-changing mangles weigh more than those that break the sequence, after which a book only buffers
HOW = ["field", "drop", "repeat", "swap", "move", "cut", "oversize", "message", "parts", "delete",
       *4 * ["snapshot", "size", "id"]]  # fmt: skip


IDS: list[str] = []  # order ids of the base flow (`sim_base`)


def _snapshots(base: list[bytes], at: list[int]) -> list[tuple[int, list[bytes]]]:
    """Level-3 snapshots of the reference's books after message i (i in `at`), each in parts of 3 entries."""
    feed, out, points = CoinbaseFeed(check_crossed=False), [], set(at)
    for i, raw in enumerate(base):
        with contextlib.suppress(FeedError):
            feed.on_message(raw)
        if i in points:
            for product, book in feed.books.items():
                if isinstance(book, L3Book) and feed.syncs[product].last_seq is not None:
                    body = body_of(book, feed.syncs[product].last_seq)
                    out.append((i, snapshot_messages(body, product, part_entries=3)))
    return out


@st.composite
def mangled(draw: st.DrawFn, base: list[bytes], snaps: list[tuple[int, list[bytes]]]) -> list[bytes]:
    out = list(base)
    for _ in range(draw(st.integers(1, 12))):
        i = draw(st.integers(0, len(out) - 1))
        how = draw(st.sampled_from(HOW))
        if how == "drop":
            del out[i]
        elif how == "repeat":
            out.insert(draw(st.integers(0, len(out))), out[i])
        elif how == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        elif how == "move":
            out.insert(draw(st.integers(0, len(out))), out.pop(i))
        elif how == "snapshot" and snaps:
            _, parts = draw(st.sampled_from(snaps))
            out[i:i] = parts
        elif how == "parts" and snaps:
            _, parts = draw(st.sampled_from(snaps))
            parts = list(parts)
            if len(parts) > 1:
                del parts[draw(st.integers(0, len(parts) - 1))]
            out[i:i] = draw(st.permutations(parts)) if draw(st.booleans()) else parts
        elif how == "cut":
            out[i] = out[i][: draw(st.integers(0, len(out[i])))]
        elif how == "oversize":
            out[i] = out[i][:-1] + b',"pad":"' + b"x" * MAX_MESSAGE_BYTES + b'"}'
        elif how == "message":
            out[i] = draw(st.sampled_from(ODD_MESSAGES))
        else:
            try:
                msg = json.loads(out[i])
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if how == "field":
                key = draw(st.sampled_from(KEYS))
                odd = [st.sampled_from(ODD_VALUES), st.sampled_from(ODD_PRICES), st.sampled_from(ODD_TIMES)]
                msg[key] = draw(st.one_of(*odd, st.integers(0, 2_000)))
            elif how == "size":  # a size a book refuses, or one that re-queues
                for key in ("remaining_size", "size", "new_size"):
                    if key in msg:
                        msg[key] = draw(st.sampled_from(["0", "0.00000001", "1000", msg[key]]))
            elif how == "id":  # an order that is not on the book, or one already resting
                for key in ("order_id", "maker_order_id"):
                    if key in msg:
                        msg[key] = draw(st.sampled_from([*IDS, "unknown"]))
            elif how == "delete" and msg:
                del msg[draw(st.sampled_from(sorted(msg)))]
            out[i] = json.dumps(msg).encode()
    return out


@pytest.fixture(scope="module")
def sim_base(sim_full: list[bytes]) -> tuple[list[bytes], list[tuple[int, list[bytes]]]]:
    base = sim_full[:250]
    IDS[:] = sorted({json.loads(raw).get("order_id", "") for raw in base[10:60]} - {""})
    return base, _snapshots(base, [60, 120, 200])


def test_mangled_full_channels_give_the_reference_outcomes(sim_base: tuple[list[bytes], list]) -> None:
    base, snaps = sim_base

    @SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        messages = data.draw(mangled(base, snaps))
        products = sorted({p for raw in base if (p := CoinbaseFeed().key(raw))})
        symbols = data.draw(st.sampled_from([None, set(products[:1])]))
        compare(messages, symbols=symbols, check_crossed=data.draw(st.booleans()))

    run()


@pytest.mark.realdata
def test_mangled_level2_channels_give_the_reference_outcomes(level2: list[bytes]) -> None:
    rng = random.Random(5)
    starts = [rng.randrange(20, len(level2) - 200) for _ in range(4)]

    @SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        start = data.draw(st.sampled_from(starts))
        base = level2[:20] + level2[start : start + 200]  # the snapshots come first in the capture
        compare(data.draw(mangled(base, [])), check_crossed=data.draw(st.booleans()))

    run()


@pytest.mark.realdata
def test_book_command_gives_the_reference_rows_on_the_native_path(shared_data: Path, tmp_path: Path) -> None:
    outs = book_command_on_both_paths(shared_data / CAPTURE, "coinbase", tmp_path)
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 400


# -- state ---------------------------------------------------------------------------------------------------------


def test_a_native_coinbase_feed_state_continues_exactly(sim_full: list[bytes], sim_base) -> None:
    """Cut anywhere, books, syncs, buffered messages, staged snapshot parts and early matches included: the state
    pickled (and copied) goes on as the feed would have, and so does the reference's feed made from it."""
    from orderbook.native.convert import _coinbase_core, _coinbase_feed

    base, snaps = sim_base
    # a stream with all of it: matches before a book, a snapshot half staged, a gap's buffer, an L2 product
    stream = [*rules()[:2], *base[:80], *snaps[0][1][:2], opened(99, "x", "buy", "1", "1"), *base[80:]]
    stream += [l2_snapshot(product="ETH-USD"), l2update([("buy", "1", "1")], product="ETH-USD")]
    whole = native.CoinbaseFeed(order_names=True)
    want = whole.on_messages(stream).by_message(len(stream))
    for cut in (1, 3, 83, 85, len(stream) - 1):
        first = native.CoinbaseFeed(order_names=True)
        first.on_messages(stream[:cut])
        for later in (pickle.loads(pickle.dumps(first)), copy.deepcopy(first)):
            got = later.on_messages(stream[cut:]).by_message(len(stream) - cut)
            assert first_difference(want[cut:], got) is None, cut
        # to the reference's feed and back: the reference goes on as the native one did, the native one too
        ref = _coinbase_feed(first.__getstate__()["core"])
        assert first_difference(want[cut:], reference_outcomes(ref, stream[cut:])) is None, cut
        back = native.CoinbaseFeed()
        core, names = _coinbase_core(_coinbase_feed(first.__getstate__()["core"]))
        core["order_names"] = True  # the new ids' UUIDs, as the events are compared by them
        back.__setstate__({"version": 1, "venue": "coinbase", "symbols": names, "core": core})
        assert first_difference(want[cut:], back.on_messages(stream[cut:]).by_message(len(stream) - cut)) is None
    broken = first.__getstate__()
    broken["core"]["next_id"] = 1
    with pytest.raises(ValueError, match="order ids below"):
        native.CoinbaseFeed().__setstate__(broken)


# -- the worker's pipeline -----------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_the_native_pipeline_gives_the_references_windows_across_snapshots_on_either_path(shared_data: Path) -> None:
    from orderbook.native.check import pipeline_difference

    venue, items = real_stream(shared_data, "coinbase")
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]  # windows, and the mangled records' rejects
    assert pipeline_difference(want, run(venue, items, native=True)) is None
    n = len(items)
    cuts = {n // 5: True, 2 * n // 5: False, 3 * n // 5: None, 4 * n // 5: True}
    assert pipeline_difference(want, run(venue, items, native=True, cuts=cuts)) is None


def test_the_native_pipeline_on_a_full_channel_gives_the_references_windows_across_snapshots(sim) -> None:  # noqa: F811
    from orderbook.native.check import pipeline_difference

    venue, items = sim_stream(sim, "coinbase-full")
    want = run(venue, items, native=False)
    assert len(want[0]) > 50 and want[1]
    n = len(items)
    cuts = {n // 4: True, n // 2: False, 3 * n // 4: True}
    assert pipeline_difference(want, run(venue, items, native=True, cuts=cuts)) is None


@pytest.mark.parametrize("batch", [1, 37, 2000])
def test_the_native_pipeline_takes_batches_and_frames_as_the_reference_takes_records(
    sim_full: list[bytes], batch: int
) -> None:
    from orderbook.frames import encode_frame
    from orderbook.native.check import pipeline_difference
    from tests.test_native_lobster import in_batches

    # the full channel with its book errors and refused snapshots, every fourth run of records framed
    stream = [*rules(), *sim_full]
    records: list[bytes] = []
    for i in range(0, len(stream), 3):
        chunk = stream[i : i + 3]
        records += [encode_frame(chunk)] if i % 12 == 0 else chunk
    outs = [in_batches("coinbase", [(None, v) for v in records], batch, n) for n in (False, True)]
    assert len(outs[0][0]) > 20 and outs[0][1]
    assert pipeline_difference(outs[0], outs[1]) is None


def test_a_full_channel_message_of_1716_between_ones_of_2026_gives_the_references_windows() -> None:
    """Found by make fuzz (cargo fuzz's coinbase target): an `open` whose `time` says 1716 between messages of
    2026 is further from them than an int64 holds; the native window builder subtracted in int64 (an overflow:
    a panic under the fuzzer's checks, another feature row in the worker) where the reference is exact."""
    from orderbook.native.check import pipeline_difference
    from tests.test_native_lobster import in_batches

    def at(message: bytes, time: str) -> bytes:
        return json.dumps(json.loads(message) | {"time": time}).encode()

    stream = [l3_snapshot(1000, bids=[("99.00", "1", "b0")], asks=[("101.00", "1", "a0")])]
    years = ["2026", "2026", "1716", "2026", "1678", "2262", "2026"]
    for i, year in enumerate(years * 12):
        side, price = ("buy", f"{99 + i % 2}.50") if i % 2 else ("sell", f"{101 + i % 3}.25")
        stream.append(at(opened(1001 + i, f"o{i}", side, price, "2"), f"{year}-01-02T09:30:00.{i:06d}Z"))
    records = [(None, m) for m in stream]
    want, got = (in_batches("coinbase", records, 5, n) for n in (False, True))
    assert len(want[0]) > 3
    assert pipeline_difference(want, got) is None


@pytest.mark.realdata
def test_score_on_the_capture_with_headlines_gives_the_reference_windows(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`megatrading score` of the level2 capture with a news file: the native path's windows are the reference's
    record by record, the headlines joined where the reference joins them."""
    from model.serving.scoring import stream_windows
    from orderbook.news import Headline
    from orderbook.venues import capture_records
    from tests.test_native_venue_windows import assert_same

    if not native.enabled():
        pytest.skip(native.describe())
    records = list(capture_records("coinbase", [shared_data / CAPTURE]))
    times = [r.recv_ts for r in CoinbaseFeed.read_capture(shared_data / CAPTURE) if r.recv_ts]
    start = min(times)  # the capture's clock: its messages' times are within a second of their receipt
    step = (max(times) - start) // 60
    headlines = [Headline(start + k * step, [("SKL-USD", "BAND-GBP")[k % 2]], f"headline {k}") for k in range(60)]
    got = list(stream_windows("coinbase", iter(records), headlines)[0])
    monkeypatch.setenv(native.ENV, "0")
    want = list(stream_windows("coinbase", iter(records), headlines)[0])
    assert len(want) > 100 and any(w.news_mask.any() for w in want)
    assert_same((want, [], None), (got, [], None))
