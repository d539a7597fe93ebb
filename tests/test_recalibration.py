import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint, recalibration  # noqa: E402
from model.network.orderflow import (  # noqa: E402
    CLASSIC_TARGETS,
    QUANTILES,
    RECAL_BAND,
    TARGETS,
    ModelConfig,
    OrderFlowModel,
    recal_floor_edge_of,
    support_of,
    to_batch,
)
from orderbook.features import FEATURE_NAMES  # noqa: E402
from tests.checkpoints import as_format  # noqa: E402

SHAPES = dict(n_events=24, n_rows=6, n_features=len(FEATURE_NAMES), max_news=2, news_len=4, text_vocab=64)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def test_the_linear_map_recovers_a_head_that_is_off_by_a_shift_and_a_scale():
    rng = np.random.default_rng(0)
    x = rng.uniform(10.0, 100.0, 20_000)
    y = x * (1.0 + 0.2 * rng.standard_normal(len(x)))  # tau-quantile: x * (1 + 0.2 z_tau)
    for tau in QUANTILES:
        z = np.quantile(rng.standard_normal(1_000_000), tau)
        head = (x - 5.0) / 1.5  # a head that shrank and shifted the right quantile
        a, b = recalibration.fit_linear_map(head, y, tau, _identity)
        assert b == pytest.approx(1.5 * (1.0 + 0.2 * z), abs=0.05)
        assert a == pytest.approx(5.0 * (1.0 + 0.2 * z), abs=2.0)


def test_a_head_already_right_keeps_the_identity_map():
    rng = np.random.default_rng(1)
    y = rng.integers(1, 4, 5_000).astype(np.float64)  # a whole-tick target
    head = np.full_like(y, np.quantile(y, 0.5))
    assert recalibration.fit_linear_map(head, y, 0.5, support_of("spread_h10")) == (0.0, 1.0)


def test_each_bin_of_level_and_band_gets_its_own_map_and_targets_without_a_support_keep_the_identity():
    rng = np.random.default_rng(2)
    n = 16_000
    level = rng.uniform(1.0, 100.0, (n, len(TARGETS)))
    blown = rng.random((n, len(TARGETS))) < 0.5  # the rows held a blow-out: the band reaches 4x up
    band = np.stack([level, level, np.where(blown, 4.0 * level, 1.2 * level)], axis=2)
    # low levels stay, high ones grow by half, but after a blow-out everything is back at half
    y = np.where(blown, 0.5 * level, np.where(level < 50.0, level, 1.5 * level))
    raw = np.repeat(level[..., None], len(QUANTILES), axis=2)  # a persistence head
    valid = np.ones_like(y, bool)
    j = TARGETS.index("depth_h10")
    supports = [_identity if i == j else None for i in range(len(TARGETS))]
    edges, coef = recalibration.fit(raw, band, y, valid, QUANTILES, supports, [0.5] * len(TARGETS))
    assert edges[j] == pytest.approx([0.5, *np.quantile(level[:, j], [1 / 3, 2 / 3])], rel=1e-5)
    assert coef[j, 2 * 1, 1].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)  # low levels were right
    assert coef[j, 2 * 3, 1].tolist() == pytest.approx([0.0, 1.5], abs=0.03)  # the top third grows
    for b in (1, 2, 3):  # after a blow-out, at every level
        assert coef[j, 2 * b + 1, 1].tolist() == pytest.approx([0.0, 0.5], abs=0.03)
    assert (coef[j, 0, ..., 0] == 0).all() and (coef[j, 0, ..., 1] == 1).all()  # nothing at the floor
    served = recalibration.apply(raw, band, edges, coef)
    assert np.abs(served[:, j, 1] - y[:, j]).mean() < 0.25 * np.abs(raw[:, j, 1] - y[:, j]).mean()
    others = [i for i in range(len(TARGETS)) if i != j]
    assert np.isinf(edges[others]).all() and np.array_equal(served[:, others], raw[:, others])


