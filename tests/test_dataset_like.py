"""A checkpoint's own encoding for new data (issue 13): `megatrading dataset --like CKPT` encodes any source
with the checkpoint's window, tokenizers and feature normalization, fitting nothing; `evaluate` and
`train --stage finetune --init` accept such a dataset and refuse one encoded otherwise."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from model.inputs import ENCODING_KEYS, EncodingMismatch, FeatureNorm, encoding_fingerprint, model_inputs
from model.network.tokens import TextTokenizer, Tokenizer
from model.sim.anomalies import parse_anomalies
from model.sim.engine import SEC, SimConfig
from model.training.dataset import (
    CAPTURE_SEED_TOP,
    CheckpointEncoding,
    DatasetConfig,
    build,
    capture_seed,
    load,
    replay_source,
    sim_source,
)
from streams.cli import main

torch = pytest.importorskip("torch")

DEMO = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "demo"
# one simulated symbol for ten minutes: ~400 windows with labeled anomalies and headlines, in about a second
SIM = ["--sim-duration", "10m", "--sim-symbols", "1", "--anomaly-rate", "6", "--news", "12"]
# what `dataset --sim-seeds 2 *SIM` simulates
SEED_2 = SimConfig(
    n_symbols=1, duration_ns=600 * SEC, seed=2, anomaly_rates=parse_anomalies("all", 6.0), news_rate=12.0
)
TINY = ["--preset", "tiny", "--batch", "8", "--device", "cpu", "--checkpoint-every", "1000", "--log-every", "1"]


def config_of(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x.npz: seed 1 encoded as usual (fitted on itself); ckpt: a tiny model fine-tuned on it (3 steps);
    fresh2.npz: seed 2 encoded as usual (its own fit); like2.npz: seed 2 encoded like ckpt."""
    d = tmp_path_factory.mktemp("like")
    assert main(["dataset", "--sim-seeds", "1", *SIM, "--out", str(d / "x.npz")]) == 0
    assert main(["train", "--stage", "finetune", "--data", str(d / "x.npz"), "--out", str(d / "ckpt"),
                 "--steps", "3", *TINY]) == 0  # fmt: skip
    assert main(["dataset", "--sim-seeds", "2", *SIM, "--out", str(d / "fresh2.npz")]) == 0
    assert main(["dataset", "--sim-seeds", "2", *SIM, "--like", str(d / "ckpt"), "--out", str(d / "like2.npz")]) == 0
    return d


def test_data_encoded_like_the_checkpoint_fitted_on_it_has_identical_tokens_and_features(lab):
    assert (
        main(["dataset", "--sim-seeds", "1", *SIM, "--like", str(lab / "ckpt"), "--out", str(lab / "x_like.npz")]) == 0
    )
    normal, like = load(lab / "x.npz"), load(lab / "x_like.npz")
    assert len(normal) > 100 and (normal.arrays["label"] > 0).any() and normal.arrays["news_mask"].any()
    assert set(like.arrays) == set(normal.arrays)
    for name, arr in normal.arrays.items():  # every token id, the normalized rows bit for bit, targets, labels
        assert arr.dtype == like.arrays[name].dtype and np.array_equal(arr, like.arrays[name]), name
    assert like.meta["encoding"] == {"fingerprint": encoding_fingerprint(normal.meta), "like": str(lab / "ckpt")}


def test_like_on_other_data_takes_the_checkpoints_encoding_and_fits_nothing(lab):
    ckpt, fresh, like = config_of(lab / "ckpt"), load(lab / "fresh2.npz"), load(lab / "like2.npz")
    for key in ENCODING_KEYS:
        assert like.meta[key] == ckpt[key], key
    assert like.meta["encoding"]["fingerprint"] == encoding_fingerprint(ckpt)
    # a fit of its own would have given other constants and bins: these are the checkpoint's, not a fit
    assert fresh.meta["feature_mean"] != ckpt["feature_mean"] and fresh.meta["tokenizer"] != ckpt["tokenizer"]
    assert np.abs(like.arrays["features"][like.arrays["row_mask"]].mean(axis=0)).max() > 0.05
    # the same windows as the fresh encoding (ids that need no fitted bins agree), and their rows are
    # normalized by the checkpoint's constants exactly
    for name in ("kind", "side", "price", "mask", "row_mask", "news", "label"):
        assert np.array_equal(like.arrays[name], fresh.arrays[name]), name
    rep = replay_source(sim_source(SEED_2), CheckpointEncoding.of_checkpoint(lab / "ckpt").config)
    raw = model_inputs(rep.windows, Tokenizer.from_json(ckpt["tokenizer"]), TextTokenizer(), norm=None)
    assert np.array_equal(like.arrays["features"], FeatureNorm.from_meta(ckpt).apply(raw["features"], raw["row_mask"]))


