"""State export / import of the native feeds and books: a restored feed continues exactly.

Each feed runs a real stream (every Binance capture of hftbacktest's folder, a simulated ITCH day),
is cut at several points (in a snapshot's catch-up window with diffs buffered, right after a gap,
right after a resync, anywhere hypothesis picks), exported, restored into fresh feeds (by
`__setstate__`, pickle, copy.deepcopy, and a msgpack round trip as `md.state` carries it), and
the rest of the stream goes to the original and to every copy: every later batch (event rows,
rejects, symbol table), every book (L3 queues in order) and every sync state must be equal, and
so must the states they export at the end. Malformed states and states of another version are
refused with a ValueError, leaving the feed as it was. The size of the state and the time to
export and import it are printed for the largest capture (`pytest -s` shows them).
"""

from __future__ import annotations

import copy
import functools
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.sim.itch_day import SYMBOLS, itch_day_stream
from orderbook import native
from orderbook.events import Kind
from orderbook.venues.binance import BinanceFeed as ReferenceBinance

pytestmark = pytest.mark.skipif(not native.available(), reason="orderbook.native._core is not built")

CAPTURES = sorted(p.name for p in (SHARED_DATA / "binance-hftbacktest").glob("*.gz"))
LARGEST = "usdm_btcusdt_20240808.gz"
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Feed = native.ItchFeed | native.BinanceFeed
Stream = tuple[list[bytes], np.ndarray]


def via_setstate(feed: Feed) -> Feed:
    fresh = type(feed)()
    fresh.__setstate__(feed.__getstate__())
    return fresh


def via_msgpack(feed: Feed) -> Feed:
    fresh = type(feed)()
    fresh.__setstate__(msgpack.unpackb(msgpack.packb(feed.__getstate__()), raw=False))
    return fresh


RESTORES: dict[str, Callable[[Feed], Feed]] = {
    "setstate": via_setstate,
    "pickle": lambda f: pickle.loads(pickle.dumps(f)),
    "deepcopy": copy.deepcopy,
    "msgpack": via_msgpack,
}


def batch_key(batch: native.Batch) -> tuple:
    rejects = {k: v.tolist() if isinstance(v, np.ndarray) else list(v) for k, v in batch.rejects.items()}
    return batch.events.tobytes(), rejects, list(batch.symbols)


def feed_key(feed: Feed) -> dict[str, Any]:
    """What the feed shows through its API, books and syncs included (the state is compared too)."""
    out: dict[str, Any] = {"symbols": list(feed.symbols), "books": {}}
    for symbol in feed.book_symbols():
        entry: dict[str, Any] = {"book": feed.book_dict(symbol)}
        if isinstance(feed, native.ItchFeed):
            orders = feed.orders(symbol) or {}
            levels = {(side, price) for side, price, _ in orders.values()}
            entry["queues"] = {lv: feed.core.queue(symbol, *lv) for lv in sorted(levels)}
        else:
            entry["sync"], entry["stats"] = feed.sync(symbol), feed.stats(symbol)
        out["books"][symbol] = entry
    if isinstance(feed, native.ItchFeed):
        out["locates"], out["messages"], out["system_event"] = feed.locates, feed.messages, feed.system_event
    return out


def run(feed: Feed, stream: Stream, lo: int, hi: int, step: int) -> list[tuple]:
    """Messages [lo, hi) through the feed in batches of `step`: their batch keys."""
    msgs, recv = stream
    keys = []
    for a in range(lo, hi, step):
        b = min(a + step, hi)
        keys.append(batch_key(feed.on_messages(msgs[a:b], recv[a:b])))
    return keys


def check_cuts(make: Callable[[], Feed], stream: Stream, cuts: list[int], step: int = 5000) -> list[Feed]:
    """Cut a run at each of `cuts`, restore copies every way there is, run the rest through all: equal.

    Returns the original feed at each cut (restored copies of it, to look into)."""
    n = len(stream[0])
    at_cut = []
    for cut in sorted(set(cuts)):
        original = make()
        run(original, stream, 0, cut, step)
        state = original.__getstate__()
        copies = {name: restore(original) for name, restore in RESTORES.items()}
        for name, c in copies.items():
            assert c.__getstate__() == state, (cut, name)
            assert feed_key(c) == feed_key(original), (cut, name)
        at_cut.append(type(original)())
        at_cut[-1].__setstate__(state)
        want = run(original, stream, cut, n, step)
        for name, c in copies.items():
            got = run(c, stream, cut, n, step)
            assert got == want, f"batches differ after a cut at {cut} restored by {name}"
            assert feed_key(c) == feed_key(original), (cut, name)
            assert c.__getstate__() == original.__getstate__(), (cut, name)
    return at_cut


