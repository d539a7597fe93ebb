"""The native WindowBuilder (orderbook/native/src/windows.rs, features.rs) against the reference
(`orderbook.windows.WindowBuilder` with `orderbook.features.FeatureState`), window by window.

Every array of every window must be equal, the float32 features and the float64 volume record bit
for bit (`view(uint32)`, `view(uint64)`: the sign of a zero counts too, a NaN equals a NaN), and so
must every metadata field. The builders emit often
(`every_events` small beside `n_rows`), so every feature row of a stream is compared in some
window: event by event, on

- every real capture the reference feeds read (../shared/data: Binance, Coinbase, Kraken),
- hypothesis streams of L2 and L3 events (trades with and without aggressor flags, snapshots,
  clears, time running backwards, headlines),
- a simulated ITCH day (model/sim/itch_day.py),

along three native paths: `push` with the reference's Python book, `push` with a native book, and
`push_batch` (events as columns, applied to a native book inside the call). A builder pickled and
restored mid-stream must go on exactly as the original, and windows read with `window()` between
the emitted ones must change nothing (only an emitted window enters the volume record).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import pickle
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.sim.engine import SEC, SimConfig
from model.sim.itch_day import itch_day_stream
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.book import L2Book, L3Book
from orderbook.errors import BookError, FeedError
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from orderbook.features import FeatureState
from orderbook.venues import Feed, feed_class
from orderbook.volume_record import KEEP, VolumeRecord
from orderbook.windows import ARRAY_FIELDS, Window, WindowBuilder, WindowConfig, stack

if not native.available():
    pytest.skip(f"the native module is not built: {native.describe()}", allow_module_level=True)
if not hasattr(native._core, "WindowBuilder"):
    pytest.skip(
        "orderbook.native._core was built without WindowBuilder: rebuild (pip install -e .)", allow_module_level=True
    )

NativeBuilder = native._core.WindowBuilder
NativeL2, NativeL3 = native._core.L2Book, native._core.L3Book

# Often enough that every row is in some window: a window every 4 tokens, 8 rows kept.
OFTEN = WindowConfig(n_events=16, n_rows=8, max_news=2, price_clip=8, every_events=4)
BY_TIME = WindowConfig(n_events=32, n_rows=16, every_events=None, every_ns=50_000_000)
# A window a message, small rings: the volume record's horizons end within a few hundred messages.
EVERY = WindowConfig(n_events=4, n_rows=2, max_news=1, price_clip=8, every_events=1)


# --------------------------------------------------------------------------- comparing


def _bits(a: np.ndarray) -> np.ndarray:
    """What is compared: floats as their bits (-0.0 is not 0.0, NaN is NaN), anything else as it is."""
    return a.view({np.float32: np.uint32, np.float64: np.uint64}[a.dtype.type]) if a.dtype.kind == "f" else a


def recorded(windows: Sequence[Window]) -> float:
    """The share of `windows` whose volume record is finite throughout (both horizons known 10 times)."""
    return float(np.mean([np.isfinite(w.volume_record).all() for w in windows])) if windows else 0.0


def window_difference(ref: Window, nat: Window) -> str | None:
    """None when the windows are equal field for field (float32 bit for bit), else what differs."""
    for f in fields(Window):
        a, b = getattr(ref, f.name), getattr(nat, f.name)
        if isinstance(a, np.ndarray):
            if not isinstance(b, np.ndarray) or (a.dtype, a.shape) != (b.dtype, b.shape):
                return f"{f.name}: {a.dtype}{a.shape} != {getattr(b, 'dtype', type(b))}{getattr(b, 'shape', '')}"
            differ = np.argwhere(_bits(a) != _bits(b))
            if len(differ):
                i = tuple(differ[0])
                return f"{f.name}{list(i)}: reference {a[i]!r} != native {b[i]!r}"
        elif type(a) is not type(b) or a != b:
            return f"{f.name}: reference {a!r} != native {b!r}"
    return None


def assert_same(ref: Window | None, nat: Window | None, where: str) -> None:
    assert (ref is None) == (nat is None), f"{where}: reference {ref is not None}, native {nat is not None}"
    if ref is not None:
        diff = window_difference(ref, nat)
        assert diff is None, f"{where}: {diff}"


def assert_same_stack(ref: list[Window], batch: dict[str, np.ndarray], where: str) -> None:
    """The reference's windows stacked == a push_batch result, key for key (`msg` aside)."""
    assert len(batch["ts"]) == len(ref), f"{where}: {len(ref)} reference windows, {len(batch['ts'])} native"
    if not ref:
        return
    want = stack(ref)
    assert set(batch) == set(want) | {"msg"}
    for key, a in want.items():
        b = batch[key]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {key} {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if _bits(a).tolist() != _bits(b).tolist():
            i = next(i for i in range(len(ref)) if window_difference(ref[i], _window_at(batch, i)) is not None)
            pytest.fail(f"{where}: window {i}: {window_difference(ref[i], _window_at(batch, i))}")


def _window_at(batch: dict[str, np.ndarray], i: int) -> Window:
    kw = {k: (v[i] if k in ARRAY_FIELDS else v[i].item() if v.dtype != object else v[i]) for k, v in batch.items()}
    del kw["msg"]
    return Window(**kw)


# --------------------------------------------------------------------------- the stream of one symbol


def columns(messages: Sequence[tuple[int, list[Event]]]) -> dict[str, np.ndarray]:
    """(message index, its events) as push_batch's columns."""
    rows = [(m, e) for m, events in messages for e in events]
    col = lambda f, dtype: np.array([f(m, e) for m, e in rows], dtype=dtype)  # noqa: E731
    return {
        "kind": col(lambda m, e: e.kind, np.int8),
        "side": col(lambda m, e: e.side, np.int8),
        "flags": col(lambda m, e: e.flags, np.int16),
        "ts": col(lambda m, e: e.ts, np.int64),
        "seq": col(lambda m, e: e.seq, np.int64),
        "price": col(lambda m, e: e.price, np.int64),
        "size": col(lambda m, e: e.size, np.int64),
        # an L2 book reads no ids; Coinbase's trade ids are strings
        "order_id": col(lambda m, e: e.order_id if isinstance(e.order_id, int) else 0, np.uint64),
        "new_order_id": col(lambda m, e: e.new_order_id if isinstance(e.new_order_id, int) else 0, np.uint64),
        "msg": col(lambda m, e: m, np.int32),
    }


def native_book(book_type: type, venue: str, symbol: str) -> Any:
    return (NativeL2 if book_type is L2Book else NativeL3)(venue, symbol)


def apply_native(book: Any, events: list[Event]) -> None:
    c = columns([(0, events)])
    if isinstance(book, NativeL2):
        book.apply(c["kind"], c["side"], c["price"], c["size"])
    else:
        book.apply(c["kind"], c["order_id"], c["side"], c["price"], c["size"], c["new_order_id"])


def clone(book: Any) -> Any:
    """A copy of a native book (an L3 one's queues in id order: nothing here reads queue priority)."""
    if isinstance(book, NativeL2):
        out = NativeL2(book.venue, book.symbol)
        for key, side in (("bids", Side.BID), ("asks", Side.ASK)):
            for price, size in book.to_dict()[key].items():
                out.set_level(int(side), price, size)
        return out
    out = NativeL3(book.venue, book.symbol)
    for oid, (side, price, size) in sorted(book.orders().items()):
        out.add(oid, side, price, size)
    return out


@dataclass
class Symbol:
    """One symbol's builders, fed the same messages: the reference, native on the reference's Python
    book, and native on a native book that only the events reach (`mirror`, kept by the caller), with
    the messages kept for a push_batch replay from the mirror's state when the builders began."""

    ref: WindowBuilder
    nat: Any
    nat_mirror: Any | None
    start_book: Any | None  # a copy of the mirror before the builders' first message
    messages: list[tuple[int, list[Event]]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    offsets: list[Any] = field(default_factory=list)
    news: list[tuple[int, int, str]] = field(default_factory=list)  # (messages before it, ts, headline)
    read_every: int = 0  # read window() on every builder after every so many messages (0: never)

    @classmethod
    def start(cls, config: WindowConfig, tick: int, mirror: Any | None, venue: str, symbol: str, **kw: Any) -> Symbol:
        ref = WindowBuilder(config, FeatureState(tick=tick, **kw), venue, symbol)
        nat = NativeBuilder(config, None, venue, symbol, tick=tick, **kw)
        if mirror is None:
            return cls(ref, nat, None, None)
        return cls(ref, nat, NativeBuilder(config, None, venue, symbol, tick=tick, **kw), clone(mirror))

    def push(self, book: L2Book | L3Book, mirror: Any | None, events: list[Event], index: int, where: str) -> None:
        """One message, its events applied to `book` and `mirror` already."""
        offset = (0, index)
        w_ref = self.ref.push(book, events, offset=offset)
        assert_same(w_ref, self.nat.push(book, events, offset=offset), f"{where} (python book)")
        if self.nat_mirror is not None:
            assert_same(w_ref, self.nat_mirror.push(mirror, events, offset=offset), f"{where} (native book)")
        self.messages.append((index, events))
        self.offsets.append(offset)
        if w_ref is not None:
            self.windows.append(w_ref)
        if self.read_every and len(self.messages) % self.read_every == 0:
            read = self.ref.window()
            assert_same(read, self.nat.window(), f"{where} window() (python book)")
            if self.nat_mirror is not None:
                assert_same(read, self.nat_mirror.window(), f"{where} window() (native book)")

    def add_news(self, ts: int, headline: str) -> None:
        for b in (self.ref, self.nat, self.nat_mirror):
            if b is not None:
                b.add_news(ts, headline)
        self.news.append((len(self.messages), ts, headline))

    def check_batch(self, where: str, chunk: int = 5000) -> int:
        """The saved messages again through push_batch, in chunks (cut where a headline joined), from
        the starting book."""
        if self.start_book is None:
            return 0
        nat = NativeBuilder(self.ref.config, self.ref.features, self.ref.venue, self.ref.symbol)
        got: list[dict[str, np.ndarray]] = []
        offsets = {m: o for (m, _), o in zip(self.messages, self.offsets, strict=True)}
        cuts = sorted({*range(0, len(self.messages), chunk), *(at for at, _, _ in self.news), len(self.messages)})
        for lo, hi in zip(cuts, [*cuts[1:], len(self.messages)], strict=True):
            for at, ts, headline in self.news:
                if at == lo:
                    nat.add_news(ts, headline)
            if hi > lo:
                got.append(nat.push_batch(columns(self.messages[lo:hi]), self.start_book, offsets))
        merged = {k: np.concatenate([g[k] for g in got]) for k in got[0]} if got else {"ts": np.zeros(0)}
        assert_same_stack(self.windows, merged, f"{where} (push_batch)")
        return len(self.windows)


def by_symbol(events: Iterable[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.symbol, []).append(e)
    return out


def replay(
    feed: Feed,
    raws: Iterable[tuple[bytes, int]],
    config: WindowConfig,
    name: str,
    restore_at: int | None = None,
    read_every: int = 0,
) -> dict[str, Symbol]:
    """Every message through the feed, then (as VenueWindows does) each symbol's events to its builders,
    created once the symbol's tick is known. `restore_at`: swap every native builder for a pickled and
    restored copy of itself after that message. `read_every`: see Symbol."""
    symbols: dict[str, Symbol] = {}
    mirrors: dict[str, Any] = {}  # per symbol from its first event; None where ids are not ints
    for i, (raw, recv_ts) in enumerate(raws):
        try:
            events = feed.on_message(raw, recv_ts)
        except FeedError:
            continue
        for sym, mine in by_symbol(events).items():
            book = feed.books.get(sym)
            if book is None:
                continue
            if sym not in mirrors:
                mirrors[sym] = native_book(type(book), feed.venue, sym)
            mirror = mirrors[sym]
            if isinstance(mirror, NativeL3) and not all(isinstance(e.order_id, int) for e in mine):
                mirror = mirrors[sym] = None  # native L3 books take integer ids only
                if sym in symbols:
                    symbols[sym].nat_mirror = symbols[sym].start_book = None
            before = mirror
            if mirror is not None:
                if sym not in symbols:
                    before = clone(mirror)
                apply_native(mirror, mine)
            s = symbols.get(sym)
            if s is None:
                tick = feed.window_tick(book)
                if tick is None:
                    continue
                s = symbols[sym] = Symbol.start(config, tick, before, feed.venue, sym)
                s.read_every = read_every
            s.push(book, mirror, mine, i, f"{name} message {i} {sym}")
        if i == restore_at:
            for s in symbols.values():
                s.nat = pickle.loads(pickle.dumps(s.nat))
    return symbols


# --------------------------------------------------------------------------- real captures

CAPTURES = [
    ("binance", "binance-hftbacktest/spot_btcusdt_20240808.gz"),
    ("binance", "binance-hftbacktest/spot_ethusdt_20240808.gz"),
    ("binance", "binance-hftbacktest/usdm_btcusdt_20240808.gz"),
    ("binance", "binance-hftbacktest/usdm_ethusdt_20240808.gz"),
    ("binance", "binance-hftbacktest/cm_btcusd_perp_20240808.gz"),
    ("binance", "binance-hftbacktest/cm_ethusd_perp_20240808.gz"),
    ("binance", "cryptofeed-captures/BINANCE.ws.1.0.gz"),  # its REST snapshots (BINANCE.http.*) merged in
    ("coinbase", "cryptofeed-captures/COINBASE.ws.28.0.gz"),
    ("kraken", "cryptofeed-captures/KRAKEN.ws.50.0.gz"),
    ("kraken", "cryptofeed-captures/KRAKEN.ws.48.0.gz"),  # trades only: no book, no builder, nothing to compare
]


# the hftbacktest captures' windows are compared whole, through the venue's whole path, by
# test_native_venue_windows; here their first 12,000 messages, which saves make test a minute
HFTBACKTEST_HEAD = 12_000


def capture_raws(venue: str, path: Path) -> Iterator[tuple[bytes, int]]:
    for rec in feed_class(venue).read_capture(path):
        yield rec.raw, rec.recv_ts


@pytest.mark.realdata
@pytest.mark.parametrize(("venue", "name"), CAPTURES, ids=[Path(n).name.split(".gz")[0] for _, n in CAPTURES])
def test_native_windows_equal_the_reference_on_a_real_capture(shared_data: Path, venue: str, name: str) -> None:
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{path} is not there")
    raws = capture_raws(venue, path)
    if name.startswith("binance-hftbacktest/"):
        raws = itertools.islice(raws, HFTBACKTEST_HEAD)
    symbols = replay(feed_class(venue)(), raws, OFTEN, name, restore_at=2000)
    windows = sum(s.check_batch(f"{name} {sym}") for sym, s in symbols.items())
    if not name.endswith("KRAKEN.ws.48.0.gz"):
        assert windows > 50, f"only {windows} windows compared"
    if name.startswith("binance-hftbacktest/"):  # one book, trading all along: its record, not NaNs, compared
        assert recorded([w for s in symbols.values() for w in s.windows]) > 0.9


@pytest.mark.realdata
def test_native_windows_by_time_equal_the_reference_on_a_real_capture(shared_data: Path) -> None:
    name = "binance-hftbacktest/spot_ethusdt_20240808.gz"
    symbols = replay(feed_class("binance")(), capture_raws("binance", shared_data / name), BY_TIME, name)
    assert sum(s.check_batch(name) for s in symbols.values()) > 100
    assert recorded([w for s in symbols.values() for w in s.windows]) > 0.5


# --------------------------------------------------------------------------- a simulated ITCH day


def test_native_windows_equal_the_reference_on_a_simulated_itch_day() -> None:
    stream = itch_day_stream(seed=12, n=6000)
    feed = feed_class("itch")()
    symbols = replay(feed, ((m, 0) for m in stream.messages), OFTEN, "itch day", restore_at=3000, read_every=7)
    assert set(symbols) == set(stream.symbols)
    assert sum(s.check_batch(f"itch {sym}", chunk=700) for sym, s in symbols.items()) > 500
    assert recorded([w for s in symbols.values() for w in s.windows]) > 0.5


def test_native_volume_records_equal_the_reference_past_the_volumes_they_keep() -> None:
    """A window a message on a simulated book: past KEEP known volumes, the oldest leave the record (the
    native builder keeps their order as they come and go, the reference sorts afresh)."""
    result = simulate(SimConfig(n_symbols=1, duration_ns=300 * SEC, seed=4))
    raws = ((m.raw, 0) for m in messages("itch", result))
    (s,) = replay(feed_class("itch")(), raws, EVERY, "simulated book", restore_at=900, read_every=5).values()
    assert s.check_batch("simulated book", chunk=400) > KEEP + 200  # both horizons' records full, and on
    assert recorded(s.windows) > 0.8  # all but the first 110 or so


def test_native_decoder_batches_go_straight_to_push_batch() -> None:
    """Records in, windows out, no Python per event: the native ITCH feed's EVENT_ROW batch, split by
    symbol, into push_batch on a native book of each symbol's own; the reference's windows come out."""
    stream = itch_day_stream(seed=5, n=3000)
    symbols = replay(feed_class("itch")(), ((m, 0) for m in stream.messages), OFTEN, "itch day")
    batch = native.ItchFeed().on_messages(stream.messages)
    assert [i for i, _ in batch.errors()] == stream.unknown  # the stream's deliberately unknown references
    compared = 0
    for sym, s in symbols.items():
        rows = batch.events[batch.events["symbol"] == batch.symbols.index(sym)]
        assert rows["msg"][0] == s.messages[0][0]  # the builder began at the symbol's first event
        nat = NativeBuilder(OFTEN, None, "itch", sym, tick=s.ref.features.tick)
        got = nat.push_batch(rows, NativeL3("itch", sym), offsets={m: (0, m) for m, _ in s.messages})
        assert_same_stack(s.windows, got, f"itch {sym} (decoded natively)")
        compared += len(s.windows)
    assert compared > 200


# --------------------------------------------------------------------------- hypothesis streams

VENUE, SYMBOL = "test", "XYZ"
PRICES = st.integers(95, 106)
SIZES = st.integers(1, 40)
FLAGS = st.sampled_from([0, 0, FLAG_AGGRESSOR_BID, FLAG_AGGRESSOR_ASK])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# few levels kept, so that messages often fall behind the top ones (the cached columns) and often not
PARAMS = st.sampled_from(
    [
        {"ofi_levels": 2, "depth_at": (1, 3), "memory_levels": 2, "memory_halflives": (1, 7)},
        {
            "ofi_levels": 3,
            "depth_at": (1, 2),
            "window_ns": 5_000,
            "ofi_halflife_ns": 3_000,
            "memory_levels": 3,
            "memory_halflives": (3,),
        },
        {},
    ]
)
CONFIGS = st.sampled_from(
    [
        WindowConfig(n_events=8, n_rows=6, max_news=2, price_clip=3, every_events=1),
        WindowConfig(n_events=5, n_rows=3, max_news=1, price_clip=2, every_events=2, every_ns=2_500),
        WindowConfig(n_events=16, n_rows=16, every_events=None, every_ns=1_000),
    ]
)


class Clock:
    """Event time that mostly moves forward, sometimes stands still, sometimes runs back."""

    def __init__(self, data: st.DataObject) -> None:
        self.data, self.ts, self.seq = data, 1_000_000, 0

    def tick(self) -> tuple[int, int]:
        self.ts += self.data.draw(st.sampled_from([0, 1, 7, 250, 999, 3_000, -400]))
        self.seq += 1
        return self.ts, self.seq


def l2_message(data: st.DataObject, clock: Clock) -> list[Event]:
    out = []
    for _ in range(data.draw(st.integers(1, 4))):
        ts, seq = clock.tick()
        kind = data.draw(st.sampled_from([Kind.LEVEL_SET] * 10 + [Kind.TRADE] * 3 + [Kind.EXECUTE, Kind.STATUS]))
        kw: dict[str, Any] = {}
        if kind == Kind.LEVEL_SET:
            side = data.draw(st.sampled_from([Side.BID, Side.ASK]))
            # bids low, asks high, with an overlap: the book may cross, the builders do not care
            price = data.draw(st.integers(95, 102) if side == Side.BID else st.integers(99, 106))
            kw = {"side": side, "price": price, "size": data.draw(st.integers(0, 40))}
        elif kind in (Kind.TRADE, Kind.EXECUTE):
            kw = {"price": data.draw(st.one_of(st.just(0), PRICES)), "size": data.draw(SIZES)}
            kw["flags"] = data.draw(FLAGS)
            kw["side"] = data.draw(st.sampled_from([Side.NONE, Side.BID, Side.ASK]))
        out.append(Event(kind, VENUE, SYMBOL, ts, seq, **kw))
    return out


def l2_snapshot(data: st.DataObject, clock: Clock) -> list[Event]:
    ts, seq = clock.tick()
    out = [Event(Kind.SNAPSHOT_BEGIN, VENUE, SYMBOL, ts, seq)]
    for side, prices in ((Side.BID, st.integers(90, 100)), (Side.ASK, st.integers(101, 110))):
        for price in data.draw(st.sets(prices, max_size=6)):
            out.append(Event(Kind.LEVEL_SET, VENUE, SYMBOL, ts, seq, side, price, data.draw(SIZES)))
    if data.draw(st.booleans()):  # a snapshot may end in a later message
        out.append(Event(Kind.SNAPSHOT_END, VENUE, SYMBOL, ts, seq))
    return out


def l3_event(data: st.DataObject, book: L3Book, clock: Clock, next_id: list[int]) -> Event:
    ts, seq = clock.tick()
    e = lambda kind, **kw: Event(kind, VENUE, SYMBOL, ts, seq, **kw)  # noqa: E731
    kind = data.draw(
        st.sampled_from([Kind.ADD] * 5 + [Kind.CANCEL, Kind.EXECUTE, Kind.DELETE, Kind.REPLACE, Kind.CHANGE])
    )
    if data.draw(st.integers(0, 6)) == 0:
        kind = Kind.TRADE
    live = sorted(book.orders)
    if kind == Kind.TRADE:
        return e(kind, price=data.draw(PRICES), size=data.draw(SIZES), flags=data.draw(FLAGS))
    if kind == Kind.ADD or not live:
        next_id[0] += 1
        side = data.draw(st.sampled_from([Side.BID, Side.ASK]))
        price = data.draw(st.integers(95, 102) if side == Side.BID else st.integers(99, 106))
        return e(Kind.ADD, side=side, price=price, size=data.draw(SIZES), order_id=next_id[0])
    oid = data.draw(st.sampled_from(live))
    o = book.orders[oid]
    # as the ITCH feed does, an event on a resting order names its side and price, mostly
    named = {"side": o.side, "price": o.price} if data.draw(st.integers(0, 4)) else {}
    if kind == Kind.CANCEL and o.size > 1:
        return e(kind, order_id=oid, size=data.draw(st.integers(1, o.size - 1)), **named)
    if kind == Kind.EXECUTE:
        return e(kind, order_id=oid, size=data.draw(st.integers(1, o.size)), flags=data.draw(FLAGS), **named)
    if kind == Kind.REPLACE:
        next_id[0] += 1
        return e(kind, order_id=oid, new_order_id=next_id[0], price=data.draw(PRICES), size=data.draw(SIZES))
    if kind == Kind.CHANGE:
        return e(kind, order_id=oid, size=data.draw(SIZES))
    return e(Kind.DELETE, order_id=oid, **named)


def assert_same_states(python_book: dict[str, np.ndarray], native_book: dict[str, np.ndarray], where: str) -> None:
    """The book states a builder kept pushed the Python book == those kept pushed the native one, bit for bit."""
    assert set(python_book) == set(native_book) == {"spread", "mid2", "depth", "traded", "emitted"}, where
    for key, a in python_book.items():
        assert _bits(a).tolist() == _bits(native_book[key]).tolist(), f"{where}: states {key} differ"


def run_stream(data: st.DataObject, book: L2Book | L3Book, next_message: Any) -> None:
    config, params = data.draw(CONFIGS), data.draw(PARAMS)
    tick = data.draw(st.sampled_from([1, 1, 2, 3]))
    mirror = native_book(type(book), VENUE, SYMBOL)
    s = Symbol.start(config, tick, mirror, VENUE, SYMBOL, **params)
    s.read_every = data.draw(st.sampled_from([0, 0, 1, 3]))
    restore_at = data.draw(st.integers(0, 40))
    keeps = data.draw(st.booleans())  # the book after every message, read off the Python book or the native one
    if keeps:
        s.nat.keep_states()
        s.nat_mirror.keep_states()
    for i in range(data.draw(st.integers(1, 60))):
        if data.draw(st.integers(0, 9)) == 0:  # a headline, possibly one already joined
            s.add_news(data.draw(st.integers(999_000, 1_010_000)), data.draw(st.sampled_from(["up", "down", "é"])))
        events = next_message()
        for e in events:
            book.apply(e)
        apply_native(mirror, events)
        s.push(book, mirror, events, i, f"message {i}")
        if i == restore_at:
            if keeps:  # kept states are not part of a snapshot
                assert_same_states(s.nat.take_states(), s.nat_mirror.take_states(), f"message {i}")
            s.nat = copy.deepcopy(s.nat) if i % 2 else pickle.loads(pickle.dumps(s.nat))
            if keeps:
                s.nat.keep_states()
    assert_same(s.ref.window(), s.nat.window(), "window() at the end")
    if keeps:
        assert_same_states(s.nat.take_states(), s.nat_mirror.take_states(), "the end")
    s.check_batch("push_batch", chunk=data.draw(st.integers(1, 30)))


@given(st.data())
@SETTINGS
def test_native_windows_equal_the_reference_on_l2_streams(data: st.DataObject) -> None:
    book, clock = L2Book(VENUE, SYMBOL), Clock(data)

    def message() -> list[Event]:
        if data.draw(st.integers(0, 12)) == 0:
            return l2_snapshot(data, clock)
        if data.draw(st.integers(0, 30)) == 0:
            ts, seq = clock.tick()
            return [Event(Kind.CLEAR, VENUE, SYMBOL, ts, seq)]
        if data.draw(st.integers(0, 20)) == 0:
            ts, seq = clock.tick()
            return [Event(Kind.SNAPSHOT_END, VENUE, SYMBOL, ts, seq)]
        return l2_message(data, clock)

    run_stream(data, book, message)


@given(st.data())
@SETTINGS
def test_native_windows_equal_the_reference_on_l3_streams(data: st.DataObject) -> None:
    book, clock, next_id = L3Book(VENUE, SYMBOL), Clock(data), [0]

    def message() -> list[Event]:
        out: list[Event] = []
        shadow = copy.deepcopy(book)  # the events of one message see the ones before them
        for _ in range(data.draw(st.integers(1, 4))):
            e = l3_event(data, shadow, clock, next_id)
            shadow.apply(e)
            out.append(e)
        if data.draw(st.integers(0, 40)) == 0:
            ts, seq = clock.tick()
            out.append(Event(Kind.CLEAR, VENUE, SYMBOL, ts, seq))
        return out

    run_stream(data, book, message)


@pytest.mark.parametrize("config", [OFTEN, BY_TIME, EVERY], ids=["often", "by_time", "every"])
def test_native_windows_equal_the_reference_on_times_further_apart_than_an_int64_holds(config: WindowConfig) -> None:
    """A venue's times are any int64: a message of 1716 (Coinbase's `time`, a fuzz finding) between ones of
    2026, or of 1678 and 2262, are further apart than an int64 holds. The reference subtracts exactly (the
    token's dt at most int64's); the native builder did in int64, which overflowed (a panic with overflow
    checks, a wrapped value without: another feature row, another emit)."""
    lo, hi, now = -(1 << 63), (1 << 63) - 1, 1_767_346_200_000_000_000
    times = [lo, hi, now, -8_000_000_000_000_000_000, now, lo, hi, lo, lo + 1, hi, hi - 1, 0, now, lo, now + 1]
    book, mirror = L2Book(VENUE, SYMBOL), native_book(L2Book, VENUE, SYMBOL)
    s = Symbol.start(config, 1, mirror, VENUE, SYMBOL)
    for i, ts in enumerate(times * 3):
        kind = Kind.TRADE if i % 3 == 2 else Kind.LEVEL_SET
        events = [
            Event(kind, VENUE, SYMBOL, ts, i, Side.BID, 100 - i % 4, 5 + i, flags=FLAG_AGGRESSOR_BID),
            Event(Kind.LEVEL_SET, VENUE, SYMBOL, ts, i, Side.ASK, 101 + i % 3, 7 + i),
        ]
        for e in events:
            book.apply(e)
        apply_native(mirror, events)
        s.push(book, mirror, events, i, f"message {i} at {ts}")
    assert s.check_batch("push_batch", chunk=5) >= 1


def test_a_headline_before_one_window_joins_a_later_one_whose_start_ran_back_on_both_paths() -> None:
    """test_windows' case natively: window() read while the window starts after the headline, then event
    time runs back and a window that holds it is emitted; the hypothesis streams above found the native
    push_batch (which reads nothing in between) keeping it where the reference, read in between, had
    dropped it."""
    config = WindowConfig(n_events=2, n_rows=2, max_news=2, price_clip=3, every_events=5)
    book = L2Book(VENUE, SYMBOL)
    ref, nat = WindowBuilder(config, FeatureState(), VENUE, SYMBOL), NativeBuilder(config, None, VENUE, SYMBOL)
    for b in (ref, nat):
        b.add_news(250, "between")
    for i, ts in enumerate((300, 310, 100, 110, 400)):
        events = [Event(Kind.LEVEL_SET, VENUE, SYMBOL, ts, i, Side.BID, 100, 5)]
        book.apply(events[0])
        w_ref, w_nat = ref.push(book, events, offset=(0, i)), nat.push(book, events, offset=(0, i))
        assert_same(ref.window(), nat.window(), f"message {i} window()")
        assert_same(w_ref, w_nat, f"message {i}")
    assert w_ref is not None and w_ref.news == [(250, "between")]


# --------------------------------------------------------------------------- the surface


def test_native_builder_takes_the_reference_features_parameters() -> None:
    fs = FeatureState(
        tick=5,
        ofi_levels=3,
        depth_at=(1, 4),
        window_ns=7_000,
        ofi_halflife_ns=11,
        memory_levels=6,
        memory_halflives=(9,),
    )
    nat = NativeBuilder(OFTEN, fs, "v", "s")
    assert (nat.tick, nat.names, nat.config, nat.venue, nat.symbol) == (5, fs.names, OFTEN, "v", "s")
    assert NativeBuilder().config == WindowConfig()
    with pytest.raises(ValueError, match="positive"):
        NativeBuilder(tick=0)
    with pytest.raises(ValueError, match="positive"):
        NativeBuilder(memory_halflives=[0])


def test_native_builder_refuses_a_batch_it_cannot_apply() -> None:
    nat = NativeBuilder(OFTEN, tick=1)
    events = [Event(Kind.ADD, VENUE, SYMBOL, 1, 1, Side.BID, 100, 5, order_id=1)]
    with pytest.raises(ValueError, match="native L2Book or L3Book"):
        nat.push_batch(columns([(0, events)]), L2Book())
    with pytest.raises(BookError, match=r"event 0 of the batch, ADD of message 0") as refused:
        nat.push_batch(columns([(0, events)]), NativeL2())
    assert refused.value.index == 0
    with pytest.raises(ValueError, match="non-decreasing"):
        nat.push_batch(columns([(1, events), (0, events)]), NativeL3())
    empty = nat.push_batch(columns([]), NativeL2())
    assert empty["features"].shape == (0, OFTEN.n_rows, len(nat.names)) and empty["offset"].dtype == object


def test_native_builder_state_round_trips_and_refuses_another_version() -> None:
    nat = NativeBuilder(OFTEN, tick=2, venue="v", symbol="s")
    book = L2Book()
    for i in range(1, 30):
        e = Event(Kind.LEVEL_SET, "v", "s", i, i, Side.BID if i % 2 else Side.ASK, 100 + (i % 2 and -1) * (i % 5), i)
        book.apply(e)
        nat.push(book, [e], offset=("p", i))
        nat.add_news(i, f"h{i}")
    state = nat.__getstate__()
    again = NativeBuilder()
    again.__setstate__(state)
    assert again.__getstate__() == state and again.offset == ("p", 29)
    assert window_difference(nat.window(), again.window()) is None
    for version in (1, 99):
        with pytest.raises(ValueError, match=f"builder state version {version}, this build reads 2 and 3"):
            again.__setstate__({**state, "version": version})
    with pytest.raises(ValueError, match="builder state"):
        again.__setstate__({**state, "core": state["core"][:-3]})


# --------------------------------------------------------------------------- the volume record in the state


def one_book(seed: int) -> Iterator[tuple[L3Book, list[Event], int]]:
    """A simulated ITCH book's messages as its builders take them: (book, the events, message index)."""
    feed = feed_class("itch")()
    result = simulate(SimConfig(n_symbols=1, duration_ns=300 * SEC, seed=seed))
    for i, m in enumerate(messages("itch", result)):
        try:
            events = feed.on_message(m.raw, 0)
        except FeedError:
            continue
        for sym, mine in by_symbol(events).items():
            if sym in feed.books:
                yield feed.books[sym], mine, i


def plain_record(v: VolumeRecord) -> tuple:
    """A volume record's fields as plain values."""
    return v.messages, v.traded, [list(p) for p in v.pending], [list(k) for k in v.known]


def version_2(state: dict[str, Any]) -> dict[str, Any]:
    """A builder state as version 2 wrote it: version 3's bytes without the volume record."""
    from orderbook.native.convert import _builder, _put_volume_record, _Writer

    w = _Writer()
    _put_volume_record(w, _builder(state)._volume)
    record = w.bytes()
    assert state["version"] == 3 and state["core"].count(record) == 1
    return {**state, "version": 2, "core": state["core"].replace(record, b"")}


def test_a_builder_state_carries_the_volume_record_both_ways_byte_for_byte() -> None:
    """Version 3: the native builder's state read by the reference (orderbook/native/convert.py) is the
    record an uninterrupted reference builder has, and writes back the same bytes; the reference's written
    and read natively, likewise; pickle and deepcopy carry it. A record no run leaves is refused by both."""
    from orderbook.native.convert import _builder, _builder_state

    ref, nat = WindowBuilder(EVERY, FeatureState(tick=100)), NativeBuilder(EVERY, None, tick=100)
    for book, events, i in itertools.islice(one_book(seed=6), 800):
        assert_same(ref.push(book, events, offset=(0, i)), nat.push(book, events, offset=(0, i)), f"message {i}")
    state = nat.__getstate__()
    v = ref._volume
    assert state["version"] == 3 and len(v.known[1]) > 500 and all(v.pending) and v.traded > 0
    assert np.isfinite(nat.window().volume_record).all()
    assert plain_record(_builder(state)._volume) == plain_record(v)
    assert _builder_state(_builder(state)) == state
    assert _builder_state(ref)["core"] == state["core"]
    again = NativeBuilder()
    again.__setstate__(_builder_state(ref))
    assert again.__getstate__() == state
    for copied in (pickle.loads(pickle.dumps(nat)), copy.deepcopy(nat)):
        assert copied.__getstate__() == state

    def refused(volume: VolumeRecord, match: str) -> None:
        bad = copy.deepcopy(ref)
        bad._volume = volume
        written = _builder_state(bad)
        with pytest.raises(ValueError, match=match):
            NativeBuilder().__setstate__(written)
        with pytest.raises(ValueError, match=match):
            _builder(written)

    over = copy.deepcopy(v)
    over.known[0] = deque([0.0] * (KEEP + 1))  # no maxlen: as a state edited on its way would have it
    refused(over, f"{KEEP + 1} known volumes")
    swapped = copy.deepcopy(v)
    swapped.pending[1] = deque(reversed(v.pending[1]))
    refused(swapped, "pending over 100 messages out of order or over")
    ended = copy.deepcopy(v)
    ended.pending[0].appendleft((v.messages - 10, 0))  # its 10 messages are over: it would be known
    refused(ended, "pending over 10 messages out of order or over")
    for x in (math.nan, math.inf, -0.5):
        mangled = copy.deepcopy(v)
        mangled.known[1][7] = x
        refused(mangled, f"(?i)a known volume of {x}")  # Rust writes NaN, Python nan
    behind = copy.deepcopy(v)
    behind.pending[0][-1] = (behind.pending[0][-1][0], v.traded + 1)  # more lots than were ever traded
    refused(behind, f"pending over 10 messages after {v.traded + 1} lots, of {v.traded} traded")
    shrinking = copy.deepcopy(v)
    shrinking.pending[1][0] = (shrinking.pending[1][0][0], v.pending[1][-1][1] + 1)
    refused(shrinking, "pending over 100 messages after")
    with pytest.raises(ValueError, match="window builder state version 1, this reads 2 and 3"):
        _builder({**state, "version": 1})


def test_a_builder_state_of_version_2_restores_with_an_empty_volume_record() -> None:
    """A snapshot from before the volume record restores on both paths (the native builder, the reference
    one through convert.py) with an empty record, and the two go on alike: NaN until 10 volumes of windows
    after the restore are known, then those alone, where an uninterrupted builder reads its older ones too.
    Everything else in the windows is the uninterrupted builder's."""
    from orderbook.native.convert import _builder, _builder_state

    cut = 400
    full = WindowBuilder(EVERY, FeatureState(tick=100))  # never restored
    before = NativeBuilder(EVERY, None, tick=100)
    after: tuple[WindowBuilder, Any] | None = None  # restored at the cut: reference, native
    nan = [0, 0]  # windows after the restore whose record is NaN: over 10 messages, over 100
    differ = compared = 0
    for book, events, i in itertools.islice(one_book(seed=6), 1500):
        offset = (0, i)
        want = full.push(book, events, offset=offset)
        if after is None:
            assert_same(want, before.push(book, events, offset=offset), f"message {i}")
            if i >= cut:
                state = version_2(before.__getstate__())
                after = ref, nat = _builder(state), NativeBuilder()
                nat.__setstate__(state)
                assert ref._volume.messages == ref._volume.traded == 0
                assert not any(ref._volume.pending) and not any(ref._volume.known)
                assert nat.__getstate__() == _builder_state(ref)  # version 3, the record empty
                assert np.isfinite(full.window().volume_record).all()
            continue
        ref, nat = after
        got = ref.push(book, events, offset=offset)
        assert_same(got, nat.push(book, events, offset=offset), f"message {i} (restored)")
        assert_same(ref.window(), nat.window(), f"message {i} window() (restored)")
        assert want is not None and got is not None
        assert window_difference(want, dataclasses.replace(got, volume_record=want.volume_record)) is None
        nan = [n + np.isnan(got.volume_record[k]).all() for k, n in enumerate(nan)]
        differ += not np.array_equal(got.volume_record, want.volume_record, equal_nan=True)
        compared += 1
    # a window a message: 10 volumes are known 10 + 9 windows after the restore, 100 + 9 for the longer horizon
    assert compared > 400 and nan == [19, 109] and differ > 109
    assert nat.__getstate__() == _builder_state(ref)
