"""A native pipeline's state read on the reference path (orderbook/native/reference.py): the native path up
to a cut, its state through the snapshot codec and `reference_windows`, the reference path after it, gives
exactly what the reference path gives from the first record: every window, reject and stat. On every Binance
capture, mangled streams (gaps, buffered diffs, crossed books, pending tickers), a simulated ITCH day with
placeholder books, and headlines kept across the cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.sim.engine import SEC, SimConfig
from model.sim.itch_day import itch_day_stream
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.snapshot import dump_state, load_state
from orderbook.venues.itch import encode
from streams.pipeline import VenuePipeline
from tests.test_native_venue_windows import (
    CAPTURES,
    CONFIG,
    Out,
    _reject,
    assert_same,
    capture,
    mangled_binance,
    mangled_itch,
    reference,
)

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())
if native.available():
    from orderbook.native.reference import reference_windows
    from orderbook.native.venue_windows import NativeVenueWindows

BATCH = 2000  # records a native call, as the worker's replay takes them


def switched(venue: str, values: list[bytes], cut: int, news: tuple[int, str, str] | None = None) -> tuple[Out, dict]:
    """`values[:cut]` on the native path, its state through the codec (as `md.state` carries it) read as
    the reference's, `values[cut:]` on the reference path; `news` (ts, symbol, headline) joins at the cut.
    Also the native state at the cut."""
    nvw = NativeVenueWindows(venue, CONFIG)
    windows, rejects = [], []
    for a in range(0, cut, BATCH):
        b = min(cut, a + BATCH)
        done = nvw.process(values[a:b], [(0, i) for i in range(a, b)])
        windows += done.windows
        rejects += [(r.reason, r.error, a + r.record, r.index, r.value) for r in done.rejects]
    if news is not None:
        nvw.add_news(news[0], [news[1]], news[2])
    state = nvw.__getstate__()
    pipe = VenuePipeline(venue, CONFIG, native=False)
    pipe.core = reference_windows(load_state(dump_state(state)))
    for i in range(cut, len(values)):
        ws, rs = pipe.process(None, values[i], 0, i)
        windows += ws
        rejects += [_reject(r) for r in rs]
    return (windows, rejects, pipe.stats), state


def reference_with_news(venue: str, values: list[bytes], cut: int, news: tuple[int, str, str]) -> Out:
    pipe = VenuePipeline(venue, CONFIG, native=False)
    windows, rejects = [], []
    for i, value in enumerate(values):
        if i == cut:
            pipe.add_news(news[0], [news[1]], news[2])
        ws, rs = pipe.process(None, value, 0, i)
        windows += ws
        rejects += [_reject(r) for r in rs]
    return windows, rejects, pipe.stats


@pytest.mark.realdata
@pytest.mark.parametrize("name", CAPTURES, ids=lambda n: n.split(".gz")[0])
def test_a_native_state_continues_exactly_on_the_reference_path_on_every_binance_capture(
    shared_data: Path, name: str
) -> None:
    values = capture(name)
    want = reference("binance", values)
    assert len(want[0]) > 100
    for cut in (len(values) // 3, 2 * len(values) // 3):
        assert_same(want, switched("binance", values, cut)[0])


@pytest.mark.realdata
def test_a_native_state_mid_gap_crossed_or_with_pending_tickers_continues_exactly_on_the_reference_path(
    shared_data: Path,
) -> None:
    values = mangled_binance(capture("usdm_btcusdt_20240808.gz"))
    want = reference("binance", values)
    books = []
    for cut in range(0, len(values), len(values) // 60):
        got, state = switched("binance", values, cut)
        assert_same(want, got)
        books += state["feed"]["core"]["books"]
    # the cuts met the states this is about: a book waiting for its snapshot with diffs held, a live one
    # with tickers ahead of it
    assert any(not b["live"] and b["buffer"] for b in books)
    assert any(b["live"] and b["pending"] for b in books)


@pytest.fixture(scope="module")
def itch_sim() -> list[bytes]:
    result = simulate(SimConfig(n_symbols=3, duration_ns=900 * SEC, seed=11))
    return [m.raw for m in messages("itch", result)]


def test_a_native_itch_state_continues_exactly_on_the_reference_path_mangled_or_not(itch_sim: list[bytes]) -> None:
    for values in (itch_sim, mangled_itch(itch_sim)):
        want = reference("itch", values)
        assert len(want[0]) > 100
        for cut in (1, len(values) // 4, len(values) // 2, 3 * len(values) // 4):
            assert_same(want, switched("itch", values, cut)[0])


def test_a_native_itch_state_with_a_placeholder_book_is_renamed_on_the_reference_path_as_on_the_native() -> None:
    s = itch_day_stream(5, n=3000, preopen_orders=True)
    breaks = [encode("B", locate=1, timestamp=1_000 + i, match=i) for i in range(20)]  # before locate 1's R
    values = [*breaks, *s.messages]
    want = reference("itch", values)
    assert any(w.symbol == "locate:1" for w in want[0])
    books = {}
    for cut in (10, 20, 21, len(values) // 2):
        got, state = switched("itch", values, cut)
        assert_same(want, got)
        core = state["feed"]["core"]
        books[cut] = {core["names"][b["symbol"]] for b in core["books"]}
    assert "locate:1" in books[10] and "locate:1" not in books[len(values) // 2]  # held, then renamed


def test_headlines_kept_in_a_native_state_join_the_reference_paths_windows(itch_sim: list[bytes]) -> None:
    cut = len(itch_sim) // 2
    _, state = switched("itch", itch_sim, cut)
    symbol, builder = next(iter(state["builders"].items()))
    ts = builder["news"][-1][0] if builder["news"] else 0
    news = (max(ts, _last_ts(itch_sim, cut)), symbol, "Guidance raised; shares jump")
    want = reference_with_news("itch", itch_sim, cut, news)
    assert any(news[2] in dict(w.news).values() for w in want[0][len(want[0]) // 2 :] if w.symbol == symbol)
    assert_same(want, switched("itch", itch_sim, cut, news)[0])


def _last_ts(values: list[bytes], cut: int) -> int:
    """The stream time at the cut: the latest window end before it, on the reference path."""
    windows = reference("itch", values[:cut])[0]
    return max(w.ts for w in windows)


def test_a_native_state_that_is_not_one_is_refused_with_a_value_error(itch_sim: list[bytes]) -> None:
    nvw = NativeVenueWindows("itch", CONFIG)
    nvw.process(itch_sim[:3000], list(range(3000)))
    state = nvw.__getstate__()
    name, builder = next(iter(state["builders"].items()))
    feed_core = state["feed"]["core"]
    bad = [
        {**state, "version": 2},
        {k: v for k, v in state.items() if k != "feed"},
        {**state, "builders": {name: {**builder, "version": 1}}},
        {**state, "builders": {name: {**builder, "core": builder["core"][:-3]}}},
        {**state, "builders": {name: {**builder, "core": builder["core"] + b"\x00"}}},
        {**state, "feed": {**state["feed"], "core": {**feed_core, "books": feed_core["books"] * 2}}},  # twice
        {**state, "feed": {**state["feed"], "core": {**feed_core, "system_event": 1 << 20}}},
    ]
    for s in bad:
        with pytest.raises(ValueError):
            reference_windows(s)
