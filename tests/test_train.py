"""Training (model/training/train.py) and `megatrading train` (streams/cli/train.py) on a tiny synthetic
dataset written exactly as the shared contract of issue 5 lays it out (an .npz and its .json)."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model.network import checkpoint  # noqa: E402
from model.network.orderflow import FIELDS, RECALIBRATED_TARGETS, TARGETS, to_batch  # noqa: E402
from model.training.train import TrainData, class_weights, lr_at, sampling_probabilities, train  # noqa: E402
from orderbook.features import FEATURE_NAMES  # noqa: E402
from streams.cli.train import register  # noqa: E402

VOCAB = {"kind": 13, "side": 4, "price": 131, "size": 33, "dt": 33}
B, N, T, F, M, L, TEXT_VOCAB = 48, 20, 4, len(FEATURE_NAMES), 2, 4, 64
FAST = dict(preset="tiny", batch=8, device="cpu", checkpoint_every=1000, log_every=1, calib_windows=64)


def write_dataset(path: Path, seed: int = 0) -> Path:
    """Windows whose flow is learnable (kind alternates ADD/CANCEL; sides alternate), left-padded
    with PAD ids, with targets, labels (some anomalous) and news; plus the json metadata."""
    rng = np.random.default_rng(seed)
    steps = np.arange(N)
    a = {
        "kind": np.broadcast_to(np.where(steps % 2 == 0, 1, 2), (B, N)).copy(),
        "side": np.broadcast_to(1 + steps % 2, (B, N)).copy(),
        "price": rng.integers(60, 70, size=(B, N)),
        "size": rng.integers(1, 33, size=(B, N)),
        "dt": rng.integers(1, 33, size=(B, N)),
    }
    mask = np.ones((B, N), dtype=bool)
    mask[::4, :6] = False  # every fourth window is shorter: left-padded
    for f in FIELDS:
        a[f] = np.where(mask, a[f], 0).astype(np.int64)
    a["mask"] = mask
    a["features"] = rng.normal(size=(B, T, F)).astype(np.float32)
    a["row_mask"] = np.ones((B, T), dtype=bool)
    a["news"] = np.where(rng.random((B, M, 1)) < 0.3, rng.integers(2, TEXT_VOCAB, size=(B, M, L)), 0)
    a["news_mask"] = a["news"][..., 0] > 0
    for t in TARGETS:
        a[t] = rng.normal(loc=5.0, scale=2.0, size=B).astype(np.float32)
    a["target_mask"] = np.ones((B, 2), dtype=bool)
    a["target_mask"][-5:, 1] = False  # the stream ended before h100
    a["label"] = np.where(np.arange(B) % 6 == 0, 1 + np.arange(B) % 6, 0).astype(np.int64)
    a["news_kind"] = np.zeros(B, dtype=np.int64)
    a["symbol"] = np.array(["SYM"] * B)
    a["event_ts"] = np.arange(B, dtype=np.int64) * 1_000_000
    a["seed"] = np.full(B, seed, dtype=np.int64)
    np.savez_compressed(path, **a)
    meta = {
        "tokenizer": {"type": "event-tokenizer/1", "vocab": VOCAB},
        "text_tokenizer": {"type": "hashed-words/crc32", "vocab": TEXT_VOCAB, "max_words": L},
        "feature_mean": [0.0] * F,
        "feature_std": [1.0] * F,
        "window": {"n_events": N, "n_rows": T, "max_news": M},
        "horizons": [10, 100],
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds") / "train.npz")


def state(directory: Path) -> dict[str, torch.Tensor]:
    model, _, _ = checkpoint.load(directory, "cpu")
    return model.state_dict()


def test_pretrain_lowers_nll_and_writes_a_checkpoint(data, tmp_path):
    run = train("pretrain", data, tmp_path / "pre", steps=40, lr=3e-3, seed=1, **FAST)
    nll = [h["nll"] for h in run.history]
    assert len(nll) == 40
    assert np.mean(nll[-5:]) < 0.8 * np.mean(nll[:5])
    names = {p.name for p in (tmp_path / "pre").iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "train_state.json"} <= names
    assert {"curves.png", "losses.csv"} <= names
    cfg = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert cfg["train"]["stage"] == "pretrain" and cfg["train"]["step"] == 40
    # what the run's floats hang on beyond code, data and seed: a retrain elsewhere can be told apart
    env = cfg["train"]["environment"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["cpu"] and env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cfg["tokenizer"]["vocab"] == VOCAB
    calib = cfg["calibration"]
    assert calib["windows"] == int((np.load(data)["label"] == 0).sum())
    assert len(calib["quantiles"]) == 101 and calib["quantiles"] == sorted(calib["quantiles"])


def test_finetune_from_init_trains_all_heads(data, tmp_path):
    train("pretrain", data, tmp_path / "pre", steps=3, seed=1, **FAST)
    run = train("finetune", data, tmp_path / "fine", init=tmp_path / "pre", steps=20, lr=3e-3, seed=1, **FAST)
    first, last = run.history[0], run.history[-1]
    assert {"nll", "pinball", "anomaly_ce"} <= set(last)
    assert last["pinball"] < first["pinball"]
    model, _, extra = checkpoint.load(tmp_path / "fine", "cpu")
    assert extra["train"]["init"] == str(tmp_path / "pre")
    # targets less their anchor are standardized with the data's own statistics (in the checkpoint)
    with np.load(data) as z:
        arrays = {k: z[k] for k in z.files}
    band, scale, _ = model.anchor(to_batch(arrays))
    centre, scale = band[:, 0, 1].numpy(), scale[:, 0].numpy()
    assert np.abs(centre).max() > 0  # the spread is anchored on the rows
    standard = (arrays["spread_h10"] - centre) / scale
    assert model.target_loc[0].item() == pytest.approx(float(np.median(standard)), rel=1e-4, abs=1e-5)
    mad = np.abs(standard - np.median(standard)).mean()
    assert model.target_scale[0].item() == pytest.approx(float(mad), rel=1e-4)
    out = model.score(to_batch({k: v[:5] for k, v in arrays.items()}))
    assert out["nll"].shape == (5,) and out["probs"].shape == (5, 7) and out["quantiles"].shape == (5, 8, 3)
    # the spread and mid quantiles were recalibrated on the training windows; never worse there
    recal = extra["recalibration"]
    assert recal["windows"] == len(arrays["label"]) and set(recal["crps_after"]) == set(RECALIBRATED_TARGETS)
    assert all(recal["crps_after"][t] <= recal["crps_before"][t] for t in RECALIBRATED_TARGETS)


def test_resume_continues_from_the_saved_step_exactly(data, tmp_path):
    kw = dict(steps=6, lr=3e-3, seed=3, **FAST)
    train("pretrain", data, tmp_path / "straight", **kw)
    train("pretrain", data, tmp_path / "cut", stop_at=3, **kw)
    saved = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert saved["step"] == 3
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["calibration"] is None
    run = train("pretrain", data, tmp_path / "cut", resume=True, **kw)
    assert [h["step"] for h in run.history] == [1, 2, 3, 4, 5, 6]
    a, b = state(tmp_path / "straight"), state(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "cut" / "losses.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_another_stage(data, tmp_path):
    train("pretrain", data, tmp_path / "pre", steps=2, **FAST)
    with pytest.raises(ValueError, match="pretrain"):
        train("finetune", data, tmp_path / "pre", steps=4, resume=True, **FAST)


def test_megatrading_train_command_writes_weights_config_and_curves(data, tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "ck"
    args = parser.parse_args(
        ["train", "--stage", "pretrain", "--data", str(data), "--out", str(out), "--steps", "3",
         "--batch", "4", "--device", "cpu", "--seed", "2", "--preset", "tiny"]
    )  # fmt: skip
    assert args.run(args) == 0
    for name in ("model.safetensors", "config.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0] * 90 + [1] * 10))
    assert w[0] * 90 == pytest.approx(w[1] * 10)
    assert w[2:].tolist() == [0.0] * 5


def test_real_weight_draws_real_windows_that_much_more_often(data):
    d = TrainData.load(data)
    assert sampling_probabilities(d, 3.0) is None  # one seed, all simulated: nothing to weigh
    d.arrays["seed"] = np.where(np.arange(len(d)) % 4 == 0, -1, 5)  # a quarter real
    p = sampling_probabilities(d, 3.0)
    real = d.arrays["seed"] < 0
    assert p.sum() == pytest.approx(1.0) and p[real][0] == pytest.approx(3 * p[~real][0])
    assert p[real].sum() == pytest.approx(0.5)  # 3 x 1/4 against 3/4
    assert sampling_probabilities(d, 1.0) is None
    with pytest.raises(ValueError, match="> 0"):
        sampling_probabilities(d, 0.0)


def test_lr_warms_up_then_decays_to_a_tenth():
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in itertools.pairwise(lrs[10:]))
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)


def test_ablation_leaves_the_part_out_of_the_trained_model(data, tmp_path):
    train("pretrain", data, tmp_path / "pre", steps=2, seed=1, without=("news",), **FAST)
    run = train("finetune", data, tmp_path / "fine", init=tmp_path / "pre", steps=2, seed=1, without=("rows",), **FAST)
    _, config, _ = checkpoint.load(run.out_dir, "cpu")
    assert (config.use_news, config.use_rows, config.anchors) == (False, False, False)
    with pytest.raises(ValueError, match="can be left out"):
        train("pretrain", data, tmp_path / "bad", steps=1, without=("trades",), **FAST)


def test_a_fresh_model_reads_the_headlines_age_where_the_set_has_it_and_a_set_without_is_refused(data, tmp_path):
    """A set written since 2026-12-03 carries `news_age` (model.inputs): a fresh model reads it (its
    projection starts at zero and learns), `--without news_age` leaves it out, and the set without the
    ages is refused by the model that reads them."""
    with np.load(data) as z:
        arrays = dict(z)
    ages = np.random.default_rng(0).uniform(0, 60, arrays["news_mask"].shape).astype(np.float32)
    aged = tmp_path / "aged.npz"
    np.savez_compressed(aged, **arrays, news_age=np.where(arrays["news_mask"], ages, 0).astype(np.float32))
    aged.with_suffix(".json").write_text(data.with_suffix(".json").read_text())
    run = train("pretrain", aged, tmp_path / "pre", steps=3, seed=1, **FAST)
    model, config, _ = checkpoint.load(run.out_dir, "cpu")
    assert config.use_news_age and model.news_age_proj.weight.abs().sum() > 0
    _, config, _ = checkpoint.load(train("pretrain", aged, tmp_path / "no-age", steps=1, without=("news_age",),
                                         **FAST).out_dir)  # fmt: skip
    assert not config.use_news_age
    _, config, _ = checkpoint.load(train("pretrain", data, tmp_path / "old-set", steps=1, **FAST).out_dir)
    assert not config.use_news_age  # a set written before the input: as before
    with pytest.raises(ValueError, match="news_age"):
        train("finetune", data, tmp_path / "fine", init=run.out_dir, steps=1, **FAST)


def test_the_calibration_stage_refits_the_surprise_percentiles_on_every_normal_window_and_nothing_else(data, tmp_path):
    """The served anomaly score's surprise tail hangs on the largest surprises of the normal training
    windows: a sample of them is what made 18 real windows score 1.0 (train.py's docstring)."""
    from streams.cli import main

    train("pretrain", data, tmp_path / "pre", steps=3, seed=1, **{**FAST, "calib_windows": 4})
    argv = ["train", "--stage", "calibration", "--init", str(tmp_path / "pre"), "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "cal"), "--device", "cpu"]) == 0
    sampled = json.loads((tmp_path / "pre" / "config.json").read_text())["calibration"]
    refitted = json.loads((tmp_path / "cal" / "config.json").read_text())["calibration"]
    normal = int((np.load(data)["label"] == 0).sum())
    assert sampled["windows"] == 4 < normal == refitted["windows"]
    assert refitted["data"] == str(data) and len(refitted["quantiles"]) == 101
    before, after = state(tmp_path / "pre"), state(tmp_path / "cal")
    assert all(torch.equal(before[k], after[k]) for k in before)
