"""The order-flow network (model/network/orderflow.py) and its checkpoints (checkpoint.py), tiny config on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint  # noqa: E402
from model.network.orderflow import (  # noqa: E402
    ANCHOR_FLOOR,
    ANCHOR_HALFLIFE,
    ANCHOR_STATS,
    ANOMALY_CLASSES,
    FIELDS,
    QUANTILES,
    TARGETS,
    UNIT_LOSS_TARGETS,
    ModelConfig,
    OrderFlowModel,
    calibrated_score,
    next_event_nll,
    to_batch,
    weighted_quantile,
)
from model.training.train import UnitWeighting, loss_parts, make_optimizer  # noqa: E402
from orderbook.features import FEATURE_NAMES  # noqa: E402

SHAPES = dict(n_events=24, n_rows=6, n_features=len(FEATURE_NAMES), max_news=2, news_len=4, text_vocab=64)


def tiny() -> ModelConfig:
    return ModelConfig.tiny(**SHAPES)


def arrays(config: ModelConfig, b: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Random windows of the shared contract's shapes; the first window is left-padded."""
    rng = np.random.default_rng(seed)
    n, t, m = config.n_events, config.n_rows, config.max_news
    out = {f: rng.integers(1, config.vocab[f], size=(b, n)) for f in FIELDS}
    mask = np.ones((b, n), dtype=bool)
    mask[0, :5] = False
    for f in FIELDS:
        out[f][~mask] = 0
    out["mask"] = mask
    out["features"] = rng.normal(size=(b, t, config.n_features)).astype(np.float32)
    out["row_mask"] = np.ones((b, t), dtype=bool)
    out["news"] = rng.integers(1, config.text_vocab, size=(b, m, config.news_len))
    out["news_mask"] = np.ones((b, m), dtype=bool)
    return out


def model_and_batch(b: int = 4) -> tuple[OrderFlowModel, dict]:
    torch.manual_seed(0)
    config = tiny()
    return OrderFlowModel(config).eval(), to_batch(arrays(config, b))


def test_output_shapes_and_finite_on_padded_windows():
    model, batch = model_and_batch()
    batch["news_mask"][1] = False  # a window without news: BOS keeps every attention row non-empty
    batch["row_mask"][2, :3] = False
    out = model(batch)
    n = model.config.n_events
    for f in FIELDS:
        assert out["next"][f].shape == (4, n, model.config.vocab[f])
        assert torch.isfinite(out["next"][f]).all()
    assert out["quantiles"].shape == (4, len(TARGETS), len(QUANTILES))
    assert out["anomaly"].shape == (4, len(ANOMALY_CLASSES))
    q = out["quantiles"]
    assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()


def test_changing_event_j_leaves_next_event_logits_before_j_unchanged():
    model, batch = model_and_batch()
    j = 15
    changed = {k: v.clone() for k, v in batch.items()}
    for f in FIELDS:
        changed[f][:, j] = (batch[f][:, j] % (model.config.vocab[f] - 1)) + 1  # another real id
    a, b = model(batch)["next"], model(changed)["next"]
    for f in FIELDS:
        assert torch.allclose(a[f][:, :j], b[f][:, :j], atol=1e-6), f
    # and the change is seen from j on (the test could fail)
    assert not torch.allclose(a["kind"][:, j:], b["kind"][:, j:], atol=1e-4)


@pytest.mark.parametrize("use_rows", [True, False])
def test_next_event_is_the_forwards_next_event_logits_and_state_at_one_slot(use_rows):
    """Generation reads one slot through `next_event` (no window heads); the ablation's masks hold there too."""
    torch.manual_seed(0)
    model = OrderFlowModel(ModelConfig.tiny(**SHAPES, use_rows=use_rows)).eval()
    batch = to_batch(arrays(model.config))
    with torch.no_grad():
        out = model(batch)
        assert torch.allclose(model.event_states(batch), out["events"], atol=1e-6)
        for at in (-1, -2, 7):
            logits, state = model.next_event(batch, at)
            assert torch.allclose(state, out["events"][:, at], atol=1e-6)
            assert all(torch.allclose(logits[f], out["next"][f][:, at], atol=1e-5) for f in FIELDS)


