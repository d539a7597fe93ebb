"""Mid-price direction (model.evaluation.direction): the metrics on hand-made cases, the model's class
probabilities from its quantiles, the baselines learning a planted signal, and `evaluate --direction`
writing the table for a tiny model on simulated seeds."""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from model.evaluation.direction import (
    AFTER_EARNINGS,
    DEEPLOB,
    MODEL,
    OFI,
    PRIOR,
    QI,
    QUANTILE_READING,
    bootstrap,
    brier,
    direction_labels,
    direction_rows,
    macro_auc,
    macro_f1,
    model_probs,
    paired_bootstrap,
    served_probs,
)
from orderbook.features import FEATURE_NAMES

pytest.importorskip("sklearn")
SEC = 1_000_000_000


def test_labels_use_the_stated_half_tick_threshold():
    assert direction_labels(np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 3.0])).tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_a_perfect_predictor_scores_f1_one_auc_one_brier_zero():
    y = np.array([0, 1, 2, 2, 1, 0, 1])
    p = np.eye(3)[y]
    assert macro_f1(y, p) == 1.0 and macro_auc(y, p) == 1.0 and brier(y, p) == 0.0
    v, lo, hi = bootstrap(y, p, macro_f1, n=50)
    assert v == lo == hi == 1.0


def test_the_paired_interval_sees_a_small_edge_that_the_two_marginal_intervals_hide():
    """Two forecasts of one noisy signal, one of them a little sharper: their own AUC intervals overlap,
    the interval of their difference on the same resamples lies above 0; a method against itself is 0."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    signal = np.eye(3)[y] + rng.normal(0.0, 1.6, (3000, 3))  # what both read
    sharp, blunt = signal + rng.normal(0.0, 0.3, (3000, 3)), signal + rng.normal(0.0, 0.6, (3000, 3))
    soft = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)  # noqa: E731
    a, b = soft(sharp), soft(blunt)
    _, a_lo, a_hi = bootstrap(y, a, macro_auc)
    _, b_lo, b_hi = bootstrap(y, b, macro_auc)
    assert a_lo < b_hi and b_lo < a_hi  # the marginal intervals overlap
    d, lo, hi = paired_bootstrap(y, a, b, macro_auc)
    assert d > 0 and lo > 0 and hi > lo
    assert paired_bootstrap(y, a, a, macro_auc) == (0.0, 0.0, 0.0)


def test_a_constant_predictor_has_auc_one_half_and_a_hand_computed_brier_and_f1():
    y = np.array([0, 1, 1, 2])
    p = np.tile([0.25, 0.5, 0.25], (4, 1))
    assert macro_auc(y, p) == 0.5
    # stationary windows: .25^2 + .5^2 + .25^2 = .375; the others: .75^2 + .5^2 + .25^2 = .875
    assert brier(y, p) == pytest.approx((2 * 0.375 + 2 * 0.875) / 4)
    # always "stationary": F1 of stationary 2*2/(2*2+2+0) = 2/3, of down and up 0 -> 2/9
    assert macro_f1(y, p) == pytest.approx(2 / 9)


def test_the_auc_draws_rank_once_and_equal_the_auc_of_each_resample():
    """draws() of macro_auc weighs the windows by how often a resample drew them; each draw equals
    macro_auc computed on that resample, ties (scores rounded to a few values) and a class some
    resamples miss (two windows of 60) included."""
    from model.evaluation.direction import draws

    rng = np.random.default_rng(3)
    y = np.r_[rng.integers(0, 2, 58), 2, 2]
    p = np.round(rng.dirichlet([1, 1, 1], 60), 1)
    fast = draws(y, p, macro_auc, n=300, seed=7)
    slow = draws(y, p, lambda a, b: macro_auc(a, b), n=300, seed=7)
    assert np.allclose(fast, slow, rtol=0, atol=1e-12)
    assert len(set(np.round(fast, 9))) > 50  # the resamples differ


def test_a_class_missing_from_the_outcomes_is_left_out_of_the_auc():
    y = np.array([1, 1, 2, 2])
    p = np.array([[0.0, 0.9, 0.1], [0.0, 0.8, 0.2], [0.0, 0.3, 0.7], [0.0, 0.1, 0.9]])
    assert macro_auc(y, p) == 1.0
    assert math.isnan(macro_auc(np.array([1, 1]), p[:2]))


def test_model_probs_read_the_quantile_cdf_and_the_served_pair_leaves_no_stationary_mass():
    q = np.array([[-0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    p = model_probs(q)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[0], [0.3, 0.4, 0.3], atol=1e-6)  # F(+-0.25) = .5 +- .2
    np.testing.assert_allclose(p[1], [0.1, 0.8, 0.1], atol=1e-6)  # a point forecast at 0: the flat tails
    np.testing.assert_allclose(p[2], [0.1, 0.0, 0.9], atol=1e-6)
    s = served_probs(q)
    np.testing.assert_allclose(s[:, 1], 0.0) and np.testing.assert_allclose(s[0], [0.5, 0.0, 0.5])


def _planted(n: int, seed: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """Windows whose newest row's queue imbalance and OFI decide the next mid move (with noise)."""
    f, t = len(FEATURE_NAMES), 4
    feats = rng.normal(0, 0.1, (n, t, f))
    signal = rng.uniform(-1, 1, n)
    qi, ofi = FEATURE_NAMES.index("queue_imbalance"), FEATURE_NAMES.index("ofi_1")
    feats[:, -1, qi] = signal
    feats[:, :, ofi] = signal[:, None] + rng.normal(0, 0.1, (n, t))
    move = np.where(signal > 0.33, 1.0, np.where(signal < -0.33, -1.0, 0.0))
    flip = rng.random(n) < 0.1
    move[flip] = rng.choice([-1.0, 0.0, 1.0], flip.sum())
    arrays = {
        "features": feats.astype(np.float32),
        "row_mask": np.ones((n, t), bool),
        "target_mask": np.ones((n, 2), bool),
        "mid_h10": move.astype(np.float32),
        "mid_h100": move.astype(np.float32),
        "seed": np.full(n, seed, np.int64),
        "label": np.zeros(n, np.int64),
    }
    meta = {"feature_mean": [0.0] * f, "feature_std": [1.0] * f, "horizons": [10, 100], "sources": []}
    return arrays, meta


