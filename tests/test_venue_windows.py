"""orderbook.venue_windows: the one path from raw records to windows, with reject reasons, that the worker,
`megatrading score` and the dataset builder share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.sim.writers import messages
from model.training.dataset import DatasetConfig, replay_source, sim_source
from orderbook.book import L2Book
from orderbook.events import Side
from orderbook.news import Headline
from orderbook.snapshot import dump_state, load_state
from orderbook.venue_windows import INTERNAL_ERROR, VenueWindows, process_records
from orderbook.venues import RawRecord, feed_class, fixed_tick
from orderbook.venues.itch import encode
from orderbook.windows import Window, WindowConfig
from streams.pipeline import VenuePipeline

CONFIG = WindowConfig(n_events=16, n_rows=4, every_events=4)


@pytest.fixture(scope="module")
def itch_day() -> list[RawRecord]:
    """A short simulated ITCH day as `md.raw.itch` records, with the simulator's clock."""
    result = simulate(SimConfig(n_symbols=2, duration_ns=120 * SEC, seed=7))
    return [RawRecord(m.symbol.encode() if m.symbol else None, m.raw, m.ts) for m in messages("itch", result)]


def same_windows(a: list[Window], b: list[Window]) -> bool:
    """Equal in everything but `offset` (each caller says what a position is)."""
    if len(a) != len(b):
        return False
    for wa, wb in zip(a, b, strict=True):
        for f in dataclasses.fields(Window):
            if f.name == "offset":
                continue
            x, y = getattr(wa, f.name), getattr(wb, f.name)
            if isinstance(x, np.ndarray):
                if not (x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")):
                    return False
            elif x != y:
                return False
    return True


def test_the_worker_score_and_the_dataset_see_the_same_windows(itch_day):
    cfg = DatasetConfig(window=CONFIG)
    pipe = VenuePipeline("itch", CONFIG)
    worker = [w for i, r in enumerate(itch_day) for w in pipe.process(r.key, r.value, 0, i)[0]]
    score = [w for done in process_records(VenueWindows("itch", CONFIG), itch_day) for w in done.windows]
    src = dataclasses.replace(sim_source(SimConfig(n_symbols=2, duration_ns=120 * SEC, seed=7)), news=[])
    dataset = replay_source(src, cfg).windows
    assert len(worker) > 20
    assert same_windows(worker, score) and same_windows(worker, dataset)


def test_one_stats_object_counts_records_events_windows_and_rejects_by_reason(itch_day):
    vw = VenueWindows("itch", CONFIG, max_bytes=64)
    bad = [RawRecord(None, b"Z\x00\x01"), RawRecord(None, b"A" * 65), RawRecord(None, b"")]
    records = [*itch_day[:300], *bad, *itch_day[300:]]
    done = list(process_records(vw, records))
    assert vw.stats.records == len(records)
    assert vw.stats.events == sum(len(d.events) for d in done) > 0
    assert vw.stats.windows == sum(len(d.windows) for d in done) > 0
    rejects = [d.reject for d in done if d.reject is not None]
    assert [r.reason for r in rejects] == ["unknown_message_type", "oversized", "malformed"]
    assert vw.stats.rejected == {"unknown_message_type": 1, "oversized": 1, "malformed": 1}
    assert all(not d.events and not d.windows for d in done if d.reject is not None)


def test_an_oversized_record_is_rejected_unread_with_the_limit_in_its_error():
    vw = VenueWindows("lobster", max_bytes=40)
    row = b"34200.000000001,1,1,10,1000000,1"
    too_long = row + b" " * 10
    rejected = vw.process(b"AAPL", too_long).reject
    assert rejected is not None and rejected.reason == "oversized"
    assert rejected.error == f"record of {len(too_long)} bytes exceeds 40 [venue=lobster]"
    (event,) = vw.process(b"AAPL", row).events
    assert event.seq == 1  # the feed never saw the oversized record


def test_a_decoder_bug_is_rejected_as_internal_error_and_the_stream_goes_on(itch_day):
    vw = VenueWindows("itch", CONFIG)
    first_add = next(i for i, r in enumerate(itch_day) if r.value[:1] == b"A")
    done = list(process_records(vw, itch_day[:first_add]))

    def broken(raw: bytes, seq: int, recv_ts: int) -> None:
        raise ZeroDivisionError("a bug")

    fast = vw.feed._fast  # type: ignore[attr-defined]
    fast[ord("A")], real = broken, fast[ord("A")]
    bug = vw.process(itch_day[first_add].key, itch_day[first_add].value)
    fast[ord("A")] = real
    assert bug.reject is not None and (bug.reject.reason, bug.reject.error) == (
        INTERNAL_ERROR,
        "ZeroDivisionError: a bug",
    )
    assert vw.stats.rejected == {INTERNAL_ERROR: 1}
    done = [vw.process(r.key, r.value) for r in itch_day[first_add + 1 :]]
    assert sum(len(d.events) for d in done) > 0


def test_a_window_building_bug_is_rejected_as_internal_error_and_its_symbol_starts_over(itch_day):
    vw = VenueWindows("itch", CONFIG)
    half = len(itch_day) // 2
    before = [d for d in process_records(vw, itch_day[:half])]
    assert sum(len(d.windows) for d in before) > 0
    at = next(i for i in range(half, len(itch_day)) if itch_day[i].value[:1] == b"A")
    symbol, at_key = vw.process(itch_day[at].key, itch_day[at].value).events[0].symbol, itch_day[at].key
    builder = vw.builders[symbol]

    def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("Python int too large to convert to C long")

    builder.push = broken  # type: ignore[method-assign]
    # every record goes through, in order: one skipped would leave the book stale (a quote it removed), not broken
    nxt = next(i for i in range(at + 1, len(itch_day)) if itch_day[i].key == at_key)
    assert not any(vw.process(r.key, r.value).reject for r in itch_day[at + 1 : nxt])  # the other symbol's
    bug = vw.process(itch_day[nxt].key, itch_day[nxt].value)
    assert bug.reject == (INTERNAL_ERROR, "building windows: OverflowError: Python int too large to convert to C long")
    assert symbol not in vw.builders  # the broken builder is dropped, not trusted again
    after = [vw.process(r.key, r.value) for r in itch_day[nxt + 1 :]]
    assert not any(d.reject for d in after)
    assert any(w.symbol == symbol for d in after for w in d.windows)  # its windows resume, history rebuilt


def test_warm_records_rebuild_the_state_without_emitting_or_counting_windows(itch_day):
    k = len(itch_day) // 2
    cold = VenueWindows("itch", CONFIG)
    full = [d.windows for d in process_records(cold, itch_day)]
    warm = VenueWindows("itch", CONFIG)
    assert all(warm.process(r.key, r.value, warm=True).windows == [] for r in itch_day[:k])
    assert warm.stats.windows == 0 and warm.stats.records == k
    rest = [w for r in itch_day[k:] for w in warm.process(r.key, r.value).windows]
    assert same_windows(rest, [w for ws in full[k:] for w in ws])


def test_headlines_join_by_the_records_clock_or_else_by_event_time(itch_day):
    """With a clock a headline joins before the first record at or after its time, even one that is rejected;
    without one, once a record's events reach its time. Either way the windows that span it carry it."""
    last = itch_day[-1].ts
    first = next(r.ts for r in itch_day if r.value[:1] == b"A")
    assert first is not None and last is not None
    t = (first + last) // 2
    i = next(k for k, r in enumerate(itch_day) if r.ts is not None and r.ts >= t)
    symbol = next(r.key.decode() for r in itch_day[i:] if r.key)
    news = [Headline(t, [symbol], "half way"), Headline(last + 1, [symbol], "after the end")]
    garbage = RawRecord(None, b"Z", t)
    with_clock = [*itch_day[:i], garbage, *itch_day[i:]]
    without = [RawRecord(r.key, r.value) for r in with_clock]
    for records, joined_at in ((with_clock, i), (without, i + 1)):
        vw = VenueWindows("itch", CONFIG)
        done = process_records(vw, records, news)
        for _ in range(joined_at):
            next(done)
        assert symbol not in vw.news
        next(done)
        assert vw.news[symbol] == [(t, "half way")]
        windows = [w for d in done for w in d.windows if w.symbol == symbol]
        assert vw.news[symbol] == [(t, "half way")]  # the stream never reaches the second
        assert any(w.news == [(t, "half way")] for w in windows)
        assert all(w.start_ts <= t <= w.ts for w in windows if w.news)


def test_a_restored_state_keeps_its_limit_and_its_counts(itch_day):
    vw = VenueWindows("itch", CONFIG, max_bytes=1000)
    list(process_records(vw, [*itch_day[:200], RawRecord(None, b"")]))
    copy = load_state(dump_state(vw))
    assert copy.max_bytes == 1000 and copy.stats == vw.stats
    assert copy.process(None, b"").reject is not None and copy.stats.rejected["malformed"] == 2


def test_the_tick_is_the_venues_where_it_fixes_one_else_inferred_from_a_deep_enough_book():
    assert fixed_tick("itch") == fixed_tick("lobster") == 100
    assert fixed_tick("binance") is None and fixed_tick("a simulated stream") is None
    book = L2Book("binance", "X")
    assert feed_class("itch").window_tick(book) == 100
    binance = feed_class("binance")
    for price in (1000, 1025):
        book.set_level(Side.BID, price, 1)
    assert binance.window_tick(book) is None  # two levels: too thin to tell
    book.set_level(Side.BID, 1100, 1)
    assert binance.window_tick(book) == 25


def test_an_itch_record_needs_no_key_and_a_lobster_record_its_key():
    itch = VenueWindows("itch")
    assert itch.process(None, encode("S", timestamp=1, event_code="O")).reject is None
    lobster = VenueWindows("lobster")
    rejected = lobster.process(None, b"34200.1,1,1,10,1000000,1").reject
    assert rejected is not None and rejected.error == "LOBSTER record without a symbol key [venue=lobster]"
    (event,) = lobster.process(b"MSFT", b"34200.1,1,1,10,1000000,1").events
    assert event.symbol == "MSFT"
