"""Training and serving read the same input: the served model's arrays for a stream's windows equal the
dataset builder's arrays for the same windows (model.inputs is their one path).

Every array is equal exactly but the book-series rows: the dataset normalizes them with float64
parameters, a checkpoint serves its norm in float32 (the network's precision: model.inputs.FeatureNorm),
so a normalized value may differ in its last bits, never by more than that rounding."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from model.inputs import INPUT_FIELDS
from model.serving.orderflow import OrderFlowForecaster
from model.sim.engine import SimConfig
from model.training.dataset import DatasetConfig, build, fit_tokenizer, replay_source, save, sim_source
from model.training.train import train

SEC = 1_000_000_000


def test_the_served_models_input_equals_the_datasets_for_the_same_windows(tmp_path):
    cfg = DatasetConfig()
    # the tokenizer of another stream, as held-out data is built with the training set's tokenizer
    other = sim_source(SimConfig(n_symbols=1, duration_ns=60 * SEC, seed=31))
    tokenizer = fit_tokenizer([replay_source(other, cfg)], cfg)
    source = sim_source(SimConfig(n_symbols=2, duration_ns=300 * SEC, seed=32, news_rate=600))
    dataset = build([source], cfg, tokenizer=tokenizer)
    data, _ = save(dataset, tmp_path / "data.npz")
    # a checkpoint whose extras (tokenizers, feature mean and std) are the dataset's, as training writes them
    train("pretrain", data, tmp_path / "ckpt", steps=1, batch=4, device="cpu", preset="tiny", checkpoint_every=100)
    forecaster = OrderFlowForecaster(tmp_path / "ckpt", device="cpu")

    windows = replay_source(source, cfg).windows  # the dataset's windows, in its order
    served = forecaster.arrays(windows)
    assert len(windows) == len(dataset) > 20
    assert dataset.arrays["news_mask"].any() and dataset.arrays["row_mask"].any()  # headlines and rows compared
    for name in INPUT_FIELDS:
        want = dataset.arrays[name]
        assert served[name].dtype == want.dtype, name
        if name != "features":
            assert np.array_equal(served[name], want), name
    # the headlines encoded window by window, as `encode_news` does (model_inputs encodes only windows with one)
    one_by_one = np.stack([forecaster.text.encode_news(w.news_text, w.news_mask) for w in windows])
    assert np.array_equal(served["news"], one_by_one) and 0 < served["news_mask"].any(1).sum() < len(windows)

    # (x - mean) / std with mean and std rounded to float32: off by at most a few float32 ulps of |mean| / std
    # and of the value itself (bound 2^-22 of their sum); a drift of the features or of the norm is far larger
    mean, std = np.asarray(dataset.meta["feature_mean"]), np.asarray(dataset.meta["feature_std"])
    want = dataset.arrays["features"].astype(np.float64)
    bound = 2.0**-22 * (np.abs(mean) / std + np.abs(want))
    assert (np.abs(served["features"] - want) <= bound).all()
    padded = ~dataset.arrays["row_mask"]
    assert (served["features"][padded] == 0).all() and (want[padded] == 0).all()


def test_a_headlines_age_is_seconds_to_the_newest_event_and_zero_where_padded_or_stamped_after():
    from model.inputs import news_age

    ts = np.array([10_000_000_000, 5_000_000_000], np.int64)
    news_ts = np.array([[9_500_000_000, 0], [6_000_000_000, 2_000_000_000]], np.int64)
    mask = np.array([[True, False], [True, True]])
    got = news_age(ts, news_ts, mask)
    assert got.dtype == np.float32
    assert np.array_equal(got, np.array([[0.5, 0.0], [0.0, 3.0]], np.float32))