def test_a_spread_at_one_tick_after_a_blow_out_is_back_at_one_tick_and_wider_ones_keep_a_tail():
    rng = np.random.default_rng(5)
    n = 4_000
    level = np.where(rng.random(n) < 0.5, 1.0, rng.integers(2, 30, n)).astype(np.float64)
    band = np.stack([level, level, 5.0 * level], axis=1)[:, None].repeat(len(TARGETS), 1)
    y = np.where(level == 1.0, 1.0, level * rng.uniform(1.0, 4.0, n))[:, None].repeat(len(TARGETS), 1)
    raw = band.copy()  # a head that serves the band
    j = TARGETS.index("spread_h10")
    supports = [support_of(t) if i == j else None for i, t in enumerate(TARGETS)]
    edges, coef = recalibration.fit(raw, band, y, np.ones_like(y, bool), QUANTILES, supports, [1.5] * len(TARGETS))
    served = support_of("spread_h10")(recalibration.apply(raw, band, edges, coef)[:, j])
    at_floor = level == 1.0
    assert (served[at_floor] == 1.0).all()  # q10, q50 and q90: one tick
    assert (served[~at_floor, 2] > level[~at_floor]).mean() > 0.9  # the others keep an upper tail


def test_at_the_floor_windows_with_and_without_a_blow_out_share_one_map_fitted_on_all_of_them():
    """Two sources at one tick: in the larger a blow-out is followed by one tick, in the smaller (a third of
    the blown-out windows) by a wider spread, and the head (persistence) cannot tell them apart. Split on
    the blow-out, the blown-out bin's q90 would be wide for every window of the first source; pooled at
    the floor, the wider ones are 2% of the windows, under the q90's 10%."""
    rng = np.random.default_rng(6)
    n = 6_000
    blown = rng.random(n) < 0.06
    level = np.ones(n)
    band = np.stack([level, level, np.where(blown, 9.0, 1.0)], axis=1)[:, None].repeat(len(TARGETS), 1)
    wider = blown & (rng.random(n) < 1 / 3)
    y = np.where(wider, 6.0, 1.0)[:, None].repeat(len(TARGETS), 1)
    raw = band[..., [1, 1, 1]]
    j = TARGETS.index("spread_h10")
    supports = [support_of(t) if i == j else None for i, t in enumerate(TARGETS)]
    edges, coef = recalibration.fit(raw, band, y, np.ones_like(y, bool), QUANTILES, supports, [1.5] * len(TARGETS))
    pooled = [recalibration.fit_linear_map(raw[:, j, k], y[:, j], tau, supports[j]) for k, tau in enumerate(QUANTILES)]
    assert np.array_equal(coef[j, 0], coef[j, 1])
    assert coef[j, 0] == pytest.approx(np.array(pooled))
    served = support_of("spread_h10")(recalibration.apply(raw, band, edges, coef)[:, j])
    assert (served == 1.0).all()
    kept = coef.copy()
    kept[j, 1, 2] = (5.0, 0.0)  # a checkpoint fitted with the floor's bins apart serves them apart
    assert (support_of("spread_h10")(recalibration.apply(raw, band, edges, kept)[blown, j, 2]) == 5.0).all()


def _windows(
    config: ModelConfig, b: int = 6, spread: tuple[int, int] = (1, 299), ages: np.ndarray | None = None
) -> dict:
    """Random windows; `ages` (b,): each window's one headline's age in seconds (NaN: none)."""
    rng = np.random.default_rng(3)
    n, t = config.n_events, config.n_rows
    arrays = {f: rng.integers(1, config.vocab[f], (b, n)) for f in ("kind", "side", "price", "size", "dt")}
    features = rng.standard_normal((b, t, config.n_features)).astype(np.float32)
    features[..., FEATURE_NAMES.index("valid")] = 1.0
    features[..., FEATURE_NAMES.index("spread_ticks")] = rng.integers(spread[0], spread[1] + 1, (b, t))
    arrays |= {
        "mask": np.ones((b, n), bool),
        "features": features,
        "row_mask": np.ones((b, t), bool),
        "news": np.zeros((b, config.max_news, config.news_len), np.int64),
        "news_mask": np.zeros((b, config.max_news), bool),
    }
    if ages is not None:
        arrays["news_mask"][:, 0] = ~np.isnan(ages)
        arrays["news_age"] = np.zeros((b, config.max_news), np.float32)
        arrays["news_age"][:, 0] = np.nan_to_num(ages)
    return to_batch(arrays)


