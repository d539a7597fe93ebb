import pytest

from orderbook.book import L2Book, L3Book
from orderbook.errors import BookError, DuplicateOrder, UnknownOrder
from orderbook.events import Event, Kind, Side


def test_l2_levels_best_first_and_zero_removes():
    b = L2Book("t", "X")
    b.set_level(Side.BID, 100, 5)
    b.set_level(Side.BID, 101, 2)
    b.set_level(Side.ASK, 103, 7)
    b.set_level(Side.ASK, 102, 1)
    assert b.best_bid() == (101, 2) and b.best_ask() == (102, 1)
    assert b.top(5) == ([(101, 2), (100, 5)], [(102, 1), (103, 7)])
    b.set_level(Side.BID, 101, 0)
    assert b.best_bid() == (100, 5)
    assert b.spread() == 2 and b.mid2() == 202


def test_depth_within_k_ticks_counts_from_the_best():
    b = L2Book()
    for p, s in [(100, 1), (99, 2), (97, 4)]:
        b.set_level(Side.BID, p, s)
    assert b.depth(Side.BID, 0) == 1
    assert b.depth(Side.BID, 1) == 3
    assert b.depth(Side.BID, 3) == 7


def test_crossed_book_is_detected():
    b = L2Book()
    b.set_level(Side.BID, 105, 1)
    b.set_level(Side.ASK, 104, 1)
    assert b.crossed()


def test_l3_fifo_queue_position_and_partial_fills():
    b = L3Book("t", "X")
    b.add(1, Side.BID, 100, 10)
    b.add(2, Side.BID, 100, 5)
    b.add(3, Side.BID, 100, 7)
    assert b.queue_position(3) == 15
    b.reduce(1, 4)
    assert b.queue_position(3) == 11 and b.bids[100] == 18
    b.delete(2)
    assert b.queue(Side.BID, 100) == [(1, 6), (3, 7)]
    b.replace(1, 9, 100, 6)  # loses priority
    assert b.queue(Side.BID, 100) == [(3, 7), (9, 6)]
    b.change(3, 2)  # keeps priority
    assert b.queue(Side.BID, 100) == [(3, 2), (9, 6)] and b.bids[100] == 8


def test_l3_errors_are_typed_and_leave_the_book_unchanged():
    b = L3Book("itch", "AAPL")
    b.add(1, Side.ASK, 100, 10)
    with pytest.raises(UnknownOrder) as err:
        b.delete(2, seq=7)
    assert err.value.symbol == "AAPL" and err.value.seq == 7 and "itch" in str(err.value)
    with pytest.raises(DuplicateOrder):
        b.add(1, Side.ASK, 101, 1)
    assert b.to_dict() == {"bids": {}, "asks": {100: 10}}


def test_l3_over_reduction_removes_the_order_and_reports_it():
    b = L3Book()
    b.add(1, Side.ASK, 100, 10)
    with pytest.raises(BookError):
        b.reduce(1, 12)
    assert not b.asks and not b.orders


def test_apply_dispatches_on_event_kind():
    b = L3Book("t", "X")
    b.apply(Event(Kind.ADD, "t", "X", 0, 1, Side.BID, 100, 5, order_id=1))
    b.apply(Event(Kind.EXECUTE, "t", "X", 0, 2, Side.BID, 100, 2, order_id=1))
    assert b.bids[100] == 3
    with pytest.raises(BookError):
        L2Book().apply(Event(Kind.ADD, "t", "X", 0, 1, Side.BID, 100, 5, order_id=1))
