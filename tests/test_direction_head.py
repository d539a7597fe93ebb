"""The mid-direction head (model/network/direction.py): fitted on a frozen network after training, it
is what p_up / p_down are served from; fitting it changes no other output, and a checkpoint written
before it existed loads unfitted and serves what it served."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.evaluation.direction import macro_auc  # noqa: E402
from model.network import checkpoint, direction  # noqa: E402
from model.network.direction import direction_labels, fit, window_weights  # noqa: E402
from model.network.orderflow import to_batch  # noqa: E402
from model.serving.orderflow import OrderFlowForecaster, prob_above_zero  # noqa: E402
from model.sim.engine import SimConfig  # noqa: E402
from model.training.dataset import build, save, sim_source  # noqa: E402
from model.training.train import fit_head, train  # noqa: E402

SEC = 1_000_000_000


def imbalance_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """States whose first column (an imbalance) sets the odds of the next move, as a one-tick book's
    queue imbalance does; the other columns are noise at scales far from 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)) * np.array([1.0, 50.0, 0.01, 3.0, 1.0, 1e3]) + np.array([0, 7, 0, -2, 0, 5e3])
    logits = np.stack([-2.0 * x[:, 0], np.full(n, 0.5), 2.0 * x[:, 0]], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    moves = np.array([-1.0, 0.0, 1.0])[y]
    return x, moves


def test_the_fit_finds_the_imbalance_on_unseen_windows_and_beats_the_prior():
    x, moves = imbalance_world(4000, seed=1)
    w, b, report = fit(x, moves[:, None], np.ones((len(x), 1), bool), np.zeros(len(x), bool))
    assert report["0"]["log_loss"] < report["0"]["log_loss_prior"] - 0.1
    x_new, moves_new = imbalance_world(2000, seed=2)
    logits = x_new @ w.T + b  # the standardization is folded into W and b: raw inputs in
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert macro_auc(direction_labels(moves_new), p) > 0.8
    assert np.argmax(np.abs(w[2] * x.std(0))) == 0  # per unit of spread, the up class reads the imbalance


def test_the_penalty_is_the_one_that_does_best_on_captures_left_out():
    """Few windows per capture and many columns of noise: the fit overfits at a small penalty, which the
    captures left out show; with plenty of windows and a strong signal the smallest penalty does best."""
    rng = np.random.default_rng(3)
    x, moves = imbalance_world(600, seed=4)
    wide = np.concatenate([x, rng.normal(size=(len(x), 120))], 1)
    y, groups, real = direction_labels(moves), np.repeat([-1, -2, -3], 200), np.ones(len(x), bool)
    l2, losses = direction.choose_penalty(wide, y, groups, real)
    assert l2 == max(direction.PENALTIES) and set(losses) == {f"{p:g}" for p in direction.PENALTIES}
    assert losses[f"{l2:g}"] == min(losses.values()) < losses["0.001"]
    x, moves = imbalance_world(6000, seed=5)
    l2, _ = direction.choose_penalty(x, direction_labels(moves), np.repeat([-1, -2, -3], 2000), real.repeat(10))
    assert l2 == min(direction.PENALTIES)


def test_too_few_captures_to_leave_out_keep_the_default_penalty():
    x, moves = imbalance_world(600, seed=6)
    y, real = direction_labels(moves), np.ones(len(x), bool)
    assert direction.choose_penalty(x, y, np.repeat([-1, -2], [550, 50]), real) == (direction.L2, {})


def test_real_and_simulated_windows_weigh_half_each():
    real = np.array([True] * 10 + [False] * 90)
    wts = window_weights(real)
    assert wts.mean() == pytest.approx(1.0) and wts[real].sum() == pytest.approx(wts[~real].sum())
    assert np.all(window_weights(np.zeros(5, bool)) == 1.0)


def test_labels_follow_the_stated_threshold():
    assert direction_labels(np.array([-1.0, -0.5, -0.49, 0.0, 0.49, 0.5, 3.0])).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert direction.THRESHOLD_TICKS == 0.5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("dirhead")
    path, _ = save(build([sim_source(SimConfig(n_symbols=2, duration_ns=240 * SEC, seed=5))]), d / "train.npz")
    train("finetune", path, d / "fine", steps=6, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return path, d


def windows_of(n: int = 48):
    from streams.pipeline import simulated_windows

    return simulated_windows(SimConfig(n_symbols=2, duration_ns=90 * SEC, seed=8))[:n]


def test_finetune_fits_the_head_and_serves_p_up_p_down_from_it(trained):
    _, d = trained
    extra = json.loads((d / "fine" / "config.json").read_text())
    assert set(extra["direction"]) >= {"h10", "h100"}
    f = OrderFlowForecaster(d / "fine", device="cpu")
    assert f.direction_fitted
    windows = windows_of()
    preds = f.predict(windows)
    with torch.no_grad():
        batch = f.model.score(to_batch(f.arrays(windows), "cpu"))["direction"]
    for i, h in enumerate((10, 100)):
        up, down = preds[f"p_up_h{h}"], preds[f"p_down_h{h}"]
        assert np.all(up >= 0) and np.all(down >= 0) and np.all(up + down <= 1 + 1e-6)
        np.testing.assert_allclose(up, batch[:, i, 2].numpy(), rtol=1e-6)
        np.testing.assert_allclose(down, batch[:, i, 0].numpy(), rtol=1e-6)


def test_fitting_the_head_alone_changes_no_other_output_and_an_older_checkpoint_serves_as_before(trained, tmp_path):
    data_path, d = trained
    # a format-4 checkpoint: the same weights less the head, as written before the head existed
    model, config, extra = checkpoint.load(d / "fine")
    old = tmp_path / "old"
    old.mkdir()
    later = ("direction_", "l2_depth_", "l2_direction_")  # formats 5, 6, 7
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(later)}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(old / checkpoint.WEIGHTS), {"format": "4"})
    extra.pop("direction")
    extra.pop("l2_depth")
    (old / checkpoint.CONFIG).write_text(json.dumps({"format": 4, "model": config.to_json(), **extra}))

    before = OrderFlowForecaster(old, device="cpu")
    assert not before.direction_fitted
    windows = windows_of()
    p_old = before.predict(windows)
    for h in (10, 100):  # unfitted: read off the mid quantiles, as it served them
        up, down = prob_above_zero(p_old[f"mid_q10_h{h}"], p_old[f"mid_q50_h{h}"], p_old[f"mid_q90_h{h}"])
        np.testing.assert_array_equal(p_old[f"p_up_h{h}"], up)
        np.testing.assert_array_equal(p_old[f"p_down_h{h}"], down)

    fit_head("direction", old, data_path, tmp_path / "new", device="cpu")
    after = OrderFlowForecaster(tmp_path / "new", device="cpu")
    assert after.direction_fitted
    p_new = after.predict(windows)
    untouched = [n for n in p_old.dtype.names if not n.startswith(("p_up", "p_down"))]
    for name in untouched:
        np.testing.assert_array_equal(p_new[name], p_old[name], err_msg=name)
    assert not np.array_equal(p_new["p_up_h10"], p_old["p_up_h10"])


def test_the_direction_stage_needs_a_checkpoint_to_start_from(trained, tmp_path, capsys):
    from streams.cli import main

    data_path, _ = trained
    assert main(["train", "--stage", "direction", "--data", str(data_path), "--out", str(tmp_path / "x")]) == 2
    assert "--init" in capsys.readouterr().err and not (tmp_path / "x").exists()
