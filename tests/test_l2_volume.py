"""The traded-volume head of L2 books (model/network/l2_volume.py): its fit, its inputs, what it serves
and to which windows, and its place at the end of a finetune run and as `train --stage l2-volume`."""

import json
from statistics import NormalDist

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint, l2_volume  # noqa: E402
from model.network.orderflow import (  # noqa: E402
    L2_VOLUME_INPUTS,
    L2_VOLUME_TARGETS,
    QUANTILES,
    TARGETS,
    ModelConfig,
    OrderFlowModel,
    to_batch,
)
from model.training.train import TrainData  # noqa: E402
from orderbook.events import Kind  # noqa: E402
from orderbook.features import FEATURE_NAMES  # noqa: E402
from tests.checkpoints import as_format  # noqa: E402

SHAPES = dict(n_events=24, n_rows=6, n_features=len(FEATURE_NAMES), max_news=2, news_len=4, text_vocab=64)


def _hurdle_sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x (n, F); y (n, 2) zero with p0 = sigmoid(1.5 x0 - 0.5), else Normal(12 + 2 x1, exp(0.3 x2));
    the true p0, location and scale (each (n,))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, L2_VOLUME_INPUTS))
    p0 = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5)))
    loc, sd = 12 + 2 * x[:, 1], np.exp(0.3 * x[:, 2])
    traded = rng.random(n) >= p0
    y = np.where(traded, loc + sd * rng.normal(size=n), 0.0)
    return x, np.stack([y, y], 1), p0, loc, sd


def test_the_fit_finds_the_chance_of_no_trade_and_the_traded_volumes_location_and_scale():
    x, y, p0, loc, sd = _hurdle_sample(20_000)
    mean, scale, coef = l2_volume.fit(x, y, np.ones(y.shape, bool))
    assert coef.shape == (2, len(l2_volume.PARTS), L2_VOLUME_INPUTS + 1)
    z = l2_volume.standardize(x, mean, scale)
    fitted_p0 = 1 / (1 + np.exp(-(z @ coef[0, 0])))
    assert np.abs(fitted_p0 - p0).mean() < 0.02
    assert np.abs(z @ coef[0, 1] - loc).mean() < 0.05
    assert np.abs(np.exp(z @ coef[0, 2]) / sd - 1).mean() < 0.1


def test_the_served_quantiles_are_those_of_the_zero_inflated_distribution():
    """At a level under p0 the quantile is 0; above, the traded part's Normal quantile at (t - p0) / (1 - p0)."""
    x, y, p0, loc, sd = _hurdle_sample(20_000)
    fit = l2_volume.fit(x, y, np.ones(y.shape, bool))
    q = l2_volume.predict(x[:2000], *fit, QUANTILES)
    normal = NormalDist()
    for k, t in enumerate(QUANTILES):
        level = np.clip((t - p0[:2000]) / (1 - p0[:2000]), 1e-6, 1 - 1e-6)
        truth = np.where(t <= p0[:2000], 0.0, loc[:2000] + sd[:2000] * np.vectorize(normal.inv_cdf)(level))
        clear = np.abs(t - p0[:2000]) > 0.05  # a level near p0 flips between 0 and the Normal's lower tail
        assert np.median(np.abs(q[clear, 0, k] - truth[clear])) < 0.15
    assert (np.diff(q, axis=-1) >= 0).all() and (q >= 0).all()


def test_a_target_with_too_few_traded_windows_is_refused():
    x = np.zeros((100, L2_VOLUME_INPUTS))
    y = np.zeros((100, 2))
    y[: l2_volume.MIN_TRADED - 1] = 15.0
    with pytest.raises(ValueError, match="traded at target 0"):
        l2_volume.fit(x, y, np.ones(y.shape, bool))
    with pytest.raises(ValueError, match="no L2 window"):
        l2_volume.fit(x, y, np.zeros(y.shape, bool))


def _windows(model: OrderFlowModel) -> dict:
    """Two windows of a book of levels (LEVEL_SET tokens), trades in their newest rows, and one of a
    book of orders (ADD)."""
    c = model.config
    rng = np.random.default_rng(1)
    a = {f: rng.integers(1, c.vocab[f], size=(3, c.n_events)) for f in ("side", "price", "size", "dt")}
    a["kind"] = np.full((3, c.n_events), int(Kind.ADD))
    a["kind"][:2, ::3] = int(Kind.LEVEL_SET)
    a["mask"] = np.ones((3, c.n_events), bool)
    f = np.zeros((3, c.n_rows, c.n_features), np.float32)
    f[..., FEATURE_NAMES.index("valid")] = 1.0
    f[..., FEATURE_NAMES.index("spread_ticks")] = 1.0
    sign = rng.choice([-1, 1], (3, c.n_rows))
    f[..., FEATURE_NAMES.index("signed_volume_log")] = sign * rng.uniform(15, 20, (3, c.n_rows))
    f[..., FEATURE_NAMES.index("log_trade_rate")] = np.log1p(rng.uniform(1, 20, (3, c.n_rows)))
    f[..., FEATURE_NAMES.index("log_message_rate")] = np.log1p(rng.uniform(50, 200, (3, c.n_rows)))
    a["features"], a["row_mask"] = f, np.ones((3, c.n_rows), bool)
    a["row_mask"][0, -2:] = False  # the newest real row of the first window is its fourth
    a["news"] = np.zeros((3, c.max_news, c.news_len), np.int64)
    a["news_mask"] = np.zeros((3, c.max_news), bool)
    return a