def test_feature_rows_and_news_change_the_outputs():
    model, batch = model_and_batch()
    base = model(batch)
    rows = {**batch, "features": batch["features"] + 1.0}
    news = {**batch, "news": (batch["news"] % (model.config.text_vocab - 2)) + 2}
    for variant in (rows, news):
        out = model(variant)
        assert not torch.allclose(out["next"]["kind"], base["next"]["kind"], atol=1e-6)
        assert not torch.allclose(out["anomaly"], base["anomaly"], atol=1e-5)
    # masked-out headlines do not count: changing them changes nothing
    hidden = {**batch, "news_mask": torch.zeros_like(batch["news_mask"])}
    hidden_changed = {**news, "news_mask": hidden["news_mask"]}
    assert torch.equal(model(hidden)["anomaly"], model(hidden_changed)["anomaly"])


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny()
    model = OrderFlowModel(config).train()
    a = arrays(config, b=8, seed=1)
    batch = to_batch(a)
    batch["targets"] = torch.randn(8, len(TARGETS))
    batch["target_valid"] = torch.ones(8, len(TARGETS), dtype=torch.bool)
    batch["label"] = torch.tensor([0, 1, 2, 0, 3, 0, 6, 0])
    opt = make_optimizer(model, 3e-3)
    losses = []
    for _ in range(30):
        parts = loss_parts(model, model(batch), batch, "finetune", None)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(float(parts["loss"].detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_the_depth_pinball_is_taken_in_target_units_over_a_constant_and_the_others_standardized():
    model, batch = model_and_batch(b=6)
    model.target_loc.copy_(torch.linspace(-0.5, 0.5, len(TARGETS)))
    model.target_scale.copy_(torch.linspace(0.5, 2.0, len(TARGETS)))
    batch["targets"] = torch.randn(6, len(TARGETS)) * 3
    batch["target_valid"] = torch.rand(6, len(TARGETS)) > 0.2
    ref = torch.linspace(0.3, 1.7, len(TARGETS))
    out = model(batch)
    assert out["anchor_scale"].std() > 0  # the windows' scales differ, so weighing them changes the loss
    got = loss_parts(model, out, batch, "finetune", None, UnitWeighting.of(ref))["pinball"]
    q = torch.tensor(QUANTILES)
    u = batch["targets"][..., None] - out["quantiles_head"]
    in_units = torch.maximum(q * u, (q - 1) * u).sum(-1) / (model.target_scale * ref)
    standardized = torch.maximum(q * u, (q - 1) * u).sum(-1) / (model.target_scale * out["anchor_scale"])
    unit = torch.tensor([t in UNIT_LOSS_TARGETS for t in TARGETS])
    assert unit.any() and not unit.all()
    v = batch["target_valid"].float()
    assert torch.allclose(got, (torch.where(unit, in_units, standardized) * v).sum() / v.sum(), rtol=1e-5)
    unweighted = loss_parts(model, out, batch, "finetune", None)["pinball"]
    assert not torch.allclose(got, unweighted, rtol=1e-3)


def test_nll_ignores_padding_and_sums_field_cross_entropies():
    model, batch = model_and_batch()
    out = model(batch)
    nll, valid = next_event_nll(out["next"], batch)
    assert not valid[0, :5].any() and valid[0, 5:].all() and valid[1:].all()
    assert (nll[~valid] == 0).all()
    i = 10
    manual = sum(-torch.log_softmax(out["next"][f][1, i], -1)[batch[f][1, i + 1]] for f in FIELDS)
    assert torch.allclose(nll[1, i], manual, atol=1e-5)


def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    model, batch = model_and_batch()
    model.target_loc.fill_(3.0)  # buffers travel too
    extra = {"tokenizer": {"vocab": model.config.vocab}, "calibration": {"k": 16, "quantiles": [1.0, 2.0]}}
    checkpoint.save(model, model.config, extra, tmp_path / "ck")
    loaded, config, got = checkpoint.load(tmp_path / "ck", "cpu")
    assert config == model.config
    assert got == extra
    a, b = model(batch), loaded(batch)
    for f in FIELDS:
        assert torch.equal(a["next"][f], b["next"][f])
    assert torch.equal(a["quantiles"], b["quantiles"]) and torch.equal(a["anomaly"], b["anomaly"])
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {"model.safetensors", "config.json"}
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["model"]["d_model"] == 32


def test_score_gives_surprise_quantiles_and_probabilities():
    model, batch = model_and_batch()
    s = model.score(batch, k=4)
    nll, _ = next_event_nll(model(batch)["next"], batch)
    assert torch.allclose(s["nll"], nll[:, -4:].mean(-1))
    assert torch.allclose(s["probs"].sum(-1), torch.ones(4))
    assert s["quantiles"].shape == (4, len(TARGETS), len(QUANTILES))


class _HostRoundTrips(torch.overrides.TorchFunctionMode):
    """Records the calls that move data between host and device inside a forward: indexing with a
    Python list (copied to the device on each call), with a 0-dim tensor (read back to the host as a
    Python number) or a boolean mask (its size is read back), reading a value back (item, bool,
    tolist), new tensors from host data. On a GPU each is a copy or a sync that torch.cuda.graph
    refuses to capture (the device bench hit the first: "Cannot copy between CPU and CUDA tensors
    during CUDA graph capture"; then a 0-dim index: "operation not permitted when stream is
    capturing")."""

    READS = frozenset({"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "nonzero"})
    NEW = frozenset({"tensor", "as_tensor", "from_numpy"})

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", str(func))
        index = args[1] if name in ("__getitem__", "__setitem__") and len(args) > 1 else None
        parts = index if isinstance(index, tuple) else (index,)
        synced = [isinstance(p, torch.Tensor) and (p.dtype == torch.bool or p.dim() == 0) for p in parts]
        if any(isinstance(p, list) for p in parts) or any(synced) or name in self.READS | self.NEW:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def test_score_has_no_host_round_trip_so_a_cuda_graph_can_capture_it():
    model, batch = model_and_batch()
    with torch.inference_mode(), _HostRoundTrips() as seen:
        model.score(batch)
    assert seen.found == []
    x, one, mask = torch.zeros(2, 3), torch.tensor(1), torch.tensor([True, False])
    with _HostRoundTrips() as probe:  # the detector sees what it is for
        x[..., [0, 2]].sum().item()
        x[..., one]
        x[mask]
    assert probe.found == ["__getitem__", "item", "__getitem__", "__getitem__"]


def test_the_served_checkpoint_scores_without_a_host_round_trip():
    """The committed demo model takes paths the tiny one does not (the L2 heads and level maps, the news
    bins of the recalibration): a 0-dim index in one of them broke graph capture on the GPU while the
    test above passed."""
    model, config, _ = checkpoint.load("model/checkpoints/demo")
    assert model.recal_news_fitted.any() and model.l2_direction_fitted and model.l2_recal_fitted.any()
    data = arrays(config, 8)
    data["news_age"] = np.random.default_rng(1).uniform(0.0, 60.0, size=data["news_mask"].shape)
    batch = to_batch(data)
    with torch.inference_mode(), _HostRoundTrips() as seen:
        model.score(batch)
    assert seen.found == []


def test_weighted_quantile_ignores_a_one_row_blowout_that_drags_the_ewma():
    x = torch.tensor([[1.0] * 15 + [28.0] + [1.0] * 4, [3.0, 1.0, 2.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] * 2])
    w = torch.ones_like(x)
    w[0] = 0.5 ** (torch.arange(19, -1, -1) / ANCHOR_HALFLIFE)
    w[1, 4:] = 0.0  # left out
    assert weighted_quantile(x, w, 0.9)[0] == 1.0 and (w[0] * x[0]).sum() / w[0].sum() > 2.5
    assert weighted_quantile(x, w, 0.5)[1] == 2.0 and weighted_quantile(x, w, 0.9)[1] == 9.0
    assert weighted_quantile(x, w, 0.1)[1] == 1.0
    assert weighted_quantile(x, torch.zeros_like(w), 0.5).tolist() == [0.0, 0.0]


def test_served_quantiles_lie_on_each_targets_support():
    model, batch = model_and_batch()
    with torch.no_grad():  # a wide head: raw quantiles far below the floors and between ticks
        model.target_scale.fill_(50.0)
        model.quantile_head.bias.normal_(0.0, 3.0)
    q = model.score(batch)["quantiles"]
    col = {t: q[:, i] for i, t in enumerate(TARGETS)}
    for t in ("spread_h10", "spread_h100"):
        assert (col[t] >= 1).all() and torch.equal(col[t], col[t].round())
    for t in ("depth_h10", "depth_h100", "volume_h10", "volume_h100"):
        assert (col[t] >= 0).all()
    assert (q.diff(dim=-1) >= 0).all()


def test_raising_a_quantile_to_the_floor_never_raises_its_pinball_loss():
    model = OrderFlowModel(tiny())
    rng = np.random.default_rng(1)
    raw = torch.tensor(rng.normal(0.0, 3.0, size=(256, len(TARGETS), 3)), dtype=torch.float32).sort(-1).values
    floor = model.target_floor[:, None]
    projected = torch.maximum(raw, floor)  # the floor part of onto_support
    y = torch.maximum(torch.tensor(rng.normal(0.0, 3.0, size=(256, len(TARGETS), 1))), floor)  # on the support
    tau = torch.tensor(QUANTILES)

    def loss(q):
        return torch.maximum(tau * (y - q), (tau - 1) * (y - q))

    assert (loss(projected) <= loss(raw) + 1e-6).all()
    assert loss(projected).sum() < loss(raw).sum()


def test_calibrated_score_is_the_empirical_cdf():
    q = np.percentile(np.arange(1000.0), np.arange(101))
    assert calibrated_score(np.array([-5.0, 499.5, 2000.0]), q).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-3)


def test_presets_parameter_counts():
    tiny_n = OrderFlowModel(ModelConfig.tiny()).num_parameters()
    small_n = OrderFlowModel(ModelConfig.small()).num_parameters()
    assert tiny_n < 300_000
    assert 1_000_000 <= small_n <= 3_000_000


def _set_rows(batch: dict, column: str, values: list[float]) -> None:
    """Put raw values (the model's feature_loc/scale are 0/1 here) into one column of window 0."""
    batch["features"][0, -len(values) :, FEATURE_NAMES.index(column)] = torch.tensor(values)


def test_anchor_band_is_persistence_inside_the_weighted_quantiles_or_the_ewma_band_of_the_same_rows():
    from model.serving.baseline import level_forecasts

    model, batch = model_and_batch(b=6)
    rng = np.random.default_rng(3)
    f = batch["features"]
    col = {n: FEATURE_NAMES.index(n) for n in ("valid", "spread_ticks", "log_depth_bid_5", "log_depth_ask_5")}
    f[..., col["valid"]] = torch.from_numpy((rng.random(f.shape[:2]) < 0.8).astype(np.float32))
    f[..., col["spread_ticks"]] = torch.from_numpy(rng.integers(1, 6, f.shape[:2]).astype(np.float32))
    for side in ("log_depth_bid_5", "log_depth_ask_5"):
        f[..., col[side]] = torch.from_numpy(np.log1p(rng.integers(0, 500, f.shape[:2])).astype(np.float32))
    f[1, :, col["valid"]] = 0.0  # one-sided throughout: nothing to anchor on
    band, scale, _ = (x.numpy() for x in model.anchor(batch))
    x = f.numpy().astype(np.float64)
    ok = x[..., col["valid"]] > 0.5
    spread = np.where(ok, x[..., col["spread_ticks"]], np.nan)
    depth = np.where(ok, np.expm1(x[..., col["log_depth_bid_5"]]) + np.expm1(x[..., col["log_depth_ask_5"]]), np.nan)

    def persistence_median_ewma_ends(x: np.ndarray) -> np.ndarray:
        f = level_forecasts(x, ANCHOR_HALFLIFE)
        ewma, last = np.nan_to_num(f["ewma"]), np.nan_to_num(f["persistence"][:, 1])
        return np.stack([np.minimum(ewma[:, 0], last), last, np.maximum(ewma[:, 2], last)], axis=1)

    def persistence_median_weighted_quantile_ends(x: np.ndarray) -> np.ndarray:
        t = x.shape[1]
        w = np.where(np.isnan(x), 0.0, 0.5 ** (np.arange(t - 1, -1, -1) / ANCHOR_HALFLIFE))
        last = np.nan_to_num(level_forecasts(x, ANCHOR_HALFLIFE)["persistence"][:, 1])
        ends = np.zeros((len(x), 2))
        for i in range(len(x)):
            if w[i].sum() == 0:
                continue
            o = np.argsort(np.nan_to_num(x[i], nan=np.inf), kind="stable")
            c = np.cumsum(w[i][o]) / w[i].sum()
            ends[i] = [x[i][o][np.searchsorted(c, q)] for q in (0.1, 0.9)]
        return np.stack([np.minimum(ends[:, 0], last), last, np.maximum(ends[:, 1], last)], axis=1)

    expect = {
        "spread": persistence_median_weighted_quantile_ends(spread),
        "depth": np.log1p(persistence_median_ewma_ends(depth)),
        "volume": np.zeros((6, 3)),
        "mid": np.zeros((6, 3)),
    }
    for j, target in enumerate(TARGETS):
        name = target.rsplit("_h", 1)[0]
        assert np.allclose(band[:, j], expect[name], rtol=1e-4, atol=1e-4), target
        if name in ANCHOR_FLOOR:
            assert (scale[[0, 2, 3, 4, 5], j] > ANCHOR_FLOOR[name]).all() and scale[1, j] == 1.0
        else:
            assert (scale[:, j] == 1.0).all()
    _, _, stats = model.anchor(batch)
    assert stats.shape == (6, ANCHOR_STATS) and (stats[1] == 0).all()  # nothing known, nothing handed on
    ewma = np.nan_to_num(level_forecasts(spread, ANCHOR_HALFLIFE)["ewma"][0, 1])  # window 0's first stat:
    ewma_less_last = (ewma - expect["spread"][0, 1]) / scale[0, TARGETS.index("spread_h10")]  # in scales
    assert stats[0, 0].item() == pytest.approx(ewma_less_last, rel=1e-4, abs=1e-4)
    # the depth memory: its columns at the newest two-sided row less the depth median, in the depth's scale
    memory = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n.startswith("log_depth_5_ewma_")]
    assert len(memory) == 3 and 14 + len(memory) == ANCHOR_STATS
    f[..., memory] = torch.from_numpy(np.log1p(rng.integers(0, 500, (*f.shape[:2], len(memory)))).astype(np.float32))
    _, _, stats = model.anchor(batch)
    j = TARGETS.index("depth_h100")
    for i in (0, 2, 3, 4, 5):
        newest = np.flatnonzero(ok[i])[-1]
        expected = (f[i, newest, memory].numpy() - expect["depth"][i, 1]) / scale[i, j]
        assert np.allclose(stats[i, -3:].numpy(), np.clip(expected, -10, 10), rtol=1e-4, atol=1e-4)
    assert (stats[1, -3:] == 0).all()
    f[2, :, col["spread_ticks"]] = 4.0  # a spread that has not moved: a band of width 0, the floor
    band, scale, _ = model.anchor(batch)
    assert torch.allclose(band[2, 0], torch.tensor([4.0, 4.0, 4.0]))
    assert scale[2, 0].item() == pytest.approx(ANCHOR_FLOOR["spread"], abs=1e-5)
    out = model(batch)
    standard = out["quantiles_norm"] * model.target_scale[:, None] + model.target_loc[:, None]
    assert torch.equal(out["quantiles"], model.onto_support(band + scale[..., None] * standard))


@pytest.mark.parametrize("part", ["news", "rows"])
def test_an_ablated_part_does_not_reach_the_outputs(part):
    torch.manual_seed(0)
    config = ModelConfig.tiny(**SHAPES, **{f"use_{part}": False})
    model = OrderFlowModel(config).eval()
    a = arrays(config)
    b = arrays(config, seed=1)
    key = {"news": "news", "rows": "features"}[part]
    same_but_part = {k: (b[key] if k == key else v) for k, v in a.items()}
    with torch.no_grad():
        x, y = model(to_batch(a)), model(to_batch(same_but_part))
    assert torch.equal(x["quantiles"], y["quantiles"]) and torch.equal(x["anomaly"], y["anomaly"])
    full = OrderFlowModel(ModelConfig.tiny(**SHAPES)).eval()
    full.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.equal(full(to_batch(a))["anomaly"], full(to_batch(same_but_part))["anomaly"])


def test_the_volume_rate_from_the_traded_tokens_goes_to_the_head_as_an_input():
    from model.evaluation.baselines import traded_lots_per_message

    model, batch = model_and_batch(b=4)
    medians = np.arange(1, model.config.vocab["size"], dtype=np.float64) * 10.0
    model.size_lots[1:] = torch.tensor(medians, dtype=torch.float32)
    arrays = {k: v.numpy() for k, v in batch.items()}
    rate = traded_lots_per_message(arrays, {"tokenizer": {"size_medians": medians.tolist()}})
    assert (rate > 0).all()
    band, scale, stats = model.anchor(batch)
    assert np.allclose(stats[:, 6].numpy(), np.log1p(rate), rtol=1e-5)
    for j, target in enumerate(TARGETS):
        if target.startswith("volume"):
            assert (band[:, j] == 0).all() and (scale[:, j] == 1.0).all()


def test_a_headlines_age_is_read_only_where_the_config_says_and_starts_as_no_input():
    """ModelConfig.use_news_age: log1p(age) projected onto the headline's embedding; the projection is made
    zeroed after the initialisation, so a seed's other weights, and at step 0 the outputs, are those of the
    same model without it. Trained, the age moves the outputs; a headline masked out still does not count,
    and a batch without the ages is refused by a model that reads them."""
    config = tiny()
    batch = to_batch(arrays(config) | {"news_age": np.full((4, config.max_news), 30.0, np.float32)})
    torch.manual_seed(0)
    plain = OrderFlowModel(config).eval()
    torch.manual_seed(0)
    aged = OrderFlowModel(ModelConfig.tiny(**SHAPES, use_news_age=True)).eval()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), aged.state_dict().values(), strict=True))
    assert torch.equal(plain(batch)["anomaly"], aged(batch)["anomaly"])

    with torch.no_grad():
        aged.news_age_proj.weight.normal_(std=0.5)
    fresh = {**batch, "news_age": torch.zeros_like(batch["news_age"])}
    assert not torch.allclose(aged(batch)["anomaly"], aged(fresh)["anomaly"], atol=1e-6)
    assert torch.equal(plain(batch)["anomaly"], plain(fresh)["anomaly"])  # off: the age is not read
    hidden = {**batch, "news_mask": torch.zeros_like(batch["news_mask"])}
    assert torch.equal(aged(hidden)["anomaly"], aged({**fresh, "news_mask": hidden["news_mask"]})["anomaly"])
    without = {k: v for k, v in batch.items() if k != "news_age"}
    with pytest.raises(ValueError, match="news_age"):
        aged(without)


def test_a_format_7_checkpoint_loads_with_the_age_projection_zeroed_and_off(tmp_path):
    from safetensors.torch import save_file

    model, batch = model_and_batch()
    config_doc = {"format": 7, "model": {k: v for k, v in model.config.to_json().items() if k != "use_news_age"}}
    old = tmp_path / "old"
    old.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("news_age_proj")}
    save_file(state, str(old / checkpoint.WEIGHTS), {"format": "7"})
    (old / checkpoint.CONFIG).write_text(json.dumps(config_doc))
    loaded, config, _ = checkpoint.load(old)
    assert not config.use_news_age and not loaded.news_age_proj.weight.any()
    assert torch.equal(loaded(batch)["anomaly"], model(batch)["anomaly"])
