import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderbook.book import L2Book, L3Book
from orderbook.events import Event, Kind, Side
from orderbook.features import FeatureState
from orderbook.windows import ARRAY_FIELDS, Window, WindowBuilder, WindowConfig, stack

N, T, M = 8, 4, 2


def builder(**cfg) -> WindowBuilder:
    base = {"n_events": N, "n_rows": T, "max_news": M, "price_clip": 3, "every_events": None, "every_ns": None}
    base.update(cfg)
    return WindowBuilder(WindowConfig(**base), FeatureState(ofi_levels=2, depth_at=(1,)))


def two_sided() -> L2Book:
    b = L2Book("binance", "BTCUSDT")
    b.set_level(Side.BID, 100, 10)
    b.set_level(Side.ASK, 101, 10)
    return b


def lvl(ts: int, side: Side, price: int, size: int, seq: int = 0) -> Event:
    return Event(Kind.LEVEL_SET, "binance", "BTCUSDT", ts, seq, side, price, size)


def push_all(wb: WindowBuilder, book: L2Book, msgs: list[list[Event]]) -> list[Window]:
    out = []
    for i, m in enumerate(msgs):
        for e in m:
            book.apply(e)
        w = wb.push(book, m, offset=(0, i))
        if w is not None:
            out.append(w)
    return out


def assert_fixed_shapes(w: Window, n_features: int) -> None:
    for name in ("kind", "side", "price", "size", "dt", "event_ts", "mask"):
        assert getattr(w, name).shape == (N,), name
    assert w.features.shape == (T, n_features) and w.features.dtype == np.float32
    assert w.row_mask.shape == (T,)
    assert w.news_ts.shape == w.news_text.shape == w.news_mask.shape == (M,)
    assert w.size.dtype == np.int64 and w.dt.dtype == np.int64


def test_window_shapes_are_fixed_before_and_after_the_buffers_fill():
    wb = builder()
    book = two_sided()
    push_all(wb, book, [[lvl(1, Side.BID, 100, 11)]])
    early = wb.window()
    assert_fixed_shapes(early, len(wb.features.names))
    push_all(wb, book, [[lvl(10 + i, Side.BID, 100, 12 + i)] for i in range(20)])
    late = wb.window()
    assert_fixed_shapes(late, len(wb.features.names))
    assert late.mask.all() and late.row_mask.all()


def test_padding_is_on_the_left_and_the_mask_marks_real_slots():
    wb = builder()
    book = two_sided()
    push_all(wb, book, [[lvl(1, Side.BID, 100, 11), lvl(2, Side.BID, 100, 12)], [lvl(3, Side.BID, 100, 13)]])
    w = wb.window()
    assert w.mask.tolist() == [False] * 5 + [True] * 3
    assert w.size.tolist() == [0] * 5 + [11, 12, 13]
    assert w.kind[~w.mask].tolist() == [0] * 5
    assert w.row_mask.tolist() == [False, False, True, True]  # one row per message
    assert not w.features[~w.row_mask].any()
    assert w.features[w.row_mask][:, 0].tolist() == [1.0, 1.0]  # the valid column


def test_ring_buffer_keeps_the_newest_n_events_oldest_first():
    wb = builder()
    book = two_sided()
    push_all(wb, book, [[lvl(i, Side.BID, 100, i + 1)] for i in range(13)])
    w = wb.window()
    assert w.size.tolist() == list(range(6, 14))
    assert w.dt.tolist() == [1] * N
    assert w.event_ts.tolist() == list(range(5, 13))
    assert w.n_seen == 13


def test_token_price_is_ticks_from_the_prevailing_mid_rounded_away_and_clipped():
    wb = builder()
    book = two_sided()  # mid 100.5: best bid -1, best ask +1
    msg = [
        lvl(1, Side.BID, 100, 3),
        lvl(1, Side.ASK, 101, 3),
        lvl(1, Side.ASK, 102, 3),  # 1.5 ticks away -> 2
        lvl(1, Side.BID, 90, 3),  # clipped to -3
        Event(Kind.TRADE, "binance", "BTCUSDT", 1, 0, Side.NONE, 0, 1),  # no price -> 0
    ]
    push_all(wb, book, [msg])
    w = wb.window()
    assert w.price[w.mask].tolist() == [-1, 1, 2, -3, 0]
    assert w.side[w.mask].tolist() == [1, -1, -1, 1, 0]