# ------------------------------------------------------------------------------------ Binance


@functools.cache
def capture(name: str) -> Stream:
    records = list(ReferenceBinance.read_capture(SHARED_DATA / "binance-hftbacktest" / name))
    return [r.raw for r in records], np.array([r.recv_ts for r in records], np.int64)


def snapshot_messages(stream: Stream) -> list[int]:
    batch = native.BinanceFeed().on_messages(*stream)
    return sorted(set(batch.events["msg"][batch.events["kind"] == Kind.SNAPSHOT_BEGIN].tolist()))


def with_gap_and_resync(stream: Stream) -> tuple[Stream, int, int]:
    """The capture with a diff dropped in its middle (a gap: the book is discarded and the diffs
    after it buffered) and its snapshot sent again later (a resync attempt from that buffer).
    Returns the stream, the index of the message after the dropped one, and of the resent snapshot."""
    msgs, recv = stream
    snap = snapshot_messages(stream)[0]
    drop = len(msgs) // 2
    while b'"depthUpdate"' not in msgs[drop]:
        drop += 1
    resend = drop + (len(msgs) - drop) // 2
    out = msgs[:drop] + msgs[drop + 1 : resend] + [msgs[snap]] + msgs[resend:]
    out_recv = np.concatenate([recv[:drop], recv[drop + 1 : resend], recv[resend - 1 : resend], recv[resend:]])
    return (out, out_recv), drop, resend - 1


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURES, ids=lambda n: n.split(".gz")[0])
def test_binance_state_continues_exactly_on_every_capture(shared_data: Path, name: str) -> None:
    stream = capture(name)
    n = len(stream[0])
    snap = snapshot_messages(stream)[0]
    assert snap >= 2, "the capture opens with diffs buffered for its snapshot"
    cuts = [snap // 2, snap, snap + 1, n // 3, 2 * n // 3, n]
    restored = check_cuts(native.BinanceFeed, stream, cuts)
    # the cuts before the snapshot did carry buffered diffs (the catch-up window), not an empty book
    for cut, feed in zip(sorted(set(cuts)), restored, strict=True):
        if 0 < cut <= snap:
            (symbol,) = feed.book_symbols()
            live, _, _, _, buffered = feed.sync(symbol)
            assert not live and buffered > 0, (cut, feed.sync(symbol))


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["spot_ethusdt_20240808.gz", "cm_btcusd_perp_20240808.gz"])
def test_binance_state_continues_exactly_after_a_gap_and_a_resync(shared_data: Path, name: str) -> None:
    stream, after_gap, resend = with_gap_and_resync(capture(name))
    batch = native.BinanceFeed().on_messages(*stream)
    assert "SequenceGap" in {type(e).__name__ for _, e in batch.errors()}
    cuts = [after_gap, after_gap + 1, after_gap + 50, resend, resend + 1, resend + 2]
    restored = check_cuts(native.BinanceFeed, stream, cuts)
    (symbol,) = restored[2].book_symbols()
    live, _, _, _, buffered = restored[2].sync(symbol)
    assert not live and buffered > 5  # the buffer awaiting a resync went across


@pytest.mark.realdata
@SETTINGS
@given(
    name=st.sampled_from(["spot_btcusdt_20240808.gz", "cm_ethusd_perp_20240808.gz"]),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3),
    gap=st.booleans(),
)
def test_binance_state_at_random_cuts(name: str, fractions: list[float], gap: bool) -> None:
    stream = capture(name)
    if gap:
        stream = with_gap_and_resync(stream)[0]
    n = len(stream[0])
    check_cuts(native.BinanceFeed, stream, [round(f * n) for f in fractions], step=7919)