def test_served_quantiles_are_the_recalibrated_head_on_the_support_and_survive_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config).eval()
    rng = np.random.default_rng(4)
    edges = np.tile(np.array([60.0, 150.0, 250.0], np.float32), (len(TARGETS), 1))
    coef = rng.uniform(-2.0, 2.0, model.recal_coef.shape).astype(np.float32)
    model.recal_edges.copy_(torch.from_numpy(edges))
    model.recal_coef.copy_(torch.from_numpy(coef))
    batch = _windows(config, b=32)
    with torch.no_grad():
        out = model(batch)
    head, band = out["quantiles_head"].numpy(), out["anchor"].numpy()[:, RECAL_BAND]
    assert len(np.unique(recalibration.bin_of(band[:, 0], edges[0]))) >= 4  # several bins in play
    want = recalibration.apply(head, band, edges, coef)
    want = np.stack([support_of(t)(want[:, j]) for j, t in enumerate(TARGETS)], axis=1)
    assert np.allclose(out["quantiles"].numpy(), want, rtol=1e-5, atol=1e-4)
    bins = np.stack([recalibration.bin_of(band[:, j], edges[j]) for j in range(len(TARGETS))], axis=1)
    maps = coef[np.arange(len(TARGETS))[None, :], bins]  # (B, 8, 3, 2)
    assert (np.diff(maps[..., 0] + maps[..., 1] * head, axis=2) < 0).any()  # these maps cross...
    assert (np.diff(out["quantiles"].numpy(), axis=2) >= 0).all()  # ...served in order all the same
    checkpoint.save(model, config, {}, tmp_path / "ckpt")
    loaded, _, _ = checkpoint.load(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(loaded(batch)["quantiles"], out["quantiles"])


def test_the_mid_move_is_mapped_in_the_bins_of_its_horizons_spread():
    """The mid has no band of its own: a one-tick book's mid quantiles take the map of the spread's
    floor bin, a wide book's another, each horizon its own spread's."""
    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config).eval()
    j = TARGETS.index("mid_h10")
    assert TARGETS[RECAL_BAND[j]] == "spread_h10" and recal_floor_edge_of("mid_h10") == 1.5
    model.recal_edges[j] = torch.tensor([1.5, 50.0, 100.0])
    model.recal_coef[j, 0] = torch.tensor([0.0, 0.0])  # at the floor: no move, whatever the head says
    with torch.no_grad():
        one_tick, wide = model(_windows(config, b=8, spread=(1, 1))), model(_windows(config, b=8, spread=(60, 90)))
    assert (one_tick["quantiles"][:, j] == 0).all()
    assert torch.allclose(wide["quantiles"][:, j], wide["quantiles_head"][:, j])
    assert not torch.allclose(one_tick["quantiles_head"][:, j], torch.zeros(8, 3))
    h100 = TARGETS.index("mid_h100")  # its own map (identity here), though its spread is at the floor too
    assert torch.allclose(one_tick["quantiles"][:, h100], one_tick["quantiles_head"][:, h100])


def test_a_format_3_checkpoint_loads_with_the_identity_map(tmp_path):
    from safetensors.torch import load_file, save_file

    config = ModelConfig.tiny(**SHAPES)
    d = checkpoint.save(OrderFlowModel(config), config, {}, tmp_path / "old")
    tensors = {k: v for k, v in load_file(str(d / checkpoint.WEIGHTS)).items() if not k.startswith("recal_")}
    save_file(tensors, str(d / checkpoint.WEIGHTS))  # as format 3 wrote it
    meta = json.loads((d / checkpoint.CONFIG).read_text())
    (d / checkpoint.CONFIG).write_text(json.dumps(meta | {"format": 3}))
    model, _, _ = checkpoint.load(d)
    assert torch.isinf(model.recal_edges).all()
    assert (model.recal_coef[..., 0] == 0).all() and (model.recal_coef[..., 1] == 1).all()
    (d / checkpoint.CONFIG).write_text(json.dumps(meta | {"format": 2}))
    with pytest.raises(ValueError, match="format 2"):
        checkpoint.load(d)