def test_tick_scales_token_prices():
    wb = WindowBuilder(WindowConfig(n_events=4, price_clip=50, every_events=None), FeatureState(tick=10))
    book = L2Book()
    book.set_level(Side.BID, 1000, 1)
    book.set_level(Side.ASK, 1020, 1)  # mid 1010, two ticks wide
    push_all(wb, book, [[lvl(1, Side.ASK, 1050, 1)]])
    assert wb.window().price[-1] == 4


def test_emits_every_k_events():
    wb = builder(every_events=3)
    book = two_sided()
    msgs = [[lvl(i, Side.BID, 100, i + 1)] for i in range(7)]
    emitted = [wb.push(book, m) is not None for m in msgs]
    assert emitted == [False, False, True, False, False, True, False]


def test_a_message_with_many_events_emits_one_window_and_restarts_the_count():
    wb = builder(every_events=3)
    book = two_sided()
    assert wb.push(book, [lvl(1, Side.BID, 100, s) for s in range(1, 6)]) is not None
    assert wb.push(book, [lvl(2, Side.BID, 100, 9)]) is None


def test_emits_every_t_of_event_time():
    wb = builder(every_ns=1000)
    book = two_sided()
    times = [0, 400, 999, 1000, 1500, 2100, 2200]
    emitted = [wb.push(book, [lvl(t, Side.BID, 100, 5)]) is not None for t in times]
    assert emitted == [False, False, False, True, False, True, False]


def test_either_rule_emits_when_both_are_set():
    wb = builder(every_events=3, every_ns=10)
    book = two_sided()
    emitted = [wb.push(book, [lvl(t, Side.BID, 100, 5)]) is not None for t in (0, 50, 51, 52, 53)]
    assert emitted == [False, True, False, False, True]  # 50 by time, 53 by count


def test_news_inside_the_window_newest_last_at_most_m():
    wb = builder()
    book = two_sided()
    wb.add_news(5, "before the window")
    push_all(wb, book, [[lvl(t, Side.BID, 100, 5)] for t in (10, 20, 30)])
    wb.add_news(25, "inside b")
    wb.add_news(15, "inside a")
    wb.add_news(12, "inside, but pushed out by newer ones")
    wb.add_news(99, "after the last event")
    w = wb.window()
    assert w.news == [(15, "inside a"), (25, "inside b")]
    assert w.news_mask.tolist() == [True, True]
    push_all(wb, book, [[lvl(100, Side.BID, 100, 5)]])
    assert wb.window().news == [(25, "inside b"), (99, "after the last event")]


def test_news_padding_when_fewer_than_m():
    wb = builder()
    book = two_sided()
    push_all(wb, book, [[lvl(t, Side.BID, 100, 5)] for t in (10, 20)])
    wb.add_news(20, "only one")
    w = wb.window()
    assert w.news_mask.tolist() == [False, True]
    assert w.news_text.tolist() == ["", "only one"] and w.news_ts.tolist() == [0, 20]


def test_old_news_leaves_when_the_window_moves_on():
    wb = builder(n_events=2, n_rows=2)
    book = two_sided()
    push_all(wb, book, [[lvl(10, Side.BID, 100, 5)]])
    wb.add_news(10, "old")
    assert wb.window().news == [(10, "old")]
    push_all(wb, book, [[lvl(t, Side.BID, 100, 5)] for t in (20, 30, 40)])
    assert wb.window().news == []