def test_evaluate_refuses_a_dataset_encoded_otherwise_naming_both_and_the_fix(lab, capsys):
    fresh = lab / "fresh2.npz"
    with pytest.raises(EncodingMismatch) as err:
        from model.evaluation.evaluate import evaluate

        evaluate(fresh, [lab / "ckpt"], lab / "refused")
    message = str(err.value)
    fingerprints = encoding_fingerprint(load(fresh).meta), encoding_fingerprint(config_of(lab / "ckpt"))
    for part in (str(fresh), str(lab / "ckpt"), *fingerprints, f"dataset --like {lab / 'ckpt'}", "tokenizer"):
        assert part in message, part
    assert main(["evaluate", "--data", str(fresh), "--model", str(lab / "ckpt"), "--out", str(lab / "refused")]) == 2
    assert "--like" in capsys.readouterr().err and not (lab / "refused" / "evaluation.md").exists()


def test_finetune_from_a_checkpoint_refuses_a_dataset_encoded_otherwise(lab):
    from model.training.train import train

    with pytest.raises(EncodingMismatch, match="dataset --like"):
        train("finetune", lab / "fresh2.npz", lab / "refused-ft", init=lab / "ckpt", steps=2, preset="tiny", batch=4)
    assert not (lab / "refused-ft" / "model.safetensors").exists()


def test_evaluate_runs_a_checkpoint_on_data_encoded_like_it(lab):
    from model.evaluation.evaluate import evaluate

    ev = evaluate(lab / "like2.npz", [lab / "ckpt"], lab / "eval2")
    assert ev.seeds == [2] and ev.n_windows == len(load(lab / "like2.npz"))
    assert "| evaluated seeds seen in training | none |" in (lab / "eval2" / "evaluation.md").read_text()


def test_finetune_from_a_checkpoint_on_data_like_it_keeps_its_encoding_and_target_units(lab):
    from model.network import checkpoint

    out = lab / "ft2"
    assert main(["train", "--stage", "finetune", "--data", str(lab / "like2.npz"), "--init", str(lab / "ckpt"),
                 "--out", str(out), "--steps", "3", *TINY]) == 0  # fmt: skip
    before, after = config_of(lab / "ckpt"), config_of(out)
    assert encoding_fingerprint(after) == encoding_fingerprint(before)
    assert {k: after[k] for k in ENCODING_KEYS} == {k: before[k] for k in ENCODING_KEYS}
    assert after["train"]["init"] == str(lab / "ckpt") and after["train"]["step"] == 3
    init, _, _ = checkpoint.load(lab / "ckpt")
    tuned, _, _ = checkpoint.load(out)
    # the head goes on predicting in the units it was trained in; the weights did move
    assert torch.equal(tuned.target_loc, init.target_loc) and torch.equal(tuned.target_scale, init.target_scale)
    a, b = init.state_dict(), tuned.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight"))


def test_like_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    assert main(["dataset", "--sim-seeds", "1", *SIM, "--like", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="give either like"):
        build([], DatasetConfig(), like=CheckpointEncoding.of_checkpoint(DEMO))


# --------------------------------------------------------------------------- a real capture, the shipped model


@pytest.fixture(scope="module")
def capture(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1,500 lines of a Binance COIN-M capture the demo model never saw (not in REAL_FILES),
    written to a temporary file: a researcher's own file."""
    path = tmp_path_factory.mktemp("capture") / "cm_ethusd_perp_head.gz"
    with gzip.open(shared_data / "binance-hftbacktest" / "cm_ethusd_perp_20240808.gz", "rb") as src:
        path.write_bytes(gzip.compress(b"".join(itertools.islice(src, 1500))))
    return path


def test_the_shipped_model_encodes_and_evaluates_a_capture_of_its_users(capture, tmp_path):
    before = (DEMO / "config.json").read_bytes(), (DEMO / "model.safetensors").stat().st_mtime_ns
    out = tmp_path / "mine.npz"
    assert main(["dataset", "--like", str(DEMO), "--capture", f"binance:{capture}", "--out", str(out)]) == 0
    ds = load(out)
    assert (
        len(ds) > 50
        and (ds.arrays["seed"] == capture_seed(capture)).all()
        and capture_seed(capture) <= CAPTURE_SEED_TOP
    )
    demo = config_of(DEMO)
    assert {k: ds.meta[k] for k in ENCODING_KEYS} == {k: demo[k] for k in ENCODING_KEYS}
    assert ds.meta["sources"][0]["name"] == f"capture:binance:{capture}" and ds.meta["sources"][0]["rejected"] == 0
    assert main(["evaluate", "--data", str(out), "--model", str(DEMO), "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_windows"] == len(ds) and metrics["crps"]["spread_h10"]["model"] > 0
    assert ((DEMO / "config.json").read_bytes(), (DEMO / "model.safetensors").stat().st_mtime_ns) == before