def test_kept_edges_hold_the_bins_and_only_the_maps_are_refitted():
    rng = np.random.default_rng(3)
    n = 8_000
    level = rng.uniform(1.0, 100.0, (n, len(TARGETS)))
    band = np.stack([level, level, 1.2 * level], axis=2)
    y = np.where(level < 50.0, level, 1.5 * level)
    raw = np.repeat(level[..., None], len(QUANTILES), axis=2)
    j = TARGETS.index("depth_h10")
    supports = [_identity if i == j else None for i in range(len(TARGETS))]
    parent = np.full((len(TARGETS), recalibration.LEVEL_BINS - 1), np.inf, np.float32)
    parent[j] = [0.5, 50.0, 75.0]  # an earlier fit's bins, not this data's terciles
    edges, coef = recalibration.fit(raw, band, y, np.ones_like(y, bool), QUANTILES, supports,
                                    [0.5] * len(TARGETS), edges=parent)  # fmt: skip
    assert edges[j].tolist() == [0.5, 50.0, 75.0]
    assert coef[j, 2 * 1, 1].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)  # below 50: right as it was
    assert coef[j, 2 * 2, 1].tolist() == pytest.approx([0.0, 1.5], abs=0.03)  # 50-75: grows by half
    fresh, _ = recalibration.fit(raw, band, y, np.ones_like(y, bool), QUANTILES, supports, [0.5] * len(TARGETS))
    assert fresh[j].tolist() != [0.5, 50.0, 75.0]  # without them, this data's own terciles
    parent[j] = np.inf  # never fitted: the data's own edges
    again, _ = recalibration.fit(raw, band, y, np.ones_like(y, bool), QUANTILES, supports,
                                 [0.5] * len(TARGETS), edges=parent)  # fmt: skip
    assert again[j].tolist() == fresh[j].tolist()


def test_the_recalibration_stage_refits_what_finetune_fitted_and_leaves_every_other_weight(tmp_path):
    from model.sim.engine import SimConfig
    from model.training.dataset import build, save, sim_source
    from model.training.train import train
    from streams.cli import main

    path, _ = save(build([sim_source(SimConfig(n_symbols=2, duration_ns=600 * 10**9, seed=5))]), tmp_path / "t.npz")
    train("finetune", path, tmp_path / "fine", steps=6, batch=8, device="cpu", preset="tiny", checkpoint_every=100)
    fine, config, extra = checkpoint.load(tmp_path / "fine")
    assert (fine.recal_coef[..., 1] != 1).any()  # something fitted, for the refit to reproduce
    fine.recal_edges.fill_(float("inf"))  # as a checkpoint fitted under another rule, or none
    fine.recal_coef[..., 0], fine.recal_coef[..., 1] = 0.0, 1.0
    checkpoint.save(fine, config, extra, tmp_path / "old")
    argv = ["train", "--stage", "recalibration", "--init", str(tmp_path / "old"), "--data", str(path)]
    assert main([*argv, "--out", str(tmp_path / "new"), "--device", "cpu"]) == 0
    new, _, new_extra = checkpoint.load(tmp_path / "new")
    want = checkpoint.load(tmp_path / "fine")[0].state_dict()
    for name, tensor in new.state_dict().items():
        assert torch.equal(tensor, want[name]), name
    assert new_extra["recalibration"]["data"] == str(path)
    assert new_extra["recalibration"]["crps_after"] == extra["recalibration"]["crps_after"]
    assert set(new_extra["recalibration"]["classic"]) == set(CLASSIC_TARGETS)
    # the combination's weights alone: what the recalibration fitted at its end
    new.classic_weight.fill_(1.0)
    checkpoint.save(new, config, new_extra, tmp_path / "unweighted")
    argv = ["train", "--stage", "classic-weight", "--init", str(tmp_path / "unweighted"), "--data", str(path)]
    assert main([*argv, "--out", str(tmp_path / "weighted"), "--device", "cpu"]) == 0
    assert torch.equal(checkpoint.load(tmp_path / "weighted")[0].classic_weight, want["classic_weight"])
    # the level maps of L2 books need real L2 windows: a simulated set (books of orders) has none
    argv = ["train", "--stage", "l2-recalibration", "--init", str(tmp_path / "new"), "--data", str(path)]
    assert main([*argv, "--out", str(tmp_path / "l2"), "--device", "cpu"]) == 2
    assert not (tmp_path / "l2").exists()