@pytest.mark.realdata
def test_binance_state_with_a_symbol_filter_and_without_the_crossed_check(shared_data: Path) -> None:
    stream = capture("spot_btcusdt_20240808.gz")
    n = len(stream[0])
    make = functools.partial(native.BinanceFeed, {"BTCUSDT", "XRPUSDT"}, check_crossed=False)
    (feed,) = check_cuts(make, stream, [n // 2])
    core = feed.__getstate__()["core"]
    assert core["symbols"] == ["BTCUSDT", "XRPUSDT"] and core["check_crossed"] is False


@pytest.mark.realdata
def test_binance_state_size_and_timing_of_the_largest_capture(shared_data: Path) -> None:
    stream = capture(LARGEST)
    feed = native.BinanceFeed()
    feed.on_messages(*stream)
    reps = 50
    t0 = time.perf_counter()
    for _ in range(reps):
        state = feed.__getstate__()
    t1 = time.perf_counter()
    for _ in range(reps):
        fresh = native.BinanceFeed()
        fresh.__setstate__(state)
    t2 = time.perf_counter()
    packed = msgpack.packb(state)
    (symbol,) = feed.book_symbols()
    bids, asks = (len(side) for side in feed.book_dict(symbol).values())
    book = state["core"]["books"][0]
    print(
        f"\n{LARGEST} at its end ({bids} bids, {asks} asks): state {len(packed)} bytes as msgpack "
        f"(levels {len(book['bids']) + len(book['asks'])}), pickle {len(pickle.dumps(feed))}; "
        f"export {(t1 - t0) / reps * 1e6:.0f} us, import {(t2 - t1) / reps * 1e6:.0f} us"
    )
    assert fresh.__getstate__() == state
    assert len(packed) < 16 * (bids + asks) + 1024  # packed levels, not per-level Python objects


# ------------------------------------------------------------------------------------ ITCH


@functools.cache
def itch_day(seed: int, n: int = 4000, preopen: bool = True) -> Stream:
    msgs = itch_day_stream(seed, n, SYMBOLS, preopen_orders=preopen).messages
    return list(msgs), np.arange(len(msgs), dtype=np.int64) * 1000


@pytest.mark.parametrize("seed", [1, 2])
def test_itch_state_continues_exactly_on_a_simulated_day(seed: int) -> None:
    stream = itch_day(seed)
    n = len(stream[0])
    restored = check_cuts(native.ItchFeed, stream, [0, 1, 10, n // 4, n // 2, n - 1, n], step=997)
    mid = restored[4].__getstate__()["core"]
    assert mid["books"] and mid["locates"] and mid["messages"] == n // 2
    assert sum(len(b["bids"]) + len(b["asks"]) for b in mid["books"]) > 0  # resting orders went across


def test_itch_state_with_a_symbol_filter_and_without_the_crossed_check() -> None:
    stream = itch_day(3)
    n = len(stream[0])
    make = functools.partial(native.ItchFeed, {"AAPL", "SPY"}, check_crossed=False)
    (feed,) = check_cuts(make, stream, [n // 2], step=1000)
    core = feed.__getstate__()["core"]
    assert core["symbols"] == ["AAPL", "SPY"] and core["check_crossed"] is False


@SETTINGS
@given(seed=st.integers(0, 50), preopen=st.booleans(), fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_itch_state_at_random_cuts(seed: int, preopen: bool, fractions: list[float]) -> None:
    stream = itch_day(seed, 1500, preopen)
    n = len(stream[0])
    check_cuts(native.ItchFeed, stream, [round(f * n) for f in fractions], step=331)


# ------------------------------------------------------------------------------------ books


def test_books_state_round_trips_and_continues() -> None:
    rng = np.random.default_rng(7)
    l3, l2 = native.L3Book("itch", "AAPL"), native.L2Book("binance", "BTCUSDT")
    ids: list[int] = []
    ops: list[tuple] = []
    for i in range(3000):
        if ids and rng.random() < 0.4:
            ops.append(("delete", ids.pop(int(rng.integers(len(ids))))))
        else:
            ids.append(i + 1)
            side = 1 if rng.random() < 0.5 else -1
            ops.append(("add", i + 1, side, int(100 + side * -rng.integers(1, 30)), int(rng.integers(1, 50))))
    for op in ops[:2000]:
        getattr(l3, op[0])(*op[1:])
    for side, price, size in rng.integers(1, 60, (500, 3)).tolist():
        l2.set_level(1 if side % 2 else -1, price if side % 2 else price + 100, size % 7)
    for book in (l3, l2):
        for restored in (pickle.loads(pickle.dumps(book)), copy.deepcopy(book)):
            assert restored.__getstate__() == book.__getstate__()
            assert (restored.venue, restored.symbol, restored.to_dict()) == (book.venue, book.symbol, book.to_dict())
    later = copy.deepcopy(l3)
    assert later.orders() == l3.orders()
    for op in ops[2000:]:
        getattr(l3, op[0])(*op[1:])
        getattr(later, op[0])(*op[1:])
    assert later.__getstate__() == l3.__getstate__()
    for side, price in {(s, p) for s, p, _ in l3.orders().values()}:
        assert later.queue(side, price) == l3.queue(side, price)


# ------------------------------------------------------------------------------------ refusals


def small_feeds() -> tuple[native.ItchFeed, native.BinanceFeed]:
    itch = native.ItchFeed()
    itch.on_messages(*[x[:600] for x in itch_day(4)])
    msgs, recv = capture("spot_ethusdt_20240808.gz") if SHARED_DATA.is_dir() else ([], np.zeros(0, np.int64))
    binance = native.BinanceFeed()
    binance.on_messages(msgs[:3], recv[:3])  # diffs buffered, no snapshot yet
    return itch, binance


def corrupt(state: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(state)
    node = out
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return out


DELETE = object()
CORRUPTIONS: list[tuple[str, tuple, Any]] = [
    ("both", ("version",), 2),
    ("both", ("core", "version"), 2),
    ("both", ("core", "version"), DELETE),
    ("both", ("core", "kind"), "WindowBuilder"),
    ("both", ("core", "names"), lambda names: [*names, names[0]]),  # a name twice
    ("both", ("core", "names"), "AAPL"),
    ("both", ("core", "books"), lambda books: [*books, books[0]]),  # a book twice
    ("both", ("core", "books", 0, "symbol"), 10**6),
    ("both", ("core", "books", 0, "bids"), lambda b: b[:-1] if b else b"x"),  # not whole records
    ("both", ("core", "books", 0, "asks"), 7),
    ("both", ("core", "books", 0, "bids"), DELETE),
    ("both", ("core",), [1, 2]),
    ("both", ("symbols",), lambda s: [*s, "NOPE"]),
    ("both", ("venue",), "coinbase"),
    ("itch", ("core", "locates"), lambda b: b + b[:16]),  # a locate twice
    ("itch", ("core", "books", 0, "bids"), lambda b: b + b[:24]),  # an order id twice
    ("itch", ("core", "system_event"), 300),
    ("binance", ("core", "books", 0, "buffer"), lambda b: b[:-8]),
    ("binance", ("core", "books", 0, "buffer"), lambda b: b[:48] + (5).to_bytes(8, "little") + b[56:]),  # side 5
    ("binance", ("core", "books", 0, "stats"), [1, 2]),
    ("binance", ("core", "books", 0, "live"), "yes"),
]


@pytest.mark.realdata
@pytest.mark.parametrize(
    "venue,path,value", CORRUPTIONS, ids=lambda x: "f" if callable(x) else "deleted" if x is DELETE else str(x)
)
def test_a_malformed_or_other_version_state_is_refused(shared_data: Path, venue: str, path: tuple, value: Any) -> None:
    for feed in small_feeds():
        if venue not in ("both", feed.venue):
            continue
        state = feed.__getstate__()
        bad = corrupt(state, path, value)
        target = type(feed)()
        target.on_messages(
            *[x[:50] for x in (itch_day(5) if feed.venue == "itch" else capture("spot_btcusdt_20240808.gz"))]
        )
        before = target.__getstate__()
        with pytest.raises(ValueError, match="state"):
            target.__setstate__(bad)
        assert target.__getstate__() == before  # refused: the feed is as it was
        if path[0] == "core":
            with pytest.raises(ValueError, match="state"):
                type(feed.core)().__setstate__(bad["core"])  # the core refuses it on its own too
        assert type(feed)().__setstate__(copy.deepcopy(state)) is None  # the intact one reads


def test_a_malformed_book_state_is_refused() -> None:
    l3 = native.L3Book()
    for i, (side, price) in enumerate([(1, 100), (1, 99), (1, 100), (-1, 101)]):
        l3.add(i + 1, side, price, 5)
    good = l3.__getstate__()
    split = corrupt(good, ("bids",), lambda b: b[:24] + b[48:] + b[24:48])  # the 100 level split around 99
    for bad in (
        corrupt(good, ("version",), 0),
        corrupt(good, ("kind",), "L2Book"),
        corrupt(good, ("bids",), lambda b: b + b[:24]),
        split,
        corrupt(good, ("asks",), lambda b: b[:16] + (0).to_bytes(8, "little")),  # size 0
        "not a dict",
    ):
        with pytest.raises(ValueError, match="L3Book state"):
            native.L3Book().__setstate__(bad)
    l2 = native.L2Book()
    l2.set_level(1, 100, 5)
    l2.set_level(1, 99, 5)
    good = l2.__getstate__()
    with pytest.raises(ValueError, match="L2Book state"):
        native.L2Book().__setstate__(corrupt(good, ("bids",), lambda b: b[16:] + b[:16]))
    with pytest.raises(ValueError, match="L2Book state"):
        native.L2Book().__setstate__(
            corrupt(good, ("bids",), lambda b: b[:8] + (-1).to_bytes(8, "little", signed=True) + b[16:])
        )


@pytest.mark.realdata
def test_the_rust_feed_classes_pickle_and_copy_on_their_own(shared_data: Path) -> None:
    for feed in small_feeds():
        state = feed.core.__getstate__()
        for restored in (pickle.loads(pickle.dumps(feed.core)), copy.deepcopy(feed.core)):
            assert type(restored) is type(feed.core) and restored.__getstate__() == state