def test_a_headline_before_one_window_joins_a_later_one_whose_start_ran_back():
    """Event time runs back (Binance's trade and depth streams interleave): a window's oldest event can be
    later than a later window's. A headline between them joins the later window, however often window()
    was read in between (it once dropped what lay before the window it read, for good)."""
    msgs = [[lvl(t, Side.BID, 100, 5)] for t in (300, 310, 100, 110, 400)]
    for reads in (False, True):
        wb, book = builder(n_events=2, n_rows=2), two_sided()
        wb.add_news(250, "between")
        for m in msgs[:2]:
            push_all(wb, book, [m])
            if reads:
                assert wb.window().news == []  # start 300: the headline is before this window
        push_all(wb, book, msgs[2:])
        w = wb.window()
        assert (w.start_ts, w.ts) == (110, 400)
        assert w.news == [(250, "between")], f"window() read in between: {reads}"


def test_metadata_names_the_last_event_and_the_callers_offset():
    wb = builder(every_events=2)
    book = two_sided()
    ws = push_all(wb, book, [[lvl(1, Side.BID, 100, 5, seq=7)], [lvl(2, Side.BID, 100, 6, seq=8)]])
    (w,) = ws
    assert (w.venue, w.symbol, w.ts, w.seq, w.offset, w.start_ts) == ("binance", "BTCUSDT", 2, 8, (0, 1), 1)


def test_snapshot_contents_give_no_tokens_but_its_markers_do():
    wb = builder()
    book = L2Book("binance", "BTCUSDT")
    snap = [
        Event(Kind.SNAPSHOT_BEGIN, "binance", "BTCUSDT", 1, 0),
        lvl(1, Side.BID, 100, 5),
        lvl(1, Side.ASK, 101, 5),
        Event(Kind.SNAPSHOT_END, "binance", "BTCUSDT", 1, 0),
    ]
    push_all(wb, book, [snap, [lvl(2, Side.BID, 100, 6)]])
    w = wb.window()
    assert w.kind[w.mask].tolist() == [Kind.SNAPSHOT_BEGIN, Kind.SNAPSHOT_END, Kind.LEVEL_SET]
    assert w.row_mask.sum() == 2


def test_stack_makes_batch_arrays():
    wb = builder(every_events=1)
    book = two_sided()
    ws = push_all(wb, book, [[lvl(t, Side.BID, 100, 5 + t)] for t in range(5)])
    batch = stack(ws)
    assert batch["kind"].shape == (5, N) and batch["features"].shape == (5, T, len(wb.features.names))
    assert batch["news_text"].shape == (5, M) and batch["row_mask"].shape == (5, T)
    assert batch["ts"].tolist() == [0, 1, 2, 3, 4] and batch["ts"].dtype == np.int64
    assert batch["offset"].tolist() == [(0, i) for i in range(5)]
    assert batch["symbol"].tolist() == ["BTCUSDT"] * 5
    with pytest.raises(ValueError):
        stack([])


def test_stack_gives_each_field_what_np_stack_gives():
    wb = builder(every_events=1)
    book = two_sided()
    ws = push_all(wb, book, [[lvl(t, Side.BID, 100, 5 + t), lvl(t, Side.ASK, 101, 2)] for t in range(7)])
    wb.add_news(3, "headline")
    ws.append(wb.push(book, [lvl(8, Side.BID, 100, 1)]))
    batch = stack(ws)
    assert ws[-1].news_mask.any()
    for name in ARRAY_FIELDS:
        want = np.stack([getattr(w, name) for w in ws])
        nan = want.dtype.kind == "f"  # a book's volume record is NaN before it knows enough
        assert batch[name].dtype == want.dtype and np.array_equal(batch[name], want, equal_nan=nan), name


def test_windows_of_different_shapes_do_not_stack():
    a, b = builder(every_events=1), WindowBuilder(WindowConfig(n_events=3, every_events=1))
    book = two_sided()
    wa = a.push(book, [lvl(1, Side.BID, 100, 5)])
    wb = b.push(book, [lvl(1, Side.BID, 100, 5)])
    with pytest.raises(ValueError):
        stack([wa, wb])


def test_empty_message_adds_nothing():
    wb = builder(every_events=1)
    assert wb.push(two_sided(), []) is None
    assert not wb.window().mask.any() and not wb.window().row_mask.any()


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        WindowConfig(n_events=0)
    with pytest.raises(ValueError):
        WindowConfig(every_events=0)


