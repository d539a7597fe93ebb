import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook.book import L2Book, L3Book
from orderbook.events import FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, Event, Kind, Side
from orderbook.features import (
    FEATURE_NAMES,
    FeatureState,
    LevelFlow,
    MultiLevelOFI,
    TradeClassifier,
    depth_levels,
    feature_names,
    infer_tick,
    microprice,
    mid,
    queue_imbalance,
    spread_ticks,
)

SEC = 1_000_000_000


def l2(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> L2Book:
    b = L2Book("t", "X")
    for p, q in bids:
        b.set_level(Side.BID, p, q)
    for p, q in asks:
        b.set_level(Side.ASK, p, q)
    return b


def ev(kind: Kind, ts: int, side: Side = Side.NONE, price: int = 0, size: int = 0, **kw) -> Event:
    return Event(kind, "t", "X", ts, kw.pop("seq", 0), side, price, size, **kw)


def col(row: np.ndarray, name: str, names: tuple[str, ...] = FEATURE_NAMES) -> float:
    return float(row[names.index(name)])


# ---------------------------------------------------------------- one book


def test_book_features_match_hand_computed_values():
    b = l2([(1000, 2), (990, 3), (980, 5)], [(1020, 6), (1030, 1)])
    assert mid(b) == 1010.0
    assert spread_ticks(b, tick=10) == 2.0
    # (P_b Q_a + P_a Q_b) / (Q_a + Q_b) = (1000*6 + 1020*2) / 8
    assert microprice(b) == pytest.approx(1005.0)
    assert queue_imbalance(b) == pytest.approx((2 - 6) / 8)
    assert depth_levels(b, Side.BID, 1) == 2
    assert depth_levels(b, Side.BID, 2) == 5
    assert depth_levels(b, Side.BID, 10) == 10  # thinner than 10 levels: all of it
    assert depth_levels(b, Side.ASK, 5) == 7


def test_one_sided_and_empty_books_have_no_mid_but_a_queue_imbalance_where_a_side_exists():
    bid_only = l2([(100, 4)], [])
    assert mid(bid_only) is None and spread_ticks(bid_only) is None and microprice(bid_only) is None
    assert queue_imbalance(bid_only) == 1.0
    assert queue_imbalance(l2([], [(101, 1)])) == -1.0
    assert queue_imbalance(L2Book()) is None


@settings(max_examples=60, deadline=None)
@given(
    pb=st.integers(1, 10_000),
    gap=st.integers(1, 50),
    qb=st.integers(1, 10**9),
    qa=st.integers(1, 10**9),
)
def test_microprice_lies_between_bid_and_ask_and_imbalance_in_bounds(pb, gap, qb, qa):
    b = l2([(pb, qb)], [(pb + gap, qa)])
    assert pb <= microprice(b) <= pb + gap
    assert -1.0 <= queue_imbalance(b) <= 1.0


def test_infer_tick_is_the_gcd_of_price_differences_clipped():
    assert infer_tick([1000, 1025, 1100, 1050]) == 25
    assert infer_tick([1000, 1025, 1100, 1050], max_tick=10) == 10
    assert infer_tick([7]) == 1  # nothing to go on
    assert infer_tick([]) == 1


# ---------------------------------------------------------------- OFI (Cont, Kukanov & Stoikov 2014)

ASKS = [(102, 4)]
BIDS = [(100, 5)]


@pytest.mark.parametrize(
    ("bids", "asks", "expected"),
    [
        ([(101, 3)], ASKS, 3),  # bid price up: + q_b(n)
        ([(99, 7)], ASKS, -5),  # bid price down: - q_b(n-1)
        ([(100, 8)], ASKS, 3),  # bid same price: q_b(n) - q_b(n-1)
        ([(100, 1)], ASKS, -4),
        (BIDS, [(101, 6)], -6),  # ask price down: - q_a(n)
        (BIDS, [(103, 9)], 4),  # ask price up: + q_a(n-1)
        (BIDS, [(102, 1)], 3),  # ask same price: - q_a(n) + q_a(n-1)
        (BIDS, [(102, 10)], -6),
        ([(101, 3)], [(101, 2)], 3 - 2),  # both sides move in one step
    ],
)
def test_ofi_cont_kukanov_stoikov_cases(bids, asks, expected):
    ofi = MultiLevelOFI(levels=1)
    assert ofi.update(BIDS, ASKS) == [0]  # the first snapshot is the baseline
    assert ofi.update(bids, asks) == [expected]


def test_ofi_per_level_and_accumulated_over_an_interval():
    ofi = MultiLevelOFI(levels=3)
    ofi.update([(100, 5), (99, 2)], [(101, 4), (102, 1)])
    # level 2 bid grows by 3, level 3 bid appears with 6, level 2 ask vanishes
    assert ofi.update([(100, 5), (99, 5), (98, 6)], [(101, 4)]) == [0, 3 + 1, 6]
    assert ofi.update([(100, 6), (99, 5), (98, 6)], [(101, 4)]) == [1, 0, 0]
    assert ofi.take() == [1, 4, 6]
    assert ofi.cumulative == [0, 0, 0]


def test_ofi_reset_baseline_makes_the_next_snapshot_a_fresh_start():
    ofi = MultiLevelOFI(levels=1)
    ofi.update(BIDS, ASKS)
    ofi.reset_baseline()
    assert ofi.update([(50, 9)], [(60, 9)]) == [0]


def test_ofi_column_is_normalized_by_the_average_level_depth():
    fs = FeatureState(ofi_levels=1, depth_at=(1,))
    names = fs.names
    b = l2([(100, 4)], [(101, 4)])
    fs.update(b, [ev(Kind.LEVEL_SET, SEC, Side.BID, 100, 4)])
    b.set_level(Side.BID, 100, 8)
    row = fs.update(b, [ev(Kind.LEVEL_SET, SEC, Side.BID, 100, 8)])  # same ts: no decay
    # e = 8 - 4 = 4, over the depth average (4 + 4)/2 = 4 carried from the first row
    assert col(row, "ofi_1", names) == pytest.approx(1.0)


# ---------------------------------------------------------------- trades


def test_trade_sign_prefers_aggressor_flags():
    tc = TradeClassifier()
    assert tc.sign(ev(Kind.TRADE, 1, price=90, size=1, flags=FLAG_AGGRESSOR_BID), 200) == 1
    assert tc.sign(ev(Kind.TRADE, 1, price=110, size=1, flags=FLAG_AGGRESSOR_ASK), 200) == -1


def test_execute_of_a_resting_bid_is_seller_initiated():
    tc = TradeClassifier()
    assert tc.sign(ev(Kind.EXECUTE, 1, Side.BID, 100, 1), 202) == -1
    assert tc.sign(ev(Kind.EXECUTE, 1, Side.ASK, 101, 1), 202) == 1


def test_lee_ready_quote_rule_then_tick_rule_at_the_mid():
    tc = TradeClassifier()
    mid2 = 2 * 100 + 2 * 1  # mid 101
    assert tc.sign(ev(Kind.TRADE, 1, price=102, size=1), mid2) == 1
    assert tc.sign(ev(Kind.TRADE, 2, price=100, size=1), mid2) == -1
    assert tc.sign(ev(Kind.TRADE, 3, price=101, size=1), mid2) == 1  # at the mid, up-tick from 100
    assert tc.sign(ev(Kind.TRADE, 4, price=101, size=1), mid2) == 1  # zero tick keeps the last direction
    assert tc.sign(ev(Kind.TRADE, 5, price=102, size=1), None) == 1  # no quote: tick rule
    assert tc.sign(ev(Kind.TRADE, 6, price=101, size=1), None) == -1
    assert TradeClassifier().sign(ev(Kind.TRADE, 7, price=0, size=1), mid2) == 0


def test_signed_volume_sums_the_window_and_last_sign_is_kept():
    fs = FeatureState(window_ns=SEC)
    b = l2([(100, 5)], [(102, 5)])
    fs.update(b, [ev(Kind.TRADE, 0, price=102, size=7, flags=FLAG_AGGRESSOR_BID)])
    row = fs.update(b, [ev(Kind.TRADE, SEC // 2, price=100, size=3, flags=FLAG_AGGRESSOR_ASK)])
    assert col(row, "signed_volume_log") == pytest.approx(math.log1p(4))
    assert col(row, "last_trade_sign") == -1
    row = fs.update(b, [ev(Kind.TRADE, SEC + 1, price=100, size=10)])  # quote rule: below the mid
    assert col(row, "signed_volume_log") == pytest.approx(-math.log1p(13))


# ---------------------------------------------------------------- realized variance and intensities


def test_realized_variance_sums_squared_mid_log_returns_in_the_window():
    fs = FeatureState(window_ns=SEC)
    b = l2([(100, 1)], [(102, 1)])
    fs.update(b, [ev(Kind.LEVEL_SET, 0, Side.BID, 100, 1)])  # mid 101
    b.set_level(Side.ASK, 104, 1)
    b.set_level(Side.ASK, 102, 0)
    fs.update(b, [ev(Kind.LEVEL_SET, SEC // 4, Side.ASK, 104, 1)])  # mid 102
    b.set_level(Side.BID, 98, 1)
    b.set_level(Side.BID, 100, 0)
    row = fs.update(b, [ev(Kind.LEVEL_SET, SEC // 2, Side.BID, 98, 1)])  # mid 101
    expected = math.log(102 / 101) ** 2 + math.log(101 / 102) ** 2
    assert col(row, "realized_variance") == pytest.approx(expected, rel=1e-5)
    row = fs.update(b, [ev(Kind.LEVEL_SET, SEC // 4 + SEC, Side.BID, 98, 1)])  # first return left the window
    assert col(row, "realized_variance") == pytest.approx(math.log(101 / 102) ** 2, rel=1e-5)


def test_l3_intensities_count_messages_cancels_and_trades_per_second():
    fs = FeatureState(window_ns=SEC)
    b = L3Book("t", "X")
    stream = [
        ev(Kind.ADD, 0, Side.BID, 100, 5, order_id=1),
        ev(Kind.ADD, 100, Side.BID, 100, 5, order_id=2),
        ev(Kind.ADD, 200, Side.ASK, 101, 5, order_id=3),
        ev(Kind.ADD, 300, Side.ASK, 102, 5, order_id=4),
        ev(Kind.CANCEL, 400, Side.BID, 100, 2, order_id=1),
        ev(Kind.DELETE, 500, Side.ASK, 102, 5, order_id=4),
        ev(Kind.EXECUTE, 600, Side.ASK, 101, 1, order_id=3),
    ]
    for e in stream:
        b.apply(e)
        row = fs.update(b, [e])
    assert math.expm1(col(row, "log_message_rate")) == pytest.approx(7)
    assert math.expm1(col(row, "log_cancel_rate")) == pytest.approx(2)
    assert math.expm1(col(row, "log_trade_rate")) == pytest.approx(1)
    late = ev(Kind.ADD, 100 + SEC, Side.BID, 99, 1, order_id=5)  # the first two leave the window
    b.apply(late)
    row = fs.update(b, [late])
    assert math.expm1(col(row, "log_message_rate")) == pytest.approx(6)
    assert math.expm1(col(row, "log_dt_ns")) == pytest.approx(100 + SEC - 600, rel=1e-5)


def test_l2_size_decrease_is_a_cancel_unless_a_trade_explains_it():
    fs = FeatureState(window_ns=SEC)
    b = l2([], [])
    msgs = [
        [ev(Kind.LEVEL_SET, 0, Side.ASK, 101, 10), ev(Kind.LEVEL_SET, 0, Side.BID, 100, 10)],
        [ev(Kind.LEVEL_SET, 10, Side.ASK, 101, 7)],  # no trade: cancel
        [ev(Kind.TRADE, 20, price=101, size=3, flags=FLAG_AGGRESSOR_BID), ev(Kind.LEVEL_SET, 20, Side.ASK, 101, 4)],
        [ev(Kind.LEVEL_SET, 30, Side.ASK, 101, 9)],  # an increase is never a cancel
        [ev(Kind.TRADE, 40, price=101, size=2, flags=FLAG_AGGRESSOR_BID), ev(Kind.LEVEL_SET, 40, Side.ASK, 101, 2)],
    ]
    for m in msgs:
        for e in m:
            b.apply(e)
        row = fs.update(b, m)
    # cancels: the first decrease, and 5 of the last 7 (the trade explains only 2)
    assert math.expm1(col(row, "log_cancel_rate")) == pytest.approx(2)
    assert math.expm1(col(row, "log_trade_rate")) == pytest.approx(2)
    assert math.expm1(col(row, "log_message_rate")) == pytest.approx(8)


def test_level_flow_uses_the_traded_credit_up_before_calling_a_decrease_a_cancel():
    flow = LevelFlow()
    assert flow.level_set(ev(Kind.LEVEL_SET, 0, Side.ASK, 101, 10)) == 10  # a new level: its size
    flow.traded(Side.ASK, 101, 3)
    assert flow.level_set(ev(Kind.LEVEL_SET, 1, Side.ASK, 101, 8)) == -2
    assert not flow.is_cancel(Side.ASK, 101, 2)  # 2 of the 3 traded lots explain it
    assert flow.is_cancel(Side.ASK, 101, 2)  # 1 lot left: the rest is a cancel, and the credit is gone
    assert flow.is_cancel(Side.ASK, 101, 1)
    assert flow.level_set(ev(Kind.LEVEL_SET, 2, Side.NONE, 101, 5)) == 0  # off the book's sides
    for price in range(LevelFlow.MAX_CREDITS + 2):  # prints no depth update followed are dropped
        flow.traded(Side.BID, price, 1)
    assert flow.is_cancel(Side.BID, 0, 1)
    flow.traded(Side.BID, 100, 5)
    flow.clear()
    assert flow.level_set(ev(Kind.LEVEL_SET, 3, Side.ASK, 101, 4)) == 4 and flow.is_cancel(Side.BID, 100, 1)


def test_a_deep_copy_of_the_features_goes_on_apart_from_its_original():
    """The maps of LevelFlow and the rate windows have copies of their own (scenario paths copy a builder
    per level update): fed the same messages, copy and original give the same rows; fed apart, apart."""
    import copy

    book = L2Book("binance", "X")
    state = FeatureState(tick=1)
    for i, (side, price, size) in enumerate(((Side.BID, 100, 5), (Side.ASK, 101, 4), (Side.BID, 99, 7))):
        e = ev(Kind.LEVEL_SET, i * 1_000_000, side, price, size)
        book.apply(e)
        state.update(book, [e])
    twin = copy.deepcopy(state)
    a_book, b_book = book, copy.deepcopy(book)
    step = [ev(Kind.LEVEL_SET, 5_000_000, Side.BID, 100, 2)]  # a decrease: a cancel, read off the old size
    a_book.apply(step[0])
    b_book.apply(step[0])
    assert np.array_equal(state.update(a_book, step), twin.update(b_book, step))
    other = ev(Kind.LEVEL_SET, 6_000_000, Side.ASK, 101, 1)
    a_book.apply(other)
    state.update(a_book, [other])  # the original alone: the copy's level sizes and rates are untouched
    assert twin._levels._sizes[Side.ASK][101] == 4 and len(twin._messages) == len(state._messages) - 1


def test_snapshot_contents_are_state_not_flow():
    fs = FeatureState(window_ns=SEC)
    b = l2([], [])
    snap = [
        ev(Kind.SNAPSHOT_BEGIN, 0),
        ev(Kind.LEVEL_SET, 0, Side.BID, 100, 5),
        ev(Kind.LEVEL_SET, 0, Side.ASK, 101, 5),
        ev(Kind.SNAPSHOT_END, 0),
    ]
    for e in snap:
        b.apply(e)
    row = fs.update(b, snap)
    assert col(row, "log_message_rate") == 0.0
    e = ev(Kind.LEVEL_SET, 5, Side.BID, 100, 1)  # the snapshot's size is the baseline: a cancel
    b.apply(e)
    row = fs.update(b, [e])
    assert math.expm1(col(row, "log_cancel_rate")) == pytest.approx(1)


# ---------------------------------------------------------------- the row


def test_row_columns_for_a_two_sided_book():
    fs = FeatureState(tick=10)
    b = l2([(1000, 2), (990, 3)], [(1020, 6)])
    row = fs.update(b, [ev(Kind.LEVEL_SET, 1, Side.BID, 990, 3)])
    assert row.dtype == np.float32 and row.shape == (len(FEATURE_NAMES),)
    assert col(row, "valid") == 1.0
    assert col(row, "mid") == 1010.0
    assert col(row, "spread_ticks") == 2.0
    assert col(row, "microprice_offset_ticks") == pytest.approx(-0.5)
    assert col(row, "queue_imbalance") == pytest.approx(-0.5)
    assert col(row, "log_depth_bid_1") == pytest.approx(math.log1p(2))
    assert col(row, "log_depth_bid_5") == pytest.approx(math.log1p(5))
    assert col(row, "log_depth_ask_10") == pytest.approx(math.log1p(6))


@pytest.mark.parametrize("book", [l2([], []), l2([(100, 3)], []), l2([], [(101, 3)]), L3Book()])
def test_empty_and_one_sided_books_give_finite_rows_with_valid_off(book):
    fs = FeatureState()
    for i in range(3):
        row = fs.update(book, [ev(Kind.TRADE, i, price=100, size=1)])
        assert np.isfinite(row).all()
        assert col(row, "valid") == 0.0
        assert col(row, "mid") == 0.0 and col(row, "spread_ticks") == 0.0
    assert fs.update(book, []).shape == (len(FEATURE_NAMES),)


def test_feature_names_follow_the_level_settings():
    names = feature_names(ofi_levels=3, depth_at=(1, 2))
    assert names[names.index("ofi_1") : names.index("ofi_3") + 1] == ("ofi_1", "ofi_2", "ofi_3")
    assert "log_depth_ask_2" in names and "log_depth_ask_10" not in names
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_depth_memory_is_the_ewma_over_messages_of_the_top_levels_of_both_sides():
    fs = FeatureState(ofi_levels=1, depth_at=(1,), memory_levels=2, memory_halflives=(1, 4))
    names = fs.names
    assert names[-2:] == ("log_depth_2_ewma_1", "log_depth_2_ewma_4")
    b = l2([(100, 1), (99, 2), (98, 50)], [(101, 3)])
    first = fs.update(b, [ev(Kind.LEVEL_SET, 0, Side.BID, 98, 50)])
    x0 = math.log1p(1 + 2 + 3)  # the third bid level is past memory_levels
    assert col(first, "log_depth_2_ewma_1", names) == pytest.approx(x0)
    assert col(first, "log_depth_2_ewma_4", names) == pytest.approx(x0)
    b.set_level(Side.BID, 99, 12)  # behind depth_at's one level, inside the memory's two
    row = fs.update(b, [ev(Kind.LEVEL_SET, 1, Side.BID, 99, 12)])
    x1 = math.log1p(1 + 12 + 3)
    assert col(row, "log_depth_2_ewma_1", names) == pytest.approx(x0 + 0.5 * (x1 - x0))
    slow = x0 + (1 - 0.5**0.25) * (x1 - x0)
    assert col(row, "log_depth_2_ewma_4", names) == pytest.approx(slow)
    # a message that leaves the book as it is still moves the EWMAs a step towards its depth
    row = fs.update(b, [ev(Kind.TRADE, 2, price=100, size=1)])
    assert col(row, "log_depth_2_ewma_4", names) == pytest.approx(slow + (1 - 0.5**0.25) * (x1 - slow))
    fast = col(row, "log_depth_2_ewma_1", names)
    # a resync keeps the memory (the level is the instrument's, not the book session's): a step, not a restart
    b = l2([(100, 1)], [(101, 1)])
    row = fs.update(b, [ev(Kind.CLEAR, 3), ev(Kind.LEVEL_SET, 3, Side.BID, 100, 1)])
    assert col(row, "log_depth_2_ewma_1", names) == pytest.approx(fast + 0.5 * (math.log1p(2) - fast))


def test_feature_state_rejects_a_non_positive_tick():
    with pytest.raises(ValueError):
        FeatureState(tick=0)


@st.composite
def l2_streams(draw):
    n = draw(st.integers(1, 40))
    msgs = []
    ts = draw(st.integers(0, 10**12))
    for i in range(n):
        ts += draw(st.integers(0, SEC))
        batch = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from([Kind.LEVEL_SET, Kind.LEVEL_SET, Kind.TRADE, Kind.CLEAR]))
            price = draw(st.integers(1, 30))
            if kind == Kind.LEVEL_SET:
                side = draw(st.sampled_from([Side.BID, Side.ASK]))
                batch.append(ev(kind, ts, side, price, draw(st.integers(0, 10**12)), seq=i))
            else:
                flags = draw(st.sampled_from([0, FLAG_AGGRESSOR_BID, FLAG_AGGRESSOR_ASK]))
                batch.append(ev(kind, ts, price=price, size=draw(st.integers(0, 10**9)), flags=flags, seq=i))
        msgs.append(batch)
    return msgs


@settings(max_examples=40, deadline=None)
@given(msgs=l2_streams(), tick=st.integers(1, 7))
def test_rows_are_finite_for_random_l2_streams(msgs, tick):
    fs = FeatureState(tick=tick, ofi_levels=5, window_ns=SEC // 2)
    b = L2Book("t", "X")
    for m in msgs:
        for e in m:
            b.apply(e)
        row = fs.update(b, m)
        assert row.shape == (len(fs.names),)
        assert np.isfinite(row).all()
        assert col(row, "valid", fs.names) == float(bool(b.bids and b.asks))


class _AlwaysRecompute(FeatureState):
    def _touches_top(self, events):
        return True


@settings(max_examples=40, deadline=None)
@given(msgs=l2_streams())
def test_skipping_messages_behind_the_top_levels_changes_no_row(msgs):
    """The cache of book columns (kept while updates land behind the top 10) is invisible."""
    fast, full = FeatureState(ofi_levels=3, depth_at=(1, 10)), _AlwaysRecompute(ofi_levels=3, depth_at=(1, 10))
    b = L2Book("t", "X")
    for m in msgs:
        for e in m:
            b.apply(e)
        np.testing.assert_array_equal(fast.update(b, m), full.update(b, m))


def test_a_deep_update_leaves_the_top_columns_and_ofi_unchanged():
    fs = FeatureState(ofi_levels=1, depth_at=(1,))
    b = l2([(100 - i, 1) for i in range(12)], [(101 + i, 1) for i in range(12)])
    first = fs.update(b, [ev(Kind.LEVEL_SET, 0, Side.BID, 100, 1)])
    b.set_level(Side.BID, 80, 50)  # behind the 10th level
    row = fs.update(b, [ev(Kind.LEVEL_SET, 0, Side.BID, 80, 50)])
    assert col(row, "ofi_1", fs.names) == col(first, "ofi_1", fs.names) == 0.0
    assert col(row, "log_depth_bid_1", fs.names) == col(first, "log_depth_bid_1", fs.names)
    b.set_level(Side.BID, 100, 3)
    row = fs.update(b, [ev(Kind.LEVEL_SET, 0, Side.BID, 100, 3)])
    assert col(row, "ofi_1", fs.names) == pytest.approx(2.0)  # e = 3 - 1 over depth (1 + 1)/2


@st.composite
def l3_streams(draw):
    """Valid L3 flow: adds, and cancels/deletes/executes of resting orders at their price."""
    live: dict[int, tuple[Side, int, int]] = {}
    msgs, ts = [], 0
    for oid in range(1, draw(st.integers(2, 60))):
        ts += draw(st.integers(0, SEC // 4))
        if live and draw(st.booleans()):
            old = draw(st.sampled_from(sorted(live)))
            side, price, size = live.pop(old)
            kind = draw(st.sampled_from([Kind.CANCEL, Kind.DELETE, Kind.EXECUTE]))
            msgs.append([ev(kind, ts, side, price, size, order_id=old)])
        else:
            side = draw(st.sampled_from([Side.BID, Side.ASK]))
            live[oid] = (side, draw(st.integers(1, 30)), draw(st.integers(1, 100)))
            msgs.append([ev(Kind.ADD, ts, side, live[oid][1], live[oid][2], order_id=oid)])
    return msgs


@settings(max_examples=40, deadline=None)
@given(msgs=l3_streams())
def test_l3_rows_are_finite_and_unaffected_by_the_top_cache(msgs):
    fast, full = FeatureState(ofi_levels=2, depth_at=(1, 3)), _AlwaysRecompute(ofi_levels=2, depth_at=(1, 3))
    b = L3Book("t", "X")
    for m in msgs:
        for e in m:
            b.apply(e)
        row = fast.update(b, m)
        assert np.isfinite(row).all()
        np.testing.assert_array_equal(row, full.update(b, m))
