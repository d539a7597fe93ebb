"""orderbook.snapshot: a VenueWindows saved and restored mid-stream goes on exactly as the original.

The decisive test replays real captures (and simulator streams for ITCH and LOBSTER, and the
Coinbase full channel) through a VenueWindows, snapshots it at several cut points (while a book
waits for its snapshot, in the middle of a staged snapshot, right after a snapshot, mid-stream),
and feeds the original and every restored copy the rest of the stream side by side: every
decode error, every event and every window must be identical, and the books at the end. The
other tests pin down the codec: identity and aliasing, the value types, corrupt and crafted
input, classes that changed since a snapshot, values it refuses to save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import struct
import sys
import types
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict, SortedList, SortedSet

import orderbook.book
import orderbook.features
from model.sim.anomalies import KINDS
from model.sim.engine import SEC, SimConfig, SimResult
from model.sim.run import simulate
from model.sim.writers import messages as sim_messages
from orderbook.book import DescendingSortedDict, L2Book, L3Book, Order
from orderbook.errors import FeedError
from orderbook.events import Event, Kind, Side
from orderbook.features import TradeClassifier
from orderbook.numbers import format_fixed
from orderbook.snapshot import LAYOUT_VERSION, MAGIC, SnapshotError, dump_state, load_state
from orderbook.sync import SyncState
from orderbook.venue_windows import VenueWindows
from orderbook.venues import feed_class
from orderbook.venues.binance_encode import snapshot_message as binance_snapshot
from orderbook.venues.coinbase import snapshot_messages as coinbase_snapshot
from orderbook.venues.itch import ItchFeed
from orderbook.windows import Window, WindowConfig

LIMIT = 12_000  # records per capture: the whole file stays well under a minute on 2 cores
MAX_CUTS = 6


def roundtrip(x: Any) -> Any:
    return load_state(dump_state(x))


# ---------------------------------------------------------------- comparing states and outputs


def assert_same_state(a: Any, b: Any) -> None:
    """`b` is a faithful copy of the object graph `a`: same types and values everywhere, and the
    same sharing (an object reached twice in `a` is one object reached twice in `b`)."""
    pairs: dict[int, int] = {}
    back: dict[int, int] = {}
    keep: list[Any] = []

    def same(x: Any, y: Any, path: str) -> None:
        tx = type(x)
        assert tx is type(y), f"{path}: {tx.__name__} vs {type(y).__name__}"
        if x is None or tx in (bool, int, str, bytes) or isinstance(x, np.generic):
            assert x == y, f"{path}: {x!r} vs {y!r}"
            return
        if tx is float:
            assert struct.pack("<d", x) == struct.pack("<d", y), f"{path}: {x!r} vs {y!r}"
            return
        if isinstance(x, Enum | type | types.FunctionType):
            assert x is y, f"{path}: {x!r} vs {y!r}"
            return
        if tx is not tuple and tx is not frozenset and not isinstance(x, tuple):  # tuples of leaves are inline
            if id(x) in pairs or id(y) in back:
                assert pairs.get(id(x)) == id(y) and back.get(id(y)) == id(x), f"{path}: sharing differs"
                return
            pairs[id(x)], back[id(y)] = id(y), id(x)
            keep.extend((x, y))
        if isinstance(x, np.ndarray):
            assert (x.dtype, x.shape) == (y.dtype, y.shape), path
            if x.dtype == object:
                for i, (u, v) in enumerate(zip(x.reshape(-1), y.reshape(-1), strict=True)):
                    same(u, v, f"{path}.flat[{i}]")
            else:
                assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), path
        elif isinstance(x, dict):  # dict, Counter, defaultdict, SortedDict: same items in the same order
            assert list(x) == list(y), f"{path}: keys differ"
            if tx is defaultdict:
                assert x.default_factory is y.default_factory, path
            for k in x:
                same(x[k], y[k], f"{path}[{k!r}]")
        elif isinstance(x, list | tuple | deque | SortedList):
            assert len(x) == len(y), f"{path}: {len(x)} vs {len(y)} items"
            if tx is deque:
                assert x.maxlen == y.maxlen, path
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                same(u, v, f"{path}[{i}]")
        elif isinstance(x, set | frozenset | SortedSet):
            assert x == y, path
        elif tx is types.MethodType:
            assert x.__func__ is y.__func__, path
            same(x.__self__, y.__self__, f"{path}.__self__")
        else:
            names = [n for c in tx.__mro__ for n in getattr(c, "__slots__", ()) if n not in ("__dict__", "__weakref__")]
            for n in names:
                assert hasattr(x, n) == hasattr(y, n), f"{path}.{n}"
                if hasattr(x, n):
                    same(getattr(x, n), getattr(y, n), f"{path}.{n}")
            if hasattr(x, "__dict__"):
                assert list(vars(x)) == list(vars(y)), f"{path}: attributes differ"
                for n, v in vars(x).items():
                    same(v, vars(y)[n], f"{path}.{n}")

    same(a, b, "state")


def assert_same_windows(a: list[Window], b: list[Window], where: str) -> None:
    assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} windows"
    for wa, wb in zip(a, b, strict=True):
        for f in dataclasses.fields(Window):
            x, y = getattr(wa, f.name), getattr(wb, f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {f.name}"
                assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), f"{where}: {f.name} differs"
            else:
                assert x == y, f"{where}: {f.name} {x!r} vs {y!r}"


# ---------------------------------------------------------------- streams


class Item(NamedTuple):
    """One step of a stream: a raw record (key, value) or, where `news` is set, a headline."""

    key: bytes
    raw: bytes
    news: tuple[str, ...] = ()


def keyed(venue: str, raws: list[bytes], symbol: str | None = None) -> list[Item]:
    """Records with the key the replay gives them (streams.publish.keyed): LOBSTER's symbol, else the feed's."""
    feed = feed_class(venue)()
    out = []
    for raw in raws:
        if symbol:
            out.append(Item(symbol.encode(), raw))
            continue
        try:
            key = feed.key(raw)
        except FeedError:
            key = "?"
        out.append(Item((key or "?").encode(), raw))
    return out


MALFORMED = {
    "kraken": [b"{truncated", b'[1, {"as": [["NaN", "1.0", "1.0"]], "bs": []}, "book-10", "X/Y"]', b'{"event": "x"}'],
    "coinbase": [b'{"type": "l2update", "product_id": "SKL-USD", "changes": [["buy", "-1", "1"]]', b"\xff\xfe",
                 b'{"type": "mystery", "product_id": "SKL-USD"}'],
    "binance": [b'{"stream": "ethusdt@depth", "data": {"e": "depthUpdate", "s": "ETHUSDT", "U": "x"}}',
                b'{"e": "nonsense"}', b"[]"],
    "itch": [b"Z\x00\x01", b"A\x00\x01\x00\x00", b""],
    "lobster": [b"34200.1,9,1,1,1,1", b"garbage", b"34200.2,3,999999,1,1000000,1"],
}  # fmt: skip


def with_extras(venue: str, items: list[Item], symbols: list[str]) -> list[Item]:
    """The stream with malformed records and headlines spread through it."""
    n = len(items)
    out = list(items)
    bad = MALFORMED[venue]
    key = symbols[0].encode() if venue == "lobster" else b"?"
    for k, pos in enumerate((n * 9 // 10, n * 6 // 10, n * 3 // 10)):
        out.insert(pos, Item(key, bad[k % len(bad)]))
    for k, pos in enumerate((n * 8 // 10, n * 5 // 10, n // 5)):
        out.insert(
            pos, Item(b"", b"", news=(symbols[k % len(symbols)], f"headline {k} about {symbols[k % len(symbols)]}"))
        )
    return out


def binance_resync(items: list[Item]) -> list[Item]:
    """A lost diff and, 60 records later, a fresh REST snapshot of the book (built by a feed that
    saw every diff): a gap, updates buffered, a resync."""
    depth = [i for i, it in enumerate(items) if b"depthUpdate" in it.raw]
    drop = depth[len(depth) * 4 // 10]
    ref = feed_class("binance")()
    at = drop + 60
    for it in items[:at]:
        with contextlib.suppress(FeedError):
            ref.on_message(it.raw)
    symbol = next(iter(ref.books))
    book = ref.books[symbol]
    snap = binance_snapshot(symbol, list(book.bids.items()), list(book.asks.items()), ref.syncs[symbol].last_seq)
    return [*items[:drop], *items[drop + 1 : at], Item(symbol.encode(), snap), *items[at:]]


def coinbase_resync(items: list[Item]) -> list[Item]:
    """The same for the full channel: a lost message, then a level-3 snapshot in parts of 40
    entries (staged until the last part arrives)."""
    product = items[-1].key.decode()
    mine = [i for i, it in enumerate(items) if it.key.decode() == product]
    drop = mine[len(mine) // 3]
    at = drop + 80
    ref = feed_class("coinbase")()
    for it in items[:at]:
        with contextlib.suppress(FeedError):
            ref.on_message(it.raw)
    book = ref.books[product]
    entries = {
        name: [
            [format_fixed(price, 8), format_fixed(size, 8), oid]
            for price in book.side(side)
            for oid, size in book.queue(side, price)
        ]
        for name, side in (("bids", Side.BID), ("asks", Side.ASK))
    }
    body = {"sequence": ref.syncs[product].last_seq, **entries}
    parts = [Item(product.encode(), raw) for raw in coinbase_snapshot(body, product, part_entries=40)]
    assert len(parts) > 1
    return [*items[:drop], *items[drop + 1 : at], *parts, *items[at:]]


@pytest.fixture(scope="module")
def sim() -> SimResult:
    cfg = SimConfig(n_symbols=2, duration_ns=420 * SEC, seed=11, anomaly_rates=dict.fromkeys(KINDS, 4.0))
    return simulate(cfg)


REAL = {
    "kraken": ("kraken", "cryptofeed-captures/KRAKEN.ws.50.0.gz"),
    "coinbase": ("coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz"),
    "binance-spot": ("binance", "binance-hftbacktest/spot_ethusdt_20240808.gz"),
    "binance-usdm": ("binance", "binance-hftbacktest/usdm_btcusdt_20240808.gz"),
    "binance-coinm": ("binance", "binance-hftbacktest/cm_ethusd_perp_20240808.gz"),
}
SIMULATED = ("itch", "lobster", "coinbase-full")


def real_stream(shared_data: Path, case: str) -> tuple[str, list[Item]]:
    venue, rel = REAL[case]
    raws = [r.raw for r in itertools.islice(feed_class(venue).read_capture(shared_data / rel), LIMIT)]
    items = keyed(venue, raws)
    if case == "binance-spot":
        items = binance_resync(items)
    symbols = sorted({it.key.decode() for it in items if it.key != b"?"})
    return venue, with_extras(venue, items, symbols)


def sim_stream(result: SimResult, case: str) -> tuple[str, list[Item]]:
    if case == "itch":
        items = keyed("itch", [m.raw for m in sim_messages("itch", result)])
    elif case == "lobster":
        items = [Item(m.symbol.encode(), m.raw) for m in sim_messages("lobster", result)]
    else:
        items = coinbase_resync([Item(m.symbol.encode(), m.raw) for m in sim_messages("coinbase", result)])
    venue = "coinbase" if case == "coinbase-full" else case
    symbols = sorted({it.key.decode() for it in items if it.key not in (b"?", b"")} & set(_sim_symbols(result, venue)))
    return venue, with_extras(venue, items[:LIMIT], symbols)


def _sim_symbols(result: SimResult, venue: str) -> list[str]:
    return [f"{s.name}-USD" if venue == "coinbase" else s.name for s in result.symbols]


# ---------------------------------------------------------------- the differential run


Outcome = tuple[Any, ...]


def step(vw: VenueWindows, item: Item, offset: int, news_ts: int) -> Outcome:
    if item.news:
        vw.add_news(news_ts, [item.news[0]], item.news[1])
        return ("news",)
    done = vw.process(item.key, item.raw, (0, offset))
    if done.reject is not None:
        return ("error", done.reject.reason, done.reject.error)
    return ("ok", done.events, done.windows)


def same_outcome(mine: Outcome, theirs: Outcome, where: str) -> None:
    assert mine[0] == theirs[0], f"{where}: {mine[0]} vs {theirs[0]}: {mine[1:]!r:.200} vs {theirs[1:]!r:.200}"
    if mine[0] == "error":
        assert mine == theirs, where
    elif mine[0] == "ok":
        assert mine[1] == theirs[1], f"{where}: events differ"
        assert_same_windows(mine[2], theirs[2], where)


def differential(venue: str, items: list[Item]) -> dict[str, int]:
    """Feed `items` to a VenueWindows; at each cut point restore a copy from a snapshot of it and
    feed it the rest of the stream beside the original, comparing everything. What happened."""
    original = VenueWindows(venue)
    clones: list[tuple[int, VenueWindows]] = []
    fixed = {len(items) // 6, len(items) // 2, len(items) * 5 // 6}
    fired: Counter[str] = Counter()
    rising = dict.fromkeys(("buffering", "staged"), False)
    news_ts = 0
    counts: Counter[str] = Counter()
    for i, item in enumerate(items):
        out = step(original, item, i, news_ts)
        counts[out[0]] += 1
        for cut, clone in clones:
            same_outcome(step(clone, item, i, news_ts), out, f"{venue} record {i} (restored at {cut})")
        if out[0] != "ok":
            continue
        if out[2]:
            news_ts = out[2][-1].ts
            counts["windows"] += len(out[2])
        feed = original.feed
        reasons = []
        for name, now in (
            ("buffering", any(s.buffer for s in feed.syncs.values())),
            ("staged", bool(getattr(feed, "_staged", None))),
        ):
            if now and not rising[name]:
                reasons.append(name)
            rising[name] = now
        if any(e.kind == Kind.SNAPSHOT_END for e in out[1]):
            reasons.append("snapshot")
        if i in fixed:
            reasons.append("fixed")
        reasons = [r for r in reasons if r == "fixed" or fired[r] < 2]
        if reasons and len(clones) < MAX_CUTS:
            fired.update(reasons)
            clone = roundtrip(original)
            assert_same_state(original, clone)
            clones.append((i, clone))
    assert len(clones) >= 3, f"{venue}: only {len(clones)} cut points"
    for cut, clone in clones:
        assert clone.feed.books.keys() == original.feed.books.keys()
        for symbol, book in original.feed.books.items():
            assert clone.feed.books[symbol].to_dict() == book.to_dict(), f"{venue} {symbol} (restored at {cut})"
        assert_same_state(original, clone)
    return dict(counts) | {f"cut_{k}": v for k, v in fired.items()}


@pytest.mark.realdata
@pytest.mark.parametrize("case", list(REAL))
def test_restored_state_continues_exactly_like_the_original_on_real_captures(shared_data: Path, case: str) -> None:
    venue, items = real_stream(shared_data, case)
    seen = differential(venue, items)
    assert seen["error"] >= 3 and seen["windows"] > 0 and seen["news"] == 3
    if case in ("binance-spot", "binance-usdm", "binance-coinm"):
        assert seen.get("cut_buffering") and seen.get("cut_snapshot")
    if case == "binance-spot":
        assert seen["cut_buffering"] == 2 and seen["cut_snapshot"] == 2  # the start, and the injected resync


@pytest.mark.parametrize("case", SIMULATED)
def test_restored_state_continues_exactly_like_the_original_on_simulated_streams(sim: SimResult, case: str) -> None:
    venue, items = sim_stream(sim, case)
    seen = differential(venue, items)
    assert seen["error"] >= 3 and seen["windows"] > 0 and seen["news"] == 3
    if case == "coinbase-full":
        assert seen.get("cut_staged") and seen.get("cut_buffering") and seen.get("cut_snapshot")


# ---------------------------------------------------------------- identity, values


def test_sides_stay_the_very_sorted_dicts_of_the_book_and_orders_their_queues() -> None:
    book = L3Book("itch", "X")
    for oid, side, price in ((1, Side.BID, 100), (2, Side.BID, 100), (3, Side.ASK, 103), (4, Side.BID, 99)):
        book.add(oid, side, price, 10 * oid)
    copy = roundtrip(book)
    assert copy._levels[Side.BID] is copy.bids and copy._levels[Side.ASK] is copy.asks
    assert type(copy.bids) is DescendingSortedDict and type(copy.asks) is SortedDict
    assert copy.bids.peekitem(0) == (100, 30) and list(copy.bids) == [100, 99]  # still highest first
    assert copy.queue(Side.BID, 100) == [(1, 10), (2, 20)]
    assert copy.orders[4].side is Side.BID
    copy.add(5, Side.ASK, 101, 1)
    assert copy.best_ask() == (101, 1) and book.best_ask() == (103, 30)
    assert_same_state(book, roundtrip(book))


def test_cycles_and_shared_objects_come_back_shared() -> None:
    shared = {"n": 1}
    x: list[Any] = [shared, shared, (shared, 2)]
    x.append(x)
    d: dict[str, Any] = {"self": None, "list": x}
    d["self"] = d
    y = roundtrip([x, d])
    assert y[0][0] is y[0][1] is y[0][2][0] and y[0][3] is y[0]
    assert y[1]["self"] is y[1] and y[1]["list"] is y[0]
    t = (x, 1)
    pair = roundtrip([t, t])  # a tuple holding a container is shared too
    assert pair[0] is pair[1]


def test_values_come_back_with_their_types_and_bits() -> None:
    values = {
        "floats": [-math.inf, math.inf, -0.0, 1e-310, float("nan")],
        "big": [2**64, -(2**63) - 1, 2**200, -(3**150), 2**63 - 1, -(2**63)],
        "deque": deque([1, (2, 3)], maxlen=7),
        "unbounded": deque(),
        "counter": Counter({"a": 3, "b": -1, "z": 0}),
        "default": defaultdict(list, {1: [2], 2: []}),
        "no_factory": defaultdict(None, {1: 2}),
        "enums": [Side.BID, Kind.EXECUTE, SyncState.LIVE],
        "by_enum": {Side.BID: "b", Side.ASK: "a"},
        "keys": {(1, "a"): 1, b"raw": 2, 3.5: 3, None: 4, Kind.ADD: 5},
        "sets": [{1, 2, "x"}, frozenset({(1, 2), 3})],
        "arrays": [np.arange(12, dtype=np.int32).reshape(3, 4), np.array([np.nan, -np.inf], np.float32),
                   np.zeros((2, 0, 3)), np.array(["ab", ""], dtype=object), np.array([True, False]),
                   np.arange(6, dtype=">i8")[::2], np.array(["x", "yz"]), np.array([1, 2], "datetime64[ns]")],
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.str_("é")],
        "text": ["", "é\u2603", "\udc80 lone surrogate", b"\x00\xff"],
        "sorted": [SortedList([3, 1, 2]), SortedSet(["b", "a"]), SortedDict({2: "b", 1: "a"})],
        "classes": [L2Book, Order, int, feed_class, orderbook.features.infer_tick],
    }  # fmt: skip
    copy = roundtrip(values)
    assert_same_state(values, copy)
    assert copy["deque"].maxlen == 7 and copy["unbounded"].maxlen is None
    assert copy["enums"][0] is Side.BID and copy["by_enum"][Side.ASK] == "a"
    assert copy["default"]["new"] == [] and copy["no_factory"].default_factory is None
    strided = copy["arrays"][5]
    assert strided.dtype == np.dtype(">i8") and strided.tolist() == [0, 2, 4] and strided.flags.writeable
    assert type(copy["scalars"][0]) is np.float32 and copy["scalars"][0] == np.float32(1.5)


def test_frozen_dataclasses_lazy_attributes_and_bound_methods_are_restored() -> None:
    vw = VenueWindows("itch", WindowConfig(n_events=8, every_events=4))
    feed = vw.feed
    assert isinstance(feed, ItchFeed)
    feed.note = "set from outside the class"  # type: ignore[attr-defined]
    del feed.system_event  # an attribute the instance lacks (as a lazily set one would be)
    copy = roundtrip(vw)
    assert copy.config == vw.config and copy.config.__class__ is WindowConfig
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.config.n_rows = 3  # type: ignore[misc]
    assert copy.feed.note == "set from outside the class" and not hasattr(copy.feed, "system_event")
    handler = copy.feed._handlers["A"]
    assert handler.__self__ is copy.feed and handler.__func__ is ItchFeed._add
    assert copy.feed._fast[ord("D")].__self__ is copy.feed


# ---------------------------------------------------------------- corrupt and crafted input


def frame(table: Any, root: Any, *, version: int = LAYOUT_VERSION, magic: bytes = MAGIC) -> bytes:
    """A blob laid out as the module docstring says, around a hand-written table and root."""
    body = msgpack.packb(table) + msgpack.packb(root, use_bin_type=True)
    return struct.pack(">6sHQ", magic, version, len(body)) + zlib.compress(body, 1)


@pytest.fixture(scope="module")
def blob() -> bytes:
    vw = VenueWindows("itch")
    for raw in (m.raw for m in itertools.islice(sim_messages("itch", simulate(SimConfig(1, 60 * SEC, 3))), 400)):
        vw.process(None, raw)
    return dump_state(vw)


def reason_of(data: bytes) -> str:
    with pytest.raises(SnapshotError) as err:
        load_state(data)
    return err.value.reason


def damaged_reason(data: bytes, original: bytes) -> str:
    """A damaged blob's reason; "same" where the damage left the body intact (a few bits of a
    deflate stream, such as code lengths of symbols it never uses, do not change what it
    inflates to, and the Adler-32 of the body vouches for that)."""
    try:
        state = load_state(data)
    except SnapshotError as err:
        return err.reason
    assert zlib.decompress(data[16:]) == zlib.decompress(original[16:])
    assert_same_state(load_state(original), state)
    return "same"


def test_truncated_flipped_and_padded_snapshots_are_corrupt(blob: bytes) -> None:
    assert load_state(blob) is not None
    for n in sorted({0, 1, 5, 15, 16, 17, 40, len(blob) // 2, len(blob) - 5, len(blob) - 1}):
        assert reason_of(blob[:n]) == "corrupt", n
    for pos in range(0, len(blob), max(1, len(blob) // 300)):
        if 6 <= pos < 8:
            continue  # the version field: see below
        flipped = bytearray(blob)
        flipped[pos] ^= 0x41
        assert damaged_reason(bytes(flipped), blob) in ("corrupt", "too_large", "same"), pos
    assert reason_of(blob + b"\x00") == "corrupt"
    with pytest.raises(SnapshotError, match="not a snapshot") as err:
        load_state(b"NOTSNP" + blob[6:])
    assert err.value.reason == "corrupt"


def test_another_layout_version_is_incompatible_not_misread(blob: bytes) -> None:
    newer = blob[:6] + struct.pack(">H", LAYOUT_VERSION + 1) + blob[8:]
    with pytest.raises(SnapshotError, match="layout version 2") as err:
        load_state(newer)
    assert err.value.reason == "incompatible"
    assert reason_of(frame([], None, version=0)) == "incompatible"


def test_a_body_over_the_limit_is_refused_before_inflating(blob: bytes) -> None:
    with pytest.raises(SnapshotError) as err:
        load_state(blob, max_bytes=100)
    assert err.value.reason == "too_large"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_snapshot_error(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        load_state(data)
    with pytest.raises(SnapshotError):
        load_state(MAGIC + data)


node = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 30) | st.text(max_size=5) | st.binary(max_size=5) | st.floats(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.integers(-3, 30) | st.text(max_size=3), inner),
    max_leaves=40,
)
table_entry = st.lists(
    st.sampled_from([0, 1, 2, 3])
    | st.sampled_from(["orderbook.book", "orderbook.events", "builtins", "collections", "orderbook"])
    | st.sampled_from(["Order", "Side", "L3Book", "DescendingSortedDict", "int", "deque", "book"])
    | st.lists(st.sampled_from(["side", "price", "size", "venue"]), max_size=4)
    | st.integers(-2, 3),
    min_size=4,
    max_size=4,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(table_entry, max_size=3), node)
def test_well_framed_random_bodies_load_or_raise_snapshot_error_only(table: list[Any], root: Any) -> None:
    with contextlib.suppress(SnapshotError):
        load_state(frame(table, root))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_damage_to_a_real_snapshot_raises_snapshot_error_or_changes_nothing(
    blob: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(damaged) - 1))
        damaged[pos] = data.draw(st.integers(0, 255).filter(lambda b, pos=pos: b != damaged[pos]))
    assert damaged_reason(bytes(damaged), blob) in ("corrupt", "too_large", "incompatible", "same")


def test_damage_inside_a_valid_stream_is_caught_as_corrupt(blob: bytes) -> None:
    """Bodies that inflate fine but hold the wrong nodes (what a bug or a crafted blob gives)."""
    body = zlib.decompress(blob[16:])
    unpacker = msgpack.Unpacker(strict_map_key=False, raw=False)
    unpacker.feed(body)
    table, _ = list(unpacker)
    bad_roots = ([99, 1], [0, 10**6], [18, 0], [18, len(table) + 3, 1], [16, "<f8", [3], b"\x00" * 5],
                 [16, "|O", [1], b"\x00" * 8], [10, -1, []], [5, [1, 2], [3]], [21, [0, 0], "__class__"])  # fmt: skip
    for bad_root in bad_roots:
        assert reason_of(frame(table, bad_root)) == "corrupt", bad_root


def test_a_blob_naming_classes_outside_the_allowlist_imports_nothing() -> None:
    this_was_imported = "this" in sys.modules  # the stdlib module that prints the Zen when imported
    for module, qualname in (("os", "system"), ("subprocess", "Popen"), ("made_up_module_xyz", "Thing"),
                             ("this", "s"),
                             ("builtins", "eval"), ("orderbook.features", "np.load"), ("orderbook", "__builtins__"),
                             ("orderbook.book.x", "Y"), ("orderbookx", "Z")):  # fmt: skip
        for kind in (0, 1):
            with pytest.raises(SnapshotError) as err:
                load_state(frame([[kind, module, qualname, [] if kind else None]], [18, 0]))
            assert err.value.reason in ("unsupported_type", "incompatible"), (module, qualname)
            assert module in str(err.value)
    assert "made_up_module_xyz" not in sys.modules
    assert this_was_imported or "this" not in sys.modules
    with pytest.raises(SnapshotError, match="is not on the allowlist") as err:
        load_state(frame([[0, "subprocess", "Popen", None]], None))
    assert err.value.reason == "unsupported_type"


def test_an_orderbook_name_that_no_longer_exists_is_incompatible() -> None:
    with pytest.raises(SnapshotError, match="no longer exists") as err:
        load_state(frame([[0, "orderbook.book", "GoneBook", None]], None))
    assert err.value.reason == "incompatible"
    with pytest.raises(SnapshotError) as err:
        load_state(frame([[2, "orderbook.events", "Side", 7]], None))  # an enum member that is gone
    assert err.value.reason == "incompatible" and "Side" in str(err.value)


# ---------------------------------------------------------------- classes that changed


def test_a_slots_class_that_gained_a_field_is_incompatible(monkeypatch: pytest.MonkeyPatch) -> None:
    book = L3Book("itch", "X")
    book.add(1, Side.BID, 100, 5)
    data = dump_state(book)

    @dataclasses.dataclass(slots=True)
    class NewOrder:
        side: Side
        price: int
        size: int
        ts: int = 0

    NewOrder.__module__, NewOrder.__qualname__ = "orderbook.book", "Order"
    monkeypatch.setattr(orderbook.book, "Order", NewOrder)
    with pytest.raises(SnapshotError, match=r"orderbook\.book:Order has changed") as err:
        load_state(data)
    assert err.value.reason == "incompatible" and "added ['ts']" in str(err.value)


def test_a_dict_class_whose_code_sets_another_attribute_is_incompatible(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dump_state([TradeClassifier()])

    class Changed(TradeClassifier):
        def reset(self) -> None:
            super().reset()
            self._last_size = 0  # a field the snapshot does not have

    Changed.__module__, Changed.__qualname__ = "orderbook.features", "TradeClassifier"
    monkeypatch.setattr(orderbook.features, "TradeClassifier", Changed)
    with pytest.raises(SnapshotError, match=r"orderbook\.features:TradeClassifier has changed") as err:
        load_state(data)
    assert err.value.reason == "incompatible" and "_last_size" in str(err.value)


def test_a_recorded_field_list_that_differs_from_the_class_is_incompatible() -> None:
    root = [18, 0, 1, 2]  # an Order with two of its three fields
    with pytest.raises(SnapshotError, match=r"Order has changed.*removed \[\]") as err:
        load_state(frame([[1, "orderbook.book", "Order", ["price", "size"]]], root))
    assert err.value.reason == "incompatible"
    with pytest.raises(SnapshotError, match=r"removed \['queue'\]"):
        load_state(frame([[1, "orderbook.book", "Order", ["side", "price", "size", "queue"]]], root))


# ---------------------------------------------------------------- what dump refuses


def test_a_lambda_an_open_file_or_a_foreign_object_is_refused_with_its_path(tmp_path: Path) -> None:
    import fractions

    vw = VenueWindows("itch")
    vw.feed._handlers["A"] = lambda m, seq, recv_ts: []  # type: ignore[attr-defined]
    with pytest.raises(SnapshotError, match=r"feed\._handlers\['A'\]: a lambda") as err:
        dump_state(vw)
    assert err.value.reason == "unsupported_type"

    vw = VenueWindows("binance")
    with open(tmp_path / "log.txt", "w") as f:
        vw.feed.stats["X"] = f  # type: ignore[assignment]
        with pytest.raises(SnapshotError, match=r"feed\.stats\['X'\]: _io\.TextIOWrapper is not on the allowlist"):
            dump_state(vw)

    vw = VenueWindows("kraken")
    vw.news["X"] = [(1, fractions.Fraction(1, 3))]  # type: ignore[list-item]
    with pytest.raises(SnapshotError, match=r"news\['X'\]\[0\]\[1\]: fractions\.Fraction is not on the allowlist"):
        dump_state(vw)

    with pytest.raises(SnapshotError, match=r"\[0\]\.default_factory: a lambda"):
        dump_state([defaultdict(lambda: 0)])
    with pytest.raises(SnapshotError, match=r"\[1\]: function .*json.* is not on the allowlist"):
        import json

        dump_state([1, json.dumps])
    t: tuple[Any, ...] = ([],)
    t[0].append(t)
    with pytest.raises(SnapshotError, match="cycle runs through"):
        dump_state(t)


# ---------------------------------------------------------------- random books


PRICES = st.integers(95, 105)
IDS = st.one_of(st.integers(1, 40), st.integers(1, 40).map(lambda n: f"o{n}"))
L3_EVENT = st.tuples(
    st.sampled_from([Kind.ADD] * 5 + [Kind.CANCEL, Kind.EXECUTE, Kind.DELETE, Kind.REPLACE, Kind.CHANGE, Kind.CLEAR]),
    st.sampled_from([Side.BID, Side.ASK]),
    PRICES,
    st.integers(-1, 30),
    IDS,
    IDS,
)
L2_EVENT = st.tuples(
    st.sampled_from([Kind.LEVEL_SET] * 8 + [Kind.CLEAR, Kind.TRADE]),
    st.sampled_from([Side.BID, Side.ASK, Side.NONE]),
    PRICES,
    st.integers(-1, 30),
    IDS,
    IDS,
)


def apply_all(book: L2Book | L3Book, raw_events: list[tuple[Any, ...]], start: int) -> list[Any]:
    """What each event did: None, or the error it raised (type and message)."""
    out: list[Any] = []
    for seq, (kind, side, price, size, oid, new_id) in enumerate(raw_events, start):
        e = Event(kind, "test", "XYZ", seq, seq, side, price, size, oid, new_id)
        try:
            book.apply(e)
            out.append(None)
        except FeedError as err:
            out.append((type(err).__name__, str(err)))
    return out


def book_view(book: L2Book | L3Book) -> Any:
    view: list[Any] = [book.to_dict(), book.top(3), list(book.bids.items()), book.crossed()]
    if isinstance(book, L3Book):
        view += [
            {oid: (o.side, o.price, o.size) for oid, o in book.orders.items()},
            [book.queue(side, p) for side in (Side.BID, Side.ASK) for p in book.side(side)],
            {oid: book.queue_position(oid) for oid in book.orders},
        ]
    return view


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["l2", "l3"]), st.data())
def test_random_books_round_trip_and_then_behave_identically(kind: str, data: st.DataObject) -> None:
    strategy = L3_EVENT if kind == "l3" else L2_EVENT
    book: L2Book | L3Book = L3Book("test", "XYZ") if kind == "l3" else L2Book("test", "XYZ")
    before = data.draw(st.lists(strategy, max_size=60))
    apply_all(book, before, 1)
    copy = roundtrip(book)
    assert_same_state(book, copy)
    assert book_view(copy) == book_view(book)
    after = data.draw(st.lists(strategy, max_size=60))
    assert apply_all(copy, after, 1000) == apply_all(book, after, 1000)
    assert book_view(copy) == book_view(book)


def iter_nothing() -> Iterator[None]:  # pragma: no cover - a generator object is not saved
    yield None


def test_generators_and_builtin_functions_are_refused() -> None:
    for value, what in ((iter_nothing(), "generator"), (len, "built-in function len"), (print, "function print")):
        with pytest.raises(SnapshotError, match=what):
            dump_state({"v": value})