@st.composite
def l3_streams(draw):
    """Valid L3 flow: adds, then cancels/deletes/executes of orders that rest."""
    live: dict[int, tuple[Side, int, int]] = {}
    msgs = []
    ts, next_id = 0, 1
    for _ in range(draw(st.integers(1, 30))):
        ts += draw(st.integers(0, 10**8))
        batch = []
        for _ in range(draw(st.integers(1, 3))):
            if live and draw(st.booleans()):
                oid = draw(st.sampled_from(sorted(live)))
                side, price, size = live[oid]
                kind = draw(st.sampled_from([Kind.CANCEL, Kind.DELETE, Kind.EXECUTE]))
                cut = size if kind == Kind.DELETE else draw(st.integers(1, size))
                if cut == size:
                    del live[oid]
                else:
                    live[oid] = (side, price, size - cut)
                batch.append(Event(kind, "itch", "AAPL", ts, 0, side, price, cut, order_id=oid))
            else:
                side = draw(st.sampled_from([Side.BID, Side.ASK]))
                price, size = draw(st.integers(1, 40)), draw(st.integers(1, 1000))
                live[next_id] = (side, price, size)
                batch.append(Event(Kind.ADD, "itch", "AAPL", ts, 0, side, price, size, order_id=next_id))
                next_id += 1
        msgs.append(batch)
    return msgs


@settings(max_examples=40, deadline=None)
@given(msgs=l3_streams(), every=st.integers(1, 5))
def test_random_l3_streams_give_fixed_shape_finite_windows(msgs, every):
    wb = builder(every_events=every)
    book = L3Book("itch", "AAPL")
    windows = []
    for m in msgs:
        for e in m:
            book.apply(e)
        w = wb.push(book, m)
        if w is not None:
            windows.append(w)
    windows.append(wb.window())
    for w in windows:
        assert_fixed_shapes(w, len(wb.features.names))
        assert np.isfinite(w.features).all()
        assert (np.abs(w.price) <= 3).all()
        assert w.mask.sum() == min(w.n_seen, N)
    assert stack(windows)["features"].shape == (len(windows), T, len(wb.features.names))


def test_the_same_headline_added_twice_appears_once_in_the_window():
    """A worker restored from a snapshot that holds its headlines reads md.news again from the start."""
    wb = builder(max_news=4)
    book = two_sided()
    push_all(wb, book, [[lvl(t, Side.BID, 100, 5)] for t in (10, 20, 30)])
    wb.add_news(15, "halted")
    wb.add_news(25, "resumed")
    once = wb.window()
    wb.add_news(15, "halted")
    wb.add_news(25, "resumed")
    wb.add_news(15, "halted")
    twice = wb.window()
    assert twice.news == once.news == [(15, "halted"), (25, "resumed")]
    assert twice.news_mask.tolist() == [False, False, True, True]
    assert twice.news_text.tolist() == ["", "", "halted", "resumed"] and twice.news_ts.tolist() == [0, 0, 15, 25]


def test_distinct_headlines_at_the_same_ts_both_appear():
    wb = builder(max_news=4)
    book = two_sided()
    push_all(wb, book, [[lvl(t, Side.BID, 100, 5)] for t in (10, 20, 30)])
    wb.add_news(20, "beta")
    wb.add_news(20, "alpha")
    wb.add_news(20, "beta")
    assert wb.window().news == [(20, "alpha"), (20, "beta")]


