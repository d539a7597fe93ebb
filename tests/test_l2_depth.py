"""The depth head of L2 books (model/network/l2_depth.py): its fit, what it serves and to which
windows, and its place at the end of a finetune run and as `train --stage l2-depth`."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint, l2_depth  # noqa: E402
from model.network.orderflow import (  # noqa: E402
    L2_DEPTH_INPUTS,
    L2_DEPTH_TARGETS,
    L2_VOLUME_TARGETS,
    TARGETS,
    ModelConfig,
    OrderFlowModel,
    to_batch,
)
from model.training.train import TrainData  # noqa: E402
from orderbook.events import Kind  # noqa: E402
from orderbook.features import FEATURE_NAMES  # noqa: E402

SEC = 1_000_000_000

# the research probes' smoke runs (bench/*_probe.py), a minute together: make soak
probe_smoke = pytest.mark.soak


def test_the_fit_finds_a_linear_quantile_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, L2_DEPTH_INPUTS)).astype(np.float32)
    median = rng.uniform(3, 6, 4000).astype(np.float32)
    y = median + 0.5 * x[:, 0] + rng.normal(scale=0.3, size=4000)  # q10 / q90: -/+ 1.2816 * 0.3
    weight, bias = l2_depth.fit(x, median, np.stack([y, y], 1), np.ones((4000, 2), bool))
    assert weight.shape == (2, L2_DEPTH_INPUTS, 3) and bias.shape == (2, 3)
    assert weight[0, 0] == pytest.approx([0.5, 0.5, 0.5], abs=0.05)
    assert np.abs(weight[0, 1:]).max() < 0.05
    assert bias[0] == pytest.approx([-0.384, 0.0, 0.384], abs=0.05)


def test_the_fit_ignores_rows_of_weight_zero_and_ties_at_the_start_do_not_stall_it():
    """Rows weighed 0 (here a shifted copy) leave the fit as without them; y of 0, which the start's zero
    prediction ties (a depth that did not move), still give the quantiles of the relation."""
    from model.network import quantile_regression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    y = np.where(rng.random(3000) < 0.5, 0.0, x[:, 1] + rng.normal(scale=0.2, size=3000)).astype(np.float32)
    w, b = quantile_regression.fit(np.concatenate([x, x]), np.concatenate([y, y + 100]), np.repeat([1.0, 0.0], 3000))
    alone = quantile_regression.fit(x, y)
    assert np.abs(w - alone[0]).max() < 0.02 and np.abs(b - alone[1]).max() < 0.02
    assert b[1] == pytest.approx(0.0, abs=0.05) and w[1, 2] > 0.3  # the median at 0, the upper end follows x


def test_a_target_without_a_known_depth_is_refused():
    with pytest.raises(ValueError, match="no L2 window"):
        l2_depth.fit(np.zeros((3, L2_DEPTH_INPUTS)), np.zeros(3), np.zeros((3, 2)), np.array([[True, False]] * 3))


def _windows(model: OrderFlowModel) -> dict:
    """Three windows with two-sided rows: a book of levels (LEVEL_SET tokens), one of orders (ADD),
    and a book of levels whose rows are all one-sided."""
    c = model.config
    rng = np.random.default_rng(1)
    a = {f: rng.integers(1, c.vocab[f], size=(3, c.n_events)) for f in ("side", "price", "size", "dt")}
    a["kind"] = np.full((3, c.n_events), int(Kind.ADD))
    a["kind"][[0, 2], ::3] = int(Kind.LEVEL_SET)
    a["mask"] = np.ones((3, c.n_events), bool)
    f = np.zeros((3, c.n_rows, c.n_features), np.float32)
    f[..., FEATURE_NAMES.index("valid")] = 1.0
    f[2, :, FEATURE_NAMES.index("valid")] = 0.0
    f[..., FEATURE_NAMES.index("spread_ticks")] = 1.0
    for name in ("log_depth_bid_5", "log_depth_ask_5"):
        f[..., FEATURE_NAMES.index(name)] = np.log1p(rng.integers(50, 500, (3, c.n_rows)))
    for name in FEATURE_NAMES:
        if name.startswith("log_depth_5_ewma_"):
            f[..., FEATURE_NAMES.index(name)] = np.log1p(rng.integers(100, 1000, (3, 1)))
    a["features"], a["row_mask"] = f, np.ones((3, c.n_rows), bool)
    a["news"] = np.zeros((3, c.max_news, c.news_len), np.int64)
    a["news_mask"] = np.zeros((3, c.max_news), bool)
    return to_batch(a)


def test_the_head_serves_the_depth_of_l2_windows_once_fitted_and_nothing_else():
    torch.manual_seed(0)
    shapes = dict(n_events=24, n_rows=6, n_features=len(FEATURE_NAMES), max_news=2, news_len=4, text_vocab=64)
    model = OrderFlowModel(ModelConfig.tiny(**shapes)).eval()
    batch = _windows(model)
    with torch.no_grad():
        before = model(batch)["quantiles"]
        model.l2_depth_weight.copy_(torch.randn_like(model.l2_depth_weight))
        model.l2_depth_bias.copy_(torch.tensor([[-0.3, 0.1, 0.2], [-0.5, 0.0, 0.4]]))
        assert torch.equal(model(batch)["quantiles"], before)  # not fitted: the network's
        model.l2_depth_fitted.fill_(True)
        after = model(batch)["quantiles"]
        band, scale, stats = model.anchor(batch)
        x = model.l2_depth_inputs(scale, stats)
    depth = [TARGETS.index(t) for t in L2_DEPTH_TARGETS]
    others = [j for j in range(len(TARGETS)) if j not in depth]
    assert torch.equal(after[:, others], before[:, others])
    assert torch.equal(after[1:], before[1:])  # a book of orders; a book never two-sided
    for h, j in enumerate(depth):
        q = band[0, j, 1] + x[0] @ model.l2_depth_weight[h] + model.l2_depth_bias[h]
        assert torch.allclose(after[0, j], q.sort().values.clamp(min=0.0), atol=1e-5)
    assert not torch.equal(after[0, depth], before[0, depth])


def test_finetune_fits_the_head_on_the_l2_windows_and_the_stage_refits_it_alone(l2_trained, tmp_path):
    from streams.cli import main

    path, d = l2_trained
    entry = json.loads((d / "fine" / "config.json").read_text())["l2_depth"]
    data = TrainData.load(path)
    real = int((data.arrays["seed"] < 0).sum())
    assert 0 < entry["windows"] <= real < len(data)  # the capture's windows, not the simulator's
    assert set(entry["crps_head"]) == set(L2_DEPTH_TARGETS)
    fine, _, _ = checkpoint.load(d / "fine")
    assert bool(fine.l2_depth_fitted) and fine.l2_depth_weight.abs().sum() > 0

    with torch.no_grad():
        fine.l2_depth_weight.zero_()
        fine.l2_depth_bias.zero_()
    assert main(["train", "--stage", "l2-depth", "--data", str(path), "--init", str(d / "fine"),
                 "--out", str(tmp_path / "refit"), "--device", "cpu"]) == 0  # fmt: skip
    refit, _, _ = checkpoint.load(tmp_path / "refit")
    original, _, _ = checkpoint.load(d / "fine")
    for name, tensor in original.state_dict().items():
        assert torch.equal(refit.state_dict()[name], tensor), name  # the same fit, nothing else moved


def test_evaluate_serves_each_capture_from_the_head_fitted_on_the_other_captures(l2_trained, l2_held, tmp_path):
    """`evaluate --l2-depth-loo`: a row for the model with the depth and volume of each capture's L2 windows
    from its heads refitted on the pool's other captures, and the spread and mid from its level maps."""
    from streams.cli import main

    path, d = l2_trained
    assert main(["evaluate", "--data", str(l2_held), "--model", str(d / "fine"), "--out", str(tmp_path / "ev"),
                 "--l2-depth-loo", str(path), str(l2_held)]) == 0  # fmt: skip
    ev = SimpleNamespace(**json.loads((tmp_path / "ev" / "metrics.json").read_text()))
    spot = "spot_btcusdt_20240808"
    assert ev.l2_depth_folds == {"cm_ethusd_perp_20240808": [spot, "usdm_ethusdt_20240808"],
                                 "usdm_ethusdt_20240808": [spot, "cm_ethusd_perp_20240808"]}  # fmt: skip
    variant = "model L2 heads left one out"  # a model evaluated alone is "model"
    for t in (*L2_DEPTH_TARGETS, *L2_VOLUME_TARGETS):
        assert np.isfinite(ev.crps[t][variant]) and ev.crps[t][variant] != ev.crps[t]["model"]
    assert all(np.isfinite(ev.crps[t][variant]) for t in ("spread_h10", "spread_h100", "mid_h10", "mid_h100"))
    text = (tmp_path / "ev" / "evaluation.md").read_text()
    assert f"gain {variant}" in text and "folds: cm_ethusd_perp_20240808 <- spot_btcusdt_20240808" in text