def test_the_baselines_learn_a_planted_imbalance_signal_and_beat_the_prior():
    rng = np.random.default_rng(0)
    train = _planted(600, 1, rng)
    arrays, meta = _planted(300, 2, rng)
    rows = direction_rows(arrays, meta, train=train, n_boot=20, deeplob_steps=60)
    at = {(r["horizon"], r["method"]): r for r in rows if r["source"] == "all"}
    for h in (10, 100):
        assert at[(h, PRIOR)]["AUC"] == 0.5
        assert at[(h, DEEPLOB)]["AUC"] > 0.75 and at[(h, DEEPLOB)]["Brier"] < at[(h, PRIOR)]["Brier"]
        for m in (QI, OFI):
            assert at[(h, m)]["macro F1"] > 0.75 and at[(h, m)]["AUC"] > 0.85
            assert at[(h, m)]["Brier"] < at[(h, PRIOR)]["Brier"] and at[(h, m)]["AUC lo"] > 0.5


def test_without_a_training_file_the_baselines_are_cross_fitted_over_seeds():
    rng = np.random.default_rng(1)
    parts = [_planted(200, s, rng) for s in (3, 4)]
    arrays = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    rows = direction_rows(arrays, parts[0][1], n_boot=10, deeplob_steps=0)
    qi = [r for r in rows if r["method"] == QI and r["horizon"] == 10]
    assert {r["source"] for r in qi} == {"all", "seed (3)", "seed (4)"} and DEEPLOB not in {r["method"] for r in rows}
    assert all(r["n"] == 200 for r in qi if r["source"] != "all") and qi[0]["AUC"] > 0.85


def test_windows_after_earnings_headlines_are_scored_apart():
    rng = np.random.default_rng(2)
    train = _planted(300, 1, rng)
    arrays, meta = _planted(200, 2, rng)
    arrays["news_kind"] = np.zeros(200, np.int64)
    arrays["news_kind"][:30] = 1  # "misses Q3 earnings"
    arrays["news_kind"][30:50] = 2  # "beats Q3 earnings"
    arrays["news_kind"][50:90] = 4  # neutral: not an earnings headline
    rows = direction_rows(arrays, meta, train=train, n_boot=5, deeplob_steps=0)
    after = [r for r in rows if r["source"] == AFTER_EARNINGS and r["horizon"] == 10]
    assert after and all(r["n"] == 50 for r in after)
    del arrays["news_kind"]
    rows = direction_rows(arrays, meta, train=train, n_boot=5, deeplob_steps=0)
    assert AFTER_EARNINGS not in {r["source"] for r in rows}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three one-symbol simulated seeds; a tiny model trained (3 steps) on seed 1; seeds 2 and 3 held out."""
    pytest.importorskip("torch")
    from model.sim.engine import SimConfig
    from model.training.dataset import build, save, sim_source, split_by_seed
    from model.training.train import train

    d = tmp_path_factory.mktemp("direction")
    cfgs = [SimConfig(n_symbols=1, duration_ns=120 * SEC, seed=s) for s in (1, 2, 3)]
    train_ds, held = split_by_seed(build([sim_source(c) for c in cfgs]), [2, 3])
    save(train_ds, d / "train.npz")
    save(held, d / "held.npz")
    train("finetune", d / "train.npz", d / "ckpt", steps=3, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return d


def test_evaluate_direction_writes_the_table_for_a_tiny_model(tiny, capsys):
    from streams.cli.evaluate import register

    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["evaluate", "--data", str(tiny / "held.npz"), "--model", f"generative:{tiny / 'ckpt'}",
                         "--out", str(tiny / "out"), "--direction", "--direction-steps", "5"])  # fmt: skip
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "# Mid-price direction" in printed and "|mid move| < 0.5 tick" in printed
    md = (tiny / "out" / "direction.md").read_text()
    assert str(tiny / "train.npz") in md  # fitted on the checkpoint's training file
    with open(tiny / "out" / "direction.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    assert {MODEL, QUANTILE_READING, PRIOR, QI, OFI, DEEPLOB} <= methods  # finetune fitted the head
    assert {r["source"] for r in rows} >= {"all"} and {r["horizon"] for r in rows} == {"10", "100"}
    model = next(r for r in rows if r["method"] == MODEL and r["source"] == "all" and r["horizon"] == "10")
    assert int(model["n"]) > 0 and 0.0 <= float(model["Brier"]) <= 2.0


def test_evaluate_direction_refuses_a_training_file_holding_evaluated_seeds(tiny):
    from model.evaluation.evaluate import evaluate

    with pytest.raises(ValueError, match="not held out"):
        evaluate(tiny / "held.npz", [], tiny / "seen", direction=True, direction_train=tiny / "held.npz",
                 direction_steps=0)  # fmt: skip
