"""Property tests: random valid event streams give the same book as a naive reference, at every step.

`tests/reference_book.py` recomputes every read from scratch (sorted() and sum() over plain
dicts), so agreement after each event checks the incremental bookkeeping of `L2Book` and
`L3Book`: level totals, best-first order, top-N, depth within k ticks, FIFO queues, queue
positions and the LOBSTER row. Invalid operations must raise the typed errors of
`orderbook.errors` and leave the book exactly as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_book import ReferenceBook

from orderbook.book import L2Book, L3Book
from orderbook.errors import BookError, DuplicateOrder, UnknownOrder
from orderbook.events import Event, Kind, OrderId, Side
from orderbook.venues.lobster import orderbook_row

VENUE, SYMBOL = "test", "XYZ"
SIDES = (Side.BID, Side.ASK)
# A narrow price band so that orders share levels and the two sides often touch or cross
# (the books store crossed states as given; detecting them is the feed's job).
PRICES = st.integers(95, 105)
SIZES = st.integers(1, 50)
BAD_SIZES = st.integers(-5, 0)
ANY_ID = st.one_of(st.integers(1, 300), st.integers(1, 300).map(lambda n: f"o{n}"))  # ITCH ints, Coinbase strings
STEPS = st.integers(1, 50)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

L3_KINDS = [Kind.ADD] * 6 + [Kind.CANCEL, Kind.EXECUTE, Kind.DELETE, Kind.REPLACE, Kind.CHANGE, Kind.CLEAR]
L2_KINDS = [Kind.LEVEL_SET] * 8 + [Kind.CLEAR, Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END, Kind.TRADE, Kind.EXECUTE]


def event(kind: Kind, seq: int, **fields: Any) -> Event:
    return Event(kind, VENUE, SYMBOL, ts=1_000 * seq, seq=seq, **fields)


def fresh_id(data: st.DataObject, ref: ReferenceBook) -> OrderId:
    """An id not resting now (possibly one that rested earlier: ids may come back after a delete)."""
    return data.draw(ANY_ID.filter(lambda i: i not in ref.orders))


def live_id(data: st.DataObject, ref: ReferenceBook, min_size: int = 1) -> OrderId | None:
    candidates = [i for i, (_, _, size) in ref.orders.items() if size >= min_size]
    return data.draw(st.sampled_from(candidates)) if candidates else None


def draw_l3_event(data: st.DataObject, ref: ReferenceBook, seq: int) -> Event:
    """One valid order-by-order event for the book as the reference holds it."""
    kind = data.draw(st.sampled_from(L3_KINDS))
    if kind == Kind.CLEAR:
        return event(kind, seq)
    # partial cancels take strictly less than the order has; executions may fill it
    oid = live_id(data, ref, min_size=2 if kind == Kind.CANCEL else 1)
    if kind == Kind.ADD or oid is None:
        side = data.draw(st.sampled_from(SIDES))
        return event(
            Kind.ADD, seq, side=side, price=data.draw(PRICES), size=data.draw(SIZES), order_id=fresh_id(data, ref)
        )
    size = ref.orders[oid][2]
    if kind == Kind.CANCEL:
        return event(kind, seq, order_id=oid, size=data.draw(st.integers(1, size - 1)))
    if kind == Kind.EXECUTE:
        return event(kind, seq, order_id=oid, size=data.draw(st.integers(1, size)))
    if kind == Kind.DELETE:
        return event(kind, seq, order_id=oid)
    if kind == Kind.CHANGE:
        return event(kind, seq, order_id=oid, size=data.draw(SIZES))
    new_id = oid if data.draw(st.integers(0, 4)) == 0 else fresh_id(data, ref)  # venues may keep the id
    return event(kind, seq, order_id=oid, new_order_id=new_id, price=data.draw(PRICES), size=data.draw(SIZES))


def draw_l2_event(data: st.DataObject, seq: int) -> Event:
    kind = data.draw(st.sampled_from(L2_KINDS))
    if kind != Kind.LEVEL_SET:
        return event(kind, seq)
    size = data.draw(st.one_of(st.just(0), SIZES))  # 0 removes the level, present or not
    return event(kind, seq, side=data.draw(st.sampled_from(SIDES)), price=data.draw(PRICES), size=size)


def assert_same_levels(book: L2Book | L3Book, ref: ReferenceBook) -> None:
    bids, asks = ref.levels(Side.BID), ref.levels(Side.ASK)
    assert list(book.bids.items()) == bids and list(book.asks.items()) == asks  # best first
    assert book.to_dict() == {"bids": dict(bids), "asks": dict(asks)}
    assert book.best_bid() == ref.best(Side.BID) and book.best_ask() == ref.best(Side.ASK)
    for n in (1, 3, 10):
        assert book.top(n) == ref.top(n)
    for side in SIDES:
        for k in (0, 1, 2, 5, 20):
            assert book.depth(side, k) == ref.depth(side, k)
    assert orderbook_row(book, 4) == ref.lobster_row(4)
    both = bids and asks
    assert book.spread() == (asks[0][0] - bids[0][0] if both else None)
    assert book.mid2() == (asks[0][0] + bids[0][0] if both else None)
    assert book.crossed() == bool(both and bids[0][0] >= asks[0][0])


def assert_same_l3(book: L3Book, ref: ReferenceBook) -> None:
    assert_same_levels(book, ref)
    assert {i: [o.side, o.price, o.size] for i, o in book.orders.items()} == ref.orders
    for side in SIDES:
        for price in range(90, 111):  # every level in the band, empty ones included
            assert book.queue(side, price) == ref.queue(side, price)
    for oid in ref.orders:
        assert book.queue_position(oid) == ref.queue_position(oid)


def snapshot(book: L2Book | L3Book) -> dict[str, Any]:
    """Everything observable about a book, in its order, to compare before and after a failed call."""
    state: dict[str, Any] = {"bids": list(book.bids.items()), "asks": list(book.asks.items())}
    if isinstance(book, L3Book):
        state["orders"] = [(i, o.side, o.price, o.size) for i, o in book.orders.items()]
        state["queues"] = {(s, p): book.queue(s, p) for s in SIDES for p in range(90, 111)}
        state["positions"] = {i: book.queue_position(i) for i in book.orders}
    return state


@SETTINGS
@given(st.data())
def test_l3_book_matches_the_naive_reference_after_every_event(data: st.DataObject) -> None:
    book, ref = L3Book(VENUE, SYMBOL), ReferenceBook()
    for seq in range(1, data.draw(STEPS) + 1):
        e = draw_l3_event(data, ref, seq)
        book.apply(e)
        ref.apply(e)
        assert_same_l3(book, ref)


@SETTINGS
@given(st.data())
def test_l2_book_matches_the_naive_reference_after_every_level_set(data: st.DataObject) -> None:
    book, ref = L2Book(VENUE, SYMBOL), ReferenceBook(order_by_order=False)
    for seq in range(1, data.draw(STEPS) + 1):
        e = draw_l2_event(data, seq)
        book.apply(e)
        ref.apply(e)
        assert_same_levels(book, ref)


def draw_invalid_l3_event(data: st.DataObject, ref: ReferenceBook, seq: int) -> tuple[Event, type[BookError]]:
    """One event that no valid feed sends for this book, and the exact error it must raise."""
    unknown = fresh_id(data, ref)
    oid = live_id(data, ref)
    price, size, bad = data.draw(PRICES), data.draw(SIZES), data.draw(BAD_SIZES)
    cases: list[tuple[Event, type[BookError]]] = [
        (event(Kind.ADD, seq, side=Side.BID, price=price, size=bad, order_id=unknown), BookError),
        (event(Kind.ADD, seq, side=Side.NONE, price=price, size=size, order_id=unknown), BookError),
        (event(Kind.CANCEL, seq, order_id=unknown, size=1), UnknownOrder),
        (event(Kind.EXECUTE, seq, order_id=unknown, size=1), UnknownOrder),
        (event(Kind.DELETE, seq, order_id=unknown), UnknownOrder),
        (event(Kind.CHANGE, seq, order_id=unknown, size=size), UnknownOrder),
        (event(Kind.REPLACE, seq, order_id=unknown, new_order_id=unknown, price=price, size=size), UnknownOrder),
        (event(Kind.LEVEL_SET, seq, side=Side.BID, price=price, size=size), BookError),
    ]
    if oid is not None:
        other = live_id(data, ref)
        new_id = fresh_id(data, ref)
        cases += [
            (event(Kind.ADD, seq, side=Side.ASK, price=price, size=size, order_id=oid), DuplicateOrder),
            (event(Kind.CANCEL, seq, order_id=oid, size=bad), BookError),
            (event(Kind.EXECUTE, seq, order_id=oid, size=bad), BookError),
            (event(Kind.REPLACE, seq, order_id=oid, new_order_id=new_id, price=price, size=bad), BookError),
        ]
        if other != oid:
            cases.append(
                (event(Kind.REPLACE, seq, order_id=oid, new_order_id=other, price=price, size=size), DuplicateOrder)
            )
    return data.draw(st.sampled_from(cases))


def assert_rejected_untouched(book: L2Book | L3Book, e: Event, expected: type[BookError]) -> None:
    before = snapshot(book)
    with pytest.raises(BookError) as err:
        book.apply(e)
    assert type(err.value) is expected, f"{e.kind.name} raised {type(err.value).__name__}: {err.value}"
    assert (err.value.venue, err.value.symbol) == (VENUE, SYMBOL)
    assert err.value.seq == e.seq
    assert snapshot(book) == before


@SETTINGS
@given(st.data())
def test_invalid_l3_events_raise_typed_errors_and_leave_the_book_as_it_was(data: st.DataObject) -> None:
    book, ref = L3Book(VENUE, SYMBOL), ReferenceBook()
    for seq in range(1, data.draw(STEPS) + 1):
        if data.draw(st.booleans()):
            bad, expected = draw_invalid_l3_event(data, ref, seq)
            assert_rejected_untouched(book, bad, expected)
        else:
            e = draw_l3_event(data, ref, seq)
            book.apply(e)
            ref.apply(e)
        assert_same_l3(book, ref)  # and the book stays usable after a rejection


@SETTINGS
@given(st.data())
def test_invalid_l2_events_raise_typed_errors_and_leave_the_book_as_it_was(data: st.DataObject) -> None:
    book, ref = L2Book(VENUE, SYMBOL), ReferenceBook(order_by_order=False)
    l3_only = st.sampled_from([Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.REPLACE, Kind.CHANGE])
    for seq in range(1, data.draw(STEPS) + 1):
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            bad = event(
                Kind.LEVEL_SET, seq, side=Side.ASK, price=data.draw(PRICES), size=data.draw(st.integers(-5, -1))
            )  # 0 removes: valid
        elif choice == 1:
            bad = event(Kind.LEVEL_SET, seq, side=Side.NONE, price=data.draw(PRICES), size=data.draw(SIZES))
        elif choice == 2:
            bad = event(data.draw(l3_only), seq, side=Side.BID, price=data.draw(PRICES), size=1, order_id=1)
        if choice < 3:
            assert_rejected_untouched(book, bad, BookError)
        else:
            e = draw_l2_event(data, seq)
            book.apply(e)
            ref.apply(e)
        assert_same_levels(book, ref)


def test_queue_position_of_an_unknown_order_raises_unknown_order() -> None:
    book = L3Book(VENUE, SYMBOL)
    book.add(1, Side.BID, 100, 5)
    with pytest.raises(UnknownOrder):
        book.queue_position(2)
    book.delete(1)
    with pytest.raises(UnknownOrder):
        book.queue_position(1)


def test_change_to_a_negative_size_is_rejected_and_leaves_the_book_as_it_was() -> None:
    book = L3Book(VENUE, SYMBOL)
    book.add(1, Side.BID, 100, 5)
    assert_rejected_untouched(book, event(Kind.CHANGE, 2, order_id=1, size=-3), BookError)