def test_windows_right_after_a_headline_take_their_age_bins_map_and_the_mid_also_its_side():
    """After a headline the band says little of how far the mid and the spread go: each age bin of a
    headline younger than NEWS_AGE_EDGES[-1] gets its own map, the mid's split by the side of its
    head's median; older or no headline: the level maps; a bin short of windows: the level map too."""
    rng = np.random.default_rng(5)
    n = 20_000
    edges_s = recalibration.NEWS_AGE_EDGES
    age = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 60.0, n), np.inf)
    age[(age >= edges_s[2]) & (age < edges_s[3])] = np.inf  # no window in the last age bin
    j_mid, j_spread = TARGETS.index("mid_h100"), TARGETS.index("spread_h100")
    raw = np.zeros((n, len(TARGETS), len(QUANTILES)))
    raw[:, j_mid] = rng.choice([-3.0, 0.0, 3.0], n)[:, None]  # the head's side, all three quantiles
    raw[:, j_spread] = 10.0
    recent = age < edges_s[-1]
    fresh = age < edges_s[0]
    y = raw[:, :, 1].copy()
    y[:, j_mid] += np.where(fresh, 4.0 * np.sign(raw[:, j_mid, 1]), 0.0)  # the first second: the move goes on
    y[:, j_spread] = np.where(fresh, 30.0, np.where(recent, 20.0, 10.0))
    valid = np.ones_like(y, bool)
    supports = [support_of(t) if t in ("mid_h100", "spread_h100") else None for t in TARGETS]
    sided = [t.startswith("mid_") for t in TARGETS]
    coef, fitted = recalibration.fit_news(raw, age, y, valid, QUANTILES, supports, sided)
    assert fitted[j_mid].tolist() == [True] * 9 + [False] * 3  # three age bins x three sides; none in the last
    assert fitted[j_spread].tolist() == [False, True, False] * 3 + [False] * 3  # no side: the flat bin alone
    assert not fitted[TARGETS.index("depth_h100")].any()  # no support: none
    band = np.ones((n, len(TARGETS), 3))
    level_edges = np.full((len(TARGETS), recalibration.LEVEL_BINS - 1), np.inf, np.float32)
    level_coef = np.zeros((len(TARGETS), recalibration.N_BINS, len(QUANTILES), 2), np.float32)
    level_coef[..., 1] = 1.0
    served = recalibration.apply(raw, band, level_edges, level_coef, (age, coef, fitted, sided))
    assert np.allclose(served[:, j_spread, 1], y[:, j_spread], atol=1e-6)
    assert np.allclose(served[:, j_mid, 1], y[:, j_mid], atol=1e-6)  # the shift follows the head's side
    assert np.array_equal(recalibration.apply(raw, band, level_edges, level_coef), raw)  # without ages: level maps
    old = ~recent
    assert np.array_equal(served[old], raw[old])