def test_evaluate_direction_loo_scores_each_capture_by_the_head_and_baselines_fitted_on_the_others(
    l2_trained, l2_held, tmp_path
):
    """`evaluate --direction-loo` (with --l2-depth-loo: the pool is run through the model once): rows
    `... left one out` for the head and the three baselines on each capture, the folds in metrics.json,
    and direction.md's verdict per capture and horizon."""
    from streams.cli import main

    path, d = l2_trained
    assert main(["evaluate", "--data", str(l2_held), "--model", str(d / "fine"), "--out", str(tmp_path / "ev"),
                 "--direction-steps", "5", "--l2-depth-loo", str(path), str(l2_held),
                 "--direction-loo", str(path), str(l2_held)]) == 0  # fmt: skip
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    spot, cm, usdm = "spot_btcusdt_20240808", "cm_ethusd_perp_20240808", "usdm_ethusdt_20240808"
    assert {c: f["fitted_on"] for c, f in ev["direction_folds"].items()} == {cm: [spot, usdm], usdm: [spot, cm]}
    assert all(set(f["penalty"]) == {"10", "100"} for f in ev["direction_folds"].values())
    loo = {r["method"] for r in ev["direction"] if r["method"].endswith(" left one out")}
    assert loo == {f"{m} left one out" for m in ("model", "queue imbalance LR", "multi-level OFI LR",
                                                 "DeepLOB-style CNN+LSTM")}  # fmt: skip
    head = [r for r in ev["direction"] if r["method"] == "model left one out" and r["source"] != "all"]
    assert len(head) == 4 and all(r["n"] > 0 and 0 <= r["Brier"] <= 2 for r in head)
    # each of the head's rows holds its paired difference to each baseline's, the difference inside its interval
    rivals = [f"{m} left one out" for m in ("queue imbalance LR", "multi-level OFI LR", "DeepLOB-style CNN+LSTM")]
    auc = {(x["source"], x["horizon"], x["method"]): x["AUC"] for x in ev["direction"]}
    for r in head:
        assert {k for k in r if " - " in k} == {f"{m} - {b}" for m in ("macro F1", "AUC", "Brier") for b in rivals}
        d, lo, hi = r[f"AUC - {rivals[0]}"]
        assert lo <= d <= hi and d == pytest.approx(r["AUC"] - auc[r["source"], r["horizon"], rivals[0]])
    assert ev["l2_depth_folds"] == {cm: [spot, usdm], usdm: [spot, cm]}
    text = (tmp_path / "ev" / "direction.md").read_text()
    assert "## Left one capture out" in text and "above all three" in text
    assert "resampled together for both (paired" in text and "/ best baseline" in text


