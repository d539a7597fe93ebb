"""The order-flow network (model/network.py) and its checkpoints (model/checkpoint.py), tiny config on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model import checkpoint  # noqa: E402
from model.network import (  # noqa: E402
    ANOMALY_CLASSES,
    FIELDS,
    QUANTILES,
    TARGETS,
    ModelConfig,
    OrderFlowModel,
    calibrated_score,
    next_event_nll,
    to_batch,
)
from model.train import loss_parts, make_optimizer  # noqa: E402

SHAPES = dict(n_events=24, n_rows=6, n_features=5, max_news=2, news_len=4, text_vocab=64)


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


def test_feature_rows_and_news_change_the_outputs():
    model, batch = model_and_batch()
    base = model(batch)
    rows = {**batch, "features": batch["features"] + 1.0}
    news = {**batch, "news": (batch["news"] % (model.config.text_vocab - 2)) + 2}
    for variant in (rows, news):
        out = model(variant)
        assert not torch.allclose(out["next"]["kind"], base["next"]["kind"], atol=1e-4)
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


def test_calibrated_score_is_the_empirical_cdf():
    q = np.percentile(np.arange(1000.0), np.arange(101))
    assert calibrated_score(np.array([-5.0, 499.5, 2000.0]), q).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-3)


def test_presets_parameter_counts():
    tiny_n = OrderFlowModel(ModelConfig.tiny()).num_parameters()
    small_n = OrderFlowModel(ModelConfig.small()).num_parameters()
    assert tiny_n < 300_000
    assert 1_000_000 <= small_n <= 3_000_000
