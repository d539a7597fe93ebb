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
    from safetensors.torch import load_file, save_file

    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config)
    model.l2_volume_fitted.fill_(True)
    d = checkpoint.save(model, config, {}, tmp_path / "old")
    tensors = {k: v for k, v in load_file(str(d / checkpoint.WEIGHTS)).items() if not k.startswith("l2_volume_")}
    save_file(tensors, str(d / checkpoint.WEIGHTS))
    meta = json.loads((d / checkpoint.CONFIG).read_text())
    (d / checkpoint.CONFIG).write_text(json.dumps(meta | {"format": 11}))
    assert not bool(checkpoint.load(d)[0].l2_volume_fitted)


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
