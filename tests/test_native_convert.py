"""A pipeline's state carried across paths (orderbook/native/convert.py): one path up to a cut, its state
through the snapshot codec and the conversion, the other path after it, gives exactly what the reference path
gives from the first record: every window, reject and stat. Both ways (native -> reference, reference ->
native), on every Binance capture (one per market in make test, the rest in make soak), mangled streams
(gaps, buffered diffs, crossed books, pending tickers), a simulated ITCH day with placeholder books, and
headlines kept across the cut."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model.sim.engine import SEC, SimConfig
from model.sim.itch_day import itch_day_stream
from model.sim.run import simulate
from model.sim.writers import messages
from orderbook import native
from orderbook.snapshot import dump_state, load_state
from orderbook.venue_windows import VenueWindows
from orderbook.venues.itch import encode
from streams.pipeline import VenuePipeline
from tests.captures import one_per_market
from tests.test_native_venue_windows import (
    CAPTURES,
    CONFIG,
    Out,
    _Rec,
    _reject,
    assert_same,
    capture,
    mangled_binance,
    mangled_itch,
    reference,
)
from tests.test_native_windows import plain_record, version_2

pytestmark = pytest.mark.skipif(not native.available(), reason=native.describe())
if native.available():
    from orderbook.native.convert import native_state, reference_windows
    from orderbook.native.venue_windows import NativeVenueWindows

BATCH = 2000  # records a process_batch call, as the worker's replay takes them
WAYS = ["to_reference", "to_native"]


def _feed(pipe: VenuePipeline, values: list[bytes], a: int, b: int, out: tuple[list, list]) -> None:
    for lo in range(a, b, BATCH):
        records = [_Rec(None, values[i], 0, i) for i in range(lo, min(b, lo + BATCH))]
        ws, rs = pipe.process_batch(records)
        out[0].extend(ws)
        out[1].extend(_reject(r) for r in rs)


def switched_at(
    venue: str, values: list[bytes], cuts: list[int], way: str, *, news: tuple[int, str, str] | None = None,
    want: Out | None = None,
) -> Iterator[tuple[Out, dict]]:  # fmt: skip
    """Per cut (ascending): `values[:cut]` on one path, its state through the codec (as `md.state` carries
    it) and converted, `values[cut:]` on the other (`way`: to_reference starts native); `news` (ts, symbol,
    headline) joins at the cut. Also the state at the cut in the native layout (the one read, or the one
    written). The first path runs once through all the cuts; given `want`, it goes on to the end and must
    give it: taking a state changed nothing."""
    first = VenuePipeline(venue, CONFIG, native=way == "to_reference")
    out: tuple[list, list] = ([], [])
    done = 0
    for cut in cuts:
        assert cut >= done and (news is None or len(cuts) == 1)
        _feed(first, values, done, cut, out)
        done = cut
        if news is not None:
            first.add_news(news[0], [news[1]], news[2])
        then = VenuePipeline(venue, CONFIG, native=not first.native)
        if first.native:
            state = first.core.__getstate__()
            then.core = reference_windows(load_state(dump_state(state)))
        else:
            state = native_state(first.core)
            then.core = NativeVenueWindows.from_state(load_state(dump_state(state)))
        rest: tuple[list, list] = (list(out[0]), list(out[1]))
        _feed(then, values, cut, len(values), rest)
        yield (rest[0], rest[1], then.stats), state
    if want is not None:
        _feed(first, values, done, len(values), out)
        assert_same(want, (out[0], out[1], first.stats))


def switched(
    venue: str, values: list[bytes], cut: int, way: str, news: tuple[int, str, str] | None = None
) -> tuple[Out, dict]:
    """switched_at for one cut."""
    return next(switched_at(venue, values, [cut], way, news=news))


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


STATE_CARRY_RECORDS = 30_000  # of a capture: the cuts at a third and two thirds, each carried on for 10-20k records
# (the whole captures, up to 74,655 records, took 49 s of make test on the Python path: 30 s now)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    one_per_market(CAPTURES),
    ids=lambda n: n.split(".gz")[0],
)
def test_a_state_carried_across_paths_continues_exactly_on_every_binance_capture(shared_data: Path, name: str) -> None:
    values = capture(name)[:STATE_CARRY_RECORDS]
    want = reference("binance", values)
    assert len(want[0]) > 100
    for way, cut in zip(WAYS, (len(values) // 3, 2 * len(values) // 3), strict=True):
        assert_same(want, switched("binance", values, cut, way)[0])


@pytest.mark.realdata
@pytest.mark.parametrize("way", WAYS)
def test_a_state_mid_gap_crossed_or_with_pending_tickers_continues_exactly_on_the_other_path(
    shared_data: Path, way: str
) -> None:
    values = mangled_binance(capture("usdm_btcusdt_20240808.gz"))
    want = reference("binance", values)
    books = []
    for got, state in switched_at("binance", values, list(range(0, len(values), len(values) // 60)), way, want=want):
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


@pytest.mark.parametrize("way", WAYS)
def test_an_itch_state_carried_across_paths_continues_exactly_mangled_or_not(itch_sim: list[bytes], way: str) -> None:
    for values in (itch_sim, mangled_itch(itch_sim)):
        want = reference("itch", values)
        assert len(want[0]) > 100
        cuts = [1, len(values) // 4, len(values) // 2, 3 * len(values) // 4]
        for got, _ in switched_at("itch", values, cuts, way, want=want):
            assert_same(want, got)


@pytest.mark.parametrize("way", WAYS)
def test_an_itch_placeholder_book_carried_across_paths_is_renamed_as_on_one_path(way: str) -> None:
    s = itch_day_stream(5, n=3000, preopen_orders=True)
    breaks = [encode("B", locate=1, timestamp=1_000 + i, match=i) for i in range(20)]  # before locate 1's R
    values = [*breaks, *s.messages]
    want = reference("itch", values)
    assert any(w.symbol == "locate:1" for w in want[0])
    books = {}
    cuts = [10, 20, 21, len(values) // 2]
    for cut, (got, state) in zip(cuts, switched_at("itch", values, cuts, way, want=want), strict=True):
        assert_same(want, got)
        core = state["feed"]["core"]
        books[cut] = {core["names"][b["symbol"]] for b in core["books"]}
    assert "locate:1" in books[10] and "locate:1" not in books[len(values) // 2]  # held, then renamed


@pytest.mark.parametrize("way", WAYS)
def test_headlines_kept_in_a_state_join_the_other_paths_windows(itch_sim: list[bytes], way: str) -> None:
    cut = len(itch_sim) // 2
    before = reference("itch", itch_sim[:cut])[0]
    symbol = before[-1].symbol
    news = (before[-1].ts, symbol, "Guidance raised; shares jump")  # the stream's time at the cut
    want = reference_with_news("itch", itch_sim, cut, news)
    assert any(news[2] in dict(w.news).values() for w in want[0][len(before) :] if w.symbol == symbol)
    assert_same(want, switched("itch", itch_sim, cut, way, news)[0])


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
    odd = VenueWindows("coinbase")
    odd.venue, odd.feed = "bitstamp", object()  # a feed no native decoder reads (every venue of ours has one)
    with pytest.raises(ValueError, match="no native feed for 'bitstamp'"):
        native_state(odd)


def _records(vw: VenueWindows) -> dict[str, tuple]:
    return {name: plain_record(b._volume) for name, b in vw.builders.items()}


def test_builder_states_carry_the_volume_records_both_ways_byte_for_byte(itch_sim: list[bytes]) -> None:
    """Version 3: the native path's records read on the reference side are the records the reference path
    keeps over the same records, and write back the native bytes; the reference's records written and read
    natively come back as they were."""
    cut = len(itch_sim) // 2
    nvw = NativeVenueWindows("itch", CONFIG)
    nvw.process(itch_sim[:cut], [(0, i) for i in range(cut)])
    state = nvw.__getstate__()
    vw = reference_windows(load_state(dump_state(state)))
    assert {b["version"] for b in state["builders"].values()} == {3}
    assert native_state(vw)["builders"] == state["builders"]
    pipe = VenuePipeline("itch", CONFIG, native=False)
    _feed(pipe, itch_sim, 0, cut, ([], []))
    records = _records(pipe.core)
    assert _records(vw) == records
    assert all(len(known) > 20 for *_, both in records.values() for known in both)  # every book's is read
    back = NativeVenueWindows.from_state(load_state(dump_state(native_state(pipe.core))))
    assert _records(reference_windows(back.__getstate__())) == records


@pytest.mark.parametrize("way", WAYS)
def test_a_snapshot_of_version_2_builders_goes_on_alike_on_both_paths(itch_sim: list[bytes], way: str) -> None:
    """A snapshot from before the volume record: the path that wrote it and the other one restore it alike
    (an empty record per book) and go on alike; only the records differ from a run without the snapshot."""
    cut = len(itch_sim) // 2
    first = VenuePipeline("itch", CONFIG, native=way == "to_reference")
    _feed(first, itch_sim, 0, cut, ([], []))
    state = first.core.__getstate__() if first.native else native_state(first.core)
    old = load_state(dump_state({**state, "builders": {k: version_2(b) for k, b in state["builders"].items()}}))
    on_native, on_reference = (VenuePipeline("itch", CONFIG, native=n) for n in (True, False))
    on_native.core, on_reference.core = NativeVenueWindows.from_state(old), reference_windows(old)
    assert all(v == (0, 0, [[], []], [[], []]) for v in _records(on_reference.core).values())
    assert native_state(on_reference.core)["builders"] == on_native.core.__getstate__()["builders"]  # version 3
    got: dict[bool, tuple[list, list]] = {}
    for pipe in (on_native, on_reference):
        got[pipe.native] = ([], [])
        _feed(pipe, itch_sim, cut, len(itch_sim), got[pipe.native])
    assert_same((*got[False], on_reference.stats), (*got[True], on_native.stats))
    after = got[True][0]
    want = reference("itch", itch_sim)[0][-len(after) :]
    assert len(after) > 300 and np.isfinite([w.volume_record for w in after]).all((1, 2)).mean() > 0.5
    same = [dataclasses.replace(w, volume_record=v.volume_record) for w, v in zip(after, want, strict=True)]
    assert_same((want, [], None), (same, [], None))
    assert any(
        np.isnan(w.volume_record).all() and np.isfinite(v.volume_record).all() for w, v in zip(after, want, strict=True)
    )
