"""`megatrading score`: a recorded stream scored offline gives, row for row, what the worker publishes."""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter

import pytest

from model.serving.baseline import BaselineForecaster
from model.serving.forecaster import PREDICTION_FIELDS
from model.serving.scoring import COLUMNS, read_news, row, score_windows, stream_windows
from model.sim.engine import SimConfig
from model.sim.run import simulate
from orderbook.news import Headline
from orderbook.stream_replay import BATCH as NATIVE_BATCH
from orderbook.venue_windows import VenueWindows, process_records
from orderbook.venues import RawRecord, capture_records, feed_class
from orderbook.windows import Window
from streams.cli.evaluate import register
from streams.pipeline import VenuePipeline

SEC = 1_000_000_000


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """A short simulated ITCH day written as `megatrading simulate --out` writes it, with headlines."""
    from streams.cli.simulate import write_outputs

    d = tmp_path_factory.mktemp("score")
    result = simulate(SimConfig(n_symbols=2, duration_ns=300 * SEC, seed=11, news_rate=60,
                                anomaly_rates={"spoofing": 10.0}))  # fmt: skip
    files = write_outputs(result, "itch", d)
    return d, files[0]


def scored_windows(path, news: list[Headline] | None = None, vw: VenueWindows | None = None) -> list[Window]:
    """`megatrading score`'s windows of a file: its records through the worker's path, headlines joined by time."""
    done = process_records(vw or VenueWindows("itch"), capture_records("itch", [path]), news or [])
    return [w for d in done for w in d.windows]


def worker_rows(path, forecaster, batch: int, news=()) -> list[dict]:
    """The worker's path: VenuePipeline over the file's records (as `megatrading replay` publishes
    them), headlines added when the stream reaches them, the forecaster on each batch."""
    pipe = VenuePipeline("itch")
    pending, windows = sorted(news, key=lambda n: n[0]), []
    clock = feed_class("itch")()  # a second decoder only to read each record's event time
    for offset, rec in enumerate(feed_class("itch").read_capture(path)):
        latest = max((e.ts for e in clock.on_message(rec.raw, 0)), default=-1) if pending else -1
        while pending and pending[0][0] <= latest:
            pipe.add_news(*pending.pop(0))
        windows += pipe.process(None, rec.raw, 0, offset)[0]
    out = []
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]
        out += [row(w, p) for w, p in zip(chunk, forecaster.predict(chunk), strict=True)]
    return out


def test_baseline_scores_equal_the_workers_forecasts_row_for_row(sim_dir):
    _, path = sim_dir
    f = BaselineForecaster()
    got = list(score_windows(scored_windows(path), f, batch=256))
    want = worker_rows(path, f, batch=7)  # other batch sizes: a forecast must not depend on its batch
    assert len(got) > 50
    assert got == want


def test_windows_carry_the_headlines_of_their_span(sim_dir):
    d, path = sim_dir
    news = read_news(d / "news.jsonl")
    assert news and all(isinstance(s, list) for _, s, _ in news)
    windows = scored_windows(path, news)
    with_news = [w for w in windows if w.news_mask.any()]
    assert with_news, "some window should cover a headline"
    for w in with_news:
        for ts, headline in w.news:
            assert w.start_ts <= ts <= w.ts and any(h == headline and w.symbol in s for t, s, h in news if t == ts)
    plain = scored_windows(path)
    assert not any(w.news_mask.any() for w in plain)
    # the baseline ignores text, but the worker fed the same headlines cuts the same windows
    f = BaselineForecaster()
    assert list(score_windows(iter(windows), f)) == worker_rows(path, f, batch=32, news=news)


def test_score_command_writes_one_csv_row_per_window(sim_dir, tmp_path):
    d, path = sim_dir
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    out = tmp_path / "scores.csv"
    argv = ["score", str(path), "--format", "itch", "--news", str(d / "news.jsonl"), "--model", "baseline"]
    args = p.parse_args([*argv, "--out", str(out)])
    assert args.run(args) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert COLUMNS[:4] == ("symbol", "event_ts", "seq", "anomaly_score") and set(PREDICTION_FIELDS) <= set(COLUMNS)
    news = read_news(d / "news.jsonl")
    want = list(score_windows(scored_windows(path, news), BaselineForecaster()))
    assert len(rows) == len(want)
    for r, w in zip(rows, want, strict=True):
        assert r["symbol"] == w["symbol"] and int(r["event_ts"]) == w["event_ts"] and int(r["seq"]) == w["seq"]
        assert all(float(r[c]) == w[c] for c in COLUMNS[3:])  # floats written as repr read back exactly


