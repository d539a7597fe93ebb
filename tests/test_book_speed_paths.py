"""The shortcuts that make the books fast must not show.

`bids` is a `DescendingSortedDict` (ascending store, mirrored positional API) in place of
`SortedDict(operator.neg)`: every ordered read must match what the key-function SortedDict
gave. The level writes bypass SortedDict's own __setitem__/pop, so the sorted key list and
the dict must stay in step (`SortedDict._check`), and `apply` (which inlines `set_level`)
must do exactly what `set_level` does, errors included.
"""

from __future__ import annotations

import operator
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from orderbook.book import DescendingSortedDict, L2Book, L3Book
from orderbook.errors import BookError
from orderbook.events import Event, Kind, Side

KEYS = st.integers(-20, 20)
# (op, key or index, value): set a key, pop a key, popitem at a position
OPS = st.lists(
    st.tuples(st.sampled_from(["set", "set", "set", "pop", "popitem"]), KEYS, st.integers(1, 9)), max_size=60
)


def popitem_both(ours: DescendingSortedDict, ref: SortedDict, index: int) -> None:
    assert ours.popitem(index) == ref.popitem(index)


@settings(max_examples=150, deadline=None)
@given(OPS, st.integers(-25, 25), st.integers(-25, 25))
def test_descending_dict_reads_like_a_negated_key_sorted_dict(ops: list, a: int, b: int) -> None:
    ours, ref = DescendingSortedDict(), SortedDict(operator.neg)
    for op, key, value in ops:
        if op == "set":
            ours[key] = ref[key] = value
        elif op == "pop":
            assert ours.pop(key, None) == ref.pop(key, None)
        elif ref:
            popitem_both(ours, ref, key % len(ref) - (len(ref) if value % 2 else 0))  # from either end
    ours._check()
    assert list(ours) == list(ref) and list(reversed(ours)) == list(reversed(ref))
    assert list(ours.items()) == list(ref.items()) and list(ours.values()) == list(ref.values())
    assert ours == ref and dict(ours) == dict(ref) and len(ours) == len(ref)
    for i in (a, b):
        for view, ref_view in ((ours.keys(), ref.keys()), (ours.items(), ref.items()), (ours.values(), ref.values())):
            if -len(ref) <= i < len(ref):
                assert view[i] == ref_view[i]
            else:
                with pytest.raises(IndexError):
                    view[i]
            assert view[i:] == ref_view[i:] and view[:i] == ref_view[:i] and view[::-1] == ref_view[::-1]
        if -len(ref) <= i < len(ref):
            assert ours.peekitem(i) == ref.peekitem(i)
        assert ours.bisect_left(i) == ref.bisect_left(i) and ours.bisect_right(i) == ref.bisect_right(i)
        assert ours.bisect(i) == ref.bisect(i)
        if i in ref:
            assert ours.index(i) == ref.index(i)
    for inclusive in ((True, True), (False, True), (True, False), (False, False)):
        for reverse in (False, True):
            assert list(ours.irange(a, b, inclusive, reverse)) == list(ref.irange(a, b, inclusive, reverse))
            assert list(ours.irange(None, b, inclusive, reverse)) == list(ref.irange(None, b, inclusive, reverse))
    for reverse in (False, True):
        assert list(ours.islice(a, b, reverse)) == list(ref.islice(a, b, reverse))
        assert list(ours.islice(None, b, reverse)) == list(ref.islice(None, b, reverse))


def test_descending_dict_best_first_at_both_ends_and_errors_like_sorted_dict() -> None:
    d = DescendingSortedDict({100: 1, 102: 2, 101: 3})
    assert isinstance(d, SortedDict)
    assert d.peekitem(0) == (102, 2) and d.peekitem() == (100, 1)  # default: the last (worst)
    assert d.index(101) == 1 and d.keys().index(101) == 1
    with pytest.raises(ValueError):
        d.index(101, 2)
    with pytest.raises(ValueError):
        d.index(99)
    with pytest.raises(IndexError):
        d.peekitem(3)
    assert d.popitem(-1) == (100, 1) and d.popitem(0) == (102, 2)
    d.popitem()
    with pytest.raises(KeyError):
        d.popitem()
    assert repr(DescendingSortedDict({1: 2, 3: 4})) == "DescendingSortedDict({3: 4, 1: 2})"


def test_descending_dict_copies_pickles_and_deletes_by_position() -> None:
    d = DescendingSortedDict({p: p * 10 for p in range(10)})
    for clone in (d.copy(), pickle.loads(pickle.dumps(d))):
        assert type(clone) is DescendingSortedDict and list(clone.items()) == list(d.items())
        assert clone.peekitem(0) == (9, 90)
    del d.keys()[0]  # the best
    del d.items()[-1]  # the worst
    del d.values()[1:3]  # second and third best
    d._check()
    assert list(d) == [8, 5, 4, 3, 2, 1]


