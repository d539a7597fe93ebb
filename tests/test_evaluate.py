"""Held-out evaluation: each metric against hand-computed values and scikit-learn's, the isolation forest
on a synthetic cloud, the baselines equal to model.serving.baseline's, the report's model card, and
`evaluate` end to end with a tiny trained model."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np
import pytest

from model.evaluation.baselines import VOLUME_MIN_KNOWN, isolation_forest_scores, volume_levels, zscore_anomaly
from model.evaluation.evaluate import TARGETS
from model.evaluation.metrics import (
    auroc,
    average_precision,
    coverage,
    crps_quantiles,
    gain_intervals,
    paired_difference,
    perplexity,
    pinball,
    roc_curve,
)
from model.evaluation.report import seed_ranges, sources_summary
from model.inputs import FeatureNorm
from model.serving.baseline import BaselineForecaster, level_forecasts

# --------------------------------------------------------------------------- ranking


def test_auroc_of_a_hand_example():
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, 0.1) win, (0.8, 0.4) win -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auroc_counts_a_tie_as_half_a_win():
    # pos {1, 3}, neg {1, 2}: (1 vs 1) tie 0.5, (1 vs 2) 0, (3 vs 1) 1, (3 vs 2) 1 -> 2.5 / 4
    assert auroc([1, 1, 2, 3], [0, 1, 0, 1]) == pytest.approx(0.625)
    assert auroc([5, 5, 5, 5], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_auroc_is_perfect_inverted_and_undefined_where_it_should_be():
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert math.isnan(auroc([1, 2], [0, 0]))


def test_average_precision_of_a_hand_example():
    # descending: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> .5*1 + .5*2/3
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5 + 1 / 3)


def test_average_precision_takes_a_tie_group_at_once():
    # thresholds 3: P=1 R=.5; 2: P=.5 R=.5; 1 (a tied pos and neg): P=.5 R=1 -> .5*1 + 0 + .5*.5
    assert average_precision([1, 1, 2, 3], [0, 1, 0, 1]) == pytest.approx(0.75)
    # all tied: one threshold, precision = prevalence
    assert average_precision([2, 2, 2, 2], [0, 1, 0, 0]) == pytest.approx(0.25)
    assert math.isnan(average_precision([1, 2], [0, 0]))


def test_roc_curve_runs_from_the_origin_to_the_corner_through_each_threshold():
    fpr, tpr = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)  # the area is the AUROC


def test_roc_curve_of_an_empty_class_stays_at_zero_rate():
    fpr, tpr = roc_curve(np.array([0.2, 0.9]), np.array([1, 1]))  # no negatives: fpr 0/0
    assert fpr.tolist() == [0.0, 0.0, 0.0] and tpr.tolist() == [0.0, 0.5, 1.0]


def _pairwise_auroc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _threshold_ap(s: np.ndarray, y: np.ndarray) -> float:
    """sum over distinct thresholds, highest first, of (recall gained) x precision at scores >= threshold."""
    ap, recall_before = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        flagged = s >= t
        recall = (flagged & y).sum() / y.sum()
        ap += (recall - recall_before) * (flagged & y).sum() / flagged.sum()
        recall_before = recall
    return ap


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_average_precision_follow_their_definitions_on_heavily_tied_scores(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 4, size=200).astype(float)  # four distinct values: ties everywhere
    y = rng.random(200) < 0.2 + 0.1 * s  # higher scores are more often positive
    assert auroc(s, y) == pytest.approx(_pairwise_auroc(s, y), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(_threshold_ap(s, y), abs=1e-12)


@pytest.mark.parametrize("distinct", [3, 50, None])
def test_auroc_from_ranks_is_scikit_learns_roc_auc(distinct):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(distinct or 0)
    for n in (2, 7, 500):
        s = rng.random(n) if distinct is None else rng.integers(0, distinct, n).astype(float)
        y = np.r_[True, False, rng.random(n - 2) < 0.3]
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_refuses_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, math.nan, 0.3], [0, 1, 1])


# --------------------------------------------------------------------------- forecasts


def test_pinball_of_a_hand_example():
    # u = y - q = -1, 0, 1; tau .1: max(.1u, -.9u) = .9, 0, .1
    assert pinball(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), 0.1) == pytest.approx(1 / 3)
    assert pinball(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), 0.5) == pytest.approx(1 / 3)


def test_crps_from_three_quantiles_by_hand_and_a_point_forecasts_crps_is_its_mae():
    # y = 0, q = (-1, 0, 1): pinball .1, 0, .1 -> 2/3 * .2
    assert crps_quantiles(np.zeros(1), np.array([[-1.0, 0.0, 1.0]])) == pytest.approx(0.4 / 3)
    y, x = np.array([0.0, 3.0, -2.0]), np.array([1.0, 1.0, 1.0])
    assert crps_quantiles(y, np.repeat(x[:, None], 3, axis=1)) == pytest.approx(np.mean(np.abs(y - x)))


def test_paired_difference_sees_a_small_shift_that_the_spread_of_the_values_hides():
    rng = np.random.default_rng(3)
    hard = rng.exponential(10.0, 400)  # what both forecasts find hard varies 10x more than the shift
    better, worse = hard, hard + 0.1 + rng.normal(0.0, 0.05, 400)
    mean, lo, hi = paired_difference(worse, better)
    assert mean == pytest.approx(0.1, abs=0.01) and 0 < lo < mean < hi
    mean, lo, hi = paired_difference(better + rng.normal(0.0, 0.05, 400), better)  # no difference: 0 inside
    assert lo < 0 < hi
    assert all(math.isnan(v) for v in paired_difference(np.zeros(0), np.zeros(0)))


def test_gain_intervals_are_exact_where_every_resample_gives_the_same_gain():
    ref = np.random.default_rng(0).exponential(size=300)
    ci = gain_intervals(np.stack([ref, 0.5 * ref]), np.stack([ref, 2 * ref]))
    assert ci == pytest.approx(np.array([[0.0, 0.0], [0.5, 0.5]]), abs=1e-12)


def test_gain_intervals_cover_the_true_gain_about_95_times_in_100():
    """A model 20% better than the best of two references in expectation, on heavy-tailed scores: over
    150 datasets drawn afresh, the interval holds 0.2 about 95% of the time."""
    rng = np.random.default_rng(1)
    held = 0
    for _ in range(150):
        ref = rng.exponential(size=400)
        model = ref * rng.uniform(0.6, 1.0, size=400)  # E = 0.8 E[ref]
        ((lo, hi),) = gain_intervals(model[None], np.stack([ref, 1.5 * rng.exponential(size=400)]), n_boot=400)
        held += lo <= 0.2 <= hi
    assert 0.88 <= held / 150 <= 0.99


def test_gain_intervals_leave_out_windows_with_a_missing_score():
    ref = np.r_[np.random.default_rng(2).exponential(size=50), np.nan]
    ((lo, hi),) = gain_intervals(0.5 * ref[None], ref[None])
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    assert np.isnan(gain_intervals(np.ones((1, 1)), np.ones((1, 1)))).all()


def test_the_quantile_approximation_converges_to_the_exact_crps_of_a_normal():
    from statistics import NormalDist

    taus = np.arange(1, 100) / 100
    q = np.array([[NormalDist().inv_cdf(t) for t in taus]])
    exact = 2 * NormalDist().pdf(0.0) - 1 / math.sqrt(math.pi)  # CRPS(N(0,1), 0), Gneiting & Raftery eq. 21
    assert crps_quantiles(np.zeros(1), q, taus) == pytest.approx(exact, rel=0.03)


def test_coverage_counts_outcomes_at_or_below_the_quantile():
    assert coverage(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0])) == 0.5
    assert math.isnan(coverage(np.zeros(0), np.zeros(0)))
    # a whole-tick outcome equal to the forecast but for float32 rounding is covered
    assert coverage(np.array([5.0]), np.array([np.float32(5.0) - np.float32(4e-7)])) == 1.0
    assert coverage(np.array([5.01]), np.array([5.0])) == 0.0


def test_perplexity_of_a_uniform_guess_is_the_number_of_choices():
    nll = np.full((2, 3), math.log(4.0))
    nll[1, 2] = 99.0  # a padded pair: not counted
    valid = np.array([[True, True, True], [True, True, False]])
    assert perplexity(nll, valid) == pytest.approx(4.0)


# --------------------------------------------------------------------------- isolation forest


def test_isolation_forest_scores_injected_outliers_above_the_inliers():
    rng = np.random.default_rng(3)
    inliers = rng.normal(size=(600, 5))
    outliers = rng.normal(size=(12, 5)) * 0.3 + 6.0 * rng.choice([-1, 1], size=(12, 5))
    x = np.concatenate([inliers, outliers])
    s = isolation_forest_scores(x, n_trees=50, seed=0)
    assert np.all((s > 0) & (s <= 1))
    assert s[600:].min() > np.quantile(s[:600], 0.95)
    assert auroc(s, np.r_[np.zeros(600), np.ones(12)]) > 0.99


def test_isolation_forest_flags_a_single_far_point_as_the_most_anomalous():
    x = np.random.default_rng(5).normal(size=(400, 4))
    x[123] = [9.0, -9.0, 9.0, -9.0]
    s = isolation_forest_scores(x)
    assert int(np.argmax(s)) == 123 and s[123] > 0.6 > np.median(s)


def test_isolation_forest_is_seeded():
    x = np.random.default_rng(0).normal(size=(300, 3))
    a = isolation_forest_scores(x, n_trees=10, seed=4)
    assert np.array_equal(a, isolation_forest_scores(x, n_trees=10, seed=4))
    assert not np.array_equal(a, isolation_forest_scores(x, n_trees=10, seed=5))


# --------------------------------------------------------------------------- baselines on dataset rows


def test_level_baseline_is_model_baselines_own_and_persistence_is_the_last_value():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 2.0, size=(20, 32))
    x[3, -4:] = np.nan  # gaps: a one-sided book
    x[7] = np.nan
    got = level_forecasts(x)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN window
        want = np.stack(BaselineForecaster()._levels(x), axis=1)
    assert np.allclose(got["baseline"], want, equal_nan=True)
    assert np.allclose(
        got["persistence"][:, 1], np.r_[x[:3, -1], x[3, -5], x[4:7, -1], np.nan, x[8:, -1]], equal_nan=True
    )
    assert np.all(got["ewma"][~np.isnan(got["ewma"][:, 0])] >= 0)


def test_volume_levels_read_only_the_books_volumes_realized_by_the_windows_end():
    """Persistence is the latest volume whose horizon had ended (message + h <= the window's), the EWMA's
    quantiles are those of the realized ones; a window's own future and another book's never count."""
    n, h = 40, 3
    message = np.arange(n) * 2  # a window every second message: 2 windows later the horizon has ended
    volume = np.arange(n, dtype=np.float64)
    arrays = {"seed": np.r_[np.full(n, 1), np.full(n, 1)], "symbol": np.r_[np.full(n, "A"), np.full(n, "B")],
              "message": np.r_[message, message], "volume_h3": np.r_[volume, volume + 1000.0]}  # fmt: skip
    shuffle = np.random.default_rng(0).permutation(2 * n)  # the windows' order in the file does not matter
    last, ewma = volume_levels({k: v[shuffle] for k, v in arrays.items()}, h, halflife=1e9)
    last, ewma = last[np.argsort(shuffle)], ewma[np.argsort(shuffle)]
    first = VOLUME_MIN_KNOWN + 1  # window i knows windows 0..i-2: i - 1 of them
    assert np.isnan(last[:first]).all() and np.isnan(ewma[:first]).all()
    for i in range(first, n):
        assert last[i, 0] == last[i, 2] == i - 2
        assert np.quantile(volume[: i - 1], 0.4) <= ewma[i, 1] <= np.quantile(volume[: i - 1], 0.6)
        assert last[n + i, 0] == 1000.0 + i - 2  # book B: its own record alone
    assert (np.diff(ewma[first:n], axis=1) >= 0).all()
    _, recent = volume_levels(arrays, h, halflife=0.01)  # the newest realized volume outweighs the rest
    assert (recent[first:n] == (np.arange(first, n) - 2)[:, None]).all()


def test_zscore_anomaly_and_feature_norm_invert_give_the_baseline_forecasters_score():
    from orderbook.features import FEATURE_NAMES

    rng = np.random.default_rng(2)
    raw = rng.normal(1.0, 0.3, size=(6, 32, len(FEATURE_NAMES)))
    raw[2, -1, FEATURE_NAMES.index("log_trade_rate")] = 8.0  # a burst in the last row
    rows = np.ones((6, 32), bool)
    rows[4, :30] = False  # too few rows to score
    mean, std = raw.reshape(-1, raw.shape[-1]).mean(0), raw.reshape(-1, raw.shape[-1]).std(0)
    norm = FeatureNorm(mean, std)
    back = norm.invert(norm.apply(raw, rows), rows)
    assert np.allclose(back[rows], raw[rows], atol=1e-5) and np.isnan(back[~rows]).all()
    want, _ = BaselineForecaster._anomaly(np.where(rows[..., None], raw, 0.0), rows)
    got = zscore_anomaly(back, rows)
    assert np.allclose(got, want, atol=1e-6)
    assert got[2] > 0.999 and got[4] == 0.0


# --------------------------------------------------------------------------- report


def test_seed_ranges_join_consecutive_seeds():
    assert seed_ranges([10, 9, -2, 21, 22, 23, 40]) == "-2, 9-10, 21-23, 40"
    assert seed_ranges([-6, -5, -4, -1, 0, 1]) == "-6 to -4, -1 to 1"
    assert seed_ranges([]) == "none"


def test_sources_summary_gives_simulated_seeds_and_real_captures_by_name():
    sources = [
        {"name": "sim:itch:seed=1", "seed": 1, "windows": 10},
        {"name": "sim:itch:seed=2", "seed": 2, "windows": 5},
        {"name": "real:binance/eth.gz", "seed": -1, "windows": 7},
    ]
    assert sources_summary(sources) == "2 simulated (seeds 1-2); 1 real: binance/eth.gz (seed -1); 22 windows"


# --------------------------------------------------------------------------- end to end

torch = pytest.importorskip("torch")
SEC = 1_000_000_000
ALL = {k: 8.0 for k in ("spoofing", "quote_stuffing", "flash_crash", "layering")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A two-seed dataset; a tiny model trained (5 steps) on seed 1; seed 2 held out."""
    from model.sim.engine import SimConfig
    from model.training.dataset import build, save, sim_source, split_by_seed
    from model.training.train import train

    d = tmp_path_factory.mktemp("eval")
    cfgs = [SimConfig(n_symbols=2, duration_ns=240 * SEC, seed=s, anomaly_rates=ALL, news_rate=10) for s in (1, 2)]
    train_ds, held = split_by_seed(build([sim_source(c) for c in cfgs]), [2])
    save(train_ds, d / "train.npz")
    save(held, d / "held.npz")
    train("finetune", d / "train.npz", d / "ckpt", steps=5, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    return d


def _png_ok(path) -> bool:
    import matplotlib.image

    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).shape[0] > 100


def test_evaluate_writes_the_table_and_plots_for_a_tiny_model(tiny):
    from model.evaluation.evaluate import TARGETS, evaluate

    ev = evaluate(tiny / "held.npz", [tiny / "ckpt"], tiny / "out")
    md = (tiny / "out" / "evaluation.md").read_text()
    assert "windows of seeds 2;" in md and "| trained on seeds | 1 |" in md
    assert "| evaluated seeds seen in training | none |" in md
    for name in ("AUROC", "CRPS", "pinball", "coverage", "perplexity", "isolation forest", "z-score", "persistence"):
        assert name in md
    assert _png_ok(tiny / "out" / "roc.png") and _png_ok(tiny / "out" / "calibration.png")
    metrics = json.loads((tiny / "out" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert metrics["seeds"] == [2] and metrics["models"][0]["train_seeds"] == [1]
    auc, ap = ev.anomaly["overall"]["model"]
    assert 0.0 <= auc <= 1.0 and 0.0 <= ap <= 1.0
    assert all(math.isfinite(ev.crps[t]["model"]) for t in TARGETS)
    assert ev.crps["spread_h10"]["persistence"] > 0 and 1.0 < ev.perplexity["model"]["all"] < math.inf
    # each gain with its interval, which holds the gain measured: in the table and in metrics.json, per part too
    lo, hi = ev.gain_ci["depth_h10"]["model"]
    best = min(ev.crps["depth_h10"][m] for m in ("persistence", "ewma", "har"))
    assert lo <= 1 - ev.crps["depth_h10"]["model"] / best <= hi
    assert f"% [{100 * lo:+.1f}, {100 * hi:+.1f}] |" in md
    assert set(metrics["parts"]["simulated"]["gain_ci"]["spread_h100"]) >= {"model", "model anchor"}
    # the liquidity metrics leave out windows without a target
    import model.training.dataset as dataset

    held = dataset.load(tiny / "held.npz")
    assert ev.n_liquidity["spread_h100"] == int(held.arrays["target_mask"][:, 1].sum()) < len(held)


def test_evaluate_writes_a_model_card_read_from_the_checkpoint(tiny):
    from model.evaluation.evaluate import evaluate
    from model.network import checkpoint

    ev = evaluate(tiny / "held.npz", [tiny / "ckpt"], tiny / "card")
    net, config, _ = checkpoint.load(tiny / "ckpt")
    chain = sum(p.numel() for p in net.event_chain.parameters())  # fitted at the finetune's end
    parameters = sum(p.numel() for p in net.parameters()) - chain
    card = ev.models[0]
    assert card["parameters"] == parameters and card["event_chain_parameters"] == chain > 0
    assert card["preset"] == "tiny"
    assert card["architecture"]["d_model"] == config.d_model and card["inputs"] == ["events", "book rows", "headlines"]
    assert card["training"]["stage"] == "finetune" and card["training"]["step"] == card["training"]["steps"] == 5
    assert [s["seed"] for s in card["training_sources"]] == [1]
    md = (tiny / "card" / "evaluation.md").read_text()
    assert f"| parameters | {parameters:,} (and {chain:,} in the scenarios' event chain) |" in md
    assert "| preset | tiny: width 32, 1 layer, 2 heads, feed-forward x2 |" in md
    assert "finetune, step 5 of 5, batch 8" in md and "1 simulated (seeds 1)" in md
    assert json.loads((tiny / "card" / "metrics.json").read_text())["models"][0]["parameters"] == parameters


def test_the_card_counts_a_fitted_event_chain_apart_from_the_network():
    """The parameters row is the network's (as training, the scaling study and the GPU bench count them);
    the scenario generator's event chain is named beside it once fitted, and not at all before."""
    pytest.importorskip("torch")
    from model.evaluation.outputs import model_card
    from model.evaluation.report import _card_rows
    from model.network.orderflow import ModelConfig, OrderFlowModel

    config = ModelConfig.tiny()
    net = OrderFlowModel(config)
    chain = sum(p.numel() for p in net.event_chain.parameters())
    assert model_card(net, config, {}, None)["event_chain_parameters"] is None
    net.event_chain.fitted.fill_(True)
    card = model_card(net, config, {}, None) | {"directory": "x"}
    assert card["parameters"] == net.num_parameters() == sum(p.numel() for p in net.parameters()) - chain
    assert card["event_chain_parameters"] == chain > 0
    rows = {r[0]: r[1] for r in _card_rows([card], [])}
    assert rows["parameters"] == f"{net.num_parameters():,} (and {chain:,} in the scenarios' event chain)"


def test_evaluate_compares_several_models_side_by_side(tiny):
    from model.evaluation.evaluate import evaluate

    ev = evaluate(tiny / "held.npz", [tiny / "ckpt", tiny / "ckpt"], tiny / "two", names=["full", "no-text"])
    assert {"full", "no-text"} <= set(ev.anomaly["overall"]) and {"full", "no-text"} <= set(ev.crps["mid_h10"])
    md = (tiny / "two" / "evaluation.md").read_text()
    assert "| full |" in md and "## Ablations: paired differences against `full`" in md
    assert ev.ablations["all"]["no-text"]["spread_h10"] == [0.0, 0.0, 0.0]  # the same checkpoint twice
    assert set(ev.ablations["all"]["no-text"]) == {*TARGETS, "nll"}


def test_evaluate_refuses_seeds_the_model_was_trained_on(tiny):
    from model.evaluation.evaluate import evaluate

    with pytest.raises(ValueError, match="trained on seeds \\[1\\]"):
        evaluate(tiny / "train.npz", [tiny / "ckpt"], tiny / "seen")


def test_evaluate_refuses_windows_tokenized_by_another_tokenizer(tiny):
    from model.evaluation.evaluate import evaluate
    from model.sim.engine import SimConfig
    from model.training.dataset import build, save, sim_source

    path, _ = save(build([sim_source(SimConfig(n_symbols=1, duration_ns=120 * SEC, seed=9))]), tiny / "other.npz")
    with pytest.raises(ValueError, match=r"differ in tokenizer.*dataset --like"):
        evaluate(path, [tiny / "ckpt"], tiny / "other")


def test_evaluate_command_prints_the_table(tiny, capsys):
    from streams.cli.evaluate import register

    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["evaluate", "--data", str(tiny / "held.npz"), "--model", f"generative:{tiny / 'ckpt'}",
                         "--out", str(tiny / "cli")])  # fmt: skip
    assert args.run(args) == 0
    assert "## Anomalies" in capsys.readouterr().out and (tiny / "cli" / "evaluation.md").is_file()


def test_each_real_instrument_is_a_part_of_its_own_when_there_are_several():
    from model.evaluation.evaluate import per_instrument

    seeds = np.array([3, -1, -1, -7, 3, -7, -7])
    meta = {"sources": [{"seed": -1, "name": "real:binance-hftbacktest/spot_ethusdt_20240808.gz"},
                        {"seed": -7, "name": "capture:binance:../data/cm_btcusd_perp_20240808.gz"}]}  # fmt: skip
    parts = per_instrument({"seed": seeds}, meta)
    assert list(parts) == ["real cm_btcusd_perp_20240808.gz", "real spot_ethusdt_20240808.gz"]
    assert parts["real cm_btcusd_perp_20240808.gz"].sum() == 3 and parts["real spot_ethusdt_20240808.gz"].sum() == 2
    assert per_instrument({"seed": np.array([3, -1, -1])}, meta) == {}  # one instrument: the "real" part says it