def test_venue_windows_add_the_same_headline_once_per_symbol_before_and_after_its_builder_exists():
    from orderbook.venue_windows import VenueWindows

    vw = VenueWindows(
        "binance", WindowConfig(n_events=N, n_rows=T, max_news=M, every_events=None), ticks={"BTCUSDT": 1}
    )
    vw.add_news(15, ["BTCUSDT", "ETHUSDT"], "both")
    vw.add_news(15, ["BTCUSDT", "ETHUSDT"], "both")
    vw.add_news(15, ["BTCUSDT"], "btc only")
    assert vw.news == {"BTCUSDT": [(15, "both"), (15, "btc only")], "ETHUSDT": [(15, "both")]}
    wb = vw._builder("BTCUSDT", two_sided())  # a builder made later gets the kept headlines, once each
    assert wb is vw.builders["BTCUSDT"]
    push_all(wb, two_sided(), [[lvl(t, Side.BID, 100, 5)] for t in (10, 20)])
    vw.add_news(15, ["BTCUSDT"], "both")  # the re-read after a restore
    vw.add_news(15, ["BTCUSDT"], "btc only")
    assert wb.window().news == [(15, "both"), (15, "btc only")]
    assert vw.news["BTCUSDT"] == [(15, "both"), (15, "btc only")]


def _shared_mutable_parts(a: object, b: object, where: str = "builder") -> list[str]:
    """Where `a` and its copy `b` hold one and the same mutable object (anything but numbers, strings, tuples,
    frozensets, enums and frozen dataclasses), looked for through attributes, list items and map values."""
    import dataclasses
    import enum
    from collections import deque

    params = getattr(type(a), "__dataclass_params__", None)
    if a is None or isinstance(a, (bool, int, float, str, bytes, frozenset, enum.Enum)) or (params and params.frozen):
        return []
    if a is b and not isinstance(a, tuple):
        return [where]
    if isinstance(a, (tuple, list, deque)):
        pairs = enumerate(zip(a, b, strict=True))
        return [p for i, (x, y) in pairs for p in _shared_mutable_parts(x, y, f"{where}[{i}]")]
    if isinstance(a, dict):
        return [p for k in a for p in _shared_mutable_parts(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, np.ndarray):
        return []
    names = list(getattr(a, "__dict__", {})) + [n for c in type(a).__mro__ for n in getattr(c, "__slots__", ())]
    assert dataclasses.is_dataclass(a) or names, f"{where}: {type(a).__name__} not looked into"
    return [p for n in names for p in _shared_mutable_parts(getattr(a, n), getattr(b, n), f"{where}.{n}")]


def test_a_deep_copy_of_a_builder_shares_nothing_mutable_and_goes_on_as_its_original_would():
    """Scenario paths copy a builder at every level update (model/serving/scenarios.py) with the hand-written
    copies of WindowBuilder and FeatureState's parts: a part added later and not copied shows here."""
    import copy

    def trade(ts: int, price: int, size: int, flags: int) -> Event:
        return Event(Kind.TRADE, "binance", "BTCUSDT", ts, 0, Side.NONE, price, size, flags=flags)

    wb = WindowBuilder(WindowConfig(n_events=N, n_rows=T, max_news=M, every_events=None, every_ns=None))
    book = two_sided()
    history = [[lvl(10 * i, Side.BID, 100 - i % 3, 5 + i)] for i in range(12)]
    history += [[trade(200, 101, 2, 1), lvl(200, Side.ASK, 101, 8), lvl(200, Side.ASK, 102, 3)]]
    history += [[lvl(300, Side.BID, 100, 1)], [lvl(310, Side.ASK, 100, 4)], [trade(320, 100, 1, 2)]]
    push_all(wb, book, history)
    wb.add_news(250, "halted")
    twin, twin_book = copy.deepcopy(wb), copy.deepcopy(book)
    assert _shared_mutable_parts(wb, twin) == []
    held_twice = copy.deepcopy([wb, wb.features])  # as the generic copy does: one copy of what is held twice
    assert held_twice[1] is held_twice[0].features

    later = [[lvl(400 + i, Side.ASK, 103 + i % 2, i)] for i in range(6)] + [[trade(500, 99, 3, 2)]]
    for first, first_book in ((twin, twin_book), (wb, book)):  # the copy first: were a part shared, the original
        push_all(first, first_book, later)  # would read it changed
    a, b = wb.window(), twin.window()
    for name in ARRAY_FIELDS:
        nan = getattr(a, name).dtype.kind == "f"
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=nan), name