def test_the_inputs_are_the_newest_rows_trade_statistics():
    model = OrderFlowModel(ModelConfig.tiny(**SHAPES)).eval()
    a = _windows(model)
    x = model.l2_volume_inputs(to_batch(a)).numpy()
    f, rows = a["features"][0], a["row_mask"][0]
    newest = f[np.flatnonzero(rows)[-1]]
    signed, trades, messages = (newest[FEATURE_NAMES.index(n)] for n in
                                ("signed_volume_log", "log_trade_rate", "log_message_rate"))  # fmt: skip
    share = np.log(np.expm1(trades) + 1e-3) - np.log(np.expm1(messages) + 1e-3)
    mean_abs = np.abs(f[rows, FEATURE_NAMES.index("signed_volume_log")]).mean()
    p = np.exp(share)
    expected = [abs(signed), mean_abs, trades, messages, share, p, np.log1p(10 * p), np.log1p(100 * p)]
    assert x[0] == pytest.approx(expected, rel=1e-4)


def test_the_head_serves_the_volume_of_l2_windows_once_fitted_and_nothing_else():
    torch.manual_seed(0)
    model = OrderFlowModel(ModelConfig.tiny(**SHAPES)).eval()
    batch = to_batch(_windows(model))
    x, y, *_ = _hurdle_sample(5000)
    fit = l2_volume.fit(x, y, np.ones(y.shape, bool))
    with torch.no_grad():
        before = model(batch)["quantiles"]
        for name, value in zip(("l2_volume_loc", "l2_volume_scale", "l2_volume_coef"), fit, strict=True):
            getattr(model, name).copy_(torch.from_numpy(value))
        assert torch.equal(model(batch)["quantiles"], before)  # not fitted: the network's
        model.l2_volume_fitted.fill_(True)
        after = model(batch)["quantiles"]
        inputs = model.l2_volume_inputs(batch).numpy()
    volume = [TARGETS.index(t) for t in L2_VOLUME_TARGETS]
    others = [j for j in range(len(TARGETS)) if j not in volume]
    assert torch.equal(after[:, others], before[:, others])
    assert torch.equal(after[2], before[2])  # a book of orders
    twin = l2_volume.predict(inputs[:2], *fit, QUANTILES)  # the numpy twin
    assert after[:2, volume].numpy() == pytest.approx(twin, abs=1e-3)


def test_a_format_11_checkpoint_loads_with_the_head_unfitted(tmp_path):
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config)
    model.l2_volume_fitted.fill_(True)
    d = as_format(checkpoint.save(model, config, {}, tmp_path / "old"), 11, lambda k: k.startswith("l2_volume_"))
    assert not bool(checkpoint.load(d)[0].l2_volume_fitted)


def test_the_record_is_weighed_against_the_head_per_horizon_and_the_head_serves_alone_where_it_is_unknown():
    head = np.array([[[0.0, 10.0, 20.0], [0.0, 12.0, 24.0]]] * 2)
    record = np.array([[[2.0, 14.0, 16.0], [np.nan] * 3], [[np.nan] * 3, [np.nan] * 3]])
    out = l2_volume.with_record(head, record, np.array([0.25, 0.5]))
    np.testing.assert_allclose(out[0, 0], [1.5, 13.0, 17.0])
    np.testing.assert_array_equal(out[0, 1], head[0, 1])
    np.testing.assert_array_equal(out[1], head[1])


def test_the_weight_goes_to_whichever_of_the_head_and_the_record_knows_the_outcome():
    rng = np.random.default_rng(0)
    y = rng.normal(20, 2, size=(4000, 2))
    spread = np.array([-2.56, 0.0, 2.56])  # a Normal(0, 2)'s 10/50/90% quantiles, about
    truth = np.broadcast_to(20 + spread, (4000, 3))
    blind = truth + rng.normal(0, 4, size=(4000, 1))  # shifted at random, window by window
    head = np.stack([truth, blind], 1)
    record = np.stack([blind, truth], 1)
    record[:100] = np.nan  # a book's first windows: no record to weigh
    weight, counts = l2_volume.fit_record_weight(head, record, y, np.ones(y.shape, bool), QUANTILES)
    assert counts == [3900, 3900]
    assert weight[0] >= 0.85 and weight[1] <= 0.15
    weight, _ = l2_volume.fit_record_weight(head, record, y, np.zeros(y.shape, bool), QUANTILES)
    assert list(weight) == [1.0, 1.0]  # nothing to choose on: the head alone