@probe_smoke
def test_direction_loo_probe_scores_each_capture_by_the_fit_on_the_others(l2_trained, l2_held):
    """bench/direction_loo_probe.py: a row per Binance capture and horizon, each method's F1 / AUC."""
    import subprocess
    import sys

    path, d = l2_trained
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "bench" / "direction_loo_probe.py"), "--model", str(d / "fine"),
                           "--data", str(path), str(l2_held)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith((" 10 ", "100 "))]
    left_out = {"spot_btcusdt_20240808", "cm_ethusd_perp_20240808", "usdm_ethusdt_20240808"}
    assert {(r[0], r[1]) for r in rows} == {(h, c) for h in ("10", "100") for c in left_out}
    assert all(len(r) == 4 + 5 * 3 for r in rows)  # h, capture, n, L2 chosen, then "F1 / AUC" for five methods


@probe_smoke
def test_direction_h100_probe_rows_every_method_for_each_capture_left_out(l2_trained, l2_held):
    """bench/direction_h100_probe.py: per horizon and Binance capture left out, a row per method with its
    F1 (argmax and plug-in), AUC, stationary AUC and stationary shares."""
    import subprocess
    import sys

    path, d = l2_trained
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "bench" / "direction_h100_probe.py"), "--model", str(d / "fine"),
                           "--data", str(path), str(l2_held)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith((" 10 ", "100 "))]
    left_out = {"spot_btcusdt_20240808", "cm_ethusd_perp_20240808", "usdm_ethusdt_20240808"}
    assert {tuple(r.split()[:2]) for r in rows} == {(h, c) for h in ("10", "100") for c in left_out}
    assert len(rows) == 2 * len(left_out) * 9  # the head, its five variants, the book rows' head, the regressions


