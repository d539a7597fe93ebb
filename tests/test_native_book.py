"""The native books against the reference `orderbook.book` books, on hypothesis streams.

Streams mix valid events with invalid ones (unknown and duplicate ids, sizes <= 0, a missing side,
an over-fill, kinds the book type refuses). The reference applies them one by one; the native book
takes them as batches, which stop at the first bad event with its `index`. After every event the
touch (read through `marks`) must be the reference's, errors the same class, and at the end the
levels, the orders and their FIFO queues the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderbook import native
from orderbook.book import L2Book, L3Book
from orderbook.errors import BookError
from orderbook.events import Event, Kind, Side

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRICES = st.integers(95, 105)  # a narrow band: shared levels, touching and crossing sides
SIDES = st.sampled_from([Side.BID, Side.ASK, Side.BID, Side.ASK, Side.NONE])
L3_KINDS = [Kind.ADD] * 5 + [Kind.CANCEL, Kind.EXECUTE, Kind.DELETE, Kind.REPLACE, Kind.CHANGE]
L3_KINDS += [Kind.CLEAR, Kind.TRADE, Kind.LEVEL_SET]
L2_KINDS = [Kind.LEVEL_SET] * 8 + [Kind.CLEAR, Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END, Kind.TRADE, Kind.ADD]


def events(draw: st.DrawFn, kinds: list[Kind], n: int) -> list[Event]:
    out = []
    for seq in range(1, n + 1):
        out.append(
            Event(
                draw(st.sampled_from(kinds)),
                "test",
                "XYZ",
                seq,
                seq,
                draw(SIDES),
                draw(PRICES),
                draw(st.integers(-2, 40)),
                draw(st.integers(1, 12)),  # few ids: repeats, unknowns and duplicates are common
                draw(st.integers(1, 12)),
            )
        )
    return out


@st.composite
def l3_streams(draw: st.DrawFn) -> list[Event]:
    return events(draw, L3_KINDS, draw(st.integers(1, 120)))


@st.composite
def l2_streams(draw: st.DrawFn) -> list[Event]:
    return events(draw, L2_KINDS, draw(st.integers(1, 120)))


def touch(book: L2Book | L3Book) -> list[int]:
    bid, ask = book.best_bid() or (0, 0), book.best_ask() or (0, 0)
    return [*bid, *ask]


def columns(evs: list[Event], l3: bool) -> list[np.ndarray]:
    kinds = np.array([int(e.kind) for e in evs], np.int8)
    sides = np.array([int(e.side) for e in evs], np.int8)
    prices = np.array([e.price for e in evs], np.int64)
    sizes = np.array([e.size for e in evs], np.int64)
    if not l3:
        return [kinds, sides, prices, sizes]
    ids = np.array([e.order_id for e in evs], np.uint64)
    new_ids = np.array([e.new_order_id for e in evs], np.uint64)
    return [kinds, ids, sides, prices, sizes, new_ids]


def run_both(ref: Any, nat: Any, evs: list[Event], l3: bool, cut: int) -> None:
    """The reference event by event; the native book in batches of `cut`, each resumed after a refusal."""
    want_tops, want_errors = [], []
    for i, e in enumerate(evs):
        try:
            ref.apply(e)
        except BookError as err:
            want_errors.append((i, type(err)))
        want_tops.append(touch(ref))
    got_tops: dict[int, list[int]] = {}  # event index -> the touch after it, where the native book read it
    got_errors = []
    start = 0
    while start < len(evs):
        chunk = evs[start : start + cut]
        try:
            tops = nat.apply(*columns(chunk, l3), np.arange(1, len(chunk) + 1, dtype=np.int64))
            got_tops |= dict(enumerate(tops.tolist(), start))
            start += len(chunk)
        except BookError as err:  # the events before `index` stay applied: go on after it
            start += err.index
            got_errors.append((start, type(err)))
            got_tops[start] = touch(nat)
            start += 1
    assert got_errors == want_errors
    assert got_tops == {i: want_tops[i] for i in got_tops}
    assert nat.to_dict() == ref.to_dict()
    assert nat.crossed() == ref.crossed()
    assert nat.top(3) == ref.top(3)


@SETTINGS
@given(l3_streams(), st.integers(1, 50))
def test_native_l3_book_equals_reference(evs: list[Event], cut: int) -> None:
    ref, nat = L3Book("test", "XYZ"), native.L3Book("test", "XYZ")
    run_both(ref, nat, evs, l3=True, cut=cut)
    assert nat.orders() == {i: (int(o.side), o.price, o.size) for i, o in ref.orders.items()}
    for side, levels in ((Side.BID, ref.bids), (Side.ASK, ref.asks)):
        for price in levels:
            assert nat.queue(int(side), price) == ref.queue(side, price)
    for oid in ref.orders:
        assert nat.queue_position(oid) == ref.queue_position(oid)


@SETTINGS
@given(l2_streams(), st.integers(1, 50))
def test_native_l2_book_equals_reference(evs: list[Event], cut: int) -> None:
    run_both(L2Book("test", "XYZ"), native.L2Book("test", "XYZ"), evs, l3=False, cut=cut)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([1, -1]), PRICES, st.integers(0, 30)), max_size=80))
def test_native_apply_levels_reads_the_touch_after_each_mark(sets: list[tuple[int, int, int]]) -> None:
    ref, nat = L2Book(), native.L2Book()
    want = [touch(ref)]
    for side, price, size in sets:
        ref.set_level(Side(side), price, size)
        want.append(touch(ref))
    sides = np.array([s for s, _, _ in sets], np.int8)
    prices, sizes = np.array([p for _, p, _ in sets], np.int64), np.array([q for _, _, q in sets], np.int64)
    tops = nat.apply_levels(sides, prices, sizes, np.arange(len(sets) + 1, dtype=np.int64))
    assert tops.tolist() == want
    assert nat.to_dict() == ref.to_dict()
    assert [nat.levels(s)[0].tolist() for s in (1, -1)] == [list(ref.bids), list(ref.asks)]


def test_native_book_errors_name_the_event_and_keep_what_came_before() -> None:
    book = native.L2Book("binance", "BTCUSDT")
    sides, prices, sizes = np.array([1, 0, 1], np.int8), np.array([5, 6, 7], np.int64), np.array([1, 1, 1], np.int64)
    with pytest.raises(BookError, match="no side") as err:
        book.apply_levels(sides, prices, sizes)
    assert err.value.index == 1 and err.value.symbol == "BTCUSDT"
    assert book.to_dict() == {"bids": {5: 1}, "asks": {}}
    with pytest.raises(ValueError, match="marks"):
        book.apply_levels(sides[:1], prices[:1], sizes[:1], np.array([2], np.int64))


def test_native_path_is_built_and_mt_native_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.available()  # `pip install -e .` builds it: no silent fall-back to the slow path
    monkeypatch.delenv("MT_NATIVE", raising=False)  # the default, whatever the suite runs under
    assert native.enabled() and native.describe().startswith("native path")
    monkeypatch.setenv("MT_NATIVE", "0")
    assert not native.enabled() and "MT_NATIVE=0" in native.describe()