def test_out_of_fold_each_capture_is_served_by_a_head_fitted_on_the_others():
    x, y, *_ = _hurdle_sample(6000)
    groups = np.repeat([0, 1, 2], 2000)
    oof = l2_volume.out_of_fold(x, y, np.ones(y.shape, bool), groups, QUANTILES)
    k = groups == 1
    alone = l2_volume.fit(x[~k], y[~k], np.ones(y[~k].shape, bool))
    np.testing.assert_allclose(oof[k], l2_volume.predict(x[k], *alone, QUANTILES))


def test_a_format_13_checkpoint_loads_serving_its_head_alone(tmp_path):
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config)
    model.l2_volume_record_weight.fill_(0.3)
    d = as_format(checkpoint.save(model, config, {}, tmp_path / "old"), 13, lambda k: k == "l2_volume_record_weight")
    assert checkpoint.load(d)[0].l2_volume_record_weight.tolist() == [1.0, 1.0]


def test_finetune_fits_the_head_on_the_l2_windows_and_the_stage_refits_it_alone(l2_trained, tmp_path):
    from streams.cli import main

    path, d = l2_trained
    entry = json.loads((d / "fine" / "config.json").read_text())["l2_volume"]
    data = TrainData.load(path)
    real = int((data.arrays["seed"] < 0).sum())
    assert 0 < entry["windows"] <= real < len(data)  # the capture's windows, not the simulator's
    assert set(entry["crps_head"]) == set(entry["crps_network"]) == set(L2_VOLUME_TARGETS)
    fine, _, _ = checkpoint.load(d / "fine")
    assert bool(fine.l2_volume_fitted) and fine.l2_volume_coef.abs().sum() > 0

    assert main(["train", "--stage", "l2-volume", "--data", str(path), "--init", str(d / "fine"),
                 "--out", str(tmp_path / "refit"), "--device", "cpu"]) == 0  # fmt: skip
    refit, _, extra = checkpoint.load(tmp_path / "refit")
    for name, tensor in fine.state_dict().items():
        assert torch.allclose(refit.state_dict()[name].float(), tensor.float(), atol=1e-6), name  # the same fit
    assert extra["l2_volume"]["crps_network"] == entry["crps_network"]  # the network's own, the head set aside
    assert extra["l2_volume"]["record_weight"] == [1.0, 1.0]  # one capture: no other to choose the weight on


def test_a_worker_serves_the_volume_the_evaluation_scores(l2_trained, l2_held, tmp_path):
    """Fitted on three captures, the head gets a weight against each book's record; a forecaster fed a
    capture's windows (each carrying its book's record: orderbook/volume_record.py) serves the volume
    quantiles that `evaluate` computes on the dataset of the same windows (the record read off its targets)."""
    from model.evaluation.outputs import model_outputs
    from model.serving.orderflow import OrderFlowForecaster
    from model.training.dataset import CheckpointEncoding, capture_names, capture_source, load, replay_source, subset
    from streams.cli import main

    path, d = l2_trained
    out = tmp_path / "volume"
    assert main(["train", "--stage", "l2-volume", "--data", str(path), str(l2_held), "--init", str(d / "fine"),
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    model, config, extra = checkpoint.load(out)
    assert min(extra["l2_volume"]["record_windows"]) > 100  # chosen out of fold on the three captures
    model.l2_volume_record_weight.fill_(0.5)  # whatever the small fit chose: serve both, half each
    checkpoint.save(model, config, extra, out)

    capture = l2_held.parent / "usdm_ethusdt_20240808.gz"
    windows = replay_source(capture_source("binance", capture), CheckpointEncoding.of_checkpoint(out).config).windows
    forecaster = OrderFlowForecaster(out, device="cpu", cuda_graphs=False)
    served = np.concatenate([forecaster.predict(windows[i : i + 64]) for i in range(0, len(windows), 64)])

    held = load(l2_held)
    held = subset(held, capture_names(held.arrays, held.meta) == "usdm_ethusdt_20240808")
    outputs = model_outputs(out, held.arrays, held.meta, "model")
    assert len(held) == len(windows)
    record = outputs.l2_depth["volume_record"]
    assert np.isfinite(record).all(-1).mean() > 0.5
    model.l2_volume_record_weight.fill_(1.0)
    alone = model_outputs(checkpoint.save(model, config, extra, tmp_path / "alone"), held.arrays, held.meta, "head")
    for h, target in enumerate(L2_VOLUME_TARGETS):
        evaluated = outputs.quantiles[target][:, 1]
        np.testing.assert_allclose(np.log1p(served[f"volume_q50_h{target.rsplit('_h', 1)[1]}"]), evaluated, atol=1e-3)
        known = np.isfinite(record[:, h, 1]) & outputs.l2_depth["served"]
        head = alone.quantiles[target][known, 1]
        np.testing.assert_allclose(evaluated[known], (head + record[known, h, 1]) / 2, atol=1e-3)
        assert (np.abs(head - record[known, h, 1]) > 1e-2).mean() > 0.5  # two forecasts, not one