@probe_smoke
def test_direction_finetune_probe_scores_the_held_capture_before_and_after_each_step_count(l2_trained, l2_held):
    """bench/direction_finetune_probe.py: a row per step count (0: the checkpoint as it is), held capture and
    horizon, the head refitted on the fine-tuned state beside the queue-imbalance regression."""
    import subprocess
    import sys

    path, d = l2_trained
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "bench" / "direction_finetune_probe.py"), "--model",
                           str(d / "fine"), "--data", str(path), str(l2_held), "--held", "usdm_ethusdt_20240808",
                           "--steps", "1,3", "--batch", "8", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.lstrip().startswith(("0 ", "1 ", "3 "))]
    assert {(r[0], r[3]) for r in rows} == {(s, h) for s in ("0", "1", "3") for h in ("10", "100")}
    assert all(r[2] == "usdm_ethusdt_20240808" for r in rows)
    assert all(0 <= float(x) <= 1 for r in rows for x in (r[4], r[6], r[7], r[9]))  # F1 / AUC, twice


def test_the_trailing_class_shares_read_only_moves_over_before_the_window_ends(monkeypatch) -> None:
    """A window's move at h is over h messages after its own last message: the shares at window t count the
    last n windows whose move is over by t's message, whatever the windows' spacing in messages."""
    from tests.scripts import load_script

    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))  # its sibling modules, as running it from bench/ finds them
    probe = load_script(bench / "direction_h100_probe.py")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    message = np.cumsum(rng.integers(1, 20, 300))  # 1-19 messages a window, as on a Binance capture
    shares = probe.trailing_shares(y, message, h=100, n=50)
    assert np.allclose(shares.sum(1), 1) and np.allclose(shares[message < message[0] + 100], 1 / 3)
    for t in (30, 120, 299):
        over = np.flatnonzero(message + 100 <= message[t])[-50:]
        assert np.allclose(shares[t], (np.bincount(y[over], minlength=3) + 1) / (len(over) + 3))
        later = y.copy()
        later[over[-1] + 1 :] = (later[over[-1] + 1 :] + 1) % 3  # moves not over by t's end: no part of it
        assert np.array_equal(probe.trailing_shares(later, message, h=100, n=50)[t], shares[t])
        known = np.ones(300, bool)
        known[over[-1]] = False  # a window whose move is not known (its stream ended) counts for no class
        counts = np.bincount(y[over[:-1]], minlength=3)
        fewer = probe.trailing_shares(y, message, h=100, n=50, known=known)[t]
        assert np.allclose(fewer, (counts + 1) / (len(over) + 2))
    restarted = probe.trailing_shares(np.concatenate([y, y]), np.concatenate([message, message]), h=100, n=50)
    assert np.array_equal(restarted[300:], shares)  # a second file joined after the first: a stream of its own