def random_l2_events(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        side = rng.choice((Side.BID, Side.ASK))
        price = 1000 + (-1 if side == Side.BID else 1) * int(rng.expovariate(1 / 8))
        size = 0 if rng.random() < 0.3 else rng.randrange(1, 100)
        events.append(Event(Kind.LEVEL_SET, "t", "X", i, i, side, price, size))
    return events


def test_l2_apply_and_set_level_build_the_same_consistent_book() -> None:
    via_apply, via_set = L2Book(), L2Book()
    model: dict[Side, dict[int, int]] = {Side.BID: {}, Side.ASK: {}}
    for e in random_l2_events(3000, seed=1):
        via_apply.apply(e)
        via_set.set_level(e.side, e.price, e.size, e.seq)
        if e.size:
            model[e.side][e.price] = e.size
        else:
            model[e.side].pop(e.price, None)
    for book in (via_apply, via_set):
        book.bids._check()
        book.asks._check()
        assert list(book.bids.items()) == sorted(model[Side.BID].items(), reverse=True)
        assert list(book.asks.items()) == sorted(model[Side.ASK].items())
        assert book.best_bid() == max(model[Side.BID].items()) and book.best_ask() == min(model[Side.ASK].items())


@pytest.mark.parametrize("apply", [True, False], ids=["apply", "set_level"])
def test_l2_bad_level_raises_with_seq_and_leaves_the_book(apply: bool) -> None:
    book = L2Book("t", "X")
    book.set_level(Side.BID, 100, 5)
    before = book.to_dict()
    for side, size, message in ((Side.NONE, 5, "no side"), (Side.BID, -1, "negative size"), (Side.NONE, -1, "no side")):
        with pytest.raises(BookError, match=message) as err:
            if apply:
                book.apply(Event(Kind.LEVEL_SET, "t", "X", 0, 42, side, 100, size))
            else:
                book.set_level(side, 100, size, 42)
        assert err.value.seq == 42
    assert book.to_dict() == before and book.best_bid() == (100, 5)


def test_l2_removing_an_absent_level_is_a_no_op_and_reopening_works() -> None:
    book = L2Book()
    book.set_level(Side.ASK, 101, 0)
    assert not book.asks and book.best_ask() is None
    book.set_level(Side.ASK, 101, 3)
    book.set_level(Side.ASK, 101, 0)
    book.set_level(Side.ASK, 101, 4)
    book.asks._check()
    assert book.best_ask() == (101, 4) and len(book.asks) == 1


def test_l3_level_opened_and_closed_by_orders_keeps_sorted_dict_consistent() -> None:
    rng = random.Random(3)
    book, live, next_id = L3Book(), [], 0
    for _ in range(3000):
        if not live or rng.random() < 0.55:
            next_id += 1
            side = rng.choice((Side.BID, Side.ASK))
            price = 1000 + (-1 if side == Side.BID else 1) * rng.randrange(6)
            book.apply(Event(Kind.ADD, "t", "X", 0, next_id, side, price, rng.randrange(1, 50), next_id))
            live.append(next_id)
        else:
            oid = live.pop(rng.randrange(len(live)))
            size = book.orders[oid].size
            book.apply(
                Event(Kind.EXECUTE if rng.random() < 0.5 else Kind.DELETE, "t", "X", 0, 0, size=size, order_id=oid)
            )
    for side, levels in ((Side.BID, book.bids), (Side.ASK, book.asks)):
        levels._check()
        totals: dict[int, int] = {}
        for o in book.orders.values():
            if o.side == side:
                totals[o.price] = totals.get(o.price, 0) + o.size
        assert dict(levels) == totals
        assert all(book.queue(side, p) for p in levels) and sum(len(book.queue(side, p)) for p in levels) == sum(
            1 for o in book.orders.values() if o.side == side
        )


def test_l3_clear_empties_queues_so_prices_reopen_cleanly() -> None:
    book = L3Book()
    book.add(1, Side.BID, 100, 5)
    book.apply(Event(Kind.CLEAR, "t", "X", 0, 0))
    assert book.queue(Side.BID, 100) == [] and not book.bids and not book.orders
    book.add(1, Side.BID, 100, 7)
    book.bids._check()
    assert book.queue(Side.BID, 100) == [(1, 7)] and book.best_bid() == (100, 7) and book.queue_position(1) == 0


def test_l3_add_on_a_missing_side_raises_and_adds_nothing() -> None:
    book = L3Book()
    with pytest.raises(BookError, match="no side") as err:
        book.add(1, Side.NONE, 100, 5, seq=9)
    assert err.value.seq == 9 and not book.orders and not book.bids and not book.asks