def test_unusable_records_are_skipped_and_counted_as_the_worker_dead_letters_them(sim_dir):
    _, path = sim_dir
    records = list(capture_records("itch", [path]))
    broken = [*records[:200], RawRecord(None, b"\xff\x00garbage"), *records[200:]]
    vw = VenueWindows("itch")
    n = sum(len(done.windows) for done in process_records(vw, broken))
    assert n == len(scored_windows(path))
    assert vw.stats.records == len(broken) and sum(vw.stats.rejected.values()) == 1


def native_calls(monkeypatch, panic_on: int = 0) -> list[int]:
    """The records of each NativeVenueWindows.process call, in order; the `panic_on`-th call (1-based)
    panics in the compiled code first (pyo3's PanicException, as a bug there would raise)."""
    from orderbook import native
    from orderbook.native.venue_windows import NativeVenueWindows

    calls: list[int] = []
    process = NativeVenueWindows.process

    def wrapped(self, values, *args, **kwargs):
        calls.append(len(values))
        if len(calls) == panic_on:
            native.panic("a bug met by these records")
        return process(self, values, *args, **kwargs)

    monkeypatch.setattr(NativeVenueWindows, "process", wrapped)
    return calls


@pytest.mark.realdata
def test_a_stream_without_headlines_takes_the_native_path_and_gives_the_reference_windows(
    sim_dir, shared_data, monkeypatch
):
    """stream_windows (`score`, the alert tables) on a venue the native path decodes: NativeVenueWindows,
    NATIVE_BATCH records a call; the windows and the stats (a garbage record rejected) are those of the
    reference (VenueWindows) record by record. With headlines too: the calls cut before each record a headline
    joins at, the same windows however many a symbol has (more than its builders keep too), and with records
    that carry their own clock."""
    from orderbook import native
    from tests.test_native_venue_windows import assert_same

    if not native.enabled():
        pytest.skip(native.describe())
    calls = native_calls(monkeypatch)
    d, path = sim_dir
    itch = list(capture_records("itch", [path]))
    binance = list(capture_records("binance", [shared_data / "binance-hftbacktest" / "usdm_ethusdt_20240808.gz"]))
    for venue, records in (("itch", [*itch[:200], RawRecord(None, b"\xff\x00garbage"), *itch[200:]]),
                           ("binance", binance[: NATIVE_BATCH * 3 + 17])):  # fmt: skip
        calls.clear()
        windows, stats = stream_windows(venue, iter(records))
        got = list(windows)
        assert sum(calls) == len(records) and max(calls) == NATIVE_BATCH
        vw = VenueWindows(venue)
        want = [w for done in process_records(vw, records) for w in done.windows]
        assert len(want) > 20 and stats == vw.stats and stats.records == len(records)
        assert sum(stats.rejected.values()) == (venue == "itch")  # the garbage record
        assert_same((want, [], None), (got, [], None))
    # headlines: each joins before the first record whose clock reaches it, on both paths
    news = read_news(d / "news.jsonl")
    per_symbol = Counter(s for h in news for s in h.symbols)
    symbol = max(per_symbol, key=per_symbol.__getitem__)
    ts = sorted({h.ts for h in news})
    # far more than a builder keeps (WindowConfig.news_kept), many joining at one record, some before any
    more = [Headline(ts[i % len(ts)] + i * 7_919_000, [symbol], f"filler {i}") for i in range(400)]
    more += [Headline(0, [symbol], "before the open"), Headline(ts[0], [symbol], "at a headline's time")]
    for headlines in (news, news + more):
        calls.clear()
        with_news = list(stream_windows("itch", iter(itch), sorted(headlines, key=lambda h: h.ts))[0])
        assert len(calls) > len(itch) / NATIVE_BATCH and sum(calls) == len(itch)  # cut where headlines join
        assert any(w.news_mask.any() for w in with_news)
        assert_same((scored_windows(path, headlines), [], None), (with_news, [], None))
    # records that carry their own clock (a simulated source's): a headline joins before the record at its time
    timed = [RawRecord(r.key, r.value, ts[0] + (i - 4000) * 1_000_000) for i, r in enumerate(itch)]
    vw = VenueWindows("itch")
    want = [w for done in process_records(vw, timed, news + more) for w in done.windows]
    got = list(stream_windows("itch", iter(timed), sorted(news + more, key=lambda h: h.ts))[0])
    assert_same((want, [], None), (got, [], None))


