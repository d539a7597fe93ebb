"""Each book's record of its realized traded volumes, kept by its window builder (orderbook/volume_record.py):
what a window carries against what the evaluation reads off a dataset's targets
(model.evaluation.baselines.volume_levels), on a real Binance capture replayed through the worker's path."""

import dataclasses
import math
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from model.evaluation.baselines import volume_levels
from model.training.dataset import DatasetConfig, SourceReplay, capture_source, replay_source, targets
from orderbook.venue_windows import VenueWindows, process_records
from orderbook.volume_record import KEEP, VOLUME_HORIZONS, VolumeRecord, ewma_quantiles


@pytest.fixture(scope="module")
def replayed(shared_data: Path) -> tuple[SourceReplay, dict[str, np.ndarray]]:
    """A capture's first records replayed as the datasets are (its windows, the per-message series), and
    the arrays volume_levels reads, as a dataset of them holds them."""
    source = capture_source("binance", shared_data / "binance-hftbacktest" / "usdm_ethusdt_20240808.gz")
    rep = replay_source(dataclasses.replace(source, records=islice(source.records, 12_000)))
    arrays = {
        "message": np.array(rep.msg_index, np.int64),
        "symbol": np.array([w.symbol for w in rep.windows], dtype=str),
        "seed": np.full(len(rep.windows), source.seed, np.int64),
    }
    pairs = list(zip(rep.windows, rep.msg_index, strict=True))
    for h in VOLUME_HORIZONS:
        arrays[f"volume_h{h}"] = np.array([targets(rep.series[w.symbol], i, h)[0]["volume"] for w, i in pairs],
                                          np.float32)  # fmt: skip
    return rep, arrays


def test_each_window_carries_the_record_the_evaluation_reads_off_the_datasets_targets(replayed):
    rep, arrays = replayed
    assert sum(v > 0 for s in rep.series.values() for v in s.volume) > 200  # it trades: not a record of zeros
    carried = np.stack([w.volume_record for w in rep.windows])
    evaluated = np.stack([volume_levels(arrays, h)[1] for h in VOLUME_HORIZONS], 1)
    assert np.isfinite(evaluated).all(-1).mean() > 0.9
    # NaN where the other is (a book's first windows); the dataset holds its volumes as float32
    np.testing.assert_allclose(carried, evaluated, rtol=1e-6)


def test_a_volume_counts_the_h_messages_after_its_window_and_is_known_from_the_hth():
    record = VolumeRecord()
    lots = [5, 0, 7, 1, 0, 0, 3, 2, 0, 4, 9, 0, 1]
    for i, x in enumerate(lots):
        record.message(x)
        if i == 1:
            record.window_cut()  # after message 2: its volume over 10 messages is messages 3..12's
        if i == 10:
            assert not record.known[0]  # message 11 is the 9th after it
        if i == 11:
            assert list(record.known[0]) == [math.log1p(sum(lots[2:12]))]
    assert not record.known[1] and len(record.pending[1]) == 1  # 100 messages are not over


def test_a_window_read_without_being_cut_enters_no_record(shared_data):
    """`WindowBuilder.window()` reads the window as it stands (a scenario path does, at every event); only
    an emitted window has a horizon the record waits for."""

    def records(read: bool) -> np.ndarray:
        source = capture_source("binance", shared_data / "binance-hftbacktest" / "spot_btcusdt_20240808.gz")
        vw = VenueWindows("binance", DatasetConfig().window)
        out = []
        for done in process_records(vw, islice(source.records, 4000), []):
            out += [w.volume_record for w in done.windows]
            for builder in vw.builders.values() if read else ():
                builder.window()
        return np.stack(out)

    plain = records(read=False)
    assert np.isfinite(plain).all(-1).sum() > 100
    np.testing.assert_array_equal(records(read=True), plain)


def test_the_quantiles_weigh_each_volume_by_its_age():
    values = np.array([1.0] * 64 + [5.0] * 64)  # the newer half weighs 2x the older: 2/3 of the total
    assert list(ewma_quantiles(values)) == [1.0, 5.0, 5.0]
    assert list(ewma_quantiles(values[::-1])) == [1.0, 1.0, 5.0]
    with pytest.raises(ValueError, match="1 to 512"):
        ewma_quantiles(np.zeros(KEEP + 1))


def test_quantiles_read_again_are_the_callers_own_and_follow_each_new_volume():
    record = VolumeRecord()
    for i in range(40):
        record.message(i % 4)
        record.window_cut()
    first = record.quantiles()
    first[:] = -1.0  # a window's array is its own: a later read is not changed through it
    again = record.quantiles()
    np.testing.assert_array_equal(again[0], ewma_quantiles(np.array(record.known[0])))
    for _ in range(40):  # new volumes over 10 messages, the newest most of the weight: the next read weighs them
        record.message(1000)
        record.window_cut()
    np.testing.assert_array_equal(record.quantiles()[0], ewma_quantiles(np.array(record.known[0])))
    assert record.quantiles()[0, 1] > again[0, 1]
