"""model/training/dataset.py and `megatrading dataset`: the contract's arrays, labels, targets, splits, files."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json

import numpy as np
import pytest

from model.network.tokens import Tokenizer
from model.sim.anomalies import KINDS, write_labels
from model.sim.engine import SEC, SimConfig
from model.sim.run import simulate
from model.training.dataset import (
    REAL_FILES,
    TARGETS,
    DatasetConfig,
    Source,
    build,
    load,
    real_sources,
    replay_source,
    save,
    sim_source,
    split_by_seed,
)
from orderbook import native
from orderbook.book import L3Book
from orderbook.events import Kind, Side
from orderbook.features import FEATURE_NAMES, depth_levels
from orderbook.frames import is_frame
from orderbook.native.venue_windows import NativeVenueWindows
from orderbook.venues import RawRecord
from streams.cli import dataset as dataset_cli
from tests.test_native_venue_windows import mangled_binance, mangled_itch

MAIN = SimConfig(n_symbols=2, duration_ns=600 * SEC, seed=1, news_rate=12.0,
                 anomaly_rates={"quote_stuffing": 6.0, "spoofing": 3.0})  # fmt: skip
SMALL = SimConfig(n_symbols=1, duration_ns=180 * SEC, seed=2)


@pytest.fixture(scope="module")
def ds():
    return build([sim_source(MAIN), sim_source(SMALL)])


def test_arrays_have_the_contract_shapes_and_dtypes_and_no_nan(ds):
    a, b = ds.arrays, len(ds)
    n, t, m, ln, f = 128, 32, 4, 16, len(FEATURE_NAMES)
    assert b > 100
    for name in ("kind", "side", "price", "size", "dt"):
        assert a[name].dtype == np.int64 and a[name].shape == (b, n)
        assert a[name].min() >= 0 and a[name].max() < ds.meta["tokenizer"]["vocab"][name]
    expect = {
        "mask": (bool, (b, n)),
        "features": (np.float32, (b, t, f)),
        "row_mask": (bool, (b, t)),
        "news": (np.int64, (b, m, ln)),
        "news_mask": (bool, (b, m)),
        "news_age": (np.float32, (b, m)),
        "target_mask": (bool, (b, 2)),
        "label": (np.int64, (b,)),
        "news_kind": (np.int64, (b,)),
        "event_ts": (np.int64, (b,)),
        "message": (np.int64, (b,)),
        "seed": (np.int64, (b,)),
    }
    expect |= {f"{x}_h{h}": (np.float32, (b,)) for h in (10, 100) for x in TARGETS}
    for name, (dtype, shape) in expect.items():
        assert a[name].dtype == dtype and a[name].shape == shape, name
    assert a["symbol"].dtype.kind == "U" and a["symbol"].shape == (b,)
    for name, arr in a.items():
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all(), name
    assert set(a) == set(expect) | {"kind", "side", "price", "size", "dt", "symbol"}
    assert (a["news_age"] >= 0).all() and not a["news_age"][~a["news_mask"]].any()
    assert a["news_age"][a["news_mask"]].max() > 0  # headlines come before the windows that carry them


def test_a_windows_message_is_where_its_horizons_count_from(ds):
    """`message` indexes the symbol's per-message series the targets read: the window's own book there, and
    its move at 10 is the mid 10 messages on minus that."""
    a = ds.arrays
    rep = replay_source(sim_source(MAIN))
    mine = np.flatnonzero(a["seed"] == MAIN.seed)
    assert np.array_equal(a["message"][mine], rep.msg_index)
    checked = 0
    for k, w in zip(mine, rep.windows, strict=True):
        series, m = rep.series[w.symbol], int(a["message"][k])
        if not (w.best_bid and w.best_ask and a["target_mask"][k, 0]):
            continue
        assert series.mid2[m] == w.best_bid + w.best_ask
        assert a["mid_h10"][k] == np.float32((series.mid2[m + 10] - series.mid2[m]) / (2 * series.tick))
        checked += 1
    assert checked > 100
    for sym in set(a["symbol"][mine]):
        assert (np.diff(a["message"][mine][a["symbol"][mine] == sym]) > 0).all()


def test_features_are_normalized_over_real_rows_and_padded_rows_are_zero(ds):
    a = ds.arrays
    rows = a["features"][a["row_mask"]]
    std = np.asarray(ds.meta["feature_std"])
    varying = std > 1e-6
    assert np.abs(rows.mean(axis=0)[varying]).max() < 1e-3
    assert np.abs(rows.std(axis=0)[varying] - 1).max() < 1e-3
    assert (a["features"][~a["row_mask"]] == 0).all()
    assert len(ds.meta["feature_mean"]) == len(ds.meta["feature_names"]) == len(FEATURE_NAMES)


def _labels_csv(tmp_path):
    result = simulate(MAIN)
    path = tmp_path / "labels.csv"
    write_labels(result.labels, path)
    with open(path) as f:
        return [(r["symbol"], int(r["start_ns"]), int(r["end_ns"]), r["kind"]) for r in csv.DictReader(f)]


def test_windows_overlapping_a_labeled_interval_carry_its_kind(ds, tmp_path):
    labels = _labels_csv(tmp_path)
    assert any(k == "quote_stuffing" for *_, k in labels)
    a = ds.arrays
    rep = replay_source(sim_source(MAIN))  # the window's span [start_ts, ts] is not stored: replay for it
    seen_stuffing = 0
    for i, w in enumerate(rep.windows):
        hits = [k for s, lo, hi, k in labels if s == w.symbol and lo <= w.ts and hi >= w.start_ts]
        assert a["seed"][i] == MAIN.seed and a["event_ts"][i] == w.ts
        if not hits:
            assert a["label"][i] == 0
        elif len(hits) == 1:
            assert a["label"][i] == 1 + KINDS.index(hits[0])
            seen_stuffing += hits[0] == "quote_stuffing"
    assert seen_stuffing > 0
    assert (a["label"][a["seed"] == SMALL.seed] == 0).all()  # no anomalies were injected there


def test_targets_equal_a_direct_recomputation_from_the_simulators_own_events():
    rep = replay_source(sim_source(MAIN))
    arrays = build([sim_source(MAIN)]).arrays
    result = simulate(MAIN)
    ticks = {s.name: 100 for s in result.symbols}  # the worker's ITCH tick rule: a cent, whatever the simulator used
    for sym in ticks:
        book, states = L3Book("sim", sym), []
        for e in (e for e in result.events if e.symbol == sym):  # ITCH: one message per simulated event
            book.apply(e)
            bb, ba = book.best_bid(), book.best_ask()
            depth = depth_levels(book, Side.BID, 5) + depth_levels(book, Side.ASK, 5)
            states.append(
                (e.ts, bb[0] if bb else None, ba[0] if ba else None, depth, e.size * (e.kind == Kind.EXECUTE))
            )
        mine = [k for k, w in enumerate(rep.windows) if w.symbol == sym]
        checked = 0
        for k in mine[:: max(1, len(mine) // 6)]:
            i = rep.msg_index[k]
            assert states[i][0] == rep.windows[k].ts
            for c, h in enumerate((10, 100)):
                if i + h >= len(states):
                    assert not arrays["target_mask"][k, c]
                    continue
                _ts, bid, ask, depth, _ = states[i + h]
                _, bid0, ask0, _, _ = states[i]
                assert arrays["target_mask"][k, c]
                assert arrays[f"spread_h{h}"][k] == pytest.approx((ask - bid) / ticks[sym])
                assert arrays[f"depth_h{h}"][k] == pytest.approx(np.log1p(depth), rel=1e-6)
                volume = sum(s[4] for s in states[i + 1 : i + h + 1])
                assert arrays[f"volume_h{h}"][k] == pytest.approx(np.log1p(volume), rel=1e-6)
                mid_move = ((bid + ask) - (bid0 + ask0)) / (2 * ticks[sym])
                assert arrays[f"mid_h{h}"][k] == pytest.approx(mid_move, abs=1e-6)
                checked += 1
        assert checked >= 6


def test_the_last_windows_of_a_stream_have_no_long_horizon_target(ds):
    a = ds.arrays
    small = np.flatnonzero(a["seed"] == SMALL.seed)
    assert not a["target_mask"][small[-1], 1]
    assert a["target_mask"][small[: len(small) // 2]].all()
    assert (a["spread_h100"][~a["target_mask"][:, 1]] == 0).all()


def test_news_is_tokenized_and_typed_where_a_headline_lies_in_the_window(ds):
    a = ds.arrays
    with_news = a["news_mask"].any(axis=1)
    assert with_news.sum() > 0
    assert (a["news"][a["news_mask"]][:, 0] >= 2).all()  # a real headline starts with a word id
    assert (a["news"][~a["news_mask"]] == 0).all()
    assert (a["news_kind"][with_news] > 0).all() and (a["news_kind"][~with_news] == 0).all()


def test_split_by_seed_holds_out_whole_seeds(ds):
    train, held = split_by_seed(ds, held_out={SMALL.seed})
    assert len(train) + len(held) == len(ds)
    assert set(train.arrays["seed"]) == {MAIN.seed} and set(held.arrays["seed"]) == {SMALL.seed}
    assert ds.meta["sim_seeds"] == [MAIN.seed, SMALL.seed]
    assert held.meta["tokenizer"] == ds.meta["tokenizer"]  # one tokenizer and normalization for both


def test_save_and_load_round_trip_without_pickle(ds, tmp_path):
    npz, meta = save(ds, tmp_path / "train.npz")
    again = load(npz)
    assert set(again.arrays) == set(ds.arrays)
    assert all(np.array_equal(again.arrays[k], v) for k, v in ds.arrays.items())
    doc = json.loads(meta.read_text())
    assert doc["horizons"] == [10, 100] and doc["window"]["n_events"] == 128
    assert Tokenizer.from_json(doc["tokenizer"]).vocab == doc["tokenizer"]["vocab"]


def test_a_given_tokenizer_is_used_as_it_is(ds):
    tok = Tokenizer.from_json(ds.meta["tokenizer"])
    again = build([sim_source(SMALL)], DatasetConfig(), tokenizer=tok)
    mine = ds.arrays["seed"] == SMALL.seed
    assert np.array_equal(again.arrays["size"], ds.arrays["size"][mine])


def test_real_captures_replay_into_windows_with_negative_seeds(shared_data):
    kraken = [s for s in real_sources(shared_data) if s.venue == "kraken"]
    assert kraken and kraken[0].seed == -1 - [v for _, v in REAL_FILES].index("kraken")
    real = build(kraken)
    assert len(real) > 50 and (real.arrays["seed"] == kraken[0].seed).all()
    assert (real.arrays["label"] == 0).all() and np.isfinite(real.arrays["features"]).all()


def test_seed_ranges_parse():
    assert dataset_cli.parse_seeds("1-4") == [1, 2, 3, 4]
    assert dataset_cli.parse_seeds("1-3,9,2") == [1, 2, 3, 9]
    assert dataset_cli.parse_seeds("5-6,-2") == [5, 6, -2]  # a real file's seed is negative
    with pytest.raises(argparse.ArgumentTypeError):
        dataset_cli.parse_seeds("a-b")


def test_held_out_sources_are_encoded_but_not_fitted_on(ds):
    held = build([sim_source(MAIN), sim_source(SMALL)], held_out=[SMALL.seed])
    alone = build([sim_source(MAIN)])
    assert held.meta["tokenizer"] == alone.meta["tokenizer"]  # bins from the training seed only
    assert held.meta["feature_mean"] == alone.meta["feature_mean"]
    assert held.meta["fitted_without"] == [SMALL.seed] and len(held) == len(ds)
    assert held.meta["feature_mean"] != ds.meta["feature_mean"]
    with pytest.raises(ValueError, match="held out"):
        build([sim_source(SMALL)], held_out=[SMALL.seed])


def test_dataset_command_writes_the_npz_and_its_json(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="megatrading")
    dataset_cli.register(parser.add_subparsers())
    out = tmp_path / "d" / "train.npz"
    args = parser.parse_args(["dataset", "--sim-seeds", "3", "--sim-duration", "2m", "--sim-symbols", "1",
                              "--out", str(out)])  # fmt: skip
    assert args.run(args) == 0
    ds = load(out)
    assert len(ds) > 0 and set(ds.arrays["seed"]) == {3}
    assert "windows" in capsys.readouterr().out


@pytest.mark.realdata
@pytest.mark.skipif(not native.available(), reason=native.describe())
def test_the_native_replay_gives_the_reference_paths_dataset_array_for_array(shared_data, monkeypatch, caplog):
    """The training data's replay runs on the native path where it is on (orderbook.stream_replay: the native
    feeds, books and builders, the book after every message kept in Rust for the targets): array for array
    the dataset of the reference path (Python feeds, books and builders, MT_NATIVE=0), on simulated streams in
    every format the simulator writes (headlines and anomalies in ITCH) and the head of a real capture of every
    venue; also where a native call panics midway (its records redone on the reference path, the book states
    read off its Python books there)."""

    def sources():
        firsts = {s.venue: s for s in reversed(real_sources(shared_data))}
        real = [dataclasses.replace(s, records=itertools.islice(s.records, 6000)) for s in firsts.values()]
        small = dataclasses.replace(MAIN, duration_ns=120 * SEC, news_rate=0.0, anomaly_rates={})
        # gaps, crossed books, refused messages (the native follower books corrected between messages); no
        # frames, which a file never holds
        binance = [r.value for r in real_sources(shared_data)[2].records]
        itch = [r.value for r in sim_source(small).records]
        mangled = [Source(f"mangled:{venue}", venue, -90 - k, [RawRecord(None, v) for v in values if not is_frame(v)])
                   for k, (venue, values) in enumerate((("binance", mangled_binance(binance)),
                                                        ("itch", mangled_itch(itch))))]  # fmt: skip
        sims = [sim_source(small, fmt) for fmt in ("lobster", "binance", "coinbase")]
        return [sim_source(MAIN), *sims, *real, *mangled]

    got = build(sources())
    process, calls = NativeVenueWindows.process, []

    def panics_once(self, *args, **kwargs):
        calls.append(self.venue)
        if self.venue == "binance" and calls.count("binance") == 2:
            native.panic("a bug met by these records")
        return process(self, *args, **kwargs)

    with monkeypatch.context() as m, caplog.at_level("WARNING"):
        m.setattr(NativeVenueWindows, "process", panics_once)
        panicked = build(sources())
    assert "they are replayed on the reference path" in caplog.text
    monkeypatch.setenv(native.ENV, "0")
    want = build(sources())
    assert {s["venue"] for s in want.meta["sources"]} == {"itch", "lobster", "binance", "coinbase", "kraken"}
    assert len(want) > 1000 and all(s["rejected"] > 2 for s in want.meta["sources"][-2:])
    for ds in (got, panicked):
        assert ds.arrays.keys() == want.arrays.keys() and ds.meta == want.meta
        for k, v in want.arrays.items():
            assert np.array_equal(ds.arrays[k], v, equal_nan=v.dtype.kind == "f"), k