@pytest.mark.realdata
def test_a_native_panic_in_stream_windows_is_replayed_on_the_reference_path_and_the_stream_goes_on(
    shared_data, monkeypatch, caplog
):
    """A panic of the compiled code on one NativeVenueWindows.process call (pyo3's PanicException, as a bug
    there would raise): those records are replayed on the reference path from the state before the call,
    and the next calls are native again; the windows and stats are the reference's, a WARNING names them."""
    from orderbook import native
    from tests.test_native_venue_windows import assert_same

    if not native.enabled():
        pytest.skip(native.describe())
    calls = native_calls(monkeypatch, panic_on=2)
    path = shared_data / "binance-hftbacktest" / "usdm_ethusdt_20240808.gz"
    records = list(capture_records("binance", [path]))[: NATIVE_BATCH * 4 + 17]
    windows, stats = stream_windows("binance", iter(records))
    with caplog.at_level("WARNING"):
        got = list(windows)
    assert len(calls) == 5  # the one that panicked, replayed on the reference path, then native again
    vw = VenueWindows("binance")
    want = [w for done in process_records(vw, records) for w in done.windows]
    assert len(want) > 50 and stats == vw.stats
    assert any(NATIVE_BATCH <= w.offset[1] < 2 * NATIVE_BATCH for w in want)  # the replayed records' windows
    assert_same((want, [], None), (got, [], None))
    assert f"panicked on records {NATIVE_BATCH}-{2 * NATIVE_BATCH - 1}" in caplog.text


def test_news_file_errors_name_the_line(tmp_path):
    p = tmp_path / "news.jsonl"
    p.write_text(json.dumps({"ts": 1, "symbols": ["A"], "headline": "x"}) + "\n{not json}\n")
    with pytest.raises(ValueError, match=r"news\.jsonl:2"):
        read_news(p)


def test_generative_scores_equal_the_served_models_forecasts(sim_dir, tmp_path):
    pytest.importorskip("torch")
    from model.serving.orderflow import OrderFlowForecaster
    from model.training.dataset import build, save, sim_source
    from model.training.train import train

    data, _ = save(build([sim_source(SimConfig(n_symbols=1, duration_ns=120 * SEC, seed=3))]), tmp_path / "t.npz")
    train("pretrain", data, tmp_path / "ckpt", steps=2, batch=4, device="cpu", preset="tiny", checkpoint_every=100)
    _, path = sim_dir
    f = OrderFlowForecaster(tmp_path / "ckpt", device="cpu")
    got = list(score_windows(scored_windows(path), f, batch=64))
    want = worker_rows(path, f, batch=64)
    assert len(got) == len(want) > 0
    assert [(g["symbol"], g["seq"]) for g in got] == [(w["symbol"], w["seq"]) for w in want]
    for g, w in zip(got, want, strict=True):
        assert [g[c] for c in COLUMNS[3:]] == pytest.approx([w[c] for c in COLUMNS[3:]], rel=1e-5, abs=1e-6)


def test_a_panic_finding_the_records_clocks_replays_that_chunk_on_the_reference_path(sim_dir, monkeypatch, caplog):
    """`NativeVenueWindows.clocks` (where a call is cut for a headline) decodes the chunk natively too: a panic
    there replays the chunk on the reference path, its headlines joined at their records, and the stream goes
    on natively; the windows are the reference's, a WARNING names the records."""
    from orderbook import native
    from orderbook.native.venue_windows import NativeVenueWindows
    from tests.test_native_venue_windows import assert_same

    if not native.enabled():
        pytest.skip(native.describe())
    d, path = sim_dir
    records = list(capture_records("itch", [path]))
    news = read_news(d / "news.jsonl")
    clocks, seen = NativeVenueWindows.clocks, []

    def panicking(self, values, keys=None):
        seen.append(len(values))
        if len(seen) == 2:
            native.panic("a bug met by these records")
        return clocks(self, values, keys)

    monkeypatch.setattr(NativeVenueWindows, "clocks", panicking)
    with caplog.at_level("WARNING"):
        got = list(stream_windows("itch", iter(records), news)[0])
    last = min(2 * NATIVE_BATCH, len(records)) - 1
    assert len(seen) >= 2 and f"panicked on records {NATIVE_BATCH}-{last}" in caplog.text
    want = scored_windows(path, news)
    assert any(w.news_mask.any() and NATIVE_BATCH <= w.offset[1] <= last for w in want)  # headlines joined there
    assert_same((want, [], None), (got, [], None))