def test_spread_l2_probe_breaks_the_spread_down_and_refits_the_maps_leaving_each_capture_out(l2_trained, l2_held):
    """bench/spread_l2_probe.py: per Binance capture and horizon the CRPS by the spread a window ends at,
    then the served gain beside the level maps refitted on the other captures."""
    import subprocess
    import sys

    path, d = l2_trained
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "bench" / "spread_l2_probe.py"), "--model", str(d / "fine"),
                           "--data", str(path), str(l2_held)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("spread_h")]
    captures = {"spot_btcusdt_20240808", "cm_ethusd_perp_20240808", "usdm_ethusdt_20240808"}
    expected = {(t, c) for t in ("spread_h10", "spread_h100") for c in captures}
    breakdown, gains = [r for r in rows if len(r) == 9], [r for r in rows if len(r) == 4]
    assert {(r[0], r[1]) for r in breakdown} == expected and {(r[0], r[1]) for r in gains} == expected
    for r in breakdown:  # the classes' parts of the mean CRPS; the wider windows are some of all
        assert all(float(x) >= 0 for x in r[5:]) and int(r[3]) <= int(r[2].replace(",", ""))
    assert all(g.endswith("%") for r in gains for g in r[2:])


def test_the_l2_recalibration_stage_fits_maps_of_l2_books_and_a_later_fit_switches_them_off(
    l2_trained, l2_held, tmp_path
):
    """`train --stage l2-recalibration`: the level maps of L2 books fitted on the files' real L2 windows,
    nothing else moved; refitting the recalibration's bins, or training from the checkpoint, switches them
    off (their bins, or the head they map, are the ones before)."""
    from model.training.train import train
    from streams.cli import main

    path, d = l2_trained
    out = tmp_path / "l2recal"
    assert main(["train", "--stage", "l2-recalibration", "--data", str(path), str(l2_held), "--init",
                 str(d / "fine"), "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    entry = json.loads((out / "config.json").read_text())["l2_recalibration"]
    assert entry["data"] == [str(path), str(l2_held)] and entry["windows"] > 0
    assert entry["captures"] == ["cm_ethusd_perp_20240808", "spot_btcusdt_20240808", "usdm_ethusdt_20240808"]
    assert set(entry["crps_l2"]) == {"spread_h10", "spread_h100", "mid_h10", "mid_h100"}
    fitted, _, _ = checkpoint.load(out)
    original, _, _ = checkpoint.load(d / "fine")
    assert fitted.l2_recal_fitted.any() and not original.l2_recal_fitted.any()
    for name, tensor in original.state_dict().items():
        if not name.startswith("l2_recal_"):
            assert torch.equal(fitted.state_dict()[name], tensor), name
    # on its own windows the L2 maps are fitted to do no worse than the pooled ones, target by target
    assert all(entry["crps_l2"][t] <= entry["crps_pooled"][t] + 1e-9 for t in entry["crps_l2"])

    assert main(["train", "--stage", "recalibration", "--data", str(path), "--init", str(out),
                 "--out", str(tmp_path / "refit"), "--device", "cpu"]) == 0  # fmt: skip
    refit, _, refit_extra = checkpoint.load(tmp_path / "refit")
    assert not refit.l2_recal_fitted.any() and "l2_recalibration" not in refit_extra
    train("finetune", path, tmp_path / "more", init=out, steps=2, batch=8, device="cpu", checkpoint_every=100)
    assert not checkpoint.load(tmp_path / "more")[0].l2_recal_fitted.any()