def test_the_network_serves_the_news_bins_as_the_numpy_twin_and_an_ablation_without_headlines_has_none(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES, use_news_age=True)
    model = OrderFlowModel(config).eval()
    rng = np.random.default_rng(6)
    coef = rng.uniform(-2.0, 2.0, model.recal_news_coef.shape).astype(np.float32)
    fitted = rng.random(model.recal_news_fitted.shape) < 0.7
    model.recal_news_coef.copy_(torch.from_numpy(coef))
    model.recal_news_fitted.copy_(torch.from_numpy(fitted))
    ages = np.array([0.2, 3.0, 7.0, 20.0, 39.0, 41.0, np.nan, 0.9] * 4)
    batch = _windows(config, b=len(ages), ages=ages)
    with torch.no_grad():
        out = model(batch)
    head, band = out["quantiles_head"].numpy(), out["anchor"].numpy()[:, RECAL_BAND]
    edges, level_coef = model.recal_edges.numpy(), model.recal_coef.numpy()
    age = np.nan_to_num(ages, nan=np.inf)
    sided = [t.startswith("mid_") for t in TARGETS]
    want = recalibration.apply(head, band, edges, level_coef, (age, coef, fitted, sided))
    want = np.stack([support_of(t)(want[:, j]) for j, t in enumerate(TARGETS)], axis=1)
    network = (TARGETS.index(t) for t in TARGETS if not t.startswith("depth_"))  # depth: the L2 head's on L2 windows
    for j in network:
        assert np.allclose(out["quantiles"].numpy()[:, j], want[:, j], rtol=1e-5, atol=1e-4)
    assert not np.allclose(want, recalibration.apply(head, band, edges, level_coef))  # the news maps in play
    checkpoint.save(model, config, {}, tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(checkpoint.load(tmp_path / "ckpt")[0](batch)["quantiles"], out["quantiles"])
    ablated = OrderFlowModel(ModelConfig.tiny(**SHAPES, use_news_age=True, use_news=False)).eval()
    assert ablated.headline_age(batch) is None  # it must not be told when headlines came


@pytest.mark.parametrize(
    ("fmt", "prefix"), [(8, "recal_news"), (9, "l2_recal")], ids=["format 8, news maps", "format 9, L2 maps"]
)
def test_an_older_checkpoint_loads_without_the_maps_added_after_it(tmp_path, fmt, prefix):
    from safetensors.torch import load_file, save_file

    config = ModelConfig.tiny(**SHAPES)
    d = checkpoint.save(OrderFlowModel(config), config, {}, tmp_path / "old")
    tensors = {k: v for k, v in load_file(str(d / checkpoint.WEIGHTS)).items() if not k.startswith(prefix)}
    save_file(tensors, str(d / checkpoint.WEIGHTS))
    meta = json.loads((d / checkpoint.CONFIG).read_text())
    (d / checkpoint.CONFIG).write_text(json.dumps(meta | {"format": fmt}))
    model, _, _ = checkpoint.load(d)
    assert not getattr(model, f"{prefix}_fitted").any()


def test_l2_windows_take_their_bins_l2_map_and_a_bin_short_of_them_the_pooled_one():
    """Books of price levels close a blow-out at their own pace: fitted on their windows alone, each bin
    with MIN_BIN_WINDOWS of them gets its own map; a window of another book, or in a bin short of L2
    windows, keeps the pooled map."""
    rng = np.random.default_rng(7)
    n = 4_000
    j = TARGETS.index("spread_h10")
    band = np.zeros((n, len(TARGETS), 3))
    level = rng.choice([1.0, 4.0, 10.0], n, p=[0.5, 0.25, 0.25])
    band[:, j] = level[:, None]
    raw = np.repeat(band[:, :, 1:2], 3, axis=2) - 1.0  # the head expects the blow-out to close a tick
    y = band[:, :, 1].copy()  # on the L2 books it stays
    supports = [support_of(t) if t == "spread_h10" else None for t in TARGETS]
    floors = [recal_floor_edge_of(t) for t in TARGETS]
    edges, pooled = recalibration.fit(raw, band, y - 1.0, np.ones_like(y, bool), QUANTILES, supports, floors)
    book = (level < 10.0) & (rng.random(n) < 0.5)
    book[np.flatnonzero(level == 10.0)[:40]] = True  # too few in the top bin
    coef, fitted = recalibration.fit_l2(raw[book], band[book], y[book], np.ones_like(y[book], bool), QUANTILES,
                                        supports, edges)  # fmt: skip
    bins = recalibration.bin_of(band[:, j], edges[j])
    assert (
        len(set(bins[level == 4.0])) == len(set(bins[level == 10.0])) == 1
        and bins[level == 4.0][0] != bins[level == 10.0][0]
    )
    assert fitted[j, bins[level == 4.0][0]] and not fitted[j, bins[level == 10.0][0]]
    assert fitted[j, 0] and fitted[j, 1]  # the floor's two bins, one map
    assert not fitted[[i for i in range(len(TARGETS)) if i != j]].any()
    served = recalibration.apply(raw, band, edges, pooled, l2=(book, coef, fitted))
    plain = recalibration.apply(raw, band, edges, pooled)
    mid = level == 4.0
    assert np.allclose(served[book & mid, j], 4.0) and np.allclose(plain[book & mid, j], 3.0)
    assert np.array_equal(served[~book], plain[~book])
    assert np.array_equal(served[level == 10.0], plain[level == 10.0])


def test_the_network_serves_the_l2_maps_on_level_book_windows_as_the_numpy_twin(tmp_path):
    from orderbook.events import Kind

    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config).eval()
    rng = np.random.default_rng(8)
    model.recal_edges.copy_(torch.tensor([[2.0, 10.0, 100.0]] * len(TARGETS)))
    model.recal_coef.copy_(torch.from_numpy(rng.uniform(-2.0, 2.0, model.recal_coef.shape).astype(np.float32)))
    coef = rng.uniform(-2.0, 2.0, model.l2_recal_coef.shape).astype(np.float32)
    fitted = rng.random(model.l2_recal_fitted.shape) < 0.7
    model.l2_recal_coef.copy_(torch.from_numpy(coef))
    model.l2_recal_fitted.copy_(torch.from_numpy(fitted))
    batch = _windows(config, b=16)
    kind = batch["kind"]
    kind[kind == int(Kind.LEVEL_SET)] = int(Kind.ADD)
    book = np.arange(16) % 2 == 0
    kind[torch.from_numpy(book), 0] = int(Kind.LEVEL_SET)
    with torch.no_grad():
        out = model(batch)
        assert torch.equal(model.level_book_windows(batch), torch.from_numpy(book))
    head, band = out["quantiles_head"].numpy(), out["anchor"].numpy()[:, RECAL_BAND]
    edges, pooled = model.recal_edges.numpy(), model.recal_coef.numpy()
    want = recalibration.apply(head, band, edges, pooled, l2=(book, coef, fitted))
    want = np.stack([support_of(t)(want[:, j]) for j, t in enumerate(TARGETS)], axis=1)
    for j in (TARGETS.index(t) for t in TARGETS if not t.startswith("depth_")):
        assert np.allclose(out["quantiles"].numpy()[:, j], want[:, j], rtol=1e-5, atol=1e-4)
    assert not np.allclose(want, recalibration.apply(head, band, edges, pooled))  # the L2 maps in play
    checkpoint.save(model, config, {}, tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(checkpoint.load(tmp_path / "ckpt")[0](batch)["quantiles"], out["quantiles"])


def test_the_network_combines_its_spread_quantiles_with_the_ewma_band_as_the_numpy_twin(tmp_path):
    """classic_band is the baseline forecaster's EWMA band of the rows' spreads (as evaluate recomputes
    it); the served spread quantiles are w q + (1 - w) e where it is known, except on books of price
    levels; other targets, and a model without the rows, are left as they were."""
    from model.serving.baseline import level_forecasts
    from orderbook.events import Kind

    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config).eval()
    weight = np.array([0.6 if t in CLASSIC_TARGETS else 1.0 for t in TARGETS], np.float32)
    model.classic_weight.copy_(torch.from_numpy(weight))
    batch = _windows(config, b=16, spread=(1, 40))
    batch["row_mask"][3, :] = False  # no row: no band
    kind = batch["kind"]
    kind[kind == int(Kind.LEVEL_SET)] = int(Kind.ADD)
    book = np.arange(16) % 4 == 0
    kind[torch.from_numpy(book), 0] = int(Kind.LEVEL_SET)
    with torch.no_grad():
        out = model(batch)
        classic = model.classic_band(batch).numpy()
    spread = batch["features"][..., FEATURE_NAMES.index("spread_ticks")].numpy().astype(np.float64)
    want_band = level_forecasts(np.where(batch["row_mask"].numpy(), spread, np.nan))["ewma"]
    for j, t in enumerate(TARGETS):
        if t in CLASSIC_TARGETS:
            known = np.isfinite(classic[:, j]).all(-1)
            assert list(np.flatnonzero(~known)) == [3]
            assert np.allclose(classic[known, j], want_band[known], rtol=1e-5, atol=1e-4)
        else:
            assert np.isnan(classic[:, j]).all()
    head, band = out["quantiles_head"].numpy(), out["anchor"].numpy()[:, RECAL_BAND]
    plain = recalibration.apply(head, band, model.recal_edges.numpy(), model.recal_coef.numpy())
    want = recalibration.combine_classic(plain, classic, weight, book)
    want = np.stack([support_of(t)(want[:, j]) for j, t in enumerate(TARGETS)], axis=1)
    plain = np.stack([support_of(t)(plain[:, j]) for j, t in enumerate(TARGETS)], axis=1)
    for j in (TARGETS.index(t) for t in TARGETS if not t.startswith("depth_")):
        assert np.allclose(out["quantiles"].numpy()[:, j], want[:, j], rtol=1e-5, atol=1e-4)
    s = TARGETS.index("spread_h10")
    assert not np.allclose(want[~book, s], plain[~book, s])  # the combination in play...
    assert np.array_equal(want[book, s], plain[book, s]) and np.array_equal(want[3, s], plain[3, s])  # ...not there
    assert (np.diff(out["quantiles"].numpy(), axis=2) >= 0).all()
    checkpoint.save(model, config, {}, tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(checkpoint.load(tmp_path / "ckpt")[0](batch)["quantiles"], out["quantiles"])
    no_rows = OrderFlowModel(ModelConfig.tiny(**SHAPES, use_rows=False)).eval()
    with torch.no_grad():
        assert torch.isnan(no_rows.classic_band(batch)).all()  # the book ablation must not read the rows


def test_the_classic_weight_goes_to_the_band_where_it_forecasts_better_and_stays_1_where_it_does_not():
    rng = np.random.default_rng(9)
    n = 4000
    k_good, k_bad = TARGETS.index("spread_h10"), TARGETS.index("spread_h100")
    level = rng.uniform(5.0, 50.0, n)
    y = np.zeros((n, len(TARGETS)))
    y[:, k_good] = y[:, k_bad] = np.round(level + rng.normal(0.0, 2.0, n)).clip(min=1.0)
    spread_q = np.stack([level - 2.6, level, level + 2.6], 1)  # the truth's quantiles
    q = np.zeros((n, len(TARGETS), 3))
    classic = np.full((n, len(TARGETS), 3), np.nan)
    q[:, k_good] = spread_q + rng.normal(0.0, 8.0, (n, 1))  # served: off by a lot
    classic[:, k_good] = spread_q
    q[:, k_bad] = spread_q  # served: right
    classic[:, k_bad] = spread_q + rng.normal(0.0, 8.0, (n, 1))
    valid = np.ones((n, len(TARGETS)), bool)
    supports = [support_of(t) for t in TARGETS]
    weight, counts = recalibration.fit_classic_weight(q, classic, y, valid, QUANTILES, supports, [k_good, k_bad])
    assert weight[k_good] <= 0.1 and weight[k_bad] >= 0.9 and counts == {k_good: n, k_bad: n}
    assert (np.delete(weight, [k_good, k_bad]) == 1.0).all()
    few = valid.copy()
    few[recalibration.MIN_BIN_WINDOWS - 1 :, k_good] = False
    assert recalibration.fit_classic_weight(q, classic, y, few, QUANTILES, supports, [k_good])[0][k_good] == 1.0


def test_a_format_10_checkpoint_loads_with_its_quantiles_alone(tmp_path):
    config = ModelConfig.tiny(**SHAPES)
    model = OrderFlowModel(config)
    model.classic_weight.fill_(0.5)
    d = as_format(checkpoint.save(model, config, {}, tmp_path / "old"), 10, lambda k: k == "classic_weight")
    assert (checkpoint.load(d)[0].classic_weight == 1.0).all()
